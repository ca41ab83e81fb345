//! Request extractors whose failures are [`ApiError`]s naming the field: axum's own give a
//! plain-text 4xx without the path of the bad field.

use super::error::ApiError;
use crate::calendar::Calendar;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;

/// A JSON body; a bad one is 400 with the path of the field (`convenient_at`, `items[2].x`).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::BadRequest {
                field: None,
                message: "the body must be JSON (Content-Type: application/json)".into(),
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(format!(
                    "the body is larger than the {} KiB limit",
                    super::BODY_LIMIT / 1024
                ))
            } else {
                ApiError::BadRequest {
                    field: None,
                    message: e.body_text(),
                }
            }
        })?;
        // Read as a JSON value first, to refuse a NUL in any string (PostgreSQL stores no
        // NUL in text: it would be a 500), naming where it is.
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest {
                field: None,
                message: e.to_string(),
            })?;
        if let Some(path) = nul_in(&value, String::new()) {
            return Err(ApiError::BadRequest {
                message: format!("`{path}`: NUL characters are not accepted"),
                field: Some(path),
            });
        }
        serde_path_to_error::deserialize(value)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let field = (path != ".").then_some(path);
                // serde names an unknown or missing field only in its message.
                let message = match &field {
                    Some(f) => format!("`{f}`: {inner}"),
                    None => inner.to_string(),
                };
                ApiError::BadRequest { field, message }
            })
    }
}

/// The path (`items[2].name`) of the first string in `v` holding a NUL, key or value.
fn nul_in(v: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('\0') => Some(if at.is_empty() { ".".into() } else { at }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_in(x, format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, x)| {
            let here = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_in(x, here)
            }
        }),
        _ => None,
    }
}

/// Query parameters; a bad one is 400 with serde's message, which names it.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(query) = parts.uri.query() {
            check_utf8_query(query)?;
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::BadRequest {
                field: None,
                message: e.body_text(),
            })
    }
}

/// A query whose percent-encoded bytes are not UTF-8 (`q=%FF%FE`) is refused, naming the
/// parameter, rather than searched for as replacement characters.
fn check_utf8_query(query: &str) -> Result<(), ApiError> {
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        for part in [key, value] {
            let problem = match String::from_utf8(percent_decode(part)) {
                Err(_) => "is not UTF-8 text",
                Ok(text) if text.contains('\0') => "holds a NUL character",
                Ok(_) => continue,
            };
            let name = String::from_utf8_lossy(&percent_decode(key)).into_owned();
            return Err(ApiError::field(
                name.clone(),
                format!("`{name}`: the value {problem}"),
            ));
        }
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` decoding of one key or value, to bytes.
fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// A path parameter (`/journal/{id}`); one that does not parse (an id beyond i64, a word)
/// is a JSON 400 like every other API error, not axum's plain text.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // PostgreSQL stores no NUL in text; an id holding one is no id.
        if String::from_utf8(percent_decode(parts.uri.path())).map_or(true, |p| p.contains('\0')) {
            return Err(ApiError::BadRequest {
                field: None,
                message: "the path holds a NUL or is not UTF-8".into(),
            });
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::BadRequest {
                field: None,
                message: e.body_text(),
            })
    }
}

/// Which end of a period a date-only bound is.
#[derive(Clone, Copy)]
pub enum Bound {
    /// `from=2026-03-10`: the start of that day.
    Start,
    /// `to=2026-03-10`: the end of that day (the start of the next), so the day is included.
    End,
}

/// Parses an RFC 3339 time or a `YYYY-MM-DD` date (a day in the calendar's time zone).
pub fn parse_time(
    field: &'static str,
    value: &str,
    bound: Bound,
    calendar: &Calendar,
) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        ApiError::field(
            field,
            format!("`{field}`: {value:?} is neither an RFC 3339 time nor a YYYY-MM-DD date"),
        )
    })?;
    let day = match bound {
        Bound::Start => date,
        Bound::End => date
            .succ_opt()
            .ok_or_else(|| ApiError::field(field, format!("`{field}`: date out of range")))?,
    };
    Ok(local_midnight(calendar, day))
}

/// 00:00 of `day` in the calendar's time zone, as UTC.
pub fn local_midnight(calendar: &Calendar, day: NaiveDate) -> DateTime<Utc> {
    use chrono::TimeZone;
    let naive = day.and_hms_opt(0, 0, 0).unwrap_or_default();
    calendar
        .tz()
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| naive.and_utc())
}
