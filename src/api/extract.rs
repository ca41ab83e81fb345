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
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest {
                field: None,
                message: e.body_text(),
            })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
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

/// Query parameters; a bad one is 400 with serde's message, which names it.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
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
