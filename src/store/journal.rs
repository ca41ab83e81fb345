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
     e.repeat_of, r.year, r.seq, e.updated_at, v.id, v.transcript, e.tickets, e.node_id, \
     e.end_reason FROM journal_entries e LEFT JOIN journal_entries r ON r.id = e.repeat_of \
     LEFT JOIN voicemails v ON v.id = e.voicemail_id";

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
        tickets: text(26)?,
        node: text(27)?,
        end_reason: text(28)?,
    })
}

/// Calls per multi-row statement: 14 values each stays far below both databases' limits
/// on bound parameters.
const CHUNK: usize = 200;

/// Inserts `calls` in one transaction and returns their ids. `years[i]` is the journal
/// year of `calls[i]` (the caller knows the time zone). A call whose `call_id` is already
/// journaled keeps its entry: a retried write never makes a second one, and never takes a
/// number. A call from a number with an entry that arrived within `repeat_window_ms`, or
/// with an agreed callback not yet made, is linked to the newest such entry.
///
/// The work is a fixed number of statements per chunk of calls, not per call: one look-up
/// of the Call-IDs, one counter bump per year, one look-up of the numbers' previous
/// entries, one multi-row insert and one for the audit lines. That is what lets the
/// call log ([`CallLog`](crate::desk::calllog::CallLog)) commit thousands of calls a
/// second on PostgreSQL, where every statement is a round trip.
pub async fn insert_calls(
    store: &Store,
    calls: &[NewCall],
    years: &[i64],
    repeat_window_ms: i64,
) -> Result<Vec<i64>, StoreError> {
    let mut tx = store.begin_write().await?;
    let out = insert_calls_in(
        &mut tx,
        calls,
        years,
        repeat_window_ms,
        Utc::now(),
        store.node(),
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// [`insert_calls`] inside the caller's transaction, which it may share with other writes
/// (the call log commits a run of arrivals and progress updates at once).
pub async fn insert_calls_in(
    conn: &mut AnyConnection,
    calls: &[NewCall],
    years: &[i64],
    repeat_window_ms: i64,
    now: DateTime<Utc>,
    node: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    let mut out = Vec::with_capacity(calls.len());
    for (chunk, chunk_years) in calls.chunks(CHUNK).zip(years.chunks(CHUNK)) {
        out.extend(insert_chunk(conn, chunk, chunk_years, repeat_window_ms, now, node).await?);
    }
    Ok(out)
}

/// `(a, b, …)` placeholders for `n` values starting at `$first`.
///
/// Statements built with them are run with `persistent(false)`: their text varies with the
/// chunk's size, so caching them would fill the connection's statement cache, and a cached
/// (generic) PostgreSQL plan for `col IN ($1, …, $200)` made while the table was small is a
/// sequential scan that stays one — 50–200 ms a chunk at 50,000 entries, where a plan made
/// for the actual values takes the index.
fn placeholders(first: usize, n: usize) -> String {
    let list: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

/// A previous entry of a caller, for the repeat link.
struct Previous {
    arrived: i64,
    /// `Ok(id)` of a stored entry, `Err(i)` of the `i`-th call of this chunk.
    entry: Result<i64, usize>,
    open: bool,
}

async fn insert_chunk(
    conn: &mut AnyConnection,
    calls: &[NewCall],
    years: &[i64],
    repeat_window_ms: i64,
    now: DateTime<Utc>,
    node: Option<&str>,
) -> Result<Vec<i64>, StoreError> {
    use std::collections::HashMap;
    // Calls already journaled, by Call-ID; a Call-ID twice in the chunk is one call.
    let cids: Vec<&str> = calls.iter().filter_map(|c| c.call_id.as_deref()).collect();
    let mut by_cid: HashMap<String, i64> = HashMap::new();
    if !cids.is_empty() {
        let sql = format!(
            "SELECT call_id, id FROM journal_entries WHERE call_id IN {}",
            placeholders(1, cids.len())
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for c in &cids {
            q = q.bind(*c);
        }
        for row in q.fetch_all(&mut *conn).await? {
            by_cid.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    // `fresh[i]`: the call is new and takes a number; else it maps to an existing entry
    // (`Ok`) or to an earlier call of the chunk with the same Call-ID (`Err`).
    let mut fresh = vec![true; calls.len()];
    let mut same_as: Vec<Option<Result<i64, usize>>> = vec![None; calls.len()];
    let mut first_in_chunk: HashMap<&str, usize> = HashMap::new();
    for (i, c) in calls.iter().enumerate() {
        if let Some(cid) = c.call_id.as_deref() {
            if let Some(id) = by_cid.get(cid) {
                fresh[i] = false;
                same_as[i] = Some(Ok(*id));
            } else if let Some(first) = first_in_chunk.get(cid) {
                fresh[i] = false;
                same_as[i] = Some(Err(*first));
            } else {
                first_in_chunk.insert(cid, i);
            }
        }
    }
    // Numbers: one counter bump per year for the new calls.
    let mut per_year: Vec<(i64, i64)> = Vec::new();
    for (i, year) in years.iter().enumerate() {
        if fresh[i] {
            match per_year.iter_mut().find(|(y, _)| y == year) {
                Some((_, n)) => *n += 1,
                None => per_year.push((*year, 1)),
            }
        }
    }
    let mut next_seq: Vec<(i64, i64)> = Vec::new();
    for (year, n) in per_year {
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO journal_counters (year, last_seq) VALUES ($1, $2) \
             ON CONFLICT (year) DO UPDATE SET last_seq = journal_counters.last_seq + excluded.last_seq \
             RETURNING last_seq",
        )
        .bind(year)
        .bind(n)
        .fetch_one(&mut *conn)
        .await?;
        next_seq.push((year, last - n + 1));
    }
    // The callers' previous entries: recent ones, and older ones with a callback pending.
    let keys: Vec<String> = calls.iter().map(|c| phone_key(&c.phone)).collect();
    let wanted: Vec<&str> = {
        let mut k: Vec<&str> = (0..calls.len())
            .filter(|&i| fresh[i] && !keys[i].is_empty())
            .map(|i| keys[i].as_str())
            .collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    let mut previous: HashMap<String, Vec<Previous>> = HashMap::new();
    if !wanted.is_empty() {
        let earliest = (0..calls.len())
            .filter(|&i| fresh[i])
            .map(|i| ms(calls[i].arrived_at).saturating_sub(repeat_window_ms))
            .min()
            .unwrap_or(0);
        let sql = format!(
            "SELECT phone_key, id, arrived_at, \
             CAST(CASE WHEN callback_at IS NOT NULL AND done_at IS NULL THEN 1 ELSE 0 END AS BIGINT) \
             FROM journal_entries WHERE phone_key IN {} \
             AND (arrived_at >= $1 OR (callback_at IS NOT NULL AND done_at IS NULL))",
            placeholders(2, wanted.len())
        );
        let mut q = sqlx::query(&sql).persistent(false).bind(earliest);
        for k in &wanted {
            q = q.bind(*k);
        }
        for row in q.fetch_all(&mut *conn).await? {
            previous.entry(row.try_get(0)?).or_default().push(Previous {
                entry: Ok(row.try_get(1)?),
                arrived: row.try_get(2)?,
                open: row.try_get::<i64, _>(3)? != 0,
            });
        }
    }
    // Sequence numbers and repeat links, call by call in order.
    let mut seqs = vec![0i64; calls.len()];
    let mut repeat: Vec<Option<Result<i64, usize>>> = vec![None; calls.len()];
    for i in (0..calls.len()).filter(|&i| fresh[i]) {
        let slot = next_seq
            .iter_mut()
            .find(|(y, _)| *y == years[i])
            .expect("a counter was bumped for every year with a new call");
        seqs[i] = slot.1;
        slot.1 += 1;
        if keys[i].is_empty() {
            continue;
        }
        let arrived = ms(calls[i].arrived_at);
        let since = arrived.saturating_sub(repeat_window_ms);
        let list = previous.entry(keys[i].clone()).or_default();
        repeat[i] = list
            .iter()
            .filter(|p| p.arrived <= arrived && (p.arrived >= since || p.open))
            .max_by_key(|p| {
                // Newest first; at the same instant, this chunk's calls are newer still.
                (
                    p.arrived,
                    p.entry.is_err(),
                    p.entry.unwrap_or_else(|j| j as i64),
                )
            })
            .map(|p| p.entry);
        list.push(Previous {
            arrived,
            entry: Err(i),
            open: false,
        });
    }
    // One multi-row insert; ids come back with their (year, seq), which are unique.
    let new: Vec<usize> = (0..calls.len()).filter(|&i| fresh[i]).collect();
    let mut ids = vec![0i64; calls.len()];
    if !new.is_empty() {
        const COLS: usize = 12;
        let mut sql = String::from(
            "INSERT INTO journal_entries (year, seq, call_id, arrived_at, caller_name, phone, \
             phone_key, repeat_of, search_text, last_activity_at, created_at, node_id, disposition, \
             updated_at) VALUES ",
        );
        for (n, _) in new.iter().enumerate() {
            if n > 0 {
                sql.push_str(", ");
            }
            let p = placeholders(1 + n * COLS, COLS);
            // created_at doubles as updated_at; the disposition starts as in progress.
            let created = format!("${}", n * COLS + COLS - 1);
            sql.push_str(&format!("{}, 'in_progress', {created})", &p[..p.len() - 1]));
        }
        sql.push_str(" RETURNING id, year, seq");
        let mut q = sqlx::query(&sql).persistent(false);
        for &i in &new {
            let c = &calls[i];
            let arrived = ms(c.arrived_at);
            q = q
                .bind(years[i])
                .bind(seqs[i])
                .bind(c.call_id.as_deref())
                .bind(arrived)
                .bind(c.caller_name.as_deref())
                .bind(c.phone.as_str())
                .bind(keys[i].as_str())
                .bind(match repeat[i] {
                    Some(Ok(id)) => Some(id),
                    _ => None,
                })
                .bind(search_text(&[c.caller_name.as_deref()]))
                .bind(arrived)
                .bind(ms(now))
                .bind(node);
        }
        let mut by_number: HashMap<(i64, i64), i64> = HashMap::new();
        for row in q.fetch_all(&mut *conn).await? {
            by_number.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
        }
        for &i in &new {
            ids[i] = *by_number.get(&(years[i], seqs[i])).ok_or_else(|| {
                StoreError::Conflict(format!("entry № {}/{} was not inserted", seqs[i], years[i]))
            })?;
        }
        // Repeats of a call earlier in this chunk learn its id now.
        for &i in &new {
            if let Some(Err(j)) = repeat[i] {
                sqlx::query("UPDATE journal_entries SET repeat_of = $1 WHERE id = $2")
                    .bind(ids[j])
                    .bind(ids[i])
                    .execute(&mut *conn)
                    .await?;
            }
        }
        audit::record_creations(
            conn,
            now,
            SYSTEM,
            "journal",
            &new.iter()
                .map(|&i| {
                    (
                        ids[i],
                        format!("№ {}/{}, {}", seqs[i], years[i], calls[i].phone),
                    )
                })
                .collect::<Vec<_>>(),
        )
        .await?;
    }
    for i in 0..calls.len() {
        match same_as[i] {
            Some(Ok(id)) => ids[i] = id,
            Some(Err(j)) => ids[i] = ids[j],
            None => {}
        }
    }
    Ok(ids)
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

/// Sets columns of entry `id` (audited under `actor`) and marks it touched: the way forms
/// and voicemail fill in the journal columns they own.
pub(crate) async fn update_entry(
    conn: &mut AnyConnection,
    id: i64,
    changes: &[Change],
    actor: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    audit::update_with_audit(conn, "journal_entries", "journal", id, changes, actor, now).await?;
    touch(conn, id, now).await
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

/// A journal entry whose call never got its end written: the process stopped (a crash,
/// kill -9, power) while the call was going on.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub id: i64,
    pub call_id: String,
    pub arrived_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    /// Ended already by a survivor that took over this node's work
    /// ([`super::cluster::NODE_LOST`]), without the files that only this node has.
    pub lost: bool,
}

/// The entries a run that is gone left unfinished, oldest first. Asked at start-up only,
/// before any call of this run exists.
///
/// On a single node (`node` is `None`) that is every entry still `in_progress`. A node of
/// a cluster asks for its own only (the others' are live calls), and also for the entries
/// of its previous run (started at `previous_run`) that a survivor ended as lost: their
/// recordings and voicemail are on this node's disk, to be linked now.
pub async fn unfinished(
    store: &Store,
    node: Option<&str>,
    previous_run: Option<DateTime<Utc>>,
) -> Result<Vec<Unfinished>, StoreError> {
    const COLUMNS: &str = "SELECT id, call_id, arrived_at, answered_at, \
         CASE WHEN disposition = 'in_progress' THEN 0 ELSE 1 END FROM journal_entries";
    let rows = match node {
        None => {
            sqlx::query(&format!(
                "{COLUMNS} WHERE disposition = 'in_progress' AND call_id IS NOT NULL \
                 ORDER BY arrived_at, id"
            ))
            .fetch_all(store.pool())
            .await?
        }
        Some(node) => {
            sqlx::query(&format!(
                "{COLUMNS} WHERE node_id = $1 AND call_id IS NOT NULL \
                 AND (disposition = 'in_progress' OR (end_reason = $2 AND arrived_at >= $3 \
                 AND recording IS NULL AND voicemail_id IS NULL)) ORDER BY arrived_at, id"
            ))
            .bind(node)
            .bind(super::cluster::NODE_LOST)
            .bind(previous_run.map(ms).unwrap_or(i64::MAX))
            .fetch_all(store.pool())
            .await?
        }
    };
    rows.iter()
        .map(|r| {
            Ok(Unfinished {
                id: r.try_get(0)?,
                call_id: r.try_get(1)?,
                arrived_at: from_ms(r.try_get(2)?),
                answered_at: r.try_get::<Option<i64>, _>(3)?.map(from_ms),
                lost: r.try_get::<i64, _>(4)? == 1,
            })
        })
        .collect()
}

/// The node of a cluster that took the call of entry `id` (`None` on a single node, or for
/// an entry that is no call's).
pub async fn node_of(store: &Store, id: i64) -> Result<Option<String>, StoreError> {
    let node: Option<Option<String>> =
        sqlx::query_scalar("SELECT node_id FROM journal_entries WHERE id = $1")
            .bind(id)
            .fetch_optional(store.pool())
            .await?;
    Ok(node.flatten())
}

/// The entry of a SIP Call-ID, if journaled (the call log finds entries by it, because a
/// write spooled while the database was away could not know the id).
pub async fn id_by_call_id(store: &Store, call_id: &str) -> Result<Option<i64>, StoreError> {
    let mut conn = store.pool().acquire().await?;
    id_by_call_id_in(&mut conn, call_id).await
}

/// [`id_by_call_id`] on the caller's connection (inside its transaction).
/// An entry's caller (number, name), read in the caller's transaction; `None` if there
/// is no such entry.
pub async fn caller_in(
    conn: &mut AnyConnection,
    id: i64,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    Ok(
        sqlx::query_as("SELECT phone, caller_name FROM journal_entries WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

pub async fn id_by_call_id_in(
    conn: &mut AnyConnection,
    call_id: &str,
) -> Result<Option<i64>, StoreError> {
    let row = sqlx::query("SELECT id FROM journal_entries WHERE call_id = $1")
        .bind(call_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

/// The call flow's update: answer, end, wait, disposition, operator, recording.
pub async fn update_progress(store: &Store, id: i64, p: &CallProgress) -> Result<(), StoreError> {
    let mut tx = store.begin_write().await?;
    update_progress_in(&mut tx, id, p, Utc::now()).await?;
    tx.commit().await?;
    Ok(())
}

/// [`update_progress`] inside the caller's transaction.
pub async fn update_progress_in(
    conn: &mut AnyConnection,
    id: i64,
    p: &CallProgress,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    audit::update_with_audit(
        &mut *conn,
        "journal_entries",
        "journal",
        id,
        &progress_changes(p),
        SYSTEM,
        now,
    )
    .await?;
    touch(conn, id, now).await?;
    Ok(())
}

/// The columns a progress update sets (those it gives).
fn progress_changes(p: &CallProgress) -> Vec<Change> {
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
    changes
}

/// The progress columns, in the order [`update_progress_many`] reads and writes them.
const PROGRESS_COLUMNS: [(&str, Kind); 6] = [
    ("answered_at", Kind::Time),
    ("ended_at", Kind::Time),
    ("wait_ms", Kind::Int),
    ("disposition", Kind::Text),
    ("operator", Kind::Text),
    ("recording", Kind::Text),
];

/// Progress updates of several calls, found by Call-ID, applied in the order given inside
/// the caller's transaction, with the same outcome and audit lines as applying them one by
/// one with [`update_progress_in`].
///
/// # Why
/// One by one, an update is eight or nine statements (look-up, lock, read, write, an audit
/// line per column, touch), and every statement is a round trip: to the server on
/// PostgreSQL, to sqlx's worker thread on SQLite. On a loaded 2-core machine each round
/// trip waits for a time slice, and at 34 new calls a second the call log's batches took
/// up to a second. Here a chunk of up to 200 updates is four statements: the lock, one
/// read of the entries, one multi-row `UPDATE … FROM (VALUES …)` and one multi-row audit
/// insert.
///
/// A Call-ID with no entry fails the whole call with [`StoreError::Conflict`] (the call log
/// then applies its batch one write at a time to set that one aside).
pub async fn update_progress_many(
    conn: &mut AnyConnection,
    updates: &[(&str, &CallProgress)],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    use std::collections::HashMap;
    if updates.is_empty() {
        return Ok(());
    }
    for chunk in updates.chunks(CHUNK) {
        let mut cids: Vec<&str> = chunk.iter().map(|(c, _)| *c).collect();
        cids.sort_unstable();
        cids.dedup();
        let cols: Vec<&str> = PROGRESS_COLUMNS.iter().map(|(c, _)| *c).collect();
        let sql = format!(
            "SELECT call_id, id, {} FROM journal_entries WHERE call_id IN {}",
            cols.join(", "),
            placeholders(1, cids.len())
        );
        let mut q = sqlx::query(&sql).persistent(false);
        for c in &cids {
            q = q.bind(*c);
        }
        // Each entry's current values, changed in memory update by update.
        let mut entries: HashMap<String, (i64, Vec<Val>)> = HashMap::new();
        for row in q.fetch_all(&mut *conn).await? {
            let mut vals = Vec::with_capacity(PROGRESS_COLUMNS.len());
            for (i, (_, kind)) in PROGRESS_COLUMNS.iter().enumerate() {
                vals.push(match kind {
                    Kind::Text => {
                        Val::opt_text(row.try_get::<Option<String>, _>(2 + i)?.as_deref())
                    }
                    Kind::Int | Kind::Time => row
                        .try_get::<Option<i64>, _>(2 + i)?
                        .map_or(Val::Null, Val::Int),
                });
            }
            entries.insert(row.try_get(0)?, (row.try_get(1)?, vals));
        }
        let mut order: Vec<&str> = Vec::new();
        let mut lines: Vec<(i64, &'static str, Option<String>, Option<String>)> = Vec::new();
        for (cid, p) in chunk {
            let (id, vals) = entries.get_mut(*cid).ok_or_else(|| {
                StoreError::Conflict(format!("no journal entry has Call-ID {cid}"))
            })?;
            if !order.contains(cid) {
                order.push(cid);
            }
            for c in progress_changes(p) {
                let i = PROGRESS_COLUMNS
                    .iter()
                    .position(|(name, _)| *name == c.column)
                    .expect("progress_changes sets progress columns");
                if vals[i] != c.new {
                    lines.push((*id, c.column, vals[i].render(c.kind), c.new.render(c.kind)));
                    vals[i] = c.new;
                }
            }
        }
        // Every entry is written (and touched), changed or not, as one by one would.
        let mut sql = Sql::new("UPDATE journal_entries SET ");
        for (i, (col, _)) in PROGRESS_COLUMNS.iter().enumerate() {
            sql.push(&format!("{col} = v.column{}, ", i + 2));
        }
        sql.push("updated_at = ").bind(Param::Int(ms(now)));
        sql.push(", last_activity_at = CASE WHEN last_activity_at > ")
            .bind(Param::Int(ms(now)))
            .push(" THEN last_activity_at ELSE ")
            .bind(Param::Int(ms(now)))
            .push(" END FROM (VALUES ");
        for (n, cid) in order.iter().enumerate() {
            let (id, vals) = &entries[*cid];
            sql.push(if n == 0 { "(" } else { ", (" });
            sql.bind(Param::Int(*id));
            for (val, (_, kind)) in vals.iter().zip(PROGRESS_COLUMNS) {
                // Typed, so that PostgreSQL knows a NULL's type inside VALUES.
                let ty = if kind == Kind::Text { "TEXT" } else { "BIGINT" };
                sql.push(", CAST(");
                match val {
                    Val::Null => sql.push("NULL"),
                    Val::Int(v) => sql.bind(Param::Int(*v)),
                    Val::Text(t) => sql.bind(Param::Text(t.clone())),
                };
                sql.push(&format!(" AS {ty})"));
            }
            sql.push(")");
        }
        sql.push(") AS v WHERE journal_entries.id = v.column1");
        sql.query().persistent(false).execute(&mut *conn).await?;
        audit::record_updates(conn, now, SYSTEM, "journal", &lines).await?;
    }
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
    let mut tx = store.begin_write().await?;
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

/// The FTS5 query that finds the rows containing `term` (lower-cased) with the trigram
/// tokenizer: a quoted phrase of its trigrams is the substring. `None` under 3 characters,
/// which have no trigram.
fn trigram_phrase(term: &str) -> Option<String> {
    (term.chars().count() >= 3).then(|| format!("\"{}\"", term.replace('"', "\"\"")))
}

/// Above this many candidates from SQLite's trigram table, a page is found faster by
/// walking the entries newest first and testing each (a common word soon fills a page)
/// than by sorting every candidate.
const TRIGRAM_PAGE_MAX: i64 = 2_000;

/// Whether a page of `filter` should narrow by SQLite's trigram table (see
/// [`TRIGRAM_PAGE_MAX`]); one bounded count on the FTS index decides.
async fn page_uses_trigram_table(
    store: &Store,
    filter: &JournalFilter,
) -> Result<bool, StoreError> {
    let phrase = match (&filter.text, store.backend()) {
        (Some(q), super::Backend::Sqlite) => trigram_phrase(&q.to_lowercase()),
        _ => None,
    };
    let Some(phrase) = phrase else {
        return Ok(false);
    };
    let n: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM \
         (SELECT rowid FROM journal_search WHERE journal_search MATCH $1 LIMIT $2)",
    )
    .bind(phrase)
    .bind(TRIGRAM_PAGE_MAX)
    .fetch_one(store.pool())
    .await?;
    Ok(n < TRIGRAM_PAGE_MAX)
}

/// The WHERE clause of the list and the export; `trigram_table`: narrow a text filter by
/// SQLite's `journal_search`.
fn push_filters(sql: &mut Sql, filter: &JournalFilter, trigram_table: bool) {
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
        let term = q.to_lowercase();
        let pattern = format!("%{}%", super::like_escape(&term));
        sql.push(" AND e.search_text LIKE ")
            .bind(Param::Text(pattern))
            .push(" ESCAPE '\\'");
        // On SQLite the trigram index is a table of its own: narrow to its candidates.
        // PostgreSQL's trigram index serves the LIKE itself.
        if let (true, Some(phrase)) = (trigram_table, trigram_phrase(&term)) {
            sql.push(" AND e.id IN (SELECT rowid FROM journal_search WHERE journal_search MATCH ")
                .bind(Param::Text(phrase))
                .push(")");
        }
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
}

/// One page, newest first, starting after `cursor`; the cursor of the next page is
/// returned when there is one.
///
/// Not a cached statement (`persistent(false)`): the best plan depends on the values (a rare
/// word wants the trigram index, a common one the arrival order), and PostgreSQL's generic
/// plan for a cached statement cannot know them.
pub async fn list(
    store: &Store,
    filter: &JournalFilter,
    cursor: Option<Cursor>,
    limit: usize,
) -> Result<(Vec<Entry>, Option<Cursor>), StoreError> {
    let mut sql = Sql::new(SELECT);
    let trigram_table = page_uses_trigram_table(store, filter).await?;
    push_filters(&mut sql, filter, trigram_table);
    if let Some(c) = cursor {
        // A row value, not `a < x OR (a = x AND id < y)`: both databases take it as a range
        // of the (arrived_at, id) index, so a page deep in the journal costs no more than
        // the first.
        sql.push(" AND (e.arrived_at, e.id) < (")
            .bind(Param::Int(c.arrived_ms))
            .push(", ")
            .bind(Param::Int(c.id))
            .push(")");
    }
    sql.push(" ORDER BY e.arrived_at DESC, e.id DESC LIMIT ")
        .bind(Param::Int(limit as i64 + 1));
    let rows = sql
        .query()
        .persistent(false)
        .fetch_all(store.pool())
        .await?;
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

/// One row of the export: only what the CSV shows, without [`Entry`]'s joins. Read by
/// position, from a row or from a JSON array (see [`export`]), in this field order.
#[derive(Debug, serde::Deserialize)]
pub struct ExportRow {
    pub seq: i64,
    pub year: i64,
    pub arrived_at: i64,
    pub caller_name: Option<String>,
    pub caller_status: Option<CallerStatus>,
    pub phone: String,
    pub callback_at: Option<i64>,
    pub content: Option<String>,
    pub forwarded_to: Option<String>,
    pub forwarded_at: Option<i64>,
    pub done_at: Option<i64>,
    pub call_id: Option<String>,
    pub answered_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub wait_ms: Option<i64>,
    pub disposition: Disposition,
    pub operator: Option<String>,
    pub recording: Option<String>,
    /// № and year of the entry this one repeats.
    pub repeat_seq: Option<i64>,
    pub repeat_year: Option<i64>,
    pub id: i64,
    /// Registration numbers of the call's ATM tickets.
    pub tickets: Option<String>,
}

/// Where the next page of the export starts: after this (arrival, id).
type ExportCursor = (i64, i64);

/// The columns of an export row, in [`ExportRow`]'s order.
const EXPORT_COLUMNS: &str = "e.seq, e.year, e.arrived_at, e.caller_name, e.caller_status, \
     e.phone, e.callback_at, e.content, e.forwarded_to, e.forwarded_at, e.done_at, e.call_id, \
     e.answered_at, e.ended_at, e.wait_ms, e.disposition, e.operator, e.recording, \
     r.seq AS r_seq, r.year AS r_year, e.id, e.tickets";

/// The export's rows, oldest first (the order of the paper journal), in batches, from a
/// task of its own; the receiver ends after the last batch or an error.
///
/// The two databases are read differently, each the faster way measured on 1,000,000
/// entries: PostgreSQL as one query streamed row by row; SQLite in pages of 5,000 that the
/// database hands over as one JSON array each (`json_group_array`), because sqlx's SQLite
/// driver passes every row from its worker thread through a channel, and waking the reader
/// for each row cost more than everything else of the export (70,000 rows/s that way,
/// against 150,000 in pages; PostgreSQL's own JSON building is the slower way there).
pub fn export(
    store: Store,
    filter: JournalFilter,
) -> tokio::sync::mpsc::Receiver<Result<Vec<ExportRow>, StoreError>> {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        let result = match store.backend() {
            super::Backend::Sqlite => export_in_pages(&store, &filter, &tx).await,
            super::Backend::Postgres => export_streamed(&store, &filter, &tx).await,
        };
        if let Err(e) = result {
            let _ = tx.send(Err(e)).await;
        }
    });
    rx
}

type ExportSender = tokio::sync::mpsc::Sender<Result<Vec<ExportRow>, StoreError>>;

/// Rows per batch of the streamed export.
const EXPORT_BATCH: usize = 1000;

async fn export_streamed(
    store: &Store,
    filter: &JournalFilter,
    tx: &ExportSender,
) -> Result<(), StoreError> {
    use futures::TryStreamExt;
    // The repeated entry's № and year as sub-queries, not a join: with a join, PostgreSQL
    // plans a merge join on `repeat_of` and then sorts the whole journal on disk before the
    // first row leaves (2.4 s of 1,000,000 rows); this way it walks the (arrived_at, id)
    // index and the rows stream while it reads.
    let columns = EXPORT_COLUMNS.replace(
        "r.seq AS r_seq, r.year AS r_year",
        "(SELECT r.seq FROM journal_entries r WHERE r.id = e.repeat_of) AS r_seq, \
         (SELECT r.year FROM journal_entries r WHERE r.id = e.repeat_of) AS r_year",
    );
    let mut sql = Sql::new(&format!("SELECT {columns} FROM journal_entries e"));
    push_filters(&mut sql, filter, false);
    sql.push(" ORDER BY e.arrived_at, e.id");
    // One snapshot for the whole export, and no JIT: the plan's cost (the sub-queries
    // counted a million times) makes PostgreSQL spend a quarter of a second compiling it.
    let mut conn = store.pool().begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SET LOCAL jit = off")
        .execute(&mut *conn)
        .await?;
    let mut rows = sql.query().persistent(false).fetch(&mut *conn);
    let mut batch = Vec::with_capacity(EXPORT_BATCH);
    while let Some(row) = rows.try_next().await? {
        batch.push(export_row(&row)?);
        if batch.len() == EXPORT_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(EXPORT_BATCH));
            if tx.send(Ok(full)).await.is_err() {
                return Ok(()); // the client has gone
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch)).await;
    }
    Ok(())
}

fn export_row(row: &AnyRow) -> Result<ExportRow, StoreError> {
    let text = |i: usize| row.try_get::<Option<String>, _>(i);
    let int = |i: usize| row.try_get::<Option<i64>, _>(i);
    let disposition: String = row.try_get(15)?;
    Ok(ExportRow {
        seq: row.try_get(0)?,
        year: row.try_get(1)?,
        arrived_at: row.try_get(2)?,
        caller_name: text(3)?,
        caller_status: text(4)?.as_deref().and_then(CallerStatus::parse),
        phone: row.try_get(5)?,
        callback_at: int(6)?,
        content: text(7)?,
        forwarded_to: text(8)?,
        forwarded_at: int(9)?,
        done_at: int(10)?,
        call_id: text(11)?,
        answered_at: int(12)?,
        ended_at: int(13)?,
        wait_ms: int(14)?,
        disposition: Disposition::parse(&disposition).unwrap_or(Disposition::Failed),
        operator: text(16)?,
        recording: text(17)?,
        repeat_seq: int(18)?,
        repeat_year: int(19)?,
        id: row.try_get(20)?,
        tickets: text(21)?,
    })
}

/// Rows per page of the paged export.
const EXPORT_PAGE: i64 = 5000;

async fn export_in_pages(
    store: &Store,
    filter: &JournalFilter,
    tx: &ExportSender,
) -> Result<(), StoreError> {
    let mut after: Option<ExportCursor> = None;
    loop {
        let mut sql = Sql::new(&format!(
            "SELECT json_group_array(json_array(seq, year, arrived_at, caller_name, \
             caller_status, phone, callback_at, content, forwarded_to, forwarded_at, done_at, \
             call_id, answered_at, ended_at, wait_ms, disposition, operator, recording, r_seq, \
             r_year, id, tickets) ORDER BY arrived_at, id) FROM (SELECT {EXPORT_COLUMNS} \
             FROM journal_entries e LEFT JOIN journal_entries r ON r.id = e.repeat_of"
        ));
        // Every match is read and sorted anyway: the trigram table is worth it for any word.
        push_filters(&mut sql, filter, true);
        if let Some((a, id)) = after {
            // A row value: a range of the (arrived_at, id) index (see `list`).
            sql.push(" AND (e.arrived_at, e.id) > (")
                .bind(Param::Int(a))
                .push(", ")
                .bind(Param::Int(id))
                .push(")");
        }
        sql.push(" ORDER BY e.arrived_at, e.id LIMIT ")
            .bind(Param::Int(EXPORT_PAGE))
            .push(") AS page");
        let json: Option<String> = sql
            .query()
            .persistent(false)
            .fetch_one(store.pool())
            .await?
            .try_get(0)?;
        let rows: Vec<ExportRow> = match json {
            Some(j) => serde_json::from_str(&j)
                .map_err(|e| StoreError::Conflict(format!("export page: {e}")))?,
            None => Vec::new(),
        };
        let full_page = rows.len() as i64 == EXPORT_PAGE;
        after = rows.last().map(|r| (r.arrived_at, r.id));
        if rows.is_empty() || tx.send(Ok(rows)).await.is_err() || !full_page {
            return Ok(());
        }
    }
}
