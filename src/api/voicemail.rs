//! `/api/v1/voicemail`: the messages callers left, their audio (with HTTP range requests,
//! so a browser's player can seek) and marking them processed.

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::Path;
use super::extract::QueryParams;
use super::AppState;
use crate::records::voicemail::{Voicemail, VoicemailStatus};
use crate::store::voicemail as sql;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_voicemail))
        .routes(routes!(get_voicemail))
        .routes(routes!(voicemail_audio))
        .routes(routes!(process_voicemail))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VoicemailQuery {
    status: Option<VoicemailStatus>,
    /// Messages with a smaller id (the last id of the previous page).
    before: Option<i64>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VoicemailList {
    pub voicemail: Vec<Voicemail>,
}

/// Voicemail, newest first.
#[utoipa::path(get, path = "/voicemail", tag = "voicemail", params(VoicemailQuery),
    security(("bearer" = [])),
    responses((status = 200, body = VoicemailList), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_voicemail(
    State(state): State<AppState>,
    _auth: Allowed<can::VoicemailRead>,
    QueryParams(q): QueryParams<VoicemailQuery>,
) -> Result<Json<VoicemailList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    let voicemail = sql::list(&state.records.store, q.status, q.before, limit).await?;
    Ok(Json(VoicemailList { voicemail }))
}

/// One message.
#[utoipa::path(get, path = "/voicemail/{id}", tag = "voicemail", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Voicemail), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_voicemail(
    State(state): State<AppState>,
    _auth: Allowed<can::VoicemailRead>,
    Path(id): Path<i64>,
) -> Result<Json<Voicemail>, ApiError> {
    Ok(Json(sql::get(&state.records.store, id).await?))
}

/// The message's audio as `audio/wav`; `Range` requests get 206.
#[utoipa::path(get, path = "/voicemail/{id}/audio", tag = "voicemail",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, content_type = "audio/wav", body = Vec<u8>),
               (status = 206, content_type = "audio/wav", body = Vec<u8>),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 416, description = "Range not satisfiable")))]
async fn voicemail_audio(
    State(state): State<AppState>,
    _auth: Allowed<can::VoicemailRead>,
    Path(id): Path<i64>,
    req: Request,
) -> Result<Response, ApiError> {
    let vm = sql::get(&state.records.store, id).await?;
    let held = state
        .records
        .locate(&state.data_dir, &vm.file, vm.journal_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("the audio of voicemail {id} is missing")))?;
    Ok(crate::web::audio(held, req, None).await)
}

/// Mark the message processed by the caller of this route.
#[utoipa::path(post, path = "/voicemail/{id}/process", tag = "voicemail",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Voicemail), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 409, body = ErrorBody)))]
async fn process_voicemail(
    State(state): State<AppState>,
    auth: Allowed<can::VoicemailProcess>,
    Path(id): Path<i64>,
) -> Result<Json<Voicemail>, ApiError> {
    state
        .records
        .mark_voicemail_processed(id, auth.actor())
        .await?;
    Ok(Json(sql::get(&state.records.store, id).await?))
}
