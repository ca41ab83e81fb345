//! The browser phone's signalling: the page's SDP offer, the call events it hears (SSE),
//! and its buttons (answer, decline, hang up, mute), all under the operator's console
//! session and its CSRF token. Only an operator acts, and only for the extension of their
//! own account: the extension never comes from the request.

use super::session::{Posted, Signed};
use super::{ConsoleError, ConsoleState};
use crate::phone::hub::{BrowserPhones, PhoneError, RingAt};
use crate::records::access::can;
use crate::records::role::Role;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// Why the page's request is refused: a status and a line naming the cause.
pub struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// A request the session extractors refused. These are the page's own requests, so a
/// page without a session gets 403 here rather than the login page.
impl From<ConsoleError> for Refusal {
    fn from(e: ConsoleError) -> Refusal {
        match e {
            ConsoleError::BadRequest(m) => Refusal(StatusCode::BAD_REQUEST, m),
            ConsoleError::LoginNeeded | ConsoleError::FactorNeeded => {
                Refusal(StatusCode::FORBIDDEN, "no console session".into())
            }
            e => Refusal(StatusCode::FORBIDDEN, e.to_string()),
        }
    }
}

impl From<PhoneError> for Refusal {
    fn from(e: PhoneError) -> Refusal {
        let status = match e {
            PhoneError::Peer(_) => StatusCode::BAD_REQUEST,
            PhoneError::NotConnected | PhoneError::NoSuchLeg => StatusCode::CONFLICT,
            PhoneError::NotYours => StatusCode::FORBIDDEN,
            PhoneError::NoPort | PhoneError::Socket(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Refusal(status, e.to_string())
    }
}

/// The signed-in operator's own extension, and the browser phones.
fn own(
    session: &crate::desk::accounts::Session,
    state: &ConsoleState,
) -> Result<(String, BrowserPhones), Refusal> {
    let user = &session.user;
    let extension = match (user.role, &user.operator) {
        (Role::Operator, Some(ext)) => ext.clone(),
        _ => {
            return Err(Refusal(
                StatusCode::FORBIDDEN,
                "only an operator has a browser phone, for their own extension".into(),
            ))
        }
    };
    let phones = state.phones.clone().ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            "the browser phone is not served".into(),
        )
    })?;
    Ok((extension, phones))
}

#[derive(Deserialize)]
pub struct OfferForm {
    sdp: String,
}

/// `POST /operator/phone/offer`: the page's SDP offer; the answer is the body.
pub async fn offer(
    State(state): State<ConsoleState>,
    posted: Result<Posted<can::OperatorPresence, OfferForm>, ConsoleError>,
) -> Result<Response, Refusal> {
    let posted = posted?;
    let (extension, phones) = own(&posted.signed.session, &state)?;
    if posted.form.sdp.len() > 16 * 1024 {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "`sdp`: over 16 KiB".into(),
        ));
    }
    let connection = phones.connect(&extension, &posted.form.sdp)?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (
                header::HeaderName::from_static(CONNECTION_HEADER),
                connection.id.to_string(),
            ),
        ],
        connection.answer,
    )
        .into_response())
}

/// The offer's answer names the new connection here; the page's «off» repeats it.
pub const CONNECTION_HEADER: &str = "x-phone-connection";

#[derive(Deserialize)]
pub struct ActionForm {
    action: String,
    #[serde(default)]
    leg: Option<u64>,
    /// With «off»: the connection the page was given (see [`CONNECTION_HEADER`]).
    #[serde(default)]
    connection: Option<u64>,
}

