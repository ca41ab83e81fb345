//! What the API and the console both serve over HTTP, below both: recordings as files with
//! `Range` support (a browser's audio element seeks with it), and the live feed as
//! server-sent events.

use crate::desk::files::Held;
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

/// The audio `held` names: served from this node's disk, or fetched from the node of the
/// cluster that holds it ([`from_peer`]).
pub async fn audio(held: Held, req: Request, name: Option<&str>) -> Response {
    match held {
        Held::Here(path) => wav_named(path, req, name).await,
        Held::Peer { node, url } => from_peer(&node, &url, req).await,
    }
}

/// The headers a forwarded request keeps: the asker's credentials (the peer checks the
/// rights again, and audits the listen) and what part of the file they want.
const FORWARDED_REQUEST: [header::HeaderName; 5] = [
    header::AUTHORIZATION,
    header::COOKIE,
    header::RANGE,
    header::IF_RANGE,
    header::USER_AGENT,
];

/// The headers of the peer's answer that go back to the asker.
const FORWARDED_RESPONSE: [header::HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::CONTENT_DISPOSITION,
    header::LAST_MODIFIED,
    header::ETAG,
];

/// The same request (method, path, query, credentials, range) sent to the node at `url`,
/// its answer streamed back as it comes; 502 when that node does not answer.
pub async fn from_peer(node: &str, url: &str, req: Request) -> Response {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    });
    // The URI as the asker sent it: a nested router (`/api/v1`) sees it without its prefix.
    let uri = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or(req.uri(), |o| &o.0);
    let target = format!(
        "{}{}",
        url.trim_end_matches('/'),
        uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let method = if req.method() == axum::http::Method::HEAD {
        reqwest::Method::HEAD
    } else {
        reqwest::Method::GET
    };
    let mut out = client.request(method, &target);
    for name in FORWARDED_REQUEST {
        if let Some(v) = req.headers().get(&name) {
            out = out.header(name.as_str(), v.as_bytes());
        }
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(node, url, error = %e, "the node holding a recording does not answer");
            return Response::builder()
                .status(axum::http::StatusCode::BAD_GATEWAY)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Body::from(format!(
                    "the recording is on node {node}, which does not answer"
                )))
                .unwrap_or_default();
        }
    };
    let mut resp = Response::builder().status(answer.status().as_u16());
    for name in FORWARDED_RESPONSE {
        if let Some(v) = answer.headers().get(name.as_str()) {
            resp = resp.header(name, v.as_bytes());
        }
    }
    resp.body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_default()
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
    let rx = events.subscribe();
    if *shutdown.borrow() {
        return None;
    }
    let stream = futures::stream::unfold(rx, move |mut rx| {
        let mut shutdown = shutdown.clone();
        let keep = keep.clone();
        async move {
            let event = match next_kept(&mut rx, &mut shutdown, &keep).await? {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    Event::default().event(ev.kind()).data(data)
                }
                // A slow client misses events, not the stream: it is told how many.
                Err(missed) => Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{missed}}}")),
            };
            Some((Ok(event), rx))
        }
    });
    Some(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The first event `keep` lets through, or `Err(missed)` when a slow reader missed some;
/// `None` at shutdown or when the feed closes. What both feeds read.
async fn next_kept(
    rx: &mut tokio::sync::broadcast::Receiver<LiveEvent>,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
    keep: &(impl Fn(&LiveEvent) -> bool + Send + Sync),
) -> Option<Result<LiveEvent, u64>> {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let r = tokio::select! {
            r = rx.recv() => r,
            _ = shutdown.wait_for(|stop| *stop) => return None,
        };
        match r {
            Ok(ev) if keep(&ev) => return Some(Ok(ev)),
            Ok(_) => continue,
            Err(RecvError::Lagged(missed)) => return Some(Err(missed)),
            Err(RecvError::Closed) => return None,
        }
    }
}

