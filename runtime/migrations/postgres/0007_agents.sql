-- The agents calls are transferred to (issue 15, first step): address (an
-- E.164 number or a sip: URI), skills and languages as ",a,b," lists,
-- how many calls at once, availability (available, busy, offline,
-- wrap_up), and what a reservation needs: calls now, when last chosen
-- (least recently used first), until when in wrap-up. Times: ms since epoch.
CREATE TABLE agents (
    name             TEXT PRIMARY KEY,
    address          TEXT NOT NULL,
    skills           TEXT NOT NULL,
    languages        TEXT NOT NULL,
    max_calls        BIGINT NOT NULL,
    state            TEXT NOT NULL,
    active_calls     BIGINT NOT NULL,
    last_assigned_at BIGINT NOT NULL,
    wrap_up_until    BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);

-- One reservation per call: which agent, when, and when it was released.
CREATE TABLE agent_reservations (
    call_sid    TEXT PRIMARY KEY,
    agent       TEXT NOT NULL,
    reserved_at BIGINT NOT NULL,
    released_at BIGINT
);
