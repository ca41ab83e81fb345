//! Operators' kept notices: written in the transaction of what they tell (a ticket's
//! step), read until marked read.

use super::{from_ms, ms, Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

#[derive(Debug, Clone)]
pub struct InboxItem {
    pub id: i64,
    pub text: String,
    pub ticket_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
}

pub async fn add_in(
    conn: &mut AnyConnection,
    operator: &str,
    text: &str,
    ticket_id: Option<i64>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO inbox (operator, text, ticket_id, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(operator)
    .bind(text)
    .bind(ticket_id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The operator's notices, unread first, then newest first; at most `limit`.
pub async fn list(store: &Store, operator: &str, limit: i64) -> Result<Vec<InboxItem>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, text, ticket_id, created_at, read_at FROM inbox WHERE operator = $1 \
         ORDER BY CASE WHEN read_at IS NULL THEN 0 ELSE 1 END, id DESC LIMIT $2",
    )
    .bind(operator)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(InboxItem {
                id: r.try_get(0)?,
                text: r.try_get(1)?,
                ticket_id: r.try_get(2)?,
                created_at: from_ms(r.try_get(3)?),
                read_at: r.try_get::<Option<i64>, _>(4)?.map(from_ms),
            })
        })
        .collect()
}

/// Marks one of `operator`'s notices read; another's is not found.
pub async fn mark_read(
    store: &Store,
    operator: &str,
    id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let done = sqlx::query(
        "UPDATE inbox SET read_at = COALESCE(read_at, $1) WHERE id = $2 AND operator = $3",
    )
    .bind(ms(now))
    .bind(id)
    .bind(operator)
    .execute(store.pool())
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            entity: "inbox",
            id,
        });
    }
    Ok(())
}
