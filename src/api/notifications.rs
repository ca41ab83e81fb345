//! The outbox and the transcription jobs, for supervisors: what was sent, what waits and
//! why, and a retry of what failed for good (after the relay or the model was fixed).

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::QueryParams;
use super::AppState;
use crate::store::outbox::{self, Queued};
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_notifications))
        .routes(routes!(retry_notifications))
        .routes(routes!(retry_transcriptions))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutboxQuery {
    /// pending / sending / sent / failed.
    status: Option<String>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxList {
    pub notifications: Vec<Queued>,
}

/// Notices, newest first.
#[utoipa::path(get, path = "/notifications", tag = "notifications", params(OutboxQuery),
    security(("bearer" = [])),
    responses((status = 200, body = OutboxList), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_notifications(
    State(state): State<AppState>,
    _auth: Allowed<can::OutboxManage>,
    QueryParams(q): QueryParams<OutboxQuery>,
) -> Result<Json<OutboxList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    if let Some(s) = &q.status {
        if !matches!(s.as_str(), "pending" | "sending" | "sent" | "failed") {
            return Err(ApiError::field(
                "status",
                "`status`: one of pending, sending, sent, failed",
            ));
        }
    }
    Ok(Json(OutboxList {
        notifications: outbox::list(&state.records.store, q.status.as_deref(), limit).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Retried {
    /// How many were due again.
    pub retried: u64,
}

/// Make every failed notice due again, with fresh attempts.
#[utoipa::path(post, path = "/notifications/retry", tag = "notifications",
    security(("bearer" = [])),
    responses((status = 200, body = Retried), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn retry_notifications(
    State(state): State<AppState>,
    _auth: Allowed<can::OutboxManage>,
) -> Result<Json<Retried>, ApiError> {
    let retried = state
        .records
        .retry_notifications(chrono::Utc::now())
        .await?;
    Ok(Json(Retried { retried }))
}

/// Make every failed transcription due again, with fresh attempts.
#[utoipa::path(post, path = "/transcription/retry", tag = "notifications",
    security(("bearer" = [])),
    responses((status = 200, body = Retried), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn retry_transcriptions(
    State(state): State<AppState>,
    _auth: Allowed<can::OutboxManage>,
) -> Result<Json<Retried>, ApiError> {
    let retried = state.records.retry_transcriptions().await?;
    Ok(Json(Retried { retried }))
}
