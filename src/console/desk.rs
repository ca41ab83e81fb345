//! The departments' desk: the ticket queue (live), a ticket's detail with its timeline and
//! a button for each step this role may take from its state (`records::tickets::TRANSITIONS`),
//! and the ATM registry.

use super::pages::{ticket_state_name, Who};
use super::session::{Posted, Signed};
use super::{local_time, ConsoleError, ConsoleState};
use crate::live::LiveEvent;
use crate::records::access::can;
use crate::records::atm::TicketKind;
use crate::records::role::Role;
use crate::records::tickets::{Ticket, TicketState};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

/// Whether `role` sees `t` on the desk: the departments and supervisors every ticket, an
/// operator only the fault tickets they registered (as the API's ticket routes decide).
fn may_see(role: Role, operator: Option<&str>, t: &Ticket) -> bool {
    match role {
        Role::Supervisor | Role::CardDepartment | Role::Security => true,
        Role::Operator => {
            t.kind == TicketKind::AtmFault
                && t.operator.is_some()
                && t.operator.as_deref() == operator
        }
        Role::Admin => false,
    }
}

/// A ticket's line in the queue.
struct TicketLine {
    id: i64,
    number: String,
    security: bool,
    category: String,
    atm: String,
    state: &'static str,
    deadline: String,
    overdue: bool,
}

/// An ATM in the registry.
struct AtmLine {
    id: String,
    address: String,
    suspended: bool,
    /// The open tickets on it.
    tickets: Vec<(i64, String)>,
}

#[derive(Template)]
#[template(path = "desk.html")]
struct DeskPage {
    user: Option<Who>,
    tickets: Vec<TicketLine>,
    atms: Vec<AtmLine>,
}

#[derive(Template)]
#[template(path = "desk_list.html")]
struct DeskList {
    tickets: Vec<TicketLine>,
    atms: Vec<AtmLine>,
}

async fn lists(state: &ConsoleState) -> Result<(Vec<TicketLine>, Vec<AtmLine>), ConsoleError> {
    let store = &state.records.store;
    let filter = crate::store::tickets::TicketFilter {
        open: true,
        limit: 500,
        ..Default::default()
    };
    let open: Vec<Ticket> = crate::store::tickets::list(store, &filter).await?;
    let atms = crate::store::tickets::list_atms(store)
        .await?
        .into_iter()
        .map(|a| AtmLine {
            tickets: open
                .iter()
                .filter(|t| t.atm_id == a.id)
                .map(|t| (t.id, t.number.clone()))
                .collect(),
            suspended: a.state != "in_service",
            id: a.id,
            address: a.address,
        })
        .collect();
    let tickets = open
        .into_iter()
        .map(|t| TicketLine {
            id: t.id,
            security: t.kind == TicketKind::AtmSecurity,
            number: t.number,
            category: t.category_name,
            atm: format!("{} — {}", t.atm_id, t.atm_address),
            state: ticket_state_name(t.state),
            deadline: local_time(&state.records, t.deadline_at),
            overdue: t.overdue,
        })
        .collect();
    Ok((tickets, atms))
}

/// `/desk`: the open tickets, newest first, and the ATM registry.
pub async fn page(
    State(state): State<ConsoleState>,
    who: Signed<can::TicketStats>,
) -> Result<Response, ConsoleError> {
    let (tickets, atms) = lists(&state).await?;
    Ok(Html(
        DeskPage {
            user: Some(Who::of(&who.session)),
            tickets,
            atms,
        }
        .render()?,
    )
    .into_response())
}

/// `/desk/list`: the queue and the registry alone, for the page to put in place.
pub async fn part(
    State(state): State<ConsoleState>,
    _who: Signed<can::TicketStats>,
) -> Result<Response, ConsoleError> {
    let (tickets, atms) = lists(&state).await?;
    Ok(Html(DeskList { tickets, atms }.render()?).into_response())
}

