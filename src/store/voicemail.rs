//! SQL of voicemail records. Adding a message also creates its callback form (field 8
//! "voicemail", field 7 = the processing deadline) and sets the journal entry's
//! disposition, all in one transaction: a message is never recorded without the duty to
//! call back.

use super::audit::{self, Change, Kind, Val};
use super::journal::{refresh_search_text, touch, update_entry, SYSTEM};
use super::{from_ms, ms, opt_from_ms, Param, Sql, Store, StoreError};
use crate::records::atm::AtmCategory;
use crate::records::callback::VOICEMAIL_OPERATOR;
use crate::records::journal::Disposition;
use crate::records::voicemail::{
    NewVoicemail, SuggestedKind, Suggestion, Voicemail, VoicemailFacts, VoicemailStatus,
};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

const SELECT: &str = "SELECT v.id, v.journal_id, v.phone, v.arrived_at, v.file, v.duration_ms, \
     v.empty, v.after_hours, v.deadline_at, v.transcript, v.processed_by, v.processed_at, \
     (SELECT c.id FROM callback_forms c WHERE c.voicemail_id = v.id ORDER BY c.id LIMIT 1), \
     v.suggested_kind, v.suggested_category, v.suggested_words, t.status, t.error \
     FROM voicemails v LEFT JOIN transcription_jobs t ON t.voicemail_id = v.id";

fn from_row(row: &AnyRow, now: DateTime<Utc>) -> Result<Voicemail, StoreError> {
    let deadline = from_ms(row.try_get(8)?);
    let processed_at = opt_from_ms(row.try_get(11)?);
    Ok(Voicemail {
        id: row.try_get(0)?,
        journal_id: row.try_get(1)?,
        phone: row.try_get(2)?,
        arrived_at: from_ms(row.try_get(3)?),
        file: row.try_get(4)?,
        duration_s: row.try_get::<i64, _>(5)? as f64 / 1000.0,
        empty: row.try_get::<i64, _>(6)? != 0,
        after_hours: row.try_get::<i64, _>(7)? != 0,
        deadline_at: deadline,
        overdue: processed_at.is_none() && deadline < now,
        transcript: row.try_get(9)?,
        processed_by: row.try_get(10)?,
        processed_at,
        callback_id: row.try_get(12)?,
        suggestion: suggestion_from(row.try_get(13)?, row.try_get(14)?, row.try_get(15)?),
        transcription_status: row.try_get(16)?,
        transcription_error: row.try_get(17)?,
    })
}

/// Records a message left on the call of `vm.journal_id`, with `deadline` (the next
/// working day's close), in the caller's transaction. Returns the voicemail's id.
pub async fn insert_in(
    conn: &mut AnyConnection,
    vm: &NewVoicemail,
    deadline: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    Ok(insert(conn, vm, deadline, false, now).await?.0)
}

