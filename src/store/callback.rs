//! SQL of callback forms (Table 6.1): create, send to an employee, complete with field 10.
//! Sending and completing also fill the linked journal entry's columns 8–9 and 10, so the
//! journal and the form never disagree.

use super::audit::{self, Change, Kind, Val};
use super::journal::{touch, update_entry};
use super::{from_ms, ms, opt_from_ms, Param, Sql, Store, StoreError};
use crate::records::callback::{CallbackForm, CallbackStatus, NewCallbackForm};
use crate::records::journal::CallerStatus;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

const SELECT: &str = "SELECT id, journal_id, voicemail_id, called_at, caller_name, phone, \
     caller_status, question, convenient_at, convenient_note, operator, operator_comment, \
     assigned_to, sent_at, called_back_at, called_back_by, result, created_by, created_at \
     FROM callback_forms";

fn from_row(row: &AnyRow, now: DateTime<Utc>) -> Result<CallbackForm, StoreError> {
    let convenient_at = from_ms(row.try_get(8)?);
    let called_back_at = opt_from_ms(row.try_get(14)?);
    Ok(CallbackForm {
        id: row.try_get(0)?,
        journal_id: row.try_get(1)?,
        voicemail_id: row.try_get(2)?,
        called_at: from_ms(row.try_get(3)?),
        caller_name: row.try_get(4)?,
        phone: row.try_get(5)?,
        caller_status: row
            .try_get::<Option<String>, _>(6)?
            .as_deref()
            .and_then(CallerStatus::parse),
        question: row.try_get(7)?,
        convenient_at,
        convenient_note: row.try_get(9)?,
        operator: row.try_get(10)?,
        operator_comment: row.try_get(11)?,
        assigned_to: row.try_get(12)?,
        sent_at: opt_from_ms(row.try_get(13)?),
        called_back_at,
        called_back_by: row.try_get(15)?,
        result: row.try_get(16)?,
        overdue: called_back_at.is_none() && convenient_at < now,
        created_by: row.try_get(17)?,
        created_at: from_ms(row.try_get(18)?),
    })
}

/// Creates a form filled by `operator` (field 8); `actor` is who is logged.
pub async fn create(
    store: &Store,
    form: &NewCallbackForm,
    operator: &str,
    actor: &str,
) -> Result<i64, StoreError> {
    let now = Utc::now();
    let mut tx = store.begin_write().await?;
    // Defaults of fields 1–5 from the journal entry; its update takes the write lock.
    let (mut called_at, mut phone, mut name, mut status) = (
        form.called_at.map(ms),
        form.phone.clone(),
        form.caller_name.clone(),
        form.caller_status.map(|s| s.as_str().to_string()),
    );
    if let Some(jid) = form.journal_id {
        // Field 7 is the journal's column 6, the agreed callback time, as well.
        let changes = [Change::new(
            "callback_at",
            Kind::Time,
            Val::Int(ms(form.convenient_at)),
        )];
        audit::update_with_audit(
            &mut tx,
            "journal_entries",
            "journal",
            jid,
            &changes,
            actor,
            now,
        )
        .await?;
        let row = sqlx::query(
            "SELECT arrived_at, phone, caller_name, caller_status FROM journal_entries WHERE id = $1",
        )
        .bind(jid)
        .fetch_one(&mut *tx)
        .await?;
        called_at = called_at.or(Some(row.try_get(0)?));
        phone = phone.or(Some(row.try_get(1)?));
        name = name.or(row.try_get(2)?);
        status = status.or(row.try_get(3)?);
        touch(&mut tx, jid, now).await?;
    }
    let phone = phone.ok_or_else(|| StoreError::Conflict("phone is required".into()))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO callback_forms (journal_id, called_at, caller_name, phone, caller_status, \
         question, convenient_at, convenient_note, operator, operator_comment, created_by, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) \
         RETURNING id",
    )
    .bind(form.journal_id)
    .bind(called_at.unwrap_or(ms(now)))
    .bind(name.as_deref())
    .bind(phone.as_str())
    .bind(status.as_deref())
    .bind(form.question.as_str())
    .bind(ms(form.convenient_at))
    .bind(form.convenient_note.as_deref())
    .bind(operator)
    .bind(form.operator_comment.as_deref())
    .bind(actor)
    .bind(ms(now))
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        now,
        actor,
        "callback",
        id,
        "create",
        None,
        None,
        Some(&form.question),
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn get(store: &Store, id: i64) -> Result<CallbackForm, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?
        .ok_or(StoreError::NotFound {
            entity: "callback form",
            id,
        })?;
    from_row(&row, Utc::now())
}

