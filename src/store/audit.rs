//! The audit log: every change to a record, who made it, when, old → new (SPEC §3, issue
//! "records"). Changes are written in the same transaction as the change itself, so a
//! record never changes without its trace.
//!
//! [`update_with_audit`] is the one way records are edited: it takes the row's write lock
//! first (on PostgreSQL a row lock, so two editors of one record queue; on SQLite the
//! transaction already holds the write lock, see `Store::begin_write`), reads the old
//! values, writes only what changed and logs each changed column.

use super::{from_ms, ms, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use utoipa::ToSchema;

/// How a column is read and shown in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    /// BIGINT milliseconds, logged as RFC 3339.
    Time,
}

/// A column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
}

impl Val {
    pub fn opt_text(v: Option<&str>) -> Val {
        v.map_or(Val::Null, |s| Val::Text(s.to_string()))
    }

    pub fn opt_time(v: Option<DateTime<Utc>>) -> Val {
        v.map_or(Val::Null, |t| Val::Int(ms(t)))
    }

    /// The value as the log shows it.
    pub(crate) fn render(&self, kind: Kind) -> Option<String> {
        match (self, kind) {
            (Val::Null, _) => None,
            (Val::Int(v), Kind::Time) => {
                Some(from_ms(*v).to_rfc3339_opts(SecondsFormat::Millis, true))
            }
            (Val::Int(v), _) => Some(v.to_string()),
            (Val::Text(s), _) => Some(s.clone()),
        }
    }
}

/// One column to set.
#[derive(Debug, Clone)]
pub struct Change {
    pub column: &'static str,
    pub kind: Kind,
    pub new: Val,
}

impl Change {
    pub fn new(column: &'static str, kind: Kind, new: Val) -> Change {
        Change { column, kind, new }
    }
}

/// A line of the audit log.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub entity: String,
    pub entity_id: i64,
    /// `create`, `update`, `purge`, or a lifecycle step such as `complete`.
    pub action: String,
    pub field: Option<String>,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
}

/// Appends one line to the log.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    conn: &mut AnyConnection,
    at: DateTime<Utc>,
    actor: &str,
    entity: &str,
    entity_id: i64,
    action: &str,
    field: Option<&str>,
    old: Option<&str>,
    new: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, entity, entity_id, action, field, old_value, new_value) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(ms(at))
    .bind(actor)
    .bind(entity)
    .bind(entity_id)
    .bind(action)
    .bind(field)
    .bind(old)
    .bind(new)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Appends a `create` line for each `(id, summary)`, in one statement.
pub async fn record_creations(
    conn: &mut AnyConnection,
    at: DateTime<Utc>,
    actor: &str,
    entity: &str,
    created: &[(i64, String)],
) -> Result<(), StoreError> {
    if created.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO audit_log (at, actor, entity, entity_id, action, new_value) VALUES ",
    );
    for n in 0..created.len() {
        if n > 0 {
            sql.push_str(", ");
        }
        let b = n * 5;
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, 'create', ${})",
            b + 1,
            b + 2,
            b + 3,
            b + 4,
            b + 5
        ));
    }
    let mut q = sqlx::query(&sql).persistent(false);
    for (id, summary) in created {
        q = q
            .bind(ms(at))
            .bind(actor)
            .bind(entity)
            .bind(*id)
            .bind(summary.as_str());
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Appends an `update` line for each `(id, field, old, new)`, in one statement per 200.
pub async fn record_updates(
    conn: &mut AnyConnection,
    at: DateTime<Utc>,
    actor: &str,
    entity: &str,
    lines: &[(i64, &str, Option<String>, Option<String>)],
) -> Result<(), StoreError> {
    for chunk in lines.chunks(200) {
        let mut sql = super::Sql::new(
            "INSERT INTO audit_log (at, actor, entity, entity_id, action, field, old_value, \
             new_value) VALUES ",
        );
        for (n, (id, field, old, new)) in chunk.iter().enumerate() {
            sql.push(if n == 0 { "(" } else { ", (" });
            sql.bind(super::Param::Int(ms(at))).push(", ");
            sql.bind(super::Param::Text(actor.into())).push(", ");
            sql.bind(super::Param::Text(entity.into())).push(", ");
            sql.bind(super::Param::Int(*id)).push(", 'update', ");
            sql.bind(super::Param::Text((*field).into())).push(", ");
            for (i, v) in [old, new].into_iter().enumerate() {
                match v {
                    Some(v) => sql.bind(super::Param::Text(v.clone())),
                    None => sql.push("NULL"),
                };
                sql.push(if i == 0 { ", " } else { ")" });
            }
        }
        sql.query().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Sets `changes` on row `id` of `table`, logging each column whose value changes. Returns
/// how many columns changed. `entity` is the name the log uses (`journal`, `callback`…).
pub async fn update_with_audit(
    conn: &mut AnyConnection,
    table: &'static str,
    entity: &'static str,
    id: i64,
    changes: &[Change],
    actor: &str,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    // Lock first (see the module doc), and learn whether the row exists.
    let locked = sqlx::query(&format!("UPDATE {table} SET id = id WHERE id = $1"))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if locked.rows_affected() == 0 {
        return Err(StoreError::NotFound { entity, id });
    }
    if changes.is_empty() {
        return Ok(0);
    }
    let columns: Vec<&str> = changes.iter().map(|c| c.column).collect();
    let row = sqlx::query(&format!(
        "SELECT {} FROM {table} WHERE id = $1",
        columns.join(", ")
    ))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let mut changed = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let old = match c.kind {
            Kind::Text => Val::opt_text(row.try_get::<Option<String>, _>(i)?.as_deref()),
            Kind::Int | Kind::Time => row
                .try_get::<Option<i64>, _>(i)?
                .map_or(Val::Null, Val::Int),
        };
        if old != c.new {
            changed.push((c, old));
        }
    }
    if changed.is_empty() {
        return Ok(0);
    }
    let mut sql = super::Sql::new(&format!("UPDATE {table} SET "));
    for (n, (c, _)) in changed.iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        sql.push(c.column).push(" = ");
        match &c.new {
            Val::Null => {
                sql.push("NULL");
            }
            Val::Int(v) => {
                sql.bind(super::Param::Int(*v));
            }
            Val::Text(v) => {
                sql.bind(super::Param::Text(v.clone()));
            }
        }
    }
    sql.push(" WHERE id = ").bind(super::Param::Int(id));
    sql.query().execute(&mut *conn).await?;
    for (c, old) in &changed {
        record(
            conn,
            now,
            actor,
            entity,
            id,
            "update",
            Some(c.column),
            old.render(c.kind).as_deref(),
            c.new.render(c.kind).as_deref(),
        )
        .await?;
    }
    Ok(changed.len())
}

/// The log of one record, oldest first.
pub async fn history(
    store: &super::Store,
    entity: &str,
    entity_id: i64,
) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT at, actor, entity, entity_id, action, field, old_value, new_value \
         FROM audit_log WHERE entity = $1 AND entity_id = $2 ORDER BY id",
    )
    .bind(entity)
    .bind(entity_id)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                at: from_ms(r.try_get(0)?),
                actor: r.try_get(1)?,
                entity: r.try_get(2)?,
                entity_id: r.try_get(3)?,
                action: r.try_get(4)?,
                field: r.try_get(5)?,
                old_value: r.try_get(6)?,
                new_value: r.try_get(7)?,
            })
        })
        .collect()
}
