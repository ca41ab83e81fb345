//! The supervisors' alert episodes (`records::alert`), as rows: started once per kind and
//! subject while open (the partial unique index `alerts_open`), ended by a later check.

use super::{from_ms, ms, Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

/// An episode.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub text: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

const SELECT: &str = "SELECT id, kind, subject, text, started_at, ended_at FROM alerts";

fn row(r: &sqlx::any::AnyRow) -> Result<AlertRow, StoreError> {
    let ended: Option<i64> = r.try_get(5)?;
    Ok(AlertRow {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        subject: r.try_get(2)?,
        text: r.try_get(3)?,
        started_at: from_ms(r.try_get(4)?),
        ended_at: ended.map(from_ms),
    })
}

/// The episodes not yet ended, oldest first.
pub async fn open_in(conn: &mut AnyConnection) -> Result<Vec<AlertRow>, StoreError> {
    let rows = sqlx::query(&format!("{SELECT} WHERE ended_at IS NULL ORDER BY id"))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(row).collect()
}

/// [`open_in`] on a pooled connection.
pub async fn open(store: &Store) -> Result<Vec<AlertRow>, StoreError> {
    let mut conn = store.pool().acquire().await?;
    open_in(&mut conn).await
}

/// The latest `limit` episodes, newest first.
pub async fn recent(store: &Store, limit: i64) -> Result<Vec<AlertRow>, StoreError> {
    let rows = sqlx::query(&format!("{SELECT} ORDER BY id DESC LIMIT $1"))
        .bind(limit)
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(row).collect()
}

/// Starts an episode; `None` when one of this kind and subject is already open.
pub async fn start_in(
    conn: &mut AnyConnection,
    kind: &str,
    subject: &str,
    text: &str,
    now: DateTime<Utc>,
) -> Result<Option<AlertRow>, StoreError> {
    let r = sqlx::query(
        "INSERT INTO alerts (kind, subject, text, started_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (kind, subject) WHERE ended_at IS NULL DO NOTHING \
         RETURNING id, kind, subject, text, started_at, ended_at",
    )
    .bind(kind)
    .bind(subject)
    .bind(text)
    .bind(ms(now))
    .fetch_optional(&mut *conn)
    .await?;
    r.as_ref().map(row).transpose()
}

/// Ends an open episode.
pub async fn end_in(
    conn: &mut AnyConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE alerts SET ended_at = $1 WHERE id = $2 AND ended_at IS NULL")
        .bind(ms(now))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
