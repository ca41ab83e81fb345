//! The journal for supervisors: the filtered list in pages, an entry's detail (every
//! Appendix 6 column, the recording, the voicemail, the tickets, the audit trail), editing
//! the columns people fill in, and «Экспорт CSV» for Excel in the Russian locale.
//!
//! Call recordings are heard here: each request that starts playing or downloading one is
//! written to the audit log (who, which recording, when). The browser's audio element also
//! asks for later byte ranges while it plays; those are the same listen and are not logged
//! again.

use super::pages::Who;
use super::session::{Posted, Signed};
use super::{local_time, ConsoleError, ConsoleState};
use crate::desk::export::Separator;
use crate::desk::files::Held;
use crate::desk::DeskError;
use crate::records::access::{can, may_hear_recording};
use crate::records::journal::{
    AppealType, CallerStatus, Cursor, Disposition, Entry, EntryPatch, JournalFilter,
};
use crate::records::tickets::Ticket;
use crate::store::audit::AuditEntry;
use crate::store::StoreError;
use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Entries on a page.
const PAGE: usize = 50;

/// The filter form, as the query string carries it (every field may be empty).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Filters {
    from: String,
    to: String,
    operator: String,
    disposition: String,
    phone: String,
    q: String,
    repeat: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    cursor: String,
}

impl Filters {
    fn filter(&self, state: &ConsoleState) -> Result<JournalFilter, ConsoleError> {
        let tz = state.records.calendar.tz();
        let text = |v: &str| Some(v.trim().to_string()).filter(|v| !v.is_empty());
        let disposition = match self.disposition.as_str() {
            "" => None,
            d => Some(Disposition::parse(d).ok_or_else(|| {
                ConsoleError::BadRequest(format!("`disposition`: неизвестный результат {d:?}"))
            })?),
        };
        Ok(JournalFilter {
            from: day_start("from", &self.from, tz, 0)?,
            // The last day is included: up to the start of the next.
            to: day_start("to", &self.to, tz, 1)?,
            operator: text(&self.operator),
            disposition,
            phone: text(&self.phone),
            text: text(&self.q),
            repeat: (self.repeat == "1").then_some(true),
        })
    }

    /// The query string of these filters (without the page), for links.
    fn query(&self) -> String {
        let mut f = self.clone();
        f.cursor.clear();
        serde_urlencoded::to_string(&f).unwrap_or_default()
    }
}

/// Local midnight of `yyyy-mm-dd` plus `days`, in the calendar's zone; empty is `None`.
pub(super) fn day_start(
    field: &str,
    v: &str,
    tz: chrono_tz::Tz,
    days: u64,
) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    let bad = || ConsoleError::BadRequest(format!("`{field}`: дата в виде гггг-мм-дд, а не {v:?}"));
    let day = NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
        .map_err(|_| bad())?
        .checked_add_days(chrono::Days::new(days))
        .ok_or_else(bad)?;
    let local = tz
        .from_local_datetime(&day.and_hms_opt(0, 0, 0).expect("midnight"))
        .earliest()
        .ok_or_else(bad)?;
    Ok(Some(local.with_timezone(&Utc)))
}

/// `yyyy-mm-ddThh:mm` (an `<input type="datetime-local">`) in the calendar's zone.
pub(super) fn local_input(
    field: &str,
    v: &str,
    tz: chrono_tz::Tz,
) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    if v.trim().is_empty() {
        return Ok(None);
    }
    let bad = || {
        ConsoleError::BadRequest(format!(
            "`{field}`: дата и время в виде гггг-мм-ддTчч:мм, а не {v:?}"
        ))
    };
    let t = NaiveDateTime::parse_from_str(v.trim(), "%Y-%m-%dT%H:%M").map_err(|_| bad())?;
    let local = tz.from_local_datetime(&t).earliest().ok_or_else(bad)?;
    Ok(Some(local.with_timezone(&Utc)))
}

/// The value of an `<input type="datetime-local">` for `t`.
pub(super) fn input_value(state: &ConsoleState, t: Option<DateTime<Utc>>) -> String {
    t.map(|t| {
        t.with_timezone(&state.records.calendar.tz())
            .format("%Y-%m-%dT%H:%M")
            .to_string()
    })
    .unwrap_or_default()
}

/// An entry's line in the list.
struct Line {
    id: i64,
    number: String,
    arrived: String,
    phone: String,
    name: String,
    result: &'static str,
    operator: String,
    wait: String,
    content: String,
    repeat: String,
}

fn line(state: &ConsoleState, e: Entry) -> Line {
    let mut content = e.content.unwrap_or_default();
    if let Some((cut, _)) = content.char_indices().nth(80) {
        content.truncate(cut);
        content.push('…');
    }
    Line {
        id: e.id,
        number: format!("{}/{}", e.seq, e.year),
        arrived: local_time(&state.records, e.arrived_at),
        phone: e.phone,
        name: e.caller_name.unwrap_or_default(),
        result: e.disposition.russian(),
        operator: e.operator.unwrap_or_default(),
        wait: e.wait_s.map(|w| format!("{w:.0} с")).unwrap_or_default(),
        content,
        repeat: e
            .repeat_of
            .map(|r| format!("{}/{}", r.seq, r.year))
            .unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "journal.html")]