/// [`insert_in`], unless the entry already has a voicemail with this file: then only the
/// entry's disposition is set (again) and that voicemail's id is returned with `false`.
/// The check is made in the insert's transaction, after the entry's row is locked, so that
/// a write replayed from the call log's spool (or two at once) never records a message
/// twice.
pub async fn insert_once_in(
    conn: &mut AnyConnection,
    vm: &NewVoicemail,
    deadline: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(i64, bool), StoreError> {
    insert(conn, vm, deadline, true, now).await
}

async fn insert(
    tx: &mut AnyConnection,
    vm: &NewVoicemail,
    deadline: DateTime<Utc>,
    once: bool,
    now: DateTime<Utc>,
) -> Result<(i64, bool), StoreError> {
    let disposition = if vm.after_hours {
        Disposition::AfterHoursVoicemail
    } else {
        Disposition::Voicemail
    };
    // The entry's update comes first: it locks the row and proves the entry exists.
    audit::update_with_audit(
        &mut *tx,
        "journal_entries",
        "journal",
        vm.journal_id,
        &[Change::new(
            "disposition",
            Kind::Text,
            Val::Text(disposition.as_str().into()),
        )],
        SYSTEM,
        now,
    )
    .await?;
    if once {
        let known: Option<i64> =
            sqlx::query_scalar("SELECT id FROM voicemails WHERE journal_id = $1 AND file = $2")
                .bind(vm.journal_id)
                .bind(vm.file.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(id) = known {
            // The disposition is set again all the same: in a replay an earlier progress
            // may have just set another, and the final state must be the original one's.
            touch(&mut *tx, vm.journal_id, now).await?;
            return Ok((id, false));
        }
    }
    let entry = sqlx::query(
        "SELECT phone, caller_name, caller_status, arrived_at FROM journal_entries WHERE id = $1",
    )
    .bind(vm.journal_id)
    .fetch_one(&mut *tx)
    .await?;
    let phone: String = entry.try_get(0)?;
    let caller_name: Option<String> = entry.try_get(1)?;
    let caller_status: Option<String> = entry.try_get(2)?;
    let called_at: i64 = entry.try_get(3)?;
    let duration_ms = i64::try_from(vm.duration.as_millis()).unwrap_or(i64::MAX);
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO voicemails (journal_id, phone, arrived_at, file, duration_ms, empty, \
         after_hours, deadline_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(vm.journal_id)
    .bind(phone.as_str())
    .bind(ms(vm.arrived_at))
    .bind(vm.file.as_str())
    .bind(duration_ms)
    .bind(i64::from(vm.empty))
    .bind(i64::from(vm.after_hours))
    .bind(ms(deadline))
    .bind(ms(now))
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        now,
        SYSTEM,
        "voicemail",
        id,
        "create",
        None,
        None,
        Some(&vm.file),
    )
    .await?;
    let question = if vm.empty {
        "Голосовое сообщение без текста (слишком короткое)"
    } else {
        "Голосовое сообщение (расшифровка ожидается)"
    };
    let form: i64 = sqlx::query_scalar(
        "INSERT INTO callback_forms (journal_id, voicemail_id, called_at, caller_name, phone, \
         caller_status, question, convenient_at, operator, created_by, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
    )
    .bind(vm.journal_id)
    .bind(id)
    .bind(called_at)
    .bind(caller_name.as_deref())
    .bind(phone.as_str())
    .bind(caller_status.as_deref())
    .bind(question)
    .bind(ms(deadline))
    .bind(VOICEMAIL_OPERATOR)
    .bind(SYSTEM)
    .bind(ms(now))
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut *tx,
        now,
        SYSTEM,
        "callback",
        form,
        "create",
        None,
        None,
        Some(&format!("from voicemail {id}")),
    )
    .await?;
    sqlx::query("UPDATE journal_entries SET voicemail_id = $1 WHERE id = $2")
        .bind(id)
        .bind(vm.journal_id)
        .execute(&mut *tx)
        .await?;
    touch(&mut *tx, vm.journal_id, now).await?;
    // The duties the message brings are recorded with it: its transcription (a message
    // too short to hold words has none) here, the head of the call centre's notice by the
    // caller, in the same transaction.
    if !vm.empty {
        super::transcription::enqueue(&mut *tx, id, now).await?;
    }
    Ok((id, true))
}

/// What the notices say about message `id`, read in the caller's transaction.
pub async fn facts(conn: &mut AnyConnection, id: i64) -> Result<VoicemailFacts, StoreError> {
    let r = sqlx::query(
        "SELECT v.id, v.journal_id, j.seq, j.year, v.phone, v.arrived_at, v.duration_ms, \
         v.after_hours, v.empty, v.deadline_at, v.transcript, v.suggested_kind, \
         v.suggested_category, v.suggested_words, \
         (SELECT c.id FROM callback_forms c WHERE c.voicemail_id = v.id ORDER BY c.id LIMIT 1) \
         FROM voicemails v JOIN journal_entries j ON j.id = v.journal_id WHERE v.id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound {
        entity: "voicemail",
        id,
    })?;
    let seq: i64 = r.try_get(2)?;
    let year: i64 = r.try_get(3)?;
    Ok(VoicemailFacts {
        id: r.try_get(0)?,
        journal_id: r.try_get(1)?,
        journal_no: format!("№ {seq}/{year}"),
        phone: r.try_get(4)?,
        arrived_at: from_ms(r.try_get(5)?),
        duration_s: r.try_get::<i64, _>(6)? as f64 / 1000.0,
        after_hours: r.try_get::<i64, _>(7)? != 0,
        empty: r.try_get::<i64, _>(8)? != 0,
        deadline_at: from_ms(r.try_get(9)?),
        transcript: r.try_get(10)?,
        suggestion: suggestion_from(r.try_get(11)?, r.try_get(12)?, r.try_get(13)?),
        callback_id: r.try_get(14)?,
    })
}

/// The classifier's suggestion as stored (kind, category code, JSON array of words).
fn suggestion_from(
    kind: Option<String>,
    category: Option<String>,
    words: Option<String>,
) -> Option<Suggestion> {
    let kind = match kind?.as_str() {
        "atm_fault" => SuggestedKind::AtmFault,
        "atm_security" => SuggestedKind::AtmSecurity,
        _ => SuggestedKind::Other,
    };
    Some(Suggestion {
        kind,
        category: category.as_deref().and_then(AtmCategory::parse),
        matched: words
            .and_then(|w| serde_json::from_str(&w).ok())
            .unwrap_or_default(),
    })
}

