//! Each role's home page, and the actions on them.

use super::session::{Posted, Signed};
use super::{ConsoleError, ConsoleState};
use crate::callflow::queue::{OperatorState, PauseReason};
use crate::records::access::{allowed, can, Action};
use crate::records::account::{NewUser, User};
use crate::records::role::Role;
use crate::records::tickets::TicketState;
use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

/// The signed-in user, as the page header shows them (name, role, the pages their role
/// opens, logout form).
pub struct Who {
    pub name: String,
    pub role: &'static str,
    pub csrf: String,
    pub nav: Vec<(&'static str, &'static str)>,
}

impl Who {
    pub(super) fn of(s: &crate::desk::accounts::Session) -> Who {
        Who {
            name: s.user.name.clone(),
            role: role_name(s.user.role),
            csrf: s.csrf.clone(),
            nav: nav(s.user.role),
        }
    }
}

/// The console's sections that `role` may open, by the same matrix the server enforces.
fn nav(role: Role) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if role == Role::Operator {
        out.push(("/operator", "Рабочее место"));
    }
    if allowed(role, Action::LiveRead) {
        out.push(("/supervisor", "Очередь"));
    }
    if allowed(role, Action::JournalRead) {
        out.push(("/journal", "Журнал"));
    }
    if allowed(role, Action::StatsRead) {
        out.push(("/stats", "Статистика"));
    }
    if allowed(role, Action::CallbackRead) {
        out.push(("/callbacks", "Обратная связь"));
    }
    if allowed(role, Action::QuickAnswersRead) {
        out.push(("/quick-answers", "Быстрые ответы"));
    }
    if allowed(role, Action::TicketStats) {
        out.push(("/desk", "Заявки"));
    }
    if allowed(role, Action::UsersManage) {
        out.push(("/admin", "Администрирование"));
    }
    out
}

pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Operator => "оператор",
        Role::Supervisor => "руководитель",
        Role::CardDepartment => "отдел банковских карт",
        Role::Security => "служба безопасности",
        Role::Admin => "администратор",
    }
}

fn state_name(s: OperatorState) -> &'static str {
    match s {
        OperatorState::Offline => "не в очереди",
        OperatorState::Available => "свободен",
        OperatorState::Ringing => "звонок",
        OperatorState::Busy => "разговор",
        OperatorState::WrapUp => "обработка",
        OperatorState::Paused => "пауза",
    }
}

pub(super) fn ticket_state_name(s: TicketState) -> &'static str {
    match s {
        TicketState::Registered => "зарегистрирован",
        TicketState::Routed => "направлен",
        TicketState::Inspection => "проверка",
        TicketState::NotConfirmed => "не подтвердился",
        TicketState::Confirmed => "подтвердился",
        TicketState::PoliceContacted => "сообщено в полицию",
        TicketState::DevicesRemoved => "устройства сняты",
        TicketState::Restored => "работа восстановлена",
        TicketState::OperatorNotified => "оператор уведомлён",
        TicketState::Closed => "закрыт",
    }
}

pub(super) fn ticket_kind_name(k: crate::records::atm::TicketKind) -> &'static str {
    match k {
        crate::records::atm::TicketKind::AtmFault => "неисправность банкомата",
        crate::records::atm::TicketKind::AtmSecurity => "безопасность банкомата",
    }
}

/// `m:ss` or `h:mm:ss`.
pub(super) fn duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct Message<'a> {
    pub title: &'a str,
    pub text: &'a str,
    pub user: Option<Who>,
}

/// One operator's line on a page.
pub struct Presence {
    pub extension: String,
    pub name: String,
    pub state: &'static str,
    /// Why, while paused.
    pub reason: Option<&'static str>,
    pub since: String,
    pub registered: bool,
    pub answered: u64,
}

pub(super) async fn presences(state: &ConsoleState, names: &[(String, String)]) -> Vec<Presence> {
    let Some(acd) = &state.acd else {
        return Vec::new();
    };
    acd.snapshot()
        .await
        .operators
        .into_iter()
        .map(|o| Presence {
            name: names
                .iter()
                .find(|(e, _)| *e == o.extension)
                .map_or_else(String::new, |(_, n)| n.clone()),
            state: state_name(o.state),
            reason: o.pause_reason.map(PauseReason::russian),
            since: duration(o.since),
            registered: o.registered,
            answered: o.calls_answered,
            extension: o.extension,
        })
        .collect()
}

/// The configured operators' names, by extension, from the users who are operators.
pub(super) async fn operator_names(
    state: &ConsoleState,
) -> Result<Vec<(String, String)>, ConsoleError> {
    Ok(state
        .accounts
        .users()
        .await?
        .into_iter()
        .filter_map(|u| u.operator.map(|e| (e, u.name)))
        .collect())
}

