//! The desk: the one window every write to the records goes through — the API (and the
//! operators' console behind it), the CLI, the call flow (through its [`calllog`]) and the
//! background workers.
//!
//! Why a layer of its own: a write has consequences that span the layers below it. The
//! domain's rules ([`crate::records`]) need the database's state (is the ATM in the
//! registry, where is the ticket now), deadlines need the calendar, and a record's notices
//! must be composed ([`notices`]) and enqueued in the record's own transaction
//! ([`crate::store`]) so that none is lost. Put here, above both, records stays pure domain,
//! store stays SQL, and the notifier ([`crate::notify`]) only delivers.

pub mod accounts;
mod admin;
pub mod alerts;
mod callbacks;
pub mod calllog;
pub mod export;
pub mod files;
mod journal;
pub mod notices;
mod outbox;
mod phones;
mod quick;
mod tickets;
mod transcription;
mod voicemail;

use crate::calendar::Calendar;
use crate::records::tickets::{TicketsConfig, TransitionError};
use crate::records::{RecordError, RecordsSettings};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Datelike, Utc};
use notices::Targets;
use std::sync::Arc;

/// Why a write was refused: the input breaks a rule of the records, the ticket lifecycle
/// has no such step for this caller, or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error(transparent)]
    Invalid(#[from] RecordError),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The role may do this kind of thing, but not to this record (a call's recording
    /// without a ticket of theirs).
    #[error("the role {role} may not {action}")]
    Refused {
        role: &'static str,
        action: &'static str,
    },
}

impl From<sqlx::Error> for DeskError {
    fn from(e: sqlx::Error) -> Self {
        DeskError::Store(e.into())
    }
}

/// The records façade: the store, the calendar (for years, deadlines and local dates), the
/// settings and who is told what. Cheap to clone.
#[derive(Clone)]
pub struct Records {
    pub store: Store,
    pub calendar: Arc<Calendar>,
    pub settings: RecordsSettings,
    /// Who is told of new voicemail and the like (nobody unless configured).
    pub targets: Arc<Targets>,
    /// Ticket deadlines and alert thresholds.
    pub tickets: Arc<TicketsConfig>,
}

impl Records {
    pub fn new(store: Store, calendar: Arc<Calendar>, settings: RecordsSettings) -> Records {
        Records {
            store,
            calendar,
            settings,
            targets: Arc::new(Targets::default()),
            tickets: Arc::new(TicketsConfig::default()),
        }
    }

    /// The same records through another connection pool (see [`Store::connect_with`]).
    pub fn with_store(mut self, store: Store) -> Records {
        self.store = store;
        self
    }

    /// The same records with these ticket rules.
    pub fn with_tickets(mut self, rules: TicketsConfig) -> Records {
        self.tickets = Arc::new(rules);
        self
    }

    /// The same records, telling `targets` of what happens.
    pub fn with_targets(mut self, targets: Targets) -> Records {
        self.targets = Arc::new(targets);
        self
    }

    /// The time zone the notices' texts use.
    fn tz(&self) -> chrono_tz::Tz {
        self.calendar.tz()
    }

    /// The journal year of a moment: the calendar year in the bank's time zone, so that a
    /// call at 01:00 Moscow time on 1 January starts the new year's numbering.
    pub fn journal_year(&self, at: DateTime<Utc>) -> i64 {
        i64::from(self.calendar.local_date(at).year())
    }
}

/// Records on a fresh SQLite file at `db`, migrated, with the sample calendar: for the
/// desk's own tests.
#[cfg(test)]
pub(crate) async fn sqlite_records(db: &std::path::Path) -> Records {
    use crate::calendar::CalendarConfig;
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let cal = CalendarConfig {
        dir: concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/calendar").into(),
        ..Default::default()
    };
    Records::new(
        store,
        Arc::new(Calendar::load(&cal).unwrap()),
        RecordsSettings::default(),
    )
}
