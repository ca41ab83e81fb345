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
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Shared, read-mostly state of the HTTP side.
#[derive(Clone)]
pub struct AppState {
    pub sip_addr: SocketAddr,
    pub sip_alive: Arc<AtomicBool>,
    pub records: Records,
    /// Recordings and voicemail files are named relative to this.
    pub data_dir: PathBuf,
    pub operators: Arc<Vec<reports::Operator>>,
    /// The call flow's live state; `None` where only the records are served (benches).
    pub live: Option<live::Live>,
    /// Whether voicemail can be transcribed (the model), for `/healthz`.
    pub transcription: Option<crate::transcribe::worker::StatusHandle>,
    /// How the media threads are scheduled, for `/healthz`; `None` without calls (benches).
    pub media: Option<crate::media::runtime::Scheduling>,
    /// Notices the configuration sends nowhere ([`crate::notify::NotifyConfig::undeliverable`]).
    pub undeliverable: Arc<Vec<String>>,
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

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    sip: SipHealth,
    database: DatabaseHealth,
    /// Media threads not real-time (a warning) make transcription add jitter: shown here.
    #[serde(skip_serializing_if = "Option::is_none")]
    media: Option<crate::media::runtime::Scheduling>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transcription: Option<TranscriptionHealth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notifications: Option<NotificationHealth>,
}

/// The model and the jobs. A missing model does not make the hotline unhealthy (calls and
/// voicemail work; transcripts wait), it is a warning here and in the log.
#[derive(Serialize)]
struct TranscriptionHealth {
    #[serde(flatten)]
    engine: crate::transcribe::worker::EngineStatus,
    jobs: Option<crate::store::transcription::Counts>,
}

#[derive(Serialize)]
struct NotificationHealth {
    /// Notices not delivered yet; `null` while the database is unreachable.
    backlog: Option<i64>,
    /// Kinds of notice that have nowhere to go (no address configured).
    undeliverable: Vec<String>,
}

#[derive(Serialize)]
struct SipHealth {
    /// UDP and TCP both listen here.
    listen: String,
    running: bool,
}

#[derive(Serialize)]
struct DatabaseHealth {
    backend: &'static str,
    reachable: bool,
}

/// The value of a database question for `/healthz`, or `None` after an error or 1 s.
async fn within_health_deadline<T, E>(
    question: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout(std::time::Duration::from_secs(1), question).await {
        Ok(Ok(v)) => Some(v),
        _ => None,
    }
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let running = state.sip_alive.load(Ordering::SeqCst);
    // Calls are answered without the database (records wait), so it does not make the
    // hotline unhealthy; it is reported for the operators of the system.
    // Every database question has a short deadline: a load balancer's probe must be
    // answered at once, also while the database is away (the pool would wait 10 s for a
    // connection). Once the ping fails, the counts are not asked for at all.
    let store = &state.records.store;
    let reachable = within_health_deadline(sqlx::query("SELECT 1").execute(store.pool()))
        .await
        .is_some();
    let transcription = match &state.transcription {
        Some(handle) => {
            let engine = handle.read().map(|s| s.clone()).ok();
            let jobs = if reachable {
                within_health_deadline(crate::store::transcription::counts(store)).await
            } else {
                None
            };
            engine.map(|engine| TranscriptionHealth { engine, jobs })
        }
        None => None,
    };
    let notifications = if state.transcription.is_some() {
        let backlog = if reachable {
            within_health_deadline(crate::store::outbox::backlog(store)).await
        } else {
            None
        };
        Some(NotificationHealth {
            backlog,
            undeliverable: state.undeliverable.to_vec(),
        })
    } else {
        None
    };
    let status = if running {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Health {
            status: if running { "ok" } else { "sip-down" },
            version: env!("CARGO_PKG_VERSION"),
            sip: SipHealth {
                listen: state.sip_addr.to_string(),
                running,
            },
            database: DatabaseHealth {
                backend: match state.records.store.backend() {
                    crate::store::Backend::Sqlite => "sqlite",
                    crate::store::Backend::Postgres => "postgres",
                },
                reachable,
            },
            media: state.media.clone(),
            transcription,
            notifications,
        }),
    )
}