/// Which forms a list holds.
#[derive(Debug, Clone, Default)]
pub struct CallbackFilter {
    pub status: Option<CallbackStatus>,
    /// One employee's forms (sent to them).
    pub assigned_to: Option<String>,
    /// One operator's forms (field 8): an operator's own list.
    pub operator: Option<String>,
    /// One caller's forms (field 4): the call in hand shows the caller's open ones.
    pub phone: Option<String>,
    /// Forms older than this id (the next page).
    pub before_id: Option<i64>,
    pub limit: usize,
}

/// Forms newest first.
pub async fn list(store: &Store, f: &CallbackFilter) -> Result<Vec<CallbackForm>, StoreError> {
    let now = Utc::now();
    let mut sql = Sql::new(SELECT);
    sql.push(" WHERE 1 = 1");
    match f.status {
        Some(CallbackStatus::Open) => {
            sql.push(" AND called_back_at IS NULL");
        }
        Some(CallbackStatus::Overdue) => {
            sql.push(" AND called_back_at IS NULL AND convenient_at < ")
                .bind(Param::Int(ms(now)));
        }
        Some(CallbackStatus::Done) => {
            sql.push(" AND called_back_at IS NOT NULL");
        }
        None => {}
    }
    if let Some(a) = &f.assigned_to {
        sql.push(" AND assigned_to = ").bind(Param::Text(a.clone()));
    }
    if let Some(o) = &f.operator {
        sql.push(" AND operator = ").bind(Param::Text(o.clone()));
    }
    if let Some(p) = &f.phone {
        sql.push(" AND phone = ").bind(Param::Text(p.clone()));
    }
    if let Some(b) = f.before_id {
        sql.push(" AND id < ").bind(Param::Int(b));
    }
    sql.push(" ORDER BY id DESC LIMIT ")
        .bind(Param::Int(f.limit as i64));
    let rows = sql.query().fetch_all(store.pool()).await?;
    rows.iter().map(|r| from_row(r, now)).collect()
}

/// Takes the lock of a form that is not completed yet (409 once field 10 is written) and
/// returns its journal entry.
async fn lock_open_form(
    conn: &mut AnyConnection,
    id: i64,
    actor: &str,
    now: DateTime<Utc>,
) -> Result<Option<i64>, StoreError> {
    audit::update_with_audit(conn, "callback_forms", "callback", id, &[], actor, now).await?;
    let row = sqlx::query("SELECT journal_id, called_back_at FROM callback_forms WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    if row.try_get::<Option<i64>, _>(1)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "callback form {id} is already completed"
        )));
    }
    Ok(row.try_get(0)?)
}

/// Sends the form to `assigned_to` (journal columns 8 and 9).
pub async fn send(
    store: &Store,
    id: i64,
    assigned_to: &str,
    actor: &str,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let mut tx = store.begin_write().await?;
    let journal_id = lock_open_form(&mut tx, id, actor, now).await?;
    let fields = [
        Change::new("assigned_to", Kind::Text, Val::Text(assigned_to.into())),
        Change::new("sent_at", Kind::Time, Val::Int(ms(now))),
    ];
    audit::update_with_audit(
        &mut tx,
        "callback_forms",
        "callback",
        id,
        &fields,
        actor,
        now,
    )
    .await?;
    if let Some(jid) = journal_id {
        let cols = [
            Change::new("forwarded_to", Kind::Text, Val::Text(assigned_to.into())),
            Change::new("forwarded_at", Kind::Time, Val::Int(ms(now))),
        ];
        update_entry(&mut tx, jid, &cols, actor, now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Field 10: the employee called back at `at`. Fills journal column 10 too.
pub async fn complete(
    store: &Store,
    id: i64,
    at: DateTime<Utc>,
    result: Option<&str>,
    actor: &str,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let mut tx = store.begin_write().await?;
    let journal_id = lock_open_form(&mut tx, id, actor, now).await?;
    let fields = [
        Change::new("called_back_at", Kind::Time, Val::Int(ms(at))),
        Change::new("called_back_by", Kind::Text, Val::Text(actor.into())),
        Change::new("result", Kind::Text, Val::opt_text(result)),
    ];
    audit::update_with_audit(
        &mut tx,
        "callback_forms",
        "callback",
        id,
        &fields,
        actor,
        now,
    )
    .await?;
    if let Some(jid) = journal_id {
        let cols = [Change::new("done_at", Kind::Time, Val::Int(ms(at)))];
        update_entry(&mut tx, jid, &cols, actor, now).await?;
    }
    tx.commit().await?;
    Ok(())
}
