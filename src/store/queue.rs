//! SQL of the cluster's one operator queue (migration `0011_queue`).
//!
//! The queue's rules are `callflow::queue`'s; this module only keeps its state between the
//! nodes' turns. A turn is one transaction: [`lock`] serialises the turns of every node
//! (`pg_advisory_xact_lock` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` already does), the
//! node [`load`]s the queue, applies one input, and [`save`]s what changed, with the notices
//! for calls on other nodes ([`push_notices`]). So an operator is offered one call at a
//! time cluster-wide, and callers are served in one arrival order, whichever node they
//! came in on. Times are milliseconds since the Unix epoch.

use super::{Backend, Store, StoreError};
use sqlx::{Any, Row, Transaction};

/// The advisory lock's key: the queue's turns ("hotline queue").
const QUEUE_LOCK: i64 = 0x686f_746c_0071;

/// An operator's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub extension: String,
    pub state: String,
    pub since: i64,
    pub idle_since: i64,
    pub registered: bool,
    /// `available`, `offline` or `paused:<reason>`.
    pub after_call: String,
    pub offer: Option<i64>,
    pub timer_at: Option<i64>,
    pub calls_answered: i64,
    pub pause_reason: Option<String>,
    /// The node of the call the operator rings for or is on.
    pub call_node: Option<String>,
}

/// A waiting caller's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerRow {
    /// The caller's key in the cluster's queue.
    pub call: i64,
    pub node: String,
    /// The call's id on its node.
    pub local_call: i64,
    pub enqueued: i64,
    pub offered_to: Option<String>,
    pub expired: bool,
    pub max_wait_at: Option<i64>,
    pub position_at: Option<i64>,
}

/// The queue as stored: operators by extension, callers in arrival order (their keys are
/// handed out in turn order, under the lock; the nodes' clocks do not order them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueRows {
    pub operators: Vec<OperatorRow>,
    pub callers: Vec<CallerRow>,
}

/// Something the queue tells a call on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeRow {
    pub node: String,
    pub local_call: i64,
    /// `offer`, `cancel`, `position` or `max_wait`.
    pub kind: String,
    pub operator: Option<String>,
    pub position: Option<i64>,
}

/// Where a node can ring an operator from: its SIP binding (contact, the edge's Path, the
/// REGISTER's source and transport) or, with no contact, its browser phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReachRow {
    pub extension: String,
    pub node: String,
    pub contact: Option<String>,
    /// The Path, comma-separated.
    pub path: Option<String>,
    pub source: Option<String>,
    pub transport: Option<String>,
    pub expires_at: Option<i64>,
}

/// Begins a turn: a write transaction that holds the queue's lock until it ends.
pub async fn lock(store: &Store) -> Result<Transaction<'static, Any>, StoreError> {
    let mut tx = store.begin_write().await?;
    if store.backend() == Backend::Postgres {
        // The turn's commit does not wait for the disk: what a turn decides is for callers
        // in the line now, and a database crash ends their wait anyway (a caller whose
        // place was lost goes to voicemail at max wait). The lock, not the flush, makes
        // the claim atomic.
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1), set_config('synchronous_commit', 'off', true)",
        )
        .bind(QUEUE_LOCK)
        .execute(&mut *tx)
        .await?;
    }
    Ok(tx)
}