/// Stores a transcript: on the message, as its open callback form's question (field 6)
/// and, when the operator has not written one, as the journal's content (column 7). Every
/// one of these changes is audited.
pub async fn set_transcript(store: &Store, id: i64, transcript: &str) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    apply_transcript(&mut tx, id, transcript, Utc::now()).await?;
    tx.commit().await?;
    Ok(())
}

/// [`set_transcript`] in the caller's transaction (the transcription worker's, which also
/// finishes the job and enqueues the notices).
pub(crate) async fn apply_transcript(
    tx: &mut AnyConnection,
    id: i64,
    transcript: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let text = |column| {
        [Change::new(
            column,
            Kind::Text,
            Val::Text(transcript.into()),
        )]
    };
    audit::update_with_audit(
        &mut *tx,
        "voicemails",
        "voicemail",
        id,
        &text("transcript"),
        SYSTEM,
        now,
    )
    .await?;
    let journal_id: i64 = sqlx::query_scalar("SELECT journal_id FROM voicemails WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    let forms: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM callback_forms WHERE voicemail_id = $1 AND called_back_at IS NULL",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    for form in forms {
        audit::update_with_audit(
            &mut *tx,
            "callback_forms",
            "callback",
            form,
            &text("question"),
            SYSTEM,
            now,
        )
        .await?;
    }
    let content: Option<String> =
        sqlx::query_scalar("SELECT content FROM journal_entries WHERE id = $1")
            .bind(journal_id)
            .fetch_one(&mut *tx)
            .await?;
    let changes: &[Change] = if content.is_none() {
        &text("content")
    } else {
        &[]
    };
    update_entry(&mut *tx, journal_id, changes, SYSTEM, now).await?;
    refresh_search_text(&mut *tx, journal_id).await?;
    Ok(())
}

/// An operator has processed the message (listened, acted on it); 409 the second time.
pub async fn mark_processed(store: &Store, id: i64, actor: &str) -> Result<(), StoreError> {
    let now = Utc::now();
    let mut tx = store.begin_write().await?;
    audit::update_with_audit(&mut tx, "voicemails", "voicemail", id, &[], actor, now).await?;
    let row = sqlx::query("SELECT processed_at, journal_id FROM voicemails WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if row.try_get::<Option<i64>, _>(0)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "voicemail {id} is already processed"
        )));
    }
    let processed = [
        Change::new("processed_by", Kind::Text, Val::Text(actor.into())),
        Change::new("processed_at", Kind::Time, Val::Int(ms(now))),
    ];
    audit::update_with_audit(
        &mut tx,
        "voicemails",
        "voicemail",
        id,
        &processed,
        actor,
        now,
    )
    .await?;
    touch(&mut tx, row.try_get(1)?, now).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn get(store: &Store, id: i64) -> Result<Voicemail, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE v.id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?
        .ok_or(StoreError::NotFound {
            entity: "voicemail",
            id,
        })?;
    from_row(&row, Utc::now())
}

/// Messages newest first, optionally by status; `before_id` pages.
pub async fn list(
    store: &Store,
    status: Option<VoicemailStatus>,
    before_id: Option<i64>,
    limit: usize,
) -> Result<Vec<Voicemail>, StoreError> {
    let now = Utc::now();
    let mut sql = Sql::new(SELECT);
    sql.push(" WHERE 1 = 1");
    match status {
        Some(VoicemailStatus::Open) => {
            sql.push(" AND v.processed_at IS NULL");
        }
        Some(VoicemailStatus::Overdue) => {
            sql.push(" AND v.processed_at IS NULL AND v.deadline_at < ")
                .bind(Param::Int(ms(now)));
        }
        Some(VoicemailStatus::Processed) => {
            sql.push(" AND v.processed_at IS NOT NULL");
        }
        None => {}
    }
    if let Some(b) = before_id {
        sql.push(" AND v.id < ").bind(Param::Int(b));
    }
    sql.push(" ORDER BY v.id DESC LIMIT ")
        .bind(Param::Int(limit as i64));
    let rows = sql.query().fetch_all(store.pool()).await?;
    rows.iter().map(|r| from_row(r, now)).collect()
}

/// Messages past their deadline and not processed (§2.6: by the next working day) that
/// have no reminder yet, oldest first, at most 500.
pub async fn overdue_unreminded(store: &Store, now: DateTime<Utc>) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT v.id FROM voicemails v WHERE v.processed_at IS NULL AND v.deadline_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.entity = 'voicemail' \
         AND n.entity_id = v.id AND n.event = 'voicemail_overdue') ORDER BY v.id LIMIT 500",
    )
    .bind(ms(now))
    .fetch_all(store.pool())
    .await?)
}
