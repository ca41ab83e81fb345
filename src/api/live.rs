//! The live view for supervisors and the operators' presence: `GET /live` (calls in
//! progress, the queue, every operator's state), `GET /live/events` (the same changes as a
//! server-sent event stream), sign-in / sign-out / pause of operators, and Prometheus
//! `/metrics`.
//!
//! Nothing here holds state of its own: the queue actor and the call dispatcher own it and
//! answer snapshot requests, so a page refresh never races the calls.

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, QueryParams};
use super::AppState;
use crate::callflow::acd::AcdHandle;
use crate::callflow::queue::{OperatorState, PauseReason, QueueError};
use crate::desk::calllog::CallLog;
use crate::live::{Gauges, LiveCall, LiveEvent, LiveRequest, Metrics};
use crate::records::role::Role;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures::Stream;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the live routes read: the queue, the dispatcher, the call log's backlog.
#[derive(Clone)]
pub struct Live {
    pub acd: AcdHandle,
    pub calls: mpsc::Sender<LiveRequest>,
    pub events: broadcast::Sender<LiveEvent>,
    pub metrics: Arc<Metrics>,
    pub calllog: CallLog,
    /// Event streams end when the hotline shuts down (HTTP's graceful shutdown waits for
    /// every open connection).
    pub shutdown: watch::Receiver<bool>,
}

impl Live {
    async fn calls(&self) -> Vec<LiveCall> {
        let (tx, rx) = oneshot::channel();
        if self.calls.send(tx).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_live))
        .routes(routes!(live_events))
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(pause))
}

pub(crate) fn live(state: &AppState) -> Result<&Live, ApiError> {
    state
        .live
        .as_ref()
        .ok_or_else(|| ApiError::Internal("the call flow is not running".into()))
}

/// An operator's state as the live view shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveOperator {
    pub extension: String,
    /// offline, available, ringing, busy, wrap_up or paused.
    pub state: &'static str,
    /// Seconds in this state.
    pub since_s: f64,
    pub registered: bool,
    pub calls_answered: u64,
    /// While paused: break, lunch, training, back_office, technical, or no_answer (the
    /// queue paused them after a refused or unanswered call).
    pub pause_reason: Option<&'static str>,
}

/// A caller waiting in the queue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LiveWaiting {
    pub call: u64,
    pub position: usize,
    pub waited_s: f64,
    /// The operator whose phone rings for this caller now.
    pub offered_to: Option<String>,
}

/// The hotline now.
#[derive(Debug, Serialize, ToSchema)]
pub struct LiveView {
    pub calls: Vec<LiveCall>,
    pub waiting: Vec<LiveWaiting>,
    pub operators: Vec<LiveOperator>,
    /// Journal writes waiting for the database (non-zero while it is unavailable).
    pub journal_backlog: usize,
}

async fn view(live: &Live) -> LiveView {
    let snapshot = live.acd.snapshot().await;
    LiveView {
        calls: live.calls().await,
        waiting: snapshot
            .waiting
            .iter()
            .map(|w| LiveWaiting {
                call: w.call,
                position: w.position,
                waited_s: w.waited.as_secs_f64(),
                offered_to: w.offered_to.clone(),
            })
            .collect(),
        operators: snapshot
            .operators
            .iter()
            .map(|o| LiveOperator {
                extension: o.extension.clone(),
                state: o.state.as_str(),
                since_s: o.since.as_secs_f64(),
                registered: o.registered,
                calls_answered: o.calls_answered,
                pause_reason: o.pause_reason.map(PauseReason::as_str),
            })
            .collect(),
        journal_backlog: live.calllog.pending(),
    }
}

/// Calls in progress, the queue and the operators' states.
#[utoipa::path(get, path = "/live", tag = "live", security(("bearer" = [])),
    responses((status = 200, body = LiveView), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn get_live(
    State(state): State<AppState>,
    _auth: Allowed<can::LiveRead>,
) -> Result<Json<LiveView>, ApiError> {
    Ok(Json(view(live(&state)?).await))
}

/// Changes as they happen (server-sent events, one JSON object each): calls starting,
/// moving on (`stage`) and ending, operators changing state, callers joining and leaving
/// the queue.
#[utoipa::path(get, path = "/live/events", tag = "live", security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", description = "events"),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn live_events(
    State(state): State<AppState>,
    _auth: Allowed<can::LiveRead>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    event_stream(live(&state)?, |_| true)
}

/// The live events that `keep` lets through, as server-sent events, until the hotline
/// shuts down (see [`crate::web::live_events`]).
pub(crate) fn event_stream(
    live: &Live,
    keep: impl Fn(&LiveEvent) -> bool + Clone + Send + Sync + 'static,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    crate::web::live_events(&live.events, live.shutdown.clone(), keep)
        .ok_or_else(|| ApiError::Internal("shutting down".into()))
}

