//! Where operators chose to be rung (`operator_phones`).

use super::{ms, Store, StoreError};
use crate::records::ring::RingAt;
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Every choice made, by extension.
pub async fn list(store: &Store) -> Result<Vec<(String, RingAt)>, StoreError> {
    let rows = sqlx::query("SELECT extension, ring_at FROM operator_phones ORDER BY extension")
        .fetch_all(store.pool())
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let ring_at: String = r.try_get(1)?;
        out.push((r.try_get(0)?, RingAt::parse(&ring_at).unwrap_or_default()));
    }
    Ok(out)
}

/// Records `extension`'s choice, replacing an earlier one.
pub async fn set(
    store: &Store,
    extension: &str,
    ring_at: RingAt,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    sqlx::query(
        "INSERT INTO operator_phones (extension, ring_at, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (extension) DO UPDATE SET \
         ring_at = excluded.ring_at, updated_at = excluded.updated_at, \
         updated_by = excluded.updated_by",
    )
    .bind(extension)
    .bind(ring_at.as_str())
    .bind(ms(now))
    .bind(actor)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
