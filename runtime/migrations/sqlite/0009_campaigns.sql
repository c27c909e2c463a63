-- Campaigns and leads (issue 18). A lead belongs to one list; its number
-- and custom fields are personal data (encrypted; looked up by keyed
-- hash). time_zone: IANA names joined by '&' ('' unknown: never dialed).
-- owner: 'ai', 'agent:NAME' or 'skill:NAME' (whose queue it is in).
CREATE TABLE leads (
    id          TEXT PRIMARY KEY,
    list_name   TEXT NOT NULL,
    number_hash TEXT NOT NULL,
    number_enc  BLOB NOT NULL,
    fields_enc  BLOB NOT NULL,
    region      TEXT NOT NULL,
    time_zone   TEXT NOT NULL,
    priority    BIGINT NOT NULL,
    consent     TEXT NOT NULL,
    status      TEXT NOT NULL,
    owner       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (list_name, number_hash)
);
CREATE INDEX leads_number_hash ON leads (number_hash);
CREATE INDEX leads_owner ON leads (owner, status);

-- A campaign: its definition (JSON, checked at creation), its state
-- (draft, running, paused, completed) and the pacing clock: the earliest
-- instant the next call may start, moved under the row's lock so that
-- every node together keeps to calls_per_minute.
CREATE TABLE campaigns (
    name         TEXT PRIMARY KEY,
    spec         TEXT NOT NULL,
    state        TEXT NOT NULL,
    next_dial_at BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Each lead of a campaign: waiting (due at next_at), dialing (attempt
-- attempt_key in flight: the placement's idempotency key) or done (reason:
-- why, when it was not a final answer). A row moves out of dialing only
-- with its own attempt key, so two nodes cannot count one call twice.
CREATE TABLE campaign_leads (
    campaign     TEXT NOT NULL,
    lead_id      TEXT NOT NULL,
    priority     BIGINT NOT NULL,
    state        TEXT NOT NULL,
    attempts     BIGINT NOT NULL,
    next_at      BIGINT NOT NULL,
    attempt_key  TEXT,
    dialed_at    BIGINT,
    last_result  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (campaign, lead_id)
);
CREATE INDEX campaign_leads_due ON campaign_leads (campaign, state, next_at);
-- Attempts in flight across campaigns (settled whatever the campaign's state).
CREATE INDEX campaign_leads_state ON campaign_leads (state);

-- Daily roll-ups per campaign (UTC days): kept when transcripts and calls
-- are deleted by retention.
CREATE TABLE campaign_daily (
    campaign       TEXT NOT NULL,
    day            TEXT NOT NULL,
    dials          BIGINT NOT NULL,
    connects       BIGINT NOT NULL,
    qualified      BIGINT NOT NULL,
    voicemails     BIGINT NOT NULL,
    handle_ms      BIGINT NOT NULL,
    consent_asked  BIGINT NOT NULL,
    consent_given  BIGINT NOT NULL,
    PRIMARY KEY (campaign, day)
);

-- Outcomes by slot per campaign and day: how many calls ended with each
-- disposition (slot 'disposition') or filled each slot.
CREATE TABLE campaign_daily_outcomes (
    campaign TEXT NOT NULL,
    day      TEXT NOT NULL,
    slot     TEXT NOT NULL,
    value    TEXT NOT NULL,
    n        BIGINT NOT NULL,
    PRIMARY KEY (campaign, day, slot, value)
);
