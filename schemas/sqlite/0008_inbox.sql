-- An operator's notices, kept until read (issue 19): the restoration of an ATM they
-- registered a ticket for reaches them at their next login if they were not at the console.
CREATE TABLE inbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The operator's extension.
    operator   TEXT NOT NULL,
    text       TEXT NOT NULL,
    ticket_id  BIGINT,
    created_at BIGINT NOT NULL,
    read_at    BIGINT
);

CREATE INDEX inbox_operator ON inbox (operator, read_at, id);
