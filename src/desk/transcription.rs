//! The transcription jobs as the worker takes and ends them: kept in the database so that a
//! restart resumes them, and finished with the transcript's notice in one transaction.

use super::Records;
use crate::records::voicemail::{Transcribed, TranscriptionJob};
use crate::store::{self, StoreError};
use crate::transcribe::worker::Jobs;
use chrono::{DateTime, Utc};

impl Jobs for Records {
    type Error = StoreError;

    async fn recover(&self) -> Result<u64, StoreError> {
        store::transcription::recover(&self.store).await
    }

    async fn claim_next(&self, now: DateTime<Utc>) -> Result<Option<TranscriptionJob>, StoreError> {
        store::transcription::claim_next(&self.store, now).await
    }

    async fn complete(
        &self,
        job: &TranscriptionJob,
        done: &Transcribed<'_>,
    ) -> Result<bool, StoreError> {
        self.complete_transcription(job, done).await
    }

    async fn fail(
        &self,
        job: &TranscriptionJob,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        store::transcription::fail(&self.store, job, error, retry_at).await
    }
}
