//! The operator's call in hand: while their phone rings and while they talk, the page shows
//! the caller's number, the script's greeting for the time of day (SPEC §4a), the journal
//! entry made for the call, the caller's earlier appeals, open tickets and callback forms;
//! from it, the callback form and the ATM ticket form with the script hint of the chosen
//! category (§6.7.4).

use super::pages::Who;
use super::session::{Posted, Signed};
use super::{local_time, ConsoleError, ConsoleState};
use crate::live::LiveEvent;
use crate::records::access::can;
use crate::records::atm::{AtmCategory, TicketKind};
use crate::records::journal::JournalFilter;
use crate::records::tickets::{script_hint, NewTicket, TicketState, COMPLAINT_HINT};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::{Timelike, Utc};
use serde::Deserialize;

/// An earlier appeal of the same number.
pub struct Appeal {
    pub(super) id: i64,
    pub(super) when: String,
    pub(super) result: &'static str,
    pub(super) content: String,
}

/// The call on the operator's screen.
pub struct InHand {
    pub(super) phone: String,
    /// «Звонок» while it rings, «Разговор» once answered.
    pub(super) stage: &'static str,
    /// Answered: the hold timer is offered.
    pub(super) connected: bool,
    /// Names this call in the browser's session storage (the hold timer outlives the part's
    /// refreshes).
    pub(super) key: String,
    pub(super) since: String,
    pub(super) greeting: String,
    pub(super) journal_id: Option<i64>,
    pub(super) earlier: Vec<Appeal>,
    /// Open tickets for this number: (number, state).
    pub(super) tickets: Vec<(String, &'static str)>,
    /// This number's callback forms not called back yet: (id, when, question).
    pub(super) callbacks: Vec<(i64, String, String)>,
}

/// «Доброе утро/день/вечер!» by the call centre's local hour.
pub fn greeting(hour: u32) -> &'static str {
    match hour {
        4..=11 => "Доброе утро!",
        12..=17 => "Добрый день!",
        _ => "Добрый вечер!",
    }
}

/// The call of `extension` that rings or is answered now, if any.
pub async fn in_hand(
    state: &ConsoleState,
    extension: &str,
    name: &str,
) -> Result<Option<InHand>, ConsoleError> {
    let calls = super::live_calls(state).await;
    let Some(call) = calls.into_iter().find(|c| {
        c.operator.as_deref() == Some(extension) && matches!(c.stage, "ringing" | "connected")
    }) else {
        return Ok(None);
    };
    let store = &state.records.store;
    let journal_id = crate::store::journal::id_by_call_id(store, &call.journal_key).await?;
    let filter = JournalFilter {
        phone: Some(call.phone.clone()),
        ..Default::default()
    };
    let (entries, _) = crate::store::journal::list(store, &filter, None, 6).await?;
    let earlier = entries
        .into_iter()
        .filter(|e| Some(e.id) != journal_id)
        .take(5)
        .map(|e| Appeal {
            id: e.id,
            when: local_time(&state.records, e.arrived_at),
            result: e.disposition.russian(),
            content: e.content.unwrap_or_default(),
        })
        .collect();
    let open = crate::store::tickets::TicketFilter {
        open: true,
        limit: 500,
        ..Default::default()
    };
    let tickets = crate::store::tickets::list(store, &open)
        .await?
        .into_iter()
        .filter(|t| t.phone.as_deref() == Some(call.phone.as_str()))
        .map(|t| (t.number, super::pages::ticket_state_name(t.state)))
        .collect();
    let now = Utc::now();
    let hour = now.with_timezone(&state.records.calendar.tz()).hour();
    Ok(Some(InHand {
        stage: if call.stage == "ringing" {
            "Звонок"
        } else {
            "Разговор"
        },
        connected: call.stage == "connected",
        key: format!("{}-{}", call.call, call.arrived_at.timestamp_millis()),
        since: super::pages::duration((now - call.arrived_at).to_std().unwrap_or_default()),
        greeting: format!("{} {}, {}!", greeting(hour), state.bank_name, name),
        journal_id,
        earlier,
        tickets,
        callbacks: super::callbacks::open_for(state, &call.phone).await?,
        phone: call.phone,
    }))
}

#[derive(Template)]
#[template(path = "call.html")]
struct CallPart {
    call: Option<InHand>,
}

/// `/operator/call`: the call in hand alone, for the operator's page to put in place.
pub async fn part(
    State(state): State<ConsoleState>,
    who: Signed<can::OperatorPresence>,
) -> Result<Response, ConsoleError> {
    let user = &who.session.user;
    let ext = user.operator.clone().unwrap_or_default();
    let call = in_hand(&state, &ext, &user.name).await?;
    Ok(Html(CallPart { call }.render()?).into_response())
}

/// `/operator/events`: what changes the operator's page (their calls, their state, their
/// tickets), as server-sent events.
pub async fn events(
    State(state): State<ConsoleState>,
    who: Signed<can::OperatorPresence>,
) -> Result<Response, ConsoleError> {
    let ext = who.session.user.operator.clone();
    let keep = move |ev: &LiveEvent| match ev {
        LiveEvent::CallStage { operator, .. } => operator.is_some() && *operator == ext,
        LiveEvent::Operator { extension, .. } => Some(extension) == ext.as_ref(),
        LiveEvent::Ticket { operator, .. } => operator.is_some() && *operator == ext,
        // Their call's end shows as their state changing (busy → wrap-up or free).
        _ => false,
    };
    super::feed(&state, keep)
}

