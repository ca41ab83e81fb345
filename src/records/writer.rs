//! The journal writer: one task that owns journal inserts and commits the calls that
//! arrive together in one transaction.
//!
//! Each entry takes the next number of its year, and that counter row is locked until its
//! transaction commits, so inserts of one year are serial whatever the pool size. With one
//! transaction per call the rate is bounded by the database's commit latency (about 2 ms on
//! PostgreSQL with `synchronous_commit = on`, i.e. ~500 calls/s). Batching the calls that
//! queued meanwhile keeps the numbering gapless and every entry durable before its caller
//! is answered, at thousands per second.

use super::journal::NewCall;
use super::{RecordError, Records};
use tokio::sync::{mpsc, oneshot};

/// Most calls in one transaction.
const MAX_BATCH: usize = 256;

type Reply = oneshot::Sender<Result<i64, String>>;

/// Handle to the writer task. Cheap to clone; the task ends when every handle is dropped.
#[derive(Clone)]
pub struct JournalWriter {
    tx: mpsc::Sender<(NewCall, Reply)>,
}

impl JournalWriter {
    pub fn spawn(records: Records) -> JournalWriter {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(records, rx));
        JournalWriter { tx }
    }

    /// Journals a call; returns its entry id once committed.
    pub async fn record(&self, call: NewCall) -> Result<i64, RecordError> {
        super::journal::validate_phone("phone", &call.phone)?;
        let (reply, rx) = oneshot::channel();
        let gone = || RecordError::Writer("the journal writer has stopped".into());
        self.tx.send((call, reply)).await.map_err(|_| gone())?;
        match rx.await.map_err(|_| gone())? {
            Ok(id) => Ok(id),
            Err(e) => Err(RecordError::Writer(e)),
        }
    }
}

async fn run(records: Records, mut rx: mpsc::Receiver<(NewCall, Reply)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (calls, replies): (Vec<NewCall>, Vec<Reply>) =
            std::mem::take(&mut batch).into_iter().unzip();
        match records.record_calls(&calls).await {
            Ok(ids) => {
                for (reply, id) in replies.into_iter().zip(ids) {
                    let _ = reply.send(Ok(id));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, calls = calls.len(), "journal batch failed");
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
    }
}
