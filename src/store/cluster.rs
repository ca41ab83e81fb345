//! SQL of the cluster's membership: the nodes' heartbeats, the take-over of a lost node's
//! work, and named leases for work that runs on one node at a time.
//!
//! A node is *lost* when its heartbeat is older than the cluster's `lost_after`. The first
//! survivor to see it marks it lost in the same transaction as it takes over its work
//! ([`take_over`]): the conditional update of the node's row is the claim, so two
//! survivors never both do it, and the work is taken over exactly once.

use super::audit::{self, Change, Kind, Val};
use super::journal::SYSTEM;
use super::{from_ms, ms, opt_from_ms, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

/// Why a call ended without its own end: the node it was on stopped answering.
pub const NODE_LOST: &str = "node_lost";

/// A node as its row says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Node {
    pub node_id: String,
    /// up / draining / stopped / lost.
    pub state: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// The survivor that took over this node's work, when it was lost.
    pub taken_by: Option<String>,
    pub taken_at: Option<DateTime<Utc>>,
}

/// What a survivor took over from a lost node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TakenOver {
    /// Journal entries of calls in progress on it, ended as failed (`node_lost`).
    pub calls: Vec<i64>,
    /// Notifications it was sending, due again.
    pub notifications: u64,
    /// Transcription jobs it was running, due again.
    pub jobs: u64,
    /// Leases it held, released.
    pub leases: u64,
}

/// Registers `node` as up (a start or a restart), with a fresh heartbeat. Returns when the
/// node's previous run started, if it ran before: entries of that run that a survivor
/// ended are looked at again by the node's recovery (their files are on this node).
pub async fn join(
    store: &Store,
    node: &str,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let mut tx = store.begin_write().await?;
    let before: Option<i64> =
        sqlx::query_scalar("SELECT started_at FROM cluster_nodes WHERE node_id = $1")
            .bind(node)
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query(
        "INSERT INTO cluster_nodes (node_id, state, started_at, heartbeat_at) \
         VALUES ($1, 'up', $2, $2) ON CONFLICT (node_id) DO UPDATE SET state = 'up', \
         started_at = $2, heartbeat_at = $2, taken_by = NULL, taken_at = NULL",
    )
    .bind(node)
    .bind(ms(now))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(before.map(from_ms))
}

/// Beats `node`'s heartbeat and sets its state (`up`, `draining` or `stopped`). Returns
/// `false` when the node had been declared lost meanwhile (its heartbeat stalled longer
/// than `lost_after`): its calls in progress were ended by a survivor.
pub async fn heartbeat(
    store: &Store,
    node: &str,
    state: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE cluster_nodes SET heartbeat_at = $1, state = $2 \
         WHERE node_id = $3 AND state <> 'lost'",
    )
    .bind(ms(now))
    .bind(state)
    .bind(node)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Where the other nodes reach `node`'s HTTP: its recordings and voicemail are there.
pub async fn set_http_url(store: &Store, node: &str, url: Option<&str>) -> Result<(), StoreError> {
    sqlx::query("UPDATE cluster_nodes SET http_url = $1 WHERE node_id = $2")
        .bind(url)
        .bind(node)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// `node`'s HTTP address, as it said ([`set_http_url`]).
pub async fn http_url(store: &Store, node: &str) -> Result<Option<String>, StoreError> {
    let url: Option<Option<String>> =
        sqlx::query_scalar("SELECT http_url FROM cluster_nodes WHERE node_id = $1")
            .bind(node)
            .fetch_optional(store.pool())
            .await?;
    Ok(url.flatten())
}

/// Publishes `node`'s live view (JSON) for the other nodes' wallboards.
pub async fn publish_live(store: &Store, node: &str, live: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE cluster_nodes SET live = $1 WHERE node_id = $2")
        .bind(live)
        .bind(node)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// The live views of the nodes other than `me` that are up or draining and were heard from
/// at or after `fresh_after`: `(node, JSON)`.
pub async fn others_live(
    store: &Store,
    me: &str,
    fresh_after: DateTime<Utc>,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT node_id, live FROM cluster_nodes WHERE node_id <> $1 \
         AND state IN ('up', 'draining') AND heartbeat_at >= $2 AND live IS NOT NULL \
         ORDER BY node_id",
    )
    .bind(me)
    .bind(ms(fresh_after))
    .fetch_all(store.pool())
    .await?)
}

