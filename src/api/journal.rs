//! `/api/v1/journal`: the incoming-call journal — filtered pages, one entry, operators'
//! edits, and the CSV export with the regulation's Appendix 6 headings.

use super::auth::{can, Allowed};
use super::error::{ApiError, ErrorBody};
use super::extract::Path;
use super::extract::{parse_time, Bound, JsonBody, QueryParams};
use super::AppState;
use crate::records::journal::{Cursor, Disposition, Entry, EntryPatch, JournalFilter};
use crate::store::journal as sql;
use axum::body::{Body, Bytes};
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

/// The columns of the export: Appendix 6's ten, then the call detail.
pub const CSV_HEADINGS: [&str; 21] = [
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
    "Заявки по банкоматам",
];

/// The export's body is sent in chunks of at least this many bytes.
const EXPORT_CHUNK: usize = 64 * 1024;

/// The journal as CSV (UTF-8 with BOM, so that Excel opens it), oldest first, streamed: a
/// task reads it page by page and sends the CSV in chunks, so a year of calls is never held
/// in memory.
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
    let tz = state.records.calendar.tz();
    let store = state.records.store.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        if let Err(e) = stream_csv(&store, &filter, tz, &tx).await {
            // The status is already sent: cut the body so the client sees a broken
            // download rather than a silently short file.
            tracing::error!(error = %e, "journal export failed");
            let _ = tx.send(Err(std::io::Error::other(e))).await;
        }
    });
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

/// Writes the BOM, the headings and every matching row into `tx`; stops early, without
/// error, when the client has gone.
async fn stream_csv(
    store: &crate::store::Store,
    filter: &JournalFilter,
    tz: chrono_tz::Tz,
    tx: &tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> anyhow::Result<()> {
    let writer = |bytes: Vec<u8>| csv::Writer::from_writer(bytes);
    let mut bom = Vec::with_capacity(EXPORT_CHUNK * 2);
    bom.extend_from_slice("\u{feff}".as_bytes());
    let mut w = writer(bom);
    w.write_record(CSV_HEADINGS)?;
    let mut fields: [String; 21] = Default::default();
    let mut batches = sql::export(store.clone(), filter.clone());
    while let Some(batch) = batches.recv().await {
        for row in &batch? {
            csv_fields(row, tz, &mut fields);
            fields
                .iter_mut()
                .for_each(crate::records::spreadsheet::neutralise);
            w.write_record(&fields)?;
        }
        // The writer buffers 8 KiB itself; what it has handed on is in get_ref().
        if w.get_ref().len() >= EXPORT_CHUNK {
            let full = std::mem::replace(&mut w, writer(Vec::with_capacity(EXPORT_CHUNK * 2)));
            let chunk = full
                .into_inner()
                .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
            if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                return Ok(());
            }
        }
    }
    let rest = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
    let _ = tx.send(Ok(Bytes::from(rest))).await;
    Ok(())
}

/// `dd.mm.yyyy HH:MM:SS` in the calendar's zone, into `out` (cleared); nothing for `None`.
fn local_time(ms: Option<i64>, tz: chrono_tz::Tz, out: &mut String) {
    use chrono::{Datelike, Timelike};
    use std::fmt::Write;
    out.clear();
    if let Some(ms) = ms {
        let t = crate::store::from_ms(ms).with_timezone(&tz);
        let _ = write!(
            out,
            "{:02}.{:02}.{:04} {:02}:{:02}:{:02}",
            t.day(),
            t.month(),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        );
    }
}

fn set(out: &mut String, v: Option<&str>) {
    out.clear();
    if let Some(v) = v {
        out.push_str(v);
    }
}

/// One entry's CSV fields, in the order of [`CSV_HEADINGS`], written into `f` (reused from
/// row to row, so the export allocates per row only what the database driver does).
pub fn csv_fields(e: &sql::ExportRow, tz: chrono_tz::Tz, f: &mut [String; 21]) {
    use std::fmt::Write;
    f[0].clear();
    let _ = write!(f[0], "{}", e.seq);
    local_time(Some(e.arrived_at), tz, &mut f[1]);
    f[1].truncate(10); // the date only
    set(&mut f[2], e.caller_name.as_deref());
    set(&mut f[3], e.caller_status.map(|s| s.russian()));
    set(&mut f[4], Some(&e.phone));
    local_time(e.callback_at, tz, &mut f[5]);
    set(&mut f[6], e.content.as_deref());
    set(&mut f[7], e.forwarded_to.as_deref());
    local_time(e.forwarded_at, tz, &mut f[8]);
    local_time(e.done_at, tz, &mut f[9]);
    f[10].clear();
    let _ = write!(f[10], "{}", e.year);
    set(&mut f[11], e.call_id.as_deref());
    local_time(Some(e.arrived_at), tz, &mut f[12]);
    local_time(e.answered_at, tz, &mut f[13]);
    local_time(e.ended_at, tz, &mut f[14]);
    f[15].clear();
    if let Some(w) = e.wait_ms {
        let _ = write!(f[15], "{:.1}", w as f64 / 1000.0);
    }
    set(&mut f[16], Some(e.disposition.russian()));
    set(&mut f[17], e.operator.as_deref());
    set(&mut f[18], e.recording.as_deref());
    f[19].clear();
    if let (Some(seq), Some(year)) = (e.repeat_seq, e.repeat_year) {
        let _ = write!(f[19], "{seq}/{year}");
    }
    set(&mut f[20], e.tickets.as_deref());
}