/// The queue as the last turn left it.
pub async fn load(tx: &mut Transaction<'static, Any>) -> Result<QueueRows, StoreError> {
    let operators = sqlx::query(
        "SELECT extension, state, since, idle_since, registered, after_call, offer, \
         timer_at, calls_answered, pause_reason, call_node FROM queue_operators \
         ORDER BY extension",
    )
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| {
        Ok(OperatorRow {
            extension: r.try_get(0)?,
            state: r.try_get(1)?,
            since: r.try_get(2)?,
            idle_since: r.try_get(3)?,
            registered: r.try_get::<i64, _>(4)? != 0,
            after_call: r.try_get(5)?,
            offer: r.try_get(6)?,
            timer_at: r.try_get(7)?,
            calls_answered: r.try_get(8)?,
            pause_reason: r.try_get(9)?,
            call_node: r.try_get(10)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let callers = sqlx::query(
        "SELECT call, node, local_call, enqueued, offered_to, expired, max_wait_at, \
         position_at FROM queue_callers ORDER BY call",
    )
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|r| {
        Ok(CallerRow {
            call: r.try_get(0)?,
            node: r.try_get(1)?,
            local_call: r.try_get(2)?,
            enqueued: r.try_get(3)?,
            offered_to: r.try_get(4)?,
            expired: r.try_get::<i64, _>(5)? != 0,
            max_wait_at: r.try_get(6)?,
            position_at: r.try_get(7)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(QueueRows { operators, callers })
}

/// The queue outside a turn (a snapshot, a node looking for its next timer): it may be a
/// turn behind by the time it is read.
pub async fn peek(store: &Store) -> Result<QueueRows, StoreError> {
    let mut tx = store.pool().begin().await?;
    let rows = load(&mut tx).await?;
    tx.rollback().await?;
    Ok(rows)
}

/// Writes what changed from `before` to `after`; returns whether anything did (then the
/// turn [`bump`]s the version).
pub async fn save(
    tx: &mut Transaction<'static, Any>,
    before: &QueueRows,
    after: &QueueRows,
) -> Result<bool, StoreError> {
    let mut changed = false;
    for op in &after.operators {
        if before.operators.iter().any(|b| b == op) {
            continue;
        }
        changed = true;
        sqlx::query(
            "INSERT INTO queue_operators (extension, state, since, idle_since, registered, \
             after_call, offer, timer_at, calls_answered, pause_reason, call_node) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (extension) DO UPDATE SET state = $2, since = $3, idle_since = $4, \
             registered = $5, after_call = $6, offer = $7, timer_at = $8, \
             calls_answered = $9, pause_reason = $10, call_node = $11",
        )
        .bind(&op.extension)
        .bind(&op.state)
        .bind(op.since)
        .bind(op.idle_since)
        .bind(op.registered as i64)
        .bind(&op.after_call)
        .bind(op.offer)
        .bind(op.timer_at)
        .bind(op.calls_answered)
        .bind(&op.pause_reason)
        .bind(&op.call_node)
        .execute(&mut **tx)
        .await?;
    }
    let old: std::collections::HashMap<i64, &CallerRow> =
        before.callers.iter().map(|c| (c.call, c)).collect();
    let new: std::collections::HashSet<i64> = after.callers.iter().map(|c| c.call).collect();
    for gone in &before.callers {
        if new.contains(&gone.call) {
            continue;
        }
        changed = true;
        sqlx::query("DELETE FROM queue_callers WHERE call = $1")
            .bind(gone.call)
            .execute(&mut **tx)
            .await?;
    }
    for c in &after.callers {
        if old.get(&c.call) == Some(&c) {
            continue;
        }
        changed = true;
        sqlx::query(
            "INSERT INTO queue_callers (call, node, local_call, enqueued, offered_to, expired, \
             max_wait_at, position_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (call) DO UPDATE SET offered_to = $5, expired = $6, \
             max_wait_at = $7, position_at = $8",
        )
        .bind(c.call)
        .bind(&c.node)
        .bind(c.local_call)
        .bind(c.enqueued)
        .bind(&c.offered_to)
        .bind(c.expired as i64)
        .bind(c.max_wait_at)
        .bind(c.position_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(changed)
}

/// Marks the queue changed, so that the nodes look again (on PostgreSQL they are told at
/// the commit); returns the new version.
pub async fn bump(tx: &mut Transaction<'static, Any>) -> Result<i64, StoreError> {
    let version: i64 = sqlx::query_scalar(
        "UPDATE queue_version SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut **tx)
    .await?;
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_notify('hotline_queue', '')")
            .execute(&mut **tx)
            .await?;
    }
    Ok(version)
}

/// The channel a turn that changed the queue notifies on.
pub const CHANNEL: &str = "hotline_queue";

/// A connection listening on [`CHANNEL`] (PostgreSQL only): a node wakes when another
/// node's turn changed the queue, rather than at its next look.
pub async fn listen(store: &Store) -> Result<sqlx::postgres::PgListener, StoreError> {
    let mut listener = sqlx::postgres::PgListener::connect(&store.url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// The queue's version: it changes with every turn that changed something.
pub async fn version(store: &Store) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM queue_version WHERE id = 1")
            .fetch_one(store.pool())
            .await?,
    )
}

/// Leaves notices for calls on other nodes (in the turn, so they go with what it decided).
pub async fn push_notices(
    tx: &mut Transaction<'static, Any>,
    notices: &[NoticeRow],
) -> Result<(), StoreError> {
    for n in notices {
        sqlx::query(
            "INSERT INTO queue_notices (node, local_call, kind, operator, position) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&n.node)
        .bind(n.local_call)
        .bind(&n.kind)
        .bind(&n.operator)
        .bind(n.position)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Takes the notices left for `node`'s calls, oldest first.
pub async fn take_notices(store: &Store, node: &str) -> Result<Vec<NoticeRow>, StoreError> {
    let rows = sqlx::query(
        "DELETE FROM queue_notices WHERE node = $1 \
         RETURNING id, node, local_call, kind, operator, position",
    )
    .bind(node)
    .fetch_all(store.pool())
    .await?;
    let mut notices = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>(0)?,
                NoticeRow {
                    node: r.try_get(1)?,
                    local_call: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    operator: r.try_get(4)?,
                    position: r.try_get(5)?,
                },
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    notices.sort_by_key(|(id, _)| *id);
    Ok(notices.into_iter().map(|(_, n)| n).collect())
}

/// Says whether `node` can ring `row.extension`: `Some` upserts the row, `None` deletes it.
pub async fn set_reachable(
    tx: &mut Transaction<'static, Any>,
    extension: &str,
    node: &str,
    row: Option<&ReachRow>,
) -> Result<(), StoreError> {
    match row {
        None => {
            sqlx::query("DELETE FROM queue_reachable WHERE extension = $1 AND node = $2")
                .bind(extension)
                .bind(node)
                .execute(&mut **tx)
                .await?;
        }
        Some(r) => {
            sqlx::query(
                "INSERT INTO queue_reachable (extension, node, contact, path, source, \
                 transport, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (extension, node) DO UPDATE SET \
                 contact = COALESCE($3, queue_reachable.contact), \
                 path = COALESCE($4, queue_reachable.path), \
                 source = COALESCE($5, queue_reachable.source), \
                 transport = COALESCE($6, queue_reachable.transport), \
                 expires_at = COALESCE($7, queue_reachable.expires_at)",
            )
            .bind(extension)
            .bind(node)
            .bind(&r.contact)
            .bind(&r.path)
            .bind(&r.source)
            .bind(&r.transport)
            .bind(r.expires_at)
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

/// Every node's reachability rows, with whether the node is gone (lost or stopped).
pub async fn reachable(
    tx: &mut Transaction<'static, Any>,
) -> Result<Vec<(ReachRow, bool)>, StoreError> {
    let rows = sqlx::query(
        "SELECT r.extension, r.node, r.contact, r.path, r.source, r.transport, r.expires_at, \
         CASE WHEN n.state IN ('lost', 'stopped') THEN 1 ELSE 0 END \
         FROM queue_reachable r LEFT JOIN cluster_nodes n ON n.node_id = r.node \
         ORDER BY r.extension, r.node",
    )
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            Ok((
                ReachRow {
                    extension: r.try_get(0)?,
                    node: r.try_get(1)?,
                    contact: r.try_get(2)?,
                    path: r.try_get(3)?,
                    source: r.try_get(4)?,
                    transport: r.try_get(5)?,
                    expires_at: r.try_get(6)?,
                },
                r.try_get::<i32, _>(7)
                    .map(|v| v != 0)
                    .or_else(|_| r.try_get::<i64, _>(7).map(|v| v != 0))?,
            ))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?)
}

/// Clears what `node`'s previous run left: the notices for its calls and where it could
/// ring operators from (its phones register again with this run).
pub async fn forget_node(tx: &mut Transaction<'static, Any>, node: &str) -> Result<(), StoreError> {
    for table in ["queue_notices", "queue_reachable"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE node = $1"))
            .bind(node)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The nodes that are gone: lost (taken over) or stopped. Their callers have hung up with
/// their calls, and the operators on those calls are free.
pub async fn gone_nodes(tx: &mut Transaction<'static, Any>) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT node_id FROM cluster_nodes WHERE state IN ('lost', 'stopped') ORDER BY node_id",
    )
    .fetch_all(&mut **tx)
    .await?)
}
