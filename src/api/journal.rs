//! `/api/v1/journal`: the incoming-call journal — filtered pages, one entry, operators'
//! edits, and the CSV export with the regulation's Appendix 6 headings.

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::Path;
use super::extract::{parse_time, Bound, JsonBody, QueryParams};
use super::AppState;
use crate::desk::export::Separator;
use crate::desk::files::Held;
use crate::records::journal::{Cursor, Disposition, Entry, EntryPatch, JournalFilter};
use crate::store::journal as sql;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_journal))
        .routes(routes!(get_entry, patch_entry))
        .routes(routes!(export_journal))
        .routes(routes!(entry_recording))
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
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
    /// The export's field separator: `comma` (the default) or `semicolon` (Excel in the
    /// Russian locale).
    sep: Option<String>,
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
    state.records.patch_entry(id, &patch, auth.actor()).await?;
    Ok(Json(sql::get(&state.records.store, id).await?))
}

/// The journal as CSV (UTF-8 with BOM, so that Excel opens it), oldest first, streamed: a
/// task reads it page by page and sends the CSV in chunks, so a year of calls is never held
/// in memory. `sep=semicolon` gives the file Excel in the Russian locale splits.
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
    let sep = match q.sep.as_deref() {
        None => Separator::Comma,
        Some(s) => Separator::parse(s)
            .ok_or_else(|| ApiError::field("sep", "`sep`: must be `comma` or `semicolon`"))?,
    };
    let rx = state.records.journal_csv(filter, sep);
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"journal.csv\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordingQuery {
    /// `1`: as an attachment (`call-<n>-<year>.wav`), to save.
    download: Option<String>,
}

/// The call's recording as `audio/wav`, stereo (caller left, operator right); `Range`
/// requests get 206. Supervisors hear any call, the security service the calls of its
/// ATM security tickets (403 otherwise). Each listen or download is in the audit log
/// (entity `journal`, field `recording`).
#[utoipa::path(get, path = "/journal/{id}/recording", tag = "journal",
    params(("id" = i64, Path), RecordingQuery), security(("bearer" = [])),
    responses((status = 200, content_type = "audio/wav", body = Vec<u8>),
               (status = 206, content_type = "audio/wav", body = Vec<u8>),
               (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
               (status = 416, description = "Range not satisfiable")))]
async fn entry_recording(
    State(state): State<AppState>,
    auth: Allowed<can::RecordingListen>,
    Path(id): Path<i64>,
    QueryParams(q): QueryParams<RecordingQuery>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let file = state
        .records
        .recording_for(&state.data_dir, id, auth.token.role)
        .await?;
    let download = q.download.is_some_and(|d| d == "1");
    // A file on another node: that node audits the listen it serves.
    let here = matches!(file.held, Held::Here(_));
    if here && crate::web::starts_a_listen(&req) {
        let how = if download { "download" } else { "listen" };
        state
            .records
            .audit_listen("journal", id, how, auth.actor())
            .await?;
    }
    Ok(crate::web::audio(file.held, req, download.then_some(file.name.as_str())).await)
}
