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
use crate::notify::outbox::Targets;
use crate::notify::{message, tickets as notices};
use crate::store::{Store, StoreError};
use atm::TicketKind;
use chrono::{DateTime, Datelike, Months, Utc};
use notice::Notice;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use std::time::Duration;
use voicemail::VoicemailFacts;

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
    /// registering token's, for the lifecycle's first event. One transaction: the ticket,
    /// the ATM's suspension, the journal's reference and the repeat alerts' notices.
    pub async fn register_ticket(
        &self,
        new: &tickets::NewTicket,
        operator: Option<&str>,
        role: role::Role,
        actor: &str,
    ) -> Result<tickets::Registered, tickets::TicketError> {
        new.validate()?;
        let now = Utc::now();
        let deadline_at = self
            .calendar
            .deadline_in_working_days(now, self.tickets.deadline_days(new.kind));
        let mut tx = self.store.begin_write().await?;
        let Some((address, atm_state)) =
            crate::store::tickets::atm_in(&mut tx, &new.atm_id).await?
        else {
            return Err(RecordError::invalid(
                "atm_id",
                format!("{} is not in the ATM registry", new.atm_id),
            )
            .into());
        };
        let (mut phone, mut name) = (new.phone.clone(), new.caller_name.clone());
        if let Some(jid) = new.journal_id {
            let Some((p, n)) = crate::store::journal::caller_in(&mut tx, jid).await? else {
                return Err(RecordError::invalid(
                    "journal_id",
                    format!("journal entry {jid} does not exist"),
                )
                .into());
            };
            phone = phone.or(Some(p));
            name = name.or(n);
        }
        // §6.7.5: a security event suspends the ATM at once (an ATM already suspended stays
        // so, by the ticket that suspended it first).
        let suspends = new.kind == TicketKind::AtmSecurity && atm_state == "in_service";
        let row = crate::store::tickets::NewRow {
            new,
            address: &address,
            phone: phone.as_deref(),
            caller_name: name.as_deref(),
            operator,
            role,
            actor,
            year: self.journal_year(now),
            deadline_at,
            suspends,
        };
        let ticket = crate::store::tickets::insert_in(&mut tx, &row, now).await?;
        let rules = &self.tickets;
        let (kind, count_of, hours) = match new.kind {
            TicketKind::AtmSecurity => (
                tickets::AlertKind::SecurityRepeat,
                rules.security_repeat_count,
                rules.security_repeat_hours,
            ),
            TicketKind::AtmFault => (
                tickets::AlertKind::FaultRepeat,
                rules.fault_repeat_count,
                rules.fault_repeat_hours,
            ),
        };
        let since = now - chrono::Duration::hours(i64::from(hours));
        let count =
            crate::store::tickets::count_since_in(&mut tx, &new.atm_id, new.kind, since).await?;
        let mut alerts = Vec::new();
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        if count >= count_of {
            let (n, sinks) = notices::alert(kind, &ticket, count, hours, &self.targets, self.tz());
            crate::store::outbox::enqueue(&mut tx, &n, &sinks, now).await?;
            alerts.push(tickets::Alert {
                kind,
                ticket_id: ticket.id,
                atm_id: new.atm_id.clone(),
                count,
                hours,
            });
        }
        tx.commit().await?;
        Ok(tickets::Registered {
            ticket,
            suspended: suspends,
            alerts,
        })
    }

    /// Moves a ticket on, if the lifecycle and the caller's role allow it, with its effects
    /// in one transaction: notices to the departments (routed), to the security service
    /// (finding), to the operator and the ATM back in service (restored).
    pub async fn transition_ticket(
        &self,
        id: i64,
        to: tickets::TicketState,
        note: Option<&str>,
        caller: tickets::Caller<'_>,
        now: DateTime<Utc>,
    ) -> Result<tickets::Moved, tickets::TicketError> {
        use tickets::TicketState;
        let mut tx = self.store.begin_write().await?;
        let t = crate::store::tickets::load_in(&mut tx, id).await?;
        tickets::check_transition(t.kind, t.state, to, caller.role, caller.is_author(&t))?;
        let atm_in_service =
            crate::store::tickets::move_in(&mut tx, &t, to, note, &caller, now).await?;
        let moved = crate::store::tickets::load_in(&mut tx, id).await?;
        let (targets, tz) = (self.targets.as_ref(), self.tz());
        let addressed = match to {
            TicketState::Routed => Some(notices::routed(&moved, targets, tz)),
            TicketState::Confirmed | TicketState::NotConfirmed => Some(notices::finding(
                &moved,
                to == TicketState::Confirmed,
                targets,
                tz,
            )),
            TicketState::Restored => Some(notices::restored(&moved, targets, tz)),
            _ => None,
        };
        if let Some((n, sinks)) = addressed {
            crate::store::outbox::enqueue(&mut tx, &n, &sinks, now).await?;
        }
        tx.commit().await?;
        Ok(tickets::Moved {
            ticket: moved,
            from: t.state,
            atm_in_service,
        })
    }

    /// Alerts the supervisors of tickets past their deadline with the ATM not restored,
    /// once per ticket. Returns the tickets alerted now.
    pub async fn remind_overdue_tickets(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<tickets::Ticket>, StoreError> {
        let overdue = crate::store::tickets::overdue(&self.store, now).await?;
        let mut alerted = Vec::new();
        let mut conn = self.store.pool().acquire().await?;
        for t in overdue {
            let (n, sinks) = notices::alert(
                tickets::AlertKind::Overdue,
                &t,
                1,
                0,
                &self.targets,
                self.tz(),
            );
            if crate::store::outbox::enqueue(&mut conn, &n, &sinks, now).await? > 0 {
                alerted.push(t);
            }
        }
        Ok(alerted)
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

    /// Records a voicemail (and its callback form), due by the next working day's close,
    /// with the head of the call centre's notice in the same transaction.
    pub async fn add_voicemail(&self, vm: &voicemail::NewVoicemail) -> Result<i64, RecordError> {
        let deadline = self.calendar.next_working_day_deadline(vm.arrived_at);
        let now = Utc::now();
        let mut tx = self.store.begin_write().await.map_err(StoreError::from)?;
        let id = crate::store::voicemail::insert_in(&mut tx, vm, deadline, now).await?;
        self.voicemail_notice_in(&mut tx, id, message::voicemail_new, now)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(id)
    }

    /// [`Records::add_voicemail`] in the caller's transaction, once per entry and file
    /// (see [`crate::store::voicemail::insert_once_in`]); `false` when it was recorded
    /// already.
    pub async fn add_voicemail_once_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        vm: &voicemail::NewVoicemail,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool), StoreError> {
        let deadline = self.calendar.next_working_day_deadline(vm.arrived_at);
        let (id, created) =
            crate::store::voicemail::insert_once_in(conn, vm, deadline, now).await?;
        if created {
            self.voicemail_notice_in(conn, id, message::voicemail_new, now)
                .await?;
        }
        Ok((id, created))
    }

    /// Stores a finished transcription with its "transcript ready" notice, in one
    /// transaction; `false` if the job was no longer running.
    pub async fn complete_transcription(
        &self,
        job: &crate::store::transcription::Job,
        done: &crate::store::transcription::Finished<'_>,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let mut tx = self.store.begin_write().await?;
        if !crate::store::transcription::complete_in(&mut tx, job, done, now).await? {
            return Ok(false);
        }
        self.voicemail_notice_in(
            &mut tx,
            job.voicemail_id,
            message::voicemail_transcript,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Enqueues the reminder of every message past its deadline and not processed (§2.6:
    /// by the next working day) that has none yet, each in its own transaction; returns
    /// how many notices were added. Run periodically: each message is reminded of once.
    pub async fn remind_overdue_voicemail(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        if self.targets.voicemail_sinks().is_empty() {
            return Ok(0);
        }
        let mut added = 0;
        for id in crate::store::voicemail::overdue_unreminded(&self.store, now).await? {
            let mut tx = self.store.begin_write().await?;
            added += self
                .voicemail_notice_in(&mut tx, id, message::voicemail_overdue, now)
                .await?;
            tx.commit().await?;
        }
        Ok(added)
    }

    /// Composes a voicemail notice from what the caller's transaction holds and enqueues it
    /// there, for the head of the call centre and the webhooks; returns the rows added.
    async fn voicemail_notice_in(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: i64,
        compose: fn(&VoicemailFacts, &Targets, chrono_tz::Tz) -> Notice,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let facts = crate::store::voicemail::facts(conn, id).await?;
        let notice = compose(&facts, &self.targets, self.tz());
        crate::store::outbox::enqueue(conn, &notice, &self.targets.voicemail_sinks(), now).await
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