/// That something changed, for a page that fetches its live parts again when told (the
/// console): one event, named by the first change's kind, at most every `every`. The
/// changes of a burst fold into one event at the end of the window, so each change is
/// followed by an event within `every`, however many calls are changing. The payload is
/// empty: the page reads the part, not the event.
pub fn live_changes(
    events: &tokio::sync::broadcast::Sender<LiveEvent>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    keep: impl Fn(&LiveEvent) -> bool + Clone + Send + Sync + 'static,
    every: std::time::Duration,
) -> Option<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
> {
    use axum::response::sse::{KeepAlive, Sse};
    let rx = events.subscribe();
    if *shutdown.borrow() {
        return None;
    }
    let stream = changes(rx, shutdown, keep, every);
    Some(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The stream of [`live_changes`].
fn changes(
    rx: tokio::sync::broadcast::Receiver<LiveEvent>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    keep: impl Fn(&LiveEvent) -> bool + Clone + Send + Sync + 'static,
    every: std::time::Duration,
) -> impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>> {
    use axum::response::sse::Event;
    let last: Option<tokio::time::Instant> = None;
    futures::stream::unfold((rx, last), move |(mut rx, last)| {
        let mut shutdown = shutdown.clone();
        let keep = keep.clone();
        async move {
            let kind = match next_kept(&mut rx, &mut shutdown, &keep).await? {
                Ok(ev) => ev.kind(),
                Err(_) => "lagged",
            };
            if let Some(until) = last.map(|t| t + every) {
                // Within the window of the last event: fold what comes until it ends.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => break,
                        more = next_kept(&mut rx, &mut shutdown, &keep) => {
                            // Folded into this window's event; the feed's end ends it.
                            more.as_ref()?;
                        }
                    }
                }
            }
            let event = Event::default().event(kind).data("{}");
            Some((Ok(event), (rx, Some(tokio::time::Instant::now()))))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::Duration;

    fn queue(call: u64) -> LiveEvent {
        LiveEvent::Queue { call, joined: true }
    }

    /// A burst of changes is one event at once and one at the end of the window; a change
    /// after a quiet spell is told at once.
    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_is_told_twice_and_each_within_the_window() {
        let (tx, rx) = tokio::sync::broadcast::channel(64);
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let every = Duration::from_millis(250);
        let stream = changes(rx, shutdown, |_| true, every);
        tokio::pin!(stream);
        let start = tokio::time::Instant::now();
        for call in 0..10 {
            tx.send(queue(call)).unwrap();
        }
        let _ = stream.next().await.unwrap().unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO, "the first at once");
        // Ten more within the window fold into one event at its end.
        for call in 10..20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            tx.send(queue(call)).unwrap();
        }
        let _ = stream.next().await.unwrap().unwrap();
        assert_eq!(start.elapsed(), every);
        // Quiet, then one change: told at once.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let quiet = tokio::time::Instant::now();
        tx.send(queue(99)).unwrap();
        let _ = stream.next().await.unwrap().unwrap();
        assert_eq!(quiet.elapsed(), Duration::ZERO);
        // Nothing else is pending.
        let more = tokio::time::timeout(Duration::from_secs(5), stream.next()).await;
        assert!(more.is_err(), "no event without a change");
    }
}

/// Adds `Strict-Transport-Security` to every response of a console served over TLS, so that
/// a browser that has seen it once never comes back over plain HTTP.
pub fn strict_transport(
    max_age_s: u64,
) -> impl Fn(Response) -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    let value = HeaderValue::from_str(&format!("max-age={max_age_s}")).expect("digits only");
    move |mut resp: Response| {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, value.clone());
        std::future::ready(resp)
    }
}

/// The plain-HTTP listener beside HTTPS (`[http.tls] redirect_from`): every request is sent
/// (308, keeping its method) to the same path on HTTPS at the host it asked for, on
/// `https_port`. A request without a usable `Host` gets 400.
pub fn to_https(https_port: u16) -> axum::Router {
    axum::Router::new().fallback(
        move |headers: axum::http::HeaderMap, uri: axum::http::Uri| {
            std::future::ready(redirect_to_https(&headers, &uri, https_port))
        },
    )
}

fn redirect_to_https(
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
    port: u16,
) -> Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_of);
    let Some(host) = host else {
        return (
            StatusCode::BAD_REQUEST,
            "Host: a host name or address is needed\n",
        )
            .into_response();
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = match port {
        443 => format!("https://{host}{path}"),
        _ => format!("https://{host}:{port}{path}"),
    };
    match HeaderValue::from_str(&location) {
        Ok(v) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, v)]).into_response(),
        Err(_) => (StatusCode::BAD_REQUEST, "path: not a valid URL\n").into_response(),
    }
}

/// The host of a `Host` header without its port: a name, an IPv4 address or a bracketed
/// IPv6 one; anything else is refused rather than echoed into a redirect.
fn host_of(value: &str) -> Option<&str> {
    let host = match value.strip_prefix('[') {
        Some(rest) => &value[..rest.find(']')? + 2],
        None => value.split(':').next()?,
    };
    let name_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-');
    let v6_ok = |c: char| c.is_ascii_hexdigit() || matches!(c, ':' | '.' | '[' | ']');
    let ok = if host.starts_with('[') {
        host.chars().all(v6_ok)
    } else {
        !host.is_empty() && host.chars().all(name_ok)
    };
    ok.then_some(host)
}

#[cfg(test)]
mod https_tests {
    use super::*;

    #[test]
    fn the_redirect_keeps_the_host_and_path_and_names_the_https_port() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_static("hotline.bank.example:8080"),
        );
        let uri: axum::http::Uri = "/journal?from=2026-12-01".parse().unwrap();
        let r = redirect_to_https(&h, &uri, 8443);
        assert_eq!(r.status(), 308);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://hotline.bank.example:8443/journal?from=2026-12-01"
        );
        h.insert(header::HOST, HeaderValue::from_static("[2001:db8::5]:80"));
        let r = redirect_to_https(&h, &"/".parse().unwrap(), 443);
        assert_eq!(r.headers()[header::LOCATION], "https://[2001:db8::5]/");
        for bad in ["", "evil.example/x", "a b", "[zz::1]"] {
            h.insert(header::HOST, HeaderValue::from_str(bad).unwrap());
            assert_eq!(redirect_to_https(&h, &uri, 443).status(), 400, "{bad:?}");
        }
        h.remove(header::HOST);
        assert_eq!(redirect_to_https(&h, &uri, 443).status(), 400);
    }
}
