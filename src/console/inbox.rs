//! The operator's notices and own tickets: a ticket's restoration arrives live (the
//! operator's feed) and stays in the inbox until read, so an operator who was away sees it
//! at the next login; beside it, the tickets they registered and where each stands.

use super::session::{NoFields, Posted, Signed};
use super::{local_time, ConsoleError, ConsoleState};
use crate::records::access::can;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;

pub struct Notice {
    pub id: i64,
    pub text: String,
    pub when: String,
    pub unread: bool,
}

pub struct OwnTicket {
    pub number: String,
    pub atm: String,
    pub state: &'static str,
    pub registered: String,
}

#[derive(Template)]
#[template(path = "inbox.html")]
pub struct InboxPart {
    pub notices: Vec<Notice>,
    pub tickets: Vec<OwnTicket>,
    pub csrf: String,
}

pub async fn part_of(
    state: &ConsoleState,
    extension: &str,
    csrf: &str,
) -> Result<InboxPart, ConsoleError> {
    let store = &state.records.store;
    let notices = crate::store::inbox::list(store, extension, 20)
        .await?
        .into_iter()
        .map(|n| Notice {
            id: n.id,
            text: n.text,
            when: local_time(&state.records, n.created_at),
            unread: n.read_at.is_none(),
        })
        .collect();
    let filter = crate::store::tickets::TicketFilter {
        operator: Some(extension.to_string()),
        limit: 20,
        ..Default::default()
    };
    let tickets = crate::store::tickets::list(store, &filter)
        .await?
        .into_iter()
        .map(|t| OwnTicket {
            number: t.number,
            atm: format!("{} — {}", t.atm_id, t.atm_address),
            state: super::pages::ticket_state_name(t.state),
            registered: local_time(&state.records, t.created_at),
        })
        .collect();
    Ok(InboxPart {
        notices,
        tickets,
        csrf: csrf.to_string(),
    })
}

/// `/operator/inbox`: the part alone, for the page's live refresh.
pub async fn part(
    State(state): State<ConsoleState>,
    who: Signed<can::OperatorPresence>,
) -> Result<Response, ConsoleError> {
    let ext = who.session.user.operator.clone().unwrap_or_default();
    Ok(Html(part_of(&state, &ext, &who.session.csrf).await?.render()?).into_response())
}

/// `POST /operator/inbox/{id}/read`: «Прочитано», for the operator's own notice only.
pub async fn read(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    posted: Posted<can::OperatorPresence, NoFields>,
) -> Result<Response, ConsoleError> {
    let ext = posted
        .signed
        .session
        .user
        .operator
        .clone()
        .unwrap_or_default();
    match crate::store::inbox::mark_read(&state.records.store, &ext, id, Utc::now()).await {
        Err(crate::store::StoreError::NotFound { .. }) => {
            Err(ConsoleError::NotFound(format!("уведомления {id} нет")))
        }
        r => Ok(r.map(|()| Redirect::to("/operator#inbox").into_response())?),
    }
}
