//! SQL of the incoming-call journal: inserting calls (yearly numbering, repeat links),
//! the call flow's progress, operators' edits, reading, filtered keyset pages.

use super::audit::{self, Change, Kind, Val};
use super::{from_ms, ms, opt_from_ms, Param, Sql, Store, StoreError};
use crate::records::journal::{
    phone_key, search_text, AppealType, CallProgress, CallerStatus, Cursor, Disposition, Entry,
    EntryPatch, EntryRef, EntryVoicemail, JournalFilter, NewCall,
};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// The actor of changes the hotline makes itself (the call flow, voicemail, retention).
pub const SYSTEM: &str = "system";

/// Columns of [`entry_from_row`], in order; `e` is the entry, `r` the one it repeats.
const SELECT: &str = "SELECT e.id, e.year, e.seq, e.arrived_at, e.caller_name, e.caller_status, \
     e.phone, e.callback_at, e.content, e.forwarded_to, e.forwarded_at, e.done_at, e.appeal_type, \
     e.call_id, e.disposition, e.answered_at, e.ended_at, e.wait_ms, e.operator, e.recording, \
     e.repeat_of, r.year, r.seq, e.updated_at, \
     (SELECT v.id FROM voicemails v WHERE v.journal_id = e.id ORDER BY v.id DESC LIMIT 1), \
     (SELECT v.transcript FROM voicemails v WHERE v.journal_id = e.id ORDER BY v.id DESC LIMIT 1) \
     FROM journal_entries e LEFT JOIN journal_entries r ON r.id = e.repeat_of";

fn entry_from_row(row: &AnyRow) -> Result<Entry, StoreError> {
    let text = |i: usize| row.try_get::<Option<String>, _>(i);
    let int = |i: usize| row.try_get::<Option<i64>, _>(i);
    let disposition: String = row.try_get(14)?;
    let repeat_of = match (int(20)?, int(21)?, int(22)?) {
        (Some(id), Some(year), Some(seq)) => Some(EntryRef { id, year, seq }),
        _ => None,
    };
    Ok(Entry {
        id: row.try_get(0)?,
        year: row.try_get(1)?,
        seq: row.try_get(2)?,
        arrived_at: from_ms(row.try_get(3)?),
        caller_name: text(4)?,
        caller_status: text(5)?.as_deref().and_then(CallerStatus::parse),
        phone: row.try_get(6)?,
        callback_at: opt_from_ms(int(7)?),
        content: text(8)?,
        forwarded_to: text(9)?,
        forwarded_at: opt_from_ms(int(10)?),
        done_at: opt_from_ms(int(11)?),
        appeal_type: text(12)?.as_deref().and_then(AppealType::parse),
        call_id: text(13)?,
        disposition: Disposition::parse(&disposition).unwrap_or(Disposition::Failed),
        answered_at: opt_from_ms(int(15)?),
        ended_at: opt_from_ms(int(16)?),
        wait_s: int(17)?.map(|w| w as f64 / 1000.0),
        operator: text(18)?,
        recording: text(19)?,
        repeat_of,
        updated_at: from_ms(row.try_get(23)?),
        voicemail: int(24)?.map(|id| EntryVoicemail {
            id,
            transcript: text(25).ok().flatten(),
        }),
    })
}

