//! SQL of voicemail transcription jobs (SPEC §2.7): one row per message, created with the
//! message ([`enqueue`], in its transaction), claimed by a worker (`pending → running`),
//! finished with the transcript, the classifier's suggestion and the notices in one
//! transaction ([`complete_in`]), or put back with a retry time or marked failed ([`fail`]).
//! A restart puts the crashed process's `running` jobs back to `pending` ([`recover`]).

use super::voicemail::apply_transcript;
use super::{from_ms, ms, opt_from_ms, Store, StoreError};
use crate::records::voicemail::{Transcribed, TranscriptionJob as Job};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use std::time::Duration;
use utoipa::ToSchema;

/// A message's transcription as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobState {
    /// pending / running / done / failed.
    pub status: String,
    pub attempts: i64,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds of audio and of work: their ratio is the real-time factor.
    pub audio_s: Option<f64>,
    pub elapsed_s: Option<f64>,
}

/// Jobs by status, for `/healthz` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: i64,
    pub running: i64,
    pub failed: i64,
    pub done: i64,
}

/// The job of a new message (in the message's transaction); nothing if it has one.
pub async fn enqueue(
    conn: &mut AnyConnection,
    voicemail_id: i64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO transcription_jobs (voicemail_id, status, attempts, next_attempt_at, \
         created_at, updated_at) VALUES ($1, 'pending', 0, $2, $2, $2) \
         ON CONFLICT (voicemail_id) DO NOTHING",
    )
    .bind(voicemail_id)
    .bind(ms(now))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Jobs a crashed process left running are due again; returns how many.
/// A node of a cluster takes back its own only, as [`super::outbox::recover`] does.
pub async fn recover(store: &Store) -> Result<u64, StoreError> {
    let sql = "UPDATE transcription_jobs SET status = 'pending', claimed_by = NULL, \
               updated_at = $1 WHERE status = 'running'";
    let done = match store.node() {
        None => {
            sqlx::query(sql)
                .bind(ms(Utc::now()))
                .execute(store.pool())
                .await?
        }
        Some(node) => {
            sqlx::query(&format!(
                "{sql} AND (claimed_by = $2 OR claimed_by IS NULL)"
            ))
            .bind(ms(Utc::now()))
            .bind(node)
            .execute(store.pool())
            .await?
        }
    };
    Ok(done.rows_affected())
}