#[derive(Template)]
#[template(path = "operator.html")]
struct OperatorPage {
    user: Option<Who>,
    extension: String,
    me: Option<Presence>,
    call: Option<super::call::InHand>,
    voicemail: Vec<super::voicemail::Message>,
    quick: Vec<(&'static str, Vec<super::quick::Answer>)>,
    /// The notices and own tickets, rendered (the same part `/operator/inbox` serves).
    inbox: String,
    /// Where this operator's calls ring ([`crate::records::ring::RingAt`]).
    ring_at: &'static str,
}

/// `/operator`: presence, and the voicemail backlog.
pub async fn operator(
    State(state): State<ConsoleState>,
    who: Signed<can::OperatorPresence>,
) -> Result<Response, ConsoleError> {
    let extension = who.session.user.operator.clone().unwrap_or_default();
    let names = vec![(extension.clone(), who.session.user.name.clone())];
    let me = presences(&state, &names)
        .await
        .into_iter()
        .find(|p| p.extension == extension);
    let call = super::call::in_hand(&state, &extension, &who.session.user.name).await?;
    let ring_at = state
        .phones
        .as_ref()
        .map_or(crate::records::ring::RingAt::Phone, |p| {
            p.ring_at(&extension)
        })
        .as_str();
    let inbox = super::inbox::part_of(&state, &extension, &who.session.csrf)
        .await?
        .render()?;
    Ok(Html(
        OperatorPage {
            user: Some(Who::of(&who.session)),
            extension,
            me,
            call,
            voicemail: super::voicemail::backlog(&state).await?,
            quick: super::quick::grouped(&state).await?,
            inbox,
            ring_at,
        }
        .render()?,
    )
    .into_response())
}

#[derive(Deserialize)]
pub struct PresenceForm {
    extension: String,
    action: String,
    /// For a pause: one of [`PauseReason::CHOSEN`].
    #[serde(default)]
    reason: String,
}

/// `POST /operator/presence`: sign in, sign out or pause (with a reason); an operator acts only for their
/// own extension, a supervisor for anyone's.
pub async fn presence(
    State(state): State<ConsoleState>,
    posted: Posted<can::OperatorPresence, PresenceForm>,
) -> Result<Response, ConsoleError> {
    let user = &posted.signed.session.user;
    let f = &posted.form;
    if user.role == Role::Operator && user.operator.as_deref() != Some(f.extension.as_str()) {
        return Err(ConsoleError::Forbidden {
            role: user.role.as_str(),
            action: "act for another operator",
        });
    }
    let acd = state
        .acd
        .as_ref()
        .ok_or_else(|| ConsoleError::BadRequest("the queue is not running".into()))?;
    let done = match f.action.as_str() {
        "sign_in" => acd.sign_in(&f.extension).await,
        "sign_out" => acd.sign_out(&f.extension).await,
        "pause" => {
            let reason = PauseReason::parse(&f.reason).ok_or_else(|| {
                ConsoleError::BadRequest(format!("`reason`: неизвестная причина {:?}", f.reason))
            })?;
            acd.pause(&f.extension, reason).await
        }
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "`action`: unknown {other:?}"
            )))
        }
    };
    if let Err(e) = done {
        return Err(ConsoleError::BadRequest(format!("{e}")));
    }
    let back = if user.role == Role::Operator {
        "/operator"
    } else {
        "/supervisor"
    };
    Ok(Redirect::to(back).into_response())
}

struct UserLine {
    login: String,
    name: String,
    role: &'static str,
    operator: String,
    totp: bool,
    disabled: bool,
}

impl From<User> for UserLine {
    fn from(u: User) -> UserLine {
        UserLine {
            login: u.login,
            name: u.name,
            role: role_name(u.role),
            operator: u.operator.unwrap_or_default(),
            totp: u.totp_enrolled,
            disabled: u.disabled,
        }
    }
}

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage<'a> {
    user: Option<Who>,
    users: Vec<UserLine>,
    roles: Vec<(&'static str, &'static str)>,
    error: Option<&'a str>,
    created: Option<&'a str>,
    /// The new user's enrolment URI, shown once.
    uri: Option<&'a str>,
}

async fn admin_page(
    state: &ConsoleState,
    who: &crate::desk::accounts::Session,
    error: Option<&str>,
    created: Option<&str>,
    uri: Option<&str>,
) -> Result<Response, ConsoleError> {
    let users = state
        .accounts
        .users()
        .await?
        .into_iter()
        .map(UserLine::from)
        .collect();
    let status = if error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    let html = AdminPage {
        user: Some(Who::of(who)),
        users,
        roles: Role::ALL
            .iter()
            .map(|r| (r.as_str(), role_name(*r)))
            .collect(),
        error,
        created,
        uri,
    }
    .render()?;
    Ok((status, Html(html)).into_response())
}

/// `/admin`: the users.
pub async fn admin(
    State(state): State<ConsoleState>,
    who: Signed<can::UsersManage>,
) -> Result<Response, ConsoleError> {
    admin_page(&state, &who.session, None, None, None).await
}

#[derive(Deserialize)]
pub struct NewUserForm {
    login: String,
    name: String,
    role: String,
    #[serde(default)]
    operator: String,
    password: String,
}

/// `POST /admin/users`: a new user; a bad field is shown on the page, named.
pub async fn create_user(
    State(state): State<ConsoleState>,
    posted: Posted<can::UsersManage, NewUserForm>,
) -> Result<Response, ConsoleError> {
    let f = posted.form;
    let session = &posted.signed.session;
    let Some(role) = Role::parse(&f.role) else {
        return admin_page(
            &state,
            session,
            Some("`role`: неизвестная роль"),
            None,
            None,
        )
        .await;
    };
    debug_assert!(allowed(session.user.role, Action::UsersManage));
    let new = NewUser {
        login: f.login.trim().to_string(),
        name: f.name,
        role,
        operator: Some(f.operator.trim().to_string()).filter(|o| !o.is_empty()),
    };
    match state
        .accounts
        .create_user(&new, &f.password, &session.user.login)
        .await
    {
        Ok((u, uri)) => admin_page(&state, session, None, Some(&u.login), uri.as_deref()).await,
        Err(crate::desk::DeskError::Invalid(e)) => {
            admin_page(&state, session, Some(&e.to_string()), None, None).await
        }
        Err(crate::desk::DeskError::Store(crate::store::StoreError::Conflict(m))) => {
            admin_page(&state, session, Some(&m), None, None).await
        }
        Err(e) => Err(e.into()),
    }
}
