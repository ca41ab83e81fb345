//! The desk: the one window every write to the records goes through — the API, the
//! console's live view, the call flow (through its [`calllog`]) and the workers.
//!
//! Why a layer of its own: a write has consequences that span the layers below it. The
//! domain's rules ([`crate::records`]) need the database's state (is the ATM in the
//! registry, where is the ticket now), deadlines need the calendar, and a record's notices
//! must be composed ([`notices`]) and enqueued in the record's own transaction
//! ([`crate::store`]) so that none is lost. Put here, above both, records stays pure domain,
//! store stays SQL, and the notifier ([`crate::notify`]) only delivers.

pub mod calllog;
pub mod notices;
mod tickets;
mod voicemail;

use crate::calendar::Calendar;
use crate::records::journal::{validate_phone, NewCall};
use crate::records::tickets::{TicketsConfig, TransitionError};
use crate::records::{RecordError, RecordsSettings};
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Datelike, Months, Utc};
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

    /// Creates the journal entry of an arriving call (one transaction: number, repeat link,
    /// audit). The call flow's arrivals go through [`calllog::CallLog`], which batches.
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
        Ok(store::journal::insert_calls_in(conn, calls, &years, window_ms, now).await?)
    }

    /// The moment before which a last document makes a record due for purging.
    pub fn retention_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_months(Months::new(12 * self.settings.retention_years))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Purges (or lists, with `dry_run`) what is past retention.
    pub async fn purge(
        &self,
        data_dir: &std::path::Path,
        dry_run: bool,
        actor: &str,
    ) -> Result<store::retention::PurgeReport, DeskError> {
        let cutoff = self.retention_cutoff(Utc::now());
        Ok(store::retention::purge(&self.store, data_dir, cutoff, dry_run, actor).await?)
    }
}
