//! Quick answers in the console: operators read them (also on their own page), supervisors
//! add, change and remove them.

use super::pages::Who;
use super::session::{NoFields, Posted, Signed};
use super::{local_time, ConsoleError, ConsoleState};
use crate::records::access::{allowed, can, Action};
use crate::records::quick::{QuickAnswerText, Topic};
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

/// An answer as a page shows it.
pub struct Answer {
    pub id: i64,
    pub topic: &'static str,
    pub title: String,
    pub body: String,
    pub updated: String,
}

/// Every answer, grouped by topic (the topics in their fixed order).
pub async fn grouped(
    state: &ConsoleState,
) -> Result<Vec<(&'static str, Vec<Answer>)>, ConsoleError> {
    let all = crate::store::quick::list(&state.records.store).await?;
    Ok(Topic::ALL
        .into_iter()
        .map(|t| {
            let answers = all
                .iter()
                .filter(|a| a.topic == t)
                .map(|a| Answer {
                    id: a.id,
                    topic: t.as_str(),
                    title: a.title.clone(),
                    body: a.body.clone(),
                    updated: format!(
                        "{}, {}",
                        local_time(&state.records, a.updated_at),
                        a.updated_by
                    ),
                })
                .collect();
            (t.russian(), answers)
        })
        .filter(|(_, a): &(&str, Vec<Answer>)| !a.is_empty())
        .collect())
}

#[derive(Template)]
#[template(path = "quick.html")]
struct QuickPage {
    user: Option<Who>,
    groups: Vec<(&'static str, Vec<Answer>)>,
    may_edit: bool,
    topics: Vec<(&'static str, &'static str)>,
}

/// `/quick-answers`.
pub async fn page(
    State(state): State<ConsoleState>,
    who: Signed<can::QuickAnswersRead>,
) -> Result<Response, ConsoleError> {
    let page = QuickPage {
        may_edit: allowed(who.session.user.role, Action::QuickAnswersEdit),
        user: Some(Who::of(&who.session)),
        groups: grouped(&state).await?,
        topics: Topic::ALL
            .iter()
            .map(|t| (t.as_str(), t.russian()))
            .collect(),
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
pub struct AnswerFields {
    topic: String,
    title: String,
    body: String,
}

impl AnswerFields {
    fn text(&self) -> Result<QuickAnswerText, ConsoleError> {
        let topic = Topic::parse(&self.topic).ok_or_else(|| {
            ConsoleError::BadRequest(format!("`topic`: неизвестная тема {:?}", self.topic))
        })?;
        Ok(QuickAnswerText {
            topic,
            title: self.title.clone(),
            body: self.body.clone(),
        })
    }
}

/// `POST /quick-answers`: a new answer.
pub async fn create(
    State(state): State<ConsoleState>,
    posted: Posted<can::QuickAnswersEdit, AnswerFields>,
) -> Result<Response, ConsoleError> {
    let text = posted.form.text()?;
    state
        .records
        .add_quick_answer(&text, &posted.signed.session.user.login)
        .await?;
    Ok(Redirect::to("/quick-answers").into_response())
}

/// `POST /quick-answers/{id}`: an answer's new text.
pub async fn update(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    posted: Posted<can::QuickAnswersEdit, AnswerFields>,
) -> Result<Response, ConsoleError> {
    let text = posted.form.text()?;
    state
        .records
        .change_quick_answer(id, &text, &posted.signed.session.user.login)
        .await?;
    Ok(Redirect::to(&format!("/quick-answers#qa-{id}")).into_response())
}

/// `POST /quick-answers/{id}/delete`.
pub async fn delete(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    posted: Posted<can::QuickAnswersEdit, NoFields>,
) -> Result<Response, ConsoleError> {
    state
        .records
        .remove_quick_answer(id, &posted.signed.session.user.login)
        .await?;
    Ok(Redirect::to("/quick-answers").into_response())
}
