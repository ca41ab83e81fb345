//! Logging in and out: the password, then (for the roles that need it) the TOTP code or a
//! recovery code, with enrolment by QR code at the first login.

use super::session::{
    self, client_address, cookie, home, read_form, set_cookie, NoFields, LOGIN_COOKIE,
    SESSION_COOKIE,
};
use super::{ConsoleError, ConsoleState};
use crate::desk::accounts::{FactorOutcome, LoginOutcome, Session};
use crate::records::token::{random_hex, same_secret};
use askama::Template;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    login: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "code.html")]
struct CodePage<'a> {
    csrf: &'a str,
    /// At the first login: the QR code (SVG) and the secret as text.
    qr: Option<String>,
    secret: Option<String>,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "recovery.html")]
struct RecoveryPage<'a> {
    codes: &'a [String],
    next: &'a str,
}

/// `/`: the user's home, or the login page.
pub async fn root(
    State(state): State<ConsoleState>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (parts, _) = req.into_parts();
    home_or_login(&state, &parts).await
}

async fn home_or_login(state: &ConsoleState, parts: &Parts) -> Result<Response, ConsoleError> {
    Ok(match session::current(parts, state).await? {
        Some(s) if s.factor_due => Redirect::to("/login/code").into_response(),
        Some(s) => Redirect::to(home(s.user.role)).into_response(),
        None => Redirect::to("/login").into_response(),
    })
}

fn login_page(
    state: &ConsoleState,
    status: StatusCode,
    login: &str,
    error: Option<&str>,
) -> Result<Response, ConsoleError> {
    let token = random_hex();
    let html = LoginPage {
        csrf: &token,
        login,
        error,
    }
    .render()?;
    Ok((
        status,
        [(
            header::SET_COOKIE,
            set_cookie(LOGIN_COOKIE, &token, state.tls),
        )],
        Html(html),
    )
        .into_response())
}

/// `GET /login`.
pub async fn form(State(state): State<ConsoleState>) -> Result<Response, ConsoleError> {
    login_page(&state, StatusCode::OK, "", None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
}

/// `POST /login`.
pub async fn submit(
    State(state): State<ConsoleState>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (parts, body) = req.into_parts();
    let address = client_address(&parts);
    let expected = cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default();
    let (f, token) = read_form::<LoginForm>(Request::from_parts(parts, body)).await?;
    if expected.is_empty() || !same_secret(&expected, &token) {
        return Err(ConsoleError::Csrf);
    }
    let now = chrono::Utc::now();
    match state
        .accounts
        .login(&f.login, &f.password, &address, now)
        .await?
    {
        LoginOutcome::Refused => login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            &f.login,
            Some("Неверный логин или пароль."),
        ),
        LoginOutcome::Locked => login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            &f.login,
            Some("Слишком много неудачных попыток входа. Вход временно заблокирован."),
        ),
        LoginOutcome::Opened(o) => {
            let next = if o.factor_due {
                "/login/code"
            } else {
                home(o.user.role)
            };
            let mut res = Redirect::to(next).into_response();
            let h = res.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &o.secret, state.tls),
            );
            h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", state.tls));
            Ok(res)
        }
    }
}

/// A session whose code is still due.
async fn pending(parts: &Parts, state: &ConsoleState) -> Result<Session, ConsoleError> {
    let s = session::current(parts, state)
        .await?
        .ok_or(ConsoleError::LoginNeeded)?;
    if !s.factor_due {
        // Already through: nothing to do here.
        return Err(ConsoleError::LoginNeeded);
    }
    Ok(s)
}

async fn code_page(
    state: &ConsoleState,
    s: &Session,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, ConsoleError> {
    let (qr, secret) = match state.accounts.enrolment(&s.user).await? {
        Some((uri, secret)) => {
            let svg = qrcode::QrCode::new(uri.as_bytes())
                .map_err(|e| ConsoleError::BadRequest(format!("QR code: {e}")))?
                .render::<qrcode::render::svg::Color>()
                .min_dimensions(200, 200)
                .build();
            (Some(svg), Some(secret))
        }
        None => (None, None),
    };
    let html = CodePage {
        csrf: &s.csrf,
        qr,
        secret,
        error,
    }
    .render()?;
    Ok((status, Html(html)).into_response())
}

/// `GET /login/code`.
pub async fn code_form(
    State(state): State<ConsoleState>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (parts, _) = req.into_parts();
    let s = match pending(&parts, &state).await {
        Ok(s) => s,
        Err(_) => return home_or_login(&state, &parts).await,
    };
    code_page(&state, &s, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code: String,
}

/// `POST /login/code`.
pub async fn code_submit(
    State(state): State<ConsoleState>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (parts, body) = req.into_parts();
    let s = pending(&parts, &state).await?;
    let address = client_address(&parts);
    let (f, token) = read_form::<CodeForm>(Request::from_parts(parts, body)).await?;
    if !s.csrf_ok(&token) {
        return Err(ConsoleError::Csrf);
    }
    match state
        .accounts
        .second_factor(&s, &f.code, &address, chrono::Utc::now())
        .await?
    {
        FactorOutcome::Refused => {
            code_page(&state, &s, StatusCode::UNAUTHORIZED, Some("Неверный код.")).await
        }
        FactorOutcome::Locked => {
            code_page(
                &state,
                &s,
                StatusCode::TOO_MANY_REQUESTS,
                Some("Слишком много неудачных попыток. Вход временно заблокирован."),
            )
            .await
        }
        FactorOutcome::Passed {
            secret,
            recovery_codes,
        } => {
            let next = home(s.user.role);
            let cookie = set_cookie(SESSION_COOKIE, &secret, state.tls);
            if recovery_codes.is_empty() {
                let mut res = Redirect::to(next).into_response();
                res.headers_mut().append(header::SET_COOKIE, cookie);
                return Ok(res);
            }
            let html = RecoveryPage {
                codes: &recovery_codes,
                next,
            }
            .render()?;
            Ok(([(header::SET_COOKIE, cookie)], Html(html)).into_response())
        }
    }
}

/// `POST /logout`: ends the session (whatever its stage) and clears the cookie.
pub async fn logout(
    State(state): State<ConsoleState>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (parts, body) = req.into_parts();
    let Some(s) = session::current(&parts, &state).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let (_, token) = read_form::<NoFields>(Request::from_parts(parts, body)).await?;
    if !s.csrf_ok(&token) {
        return Err(ConsoleError::Csrf);
    }
    state.accounts.logout(&s, chrono::Utc::now()).await?;
    let mut res = Redirect::to("/login").into_response();
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", state.tls),
    );
    Ok(res)
}