/// `POST /operator/phone/action`: «Ответить», «Отклонить», «Завершить», mute, unmute,
/// and switching the browser phone off (also sent as a beacon when the page goes away).
pub async fn action(
    State(state): State<ConsoleState>,
    posted: Result<Posted<can::OperatorPresence, ActionForm>, ConsoleError>,
) -> Result<StatusCode, Refusal> {
    let posted = posted?;
    let (extension, phones) = own(&posted.signed.session, &state)?;
    let f = posted.form;
    let leg = || {
        let leg = f
            .leg
            .ok_or_else(|| Refusal(StatusCode::BAD_REQUEST, "`leg`: missing".into()))?;
        phones.check_owner(&extension, leg)?;
        Ok::<u64, Refusal>(leg)
    };
    match f.action.as_str() {
        "answer" => phones.answer(&extension, leg()?)?,
        "decline" => phones.decline(&extension, leg()?)?,
        "hangup" => phones.hang_up(&extension, leg()?)?,
        "mute" => phones.mute(&extension, true)?,
        "unmute" => phones.mute(&extension, false)?,
        "off" => phones.disconnect(&extension, f.connection),
        other => {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!("`action`: unknown {other:?}"),
            ))
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /operator/phone/events`: the phone's events as SSE, starting with where things
/// stand (connected, a ringing call).
pub async fn events(
    State(state): State<ConsoleState>,
    signed: Result<Signed<can::OperatorPresence>, ConsoleError>,
) -> Result<Response, Refusal> {
    let signed = signed?;
    let (extension, phones) = own(&signed.session, &state)?;
    let (now, rx) = phones.subscribe(&extension);
    let shutdown = state.live.as_ref().map(|l| l.shutdown.clone());
    let first = futures::stream::iter(now.into_iter().map(to_sse));
    let rest = futures::stream::unfold((rx, shutdown), |(mut rx, mut shutdown)| async move {
        loop {
            let ev = match &mut shutdown {
                Some(s) => tokio::select! {
                    ev = rx.recv() => ev,
                    _ = s.changed() => return None,
                },
                None => rx.recv().await,
            };
            match ev {
                Ok(ev) => return Some((to_sse(ev), (rx, shutdown))),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    use futures::StreamExt;
    Ok(Sse::new(first.chain(rest))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn to_sse(ev: crate::phone::hub::PageEvent) -> Result<Event, std::convert::Infallible> {
    Ok(Event::default()
        .event("phone")
        .data(serde_json::to_string(&ev).unwrap_or_default()))
}

#[derive(Deserialize)]
pub struct RingAtForm {
    ring_at: String,
}

/// `POST /operator/phone/ring-at`: where the operator's calls ring; kept in the records.
pub async fn ring_at(
    State(state): State<ConsoleState>,
    posted: Posted<can::OperatorPresence, RingAtForm>,
) -> Result<Response, ConsoleError> {
    let user = &posted.signed.session.user;
    let extension = match (user.role, &user.operator) {
        (Role::Operator, Some(ext)) => ext.clone(),
        _ => {
            return Err(ConsoleError::Forbidden {
                role: user.role.as_str(),
                action: "choose where an operator is rung",
            })
        }
    };
    let choice = RingAt::parse(&posted.form.ring_at).ok_or_else(|| {
        ConsoleError::BadRequest(format!(
            "`ring_at`: unknown {:?} (phone, browser, both)",
            posted.form.ring_at
        ))
    })?;
    state
        .records
        .set_ring_at(&extension, choice, &user.login)
        .await?;
    if let Some(p) = &state.phones {
        p.set_ring_at(&extension, choice);
    }
    Ok(Redirect::to("/operator").into_response())
}

#[derive(askama::Template)]
#[template(path = "phone.html")]
struct PhonePage {
    user: Option<super::pages::Who>,
    csrf: String,
    extension: String,
    ring_at: &'static str,
}

/// `/operator/phone`: the browser phone, in a window of its own so that it stays up while
/// the operator moves between the console's pages (a page change would end its call).
pub async fn page(
    State(state): State<ConsoleState>,
    who: Signed<can::OperatorPresence>,
) -> Result<Response, ConsoleError> {
    let user = &who.session.user;
    let extension = match (user.role, &user.operator) {
        (Role::Operator, Some(ext)) => ext.clone(),
        _ => {
            return Err(ConsoleError::Forbidden {
                role: user.role.as_str(),
                action: "use a browser phone (operators only, for their own extension)",
            })
        }
    };
    let ring_at = state
        .phones
        .as_ref()
        .map_or(RingAt::Phone, |p| p.ring_at(&extension))
        .as_str();
    let html = askama::Template::render(&PhonePage {
        user: Some(super::pages::Who::of(&who.session)),
        csrf: who.session.csrf.clone(),
        extension,
        ring_at,
    })?;
    Ok(axum::response::Html(html).into_response())
}
