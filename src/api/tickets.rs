//! `/api/v1/atm…`: ATM incident tickets (SPEC §3.3) — registered by operators, routed to
//! the card department and the security service, moved through the regulation's lifecycle
//! by the roles the lifecycle names — and the ATM registry with each ATM's state.
//!
//! Visibility (SPEC §3.3): security tickets only to the security service, the card
//! department and supervisors; an operator sees the fault tickets they registered, and
//! is told (SSE and notification) when an ATM they reported works again.

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::Path;
use super::extract::{JsonBody, QueryParams};
use super::live::{self, event_stream};
use super::AppState;
use crate::live::LiveEvent;
use crate::records::atm::{AtmCategory, TicketKind};
use crate::records::role::Role;
use crate::records::tickets::{
    script_hint, AtmConfig, Caller, NewTicket, Ticket, TicketEvent, TicketState, TransitionRequest,
    COMPLAINT_HINT,
};
use crate::records::token::TokenInfo;
use crate::store::tickets::{self as sql, Atm, TicketFilter, TicketStats};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::Json;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tickets, create_ticket))
        .routes(routes!(get_ticket))
        .routes(routes!(ticket_events))
        .routes(routes!(transition_ticket))
        .routes(routes!(ticket_stats))
        .routes(routes!(ticket_feed))
        .routes(routes!(categories))
        .routes(routes!(list_atms))
        .routes(routes!(get_atm, put_atm))
}

const SECURITY_ONLY: &str = "security tickets are visible only to the security service, the \
     card department and supervisors";
const OWN_ONLY: &str = "an operator sees only the tickets they registered";

/// Whether `token` may see `t`.
fn may_see(token: &TokenInfo, t: &Ticket) -> Result<(), ApiError> {
    match token.role {
        Role::Supervisor | Role::CardDepartment | Role::Security => Ok(()),
        Role::Operator if t.kind == TicketKind::AtmSecurity => {
            Err(ApiError::Refused(SECURITY_ONLY.into()))
        }
        Role::Operator if t.operator.is_some() && t.operator == token.operator => Ok(()),
        _ => Err(ApiError::Refused(OWN_ONLY.into())),
    }
}

/// Whether a live event may reach `token` (the ticket feed).
fn may_receive(token: &TokenInfo, ev: &LiveEvent) -> bool {
    match (token.role, ev) {
        (Role::Supervisor, LiveEvent::Ticket { .. } | LiveEvent::TicketAlert { .. }) => true,
        (Role::CardDepartment | Role::Security, LiveEvent::Ticket { .. }) => true,
        // The registering operator hears of their own tickets: that is how the
        // restoration reaches them.
        (Role::Operator, LiveEvent::Ticket { operator, .. }) => {
            operator.is_some() && *operator == token.operator
        }
        _ => false,
    }
}

