//! ATM tickets through the desk: registration and transitions apply the lifecycle and the
//! registry's checks, and add the notices and alerts they cause, in one transaction.

use super::{notices, DeskError, Records};
use crate::records::alert::AlertKind as ListedAlert;
use crate::records::atm::TicketKind;
use crate::records::role::Role;
use crate::records::tickets::{
    check_transition, Alert, AlertKind, AtmConfig, Caller, Moved, NewTicket, Registered, Ticket,
    TicketState,
};
use crate::records::RecordError;
use crate::store::tickets::Atm;
use crate::store::{self, StoreError};
use chrono::{DateTime, Utc};

impl Records {
    /// Adds the configured ATMs to the registry and updates their addresses.
    pub async fn sync_atms(&self, atms: &[AtmConfig]) -> Result<(), StoreError> {
        store::tickets::sync_registry(&self.store, atms).await
    }

    /// Adds an ATM to the registry or changes its address (audited).
    pub async fn put_atm(&self, atm: &AtmConfig, actor: &str) -> Result<Atm, DeskError> {
        Ok(store::tickets::put_atm(&self.store, atm, actor).await?)
    }

    /// Registers an ATM ticket (SPEC §3.3), due in the kind's working days; `operator`
    /// is the registering operator's extension, told when the ATM works again; `role` the
    /// registering token's, for the lifecycle's first event. One transaction: the ticket,
    /// the ATM's suspension, the journal's reference and the repeat alerts' notices.
    pub async fn register_ticket(
        &self,
        new: &NewTicket,
        operator: Option<&str>,
        role: Role,
        actor: &str,
    ) -> Result<Registered, DeskError> {
        new.validate()?;
        let now = Utc::now();
        let deadline_at = self
            .calendar
            .deadline_in_working_days(now, self.tickets.deadline_days(new.kind));
        let mut tx = self.store.begin_write().await?;
        let Some((address, atm_state)) = store::tickets::atm_in(&mut tx, &new.atm_id).await? else {
            return Err(RecordError::invalid(
                "atm_id",
                format!("{} is not in the ATM registry", new.atm_id),
            )
            .into());
        };
        let (mut phone, mut name) = (new.phone.clone(), new.caller_name.clone());
        if let Some(jid) = new.journal_id {
            let Some((p, n)) = store::journal::caller_in(&mut tx, jid).await? else {
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
        let row = store::tickets::NewRow {
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
        let ticket = store::tickets::insert_in(&mut tx, &row, now).await?;
        let rules = &self.tickets;
        let (kind, count_of, hours) = match new.kind {
            TicketKind::AtmSecurity => (
                AlertKind::SecurityRepeat,
                rules.security_repeat_count,
                rules.security_repeat_hours,
            ),
            TicketKind::AtmFault => (
                AlertKind::FaultRepeat,
                rules.fault_repeat_count,
                rules.fault_repeat_hours,
            ),
        };
        let since = now - chrono::Duration::hours(i64::from(hours));
        let count = store::tickets::count_since_in(&mut tx, &new.atm_id, new.kind, since).await?;
        let mut alerts = Vec::new();
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        if count >= count_of {
            let (n, sinks) =
                notices::tickets::alert(kind, &ticket, count, hours, &self.targets, self.tz());
            store::outbox::enqueue(&mut tx, &n, &sinks, now).await?;
            // Kept in the supervisors' alert list too, as an episode that is over at once.
            let (listed, what) = match kind {
                AlertKind::SecurityRepeat => {
                    (ListedAlert::AtmSecurityRepeat, "событий безопасности")
                }
                _ => (ListedAlert::AtmFaultRepeat, "неисправностей"),
            };
            let text = format!(
                "Банкомат {}: {count} {what} за {hours} ч (заявка {})",
                new.atm_id, ticket.number
            );
            if let Some(row) =
                store::alerts::start_in(&mut tx, listed.as_str(), &ticket.number, &text, now)
                    .await?
            {
                store::alerts::end_in(&mut tx, row.id, now).await?;
            }
            alerts.push(Alert {
                kind,
                ticket_id: ticket.id,
                atm_id: new.atm_id.clone(),
                count,
                hours,
            });
        }
        tx.commit().await?;
        Ok(Registered {
            ticket,
            suspended: suspends,
            alerts,
        })
    }

    /// Moves a ticket on, if the lifecycle and the caller's role allow it, with its effects
    /// in one transaction: notices to the departments (routed), to the security service
    /// (finding), to the operator (e-mail and their console's inbox) and the ATM back in
    /// service (restored).
    pub async fn transition_ticket(
        &self,
        id: i64,
        to: TicketState,
        note: Option<&str>,
        caller: Caller<'_>,
        now: DateTime<Utc>,
    ) -> Result<Moved, DeskError> {
        let mut tx = self.store.begin_write().await?;
        let t = store::tickets::load_in(&mut tx, id).await?;
        check_transition(t.kind, t.state, to, caller.role, caller.is_author(&t))?;
        let atm_in_service = store::tickets::move_in(&mut tx, &t, to, note, &caller, now).await?;
        let moved = store::tickets::load_in(&mut tx, id).await?;
        let (targets, tz) = (self.targets.as_ref(), self.tz());
        let addressed =
            match to {
                TicketState::Routed => Some(notices::tickets::routed(&moved, targets, tz)),
                TicketState::Confirmed | TicketState::NotConfirmed => Some(
                    notices::tickets::finding(&moved, to == TicketState::Confirmed, targets, tz),
                ),
                TicketState::Restored => Some(notices::tickets::restored(&moved, targets, tz)),
                _ => None,
            };
        if let Some((n, sinks)) = addressed {
            store::outbox::enqueue(&mut tx, &n, &sinks, now).await?;
        }
        // The operator who registered it keeps the news until they have read it.
        if let (TicketState::Restored, Some(op)) = (to, moved.operator.as_deref()) {
            let text = format!(
                "Банкомат {} снова работает (заявка {}). Сообщите заявителю: {}.",
                moved.atm_id,
                moved.number,
                moved.phone.as_deref().unwrap_or("номер не указан")
            );
            store::inbox::add_in(&mut tx, op, &text, Some(moved.id), now).await?;
        }
        tx.commit().await?;
        Ok(Moved {
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
    ) -> Result<Vec<Ticket>, StoreError> {
        let overdue = store::tickets::overdue(&self.store, now).await?;
        let mut alerted = Vec::new();
        let mut conn = self.store.pool().acquire().await?;
        for t in overdue {
            let (n, sinks) =
                notices::tickets::alert(AlertKind::Overdue, &t, 1, 0, &self.targets, self.tz());
            if store::outbox::enqueue(&mut conn, &n, &sinks, now).await? > 0 {
                alerted.push(t);
            }
        }
        Ok(alerted)
    }
}
