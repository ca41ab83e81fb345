//! The console's extractors: who is signed in ([`Signed`]), and a state-changing form from
//! them with its CSRF token checked ([`Posted`]). A handler that takes one of them cannot
//! forget the session, the role check or the token.
//!
//! The session cookie is HttpOnly and SameSite=Strict (Secure over TLS). The CSRF token is
//! per session, in every form as a hidden field; a POST without the right one is 403. The
//! login form, before any session, has its own token: a random cookie that the form must
//! repeat (double submit).

use super::{ConsoleError, ConsoleState};
use crate::desk::accounts::Session;
use crate::records::access::{allowed, Permission};
use crate::records::role::Role;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::marker::PhantomData;
use std::net::SocketAddr;

pub const SESSION_COOKIE: &str = "hotline_session";
pub const LOGIN_COOKIE: &str = "hotline_login";
/// The largest form the console reads.
const FORM_LIMIT: usize = 64 * 1024;

/// Where each role lands after the login.
pub fn home(role: Role) -> &'static str {
    match role {
        Role::Operator => "/operator",
        Role::Supervisor => "/supervisor",
        Role::CardDepartment | Role::Security => "/desk",
        Role::Admin => "/admin",
    }
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `Set-Cookie` for the console: HttpOnly, SameSite=Strict, Secure over TLS. An empty
/// value deletes the cookie.
pub fn set_cookie(name: &str, value: &str, tls: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if value.is_empty() {
        c.push_str("; Max-Age=0");
    }
    if tls {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).expect("cookie values are hex")
}

/// The client's address, for the lock-out and the audit log.
pub fn client_address(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".into(), |c| c.0.ip().to_string())
}

/// The open session of the request, if any (whatever its stage).
pub async fn current(parts: &Parts, state: &ConsoleState) -> Result<Option<Session>, ConsoleError> {
    let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(state.accounts.session(&secret, chrono::Utc::now()).await?)
}

/// A signed-in user (password and, where their role needs it, the code) whose role may do
/// `P`. No session: to the login page; a role without `P`: 403.
pub struct Signed<P> {
    pub session: Session,
    _permission: PhantomData<P>,
}

impl<P: Permission + Send + Sync> FromRequestParts<ConsoleState> for Signed<P> {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, ConsoleError> {
        let session = current(parts, state)
            .await?
            .ok_or(ConsoleError::LoginNeeded)?;
        if session.factor_due {
            return Err(ConsoleError::FactorNeeded);
        }
        let role = session.user.role;
        if !allowed(role, P::ACTION) {
            return Err(ConsoleError::Forbidden {
                role: role.as_str(),
                action: P::ACTION.as_str(),
            });
        }
        Ok(Signed {
            session,
            _permission: PhantomData,
        })
    }
}

/// A form with nothing but its CSRF token (logout, «Обработано»).
#[derive(Deserialize)]
pub struct NoFields {}

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

/// Reads an urlencoded form, or says which field is wrong.
pub async fn read_form<F: DeserializeOwned>(req: Request) -> Result<(F, String), ConsoleError> {
    let body = axum::body::to_bytes(req.into_body(), FORM_LIMIT)
        .await
        .map_err(|_| {
            ConsoleError::BadRequest(format!("the form is over {} KiB", FORM_LIMIT / 1024))
        })?;
    let csrf: CsrfField = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ConsoleError::BadRequest(format!("the form: {e}")))?;
    let form: F = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ConsoleError::BadRequest(format!("the form: {e}")))?;
    Ok((form, csrf.csrf))
}

/// A form posted by a signed-in user who may do `P`, with this session's CSRF token.
pub struct Posted<P, F> {
    pub signed: Signed<P>,
    pub form: F,
}

impl<P, F> FromRequest<ConsoleState> for Posted<P, F>
where
    P: Permission + Send + Sync,
    F: DeserializeOwned + Send,
{
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &ConsoleState) -> Result<Self, ConsoleError> {
        let (mut parts, body) = req.into_parts();
        let signed = Signed::<P>::from_request_parts(&mut parts, state).await?;
        let (form, token) = read_form::<F>(Request::from_parts(parts, body)).await?;
        if !signed.session.csrf_ok(&token) {
            return Err(ConsoleError::Csrf);
        }
        Ok(Posted { signed, form })
    }
}