/// Takes the oldest due job, if any. The update re-checks the status, so two workers never
/// take the same job.
pub async fn claim_next(store: &Store, now: DateTime<Utc>) -> Result<Option<Job>, StoreError> {
    loop {
        let row = sqlx::query(
            "SELECT j.id, j.voicemail_id, v.file, j.attempts FROM transcription_jobs j \
             JOIN voicemails v ON v.id = j.voicemail_id \
             WHERE j.status = 'pending' AND j.next_attempt_at <= $1 ORDER BY j.id LIMIT 1",
        )
        .bind(ms(now))
        .fetch_optional(store.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.try_get(0)?;
        let taken = sqlx::query(
            "UPDATE transcription_jobs SET status = 'running', attempts = attempts + 1, \
             started_at = $1, updated_at = $1, claimed_by = $3 WHERE id = $2 AND status = 'pending'",
        )
        .bind(ms(now))
        .bind(id)
        .bind(store.node())
        .execute(store.pool())
        .await?;
        if taken.rows_affected() == 1 {
            return Ok(Some(Job {
                id,
                voicemail_id: row.try_get(1)?,
                file: row.try_get(2)?,
                attempts: row.try_get::<i64, _>(3)? + 1,
            }));
        }
    }
}

/// Stores the transcript (message, callback form, journal, as
/// [`super::voicemail::set_transcript`]), the suggestion and the job's end, in the
/// caller's transaction, which also takes the "transcript ready" notices: a job is done
/// exactly when all of it is recorded. A job no longer running (finished by another
/// worker) changes nothing and gives `false`.
pub async fn complete_in(
    tx: &mut AnyConnection,
    job: &Job,
    done: &Transcribed<'_>,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let ended = sqlx::query(
        "UPDATE transcription_jobs SET status = 'done', error = NULL, finished_at = $1, \
         updated_at = $1, audio_ms = $2, elapsed_ms = $3 WHERE id = $4 AND status = 'running'",
    )
    .bind(ms(now))
    .bind(millis(done.audio))
    .bind(millis(done.elapsed))
    .bind(job.id)
    .execute(&mut *tx)
    .await?;
    if ended.rows_affected() == 0 {
        return Ok(false);
    }
    apply_transcript(&mut *tx, job.voicemail_id, done.transcript, now).await?;
    let s = done.suggestion;
    sqlx::query(
        "UPDATE voicemails SET suggested_kind = $1, suggested_category = $2, \
         suggested_words = $3, transcribed_at = $4 WHERE id = $5",
    )
    .bind(s.kind.as_str())
    .bind(s.category.map(|c| c.code()))
    .bind(serde_json::to_string(&s.matched).unwrap_or_else(|_| "[]".into()))
    .bind(ms(now))
    .bind(job.voicemail_id)
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

/// A job failed with `error`: due again at `retry_at`, or failed for good.
pub async fn fail(
    store: &Store,
    job: &Job,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    let now = Utc::now();
    let (status, at) = match retry_at {
        Some(at) => ("pending", at),
        None => ("failed", now),
    };
    sqlx::query(
        "UPDATE transcription_jobs SET status = $1, error = $2, next_attempt_at = $3, \
         updated_at = $4, finished_at = $5 WHERE id = $6",
    )
    .bind(status)
    .bind(error)
    .bind(ms(at))
    .bind(ms(now))
    .bind(retry_at.is_none().then_some(ms(now)))
    .bind(job.id)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Failed jobs are due again now with fresh attempts (after a model was installed, say).
pub async fn retry_failed(store: &Store) -> Result<u64, StoreError> {
    let now = ms(Utc::now());
    Ok(sqlx::query(
        "UPDATE transcription_jobs SET status = 'pending', attempts = 0, next_attempt_at = $1, \
         updated_at = $1 WHERE status = 'failed'",
    )
    .bind(now)
    .execute(store.pool())
    .await?
    .rows_affected())
}

/// The transcription of one message, if it has a job.
pub async fn state(store: &Store, voicemail_id: i64) -> Result<Option<JobState>, StoreError> {
    let row = sqlx::query(
        "SELECT status, attempts, error, finished_at, audio_ms, elapsed_ms \
         FROM transcription_jobs WHERE voicemail_id = $1",
    )
    .bind(voicemail_id)
    .fetch_optional(store.pool())
    .await?;
    row.map(|r| {
        Ok(JobState {
            status: r.try_get(0)?,
            attempts: r.try_get(1)?,
            error: r.try_get(2)?,
            finished_at: opt_from_ms(r.try_get(3)?),
            audio_s: r.try_get::<Option<i64>, _>(4)?.map(|v| v as f64 / 1000.0),
            elapsed_s: r.try_get::<Option<i64>, _>(5)?.map(|v| v as f64 / 1000.0),
        })
    })
    .transpose()
}

pub async fn counts(store: &Store) -> Result<Counts, StoreError> {
    let rows = sqlx::query("SELECT status, COUNT(*) FROM transcription_jobs GROUP BY status")
        .fetch_all(store.pool())
        .await?;
    let mut c = Counts::default();
    for r in rows {
        let n: i64 = r.try_get(1)?;
        match r.try_get::<String, _>(0)?.as_str() {
            "pending" => c.pending = n,
            "running" => c.running = n,
            "failed" => c.failed = n,
            _ => c.done = n,
        }
    }
    Ok(c)
}

/// The time the next pending job is due, to sleep until then.
pub async fn next_due(store: &Store) -> Result<Option<DateTime<Utc>>, StoreError> {
    let at: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM transcription_jobs WHERE status = 'pending'",
    )
    .fetch_one(store.pool())
    .await?;
    Ok(at.map(from_ms))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
