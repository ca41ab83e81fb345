//! SQL of the notifications outbox. Rows are enqueued inside the transaction of the record
//! they announce ([`enqueue`]); the notify worker claims due rows one at a time, and marks
//! each sent, or due again later, or failed after too many attempts. A row left `sending`
//! by a crash is put back to `pending` at start-up ([`recover`]): delivery is at least
//! once, and the e-mail's Message-ID and the webhook's delivery id are the row's, so that a
//! receiver can tell a resend.

use super::{from_ms, ms, opt_from_ms, Store, StoreError};
use crate::records::notice::{Notice, Sink};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

/// A row of the outbox.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Queued {
    pub id: i64,
    pub event: String,
    pub channel: String,
    pub recipient: String,
    pub subject: String,
    #[serde(skip)]
    pub body: String,
    #[serde(skip)]
    pub payload: String,
    pub entity: String,
    pub entity_id: i64,
    /// pending / sending / sent / failed.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT id, event, channel, recipient, subject, body, payload, entity, \
     entity_id, status, attempts, next_attempt_at, last_error, created_at, sent_at FROM notifications";

fn from_row(r: &AnyRow) -> Result<Queued, StoreError> {
    Ok(Queued {
        id: r.try_get(0)?,
        event: r.try_get(1)?,
        channel: r.try_get(2)?,
        recipient: r.try_get(3)?,
        subject: r.try_get(4)?,
        body: r.try_get(5)?,
        payload: r.try_get(6)?,
        entity: r.try_get(7)?,
        entity_id: r.try_get(8)?,
        status: r.try_get(9)?,
        attempts: r.try_get(10)?,
        next_attempt_at: from_ms(r.try_get(11)?),
        last_error: r.try_get(12)?,
        created_at: from_ms(r.try_get(13)?),
        sent_at: opt_from_ms(r.try_get(14)?),
    })
}

/// Writes `notice` once per sink (rows already there for the same event, record and sink
/// are left alone). Returns how many rows were added.
pub async fn enqueue(
    conn: &mut AnyConnection,
    notice: &Notice,
    sinks: &[Sink],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let payload = notice.payload.to_string();
    let mut added = 0;
    for sink in sinks {
        let done = sqlx::query(
            "INSERT INTO notifications (dedupe_key, event, channel, recipient, subject, body, \
             payload, entity, entity_id, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $10) \
             ON CONFLICT (dedupe_key) DO NOTHING",
        )
        .bind(notice.dedupe_key(sink))
        .bind(notice.event)
        .bind(sink.channel())
        .bind(sink.recipient())
        .bind(notice.subject.as_str())
        .bind(notice.text.as_str())
        .bind(payload.as_str())
        .bind(notice.entity)
        .bind(notice.entity_id)
        .bind(ms(now))
        .execute(&mut *conn)
        .await?;
        added += done.rows_affected();
    }
    Ok(added)
}

/// Puts rows a crashed process left `sending` back to `pending`; returns how many. A node
/// of a cluster puts back its own only: the others' are being sent, or are taken over by a
/// survivor when their node is lost ([`super::cluster::take_over`]).
pub async fn recover(store: &Store) -> Result<u64, StoreError> {
    let sql = "UPDATE notifications SET status = 'pending', claimed_by = NULL \
               WHERE status = 'sending'";
    let done = match store.node() {
        None => sqlx::query(sql).execute(store.pool()).await?,
        Some(node) => {
            sqlx::query(&format!(
                "{sql} AND (claimed_by = $1 OR claimed_by IS NULL)"
            ))
            .bind(node)
            .execute(store.pool())
            .await?
        }
    };
    Ok(done.rows_affected())
}

/// The oldest rows due at `now`.
pub async fn due(
    store: &Store,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Queued>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY id LIMIT $2"
    ))
    .bind(ms(now))
    .bind(limit as i64)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Takes a due row for delivery; `false` if another worker (or a retry request) got there
/// first.
pub async fn claim(store: &Store, id: i64) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE notifications SET status = 'sending', attempts = attempts + 1, claimed_by = $2 \
         WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(store.node())
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn mark_sent(store: &Store, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE notifications SET status = 'sent', sent_at = $1, last_error = NULL WHERE id = $2",
    )
    .bind(ms(now))
    .bind(id)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// A delivery failed: due again at `retry_at`, or `failed` for good when `retry_at` is
/// `None`. The error is kept for the people who look at the outbox.
pub async fn mark_failed(
    store: &Store,
    id: i64,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let (status, at) = match retry_at {
        Some(at) => ("pending", ms(at)),
        None => ("failed", ms(Utc::now())),
    };
    sqlx::query(
        "UPDATE notifications SET status = $1, next_attempt_at = $2, last_error = $3 WHERE id = $4",
    )
    .bind(status)
    .bind(at)
    .bind(error)
    .bind(id)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Failed rows due again now (an administrator's retry); returns how many.
pub async fn retry_failed(store: &Store, now: DateTime<Utc>) -> Result<u64, StoreError> {
    Ok(sqlx::query(
        "UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = $1 \
         WHERE status = 'failed'",
    )
    .bind(ms(now))
    .execute(store.pool())
    .await?
    .rows_affected())
}

/// The notices about one record, oldest first.
pub async fn for_entity(
    store: &Store,
    entity: &str,
    entity_id: i64,
) -> Result<Vec<Queued>, StoreError> {
    let rows = sqlx::query(&format!(
        "{SELECT} WHERE entity = $1 AND entity_id = $2 ORDER BY id"
    ))
    .bind(entity)
    .bind(entity_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Rows by status, newest first; `None` lists all.
pub async fn list(
    store: &Store,
    status: Option<&str>,
    limit: usize,
) -> Result<Vec<Queued>, StoreError> {
    let rows = match status {
        Some(s) => {
            sqlx::query(&format!(
                "{SELECT} WHERE status = $1 ORDER BY id DESC LIMIT $2"
            ))
            .bind(s)
            .bind(limit as i64)
            .fetch_all(store.pool())
            .await?
        }
        None => {
            sqlx::query(&format!("{SELECT} ORDER BY id DESC LIMIT $1"))
                .bind(limit as i64)
                .fetch_all(store.pool())
                .await?
        }
    };
    rows.iter().map(from_row).collect()
}

/// Rows not delivered yet (pending or being sent): the backlog `/metrics` shows.
pub async fn backlog(store: &Store) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM notifications WHERE status IN ('pending', 'sending')",
    )
    .fetch_one(store.pool())
    .await?)
}
