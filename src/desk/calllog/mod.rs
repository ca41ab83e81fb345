//! The call flow's journal writes, durable even while the database is away.
//!
//! # Why
//! Two promises of the architecture ("Nothing is lost") meet here. The records are written
//! *before* the caller hears a prompt that depends on them, so the call task waits for its
//! write; and calls keep being answered when the database is briefly unavailable, their
//! records written when it returns, even if the hotline crashes or restarts meanwhile. Both
//! hold because a write is acknowledged once it is **durable**, whichever comes first:
//!
//! * [`Durable::Stored`]: committed to the database;
//! * [`Durable::Spooled`]: the database failed, or had not committed the write within a
//!   bound of its submission (2 s by default), so it was appended to `calls.jsonl` in the
//!   spool directory and `fsync`ed. It reaches the database when that is back.
//!
//! A caller never waits more than the bound plus one `fsync`: every write carries its
//! deadline, and the task spools what is due even while a slow database call is still in
//! flight (that call goes on, and if it commits, its replay later changes nothing).
//!
//! # Design
//! One task owns it all and keeps **one FIFO** of every call's writes, applied in the order
//! given, so a call's progress never reaches the database before its arrival and a later
//! progress is never overwritten by an earlier one. Whatever has queued while the previous
//! transaction committed goes in the next one (up to `MAX_BATCH` writes: arrivals as one
//! multi-row insert, then the updates), so the database sees one commit, one `fsync` on
//! SQLite, per batch rather than per write. At 34 new calls a second, three writes a call,
//! committing them one by one fell behind the bound on a busy 2-core machine.
//! Writes are keyed by SIP Call-ID, because an entry's id is unknown while its arrival
//! is spooled: progress and voicemail look the entry up by Call-ID when they are applied.
//!
//! Once anything is spooled, new writes queue (and are spooled) behind it, so the spool is
//! always a prefix of the FIFO and the file is in FIFO order. A retry loop (0.5 s doubling
//! to 5 s) applies the spooled writes in order; when all of them have committed the file
//! is emptied. At start the spool left by a previous run is replayed before any new write.
//! At shutdown the task tries once more and otherwise leaves the spool for the next start.
//!
//! # Replays are harmless
//! A write may reach the database twice: spooled at its deadline and committed by the
//! call still in flight, or committed just before a crash that came before the spool was
//! emptied. Every write is idempotent when the FIFO is replayed in order: an arrival whose
//! Call-ID is journaled keeps its entry and takes no number; a progress update sets the
//! same values (the audit log records only changes, so nothing); a voicemail already
//! recorded for the entry and file is not recorded again (checked in its transaction,
//! [`store::voicemail::insert_once_in`](crate::store::voicemail::insert_once_in)).
//!
//! # Failure modes
//! * Database away or slow: writes are spooled; [`CallLog::pending`] counts the backlog
//!   (the live view shows it); a warning when it starts, an info line when it drains.
//! * A crash mid-append leaves a torn last line: it is skipped with a warning (its caller
//!   was never acknowledged) and cut off before anything is appended after it.
//! * A write the database refuses for good (a constraint, an entry that no longer exists,
//!   data that no longer validates) would block every write behind it if retried, so it is
//!   set aside in `refused.jsonl` beside the spool, logged as an error, and its caller gets
//!   [`CallLogError::Refused`].
//! * The spool itself cannot be written (disk full): the write stays queued in memory and
//!   is retried, and its caller gets [`CallLogError::NotDurable`]; only a crash now loses
//!   it.
//! * While the database is away the backlog is also held in memory (a few hundred bytes a
//!   write): hours of outage at a busy hotline stay in megabytes.
//!
//! The spool writes are plain blocking file I/O on the task: an append and `fdatasync`,
//! milliseconds, and only while the database is away.

use super::{DeskError, Records};
use crate::records::journal::{validate_phone, CallProgress, Disposition, NewCall};
use crate::records::voicemail::NewVoicemail;
use crate::store::{from_ms, ms, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most arrivals committed in one transaction.
const MAX_BATCH: usize = 256;
/// The default bound on a caller's wait for the database.
pub const DEFAULT_BOUND: Duration = Duration::from_secs(2);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The spool's file name in the spool directory.
pub const SPOOL_FILE: &str = "calls.jsonl";
/// Where writes the database refused for good are set aside.
pub const REFUSED_FILE: &str = "refused.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum CallLogError {
    /// The spool cannot be opened or read at start.
    #[error("call log spool {path}: {source}")]
    Spool {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Neither the database nor the spool took the write; it is kept in memory and retried.
    #[error("call record neither stored nor spooled (kept in memory, retried): {0}")]
    NotDurable(String),
    /// The write is invalid, or the database refused it for good (see `refused.jsonl`).
    #[error("call record refused: {0}")]
    Refused(String),
    #[error("the call log has stopped")]
    Stopped,
}

/// Where an acknowledged write is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// Committed to the database.
    Stored,
    /// Appended to the spool and fsynced; it reaches the database when it is back.
    Spooled,
}

/// A voicemail as the call flow hands it over: [`NewVoicemail`] without the entry's id,
/// which the call log finds by Call-ID.
#[derive(Debug, Clone)]
pub struct CallVoicemail {
    pub arrived_at: chrono::DateTime<chrono::Utc>,
    /// Path of the WAV relative to the data directory.
    pub file: String,
    pub duration: Duration,
    pub empty: bool,
    pub after_hours: bool,
}

