//! The records the bank's regulation demands (SPEC §3): the incoming-call journal, callback
//! forms, voicemail, with the audit log of every change. This module is the domain: types,
//! validation and rules, and [`Records`], the one façade the API and the call flow write
//! through. It knows nothing of SIP; the SQL is in [`crate::store`].

pub mod atm;
pub mod callback;
pub mod calllog;
pub mod journal;
pub mod notice;
pub mod role;
pub mod spreadsheet;
pub mod tickets;
pub mod voicemail;

use crate::calendar::Calendar;
use crate::notify::outbox::{Notifying, Targets};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Datelike, Months, Utc};
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use std::time::Duration;

/// Errors of the records layer: bad input (naming the field) or the database's.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("`{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RecordError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> RecordError {
        RecordError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Rejects text over `max` characters, naming the field.
pub(crate) fn check_len(field: &'static str, v: &str, max: usize) -> Result<(), RecordError> {
    if v.chars().count() > max {
        Err(RecordError::invalid(
            field,
            format!("is longer than {max} characters"),
        ))
    } else {
        Ok(())
    }
}

/// `Option<Option<T>>` from JSON: absent → `None`, `null` → `Some(None)`, a value →
/// `Some(Some(v))`. Used with `#[serde(default)]` so that a patch can clear a field.
pub(crate) fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A file the database names (recordings, voicemail), inside the data directory; `None`
/// for an absolute path or one with `..`, which no record of ours holds.
pub fn data_file(data_dir: &std::path::Path, rel: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(rel);
    p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| data_dir.join(p))
}

/// Settings of the records (`[records]` in hotline.toml).
#[derive(Debug, Clone)]
pub struct RecordsSettings {
    /// A call from a number with an entry this recent is a repeat appeal (ch. 3).
    pub repeat_window: Duration,
    /// Records and recordings are kept this many years after their last document (§7.6).
    pub retention_years: u32,
    /// Service level: share of calls answered within this many seconds.
    pub service_level: Duration,
}

impl Default for RecordsSettings {
    fn default() -> Self {
        RecordsSettings {
            repeat_window: Duration::from_secs(30 * 86_400),
            retention_years: 5,
            service_level: Duration::from_secs(20),
        }
    }
}

/// The records façade: the store, the calendar (for years, deadlines and local dates) and
/// the settings. Cheap to clone.
#[derive(Clone)]
pub struct Records {
    pub store: Store,
    pub calendar: Arc<Calendar>,
    pub settings: RecordsSettings,
    /// Who is told of new voicemail and the like (nobody unless configured).
    pub targets: Arc<Targets>,
    /// Ticket deadlines and alert thresholds.
    pub tickets: Arc<tickets::TicketsConfig>,
}

impl Records {
    pub fn new(store: Store, calendar: Arc<Calendar>, settings: RecordsSettings) -> Records {
        Records {
            store,
            calendar,
            settings,
            targets: Arc::new(Targets::default()),
            tickets: Arc::new(tickets::TicketsConfig::default()),
        }
    }

    /// The same records with these ticket rules.
    /// The same records through another connection pool (see [`Store::connect_with`]).
    pub fn with_store(mut self, store: Store) -> Records {
        self.store = store;
        self
    }

    pub fn with_tickets(mut self, rules: tickets::TicketsConfig) -> Records {
        self.tickets = Arc::new(rules);
        self
    }

    /// Registers an ATM ticket (SPEC §3.3), due in the kind's working days; `operator`
    /// is the registering operator's extension, told when the ATM works again; `role` the
    /// registering token's, for the lifecycle's first event.
    pub async fn register_ticket(
        &self,
        new: &tickets::NewTicket,
        operator: Option<&str>,
        role: role::Role,
        actor: &str,
    ) -> Result<crate::store::tickets::Registered, tickets::TicketError> {
        new.validate()?;
        let now = Utc::now();
        let deadline = self
            .calendar
            .deadline_in_working_days(now, self.tickets.deadline_days(new.kind));
        crate::store::tickets::create(
            &self.store,
            new,
            operator,
            role,
            actor,
            self.journal_year(now),
            now,
            deadline,
            &self.tickets,
            &self.notifying(),
        )
        .await
    }

    /// The same records, telling `targets` of what happens.
    pub fn with_targets(mut self, targets: Targets) -> Records {
        self.targets = Arc::new(targets);
        self
    }

    /// The notice recipients and the time zone their texts use, for the store's writes.
    pub fn notifying(&self) -> Notifying<'_> {
        Notifying {
            targets: &self.targets,
            tz: self.calendar.tz(),
        }
    }

    /// The journal year of a moment: the calendar year in the bank's time zone, so that a
    /// call at 01:00 Moscow time on 1 January starts the new year's numbering.
    pub fn journal_year(&self, at: DateTime<Utc>) -> i64 {
        i64::from(self.calendar.local_date(at).year())
    }

    /// Creates the journal entry of an arriving call (one transaction: number, repeat link,
    /// audit). The call flow's arrivals go through [`calllog::CallLog`], which batches.
    pub async fn record_call(&self, call: &journal::NewCall) -> Result<i64, RecordError> {
        let ids = self.record_calls(std::slice::from_ref(call)).await?;
        Ok(ids[0])
    }

    /// Creates entries for several calls in one transaction; ids in the same order.
    pub async fn record_calls(&self, calls: &[journal::NewCall]) -> Result<Vec<i64>, RecordError> {
        let mut tx = self.store.begin_write().await.map_err(StoreError::from)?;
        let ids = self.record_calls_in(&mut tx, calls, Utc::now()).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(ids)
    }

    /// [`Records::record_calls`] inside the caller's transaction.
    pub async fn record_calls_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        calls: &[journal::NewCall],
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, RecordError> {
        for c in calls {
            journal::validate_phone("phone", &c.phone)?;
        }
        let years: Vec<i64> = calls
            .iter()
            .map(|c| self.journal_year(c.arrived_at))
            .collect();
        let window_ms = i64::try_from(self.settings.repeat_window.as_millis()).unwrap_or(i64::MAX);
        Ok(crate::store::journal::insert_calls_in(conn, calls, &years, window_ms, now).await?)
    }

    /// Records a voicemail (and its callback form), due by the next working day's close.
    pub async fn add_voicemail(&self, vm: &voicemail::NewVoicemail) -> Result<i64, RecordError> {
        let deadline = self.calendar.next_working_day_deadline(vm.arrived_at);
        Ok(crate::store::voicemail::insert(&self.store, vm, deadline, &self.notifying()).await?)
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
    ) -> Result<crate::store::retention::PurgeReport, RecordError> {
        let cutoff = self.retention_cutoff(Utc::now());
        Ok(crate::store::retention::purge(&self.store, data_dir, cutoff, dry_run, actor).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_stays_inside_the_data_dir() {
        let d = std::path::Path::new("/data");
        assert_eq!(
            data_file(d, "voicemail/2026/x.wav"),
            Some("/data/voicemail/2026/x.wav".into())
        );
        assert_eq!(data_file(d, "../etc/passwd"), None);
        assert_eq!(data_file(d, "/etc/passwd"), None);
    }
}