struct JournalPage {
    user: Option<Who>,
    filters: Filters,
    dispositions: Vec<(&'static str, &'static str)>,
    lines: Vec<Line>,
    /// The query string of the filters, for the export and the next page.
    query: String,
    next: Option<String>,
    may_export: bool,
}

/// `GET /journal`: the filtered journal, newest first, a page at a time.
pub async fn list(
    State(state): State<ConsoleState>,
    who: Signed<can::JournalRead>,
    Query(filters): Query<Filters>,
) -> Result<Response, ConsoleError> {
    let filter = filters.filter(&state)?;
    let cursor = match filters.cursor.as_str() {
        "" => None,
        c => Some(Cursor::decode(c).map_err(|e| ConsoleError::BadRequest(e.to_string()))?),
    };
    let (entries, next) =
        crate::store::journal::list(&state.records.store, &filter, cursor, PAGE).await?;
    let role = who.session.user.role;
    Ok(Html(
        JournalPage {
            user: Some(Who::of(&who.session)),
            query: filters.query(),
            dispositions: Disposition::ALL
                .iter()
                .map(|d| (d.as_str(), d.russian()))
                .collect(),
            lines: entries.into_iter().map(|e| line(&state, e)).collect(),
            next: next.map(|c| c.encode()),
            may_export: crate::records::access::allowed(
                role,
                crate::records::access::Action::JournalExport,
            ),
            filters,
        }
        .render()?,
    )
    .into_response())
}

#[derive(Deserialize)]
pub struct ExportQuery {
    #[serde(flatten)]
    filters: Filters,
    #[serde(default)]
    sep: String,
}

