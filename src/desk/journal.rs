//! The journal through the desk: calls arriving (numbered, repeat-linked) and the
//! operators' edits.

use super::files::Held;
use super::{DeskError, Records};
use crate::records::access::may_hear_recording;
use crate::records::journal::{validate_phone, EntryPatch, NewCall};
use crate::records::role::Role;
use crate::store::{self, StoreError};
use chrono::{DateTime, Utc};
use std::path::Path;

/// A call's recording, found for someone who may hear it.
#[derive(Debug)]
pub struct RecordingFile {
    pub held: Held,
    /// `call-<n>-<year>.wav`, for a download.
    pub name: String,
}

impl Records {
    /// The recording of call `id` if `role` may hear it ([`may_hear_recording`], against the
    /// call's tickets). The API and the console both ask here, and audit the listen with
    /// [`Records::audit_listen`].
    pub async fn recording_for(
        &self,
        data_dir: &Path,
        id: i64,
        role: Role,
    ) -> Result<RecordingFile, DeskError> {
        let e = store::journal::get(&self.store, id).await?;
        let filter = store::tickets::TicketFilter {
            journal_id: Some(id),
            limit: 100,
            ..Default::default()
        };
        let kinds: Vec<_> = store::tickets::list(&self.store, &filter)
            .await?
            .iter()
            .map(|t| t.kind)
            .collect();
        if !may_hear_recording(role, &kinds) {
            return Err(DeskError::Refused {
                role: role.as_str(),
                action: "hear a call without a ticket of theirs",
            });
        }
        let missing = StoreError::NotFound {
            entity: "recording",
            id,
        };
        let Some(file) = e.recording.as_deref() else {
            return Err(missing.into());
        };
        let held = self.locate(data_dir, file, id).await?.ok_or(missing)?;
        Ok(RecordingFile {
            held,
            name: format!("call-{}-{}.wav", e.seq, e.year),
        })
    }

    /// Creates the journal entry of an arriving call (one transaction: number, repeat link,
    /// audit). The call flow's arrivals go through [`CallLog`](super::calllog::CallLog), which batches.
    pub async fn record_call(&self, call: &NewCall) -> Result<i64, DeskError> {
        let ids = self.record_calls(std::slice::from_ref(call)).await?;
        Ok(ids[0])
    }

    /// Creates entries for several calls in one transaction; ids in the same order.
    pub async fn record_calls(&self, calls: &[NewCall]) -> Result<Vec<i64>, DeskError> {
        let mut tx = self.store.begin_write().await?;
        let ids = self.record_calls_in(&mut tx, calls, Utc::now()).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// [`Records::record_calls`] inside the caller's transaction.
    pub async fn record_calls_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        calls: &[NewCall],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, DeskError> {
        for c in calls {
            validate_phone("phone", &c.phone)?;
        }
        let years: Vec<i64> = calls
            .iter()
            .map(|c| self.journal_year(c.arrived_at))
            .collect();
        let window_ms = i64::try_from(self.settings.repeat_window.as_millis()).unwrap_or(i64::MAX);
        Ok(
            store::journal::insert_calls_in(conn, calls, &years, window_ms, now, self.store.node())
                .await?,
        )
    }

    /// Fills in or corrects the operator's columns of an entry, each change audited;
    /// returns how many changed.
    pub async fn patch_entry(
        &self,
        id: i64,
        patch: &EntryPatch,
        actor: &str,
    ) -> Result<usize, DeskError> {
        Ok(store::journal::patch(&self.store, id, patch, actor).await?)
    }

    /// Writes to the audit log that `actor` listened to (or downloaded, `how`) the
    /// recording of `entity` `id`: who heard which customer's call, and when.
    pub async fn audit_listen(
        &self,
        entity: &str,
        id: i64,
        how: &str,
        actor: &str,
    ) -> Result<(), DeskError> {
        let mut conn = self.store.begin_write().await?;
        store::audit::record(
            &mut conn,
            Utc::now(),
            actor,
            entity,
            id,
            how,
            Some("recording"),
            None,
            None,
        )
        .await?;
        conn.commit().await?;
        Ok(())
    }
}
