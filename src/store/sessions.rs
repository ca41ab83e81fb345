//! The SQL of console sessions. A row is keyed by the SHA-256 of the cookie's secret.

use super::{from_ms, ms, opt_from_ms, Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

/// A session as stored.
#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user_id: i64,
    pub csrf: String,
    pub factor_due: bool,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut AnyConnection,
    id_hash: &str,
    user_id: i64,
    csrf: &str,
    factor_due: bool,
    address: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, user_id, csrf, factor_due, address, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(id_hash)
    .bind(user_id)
    .bind(csrf)
    .bind(i64::from(factor_due))
    .bind(address)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn get(store: &Store, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
    let row = sqlx::query(
        "SELECT user_id, csrf, factor_due, created_at, last_seen_at, ended_at \
         FROM console_sessions WHERE id_hash = $1",
    )
    .bind(id_hash)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| -> Result<SessionRow, StoreError> {
        Ok(SessionRow {
            user_id: r.try_get(0)?,
            csrf: r.try_get(1)?,
            factor_due: r.try_get::<i64, _>(2)? != 0,
            created_at: from_ms(r.try_get(3)?),
            last_seen_at: from_ms(r.try_get(4)?),
            ended_at: opt_from_ms(r.try_get(5)?),
        })
    })
    .transpose()
}

/// Marks the session used at `now` (its idle clock restarts). Written only when the last
/// mark is older than `every`, so that every page view is not a write.
pub async fn touch(
    store: &Store,
    id_hash: &str,
    now: DateTime<Utc>,
    every: std::time::Duration,
) -> Result<(), StoreError> {
    let every = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    sqlx::query(
        "UPDATE console_sessions SET last_seen_at = $1 \
         WHERE id_hash = $2 AND ended_at IS NULL AND last_seen_at < $1 - $3",
    )
    .bind(ms(now))
    .bind(id_hash)
    .bind(every)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Ends a session; true if it was open.
pub async fn end(
    conn: &mut AnyConnection,
    id_hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE console_sessions SET ended_at = $1 WHERE id_hash = $2 AND ended_at IS NULL",
    )
    .bind(ms(now))
    .bind(id_hash)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Ends every open session of a user (disabled, or a new password); returns how many.
pub async fn end_all(
    conn: &mut AnyConnection,
    user_id: i64,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "UPDATE console_sessions SET ended_at = $1 WHERE user_id = $2 AND ended_at IS NULL",
    )
    .bind(ms(now))
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
