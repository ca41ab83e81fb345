//! Voicemail through the desk: a message, its transcript and its overdue reminder, each
//! with the head of the call centre's notice in the same transaction.

use super::notices::{self, Targets};
use super::{DeskError, Records};
use crate::records::notice::Notice;
use crate::records::voicemail::{NewVoicemail, Transcribed, TranscriptionJob, VoicemailFacts};
use crate::store::{self, StoreError};
use chrono::{DateTime, Utc};

impl Records {
    /// An operator has processed the message (listened, acted on it); a conflict the
    /// second time.
    pub async fn mark_voicemail_processed(&self, id: i64, actor: &str) -> Result<(), DeskError> {
        Ok(store::voicemail::mark_processed(&self.store, id, actor).await?)
    }

    /// Records a voicemail (and its callback form), due by the next working day's close,
    /// with the head of the call centre's notice in the same transaction.
    pub async fn add_voicemail(&self, vm: &NewVoicemail) -> Result<i64, DeskError> {
        let deadline = self.calendar.next_working_day_deadline(vm.arrived_at);
        let now = Utc::now();
        let mut tx = self.store.begin_write().await?;
        let id = store::voicemail::insert_in(&mut tx, vm, deadline, now).await?;
        self.voicemail_notice_in(&mut tx, id, notices::voicemail::voicemail_new, now)
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// [`Records::add_voicemail`] in the caller's transaction, once per entry and file
    /// (see [`store::voicemail::insert_once_in`]); `false` when it was recorded
    /// already.
    pub async fn add_voicemail_once_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        vm: &NewVoicemail,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool), StoreError> {
        let deadline = self.calendar.next_working_day_deadline(vm.arrived_at);
        let (id, created) = store::voicemail::insert_once_in(conn, vm, deadline, now).await?;
        if created {
            self.voicemail_notice_in(conn, id, notices::voicemail::voicemail_new, now)
                .await?;
        }
        Ok((id, created))
    }

    /// Stores a finished transcription with its "transcript ready" notice, in one
    /// transaction; `false` if the job was no longer running.
    pub async fn complete_transcription(
        &self,
        job: &TranscriptionJob,
        done: &Transcribed<'_>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let mut tx = self.store.begin_write().await?;
        if !store::transcription::complete_in(&mut tx, job, done, now).await? {
            return Ok(false);
        }
        self.voicemail_notice_in(
            &mut tx,
            job.voicemail_id,
            notices::voicemail::voicemail_transcript,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Enqueues the reminder of every message past its deadline and not processed (§2.6:
    /// by the next working day) that has none yet, each in its own transaction; returns
    /// how many notices were added. Run periodically: each message is reminded of once.
    pub async fn remind_overdue_voicemail(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        if self.targets.voicemail_sinks().is_empty() {
            return Ok(0);
        }
        let mut added = 0;
        for id in store::voicemail::overdue_unreminded(&self.store, now).await? {
            let mut tx = self.store.begin_write().await?;
            added += self
                .voicemail_notice_in(&mut tx, id, notices::voicemail::voicemail_overdue, now)
                .await?;
            tx.commit().await?;
        }
        Ok(added)
    }

    /// Composes a voicemail notice from what the caller's transaction holds and enqueues it
    /// there, for the head of the call centre and the webhooks; returns the rows added.
    async fn voicemail_notice_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: i64,
        compose: fn(&VoicemailFacts, &Targets, chrono_tz::Tz) -> Notice,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let facts = store::voicemail::facts(conn, id).await?;
        let notice = compose(&facts, &self.targets, self.tz());
        store::outbox::enqueue(conn, &notice, &self.targets.voicemail_sinks(), now).await
    }
}
