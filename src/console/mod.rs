//! The web console: pages rendered on the server from compile-time-checked templates
//! (`templates/`, askama), served by the hotline's own HTTP listener at `/`, in Russian, for
//! each role. No front-end build and no JavaScript framework: forms post back, and the
//! stylesheet is embedded in the binary.
//!
//! Who may see what is the domain's one matrix ([`crate::records::access`]), checked on the
//! server by the extractors of [`session`] for every page and every action; a page hides
//! what a role may not use, and the server refuses it anyway. Like `api/`, this is the top
//! layer: only `app.rs` imports it.

pub mod board;
mod call;
mod callbacks;
mod charts;
mod desk;
mod inbox;
mod journal;
mod login;
mod pages;
mod phone;
mod quick;
mod session;
mod stats;
mod system;
mod voicemail;

use crate::callflow::acd::AcdHandle;
use crate::desk::accounts::Accounts;
use crate::desk::Records;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};

/// What the pages read and write through.
#[derive(Clone)]
pub struct ConsoleState {
    pub accounts: Accounts,
    pub records: Records,
    /// The operator queue; `None` where only the records are served.
    pub acd: Option<AcdHandle>,
    /// Whether the console is served over TLS (the cookie is then `Secure`).
    pub tls: bool,
    /// Recordings and voicemail files are named relative to this.
    pub data_dir: std::path::PathBuf,
    /// The live feed; `None` where only the records are served.
    pub live: Option<ConsoleLive>,
    /// The bank's name, for the operators' greeting script.
    pub bank_name: String,
    /// The admin's health page; `None` where only the records are served.
    pub health: Option<crate::health::Probe>,
    /// The configuration this process runs, secrets masked ([`crate::config::Config::masked_toml`]).
    pub running_config: String,
    /// The wallboard's last reading, shared by the supervisors watching it.
    pub board_cache: board::BoardCache,
    /// The operators' browser phones; `None` where calls are not served.
    pub phones: Option<crate::phone::hub::BrowserPhones>,
}

/// What the wallboard reads live: the call flow's events and its calls in progress.
#[derive(Clone)]
pub struct ConsoleLive {
    pub events: tokio::sync::broadcast::Sender<crate::live::LiveEvent>,
    pub calls: tokio::sync::mpsc::Sender<crate::live::LiveRequest>,
    /// Event streams end when the hotline shuts down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Why a page is not shown.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No open session: to the login page.
    #[error("login needed")]
    LoginNeeded,
    /// The password is given, the code not yet.
    #[error("second factor needed")]
    FactorNeeded,
    #[error("the role {role} may not {action}")]
    Forbidden {
        role: &'static str,
        action: &'static str,
    },
    /// A state-changing request without this session's CSRF token.
    #[error("the form is stale or forged (CSRF token missing or wrong)")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Desk(#[from] crate::desk::DeskError),
    #[error("template: {0}")]
    Template(#[from] askama::Error),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::LoginNeeded => Redirect::to("/login").into_response(),
            ConsoleError::FactorNeeded => Redirect::to("/login/code").into_response(),
            ConsoleError::Forbidden { role, action } => message(
                StatusCode::FORBIDDEN,
                "Доступ запрещён",
                &format!("Роль «{role}» не может: {action}."),
            ),
            ConsoleError::Csrf => message(
                StatusCode::FORBIDDEN,
                "Форма устарела",
                "Обновите страницу и повторите действие.",
            ),
            ConsoleError::BadRequest(m) => message(StatusCode::BAD_REQUEST, "Ошибка в запросе", &m),
            ConsoleError::NotFound(m) => message(StatusCode::NOT_FOUND, "Не найдено", &m),
            // A write the records refused: the input broke a rule, or the ticket has no
            // such step for this role. Named to the user, not logged as a failure.
            ConsoleError::Desk(
                e @ (crate::desk::DeskError::Invalid(_) | crate::desk::DeskError::Transition(_)),
            ) => message(StatusCode::BAD_REQUEST, "Ошибка в запросе", &e.to_string()),
            ConsoleError::Desk(crate::desk::DeskError::Refused { role, action }) => message(
                StatusCode::FORBIDDEN,
                "Доступ запрещён",
                &format!("Роль «{role}» не может: {action}."),
            ),
            ConsoleError::Desk(crate::desk::DeskError::Store(
                e @ crate::store::StoreError::NotFound { .. },
            )) => message(StatusCode::NOT_FOUND, "Не найдено", &e.to_string()),
            e => {
                tracing::error!(error = %e, "console page failed");
                message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Внутренняя ошибка",
                    "Повторите позже; ошибка записана в журнал сервера.",
                )
            }
        }
    }
}

impl From<crate::store::StoreError> for ConsoleError {
    fn from(e: crate::store::StoreError) -> Self {
        ConsoleError::Desk(e.into())
    }
}

/// The signed-in user as the ticket lifecycle knows a caller.
fn caller(user: &crate::records::account::User) -> crate::records::tickets::Caller<'_> {
    crate::records::tickets::Caller {
        role: user.role,
        operator: user.operator.as_deref(),
        actor: &user.login,
    }
}

/// The calls in progress (none where the call flow is not running).
async fn live_calls(state: &ConsoleState) -> Vec<crate::live::LiveCall> {
    let Some(live) = &state.live else {
        return Vec::new();
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if live.calls.send(tx).await.is_err() {
        return Vec::new();
    }
    rx.await.unwrap_or_default()
}

/// A page with a heading and one line: errors and refusals.
fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let page = pages::Message {
        title,
        text,
        user: None,
    };
    match askama::Template::render(&page) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, text.to_string()).into_response(),
    }
}

