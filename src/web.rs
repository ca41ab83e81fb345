//! What the API and the console both serve over HTTP, below both: recordings as files with
//! `Range` support (a browser's audio element seeks with it).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use std::path::PathBuf;
use tower::ServiceExt;

/// The WAV at `path` as `audio/wav`, answering `Range`, `If-Range` and `HEAD` as the
/// request asks (200, 206 or 416; a file that cannot be read is 404 or 500).
pub async fn wav(path: PathBuf, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let req = Request::from_parts(parts, Body::empty());
    let mut resp = tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
        .unwrap_or_else(|never| match never {})
        .map(Body::new);
    if resp.status().is_success() {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    }
    resp
}