/// Inserts `calls` in one transaction and returns their ids. `years[i]` is the journal
/// year of `calls[i]` (the caller knows the time zone). A call whose `call_id` is already
/// journaled keeps its entry: a retried write never makes a second one, and never takes a
/// number. A call from a number with an entry that arrived within `repeat_window_ms`, or
/// with an agreed callback not yet made, is linked to the newest such entry.
pub async fn insert_calls(
    store: &Store,
    calls: &[NewCall],
    years: &[i64],
    repeat_window_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    let now = Utc::now();
    let mut tx = store.pool().begin().await?;
    // Take SQLite's write lock before the first read (see store::audit); a no-op elsewhere.
    sqlx::query("UPDATE journal_counters SET last_seq = last_seq WHERE year = -1")
        .execute(&mut *tx)
        .await?;
    let mut ids: Vec<Option<i64>> = Vec::with_capacity(calls.len());
    for call in calls {
        let existing = match &call.call_id {
            Some(cid) => {
                sqlx::query_scalar::<_, i64>("SELECT id FROM journal_entries WHERE call_id = $1")
                    .bind(cid.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        ids.push(existing);
    }
    // Numbers: one counter bump per year for the calls that are new.
    let mut next: Vec<(i64, i64)> = Vec::new(); // (year, next seq to hand out)
    let mut years_needed: Vec<(i64, i64)> = Vec::new();
    for (i, year) in years.iter().enumerate() {
        if ids[i].is_none() {
            match years_needed.iter_mut().find(|(y, _)| y == year) {
                Some((_, n)) => *n += 1,
                None => years_needed.push((*year, 1)),
            }
        }
    }
    for (year, n) in years_needed {
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO journal_counters (year, last_seq) VALUES ($1, $2) \
             ON CONFLICT (year) DO UPDATE SET last_seq = journal_counters.last_seq + excluded.last_seq \
             RETURNING last_seq",
        )
        .bind(year)
        .bind(n)
        .fetch_one(&mut *tx)
        .await?;
        next.push((year, last - n + 1));
    }
    let mut out = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        if let Some(id) = ids[i] {
            out.push(id);
            continue;
        }
        let year = years[i];
        let slot = next
            .iter_mut()
            .find(|(y, _)| *y == year)
            .expect("a counter was bumped for every year with a new call");
        let seq = slot.1;
        slot.1 += 1;
        let key = phone_key(&call.phone);
        let arrived = ms(call.arrived_at);
        let repeat_of: Option<i64> = if key.is_empty() {
            None
        } else {
            sqlx::query_scalar(
                "SELECT id FROM journal_entries WHERE phone_key = $1 AND arrived_at <= $2 \
                 AND (arrived_at >= $3 OR (callback_at IS NOT NULL AND done_at IS NULL)) \
                 ORDER BY arrived_at DESC, id DESC LIMIT 1",
            )
            .bind(key.as_str())
            .bind(arrived)
            .bind(arrived.saturating_sub(repeat_window_ms))
            .fetch_optional(&mut *tx)
            .await?
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO journal_entries (year, seq, call_id, arrived_at, caller_name, phone, \
             phone_key, disposition, repeat_of, search_text, last_activity_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_progress', $8, $9, $10, $11, $11) RETURNING id",
        )
        .bind(year)
        .bind(seq)
        .bind(call.call_id.as_deref())
        .bind(arrived)
        .bind(call.caller_name.as_deref())
        .bind(call.phone.as_str())
        .bind(key.as_str())
        .bind(repeat_of)
        .bind(search_text(&[call.caller_name.as_deref()]))
        .bind(arrived)
        .bind(ms(now))
        .fetch_one(&mut *tx)
        .await?;
        audit::record(
            &mut tx,
            now,
            SYSTEM,
            "journal",
            id,
            "create",
            None,
            None,
            Some(&format!("№ {seq}/{year}, {}", call.phone)),
        )
        .await?;
        out.push(id);
    }
    tx.commit().await?;
    Ok(out)
}

/// Marks the entry as touched: the retention clock restarts from its last document.
pub(crate) async fn touch(
    conn: &mut AnyConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE journal_entries SET updated_at = $1, \
         last_activity_at = CASE WHEN last_activity_at > $1 THEN last_activity_at ELSE $1 END \
         WHERE id = $2",
    )
    .bind(ms(now))
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rebuilds the lower-cased text the journal's text filter searches.
pub(crate) async fn refresh_search_text(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<(), StoreError> {
    let row = sqlx::query("SELECT caller_name, content FROM journal_entries WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let name: Option<String> = row.try_get(0)?;
    let content: Option<String> = row.try_get(1)?;
    let transcripts: Vec<Option<String>> =
        sqlx::query_scalar("SELECT transcript FROM voicemails WHERE journal_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    let mut parts = vec![name.as_deref(), content.as_deref()];
    parts.extend(transcripts.iter().map(|t| t.as_deref()));
    sqlx::query("UPDATE journal_entries SET search_text = $1 WHERE id = $2")
        .bind(search_text(&parts))
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The call flow's update: answer, end, wait, disposition, operator, recording.
pub async fn update_progress(store: &Store, id: i64, p: &CallProgress) -> Result<(), StoreError> {
    let mut changes = Vec::new();
    if let Some(t) = p.answered_at {
        changes.push(Change::new("answered_at", Kind::Time, Val::Int(ms(t))));
    }
    if let Some(t) = p.ended_at {
        changes.push(Change::new("ended_at", Kind::Time, Val::Int(ms(t))));
    }
    if let Some(w) = p.wait_ms {
        changes.push(Change::new("wait_ms", Kind::Int, Val::Int(w)));
    }
    if let Some(d) = p.disposition {
        changes.push(Change::new(
            "disposition",
            Kind::Text,
            Val::Text(d.as_str().into()),
        ));
    }
    if let Some(o) = &p.operator {
        changes.push(Change::new("operator", Kind::Text, Val::Text(o.clone())));
    }
    if let Some(r) = &p.recording {
        changes.push(Change::new("recording", Kind::Text, Val::Text(r.clone())));
    }
    let now = Utc::now();
    let mut tx = store.pool().begin().await?;
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
    touch(&mut tx, id, now).await?;
    tx.commit().await?;
    Ok(())
}

/// An operator's edit; every changed column is audited under `actor`.
pub async fn patch(
    store: &Store,
    id: i64,
    patch: &EntryPatch,
    actor: &str,
) -> Result<usize, StoreError> {
    let mut changes = Vec::new();
    let text =
        |column, v: &Option<String>| Change::new(column, Kind::Text, Val::opt_text(v.as_deref()));
    let time =
        |column, v: &Option<DateTime<Utc>>| Change::new(column, Kind::Time, Val::opt_time(*v));
    if let Some(v) = &patch.caller_name {
        changes.push(text("caller_name", v));
    }
    if let Some(v) = &patch.caller_status {
        changes.push(text("caller_status", &v.map(|s| s.as_str().to_string())));
    }
    if let Some(v) = &patch.phone {
        changes.push(Change::new("phone", Kind::Text, Val::Text(v.clone())));
        changes.push(Change::new(
            "phone_key",
            Kind::Text,
            Val::Text(phone_key(v)),
        ));
    }
    if let Some(v) = &patch.callback_at {
        changes.push(time("callback_at", v));
    }
    if let Some(v) = &patch.content {
        changes.push(text("content", v));
    }
    if let Some(v) = &patch.forwarded_to {
        changes.push(text("forwarded_to", v));
    }
    if let Some(v) = &patch.forwarded_at {
        changes.push(time("forwarded_at", v));
    }
    if let Some(v) = &patch.done_at {
        changes.push(time("done_at", v));
    }
    if let Some(v) = &patch.appeal_type {
        changes.push(text("appeal_type", &v.map(|a| a.as_str().to_string())));
    }
    let now = Utc::now();
    let mut tx = store.pool().begin().await?;
    let n = audit::update_with_audit(
        &mut tx,
        "journal_entries",
        "journal",
        id,
        &changes,
        actor,
        now,
    )
    .await?;
    if n > 0 {
        touch(&mut tx, id, now).await?;
        if patch.caller_name.is_some() || patch.content.is_some() {
            refresh_search_text(&mut tx, id).await?;
        }
    }
    tx.commit().await?;
    Ok(n)
}

pub async fn get(store: &Store, id: i64) -> Result<Entry, StoreError> {
    let row = sqlx::query(&format!("{SELECT} WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?
        .ok_or(StoreError::NotFound {
            entity: "journal entry",
            id,
        })?;
    entry_from_row(&row)
}

/// One page, newest first, starting after `cursor`; the cursor of the next page is
/// returned when there is one.
pub async fn list(
    store: &Store,
    filter: &JournalFilter,
    cursor: Option<Cursor>,
    limit: usize,
) -> Result<(Vec<Entry>, Option<Cursor>), StoreError> {
    let mut sql = Sql::new(SELECT);
    sql.push(" WHERE 1 = 1");
    if let Some(t) = filter.from {
        sql.push(" AND e.arrived_at >= ").bind(Param::Int(ms(t)));
    }
    if let Some(t) = filter.to {
        sql.push(" AND e.arrived_at < ").bind(Param::Int(ms(t)));
    }
    if let Some(o) = &filter.operator {
        sql.push(" AND e.operator = ").bind(Param::Text(o.clone()));
    }
    if let Some(d) = filter.disposition {
        sql.push(" AND e.disposition = ")
            .bind(Param::Text(d.as_str().into()));
    }
    if let Some(p) = &filter.phone {
        sql.push(" AND e.phone_key = ")
            .bind(Param::Text(phone_key(p)));
    }
    if let Some(q) = &filter.text {
        let pattern = format!("%{}%", super::like_escape(&q.to_lowercase()));
        sql.push(" AND e.search_text LIKE ")
            .bind(Param::Text(pattern))
            .push(" ESCAPE '\\'");
    }
    match filter.repeat {
        Some(true) => {
            sql.push(" AND e.repeat_of IS NOT NULL");
        }
        Some(false) => {
            sql.push(" AND e.repeat_of IS NULL");
        }
        None => {}
    }
    if let Some(c) = cursor {
        sql.push(" AND (e.arrived_at < ")
            .bind(Param::Int(c.arrived_ms))
            .push(" OR (e.arrived_at = ")
            .bind(Param::Int(c.arrived_ms))
            .push(" AND e.id < ")
            .bind(Param::Int(c.id))
            .push("))");
    }
    sql.push(" ORDER BY e.arrived_at DESC, e.id DESC LIMIT ")
        .bind(Param::Int(limit as i64 + 1));
    let rows = sql.query().fetch_all(store.pool()).await?;
    let mut entries = rows
        .iter()
        .map(entry_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if entries.len() > limit {
        entries.truncate(limit);
        entries.last().map(|e| Cursor {
            arrived_ms: ms(e.arrived_at),
            id: e.id,
        })
    } else {
        None
    };
    Ok((entries, next))
}
