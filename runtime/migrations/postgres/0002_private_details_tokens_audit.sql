-- Personal data in events and outcomes is encrypted like transcripts; the
-- clear `outcome` keeps only keyed hashes of slot values (for filters).
ALTER TABLE call_events ADD COLUMN detail_enc BYTEA;
ALTER TABLE calls ADD COLUMN outcome_enc BYTEA;
-- A restarted node closes the calls it left open.
CREATE INDEX calls_node_open ON calls (node, ended_at);

-- Which PII keys this database's rows are under: a node with other keys
-- refuses to start rather than write rows no one else can read.
CREATE TABLE pii_keys (
    key_id      TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Tokens may expire.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;

-- The audit log is append-only, whoever connects: triggers refuse changes
-- (they bind even a table owner), and the application's own role loses the
-- right to change it (a superuser ignores grants; the triggers still hold).
CREATE FUNCTION audit_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = '42501';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM CURRENT_USER;
