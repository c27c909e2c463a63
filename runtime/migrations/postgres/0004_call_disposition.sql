-- What a finished call means: its disposition (qualified, or one its policy
-- lists), the slots masked for every reader, and the callback window the bot
-- recorded (RFC 3339 with offsets, as given) for campaigns to schedule from.
ALTER TABLE calls ADD COLUMN disposition TEXT;
ALTER TABLE calls ADD COLUMN sensitive_slots TEXT;
ALTER TABLE calls ADD COLUMN callback_start TEXT;
ALTER TABLE calls ADD COLUMN callback_end TEXT;
CREATE INDEX calls_disposition ON calls (disposition, started_at);