/// A category as the form offers it, with its hint.
struct CategoryOption {
    code: &'static str,
    name: &'static str,
    hint: &'static str,
}

#[derive(Template)]
#[template(path = "ticket_form.html")]
struct TicketForm {
    user: Option<Who>,
    journal_id: String,
    phone: String,
    /// Prefilled from a voicemail: the suggested category, its hint, and the transcript.
    category: String,
    hint: &'static str,
    description: String,
    kinds: Vec<(&'static str, Vec<CategoryOption>)>,
    atms: Vec<(String, String)>,
    complaint_hint: &'static str,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TicketFormQuery {
    journal_id: String,
    /// A voicemail whose suggestion the ticket follows: its call, number, category and
    /// transcript fill the form.
    voicemail_id: String,
}

/// `GET /operator/ticket`: the ATM ticket form, for the call's journal entry or a
/// voicemail's suggestion if given.
pub async fn ticket_form(
    State(state): State<ConsoleState>,
    who: Signed<can::TicketCreate>,
    Query(mut q): Query<TicketFormQuery>,
) -> Result<Response, ConsoleError> {
    let store = &state.records.store;
    let (mut category, mut description) = (None, String::new());
    if let Ok(id) = q.voicemail_id.parse::<i64>() {
        let vm = crate::store::voicemail::get(store, id)
            .await
            .map_err(|_| ConsoleError::NotFound(format!("нет сообщения {id}")))?;
        q.journal_id = vm.journal_id.to_string();
        category = vm.suggestion.and_then(|s| s.category);
        description = vm.transcript.unwrap_or_default();
    }
    let phone = match q.journal_id.parse::<i64>() {
        Ok(id) => crate::store::journal::get(store, id)
            .await
            .map(|e| e.phone)
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    let atms = crate::store::tickets::list_atms(store)
        .await?
        .into_iter()
        .map(|a| (a.id, a.address))
        .collect();
    let kinds = TicketKind::ALL
        .iter()
        .map(|k| {
            (
                k.name_ru(),
                k.categories()
                    .map(|c| CategoryOption {
                        code: c.code(),
                        name: c.name_ru(),
                        hint: script_hint(c).unwrap_or(""),
                    })
                    .collect(),
            )
        })
        .collect();
    let page = TicketForm {
        user: Some(Who::of(&who.session)),
        journal_id: q.journal_id,
        phone,
        category: category.map(|c| c.code().to_string()).unwrap_or_default(),
        hint: category.and_then(script_hint).unwrap_or(""),
        description,
        kinds,
        atms,
        complaint_hint: COMPLAINT_HINT,
    };
    Ok(Html(page.render()?).into_response())
}

#[derive(Deserialize)]
pub struct TicketFields {
    category: String,
    atm_id: String,
    #[serde(default)]
    journal_id: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    description: String,
}

#[derive(Template)]
#[template(path = "ticket_registered.html")]
struct Registered {
    user: Option<Who>,
    number: String,
    hint: &'static str,
}

/// `POST /operator/ticket`: registers the ticket and sends it to its departments; the page
/// gives its number and, again, what to tell the caller.
pub async fn register_ticket(
    State(state): State<ConsoleState>,
    posted: Posted<can::TicketCreate, TicketFields>,
) -> Result<Response, ConsoleError> {
    let f = &posted.form;
    let bad = |m: String| ConsoleError::BadRequest(m);
    let category = AtmCategory::parse(&f.category).ok_or_else(|| {
        bad(format!(
            "`category`: неизвестная категория {:?}",
            f.category
        ))
    })?;
    let journal_id = match f.journal_id.trim() {
        "" => None,
        j => Some(
            j.parse::<i64>()
                .map_err(|_| bad("`journal_id`: не число".into()))?,
        ),
    };
    let new = NewTicket {
        kind: category.kind(),
        category,
        atm_id: f.atm_id.trim().to_string(),
        journal_id,
        phone: Some(f.phone.trim().to_string()).filter(|p| !p.is_empty()),
        caller_name: None,
        description: f.description.trim().to_string(),
    };
    let user = &posted.signed.session.user;
    let done = state
        .records
        .register_ticket(&new, user.operator.as_deref(), user.role, &user.login)
        .await?;
    // The operator registers and sends in one step (§6.7.4): the departments get it now.
    let caller = super::caller(user);
    let routed = state
        .records
        .transition_ticket(
            done.ticket.id,
            TicketState::Routed,
            None,
            caller,
            Utc::now(),
        )
        .await?;
    if let Some(live) = &state.live {
        let _ = live.events.send(LiveEvent::ticket(
            &routed.ticket,
            done.suspended.then_some("suspended"),
        ));
    }
    let page = Registered {
        user: Some(Who::of(&posted.signed.session)),
        number: routed.ticket.number,
        hint: script_hint(category).unwrap_or(""),
    };
    Ok(Html(page.render()?).into_response())
}

#[cfg(test)]
mod tests {
    use super::greeting;

    #[test]
    fn the_greeting_follows_the_hour() {
        assert_eq!(greeting(8), "Доброе утро!");
        assert_eq!(greeting(12), "Добрый день!");
        assert_eq!(greeting(19), "Добрый вечер!");
        assert_eq!(greeting(2), "Добрый вечер!");
    }
}