/// `GET /journal/export.csv`: the filtered journal as CSV, `;`-separated unless `sep=comma`.
pub async fn export(
    State(state): State<ConsoleState>,
    _who: Signed<can::JournalExport>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ConsoleError> {
    let filter = q.filters.filter(&state)?;
    let sep = match q.sep.as_str() {
        "" => Separator::Semicolon,
        s => Separator::parse(s)
            .ok_or_else(|| ConsoleError::BadRequest("`sep`: `semicolon` или `comma`".into()))?,
    };
    let rx = state.records.journal_csv(filter, sep);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let name = format!(
        "attachment; filename=\"journal-{}.csv\"",
        Utc::now()
            .with_timezone(&state.records.calendar.tz())
            .format("%Y-%m-%d")
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&name).expect("ASCII"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// A ticket registered on the call.
struct TicketLine {
    number: String,
    kind: &'static str,
    state: &'static str,
}

/// One line of the audit trail.
struct AuditLine {
    at: String,
    actor: String,
    action: String,
    field: String,
    old: String,
    new: String,
}

#[derive(Template)]
#[template(path = "journal_entry.html")]
struct EntryPage {
    user: Option<Who>,
    e: Entry,
    arrived: String,
    answered: String,
    ended: String,
    callback: String,
    forwarded: String,
    done: String,
    /// The form's current values.
    callback_input: String,
    forwarded_input: String,
    done_input: String,
    statuses: Vec<(&'static str, &'static str)>,
    appeal_types: Vec<(&'static str, &'static str)>,
    tickets: Vec<TicketLine>,
    audit: Vec<AuditLine>,
    may_edit: bool,
    may_hear: bool,
    may_hear_voicemail: bool,
}

fn time_text(state: &ConsoleState, t: Option<DateTime<Utc>>) -> String {
    t.map(|t| local_time(&state.records, t)).unwrap_or_default()
}

async fn tickets_on(state: &ConsoleState, id: i64) -> Result<Vec<Ticket>, ConsoleError> {
    let filter = crate::store::tickets::TicketFilter {
        journal_id: Some(id),
        limit: 100,
        ..Default::default()
    };
    Ok(crate::store::tickets::list(&state.records.store, &filter).await?)
}

async fn entry(state: &ConsoleState, id: i64) -> Result<Entry, ConsoleError> {
    crate::store::journal::get(&state.records.store, id)
        .await
        .map_err(|_| ConsoleError::NotFound(format!("нет записи журнала {id}")))
}

/// `GET /journal/{id}`: the entry in full.
pub async fn show(
    State(state): State<ConsoleState>,
    who: Signed<can::JournalRead>,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    use crate::records::access::{allowed, Action};
    let e = entry(&state, id).await?;
    let tickets = tickets_on(&state, id).await?;
    let role = who.session.user.role;
    let kinds: Vec<_> = tickets.iter().map(|t| t.kind).collect();
    let audit = crate::store::audit::history(&state.records.store, "journal", id).await?;
    let page = EntryPage {
        user: Some(Who::of(&who.session)),
        arrived: local_time(&state.records, e.arrived_at),
        answered: time_text(&state, e.answered_at),
        ended: time_text(&state, e.ended_at),
        callback: time_text(&state, e.callback_at),
        forwarded: time_text(&state, e.forwarded_at),
        done: time_text(&state, e.done_at),
        callback_input: input_value(&state, e.callback_at),
        forwarded_input: input_value(&state, e.forwarded_at),
        done_input: input_value(&state, e.done_at),
        statuses: vec![
            (CallerStatus::Individual.as_str(), "ФЛ"),
            (CallerStatus::Legal.as_str(), "ЮЛ"),
        ],
        appeal_types: AppealType::ALL
            .iter()
            .map(|a| (a.as_str(), a.russian()))
            .collect(),
        tickets: tickets
            .iter()
            .map(|t| TicketLine {
                number: t.number.clone(),
                kind: super::pages::ticket_kind_name(t.kind),
                state: super::pages::ticket_state_name(t.state),
            })
            .collect(),
        audit: audit.into_iter().map(|a| audit_line(&state, a)).collect(),
        may_edit: allowed(role, Action::JournalEdit),
        may_hear: e.recording.is_some()
            && allowed(role, Action::RecordingListen)
            && may_hear_recording(role, &kinds),
        may_hear_voicemail: allowed(role, Action::VoicemailRead),
        e,
    };
    Ok(Html(page.render()?).into_response())
}

fn audit_line(state: &ConsoleState, a: AuditEntry) -> AuditLine {
    AuditLine {
        at: local_time(&state.records, a.at),
        actor: a.actor,
        action: a.action,
        field: a.field.unwrap_or_default(),
        old: a.old_value.unwrap_or_default(),
        new: a.new_value.unwrap_or_default(),
    }
}

/// The edit form: every field is sent; an empty one clears the column.
#[derive(Deserialize)]
pub struct EntryForm {
    caller_name: String,
    caller_status: String,
    callback_at: String,
    content: String,
    forwarded_to: String,
    forwarded_at: String,
    done_at: String,
    appeal_type: String,
}

impl EntryForm {
    fn patch(&self, state: &ConsoleState) -> Result<EntryPatch, ConsoleError> {
        let tz = state.records.calendar.tz();
        let text = |v: &str| Some(Some(v.trim().to_string()).filter(|v| !v.is_empty()));
        let invalid = |field: &str, v: &str| {
            ConsoleError::BadRequest(format!("`{field}`: недопустимое значение {v:?}"))
        };
        let caller_status = match self.caller_status.as_str() {
            "" => None,
            s => Some(CallerStatus::parse(s).ok_or_else(|| invalid("caller_status", s))?),
        };
        let appeal_type = match self.appeal_type.as_str() {
            "" => None,
            s => Some(AppealType::parse(s).ok_or_else(|| invalid("appeal_type", s))?),
        };
        let patch = EntryPatch {
            caller_name: text(&self.caller_name),
            caller_status: Some(caller_status),
            phone: None,
            callback_at: Some(local_input("callback_at", &self.callback_at, tz)?),
            content: text(&self.content),
            forwarded_to: text(&self.forwarded_to),
            forwarded_at: Some(local_input("forwarded_at", &self.forwarded_at, tz)?),
            done_at: Some(local_input("done_at", &self.done_at, tz)?),
            appeal_type: Some(appeal_type),
        };
        patch
            .validate()
            .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
        Ok(patch)
    }
}

/// `POST /journal/{id}`: the operator's columns, each change audited.
pub async fn edit(
    State(state): State<ConsoleState>,
    Path(id): Path<i64>,
    posted: Posted<can::JournalEdit, EntryForm>,
) -> Result<Response, ConsoleError> {
    entry(&state, id).await?;
    let patch = posted.form.patch(&state)?;
    state
        .records
        .patch_entry(id, &patch, &posted.signed.session.user.login)
        .await?;
    Ok(Redirect::to(&format!("/journal/{id}")).into_response())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RecordingQuery {
    download: String,
}

/// `GET /journal/{id}/recording`: the call's stereo recording (caller left, operator
/// right), seekable; `?download=1` saves it. Each listen is audited.
pub async fn recording(
    State(state): State<ConsoleState>,
    who: Signed<can::RecordingListen>,
    Path(id): Path<i64>,
    Query(q): Query<RecordingQuery>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let user = &who.session.user;
    let file = match state
        .records
        .recording_for(&state.data_dir, id, user.role)
        .await
    {
        Err(DeskError::Refused { role, action }) => {
            return Err(ConsoleError::Forbidden { role, action })
        }
        Err(DeskError::Store(StoreError::NotFound { .. })) => {
            return Err(ConsoleError::NotFound(format!("у звонка {id} нет записи")))
        }
        r => r?,
    };
    let download = !q.download.is_empty();
    // A file on another node: that node audits the listen it serves.
    let here = matches!(file.held, Held::Here(_));
    if here && crate::web::starts_a_listen(&req) {
        let how = if download { "download" } else { "listen" };
        state
            .records
            .audit_listen("journal", id, how, &user.login)
            .await?;
    }
    Ok(crate::web::audio(file.held, req, download.then_some(file.name.as_str())).await)
}