/// One write, as spooled (one JSON line). A mirror of the domain types rather than serde
/// on them, so that the file's format is fixed here; times are Unix milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Arrived {
        call_id: String,
        arrived_at: i64,
        phone: String,
        caller_name: Option<String>,
    },
    Progress {
        call_id: String,
        answered_at: Option<i64>,
        ended_at: Option<i64>,
        wait_ms: Option<i64>,
        disposition: Option<String>,
        operator: Option<String>,
        recording: Option<String>,
    },
    Voicemail {
        call_id: String,
        arrived_at: i64,
        file: String,
        duration_ms: i64,
        empty: bool,
        after_hours: bool,
    },
}

type Reply = oneshot::Sender<Result<Durable, CallLogError>>;

struct Submit {
    op: Op,
    reply: Reply,
    /// When the caller must have its answer: submission + the bound.
    deadline: Instant,
}

/// A write in the FIFO.
struct Item {
    op: Op,
    /// `None` once answered (spooled) or for a write replayed from the spool.
    reply: Option<Reply>,
    deadline: Instant,
}

/// Handle to the call log's task. Cheap to clone.
#[derive(Clone)]
pub struct CallLog {
    tx: mpsc::UnboundedSender<Submit>,
    pending: Arc<AtomicUsize>,
    commits: Arc<AtomicU64>,
    bound: Duration,
}

impl CallLog {
    /// Starts the task with the default bound ([`DEFAULT_BOUND`]) on a caller's wait for
    /// the database; replays `spool_dir/calls.jsonl` (creating the directory) first. The
    /// task ends when `shutdown` turns `true` or every handle is dropped, after one more try
    /// to store what is queued.
    pub fn spawn(
        records: Records,
        spool_dir: PathBuf,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(CallLog, JoinHandle<()>), CallLogError> {
        CallLog::spawn_with(records, spool_dir, DEFAULT_BOUND, shutdown)
    }

    /// [`CallLog::spawn`] with another bound on a caller's wait for the database.
    pub fn spawn_with(
        records: Records,
        spool_dir: PathBuf,
        bound: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(CallLog, JoinHandle<()>), CallLogError> {
        CallLog::spawn_on(Arc::new(records), spool_dir, bound, shutdown)
    }

    /// [`CallLog::spawn_with`] writing to any [`Sink`]: the timer tests give it a scripted
    /// database.
    fn spawn_on(
        sink: Arc<dyn Sink>,
        spool_dir: PathBuf,
        bound: Duration,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(CallLog, JoinHandle<()>), CallLogError> {
        let path = spool_dir.join(SPOOL_FILE);
        let io = |source| CallLogError::Spool {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&spool_dir).map_err(io)?;
        let (replay, spool_len) = read_spool(&path).map_err(io)?;
        let spool = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        // The file's directory entry is durable before any write is acknowledged from it.
        std::fs::File::open(&spool_dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        if !replay.is_empty() {
            tracing::warn!(
                writes = replay.len(),
                path = %path.display(),
                "replaying call records spooled by a previous run"
            );
        }
        let pending = Arc::new(AtomicUsize::new(replay.len()));
        let commits = Arc::new(AtomicU64::new(0));
        let now = Instant::now();
        let writer = Writer {
            sink,
            refused_path: spool_dir.join(REFUSED_FILE),
            path,
            spool,
            spool_len,
            spooled: replay.len(),
            queue: replay
                .into_iter()
                .map(|op| Item {
                    op,
                    reply: None,
                    deadline: now,
                })
                .collect(),
            pending: pending.clone(),
            commits: commits.clone(),
            bound,
            failing: false,
            singles: 0,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = tokio::spawn(writer.run(rx, shutdown));
        Ok((
            CallLog {
                tx,
                pending,
                commits,
                bound,
            },
            handle,
        ))
    }

    /// Writes not yet in the database: queued, in flight or spooled. Non-zero for long only
    /// while the database is unavailable.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Transactions committed so far (each holds a batch of writes).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues `op` now, in FIFO order with every other write; the returned [`Ack`] tells
    /// when it is durable.
    fn submit(&self, op: Op) -> Ack {
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + self.bound;
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self
            .tx
            .send(Submit {
                op,
                reply,
                deadline,
            })
            .is_err()
        {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            return Ack::failed(CallLogError::Stopped);
        }
        Ack(Ok(rx))
    }

    /// A call arrived: its journal entry (number, repeat link). The Call-ID is required:
    /// the call's later writes find the entry by it, and a replay dedups by it.
    pub fn arrived(&self, call: NewCall) -> Ack {
        let call_id = match call.call_id {
            Some(c) if !c.is_empty() => c,
            _ => return Ack::failed(CallLogError::Refused("an arrival needs its Call-ID".into())),
        };
        if let Err(e) = validate_phone("phone", &call.phone) {
            return Ack::failed(CallLogError::Refused(e.to_string()));
        }
        self.submit(Op::Arrived {
            call_id,
            arrived_at: ms(call.arrived_at),
            phone: call.phone,
            caller_name: call.caller_name,
        })
    }

    /// What the call did (fields left `None` are not changed).
    pub fn progress(&self, call_id: String, p: CallProgress) -> Ack {
        self.submit(Op::Progress {
            call_id,
            answered_at: p.answered_at.map(ms),
            ended_at: p.ended_at.map(ms),
            wait_ms: p.wait_ms,
            disposition: p.disposition.map(|d| d.as_str().to_string()),
            operator: p.operator,
            recording: p.recording,
        })
    }

    /// The voicemail the caller left (with its callback form, as
    /// [`Records::add_voicemail`]); recorded once per entry and file however often replayed.
    pub fn voicemail(&self, call_id: String, v: CallVoicemail) -> Ack {
        self.submit(Op::Voicemail {
            call_id,
            arrived_at: ms(v.arrived_at),
            file: v.file,
            duration_ms: i64::try_from(v.duration.as_millis()).unwrap_or(i64::MAX),
            empty: v.empty,
            after_hours: v.after_hours,
        })
    }
}

/// A write's acknowledgement: resolves once the write is durable ([`Durable`]) or has
/// failed. The write is queued when the [`CallLog`] method returns, so dropping this does
/// not cancel it; a call task that need not wait (progress) drops it, and the call log logs
/// what fails.
#[must_use = "await it, or drop it on purpose: the write is queued either way"]
pub struct Ack(Result<oneshot::Receiver<Result<Durable, CallLogError>>, Option<CallLogError>>);

impl Ack {
    fn failed(e: CallLogError) -> Ack {
        Ack(Err(Some(e)))
    }
}

impl Future for Ack {
    type Output = Result<Durable, CallLogError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            Ok(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(CallLogError::Stopped))),
            Err(e) => std::task::Poll::Ready(Err(e.take().unwrap_or(CallLogError::Stopped))),
        }
    }
}

/// The spool's writes and the length of its whole lines. A torn last line (a crash
/// mid-append) is skipped with a warning and cut off, so that the next append does not
/// glue a good line to it; a bad line elsewhere (never written by us) is skipped.
fn read_spool(path: &Path) -> std::io::Result<(Vec<Op>, u64)> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() {
        tracing::warn!(
            path = %path.display(),
            bytes = bytes.len() - whole,
            "call log spool ends in a torn line (a crash mid-append); skipped"
        );
        let f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(whole as u64)?;
        f.sync_data()?;
    }
    let mut ops = Vec::new();
    for (i, line) in bytes[..whole].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice(line) {
            Ok(op) => ops.push(op),
            Err(e) => tracing::warn!(
                path = %path.display(),
                line = i + 1,
                error = %e,
                "call log spool line unreadable; skipped"
            ),
        }
    }
    Ok((ops, whole as u64))
}

