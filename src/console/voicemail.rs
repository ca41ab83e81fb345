//! The voicemail backlog on the operator's page: each message with its player, transcript
//! and the classifier's suggestion, and «Обработано».

use super::session::{NoFields, Posted, Signed};
use super::{local_time, ConsoleError, ConsoleState};
use crate::records::access::can;
use crate::records::voicemail::{SuggestedKind, Voicemail, VoicemailStatus};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Redirect, Response};

/// A message as the page lists it.
pub struct Message {
    pub id: i64,
    pub phone: String,
    pub arrived: String,
    pub duration: String,
    pub deadline: String,
    pub overdue: bool,
    pub after_hours: bool,
    pub transcript: Option<String>,
    pub suggestion: Option<String>,
    /// The suggestion is an ATM ticket: one click opens its form, prefilled.
    pub ticket: bool,
}

fn suggestion(v: &Voicemail) -> Option<String> {
    let s = v.suggestion.as_ref()?;
    let kind = match s.kind {
        SuggestedKind::AtmFault => "неисправность банкомата",
        SuggestedKind::AtmSecurity => "безопасность банкомата",
        SuggestedKind::Other => return None,
    };
    Some(match &s.category {
        Some(c) => format!("{kind}: {}", c.name_ru()),
        None => kind.to_string(),
    })
}

/// The open messages, overdue first, then newest first.
pub async fn backlog(state: &ConsoleState) -> Result<Vec<Message>, ConsoleError> {
    let mut open =
        crate::store::voicemail::list(&state.records.store, Some(VoicemailStatus::Open), None, 200)
            .await?;
    open.sort_by(|a, b| b.overdue.cmp(&a.overdue).then(b.id.cmp(&a.id)));
    Ok(open
        .into_iter()
        .map(|v| Message {
            suggestion: suggestion(&v),
            ticket: v
                .suggestion
                .as_ref()
                .is_some_and(|s| s.kind != SuggestedKind::Other),
            id: v.id,
            arrived: local_time(&state.records, v.arrived_at),
            duration: format!("{:.0} с", v.duration_s),
            deadline: local_time(&state.records, v.deadline_at),
            overdue: v.overdue,
            after_hours: v.after_hours,
            transcript: v.transcript,
            phone: v.phone,
        })
        .collect())
}

/// `GET /voicemail/{id}/audio`: the message's WAV, seekable (`Range`).
pub async fn audio(
    State(state): State<ConsoleState>,
    _who: Signed<can::VoicemailRead>,
    Path(id): Path<i64>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let vm = crate::store::voicemail::get(&state.records.store, id)
        .await
        .map_err(|_| ConsoleError::NotFound(format!("нет сообщения {id}")))?;
    let held = state
        .records
        .locate(&state.data_dir, &vm.file, vm.journal_id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("запись сообщения {id} не найдена")))?;
    Ok(crate::web::audio(held, req, None).await)
}

/// `POST /voicemail/{id}/process`: «Обработано», by the signed-in user.
pub async fn process(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    posted: Posted<can::VoicemailProcess, NoFields>,
) -> Result<Response, ConsoleError> {
    let who = &posted.signed.session.user.login;
    state.records.mark_voicemail_processed(id, who).await?;
    Ok(Redirect::to("/operator#voicemail").into_response())
}
