//! Callback forms (regulation Table 6.1) in the console: the operator fills one from the
//! call in hand when the question cannot be answered at once, and sends it to the employee
//! who will call back; `/callbacks` lists forms as open, overdue or done, an operator's own
//! only, and takes field 10 from whoever called the customer back.

use super::journal::{input_value, local_input};
use super::pages::Who;
use super::session::{Posted, Signed};
use super::{local_time, ConsoleError, ConsoleState};
use crate::records::access::{allowed, can, Action};
use crate::records::callback::{CallbackForm, CallbackStatus, NewCallbackForm};
use crate::records::journal::CallerStatus;
use crate::records::role::Role;
use crate::store::callback::CallbackFilter;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "callback_form.html")]
struct FormPage {
    user: Option<Who>,
    journal_id: String,
    phone: String,
    caller_name: String,
    /// Field 7's default: an hour from now, in the calendar's zone.
    convenient_at: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct FormQuery {
    journal_id: String,
}

/// `GET /operator/callback`: a new form, fields 1–5 from the call's journal entry if given.
pub async fn form(
    State(state): State<ConsoleState>,
    who: Signed<can::CallbackCreate>,
    Query(q): Query<FormQuery>,
) -> Result<Response, ConsoleError> {
    let entry = match q.journal_id.parse::<i64>() {
        Ok(id) => crate::store::journal::get(&state.records.store, id)
            .await
            .ok(),
        Err(_) => None,
    };
    let page = FormPage {
        user: Some(Who::of(&who.session)),
        journal_id: entry.as_ref().map(|e| e.id.to_string()).unwrap_or_default(),
        phone: entry.as_ref().map(|e| e.phone.clone()).unwrap_or_default(),
        caller_name: entry
            .as_ref()
            .and_then(|e| e.caller_name.clone())
            .unwrap_or_default(),
        convenient_at: input_value(&state, Some(Utc::now() + chrono::Duration::hours(1))),
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
pub struct FormFields {
    #[serde(default)]
    journal_id: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    caller_name: String,
    #[serde(default)]
    caller_status: String,
    question: String,
    convenient_at: String,
    #[serde(default)]
    convenient_note: String,
    #[serde(default)]
    operator_comment: String,
    /// Who calls back; empty keeps the form unsent.
    #[serde(default)]
    assigned_to: String,
}

fn text(v: &str) -> Option<String> {
    Some(v.trim().to_string()).filter(|v| !v.is_empty())
}

impl FormFields {
    fn form(&self, state: &ConsoleState) -> Result<NewCallbackForm, ConsoleError> {
        let bad = ConsoleError::BadRequest;
        let journal_id = match self.journal_id.trim() {
            "" => None,
            j => Some(
                j.parse::<i64>()
                    .map_err(|_| bad("`journal_id`: не число".into()))?,
            ),
        };
        let caller_status = match self.caller_status.as_str() {
            "" => None,
            s => Some(
                CallerStatus::parse(s)
                    .ok_or_else(|| bad(format!("`caller_status`: неизвестный статус {s:?}")))?,
            ),
        };
        let convenient_at = local_input(
            "convenient_at",
            &self.convenient_at,
            state.records.calendar.tz(),
        )?
        .ok_or_else(|| bad("`convenient_at`: укажите удобное время звонка".into()))?;
        let form = NewCallbackForm {
            journal_id,
            called_at: None,
            caller_name: text(&self.caller_name),
            phone: text(&self.phone),
            caller_status,
            question: self.question.trim().to_string(),
            convenient_at,
            convenient_note: text(&self.convenient_note),
            operator_comment: text(&self.operator_comment),
        };
        form.validate().map_err(|e| bad(e.to_string()))?;
        Ok(form)
    }
}

/// `POST /operator/callback`: makes the form (field 8 is the operator's extension) and, if
/// an employee is named, sends it to them in the same step.
pub async fn create(
    State(state): State<ConsoleState>,
    posted: Posted<can::CallbackCreate, FormFields>,
) -> Result<Response, ConsoleError> {
    let form = posted.form.form(&state)?;
    let user = &posted.signed.session.user;
    let operator = user.operator.clone().unwrap_or_else(|| user.login.clone());
    let id = state
        .records
        .create_callback(&form, &operator, &user.login)
        .await?;
    if let Some(to) = text(&posted.form.assigned_to) {
        state.records.send_callback(id, &to, &user.login).await?;
    }
    Ok(Redirect::to(&format!("/callbacks?created={id}")).into_response())
}

/// A form's line in the list.
struct Line {
    id: i64,
    called: String,
    phone: String,
    name: String,
    question: String,
    convenient: String,
    operator: String,
    assigned_to: String,
    /// «ожидает», «просрочена» or «перезвонили …».
    status: String,
    overdue: bool,
    open: bool,
    result: String,
}

fn line(state: &ConsoleState, f: CallbackForm) -> Line {
    let open = f.called_back_at.is_none();
    let status = match (&f.called_back_at, f.overdue) {
        (Some(at), _) => format!(
            "перезвонили {}{}",
            local_time(&state.records, *at),
            f.called_back_by
                .as_ref()
                .map(|b| format!(" ({b})"))
                .unwrap_or_default()
        ),
        (None, true) => "просрочена".into(),
        (None, false) if f.sent_at.is_some() => "передана, ожидает звонка".into(),
        (None, false) => "не передана".into(),
    };
    Line {
        id: f.id,
        called: local_time(&state.records, f.called_at),
        phone: f.phone,
        name: f.caller_name.unwrap_or_default(),
        question: f.question,
        convenient: format!(
            "{}{}",
            local_time(&state.records, f.convenient_at),
            f.convenient_note
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
        operator: f.operator,
        assigned_to: f.assigned_to.unwrap_or_default(),
        status,
        overdue: f.overdue,
        open,
        result: f.result.unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "callbacks.html")]
struct ListPage {
    user: Option<Who>,
    /// The tab shown: `open`, `overdue`, `done` or `` (all).
    status: String,
    /// Whose forms: «Мои формы» for an operator.
    own: bool,
    lines: Vec<Line>,
    created: Option<i64>,
    may_send: bool,
    may_complete: bool,
    may_create: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    status: String,
    created: Option<i64>,
}

/// `GET /callbacks`: forms by state; an operator sees the forms they took (field 8).
pub async fn list(
    State(state): State<ConsoleState>,
    who: Signed<can::CallbackRead>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let status = match q.status.as_str() {
        "" => None,
        "open" => Some(CallbackStatus::Open),
        "overdue" => Some(CallbackStatus::Overdue),
        "done" => Some(CallbackStatus::Done),
        s => {
            return Err(ConsoleError::BadRequest(format!(
                "`status`: неизвестное состояние {s:?}"
            )))
        }
    };
    let user = &who.session.user;
    let own = user.role == Role::Operator;
    let filter = CallbackFilter {
        status,
        operator: if own {
            Some(user.operator.clone().unwrap_or_else(|| user.login.clone()))
        } else {
            None
        },
        limit: 200,
        ..Default::default()
    };
    let lines = crate::store::callback::list(&state.records.store, &filter)
        .await?
        .into_iter()
        .map(|f| line(&state, f))
        .collect();
    let page = ListPage {
        user: Some(Who::of(&who.session)),
        status: q.status,
        own,
        lines,
        created: q.created,
        may_send: allowed(user.role, Action::CallbackSend),
        may_complete: allowed(user.role, Action::CallbackComplete),
        may_create: allowed(user.role, Action::CallbackCreate),
    };
    Ok(Html(page.render()?).into_response())
}

/// An operator acts only on the forms they took; the other roles on any they may.
async fn check_own(
    state: &ConsoleState,
    user: &crate::records::account::User,
    id: i64,
) -> Result<(), ConsoleError> {
    let form = match crate::store::callback::get(&state.records.store, id).await {
        Err(crate::store::StoreError::NotFound { .. }) => {
            return Err(ConsoleError::NotFound(format!(
                "формы обратной связи {id} нет"
            )))
        }
        r => r?,
    };
    let mine = user.operator.as_deref().unwrap_or(&user.login) == form.operator;
    if user.role == Role::Operator && !mine {
        return Err(ConsoleError::Forbidden {
            role: user.role.as_str(),
            action: "act on another operator's callback form",
        });
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct SendFields {
    assigned_to: String,
}

/// `POST /callbacks/{id}/send`: to the employee who will call back.
pub async fn send(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    posted: Posted<can::CallbackSend, SendFields>,
) -> Result<Response, ConsoleError> {
    let user = &posted.signed.session.user;
    check_own(&state, user, id).await?;
    let to = text(&posted.form.assigned_to)
        .ok_or_else(|| ConsoleError::BadRequest("`assigned_to`: кому передать?".into()))?;
    state.records.send_callback(id, &to, &user.login).await?;
    Ok(Redirect::to("/callbacks").into_response())
}

#[derive(Deserialize)]
pub struct CompleteFields {
    #[serde(default)]
    result: String,
}

/// `POST /callbacks/{id}/complete`: field 10, the customer was called back now.
pub async fn complete(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    posted: Posted<can::CallbackComplete, CompleteFields>,
) -> Result<Response, ConsoleError> {
    let user = &posted.signed.session.user;
    check_own(&state, user, id).await?;
    let result = text(&posted.form.result);
    state
        .records
        .complete_callback(id, Utc::now(), result.as_deref(), &user.login)
        .await?;
    Ok(Redirect::to("/callbacks?status=done").into_response())
}

/// A caller's forms not called back yet, for the call in hand: (id, convenient time,
/// question).
pub(super) async fn open_for(
    state: &ConsoleState,
    phone: &str,
) -> Result<Vec<(i64, String, String)>, ConsoleError> {
    let filter = CallbackFilter {
        status: Some(CallbackStatus::Open),
        phone: Some(phone.to_string()),
        limit: 20,
        ..Default::default()
    };
    Ok(crate::store::callback::list(&state.records.store, &filter)
        .await?
        .into_iter()
        .map(|f| {
            (
                f.id,
                local_time(&state.records, f.convenient_at),
                f.question,
            )
        })
        .collect())
}
