-- Which carrier carried the call. Calls recorded before carriers were named
-- were all Twilio's.
ALTER TABLE calls ADD COLUMN carrier TEXT NOT NULL DEFAULT 'twilio';
