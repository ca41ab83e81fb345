-- The cluster's one operator queue (issue 22). A node takes its turn on the queue under a
-- lock (pg_advisory_xact_lock), reads it, applies one input with the same rules as a single
-- hotline (callflow/queue.rs), and writes back what changed. Times are milliseconds since
-- the Unix epoch.
CREATE TABLE queue_operators (
    extension      TEXT PRIMARY KEY,
    state          TEXT NOT NULL,
    since          BIGINT NOT NULL,
    idle_since     BIGINT NOT NULL,
    registered     BIGINT NOT NULL,
    -- Where a busy operator goes after the call: available, offline or paused:<reason>.
    after_call     TEXT NOT NULL,
    -- The caller the phone rings for (queue_callers.call).
    offer          BIGINT,
    -- The ring timeout or the end of the wrap-up.
    timer_at       BIGINT,
    calls_answered BIGINT NOT NULL,
    pause_reason   TEXT,
    -- The node of the call the operator rings for or is on: a lost node's operators are
    -- freed.
    call_node      TEXT
);

-- Callers waiting, cluster-wide, in arrival order.
CREATE TABLE queue_callers (
    call        BIGINT PRIMARY KEY,
    node        TEXT NOT NULL,
    -- The call's id on its node.
    local_call  BIGINT NOT NULL,
    enqueued    BIGINT NOT NULL,
    offered_to  TEXT,
    expired     BIGINT NOT NULL,
    max_wait_at BIGINT,
    position_at BIGINT,
    UNIQUE (node, local_call)
);

-- What the queue has to tell a call on another node (an offer, its withdrawal, a position,
-- max wait): taken by that node in id order.
CREATE TABLE queue_notices (
    id         BIGSERIAL PRIMARY KEY,
    node       TEXT NOT NULL,
    local_call BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    operator   TEXT,
    position   BIGINT
);
CREATE INDEX queue_notices_node ON queue_notices (node, id);

-- Where each node can ring an operator from: the node's own SIP binding (with the Path the
-- edge added, which any node can route through) or its browser phone.
CREATE TABLE queue_reachable (
    extension  TEXT NOT NULL,
    node       TEXT NOT NULL,
    contact    TEXT,
    path       TEXT,
    source     TEXT,
    transport  TEXT,
    expires_at BIGINT,
    PRIMARY KEY (extension, node)
);

-- Bumped by every turn that changed the queue: the nodes' cue to look again.
CREATE TABLE queue_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO queue_version (id, version) VALUES (1, 0);
