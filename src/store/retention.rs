//! Retention (§7.6): case files are kept five years (configurable) after their last
//! document. A journal entry's last document is its `last_activity_at`, which every change
//! to it, its voicemail or its callback forms moves forward. Older entries are purged with
//! their voicemail, forms, audit lines (they hold the personal data too) and files; one
//! audit line per purged entry, without personal data, says it was purged. Nothing younger
//! is ever touched, and a dry run lists what would go.

use super::{audit, from_ms, ms, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use std::path::Path;
use utoipa::ToSchema;

/// An entry due for purging (or purged).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PurgeItem {
    pub journal_id: i64,
    pub year: i64,
    pub seq: i64,
    pub arrived_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    /// Recording and voicemail files, relative to the data directory.
    pub files: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PurgeReport {
    pub cutoff: DateTime<Utc>,
    pub dry_run: bool,
    pub entries: Vec<PurgeItem>,
    /// Callback forms made without a journal entry, purged by their own last change.
    pub standalone_callbacks: i64,
    /// Files that could not be deleted (logged; the rows are gone).
    pub files_failed: Vec<String>,
}

/// Entries per transaction.
const BATCH: i64 = 500;

/// Purges (or with `dry_run` lists) what had its last document before `cutoff`.
pub async fn purge(
    store: &Store,
    data_dir: &Path,
    cutoff: DateTime<Utc>,
    dry_run: bool,
    actor: &str,
) -> Result<PurgeReport, StoreError> {
    let mut report = PurgeReport {
        cutoff,
        dry_run,
        entries: Vec::new(),
        standalone_callbacks: 0,
        files_failed: Vec::new(),
    };
    let mut after_id = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT id, year, seq, arrived_at, last_activity_at, recording FROM journal_entries \
             WHERE last_activity_at < $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(ms(cutoff))
        .bind(after_id)
        .bind(BATCH)
        .fetch_all(store.pool())
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut batch = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: i64 = r.try_get(0)?;
            let mut files: Vec<String> = r.try_get::<Option<String>, _>(5)?.into_iter().collect();
            let vm_files: Vec<String> =
                sqlx::query_scalar("SELECT file FROM voicemails WHERE journal_id = $1")
                    .bind(id)
                    .fetch_all(store.pool())
                    .await?;
            files.extend(vm_files);
            batch.push(PurgeItem {
                journal_id: id,
                year: r.try_get(1)?,
                seq: r.try_get(2)?,
                arrived_at: from_ms(r.try_get(3)?),
                last_activity_at: from_ms(r.try_get(4)?),
                files,
            });
            after_id = id;
        }
        if !dry_run {
            delete_batch(store, &batch, cutoff, actor).await?;
            for item in &batch {
                for f in &item.files {
                    if let Err(e) = remove_file(data_dir, f) {
                        tracing::error!(file = %f, error = %e, "retention: cannot delete file");
                        report.files_failed.push(f.clone());
                    }
                }
            }
        }
        report.entries.extend(batch);
    }
    let standalone = "FROM callback_forms WHERE journal_id IS NULL AND updated_at < $1 \
         AND (called_back_at IS NULL OR called_back_at < $1)";
    report.standalone_callbacks =
        sqlx::query_scalar(&format!("SELECT CAST(COUNT(*) AS BIGINT) {standalone}"))
            .bind(ms(cutoff))
            .fetch_one(store.pool())
            .await?;
    if !dry_run && report.standalone_callbacks > 0 {
        let mut tx = store.begin_write().await?;
        sqlx::query(&format!(
            "DELETE FROM audit_log WHERE entity = 'callback' AND entity_id IN (SELECT id {standalone})"
        ))
        .bind(ms(cutoff))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("DELETE {standalone}"))
            .bind(ms(cutoff))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(report)
}

async fn delete_batch(
    store: &Store,
    batch: &[PurgeItem],
    cutoff: DateTime<Utc>,
    actor: &str,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let mut tx = store.begin_write().await?;
    for item in batch {
        let id = item.journal_id;
        // Re-check under the write lock: a change since the listing keeps the entry.
        let still_old = sqlx::query(
            "UPDATE journal_entries SET id = id WHERE id = $1 AND last_activity_at < $2",
        )
        .bind(id)
        .bind(ms(cutoff))
        .execute(&mut *tx)
        .await?;
        if still_old.rows_affected() == 0 {
            continue;
        }
        for (entity, sql) in [
            (
                "voicemail",
                "SELECT id FROM voicemails WHERE journal_id = $1",
            ),
            (
                "callback",
                "SELECT id FROM callback_forms WHERE journal_id = $1",
            ),
            (
                "atm_ticket",
                "SELECT id FROM atm_tickets WHERE journal_id = $1",
            ),
        ] {
            let ids: Vec<i64> = sqlx::query_scalar(sql).bind(id).fetch_all(&mut *tx).await?;
            for child in ids {
                sqlx::query("DELETE FROM audit_log WHERE entity = $1 AND entity_id = $2")
                    .bind(entity)
                    .bind(child)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for sql in [
            "UPDATE journal_entries SET voicemail_id = NULL WHERE id = $1",
            "DELETE FROM callback_forms WHERE journal_id = $1",
            // A purged message takes its transcription job and its notices (sent long
            // ago: nothing is pending after five years) with it.
            "DELETE FROM transcription_jobs WHERE voicemail_id IN \
             (SELECT id FROM voicemails WHERE journal_id = $1)",
            "DELETE FROM notifications WHERE entity = 'voicemail' AND entity_id IN \
             (SELECT id FROM voicemails WHERE journal_id = $1)",
            "DELETE FROM voicemails WHERE journal_id = $1",
            // The call's ATM tickets go with it (registering one counts as activity on
            // the entry, so they are as old); an ATM they once suspended forgets them.
            "UPDATE atms SET suspended_by = NULL WHERE suspended_by IN \
             (SELECT id FROM atm_tickets WHERE journal_id = $1)",
            "DELETE FROM atm_ticket_events WHERE ticket_id IN \
             (SELECT id FROM atm_tickets WHERE journal_id = $1)",
            "DELETE FROM notifications WHERE entity = 'atm_ticket' AND entity_id IN \
             (SELECT id FROM atm_tickets WHERE journal_id = $1)",
            "DELETE FROM atm_tickets WHERE journal_id = $1",
            "UPDATE journal_entries SET repeat_of = NULL WHERE repeat_of = $1",
            "DELETE FROM audit_log WHERE entity = 'journal' AND entity_id = $1",
            "DELETE FROM journal_entries WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        audit::record(
            &mut tx,
            now,
            actor,
            "journal",
            id,
            "purge",
            None,
            None,
            Some(&format!("№ {}/{}", item.seq, item.year)),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Deletes a file the database names, refusing anything that would leave the data
/// directory. A file already gone is fine.
fn remove_file(data_dir: &Path, rel: &str) -> std::io::Result<()> {
    let path = crate::records::data_file(data_dir, rel)
        .ok_or_else(|| std::io::Error::other("path is not relative to the data directory"))?;
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
