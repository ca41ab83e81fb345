//! Quick answers' rows, each change audited (entity `quick_answer`).

use super::audit::{self, Change, Kind, Val};
use super::{from_ms, ms, Store, StoreError};
use crate::records::quick::{QuickAnswer, QuickAnswerText, Topic};
use chrono::{DateTime, Utc};
use sqlx::Row;

const ENTITY: &str = "quick_answer";

/// Every answer, by topic and title.
pub async fn list(store: &Store) -> Result<Vec<QuickAnswer>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, topic, title, body, updated_at, updated_by FROM quick_answers \
         ORDER BY topic, title, id",
    )
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let topic: String = r.try_get(1)?;
        out.push(QuickAnswer {
            id: r.try_get(0)?,
            topic: Topic::parse(&topic).unwrap_or(Topic::Other),
            title: r.try_get(2)?,
            body: r.try_get(3)?,
            updated_at: from_ms(r.try_get(4)?),
            updated_by: r.try_get(5)?,
        });
    }
    Ok(out)
}

pub async fn create(
    store: &Store,
    a: &QuickAnswerText,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let mut tx = store.begin_write().await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO quick_answers (topic, title, body, updated_at, updated_by) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(a.topic.as_str())
    .bind(a.title.trim())
    .bind(a.body.trim())
    .bind(ms(now))
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    audit::record_creations(&mut tx, now, actor, ENTITY, &[(id, a.title.trim().into())]).await?;
    tx.commit().await?;
    Ok(id)
}

/// New text for answer `id`; each changed column is logged with its old value.
pub async fn update(
    store: &Store,
    id: i64,
    a: &QuickAnswerText,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let changes = [
        Change::new("topic", Kind::Text, Val::Text(a.topic.as_str().into())),
        Change::new("title", Kind::Text, Val::Text(a.title.trim().into())),
        Change::new("body", Kind::Text, Val::Text(a.body.trim().into())),
    ];
    let n = audit::update_with_audit(&mut tx, "quick_answers", ENTITY, id, &changes, actor, now)
        .await?;
    if n > 0 {
        sqlx::query("UPDATE quick_answers SET updated_at = $1, updated_by = $2 WHERE id = $3")
            .bind(ms(now))
            .bind(actor)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Removes answer `id`; the log keeps its last text.
pub async fn delete(
    store: &Store,
    id: i64,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    let body: Option<String> = sqlx::query_scalar("SELECT body FROM quick_answers WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(body) = body else {
        return Err(StoreError::NotFound { entity: ENTITY, id });
    };
    sqlx::query("DELETE FROM quick_answers WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        now,
        actor,
        ENTITY,
        id,
        "delete",
        Some("body"),
        Some(&body),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}