/// Why a write did not commit: the database may take it later, or never will.
enum Failure {
    Transient(String),
    Permanent(String),
}

/// Whether the database refused for good (retrying would block the FIFO forever): a
/// constraint, a missing row, data it cannot decode. Anything else (a connection lost, a
/// lock, a pool timeout, a server restarting) passes when the database is back.
fn permanent(e: &StoreError) -> bool {
    match e {
        StoreError::NotFound { .. } | StoreError::Conflict(_) => true,
        StoreError::Db(sqlx::Error::Database(d)) => {
            !matches!(d.kind(), sqlx::error::ErrorKind::Other)
        }
        StoreError::Db(
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::TypeNotFound { .. },
        ) => true,
        _ => false,
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        if permanent(&e) {
            Failure::Permanent(e.to_string())
        } else {
            Failure::Transient(e.to_string())
        }
    }
}

impl From<DeskError> for Failure {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::Store(s) => s.into(),
            DeskError::Invalid(_) | DeskError::Transition(_) | DeskError::Refused { .. } => {
                Failure::Permanent(e.to_string())
            }
        }
    }
}

type Applying = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// Where the writes go. The database ([`Records`]) in production; the timer tests
/// ([`timers`]) script one, because on tokio's paused clock a real database, answering
/// from its own threads, would let the clock run past every deadline.
trait Sink: Send + Sync + 'static {
    /// Applies `ops`, the front of the FIFO, in one transaction.
    fn apply(&self, ops: Vec<Op>) -> Applying;
}

impl Sink for Records {
    fn apply(&self, ops: Vec<Op>) -> Applying {
        let records = self.clone();
        Box::pin(async move { apply(&records, &ops).await })
    }
}

/// One try at the database: the first `n` writes of the FIFO, given up at `until`.
struct Attempt {
    n: usize,
    started: Instant,
    until: Instant,
    fut: Applying,
}

