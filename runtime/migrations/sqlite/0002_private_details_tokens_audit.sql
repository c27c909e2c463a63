-- Personal data in events and outcomes is encrypted like transcripts; the
-- clear `outcome` keeps only keyed hashes of slot values (for filters).
ALTER TABLE call_events ADD COLUMN detail_enc BLOB;
ALTER TABLE calls ADD COLUMN outcome_enc BLOB;
-- A restarted node closes the calls it left open.
CREATE INDEX calls_node_open ON calls (node, ended_at);

-- Which PII keys this database's rows are under.
CREATE TABLE pii_keys (
    key_id      TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Tokens may expire.
ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT;

-- The audit log is append-only.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
