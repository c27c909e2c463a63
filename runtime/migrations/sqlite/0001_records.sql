-- Hark's records (SQLite). Times are milliseconds since the Unix epoch;
-- flags are 0/1 BIGINTs so one set of queries serves SQLite too.
CREATE TABLE calls (
    call_sid       TEXT PRIMARY KEY,
    stream_sid     TEXT,
    direction      TEXT,
    from_enc       BLOB,
    from_hash      TEXT,
    to_enc         BLOB,
    to_hash        TEXT,
    policy         TEXT,
    policy_version TEXT,
    node           TEXT,
    started_at     BIGINT,
    ended_at       BIGINT,
    end_reason     TEXT,
    outcome        TEXT
);
CREATE INDEX calls_started_at ON calls (started_at);
CREATE INDEX calls_from_hash ON calls (from_hash);
CREATE INDEX calls_to_hash ON calls (to_hash);

CREATE TABLE turns (
    call_sid    TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    speaker     TEXT NOT NULL,
    text_enc    BLOB,
    heard_enc   BLOB,
    interrupted BIGINT NOT NULL,
    started_at  BIGINT NOT NULL,
    ended_at    BIGINT NOT NULL,
    PRIMARY KEY (call_sid, seq)
);
CREATE INDEX turns_started_at ON turns (started_at);

CREATE TABLE call_events (
    call_sid TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (call_sid, seq)
);

CREATE TABLE consent_records (
    call_sid TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    asked_at BIGINT NOT NULL,
    answer   TEXT NOT NULL,
    how      TEXT NOT NULL,
    at       BIGINT NOT NULL,
    PRIMARY KEY (call_sid, seq)
);

CREATE TABLE blocklist (
    number_hash TEXT PRIMARY KEY,
    number_enc  BLOB NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     BIGINT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
