-- Call recordings: one per call, its state as it moves from the call to
-- object storage (recording, encoding, pending_upload, stored, deleted).
-- Times are milliseconds since the Unix epoch; bytes and duration of the
-- Ogg Opus file a reader gets; key_id the PII key it is sealed with.
CREATE TABLE recordings (
    call_sid    TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    object_key  TEXT NOT NULL,
    channels    BIGINT NOT NULL,
    codec       TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    key_id      TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX recordings_started_at ON recordings (started_at);
