//! The live view's data: the calls in progress, the changes the live feed reports, and the
//! Prometheus metrics.
//!
//! It sits below both the call flow, which produces it, and the HTTP layer, which serves it
//! (`api::live`), so that neither imports the other.

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::oneshot;

/// A call as the live view shows it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct LiveCall {
    pub call: u64,
    pub call_id: String,
    /// The key of the call's journal entry (`journal_entries.call_id`).
    #[serde(skip)]
    pub journal_key: String,
    pub phone: String,
    pub arrived_at: DateTime<Utc>,
    /// answering, greeting, queued, ringing, connected, to_voicemail, voicemail, ending.
    pub stage: &'static str,
    pub operator: Option<String>,
}

/// A change the live feed (`GET /api/v1/live/events`) reports.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    CallStarted {
        call: u64,
        phone: String,
        arrived_at: DateTime<Utc>,
    },
    CallStage {
        call: u64,
        stage: &'static str,
        operator: Option<String>,
    },
    CallEnded {
        call: u64,
        disposition: &'static str,
    },
    Operator {
        extension: String,
        state: &'static str,
    },
    Queue {
        call: u64,
        /// Joined (true) or left (false) the queue.
        joined: bool,
    },
    /// A voicemail was transcribed (with the classifier's suggestion) or its
    /// transcription failed.
    Transcription {
        voicemail_id: i64,
        status: &'static str,
        kind: Option<&'static str>,
        category: Option<&'static str>,
    },
    /// An ATM ticket was registered or moved on (`atm_state` when its ATM changed state).
    Ticket {
        ticket_id: i64,
        number: String,
        kind: &'static str,
        state: &'static str,
        atm_id: String,
        atm_state: Option<&'static str>,
        /// The registering operator.
        operator: Option<String>,
    },
    /// A supervisors' alert episode started (`started`) or ended (`records::alert`).
    Alert {
        kind: String,
        subject: String,
        text: String,
        started: bool,
    },
    /// A ticket alert for the supervisors (repeated events on an ATM, an overdue ticket).
    TicketAlert {
        alert: &'static str,
        ticket_id: i64,
        atm_id: String,
        count: u32,
    },
}

impl LiveEvent {
    /// The SSE event name.
    /// A ticket registered or moved on; `atm_state` when its ATM changed state.
    pub fn ticket(
        t: &crate::records::tickets::Ticket,
        atm_state: Option<&'static str>,
    ) -> LiveEvent {
        LiveEvent::Ticket {
            ticket_id: t.id,
            number: t.number.clone(),
            kind: t.kind.code(),
            state: t.state.as_str(),
            atm_id: t.atm_id.clone(),
            atm_state,
            operator: t.operator.clone(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            LiveEvent::CallStarted { .. } => "call_started",
            LiveEvent::CallStage { .. } => "call_stage",
            LiveEvent::CallEnded { .. } => "call_ended",
            LiveEvent::Operator { .. } => "operator",
            LiveEvent::Queue { .. } => "queue",
            LiveEvent::Transcription { .. } => "transcription",
            LiveEvent::Ticket { .. } => "ticket",
            LiveEvent::TicketAlert { .. } => "ticket_alert",
            LiveEvent::Alert { .. } => "alert",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DispositionLabel {
    disposition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The hotline's Prometheus metrics. Counters are bumped by the call flow as calls end;
/// the gauges are read from the queue and the dispatcher when scraped.
pub struct Metrics {
    registry: Registry,
    calls: Family<DispositionLabel, Counter>,
    active: Gauge,
    waiting: Gauge,
    operators: Family<StateLabel, Gauge>,
    backlog: Gauge,
    sqlite: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::for_node(None)
    }
}

impl Metrics {
    /// The metrics of node `node` of a cluster: every series carries `node="…"`, so that
    /// one Prometheus scraping every node tells them apart and sums them.
    pub fn for_node(node: Option<&str>) -> Metrics {
        let labels = node.map(|n| {
            (
                std::borrow::Cow::Borrowed("node"),
                std::borrow::Cow::Owned(n.to_string()),
            )
        });
        let mut registry = Registry::with_prefix_and_labels("hotline", labels.into_iter());
        let calls = Family::<DispositionLabel, Counter>::default();
        registry.register(
            "calls",
            "Calls ended, by journal disposition",
            calls.clone(),
        );
        let active = Gauge::default();
        registry.register("active_calls", "Calls in progress", active.clone());
        let waiting = Gauge::default();
        registry.register("waiting_callers", "Callers in the queue", waiting.clone());
        let operators = Family::<StateLabel, Gauge>::default();
        registry.register("operators", "Operators by state", operators.clone());
        let backlog = Gauge::default();
        registry.register(
            "journal_backlog",
            "Journal writes waiting for the database",
            backlog.clone(),
        );
        let sqlite = Gauge::default();
        registry.register(
            "sqlite_memory_bytes",
            "Memory held by SQLite (page caches, statements); 0 on PostgreSQL",
            sqlite.clone(),
        );
        Metrics {
            registry,
            calls,
            active,
            waiting,
            operators,
            backlog,
            sqlite,
        }
    }

    /// A call ended with this disposition.
    pub fn call_ended(&self, disposition: &str) {
        self.calls
            .get_or_create(&DispositionLabel {
                disposition: disposition.to_string(),
            })
            .inc();
    }

    /// The OpenMetrics text, with the gauges set from a snapshot taken at scrape time.
    pub fn encode(&self, now: &Gauges<'_>) -> Result<String, std::fmt::Error> {
        self.active.set(now.active_calls as i64);
        self.waiting.set(now.waiting as i64);
        self.backlog.set(now.journal_backlog as i64);
        self.sqlite.set(now.sqlite_memory);
        for (state, n) in now.operators {
            self.operators
                .get_or_create(&StateLabel {
                    state: state.to_string(),
                })
                .set(*n as i64);
        }
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

/// What the gauges show, read from the dispatcher and the queue when scraped.
pub struct Gauges<'a> {
    pub active_calls: usize,
    pub waiting: usize,
    pub journal_backlog: usize,
    /// Bytes SQLite holds (`store::sqlite_memory_used`).
    pub sqlite_memory: i64,
    /// Operators by state name, every state listed (zero included).
    pub operators: &'a [(&'static str, usize)],
}

/// Asks the call dispatcher for the calls in progress.
pub type LiveRequest = oneshot::Sender<Vec<LiveCall>>;
