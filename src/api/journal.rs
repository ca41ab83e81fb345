//! `/api/v1/journal`: the incoming-call journal — filtered pages, one entry, operators'
//! edits, and the CSV export with the regulation's Appendix 6 headings.

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::{parse_time, Bound, JsonBody, QueryParams};
use super::AppState;
use crate::records::journal::{Cursor, Disposition, Entry, EntryPatch, JournalFilter};
use crate::store::journal as sql;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_journal))
        .routes(routes!(get_entry, patch_entry))
        .routes(routes!(export_journal))
}

/// Filters of the list and the export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JournalQuery {
    /// Arrived at or after: RFC 3339, or a date (the calendar's time zone).
    from: Option<String>,
    /// Arrived before; a date includes that whole day.
    to: Option<String>,
    /// Extension of the operator who answered.
    operator: Option<String>,
    disposition: Option<String>,
    /// The caller's number in any common format.
    phone: Option<String>,
    /// Text in the caller's name, the content or a voicemail transcript (case-insensitive).
    q: Option<String>,
    /// Only repeat appeals (`true`) or only first ones (`false`).
    repeat: Option<bool>,
    /// `next` of the previous page.
    cursor: Option<String>,
    /// Entries per page, 1–500 (default 50).
    limit: Option<usize>,
}

impl JournalQuery {
    fn filter(&self, state: &AppState) -> Result<JournalFilter, ApiError> {
        let cal = &state.records.calendar;
        let disposition = match &self.disposition {
            Some(d) => Some(Disposition::parse(d).ok_or_else(|| {
                let known: Vec<&str> = Disposition::ALL.iter().map(|d| d.as_str()).collect();
                ApiError::field(
                    "disposition",
                    format!("`disposition`: {d:?} is not one of {}", known.join(", ")),
                )
            })?),
            None => None,
        };
        let non_empty = |v: &Option<String>| v.as_ref().filter(|s| !s.trim().is_empty()).cloned();
        Ok(JournalFilter {
            from: self
                .from
                .as_deref()
                .map(|v| parse_time("from", v, Bound::Start, cal))
                .transpose()?,
            to: self
                .to
                .as_deref()
                .map(|v| parse_time("to", v, Bound::End, cal))
                .transpose()?,
            operator: non_empty(&self.operator),
            disposition,
            phone: non_empty(&self.phone),
            text: non_empty(&self.q),
            repeat: self.repeat,
        })
    }
}

/// A page of the journal.
#[derive(Debug, Serialize, ToSchema)]
pub struct JournalPage {
    pub entries: Vec<Entry>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// List journal entries, newest first.
#[utoipa::path(get, path = "/journal", tag = "journal", params(JournalQuery),
    security(("bearer" = [])),
    responses((status = 200, body = JournalPage), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_journal(
    State(state): State<AppState>,
    _auth: Allowed<can::JournalRead>,
    QueryParams(q): QueryParams<JournalQuery>,
) -> Result<Json<JournalPage>, ApiError> {
    let filter = q.filter(&state)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::field("limit", "`limit`: must be 1 to 500"));
    }
    let cursor = q.cursor.as_deref().map(Cursor::decode).transpose()?;
    let (entries, next) = sql::list(&state.records.store, &filter, cursor, limit).await?;
    Ok(Json(JournalPage {
        entries,
        next: next.map(|c| c.encode()),
    }))
}

/// One journal entry.
#[utoipa::path(get, path = "/journal/{id}", tag = "journal", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Entry), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_entry(
    State(state): State<AppState>,
    _auth: Allowed<can::JournalRead>,
    Path(id): Path<i64>,
) -> Result<Json<Entry>, ApiError> {
    Ok(Json(sql::get(&state.records.store, id).await?))
}

/// Fill in or correct the operator's columns of an entry; each change is audited.
#[utoipa::path(patch, path = "/journal/{id}", tag = "journal", params(("id" = i64, Path)),
    request_body = EntryPatch, security(("bearer" = [])),
    responses((status = 200, body = Entry), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
               (status = 404, body = ErrorBody)))]
async fn patch_entry(
    State(state): State<AppState>,
    auth: Allowed<can::JournalEdit>,
    Path(id): Path<i64>,
    JsonBody(patch): JsonBody<EntryPatch>,
) -> Result<Json<Entry>, ApiError> {
    patch.validate()?;
    if patch.is_empty() {
        return Err(ApiError::BadRequest {
            field: None,
            message: "the patch changes nothing".into(),
        });
    }
    sql::patch(&state.records.store, id, &patch, auth.actor()).await?;
    Ok(Json(sql::get(&state.records.store, id).await?))
}