/// Operators sign themselves in and out; supervisors may do it for anyone.
fn may_act_for(auth: &Allowed<can::OperatorPresence>, ext: &str) -> Result<(), ApiError> {
    if auth.token.role == Role::Operator && auth.token.operator.as_deref() != Some(ext) {
        return Err(ApiError::Forbidden {
            role: "operator",
            action: "sign another operator in or out",
        });
    }
    Ok(())
}

fn queue_error(e: QueueError) -> ApiError {
    match e {
        QueueError::UnknownOperator(_) => ApiError::NotFound(e.to_string()),
        other => ApiError::Conflict(other.to_string()),
    }
}

async fn presence(
    state: &AppState,
    auth: &Allowed<can::OperatorPresence>,
    ext: &str,
    what: Presence,
) -> Result<StatusCode, ApiError> {
    may_act_for(auth, ext)?;
    if !state.operators.iter().any(|o| o.extension == ext) {
        return Err(ApiError::NotFound(format!("no operator {ext}")));
    }
    let acd = &live(state)?.acd;
    let result = match what {
        Presence::In => acd.sign_in(ext).await,
        Presence::Out => acd.sign_out(ext).await,
        Presence::Pause(reason) => acd.pause(ext, reason).await,
    };
    result.map_err(queue_error)?;
    tracing::info!(
        operator = ext,
        by = auth.actor(),
        ?what,
        "operator presence"
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Clone, Copy)]
enum Presence {
    In,
    Out,
    Pause(PauseReason),
}

/// Signs an operator in: their registered phone starts getting calls (409 when it is not
/// registered). Also how a paused operator comes back.
#[utoipa::path(post, path = "/operators/{extension}/sign-in", tag = "live",
    params(("extension" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn sign_in(
    State(state): State<AppState>,
    auth: Allowed<can::OperatorPresence>,
    Path(ext): Path<String>,
) -> Result<StatusCode, ApiError> {
    presence(&state, &auth, &ext, Presence::In).await
}

/// Signs an operator out: no more calls (a call in progress goes on).
#[utoipa::path(post, path = "/operators/{extension}/sign-out", tag = "live",
    params(("extension" = String, Path)), security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn sign_out(
    State(state): State<AppState>,
    auth: Allowed<can::OperatorPresence>,
    Path(ext): Path<String>,
) -> Result<StatusCode, ApiError> {
    presence(&state, &auth, &ext, Presence::Out).await
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PauseQuery {
    /// break (the default), lunch, training, back_office or technical.
    reason: Option<String>,
}

/// Pauses an operator, with a reason the wallboard shows: no calls until they sign in
/// again. Pausing a paused operator changes the reason.
#[utoipa::path(post, path = "/operators/{extension}/pause", tag = "live",
    params(("extension" = String, Path), PauseQuery), security(("bearer" = [])),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 409, body = ErrorBody)))]
async fn pause(
    State(state): State<AppState>,
    auth: Allowed<can::OperatorPresence>,
    Path(ext): Path<String>,
    QueryParams(q): QueryParams<PauseQuery>,
) -> Result<StatusCode, ApiError> {
    let reason = match q.reason.as_deref() {
        None => PauseReason::Break,
        Some(r) => PauseReason::parse(r).ok_or_else(|| ApiError::BadRequest {
            field: Some("reason".into()),
            message: format!(
                "`reason`: {r:?} is not one of break, lunch, training, back_office, technical"
            ),
        })?,
    };
    presence(&state, &auth, &ext, Presence::Pause(reason)).await
}

const ALL_STATES: [OperatorState; 6] = [
    OperatorState::Offline,
    OperatorState::Available,
    OperatorState::Ringing,
    OperatorState::Busy,
    OperatorState::WrapUp,
    OperatorState::Paused,
];

/// Prometheus metrics (OpenMetrics text). Counts only, no personal data, so no token.
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    let Some(live) = state.live.as_ref() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let view = view(live).await;
    let operators = ALL_STATES.map(|s| {
        let n = view
            .operators
            .iter()
            .filter(|o| o.state == s.as_str())
            .count();
        (s.as_str(), n)
    });
    let gauges = Gauges {
        active_calls: view.calls.len(),
        waiting: view.waiting.len(),
        journal_backlog: view.journal_backlog,
        sqlite_memory: crate::store::sqlite_memory_used(),
        operators: &operators,
    };
    let body = match live.metrics.encode(&gauges) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "metrics encoding failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
