-- ATM incident tickets (SPEC §3.3, regulation §6.7): the ATM registry with each ATM's
-- state, the tickets, and every transition of their lifecycle.

CREATE TABLE atms (
    id           TEXT PRIMARY KEY,
    address      TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'in_service' CHECK (state IN ('in_service', 'suspended')),
    -- The security ticket that suspended it (§6.7.5).
    suspended_by BIGINT,
    updated_by   TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Registration numbers restart each year; the row lock of the bump orders concurrent
-- registrations.
CREATE TABLE ticket_counters (
    year     BIGINT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE atm_tickets (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    year        BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('atm_fault', 'atm_security')),
    category    TEXT NOT NULL,
    atm_id      TEXT NOT NULL REFERENCES atms (id),
    atm_address TEXT NOT NULL,
    phone       TEXT,
    caller_name TEXT,
    journal_id  BIGINT REFERENCES journal_entries (id),
    description TEXT NOT NULL,
    state       TEXT NOT NULL,
    operator    TEXT,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    deadline_at BIGINT NOT NULL,
    restored_at BIGINT,
    closed_at   BIGINT,
    updated_at  BIGINT NOT NULL,
    UNIQUE (year, seq)
);
CREATE INDEX atm_tickets_atm ON atm_tickets (atm_id, kind, created_at);
CREATE INDEX atm_tickets_open ON atm_tickets (state, deadline_at);
CREATE INDEX atm_tickets_journal ON atm_tickets (journal_id);

CREATE TABLE atm_ticket_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id  BIGINT NOT NULL REFERENCES atm_tickets (id),
    from_state TEXT,
    to_state   TEXT NOT NULL,
    actor      TEXT NOT NULL,
    role       TEXT NOT NULL,
    note       TEXT,
    at         BIGINT NOT NULL
);
CREATE INDEX atm_ticket_events_ticket ON atm_ticket_events (ticket_id, id);

-- The journal shows the tickets of a call (their registration numbers), export included.
ALTER TABLE journal_entries ADD COLUMN tickets TEXT;
