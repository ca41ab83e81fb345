//! The transcription worker: takes jobs from the database oldest first, runs whisper on a
//! bounded set of low-priority threads, and stores each result (transcript, suggestion,
//! notices) in one transaction.
//!
//! Why these choices:
//! - Jobs live in the database, kept by the desk ([`Jobs`]: the worker is handed them and
//!   knows no SQL), so a crash or restart resumes them: at start `running` jobs are due
//!   again.
//! - Inference runs on threads of its own in the `SCHED_IDLE` scheduling class, never
//!   on the runtime's threads, and at most `workers` at once: RTP relaying keeps the CPU
//!   it needs while a long message is transcribed.
//! - Without a usable model the worker takes no job (they wait, nothing is dropped) and
//!   looks for the model again every minute, so that installing one needs no restart.

use super::classify;
use super::engine::{transcribe_wav, TranscribeError, Transcriber, WhisperTranscriber};
use super::TranscriptionConfig;
use crate::records::voicemail::{Suggestion, Transcribed, TranscriptionJob as Job};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::JoinHandle;

/// What `/healthz` says of transcription.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EngineStatus {
    /// The configured model file, if any.
    pub model: Option<String>,
    pub ready: bool,
    /// Why no model is usable, for the people running the hotline.
    pub warning: Option<String>,
}

/// Shared view of the engine's state.
pub type StatusHandle = Arc<RwLock<EngineStatus>>;

/// An event of the worker, for the live feed and tests.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    Done {
        voicemail_id: i64,
        suggestion: Suggestion,
    },
    Failed {
        voicemail_id: i64,
        error: String,
        /// Whether it will be tried again.
        retry: bool,
    },
}

/// How often jobs are looked for when idle, and the model when it is missing.
const POLL: Duration = Duration::from_millis(500);
const MODEL_RETRY: Duration = Duration::from_secs(60);
/// How long shutdown waits for transcriptions in progress (a job cut off is resumed at
/// the next start).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// The jobs as the worker sees them: due ones to take, and how each ended. A finished
/// job's transcript, suggestion and notices are stored in one transaction by the
/// implementation (the desk).
pub trait Jobs: Clone + Send + Sync + 'static {
    type Error: Display + Send;
    /// Jobs a crashed process left running are due again; returns how many.
    fn recover(&self) -> impl Future<Output = Result<u64, Self::Error>> + Send;
    /// Takes the oldest due job, if any; two workers never take the same one.
    fn claim_next(
        &self,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Job>, Self::Error>> + Send;
    /// Stores the result; `false` if the job was no longer running.
    fn complete(
        &self,
        job: &Job,
        done: &Transcribed<'_>,
    ) -> impl Future<Output = Result<bool, Self::Error>> + Send;
    /// The job failed with `error`: due again at `retry_at`, or failed for good.
    fn fail(
        &self,
        job: &Job,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The worker's configuration and collaborators.
pub struct Worker<J> {
    pub jobs: J,
    pub data_dir: PathBuf,
    pub config: TranscriptionConfig,
    /// A ready engine (tests and tools); `None` loads `config.model`.
    pub engine: Option<Arc<dyn Transcriber>>,
    pub events: broadcast::Sender<JobEvent>,
}

impl<J: Jobs> Worker<J> {
    /// Starts the worker; returns its status (for `/healthz`) and its task.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> (StatusHandle, JoinHandle<()>) {
        let status = Arc::new(RwLock::new(EngineStatus {
            model: self.config.model.as_ref().map(|p| p.display().to_string()),
            ready: self.engine.is_some(),
            warning: None,
        }));
        if self.engine.is_none() && self.config.model.is_none() {
            let warning = "no whisper model is configured ([transcription] model): \
                           voicemail waits untranscribed";
            tracing::warn!("{warning}");
            set_status(&status, false, Some(warning.to_string()));
        }
        let task = tokio::spawn(self.run(status.clone(), shutdown));
        (status, task)
    }

    async fn run(mut self, status: StatusHandle, mut shutdown: watch::Receiver<bool>) {
        match self.jobs.recover().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(n, "transcriptions cut off by a crash are due again"),
            Err(e) => tracing::error!(error = %e, "transcription job recovery failed"),
        }
        let workers = self.config.workers.max(1);
        let permits = Arc::new(Semaphore::new(workers));
        let mut last_load: Option<tokio::time::Instant> = None;
        let mut running = tokio::task::JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            while running.try_join_next().is_some() {}
            if self.engine.is_none() && last_load.is_none_or(|t| t.elapsed() >= MODEL_RETRY) {
                last_load = Some(tokio::time::Instant::now());
                self.engine = self.load(&status).await;
            }
            let Some(engine) = self.engine.clone() else {
                idle(&mut shutdown, POLL).await;
                continue;
            };
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = shutdown.changed() => continue,
            };
            let job = match self.jobs.claim_next(Utc::now()).await {
                Ok(Some(job)) => job,
                Ok(None) => {
                    drop(permit);
                    idle(&mut shutdown, POLL).await;
                    continue;
                }
                Err(e) => {
                    drop(permit);
                    tracing::warn!(error = %e, "cannot read transcription jobs");
                    idle(&mut shutdown, POLL * 4).await;
                    continue;
                }
            };
            let ctx = JobContext {
                jobs: self.jobs.clone(),
                data_dir: self.data_dir.clone(),
                max_attempts: self.config.max_attempts,
                events: self.events.clone(),
            };
            running.spawn(async move {
                ctx.run(engine, job).await;
                drop(permit);
            });
        }
        if !running.is_empty() {
            tracing::info!(n = running.len(), "waiting for transcriptions in progress");
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, async {
                while running.join_next().await.is_some() {}
            })
            .await;
        }
    }

    /// Loads the configured model on a blocking thread; updates the status either way.
    async fn load(&self, status: &StatusHandle) -> Option<Arc<dyn Transcriber>> {
        let path = self.config.model.clone()?;
        let language = self.config.language.clone();
        let threads = self.config.threads;
        let loaded = tokio::task::spawn_blocking(move || {
            WhisperTranscriber::load(&path, &language, threads)
        })
        .await;
        match loaded {
            Ok(Ok(engine)) => {
                tracing::info!(model = ?self.config.model, "whisper model loaded");
                set_status(status, true, None);
                Some(Arc::new(engine))
            }
            Ok(Err(e)) => {
                let warning = format!("{e}: voicemail waits untranscribed");
                // Tried again every minute; said once in the log (and always in /healthz),
                // again only if the reason changes.
                let known = status
                    .read()
                    .is_ok_and(|s| s.warning.as_deref() == Some(warning.as_str()));
                if known {
                    tracing::debug!("{warning}");
                } else {
                    tracing::warn!("{warning}");
                }
                set_status(status, false, Some(warning));
                None
            }
            Err(e) => {
                set_status(status, false, Some(format!("model loading crashed: {e}")));
                None
            }
        }
    }
}

