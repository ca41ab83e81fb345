//! HTTP API (axum). `GET /healthz` for load balancers and the tests (200 once SIP is
//! listening and its core runs, 503 otherwise), and the JSON API under `/api/v1` for
//! operators, supervisors, the departments and admins: bearer tokens, roles
//! ([`auth::allowed`]), one router per area. The OpenAPI description is generated from the
//! same route declarations ([`openapi`]) and committed as `schemas/openapi.json`; a test
//! keeps the two equal.

pub mod admin;
pub mod auth;
pub mod callbacks;
pub mod error;
pub mod extract;
pub mod journal;
pub mod live;
pub mod notifications;
pub mod reports;
pub mod tickets;
pub mod voicemail;

use crate::desk::Records;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use std::path::PathBuf;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Shared, read-mostly state of the HTTP side.
#[derive(Clone)]
pub struct AppState {
    pub records: Records,
    /// Recordings and voicemail files are named relative to this.
    pub data_dir: PathBuf,
    pub operators: Arc<Vec<reports::Operator>>,
    /// The call flow's live state; `None` where only the records are served (benches).
    pub live: Option<live::Live>,
    /// What `/healthz` reports.
    pub health: crate::health::Probe,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hotline API",
        description = "Call journal, callback forms, voicemail, statistics and administration \
                       of the bank's customer hotline. Every route takes a bearer token; the \
                       token's role decides what it may do (README, \"Roles\").",
    ),
    modifiers(&BearerAuth),
    servers((url = "/api/v1")),
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(journal::router())
        .merge(callbacks::router())
        .merge(voicemail::router())
        .merge(reports::router())
        .merge(admin::router())
        .merge(live::router())
        .merge(notifications::router())
        .merge(tickets::router())
}

/// The OpenAPI description of `/api/v1`, as `hotline openapi` prints it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_routes().split_for_parts();
    // The version is the API's, not the crate's: a release that does not change the API
    // must not change the committed description.
    doc.info.version = "1".to_string();
    doc
}

/// The largest request body the API reads: its JSON bodies are forms of a few KiB. A larger
/// one is 413, stated in the error.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    let (api, _) = api_routes().split_for_parts();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(live::metrics))
        .nest(
            "/api/v1",
            api.layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
                .layer(axum::middleware::from_fn(refuse_declared_oversize)),
        )
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}

/// A body whose declared length is over [`BODY_LIMIT`] is refused before any of it is
/// read (the limit on reading catches bodies without a length).
async fn refuse_declared_oversize(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return ApiError::TooLarge(format!(
            "the body is larger than the {} KiB limit",
            BODY_LIMIT / 1024
        ))
        .into_response();
    }
    next.run(req).await
}

/// The page size of a list: 1–500, default 50.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=500).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::field("limit", "`limit`: must be 1 to 500"))
    }
}

/// `/healthz`: 200 while SIP runs, 503 otherwise, with the whole report
/// ([`crate::health::Health`]).
async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<crate::health::Health>) {
    let health = state.health.check().await;
    let status = if health.running() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}