/// The columns of the export: Appendix 6's ten, then the call detail.
pub const CSV_HEADINGS: [&str; 20] = [
    "№ п/п",
    "Дата",
    "ФИО заявителя",
    "Статус заявителя: ФЛ/ ЮЛ",
    "Номер телефона заявителя",
    "Дата и время обратной связи",
    "Содержание сообщения",
    "Кому направлено обращение",
    "Когда направлено обращение",
    "Отметка об исполнении (дата и время осуществления обратного звонка)",
    "Год",
    "Идентификатор звонка",
    "Время поступления",
    "Время ответа",
    "Время окончания",
    "Ожидание, с",
    "Результат",
    "Оператор",
    "Запись разговора",
    "Повторное обращение к №",
];

/// Rows fetched per page of the export.
const EXPORT_PAGE: usize = 2000;

/// The journal as CSV (UTF-8 with BOM, so that Excel opens it), streamed page by page.
#[utoipa::path(get, path = "/journal/export.csv", tag = "journal", params(JournalQuery),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv", body = String),
               (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody)))]
async fn export_journal(
    State(state): State<AppState>,
    _auth: Allowed<can::JournalExport>,
    QueryParams(q): QueryParams<JournalQuery>,
) -> Result<Response, ApiError> {
    let filter = q.filter(&state)?;
    if q.cursor.is_some() || q.limit.is_some() {
        return Err(ApiError::field(
            "cursor",
            "the export takes no `cursor` or `limit`: it streams every entry that matches",
        ));
    }
    let mut head = Vec::from("\u{feff}".as_bytes());
    {
        let mut w = csv::Writer::from_writer(&mut head);
        w.write_record(CSV_HEADINGS)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        w.flush().map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    enum Next {
        Head(Vec<u8>),
        Page(Option<Cursor>),
        Done,
    }
    let tz = state.records.calendar.tz();
    let store = state.records.store.clone();
    let stream = futures::stream::unfold(Next::Head(head), move |next| {
        let store = store.clone();
        let filter = filter.clone();
        async move {
            let cursor = match next {
                Next::Done => return None,
                Next::Head(bytes) => return Some((Ok(Bytes::from(bytes)), Next::Page(None))),
                Next::Page(c) => c,
            };
            match sql::list(&store, &filter, cursor, EXPORT_PAGE).await {
                Ok((entries, next)) => {
                    let mut buf = Vec::with_capacity(entries.len() * 256);
                    let written = {
                        let mut w = csv::Writer::from_writer(&mut buf);
                        entries
                            .iter()
                            .try_for_each(|e| w.write_record(csv_row(e, tz)))
                            .and_then(|_| w.flush().map_err(csv::Error::from))
                    };
                    let state = match next {
                        Some(c) => Next::Page(Some(c)),
                        None => Next::Done,
                    };
                    match written {
                        Ok(()) => Some((Ok(Bytes::from(buf)), state)),
                        Err(e) => Some((Err(std::io::Error::other(e)), Next::Done)),
                    }
                }
                Err(e) => {
                    // The status is already sent: cut the stream so the client sees a
                    // broken download rather than a silently short file.
                    tracing::error!(error = %e, "journal export failed");
                    Some((Err(std::io::Error::other(e)), Next::Done))
                }
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"journal.csv\"",
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn local(t: Option<DateTime<Utc>>, tz: chrono_tz::Tz) -> String {
    t.map(|t| t.with_timezone(&tz).format("%d.%m.%Y %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// One entry as a CSV row, in the order of [`CSV_HEADINGS`]; times in the calendar's zone.
pub fn csv_row(e: &Entry, tz: chrono_tz::Tz) -> [String; 20] {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        e.seq.to_string(),
        e.arrived_at
            .with_timezone(&tz)
            .format("%d.%m.%Y")
            .to_string(),
        opt(&e.caller_name),
        e.caller_status
            .map(|s| s.russian().to_string())
            .unwrap_or_default(),
        e.phone.clone(),
        local(e.callback_at, tz),
        opt(&e.content),
        opt(&e.forwarded_to),
        local(e.forwarded_at, tz),
        local(e.done_at, tz),
        e.year.to_string(),
        opt(&e.call_id),
        local(Some(e.arrived_at), tz),
        local(e.answered_at, tz),
        local(e.ended_at, tz),
        e.wait_s.map(|w| format!("{w:.1}")).unwrap_or_default(),
        e.disposition.russian().to_string(),
        opt(&e.operator),
        opt(&e.recording),
        e.repeat_of
            .as_ref()
            .map(|r| format!("{}/{}", r.seq, r.year))
            .unwrap_or_default(),
    ]
}
