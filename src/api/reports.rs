//! Supervisors' reads: statistics over a period, the audit log of a record, and the
//! operators list.

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::{local_midnight, parse_time, Bound, QueryParams};
use super::AppState;
use crate::store::audit::{self, AuditEntry};
use crate::store::stats::{self, Stats};
use axum::extract::State;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_stats))
        .routes(routes!(get_audit))
        .routes(routes!(list_operators))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Start (RFC 3339 or date); default: today 00:00 in the calendar's time zone.
    from: Option<String>,
    /// End, exclusive (a date includes that day); default: now.
    to: Option<String>,
}

/// Call statistics for a period, and the backlog now.
#[utoipa::path(get, path = "/stats", tag = "reports", params(StatsQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Stats), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_stats(
    State(state): State<AppState>,
    _auth: Allowed<can::StatsRead>,
    QueryParams(q): QueryParams<StatsQuery>,
) -> Result<Json<Stats>, ApiError> {
    let cal = &state.records.calendar;
    let now = Utc::now();
    let from = match &q.from {
        Some(v) => parse_time("from", v, Bound::Start, cal)?,
        None => local_midnight(cal, cal.local_date(now)),
    };
    let to = match &q.to {
        Some(v) => parse_time("to", v, Bound::End, cal)?,
        None => now,
    };
    if to <= from {
        return Err(ApiError::field("to", "`to`: must be after `from`"));
    }
    Ok(Json(
        stats::compute(
            &state.records.store,
            from,
            to,
            state.records.settings.service_level,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `journal`, `callback`, `voicemail` or `atm_ticket`.
    entity: String,
    id: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
}

/// Every change to one record, oldest first.
#[utoipa::path(get, path = "/audit", tag = "reports", params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn get_audit(
    State(state): State<AppState>,
    _auth: Allowed<can::AuditRead>,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    if !matches!(
        q.entity.as_str(),
        "journal" | "callback" | "voicemail" | "atm_ticket"
    ) {
        return Err(ApiError::field(
            "entity",
            "`entity`: must be journal, callback, voicemail or atm_ticket",
        ));
    }
    Ok(Json(AuditList {
        entries: audit::history(&state.records.store, &q.entity, q.id).await?,
    }))
}

/// An operator of the configuration.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Operator {
    pub extension: String,
    pub name: String,
    /// A password is configured, so the softphone can register.
    pub can_register: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorList {
    pub operators: Vec<Operator>,
}

/// The hotline's operators.
#[utoipa::path(get, path = "/operators", tag = "reports", security(("bearer" = [])),
    responses((status = 200, body = OperatorList), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn list_operators(
    State(state): State<AppState>,
    _auth: Allowed<can::OperatorsRead>,
) -> Result<Json<OperatorList>, ApiError> {
    Ok(Json(OperatorList {
        operators: state.operators.as_ref().clone(),
    }))
}
