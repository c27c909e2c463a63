-- Outbound calls (issue 16). The do-not-call list: numbers never dialed,
-- kept apart from the blocklist (which rejects inbound calls): who added
-- each and from where (api, import, rule). Numbers hashed for lookup and
-- encrypted like all personal data.
CREATE TABLE dnc (
    number_hash TEXT PRIMARY KEY,
    number_enc  BYTEA NOT NULL,
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Each call Hark was asked to place: refused (and why), or dialed and its
-- state as the carrier reports it. The lead's variables are encrypted
-- (JSON). idempotency_key makes a retried request one call.
CREATE TABLE outbound_calls (
    id                TEXT PRIMARY KEY,
    idempotency_key   TEXT UNIQUE,
    to_hash           TEXT NOT NULL,
    to_enc            BYTEA NOT NULL,
    from_number       TEXT NOT NULL,
    policy            TEXT NOT NULL,
    variables_enc     BYTEA NOT NULL,
    machine_detection TEXT NOT NULL,
    call_sid          TEXT,
    state             TEXT NOT NULL,
    reason            TEXT NOT NULL,
    answered_by       TEXT,
    created_by        TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX outbound_calls_call_sid ON outbound_calls (call_sid);
CREATE INDEX outbound_calls_created_at ON outbound_calls (created_at);
