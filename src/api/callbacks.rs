//! `/api/v1/callbacks`: callback forms (Table 6.1) — made by operators, sent to the
//! employee who calls back, completed with field 10.

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::Path;
use super::extract::{JsonBody, QueryParams};
use super::AppState;
use crate::records::callback::{
    CallbackForm, CallbackStatus, CompleteCallback, NewCallbackForm, SendCallback,
};
use crate::records::check_len;
use crate::store::callback as sql;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_callbacks, create_callback))
        .routes(routes!(get_callback))
        .routes(routes!(send_callback))
        .routes(routes!(complete_callback))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    status: Option<CallbackStatus>,
    /// Only the forms sent to this employee.
    assigned_to: Option<String>,
    /// Forms with a smaller id (the last id of the previous page).
    before: Option<i64>,
    /// 1–500, default 50.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackList {
    pub forms: Vec<CallbackForm>,
}

/// Callback forms, newest first.
#[utoipa::path(get, path = "/callbacks", tag = "callbacks", params(CallbackQuery),
    security(("bearer" = [])),
    responses((status = 200, body = CallbackList), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_callbacks(
    State(state): State<AppState>,
    _auth: Allowed<can::CallbackRead>,
    QueryParams(q): QueryParams<CallbackQuery>,
) -> Result<Json<CallbackList>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    let filter = sql::CallbackFilter {
        status: q.status,
        assigned_to: q.assigned_to,
        before_id: q.before,
        limit,
        ..Default::default()
    };
    let forms = sql::list(&state.records.store, &filter).await?;
    Ok(Json(CallbackList { forms }))
}

/// Make a callback form; field 8 is the operator making it.
#[utoipa::path(post, path = "/callbacks", tag = "callbacks", request_body = NewCallbackForm,
    security(("bearer" = [])),
    responses((status = 201, body = CallbackForm), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody)))]
async fn create_callback(
    State(state): State<AppState>,
    auth: Allowed<can::CallbackCreate>,
    JsonBody(form): JsonBody<NewCallbackForm>,
) -> Result<(StatusCode, Json<CallbackForm>), ApiError> {
    form.validate()?;
    let operator = auth
        .token
        .operator
        .clone()
        .unwrap_or_else(|| auth.token.name.clone());
    let id = state
        .records
        .create_callback(&form, &operator, auth.actor())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(sql::get(&state.records.store, id).await?),
    ))
}

/// One callback form.
#[utoipa::path(get, path = "/callbacks/{id}", tag = "callbacks", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = CallbackForm), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_callback(
    State(state): State<AppState>,
    _auth: Allowed<can::CallbackRead>,
    Path(id): Path<i64>,
) -> Result<Json<CallbackForm>, ApiError> {
    Ok(Json(sql::get(&state.records.store, id).await?))
}

/// Send the form to the employee who will call back (journal columns 8–9).
#[utoipa::path(post, path = "/callbacks/{id}/send", tag = "callbacks",
    params(("id" = i64, Path)), request_body = SendCallback, security(("bearer" = [])),
    responses((status = 200, body = CallbackForm), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn send_callback(
    State(state): State<AppState>,
    auth: Allowed<can::CallbackSend>,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<SendCallback>,
) -> Result<Json<CallbackForm>, ApiError> {
    if body.assigned_to.trim().is_empty() {
        return Err(ApiError::field(
            "assigned_to",
            "`assigned_to`: must not be empty",
        ));
    }
    check_len("assigned_to", &body.assigned_to, 200)?;
    state
        .records
        .send_callback(id, body.assigned_to.trim(), auth.actor())
        .await?;
    Ok(Json(sql::get(&state.records.store, id).await?))
}

/// Field 10: the callback was made (journal column 10).
#[utoipa::path(post, path = "/callbacks/{id}/complete", tag = "callbacks",
    params(("id" = i64, Path)), request_body = CompleteCallback, security(("bearer" = [])),
    responses((status = 200, body = CallbackForm), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn complete_callback(
    State(state): State<AppState>,
    auth: Allowed<can::CallbackComplete>,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<CompleteCallback>,
) -> Result<Json<CallbackForm>, ApiError> {
    let now = Utc::now();
    let at = body.called_back_at.unwrap_or(now);
    if at > now + chrono::Duration::minutes(1) {
        return Err(ApiError::field(
            "called_back_at",
            "`called_back_at`: is in the future",
        ));
    }
    if let Some(r) = &body.result {
        check_len("result", r, 5_000)?;
    }
    state
        .records
        .complete_callback(id, at, body.result.as_deref(), auth.actor())
        .await?;
    Ok(Json(sql::get(&state.records.store, id).await?))
}