/// Every node, by name.
pub async fn nodes(store: &Store) -> Result<Vec<Node>, StoreError> {
    let rows = sqlx::query(
        "SELECT node_id, state, started_at, heartbeat_at, taken_by, taken_at \
         FROM cluster_nodes ORDER BY node_id",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Node {
                node_id: r.try_get(0)?,
                state: r.try_get(1)?,
                started_at: from_ms(r.try_get(2)?),
                heartbeat_at: from_ms(r.try_get(3)?),
                taken_by: r.try_get(4)?,
                taken_at: opt_from_ms(r.try_get(5)?),
            })
        })
        .collect()
}

/// Nodes other than `me` that are up or draining with a heartbeat before `stale_before`.
pub async fn silent(
    store: &Store,
    me: &str,
    stale_before: DateTime<Utc>,
) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT node_id FROM cluster_nodes WHERE node_id <> $1 \
         AND state IN ('up', 'draining') AND heartbeat_at < $2 ORDER BY node_id",
    )
    .bind(me)
    .bind(ms(stale_before))
    .fetch_all(store.pool())
    .await?)
}

/// Takes over `lost`'s work as `me`, if its heartbeat is still older than `stale_before`
/// and nobody took it over first; `None` otherwise. In one transaction:
/// - the node is marked lost, taken by `me`;
/// - each of its calls in progress ends as failed, reason [`NODE_LOST`], at its last
///   heartbeat (the last moment it is known to have been up), audited as the call flow's
///   own writes are;
/// - the notifications it was sending and the transcription jobs it was running are due
///   again, for any node's worker;
/// - the leases it held are released.
pub async fn take_over(
    store: &Store,
    lost: &str,
    me: &str,
    stale_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<TakenOver>, StoreError> {
    let mut tx = store.begin_write().await?;
    let heartbeat: Option<i64> = sqlx::query_scalar(
        "UPDATE cluster_nodes SET state = 'lost', taken_by = $1, taken_at = $2 \
         WHERE node_id = $3 AND state IN ('up', 'draining') AND heartbeat_at < $4 \
         RETURNING heartbeat_at",
    )
    .bind(me)
    .bind(ms(now))
    .bind(lost)
    .bind(ms(stale_before))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(heartbeat) = heartbeat else {
        return Ok(None);
    };
    let calls: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM journal_entries WHERE node_id = $1 AND disposition = 'in_progress' \
         ORDER BY id",
    )
    .bind(lost)
    .fetch_all(&mut *tx)
    .await?;
    for &id in &calls {
        let ended: i64 = sqlx::query_scalar("SELECT arrived_at FROM journal_entries WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        let changes = [
            Change::new("ended_at", Kind::Time, Val::Int(heartbeat.max(ended))),
            Change::new("disposition", Kind::Text, Val::Text("failed".into())),
            Change::new("end_reason", Kind::Text, Val::Text(NODE_LOST.into())),
        ];
        audit::update_with_audit(
            &mut tx,
            "journal_entries",
            "journal",
            id,
            &changes,
            SYSTEM,
            now,
        )
        .await?;
        super::journal::touch(&mut tx, id, now).await?;
    }
    let notifications = sqlx::query(
        "UPDATE notifications SET status = 'pending', claimed_by = NULL \
         WHERE status = 'sending' AND claimed_by = $1",
    )
    .bind(lost)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let jobs = sqlx::query(
        "UPDATE transcription_jobs SET status = 'pending', claimed_by = NULL, updated_at = $1 \
         WHERE status = 'running' AND claimed_by = $2",
    )
    .bind(ms(now))
    .bind(lost)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let leases = sqlx::query("DELETE FROM cluster_leases WHERE holder = $1")
        .bind(lost)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(Some(TakenOver {
        calls,
        notifications,
        jobs,
        leases,
    }))
}