fn set_status(status: &StatusHandle, ready: bool, warning: Option<String>) {
    if let Ok(mut s) = status.write() {
        s.ready = ready;
        s.warning = warning;
    }
}

async fn idle(shutdown: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = shutdown.changed() => {}
    }
}

/// What one job needs.
struct JobContext<J> {
    jobs: J,
    data_dir: PathBuf,
    max_attempts: u32,
    events: broadcast::Sender<JobEvent>,
}

impl<J: Jobs> JobContext<J> {
    async fn run(self, engine: Arc<dyn Transcriber>, job: Job) {
        let result = match crate::records::data_file(&self.data_dir, &job.file) {
            Some(path) => run_on_thread(engine, path).await,
            None => Err(TranscribeError::Audio(format!(
                "{} is not a file of the data directory",
                job.file
            ))),
        };
        match result {
            Ok(t) => {
                let suggestion = classify::classify(&t.text);
                let done = Transcribed {
                    transcript: &t.text,
                    suggestion: &suggestion,
                    audio: Duration::from_secs_f64(t.audio_seconds.max(0.0)),
                    elapsed: t.elapsed,
                };
                match self.jobs.complete(&job, &done).await {
                    Ok(true) => {
                        tracing::info!(
                            voicemail = job.voicemail_id,
                            audio_s = t.audio_seconds,
                            elapsed_ms = t.elapsed.as_millis() as u64,
                            kind = suggestion.kind.as_str(),
                            "voicemail transcribed"
                        );
                        let _ = self.events.send(JobEvent::Done {
                            voicemail_id: job.voicemail_id,
                            suggestion,
                        });
                    }
                    Ok(false) => {}
                    // Left running: the next start puts it back and does it again.
                    Err(e) => tracing::error!(
                        voicemail = job.voicemail_id,
                        error = %e,
                        "cannot store the transcript; the job is resumed at the next start"
                    ),
                }
            }
            Err(e) => {
                let retry = job.attempts < i64::from(self.max_attempts);
                let at = retry.then(|| Utc::now() + chrono::Duration::seconds(60 * job.attempts));
                tracing::warn!(voicemail = job.voicemail_id, error = %e, retry, "transcription failed");
                if let Err(db) = self.jobs.fail(&job, &e.to_string(), at).await {
                    tracing::error!(error = %db, "cannot record the failed transcription");
                }
                let _ = self.events.send(JobEvent::Failed {
                    voicemail_id: job.voicemail_id,
                    error: e.to_string(),
                    retry,
                });
            }
        }
    }
}

/// Runs one transcription on a thread of its own at idle priority (whisper's own threads,
/// created from it, inherit the priority).
async fn run_on_thread(
    engine: Arc<dyn Transcriber>,
    path: PathBuf,
) -> Result<super::engine::Transcript, TranscribeError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("transcribe".into())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(transcribe_wav(engine.as_ref(), &path));
        });
    if let Err(e) = spawned {
        return Err(TranscribeError::Inference(format!(
            "cannot start a thread: {e}"
        )));
    }
    rx.await.unwrap_or_else(|_| {
        Err(TranscribeError::Inference(
            "the transcription thread died".into(),
        ))
    })
}

/// Puts the calling thread in the `SCHED_IDLE` class, as every transcription runs (the
/// benchmark too): it gets only the CPU nothing else wants. Threads whisper.cpp starts from
/// this one inherit the class. Plain `nice` is not enough (measured beside 500 recorded
/// calls, nice 10 let 20 ms stalls through), and neither is this class alone: a
/// normal-class thread woken from another CPU can wait for the scheduler tick before it
/// takes the core from an idle-class one, which is why the media threads are real-time
/// ([`crate::media::runtime`]; benches/RESULTS.md, "Media jitter while transcribing").
/// When calls take every core, transcription waits; a voicemail's deadline is a working
/// day.
pub fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread (tid 0 = self) with a valid parameter
    // struct; no memory is shared with the kernel beyond the call.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        if libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) != 0 {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        }
    }
}