/// The console's feeds tell a page at most this often that its parts changed: under a
/// thousand calls the call flow makes well over a hundred events a second, and a page
/// needs only to know that it should fetch again.
const FEED_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// That the live events `keep` lets through happened, as server-sent events for a page's
/// live parts ([`crate::web::live_changes`]).
fn feed(
    state: &ConsoleState,
    keep: impl Fn(&crate::live::LiveEvent) -> bool + Clone + Send + Sync + 'static,
) -> Result<Response, ConsoleError> {
    let live = state
        .live
        .as_ref()
        .ok_or_else(|| ConsoleError::NotFound("живая лента не работает".into()))?;
    let sse = crate::web::live_changes(&live.events, live.shutdown.clone(), keep, FEED_EVERY)
        .ok_or_else(|| ConsoleError::NotFound("сервер останавливается".into()))?;
    Ok(sse.into_response())
}

/// `n` with the noun in the form Russian asks for: 1 запись, 2 записи, 5 записей (and 11–14
/// take the last form).
pub(crate) fn count(n: u64, one: &str, few: &str, many: &str) -> String {
    let noun = match (n % 10, n % 100) {
        (_, 11..=14) => many,
        (1, _) => one,
        (2..=4, _) => few,
        _ => many,
    };
    format!("{n} {noun}")
}

/// `дд.мм.гггг чч:мм` in the calendar's zone.
pub(crate) fn local_time(records: &Records, t: DateTime<Utc>) -> String {
    t.with_timezone(&records.calendar.tz())
        .format("%d.%m.%Y %H:%M")
        .to_string()
}

const CSS: &str = include_str!("../../templates/console.css");
/// The console's one script: live parts of pages (no library; see the file).
const JS: &str = include_str!("../../templates/console.js");
/// The browser phone's script, on the operator's page only when they chose it.
const PHONE_JS: &str = include_str!("../../templates/phone.js");

async fn script() -> impl IntoResponse {
    javascript(JS)
}

async fn phone_script() -> impl IntoResponse {
    javascript(PHONE_JS)
}

fn javascript(body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        body,
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        CSS,
    )
}

pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(login::root))
        .route("/login", get(login::form).post(login::submit))
        .route(
            "/login/code",
            get(login::code_form).post(login::code_submit),
        )
        .route("/logout", post(login::logout))
        .route("/operator", get(pages::operator))
        .route("/operator/presence", post(pages::presence))
        .route("/operator/call", get(call::part))
        .route("/operator/inbox", get(inbox::part))
        .route("/operator/inbox/{id}/read", post(inbox::read))
        .route("/operator/events", get(call::events))
        .route("/operator/phone", get(phone::page))
        .route("/operator/phone/offer", post(phone::offer))
        .route("/operator/phone/action", post(phone::action))
        .route("/operator/phone/events", get(phone::events))
        .route("/operator/phone/ring-at", post(phone::ring_at))
        .route(
            "/operator/ticket",
            get(call::ticket_form).post(call::register_ticket),
        )
        .route(
            "/operator/callback",
            get(callbacks::form).post(callbacks::create),
        )
        .route("/callbacks", get(callbacks::list))
        .route("/callbacks/{id}/send", post(callbacks::send))
        .route("/callbacks/{id}/complete", post(callbacks::complete))
        .route("/voicemail/{id}/audio", get(voicemail::audio))
        .route("/voicemail/{id}/process", post(voicemail::process))
        .route("/supervisor", get(board::page))
        .route("/supervisor/board", get(board::part))
        .route("/supervisor/events", get(board::events))
        .route("/stats", get(stats::page))
        .route("/quick-answers", get(quick::page).post(quick::create))
        .route("/quick-answers/{id}", post(quick::update))
        .route("/quick-answers/{id}/delete", post(quick::delete))
        .route("/journal", get(journal::list))
        .route("/journal/export.csv", get(journal::export))
        .route("/journal/{id}", get(journal::show).post(journal::edit))
        .route("/journal/{id}/recording", get(journal::recording))
        .route("/desk", get(desk::page))
        .route("/desk/list", get(desk::part))
        .route("/desk/events", get(desk::events))
        .route("/desk/tickets/{id}", get(desk::ticket))
        .route("/desk/tickets/{id}/move", post(desk::move_ticket))
        .route("/admin", get(pages::admin))
        .route("/admin/users", post(pages::create_user))
        .route("/admin/health", get(system::health))
        .route("/admin/config", get(system::config))
        .route(
            "/admin/tokens",
            get(system::tokens).post(system::create_token),
        )
        .route("/admin/tokens/{id}/revoke", post(system::revoke_token))
        .route("/admin/retention", get(system::retention))
        .route("/admin/retention/purge", post(system::purge))
        .route("/assets/console.css", get(stylesheet))
        .route("/assets/console.js", get(script))
        .route("/assets/phone.js", get(phone_script))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers every console response carries: no framing (clickjacking), no sniffing, no
/// scripts or styles from elsewhere, and no caching of pages with customers' data.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(header::HeaderValue::from_static("no-store"));
    res
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn russian_counts_take_the_right_form() {
        let f = |n| count(n, "запись", "записи", "записей");
        assert_eq!(f(1), "1 запись");
        assert_eq!(f(3), "3 записи");
        assert_eq!(f(5), "5 записей");
        assert_eq!(f(11), "11 записей");
        assert_eq!(f(12), "12 записей");
        assert_eq!(f(21), "21 запись");
        assert_eq!(f(104), "104 записи");
        assert_eq!(f(0), "0 записей");
    }
}