/// Takes or renews the lease `name` for `holder` until `until`: `true` when `holder` holds
/// it now (it was free, had run out, or was already its own).
pub async fn lease(
    store: &Store,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO cluster_leases (name, holder, until) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = $2, until = $3 \
         WHERE cluster_leases.holder = $2 OR cluster_leases.until < $4",
    )
    .bind(name)
    .bind(holder)
    .bind(ms(until))
    .bind(ms(now))
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the lease `name` up, if `holder` holds it (a node that stops cleanly).
pub async fn release(store: &Store, name: &str, holder: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM cluster_leases WHERE name = $1 AND holder = $2")
        .bind(name)
        .bind(holder)
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Gives up every lease `holder` holds.
pub async fn release_all(store: &Store, holder: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM cluster_leases WHERE holder = $1")
        .bind(holder)
        .execute(store.pool())
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::journal::NewCall;
    use chrono::Duration;

    async fn sqlite() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("h.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        (store, dir)
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + s, 0).unwrap()
    }

    async fn call(store: &Store, call_id: &str, arrived: DateTime<Utc>) -> i64 {
        let mut tx = store.begin_write().await.unwrap();
        let new = NewCall {
            call_id: Some(call_id.into()),
            arrived_at: arrived,
            phone: "+79160000001".into(),
            caller_name: None,
        };
        let id = crate::store::journal::insert_calls_in(
            &mut tx,
            &[new],
            &[2026],
            0,
            arrived,
            store.node(),
        )
        .await
        .unwrap()[0];
        tx.commit().await.unwrap();
        id
    }

    #[tokio::test]
    async fn a_silent_node_is_taken_over_once_and_only_its_own_work() {
        let (db, _dir) = sqlite().await;
        let a = db.clone().with_node(Some("a"));
        let b = db.clone().with_node(Some("b"));
        assert_eq!(join(&a, "a", at(0)).await.unwrap(), None);
        join(&b, "b", at(0)).await.unwrap();
        let on_a = call(&a, "on-a", at(1)).await;
        let on_b = call(&b, "on-b", at(1)).await;
        heartbeat(&a, "a", "up", at(3)).await.unwrap();
        heartbeat(&b, "b", "up", at(9)).await.unwrap();

        // At 9 s, with 5 s to be lost, A (last heard at 3 s) is silent; B is not.
        let stale = at(9) - Duration::seconds(5);
        assert_eq!(silent(&b, "b", stale).await.unwrap(), vec!["a".to_string()]);
        assert!(silent(&a, "a", stale).await.unwrap().is_empty());
        let taken = take_over(&b, "a", "b", stale, at(9))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(taken.calls, vec![on_a]);
        // A second survivor (or B again) finds nothing left to take.
        assert_eq!(take_over(&b, "a", "c", stale, at(9)).await.unwrap(), None);

        let row: (String, Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT disposition, ended_at, end_reason FROM journal_entries WHERE id = $1",
        )
        .bind(on_a)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(
            row,
            ("failed".into(), Some(ms(at(3))), Some(NODE_LOST.into()))
        );
        let (disposition,): (String,) =
            sqlx::query_as("SELECT disposition FROM journal_entries WHERE id = $1")
                .bind(on_b)
                .fetch_one(db.pool())
                .await
                .unwrap();
        assert_eq!(disposition, "in_progress", "B's own call is left alone");
        let audited: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE entity = 'journal' AND entity_id = $1",
        )
        .bind(on_a)
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert!(audited >= 3, "the ending is audited ({audited} lines)");

        // A lost node's heartbeat is refused until it joins again.
        assert!(!heartbeat(&a, "a", "up", at(10)).await.unwrap());
        let nodes = nodes(&db).await.unwrap();
        assert_eq!(nodes[0].state, "lost");
        assert_eq!(nodes[0].taken_by.as_deref(), Some("b"));
        assert_eq!(join(&a, "a", at(11)).await.unwrap(), Some(at(0)));
        assert!(heartbeat(&a, "a", "up", at(12)).await.unwrap());
    }

    #[tokio::test]
    async fn a_lease_is_held_by_one_node_until_it_runs_out() {
        let (db, _dir) = sqlite().await;
        assert!(lease(&db, "retention", "a", at(0), at(30)).await.unwrap());
        assert!(!lease(&db, "retention", "b", at(10), at(40)).await.unwrap());
        assert!(lease(&db, "retention", "a", at(20), at(50)).await.unwrap());
        assert!(!lease(&db, "retention", "b", at(49), at(79)).await.unwrap());
        assert!(lease(&db, "retention", "b", at(51), at(81)).await.unwrap());
        release(&db, "retention", "a").await.unwrap();
        assert!(!lease(&db, "retention", "a", at(52), at(82)).await.unwrap());
        release(&db, "retention", "b").await.unwrap();
        assert!(lease(&db, "retention", "a", at(53), at(83)).await.unwrap());
    }
}
