-- The supervisors' alerts (issue 19): one row per episode, from the check that saw a
-- threshold crossed to the one that saw it no longer crossed. At most one episode of a
-- kind and subject is open at a time (the partial unique index), so a restart or a second
-- node does not start it, nor e-mail it, twice. Times are BIGINT Unix milliseconds.

CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,
    -- What within the kind: an operator's extension; '' for the line as a whole.
    subject    TEXT NOT NULL DEFAULT '',
    text       TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at   BIGINT
);

CREATE UNIQUE INDEX alerts_open ON alerts (kind, subject) WHERE ended_at IS NULL;
CREATE INDEX alerts_started ON alerts (started_at);
