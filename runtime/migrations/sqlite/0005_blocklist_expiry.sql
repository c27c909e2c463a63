-- Automatic blocks (a caller ended for profanity) expire; an entry whose
-- expires_at has passed no longer blocks. NULL: until removed.
ALTER TABLE blocklist ADD COLUMN expires_at BIGINT;
