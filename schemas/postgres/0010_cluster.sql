-- Several nodes on one database (issue 22). Each node of a cluster has a row here and
-- beats its heartbeat; a node whose heartbeat stops is marked lost by the one survivor
-- that takes over its work: its calls' journal entries, its notifications and
-- transcription jobs in hand.
CREATE TABLE cluster_nodes (
    node_id      TEXT PRIMARY KEY,
    state        TEXT NOT NULL CHECK (state IN ('up', 'draining', 'stopped', 'lost')),
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    -- Where the other nodes reach this node's HTTP (the recordings on its disk).
    http_url     TEXT,
    -- The node's calls and queue as of its last heartbeat (JSON), for every node's
    -- wallboard.
    live         TEXT,
    -- Who took over a lost node's work, and when.
    taken_by     TEXT,
    taken_at     BIGINT
);

-- Named leases for work that must run on one node at a time (overdue checks, retention):
-- the holder renews it; another node takes it once it has run out.
CREATE TABLE cluster_leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL
);

-- The node that took the call (NULL on a single node), and why a call ended as it did
-- when the reason is not the call's own (`node_lost`).
ALTER TABLE journal_entries ADD COLUMN node_id TEXT;
ALTER TABLE journal_entries ADD COLUMN end_reason TEXT;
CREATE INDEX journal_open_node ON journal_entries (node_id) WHERE disposition = 'in_progress';

-- The node delivering a notification or running a job (status sending / running).
ALTER TABLE notifications ADD COLUMN claimed_by TEXT;
ALTER TABLE transcription_jobs ADD COLUMN claimed_by TEXT;