fn publish(state: &AppState, t: &Ticket, atm_state: Option<&'static str>) {
    if let Some(live) = &state.live {
        let _ = live.events.send(LiveEvent::ticket(t, atm_state));
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TicketQuery {
    /// `atm_fault` or `atm_security`.
    #[param(value_type = Option<String>)]
    kind: Option<TicketKind>,
    state: Option<TicketState>,
    atm_id: Option<String>,
    /// The registering operator's extension.
    operator: Option<String>,
    journal_id: Option<i64>,
    /// Only tickets whose ATM is not restored yet.
    #[serde(default)]
    open: bool,
    /// Tickets with a smaller id (the last id of the previous page).
    before: Option<i64>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketList {
    pub tickets: Vec<Ticket>,
}

/// Tickets, newest first. Operators get only the fault tickets they registered.
#[utoipa::path(get, path = "/atm/tickets", tag = "atm", params(TicketQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TicketList), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_tickets(
    State(state): State<AppState>,
    auth: Allowed<can::TicketRead>,
    QueryParams(q): QueryParams<TicketQuery>,
) -> Result<Json<TicketList>, ApiError> {
    let mut f = TicketFilter {
        kind: q.kind,
        state: q.state,
        atm_id: q.atm_id,
        operator: q.operator,
        journal_id: q.journal_id,
        open: q.open,
        before: q.before,
        limit: super::page_limit(q.limit)?,
    };
    if auth.token.role == Role::Operator {
        if f.kind == Some(TicketKind::AtmSecurity) {
            return Err(ApiError::Refused(SECURITY_ONLY.into()));
        }
        if f.operator.is_some() && f.operator != auth.token.operator {
            return Err(ApiError::Refused(OWN_ONLY.into()));
        }
        let Some(own) = auth.token.operator.clone() else {
            return Ok(Json(TicketList { tickets: vec![] }));
        };
        f.kind = Some(TicketKind::AtmFault);
        f.operator = Some(own);
    }
    Ok(Json(TicketList {
        tickets: sql::list(&state.records.store, &f).await?,
    }))
}

/// Register a ticket. A security event suspends its ATM at once (§6.7.5); the response
/// carries the script hint for the operator (§6.7.4).
#[utoipa::path(post, path = "/atm/tickets", tag = "atm", request_body = NewTicket,
    security(("bearer" = [])),
    responses((status = 201, body = Ticket), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_ticket(
    State(state): State<AppState>,
    auth: Allowed<can::TicketCreate>,
    JsonBody(new): JsonBody<NewTicket>,
) -> Result<(StatusCode, Json<Ticket>), ApiError> {
    let operator = match auth.token.role {
        Role::Operator => auth.token.operator.as_deref(),
        _ => None,
    };
    let done = state
        .records
        .register_ticket(&new, operator, auth.token.role, auth.actor())
        .await?;
    publish(&state, &done.ticket, done.suspended.then_some("suspended"));
    if let Some(live) = &state.live {
        for a in &done.alerts {
            let _ = live.events.send(LiveEvent::TicketAlert {
                alert: a.kind.as_str(),
                ticket_id: a.ticket_id,
                atm_id: a.atm_id.clone(),
                count: a.count,
            });
        }
    }
    Ok((StatusCode::CREATED, Json(done.ticket)))
}

/// A ticket.
#[utoipa::path(get, path = "/atm/tickets/{id}", tag = "atm", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Ticket), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_ticket(
    State(state): State<AppState>,
    auth: Allowed<can::TicketRead>,
    Path(id): Path<i64>,
) -> Result<Json<Ticket>, ApiError> {
    let t = sql::get(&state.records.store, id).await?;
    may_see(&auth.token, &t)?;
    Ok(Json(t))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketHistory {
    pub events: Vec<TicketEvent>,
}

/// Every transition of a ticket: who, when, from what to what, with their note.
#[utoipa::path(get, path = "/atm/tickets/{id}/events", tag = "atm", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = TicketHistory), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn ticket_events(
    State(state): State<AppState>,
    auth: Allowed<can::TicketRead>,
    Path(id): Path<i64>,
) -> Result<Json<TicketHistory>, ApiError> {
    let t = sql::get(&state.records.store, id).await?;
    may_see(&auth.token, &t)?;
    Ok(Json(TicketHistory {
        events: sql::events(&state.records.store, id).await?,
    }))
}

/// Move a ticket on. A step the lifecycle does not have from the ticket's state is 409
/// with the steps it has (`allowed`); a step that is someone else's is 403.
#[utoipa::path(post, path = "/atm/tickets/{id}/transition", tag = "atm",
    request_body = TransitionRequest, security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Ticket), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn transition_ticket(
    State(state): State<AppState>,
    auth: Allowed<can::TicketTransition>,
    Path(id): Path<i64>,
    JsonBody(req): JsonBody<TransitionRequest>,
) -> Result<Json<Ticket>, ApiError> {
    if let Some(n) = &req.note {
        crate::records::check_len("note", n, 2000)?;
    }
    let caller = Caller {
        role: auth.token.role,
        operator: auth.token.operator.as_deref(),
        actor: auth.actor(),
    };
    let moved = state
        .records
        .transition_ticket(id, req.to, req.note.as_deref(), caller, Utc::now())
        .await?;
    let atm_state =
        (moved.ticket.state == TicketState::Restored).then_some(if moved.atm_in_service {
            "in_service"
        } else {
            "suspended"
        });
    publish(&state, &moved.ticket, atm_state);
    Ok(Json(moved.ticket))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// From (RFC 3339), default 30 days ago.
    from: Option<DateTime<Utc>>,
    /// To, exclusive (RFC 3339), default now.
    to: Option<DateTime<Utc>>,
}

/// Tickets per ATM (faults, security events, not yet restored) and per category.
#[utoipa::path(get, path = "/atm/stats", tag = "atm", params(StatsQuery),
    security(("bearer" = [])),
    responses((status = 200, body = TicketStats), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn ticket_stats(
    State(state): State<AppState>,
    _auth: Allowed<can::TicketStats>,
    QueryParams(q): QueryParams<StatsQuery>,
) -> Result<Json<TicketStats>, ApiError> {
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - chrono::Duration::days(30));
    if from >= to {
        return Err(ApiError::field("from", "`from` must be before `to`"));
    }
    Ok(Json(sql::stats(&state.records.store, from, to).await?))
}

/// Ticket changes as they happen (server-sent events `ticket` and, for supervisors,
/// `ticket_alert`), each as the caller may see them: an operator hears of the tickets they
/// registered, the ATM's restoration included.
#[utoipa::path(get, path = "/atm/events", tag = "atm", security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "events"),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn ticket_feed(
    State(state): State<AppState>,
    auth: Allowed<can::TicketRead>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let token = auth.token.clone();
    event_stream(live::live(&state)?, move |ev| may_receive(&token, ev))
}

