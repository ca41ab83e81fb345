//! Administration: API tokens and the retention purge (§7.6).

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::JsonBody;
use super::extract::Path;
use super::AppState;
use crate::records::role::Role;
use crate::records::token::{check_holder, TokenInfo};
use crate::store::retention::PurgeReport;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(retention_preview))
        .routes(routes!(retention_purge))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// Every token (never the secrets).
#[utoipa::path(get, path = "/tokens", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = TokenList), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn list_tokens(
    State(state): State<AppState>,
    _auth: Allowed<can::TokensManage>,
) -> Result<Json<TokenList>, ApiError> {
    Ok(Json(TokenList {
        tokens: state.records.tokens().await?,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// The holder's name; the audit log's actor.
    pub name: String,
    pub role: Role,
    /// The operator's extension (required for the operator role).
    #[serde(default)]
    pub operator: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: i64,
    /// Shown once; only its hash is stored.
    pub token: String,
}

/// Make a token.
#[utoipa::path(post, path = "/tokens", tag = "admin", request_body = NewToken,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_token(
    State(state): State<AppState>,
    _auth: Allowed<can::TokensManage>,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let name = body.name.trim();
    let configured = |ext: &str| state.operators.iter().any(|o| o.extension == ext);
    check_holder(name, body.role, body.operator.as_deref(), configured)
        .map_err(|e| ApiError::field(e.field(), e.to_string()))?;
    let (id, token) = state
        .records
        .create_token(name, body.role, body.operator.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedToken { id, token })))
}

/// Revoke a token at once.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "admin", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn revoke_token(
    State(state): State<AppState>,
    _auth: Allowed<can::TokensManage>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.records.revoke_token(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the retention purge would delete now (a dry run).
#[utoipa::path(get, path = "/retention", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = PurgeReport), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn retention_preview(
    State(state): State<AppState>,
    auth: Allowed<can::RetentionRun>,
) -> Result<Json<PurgeReport>, ApiError> {
    purge(&state, true, auth.actor()).await
}

/// Purge records and recordings past retention.
#[utoipa::path(post, path = "/retention/purge", tag = "admin", security(("bearer" = [])),
    responses((status = 200, body = PurgeReport), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn retention_purge(
    State(state): State<AppState>,
    auth: Allowed<can::RetentionRun>,
) -> Result<Json<PurgeReport>, ApiError> {
    purge(&state, false, auth.actor()).await
}

async fn purge(
    state: &AppState,
    dry_run: bool,
    actor: &str,
) -> Result<Json<PurgeReport>, ApiError> {
    Ok(Json(
        state.records.purge(&state.data_dir, dry_run, actor).await?,
    ))
}