async fn attempt_done(a: &mut Option<Attempt>) -> Result<(), Failure> {
    match a {
        Some(a) => a.fut.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The task's state.
struct Writer {
    sink: Arc<dyn Sink>,
    path: PathBuf,
    refused_path: PathBuf,
    spool: std::fs::File,
    /// Bytes of whole lines in the spool file.
    spool_len: u64,
    /// The first `spooled` writes of the queue are in the spool file (always a prefix).
    spooled: usize,
    queue: VecDeque<Item>,
    pending: Arc<AtomicUsize>,
    commits: Arc<AtomicU64>,
    bound: Duration,
    /// The database failed and has not taken the backlog yet (for the log lines).
    failing: bool,
    /// Writes at the front to apply one by one: their batch was refused, and one bad write
    /// must not cost the others.
    singles: usize,
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Submit>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut attempt: Option<Attempt> = None;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = MIN_BACKOFF;
        let mut open = !*shutdown.borrow_and_update();
        let mut watching = true;
        if !open {
            rx.close();
        }
        loop {
            if !open {
                self.drain(&mut rx);
            }
            let now = Instant::now();
            if attempt.is_none() && !self.queue.is_empty() && retry_at.is_none_or(|t| t <= now) {
                retry_at = None;
                attempt = Some(self.start());
            }
            if attempt.is_none() && (self.queue.is_empty() || retry_at.is_some()) && !open {
                break;
            }
            let wake = [
                self.next_deadline(),
                attempt.as_ref().map(|a| a.until),
                retry_at,
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                r = attempt_done(&mut attempt) => {
                    let (n, took) = attempt
                        .take()
                        .map_or((0, Duration::ZERO), |a| (a.n, a.started.elapsed()));
                    match r {
                        Ok(()) => {
                            tracing::debug!(
                                writes = n,
                                ?took,
                                queued = self.queue.len(),
                                "call log batch committed"
                            );
                            backoff = MIN_BACKOFF;
                            self.commits.fetch_add(1, Ordering::Relaxed);
                            self.done(n, None);
                        }
                        Err(Failure::Permanent(e)) => {
                            if n > 1 {
                                // Find the bad one: its batch-mates go one by one.
                                self.singles = n;
                            } else {
                                self.done(n, Some(e));
                            }
                        }
                        Err(Failure::Transient(e)) => {
                            self.failed(&e);
                            retry_at = Some(Instant::now() + backoff);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                m = rx.recv(), if open => match m {
                    Some(s) => {
                        self.push(s);
                        self.drain(&mut rx);
                    }
                    None => open = false,
                },
                r = shutdown.changed(), if open && watching => match r {
                    Ok(()) if *shutdown.borrow_and_update() => {
                        open = false;
                        rx.close();
                        // One more try now, whatever the backoff.
                        if retry_at.is_some() {
                            retry_at = Some(Instant::now());
                        }
                    }
                    Ok(()) => {}
                    // No one can ask any more; the handles' drop ends the task.
                    Err(_) => watching = false,
                },
                _ = sleep_until(wake) => {
                    let now = Instant::now();
                    if attempt.as_ref().is_some_and(|a| a.until <= now) {
                        // Dropping it rolls it back, or it committed (a replay is harmless).
                        attempt = None;
                        self.failed(&format!("no answer within {:?}", self.bound));
                        retry_at = Some(now + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                    if self.next_deadline().is_some_and(|d| d <= now) {
                        // The database is slow: callers are answered from the spool, and
                        // the write in flight goes on.
                        if !self.failing {
                            tracing::warn!(
                                bound = ?self.bound,
                                "database slow: call records spooled until it catches up"
                            );
                            self.failing = true;
                        }
                        self.spool_all();
                    }
                }
            }
        }
        if !self.queue.is_empty() {
            self.spool_all();
            tracing::warn!(
                writes = self.queue.len(),
                path = %self.path.display(),
                "call log stopped with records spooled; the next start stores them"
            );
        }
    }

    /// Takes every submitted write waiting in the channel (spooling them behind a backlog).
    fn drain(&mut self, rx: &mut mpsc::UnboundedReceiver<Submit>) {
        while let Ok(s) = rx.try_recv() {
            self.push(s);
        }
        if self.spooled > 0 {
            self.spool_all();
        }
    }

    fn push(&mut self, s: Submit) {
        self.queue.push_back(Item {
            op: s.op,
            reply: Some(s.reply),
            deadline: s.deadline,
        });
    }

    /// The earliest deadline of a caller still waiting for its answer.
    fn next_deadline(&self) -> Option<Instant> {
        self.queue
            .iter()
            .skip(self.spooled)
            .filter(|i| i.reply.is_some())
            .map(|i| i.deadline)
            .min()
    }

    /// Starts applying the front of the FIFO: up to [`MAX_BATCH`] writes in one transaction,
    /// or one while a refused batch is being sorted out.
    fn start(&mut self) -> Attempt {
        let n = if self.singles > 0 {
            1
        } else {
            self.queue.len().min(MAX_BATCH)
        };
        let ops: Vec<Op> = self.queue.iter().take(n).map(|i| i.op.clone()).collect();
        let started = Instant::now();
        Attempt {
            n,
            started,
            until: started + self.bound,
            fut: self.sink.apply(ops),
        }
    }

    /// The database failed or did not answer: spool what is queued.
    fn failed(&mut self, error: &str) {
        if self.failing {
            tracing::debug!(error, backlog = self.queue.len(), "call log retry failed");
        } else {
            tracing::warn!(
                error,
                backlog = self.queue.len(),
                "database unavailable: call records spooled until it returns"
            );
            self.failing = true;
        }
        self.spool_all();
    }

    /// The first `n` writes committed (`refused: None`) or were refused for good.
    fn done(&mut self, n: usize, refused: Option<String>) {
        let items: Vec<Item> = self.queue.drain(..n.min(self.queue.len())).collect();
        self.singles = self.singles.saturating_sub(n);
        let was_spooled = self.spooled > 0;
        self.spooled = self.spooled.saturating_sub(items.len());
        self.pending.fetch_sub(items.len(), Ordering::SeqCst);
        for mut item in items {
            let answer = match &refused {
                None => Ok(Durable::Stored),
                Some(e) => {
                    self.set_aside(&item.op, e);
                    Err(CallLogError::Refused(e.clone()))
                }
            };
            if let Some(r) = item.reply.take() {
                let _ = r.send(answer);
            }
        }
        if was_spooled && self.spooled == 0 {
            // Every spooled write has committed: the file starts afresh (a crash before
            // this line replays writes that are already in; that changes nothing).
            match self.spool.set_len(0) {
                Ok(()) => self.spool_len = 0,
                Err(e) => tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "cannot empty the call log spool (its writes would be replayed)"
                ),
            }
        }
        if self.failing && self.spooled == 0 && refused.is_none() {
            tracing::info!("database back: the spooled call records are stored");
            self.failing = false;
        }
    }

    /// Appends every write not yet spooled, fsyncs, and answers their callers `Spooled`.
    fn spool_all(&mut self) {
        if self.spooled == self.queue.len() {
            return;
        }
        let mut text = String::new();
        for item in self.queue.iter().skip(self.spooled) {
            text.push_str(&serde_json::to_string(&item.op).expect("a write serialises"));
            text.push('\n');
        }
        let written = self
            .spool
            .write_all(text.as_bytes())
            .and_then(|()| self.spool.sync_data());
        match written {
            Ok(()) => {
                self.spool_len += text.len() as u64;
                self.spooled = self.queue.len();
                for item in &mut self.queue {
                    if let Some(r) = item.reply.take() {
                        let _ = r.send(Ok(Durable::Spooled));
                    }
                }
            }
            Err(e) => {
                // Cut off what part of it went in, so that the next append starts a line.
                let _ = self.spool.set_len(self.spool_len);
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    "call log spool write failed: records held in memory only"
                );
                let reason = format!("spool {}: {e}", self.path.display());
                for item in self.queue.iter_mut().skip(self.spooled) {
                    if let Some(r) = item.reply.take() {
                        let _ = r.send(Err(CallLogError::NotDurable(reason.clone())));
                    }
                }
            }
        }
    }

    /// Keeps a refused write in `refused.jsonl`, for a person to look at.
    fn set_aside(&self, op: &Op, error: &str) {
        tracing::error!(?op, error, "call record refused by the database; set aside");
        let line = serde_json::json!({ "error": error, "write": op }).to_string() + "\n";
        let kept = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.refused_path)
            .and_then(|mut f| {
                f.write_all(line.as_bytes())?;
                f.sync_data()
            });
        if let Err(e) = kept {
            tracing::error!(path = %self.refused_path.display(), error = %e, "cannot set aside");
        }
    }
}

/// Applies `ops`, the front of the FIFO, to the database in one transaction.
///
/// The batch's arrivals go first, as one multi-row insert in their order; then its progress
/// updates, several at a time
/// ([`update_progress_many`](crate::store::journal::update_progress_many)), and its
/// voicemails, in their order. That keeps the FIFO's order where it matters: a call's own writes are submitted
/// after its arrival, so none of them moves ahead of it; a voicemail waits for the
/// progress updates of its own call queued before it (both set the disposition); writes of
/// different calls commute.
async fn apply(records: &Records, ops: &[Op]) -> Result<(), Failure> {
    if ops.is_empty() {
        return Ok(());
    }
    let now = chrono::Utc::now();
    let mut tx = records
        .store
        .begin_write()
        .await
        .map_err(StoreError::from)?;
    let arrivals: Vec<NewCall> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Arrived {
                call_id,
                arrived_at,
                phone,
                caller_name,
            } => Some(NewCall {
                call_id: Some(call_id.clone()),
                arrived_at: from_ms(*arrived_at),
                phone: phone.clone(),
                caller_name: caller_name.clone(),
            }),
            _ => None,
        })
        .collect();
    if !arrivals.is_empty() {
        records.record_calls_in(&mut tx, &arrivals, now).await?;
    }
    // Progress updates not yet applied, as (Call-ID, update).
    let mut progress: Vec<(&str, CallProgress)> = Vec::new();
    for op in ops {
        match op {
            Op::Arrived { .. } => {}
            Op::Progress {
                call_id,
                answered_at,
                ended_at,
                wait_ms,
                disposition,
                operator,
                recording,
            } => progress.push((
                call_id,
                CallProgress {
                    answered_at: answered_at.map(from_ms),
                    ended_at: ended_at.map(from_ms),
                    wait_ms: *wait_ms,
                    disposition: disposition.as_deref().and_then(Disposition::parse),
                    operator: operator.clone(),
                    recording: recording.clone(),
                },
            )),
            Op::Voicemail {
                call_id,
                arrived_at,
                file,
                duration_ms,
                empty,
                after_hours,
            } => {
                if progress.iter().any(|(c, _)| c == call_id) {
                    flush_progress(&mut tx, &mut progress, now).await?;
                }
                let journal_id = entry_id(&mut tx, call_id).await?;
                let vm = NewVoicemail {
                    journal_id,
                    arrived_at: from_ms(*arrived_at),
                    file: file.clone(),
                    duration: Duration::from_millis(u64::try_from(*duration_ms).unwrap_or(0)),
                    empty: *empty,
                    after_hours: *after_hours,
                };
                let (_, created) = records.add_voicemail_once_in(&mut tx, &vm, now).await?;
                if !created {
                    tracing::debug!(call_id, file, "voicemail already recorded (a replay)");
                }
            }
        }
    }
    flush_progress(&mut tx, &mut progress, now).await?;
    tx.commit().await.map_err(StoreError::from)?;
    Ok(())
}

/// Applies the progress updates gathered so far and empties the list.
async fn flush_progress(
    conn: &mut sqlx::AnyConnection,
    progress: &mut Vec<(&str, CallProgress)>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Failure> {
    let batch: Vec<(&str, &CallProgress)> = progress.iter().map(|(c, p)| (*c, p)).collect();
    crate::store::journal::update_progress_many(conn, &batch, now).await?;
    progress.clear();
    Ok(())
}

/// The entry of a Call-ID. With the FIFO kept its arrival is in, so a missing entry was
/// deleted (or never valid): that write is refused, not retried.
async fn entry_id(conn: &mut sqlx::AnyConnection, call_id: &str) -> Result<i64, Failure> {
    crate::store::journal::id_by_call_id_in(conn, call_id)
        .await?
        .ok_or_else(|| Failure::Permanent(format!("no journal entry has Call-ID {call_id}")))
}

#[cfg(test)]
mod timers;

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    async fn records(db: &Path) -> Records {
        crate::desk::sqlite_records(db).await
    }

    fn arrival(call_id: &str, phone: &str) -> NewCall {
        NewCall {
            call_id: Some(call_id.into()),
            arrived_at: chrono::Utc::now(),
            phone: phone.into(),
            caller_name: None,
        }
    }

    fn voicemail(file: &str) -> CallVoicemail {
        CallVoicemail {
            arrived_at: chrono::Utc::now(),
            file: file.into(),
            duration: Duration::from_secs(4),
            empty: false,
            after_hours: true,
        }
    }

    async fn count(r: &Records, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {table}"))
            .fetch_one(r.store.pool())
            .await
            .unwrap()
    }

    async fn entry(r: &Records, call_id: &str) -> crate::records::journal::Entry {
        let id = crate::store::journal::id_by_call_id(&r.store, call_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no entry for {call_id}"));
        crate::store::journal::get(&r.store, id).await.unwrap()
    }

    async fn drained(log: &CallLog) {
        for _ in 0..500 {
            if log.pending() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the call log kept {} writes", log.pending());
    }

    fn line(op: &Op) -> String {
        serde_json::to_string(op).unwrap() + "\n"
    }

    /// A spool as a crash after the commit would leave it: one call's three writes.
    fn spooled_call(call_id: &str) -> String {
        let now = ms(chrono::Utc::now());
        [
            Op::Arrived {
                call_id: call_id.into(),
                arrived_at: now,
                phone: "+79780000002".into(),
                caller_name: Some("Ivanov".into()),
            },
            Op::Progress {
                call_id: call_id.into(),
                answered_at: None,
                ended_at: Some(now + 9000),
                wait_ms: Some(3000),
                disposition: Some("abandoned".into()),
                operator: None,
                recording: None,
            },
            Op::Voicemail {
                call_id: call_id.into(),
                arrived_at: now,
                file: format!("voicemail/{call_id}.wav"),
                duration_ms: 4000,
                empty: false,
                after_hours: true,
            },
        ]
        .iter()
        .map(line)
        .collect()
    }

    #[tokio::test]
    async fn writes_are_stored_and_acknowledged_as_stored() {
        let dir = tempfile::tempdir().unwrap();
        let r = records(&dir.path().join("t.db")).await;
        let (_stop, stop_rx) = watch::channel(false);
        let spool = dir.path().join("spool");
        let (log, _task) = CallLog::spawn(r.clone(), spool.clone(), stop_rx).unwrap();
        let answered = chrono::Utc::now();
        assert_eq!(
            log.arrived(arrival("c1", "+79780000001")).await.unwrap(),
            Durable::Stored
        );
        let p = CallProgress {
            answered_at: Some(answered),
            wait_ms: Some(1500),
            operator: Some("1001".into()),
            disposition: Some(Disposition::Answered),
            ..CallProgress::default()
        };
        assert_eq!(log.progress("c1".into(), p).await.unwrap(), Durable::Stored);
        assert_eq!(
            log.voicemail("c1".into(), voicemail("voicemail/c1.wav"))
                .await
                .unwrap(),
            Durable::Stored
        );
        let e = entry(&r, "c1").await;
        assert_eq!((e.seq, e.phone.as_str()), (1, "+79780000001"));
        assert_eq!(e.answered_at.map(ms), Some(ms(answered)));
        assert_eq!(e.operator.as_deref(), Some("1001"));
        assert_eq!(e.wait_s, Some(1.5));
        // The voicemail came last: its disposition wins.
        assert_eq!(e.disposition, Disposition::AfterHoursVoicemail);
        assert!(e.voicemail.is_some());
        assert_eq!(count(&r, "voicemails").await, 1);
        assert_eq!(count(&r, "callback_forms").await, 1);
        assert_eq!(log.pending(), 0);
        assert_eq!(std::fs::metadata(spool.join(SPOOL_FILE)).unwrap().len(), 0);
        // Bad writes are refused at once, not queued.
        assert!(matches!(
            log.arrived(arrival("c2", "not a number")).await,
            Err(CallLogError::Refused(_))
        ));
        let mut no_id = arrival("x", "+79780000001");
        no_id.call_id = None;
        assert!(matches!(
            log.arrived(no_id).await,
            Err(CallLogError::Refused(_))
        ));
        // A progress for a Call-ID never journaled is refused and set aside.
        assert!(matches!(
            log.progress("ghost".into(), CallProgress::default()).await,
            Err(CallLogError::Refused(_))
        ));
        let refused = std::fs::read_to_string(spool.join(REFUSED_FILE)).unwrap();
        assert!(refused.contains("ghost"), "{refused}");
        assert_eq!(log.pending(), 0);
    }

    #[tokio::test]
    async fn writes_submitted_together_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let r = records(&dir.path().join("t.db")).await;
        let (_stop, stop_rx) = watch::channel(false);
        let (log, _task) = CallLog::spawn(r.clone(), dir.path().join("spool"), stop_rx).unwrap();
        // Every write is handed over before the first is answered (join_all polls them in
        // order): a progress ahead of its arrival would find no entry and be refused, and
        // the last disposition given must be the one that stays.
        let mut writes: Vec<futures::future::LocalBoxFuture<'_, Result<Durable, CallLogError>>> =
            Vec::new();
        for i in 0..20 {
            let cid = format!("o{i}");
            let phone = format!("+7978000{i:04}");
            writes.push(Box::pin(log.arrived(arrival(&cid, &phone))));
            let answered = CallProgress {
                disposition: Some(Disposition::Answered),
                operator: Some("1001".into()),
                ..CallProgress::default()
            };
            writes.push(Box::pin(log.progress(cid.clone(), answered)));
            let failed = CallProgress {
                disposition: Some(Disposition::Failed),
                wait_ms: Some(i),
                ..CallProgress::default()
            };
            writes.push(Box::pin(log.progress(cid, failed)));
        }
        for w in futures::future::join_all(writes).await {
            assert_eq!(w.unwrap(), Durable::Stored);
        }
        for i in 0..20 {
            let e = entry(&r, &format!("o{i}")).await;
            assert_eq!(e.seq, i + 1, "numbered in arrival order");
            assert_eq!(e.disposition, Disposition::Failed);
            assert_eq!(e.operator.as_deref(), Some("1001"));
            assert_eq!(e.wait_s, Some(i as f64 / 1000.0));
        }
        assert_eq!(count(&r, "journal_entries").await, 20);
        // The 60 writes queued together were committed together, not one by one.
        assert!(log.commits() <= 2, "{} transactions", log.commits());
    }

    #[tokio::test]
    async fn one_refused_write_in_a_batch_costs_its_batch_mates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let r = records(&dir.path().join("t.db")).await;
        let (_stop, stop_rx) = watch::channel(false);
        let spool = dir.path().join("spool");
        let (log, _task) = CallLog::spawn(r.clone(), spool.clone(), stop_rx).unwrap();
        let answered = || CallProgress {
            disposition: Some(Disposition::Answered),
            ..CallProgress::default()
        };
        let writes: Vec<futures::future::LocalBoxFuture<'_, Result<Durable, CallLogError>>> = vec![
            Box::pin(log.arrived(arrival("b1", "+79780000001"))),
            Box::pin(log.progress("b1".into(), answered())),
            Box::pin(log.progress("ghost".into(), answered())),
            Box::pin(log.arrived(arrival("b2", "+79780000002"))),
            Box::pin(log.voicemail("b2".into(), voicemail("voicemail/b2.wav"))),
        ];
        let out = futures::future::join_all(writes).await;
        assert!(matches!(out[2], Err(CallLogError::Refused(_))), "{out:?}");
        for i in [0, 1, 3, 4] {
            assert_eq!(out[i].as_ref().unwrap(), &Durable::Stored, "write {i}");
        }
        assert_eq!(entry(&r, "b1").await.disposition, Disposition::Answered);
        assert_eq!(
            entry(&r, "b2").await.disposition,
            Disposition::AfterHoursVoicemail
        );
        assert_eq!(count(&r, "voicemails").await, 1);
        let refused = std::fs::read_to_string(spool.join(REFUSED_FILE)).unwrap();
        assert_eq!(refused.lines().count(), 1, "{refused}");
        assert!(refused.contains("ghost"), "{refused}");
        // Sorted out one by one, the batch is followed by whole batches again.
        let before = log.commits();
        let mut more: Vec<futures::future::LocalBoxFuture<'_, Result<Durable, CallLogError>>> =
            Vec::new();
        for i in 0..10 {
            more.push(Box::pin(
                log.arrived(arrival(&format!("m{i}"), "+79780000009")),
            ));
        }
        for w in futures::future::join_all(more).await {
            assert_eq!(w.unwrap(), Durable::Stored);
        }
        assert!(log.commits() - before <= 2, "{}", log.commits() - before);
    }

    #[tokio::test]
    async fn a_spool_with_a_torn_line_is_replayed_before_new_writes() {
        let dir = tempfile::tempdir().unwrap();
        let r = records(&dir.path().join("t.db")).await;
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let text = spooled_call("s1") + "{\"op\":\"arrived\",\"call_id\":\"torn\",\"arri";
        std::fs::write(spool.join(SPOOL_FILE), text).unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        let (log, _task) = CallLog::spawn(r.clone(), spool.clone(), stop_rx).unwrap();
        // Submitted at once: it queues behind the replay (and is spooled behind it).
        log.arrived(arrival("n1", "+79780000003")).await.unwrap();
        drained(&log).await;
        let e = entry(&r, "s1").await;
        assert_eq!(e.seq, 1, "the replay comes first");
        assert_eq!(e.caller_name.as_deref(), Some("Ivanov"));
        assert_eq!(e.wait_s, Some(3.0));
        assert_eq!(e.disposition, Disposition::AfterHoursVoicemail);
        assert!(e.ended_at.is_some());
        assert_eq!(entry(&r, "n1").await.seq, 2);
        assert_eq!(
            count(&r, "journal_entries").await,
            2,
            "the torn line is skipped"
        );
        assert_eq!(count(&r, "voicemails").await, 1);
        assert_eq!(std::fs::metadata(spool.join(SPOOL_FILE)).unwrap().len(), 0);
    }

    #[tokio::test]
    async fn replaying_a_spool_twice_makes_no_duplicates_and_takes_no_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let r = records(&dir.path().join("t.db")).await;
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        // A spool that already holds its writes twice over (replayed after a crash that came
        // after the commit and before the file was emptied) …
        let text = spooled_call("s1") + &spooled_call("s2") + &spooled_call("s1");
        for _ in 0..2 {
            // … replayed by two starts.
            std::fs::write(spool.join(SPOOL_FILE), &text).unwrap();
            let (stop, stop_rx) = watch::channel(false);
            let (log, task) = CallLog::spawn(r.clone(), spool.clone(), stop_rx).unwrap();
            drained(&log).await;
            stop.send(true).unwrap();
            task.await.unwrap();
            assert_eq!(count(&r, "journal_entries").await, 2);
            assert_eq!(count(&r, "voicemails").await, 2);
            assert_eq!(count(&r, "callback_forms").await, 2);
            assert_eq!(
                (entry(&r, "s1").await.seq, entry(&r, "s2").await.seq),
                (1, 2)
            );
        }
        let creations = "audit_log WHERE action = 'create'";
        let created = count(&r, creations).await;
        let before = entry(&r, "s1").await;
        std::fs::write(spool.join(SPOOL_FILE), &text).unwrap();
        let (_stop, stop_rx) = watch::channel(false);
        let (log, _task) = CallLog::spawn(r.clone(), spool.clone(), stop_rx).unwrap();
        drained(&log).await;
        assert_eq!(
            count(&r, creations).await,
            created,
            "a replay creates nothing"
        );
        let after = entry(&r, "s1").await;
        assert_eq!(after.disposition, Disposition::AfterHoursVoicemail);
        assert_eq!(
            (
                after.seq,
                after.ended_at,
                after.wait_s,
                after.voicemail.map(|v| v.id)
            ),
            (
                before.seq,
                before.ended_at,
                before.wait_s,
                before.voicemail.map(|v| v.id)
            )
        );
        log.arrived(arrival("n", "+79780000009")).await.unwrap();
        assert_eq!(
            entry(&r, "n").await.seq,
            3,
            "no number was taken by the replays"
        );
    }

    #[tokio::test]
    async fn while_the_database_is_locked_writes_are_spooled_within_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let r = records(&db).await;
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        // A torn line from a crash: what is appended next must not be glued to it.
        std::fs::write(spool.join(SPOOL_FILE), "{\"op\":\"arr").unwrap();
        let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut lock)
            .await
            .unwrap();
        let bound = Duration::from_millis(300);
        let (stop, stop_rx) = watch::channel(false);
        let (log, task) = CallLog::spawn_with(r.clone(), spool.clone(), bound, stop_rx).unwrap();
        let t = std::time::Instant::now();
        assert_eq!(
            log.arrived(arrival("l1", "+79780000004")).await.unwrap(),
            Durable::Spooled
        );
        assert!(
            t.elapsed() < bound + Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        let p = CallProgress {
            disposition: Some(Disposition::Abandoned),
            ..CallProgress::default()
        };
        assert_eq!(
            log.progress("l1".into(), p).await.unwrap(),
            Durable::Spooled
        );
        assert_eq!(log.pending(), 2);
        let text = std::fs::read_to_string(spool.join(SPOOL_FILE)).unwrap();
        let ops: Vec<Op> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(ops.len(), 2, "{text}");
        assert!(matches!(&ops[0], Op::Arrived { call_id, .. } if call_id == "l1"));
        // Shutdown while the database is away: the spool stays for the next start.
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops within the bound")
            .unwrap();
        assert!(log.arrived(arrival("l2", "+79780000004")).await.is_err());
        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
        assert_eq!(count(&r, "journal_entries").await, 0);
        let (_stop, stop_rx) = watch::channel(false);
        let (log, _task) = CallLog::spawn_with(r.clone(), spool.clone(), bound, stop_rx).unwrap();
        drained(&log).await;
        assert_eq!(entry(&r, "l1").await.disposition, Disposition::Abandoned);
        assert_eq!(std::fs::metadata(spool.join(SPOOL_FILE)).unwrap().len(), 0);
    }
}
