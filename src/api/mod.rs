//! HTTP API (axum). For now: `GET /healthz`, which load balancers and the test suite use to
//! know that the hotline is up: 200 once SIP is listening and its core is running, 503 if
//! the SIP core has stopped.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared, read-mostly state of the HTTP side.
#[derive(Clone)]
pub struct AppState {
    pub sip_addr: SocketAddr,
    pub sip_alive: Arc<AtomicBool>,
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    sip: SipHealth,
}

#[derive(Serialize)]
struct SipHealth {
    /// UDP and TCP both listen here.
    listen: String,
    running: bool,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let running = state.sip_alive.load(Ordering::SeqCst);
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
        }),
    )
}
