//! What the API and the console both serve over HTTP, below both: recordings as files with
//! `Range` support (a browser's audio element seeks with it), and the live feed as
//! server-sent events.

use crate::live::LiveEvent;
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

/// [`wav`], saved as `name` (`Content-Disposition: attachment`) when a name is given.
pub async fn wav_named(path: PathBuf, req: Request, name: Option<&str>) -> Response {
    let mut resp = wav(path, req).await;
    if let Some(v) = name
        .map(|n| format!("attachment; filename=\"{n}\""))
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// A request for the whole file or for its start (not the later ranges a player fetches
/// while it plays, nor a `HEAD`).
pub fn starts_a_listen(req: &Request) -> bool {
    if req.method() == axum::http::Method::HEAD {
        return false;
    }
    match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        None => true,
        Some(r) => r.trim().starts_with("bytes=0-"),
    }
}

/// The live events that `keep` lets through, as server-sent events named by their kind
/// (`lagged`, with how many, when a slow client missed some), until `shutdown`; `None`
/// once the hotline is shutting down.
pub fn live_events(
    events: &tokio::sync::broadcast::Sender<LiveEvent>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    keep: impl Fn(&LiveEvent) -> bool + Clone + Send + Sync + 'static,
) -> Option<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let rx = events.subscribe();
    if *shutdown.borrow() {
        return None;
    }
    let stream = futures::stream::unfold(rx, move |mut rx| {
        let mut shutdown = shutdown.clone();
        let keep = keep.clone();
        async move {
            let received = loop {
                let r = tokio::select! {
                    r = rx.recv() => r,
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                };
                match r {
                    Ok(ev) if !keep(&ev) => continue,
                    other => break other,
                }
            };
            let event = match received {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    Event::default().event(ev.kind()).data(data)
                }
                // A slow client misses events, not the stream: it is told how many.
                Err(RecvError::Lagged(n)) => Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{n}}}")),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok(event), rx))
        }
    });
    Some(Sse::new(stream).keep_alive(KeepAlive::default()))
}