/// A category with what the operator tells the caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct CategoryInfo {
    #[schema(value_type = String)]
    pub kind: TicketKind,
    #[schema(value_type = String)]
    pub code: AtmCategory,
    pub name: &'static str,
    pub script_hint: Option<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Categories {
    pub categories: Vec<CategoryInfo>,
    /// §6.8: what to tell a caller who complains by phone.
    pub complaint_hint: &'static str,
}

/// The regulation's categories of both kinds, with the operator's script hints.
#[utoipa::path(get, path = "/atm/categories", tag = "atm", security(("bearer" = [])),
    responses((status = 200, body = Categories), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn categories(_auth: Allowed<can::AtmRead>) -> Json<Categories> {
    Json(Categories {
        categories: AtmCategory::ALL
            .into_iter()
            .map(|c| CategoryInfo {
                kind: c.kind(),
                code: c,
                name: c.name_ru(),
                script_hint: script_hint(c),
            })
            .collect(),
        complaint_hint: COMPLAINT_HINT,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AtmList {
    pub atms: Vec<Atm>,
}

/// The ATM registry with each ATM's state.
#[utoipa::path(get, path = "/atms", tag = "atm", security(("bearer" = [])),
    responses((status = 200, body = AtmList), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn list_atms(
    State(state): State<AppState>,
    _auth: Allowed<can::AtmRead>,
) -> Result<Json<AtmList>, ApiError> {
    Ok(Json(AtmList {
        atms: sql::list_atms(&state.records.store).await?,
    }))
}

/// An ATM: `in_service`, or `suspended` with the ticket that suspended it.
#[utoipa::path(get, path = "/atms/{id}", tag = "atm", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Atm), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_atm(
    State(state): State<AppState>,
    _auth: Allowed<can::AtmRead>,
    Path(id): Path<String>,
) -> Result<Json<Atm>, ApiError> {
    sql::get_atm(&state.records.store, &id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("ATM {id} is not in the registry")))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AtmAddress {
    pub address: String,
}

/// Add an ATM to the registry, or change its address.
#[utoipa::path(put, path = "/atms/{id}", tag = "atm", request_body = AtmAddress,
    security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Atm), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn put_atm(
    State(state): State<AppState>,
    auth: Allowed<can::AtmManage>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AtmAddress>,
) -> Result<Json<Atm>, ApiError> {
    if id.trim().is_empty() || id.chars().count() > 64 {
        return Err(ApiError::field("id", "`id`: must be 1 to 64 characters"));
    }
    if body.address.trim().is_empty() {
        return Err(ApiError::field("address", "`address`: must not be empty"));
    }
    crate::records::check_len("address", &body.address, 500)?;
    let atm = AtmConfig {
        id,
        address: body.address,
    };
    Ok(Json(state.records.put_atm(&atm, auth.actor()).await?))
}
