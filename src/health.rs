//! The hotline's health, one report for the load balancer's `/healthz` and the admin's
//! console page: SIP, the database, the media threads, the transcription model and its
//! jobs, the journal's backlog, the outbox and the notices that have nowhere to go, and
//! whether the call centre is open now. Each database question has a short deadline, so
//! that a probe is answered at once also while the database is away.

use crate::desk::calllog::CallLog;
use crate::desk::Records;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the report is read from. Cheap to clone.
#[derive(Clone)]
pub struct Probe {
    pub sip_addr: SocketAddr,
    pub sip_alive: Arc<AtomicBool>,
    pub records: Records,
    /// The model and its state; `None` where transcription is not part of this process.
    pub transcription: Option<crate::transcribe::worker::StatusHandle>,
    /// How the media threads are scheduled; `None` without calls (benches).
    pub media: Option<crate::media::runtime::Scheduling>,
    /// Notices the configuration sends nowhere ([`crate::notify::NotifyConfig::undeliverable`]).
    pub undeliverable: Arc<Vec<String>>,
    /// The journal's writer, for its backlog; `None` without calls.
    pub calllog: Option<CallLog>,
}

#[derive(Debug, Serialize)]
pub struct Health {
    /// `ok`, or `sip-down` (then `/healthz` answers 503).
    pub status: &'static str,
    pub version: &'static str,
    pub sip: SipHealth,
    pub database: DatabaseHealth,
    /// Media threads not real-time (a warning) make transcription add jitter: shown here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<crate::media::runtime::Scheduling>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription: Option<TranscriptionHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotificationHealth>,
    /// Journal writes waiting for the database (non-zero while it is away).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal_backlog: Option<usize>,
    pub hours: HoursHealth,
}

impl Health {
    pub fn running(&self) -> bool {
        self.sip.running
    }
}

/// The model and the jobs. A missing model does not make the hotline unhealthy (calls and
/// voicemail work; transcripts wait), it is a warning here and in the log.
#[derive(Debug, Serialize)]
pub struct TranscriptionHealth {
    #[serde(flatten)]
    pub engine: crate::transcribe::worker::EngineStatus,
    pub jobs: Option<crate::store::transcription::Counts>,
}

#[derive(Debug, Serialize)]
pub struct NotificationHealth {
    /// Notices not delivered yet; `null` while the database is unreachable.
    pub backlog: Option<i64>,
    /// Kinds of notice that have nowhere to go (no address configured).
    pub undeliverable: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct SipHealth {
    /// UDP and TCP both listen here.
    pub listen: String,
    pub running: bool,
}

#[derive(Debug, Serialize)]
pub struct DatabaseHealth {
    pub backend: &'static str,
    pub reachable: bool,
}

/// Which greeting callers get now.
#[derive(Debug, Serialize)]
pub struct HoursHealth {
    pub open: bool,
    /// When that changes (closing if open, the next opening if closed), local time
    /// `yyyy-mm-ddThh:mm`; `null` when no opening is within a year.
    pub until: Option<String>,
    /// The calendar's zone.
    pub zone: String,
}

/// The value of a database question, or `None` after an error or 1 s.
async fn within_deadline<T, E>(
    question: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout(Duration::from_secs(1), question).await {
        Ok(Ok(v)) => Some(v),
        _ => None,
    }
}

impl Probe {
    pub async fn check(&self) -> Health {
        let running = self.sip_alive.load(Ordering::SeqCst);
        // Calls are answered without the database (records wait), so it does not make the
        // hotline unhealthy; it is reported for the operators of the system. Once the
        // ping fails, the counts are not asked for at all.
        let store = &self.records.store;
        let reachable = within_deadline(sqlx::query("SELECT 1").execute(store.pool()))
            .await
            .is_some();
        let transcription = match &self.transcription {
            Some(handle) => {
                let engine = handle.read().map(|s| s.clone()).ok();
                let jobs = if reachable {
                    within_deadline(crate::store::transcription::counts(store)).await
                } else {
                    None
                };
                engine.map(|engine| TranscriptionHealth { engine, jobs })
            }
            None => None,
        };
        let notifications = if self.transcription.is_some() {
            let backlog = if reachable {
                within_deadline(crate::store::outbox::backlog(store)).await
            } else {
                None
            };
            Some(NotificationHealth {
                backlog,
                undeliverable: self.undeliverable.to_vec(),
            })
        } else {
            None
        };
        let calendar = &self.records.calendar;
        let (open, until) = calendar.hours_now(chrono::Utc::now());
        Health {
            status: if running { "ok" } else { "sip-down" },
            version: env!("CARGO_PKG_VERSION"),
            sip: SipHealth {
                listen: self.sip_addr.to_string(),
                running,
            },
            database: DatabaseHealth {
                backend: match store.backend() {
                    crate::store::Backend::Sqlite => "sqlite",
                    crate::store::Backend::Postgres => "postgres",
                },
                reachable,
            },
            media: self.media.clone(),
            transcription,
            notifications,
            journal_backlog: self.calllog.as_ref().map(CallLog::pending),
            hours: HoursHealth {
                open,
                until: until.map(|t| t.format("%Y-%m-%dT%H:%M").to_string()),
                zone: calendar.tz().to_string(),
            },
        }
    }
}