/// `/desk/events`: ticket events, as server-sent events.
pub async fn events(
    State(state): State<ConsoleState>,
    _who: Signed<can::TicketStats>,
) -> Result<Response, ConsoleError> {
    let keep = |ev: &LiveEvent| matches!(ev, LiveEvent::Ticket { .. });
    super::feed(&state, keep)
}

/// One step of the timeline.
struct Step {
    at: String,
    from: &'static str,
    to: &'static str,
    actor: String,
    note: String,
}

#[derive(Template)]
#[template(path = "ticket.html")]
struct TicketPage {
    user: Option<Who>,
    t: Ticket,
    state: &'static str,
    created: String,
    deadline: String,
    steps: Vec<Step>,
    /// The steps this user may take now: (state code, its name).
    moves: Vec<(&'static str, &'static str)>,
    /// Whether the link to the call's journal entry opens for this role.
    may_read_journal: bool,
}

async fn visible(
    state: &ConsoleState,
    id: i64,
    who: &crate::desk::accounts::Session,
) -> Result<Ticket, ConsoleError> {
    let t = crate::store::tickets::get(&state.records.store, id)
        .await
        .map_err(|_| ConsoleError::NotFound(format!("нет заявки {id}")))?;
    if !may_see(who.user.role, who.user.operator.as_deref(), &t) {
        return Err(ConsoleError::Forbidden {
            role: who.user.role.as_str(),
            action: "see this ticket",
        });
    }
    Ok(t)
}

/// `/desk/tickets/{id}`: the ticket, its timeline, and the steps this role may take.
pub async fn ticket(
    State(state): State<ConsoleState>,
    who: Signed<can::TicketRead>,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let t = visible(&state, id, &who.session).await?;
    let events = crate::store::tickets::events(&state.records.store, id).await?;
    let user = &who.session.user;
    let caller = super::caller(user);
    let moves = t
        .next
        .iter()
        .filter(|n| {
            crate::records::tickets::check_transition(
                t.kind,
                t.state,
                n.to,
                user.role,
                caller.is_author(&t),
            )
            .is_ok()
        })
        .map(|n| (n.to.as_str(), ticket_state_name(n.to)))
        .collect();
    let page = TicketPage {
        user: Some(Who::of(&who.session)),
        state: ticket_state_name(t.state),
        created: local_time(&state.records, t.created_at),
        deadline: local_time(&state.records, t.deadline_at),
        steps: events
            .into_iter()
            .map(|e| Step {
                at: local_time(&state.records, e.at),
                from: e.from.map_or("", ticket_state_name),
                to: ticket_state_name(e.to),
                actor: e.actor,
                note: e.note.unwrap_or_default(),
            })
            .collect(),
        moves,
        may_read_journal: crate::records::access::allowed(
            user.role,
            crate::records::access::Action::JournalRead,
        ),
        t,
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
pub struct MoveForm {
    to: String,
    #[serde(default)]
    note: String,
}

/// `POST /desk/tickets/{id}/move`: a step, if the lifecycle and this role allow it.
pub async fn move_ticket(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    posted: Posted<can::TicketTransition, MoveForm>,
) -> Result<Response, ConsoleError> {
    let session = &posted.signed.session;
    visible(&state, id, session).await?;
    let to = TicketState::parse(&posted.form.to).ok_or_else(|| {
        ConsoleError::BadRequest(format!("`to`: неизвестное состояние {:?}", posted.form.to))
    })?;
    let note = posted.form.note.trim();
    crate::records::check_len("note", note, 2000)
        .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    let user = &session.user;
    let caller = super::caller(user);
    let moved = state
        .records
        .transition_ticket(
            id,
            to,
            Some(note).filter(|n| !n.is_empty()),
            caller,
            chrono::Utc::now(),
        )
        .await?;
    let atm_state =
        (moved.ticket.state == TicketState::Restored).then_some(if moved.atm_in_service {
            "in_service"
        } else {
            "suspended"
        });
    if let Some(live) = &state.live {
        let _ = live
            .events
            .send(LiveEvent::ticket(&moved.ticket, atm_state));
    }
    Ok(Redirect::to(&format!("/desk/tickets/{id}")).into_response())
}
