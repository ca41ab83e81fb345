//! The supervisor's wallboard: callers waiting and the longest wait, each operator's state,
//! the calls in progress, today's figures and the day by the hour.
//!
//! The page holds the board as a server-rendered part (`/supervisor/board`) that the
//! browser fetches again whenever the live feed (`/supervisor/events`, the same events as
//! the API's) reports a change, so a change is on screen within the feed's latency plus
//! one render; between changes it is fetched every few seconds for the timers.

use super::pages::{presences, Presence, Who};
use super::session::Signed;
use super::{ConsoleError, ConsoleState};
use crate::records::access::{allowed, can, Action};
use crate::records::hourly::{by_hour, Hour};
use askama::Template;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// A call in progress as the board lists it.
pub struct CallLine {
    phone: String,
    stage: &'static str,
    operator: String,
    since: String,
    /// The node of a cluster that has the call (empty on a single hotline).
    node: String,
}

fn stage_name(stage: &str) -> &'static str {
    match stage {
        "answering" => "ответ",
        "greeting" => "приветствие",
        "queued" => "ожидает",
        "ringing" => "звонит оператору",
        "connected" => "разговор",
        "to_voicemail" | "voicemail" => "голосовая почта",
        "ending" => "завершается",
        _ => "—",
    }
}

/// Today's figures, formatted.
pub struct Today {
    total: i64,
    answered: i64,
    abandoned: i64,
    voicemail: i64,
    service_level: String,
    average_wait: String,
    abandon_rate: String,
}

/// An alert episode as the board lists it.
pub struct AlertLine {
    text: String,
    started: String,
    /// Empty while it lasts.
    ended: String,
}

/// Everything the board shows.
pub struct Board {
    /// Alerts that hold now, oldest first.
    alerts: Vec<AlertLine>,
    /// The latest episodes, open or over, newest first.
    alert_log: Vec<AlertLine>,
    waiting: usize,
    longest: String,
    /// The waiting callers' numbers, longest wait first.
    queue: Vec<(String, String)>,
    operators: Vec<Presence>,
    calls: Vec<CallLine>,
    today: Today,
    /// A node of a cluster: the calls show their node.
    clustered: bool,
    /// Server-rendered SVG charts (numbers only).
    calls_chart: String,
    service_chart: String,
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| format!("{:.0} %", v * 100.0))
}

fn alert_line(state: &ConsoleState, a: crate::store::alerts::AlertRow) -> AlertLine {
    AlertLine {
        text: a.text,
        started: super::local_time(&state.records, a.started_at),
        ended: a
            .ended_at
            .map(|t| super::local_time(&state.records, t))
            .unwrap_or_default(),
    }
}

/// One reading of the board serves every supervisor whose page asked after it began, and
/// readings start at most this often. A wallboard refreshes 50 ms after each event; under
/// a thousand calls that is a fetch every few hundred ms from each supervisor, and each
/// reading queries today's journal. Shared, fifty supervisors cost one reading per this
/// interval, and each still gets a reading taken after the event that made it ask.
const READ_EVERY: Duration = Duration::from_millis(400);
/// A reading with no event since is served up to this old (the timers on the board move).
const QUIET_MAX_AGE: Duration = Duration::from_secs(1);

/// Stands in for the viewer's CSRF token in the board's rendering, which is shared: each
/// response puts its own user's token in its place. Plain ASCII, so escaping leaves it as
/// it is; a name that happened to contain it would only show its viewer their own token.
const CSRF_SLOT: &str = "csrf-slot-5e0c2a91";

/// One reading of the board: its figures, when the reading began, and the part rendered
/// from it (once, with [`CSRF_SLOT`] for the token) for every supervisor it serves. A
/// thousand operators make a part of about a megabyte; fifty wallboards rendering it each
/// for themselves cost the hotline more than the calls' signalling did, and fifty copies
/// with their tokens in place held 50 MB at once. Each response is the shared pieces with
/// its token streamed between them.
struct Reading {
    at: Instant,
    board: Board,
    /// The part cut at each [`CSRF_SLOT`]: with the presence buttons, and without (for a
    /// role that may not use them).
    parts: [OnceLock<Arc<[Bytes]>>; 2],
}

impl Reading {
    /// The rendered part in pieces, the token to go between each two.
    fn pieces(&self, buttons: bool) -> Result<Arc<[Bytes]>, ConsoleError> {
        let cell = &self.parts[usize::from(buttons)];
        if let Some(p) = cell.get() {
            return Ok(p.clone());
        }
        let html = BoardPart {
            board: &self.board,
            csrf: buttons.then_some(CSRF_SLOT),
        }
        .render()?;
        let mut cuts = vec![0];
        for (at, _) in html.match_indices(CSRF_SLOT) {
            cuts.extend([at, at + CSRF_SLOT.len()]);
        }
        cuts.push(html.len());
        let whole = Bytes::from(html);
        let pieces: Arc<[Bytes]> = cuts.chunks(2).map(|c| whole.slice(c[0]..c[1])).collect();
        Ok(cell.get_or_init(|| pieces).clone())
    }

    /// The part for a viewer with `token`, as chunks (with the buttons if `buttons`).
    fn chunks(&self, token: &str, buttons: bool) -> Result<Vec<Bytes>, ConsoleError> {
        let pieces = self.pieces(buttons)?;
        let token = Bytes::copy_from_slice(token.as_bytes());
        let mut out = Vec::with_capacity(pieces.len() * 2);
        for (i, p) in pieces.iter().enumerate() {
            if i > 0 {
                out.push(token.clone());
            }
            out.push(p.clone());
        }
        Ok(out)
    }

    /// The part as one string (the full page embeds it).
    fn part(&self, token: &str, buttons: bool) -> Result<String, ConsoleError> {
        let chunks = self.chunks(token, buttons)?;
        let bytes: Vec<u8> = chunks.concat();
        Ok(String::from_utf8(bytes).expect("rendered from UTF-8 with an ASCII token"))
    }
}

/// The last reading of the board, and when the live feed last reported a change.
#[derive(Clone)]
pub struct BoardCache {
    last: Arc<tokio::sync::Mutex<Option<Arc<Reading>>>>,
    changed: Arc<std::sync::Mutex<Instant>>,
}

impl BoardCache {
    /// Watches `events` (until the feed closes) to know when a reading is out of date.
    pub fn new(events: Option<&broadcast::Sender<crate::live::LiveEvent>>) -> BoardCache {
        let cache = BoardCache {
            last: Arc::default(),
            changed: Arc::new(std::sync::Mutex::new(Instant::now())),
        };
        if let Some(events) = events {
            let mut rx = events.subscribe();
            let changed = cache.changed.clone();
            tokio::spawn(async move {
                loop {
                    match rx.recv().await {
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                            *changed.lock().unwrap() = Instant::now();
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            });
        }
        cache
    }
}

/// A reading of the board for a request that arrived at `asked`: the last one if it began
/// after that, or if nothing changed since it and it is younger than [`QUIET_MAX_AGE`];
/// otherwise a new one, no sooner than [`READ_EVERY`] after the last began. Requests that
/// come while a reading is made wait for it.
async fn cached(state: &ConsoleState) -> Result<Arc<Reading>, ConsoleError> {
    let asked = Instant::now();
    let cache = &state.board_cache;
    let mut last = cache.last.lock().await;
    if let Some(r) = last.as_ref() {
        let changed = *cache.changed.lock().unwrap();
        if r.at >= asked || (r.at >= changed && r.at.elapsed() < QUIET_MAX_AGE) {
            return Ok(r.clone());
        }
        tokio::time::sleep_until((r.at + READ_EVERY).into()).await;
    }
    let at = Instant::now();
    let reading = Arc::new(Reading {
        at,
        board: board(state).await?,
        parts: Default::default(),
    });
    *last = Some(reading.clone());
    Ok(reading)
}

async fn board(state: &ConsoleState) -> Result<Board, ConsoleError> {
    let now = Utc::now();
    let calls = super::live_calls(state).await;
    let in_queue = match &state.acd {
        Some(acd) => acd.snapshot().await.waiting,
        None => Vec::new(),
    };
    // In a cluster, the other nodes' calls and callers too, as they published them.
    let others = crate::cluster::others_live(&state.records.store).await?;
    let me = state.records.store.node().unwrap_or_default().to_string();
    let since = |t: DateTime<Utc>| super::pages::duration((now - t).to_std().unwrap_or_default());
    // Longest wait first, with the time in the queue (not since the call arrived: the
    // greeting comes first).
    let mut waits: Vec<(String, Duration)> = in_queue
        .iter()
        .map(|w| {
            let phone = calls
                .iter()
                .find(|c| c.call == w.call)
                .map_or_else(String::new, |c| c.phone.clone());
            (phone, w.waited)
        })
        .collect();
    waits.extend(others.iter().flat_map(|(_, live)| {
        live.waiting.iter().map(|w| {
            (
                w.phone.clone(),
                Duration::from_secs_f64(w.waited_s.max(0.0)),
            )
        })
    }));
    waits.sort_by_key(|(_, waited)| std::cmp::Reverse(*waited));
    let longest = waits.first().map(|(_, w)| *w).unwrap_or_default();
    let waiting = waits.len();
    let queue = waits
        .into_iter()
        .map(|(phone, waited)| (phone, super::pages::duration(waited)))
        .collect();
    let mut lines: Vec<(DateTime<Utc>, CallLine)> = calls
        .into_iter()
        .map(|c| {
            let line = CallLine {
                stage: stage_name(c.stage),
                operator: c.operator.unwrap_or_default(),
                since: since(c.arrived_at),
                phone: c.phone,
                node: me.clone(),
            };
            (c.arrived_at, line)
        })
        .collect();
    for (node, live) in others {
        lines.extend(live.calls.into_iter().map(|c| {
            let line = CallLine {
                stage: stage_name(&c.stage),
                operator: c.operator.unwrap_or_default(),
                since: since(c.arrived_at),
                phone: c.phone,
                node: node.clone(),
            };
            (c.arrived_at, line)
        }));
    }
    lines.sort_by_key(|(at, _)| *at);
    let names = super::pages::operator_names(state).await?;
    let from = state.records.calendar.start_of_day(now);
    let alerts = crate::store::alerts::open(&state.records.store).await?;
    let alert_log = crate::store::alerts::recent(&state.records.store, 20).await?;
    let service_level = state.records.settings.service_level;
    let stats =
        crate::store::stats::compute(&state.records.store, from, now, service_level).await?;
    let facts = crate::store::stats::call_facts(&state.records.store, from, now).await?;
    let hours = by_hour(&facts, state.records.calendar.tz(), service_level);
    let labelled: Vec<(String, Hour)> = hours
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("{i}:00"), *h))
        .collect();
    let offered = stats.answered + stats.abandoned + stats.voicemail;
    Ok(Board {
        waiting,
        alerts: alerts.into_iter().map(|a| alert_line(state, a)).collect(),
        alert_log: alert_log
            .into_iter()
            .map(|a| alert_line(state, a))
            .collect(),
        longest: super::pages::duration(longest),
        queue,
        operators: presences(state, &names).await,
        calls: lines.into_iter().map(|(_, line)| line).collect(),
        clustered: !me.is_empty(),
        today: Today {
            total: stats.total,
            answered: stats.answered,
            abandoned: stats.abandoned,
            voicemail: stats.voicemail + stats.after_hours_voicemail,
            service_level: percent(stats.service_level),
            average_wait: stats
                .average_wait_s
                .map_or_else(|| "—".into(), |w| format!("{w:.0} с")),
            abandon_rate: percent((offered > 0).then(|| stats.abandoned as f64 / offered as f64)),
        },
        calls_chart: super::charts::calls(&labelled, 3, "по часам"),
        service_chart: super::charts::service(&labelled, 3, "по часам", service_level.as_secs()),
    })
}

#[derive(Template)]
#[template(path = "supervisor.html")]
struct SupervisorPage {
    user: Option<Who>,
    /// The board's part, rendered.
    part: String,
}

#[derive(Template)]
#[template(path = "board.html")]
struct BoardPart<'a> {
    board: &'a Board,
    /// The token for the presence buttons; none: no buttons.
    csrf: Option<&'a str>,
}

/// Whether `who` gets the presence buttons.
fn buttons(who: &Signed<can::LiveRead>) -> bool {
    allowed(who.session.user.role, Action::OperatorPresence)
}

/// `/supervisor`: the wallboard.
pub async fn page(
    State(state): State<ConsoleState>,
    who: Signed<can::LiveRead>,
) -> Result<Response, ConsoleError> {
    Ok(Html(
        SupervisorPage {
            part: cached(&state)
                .await?
                .part(&who.session.csrf, buttons(&who))?,
            user: Some(Who::of(&who.session)),
        }
        .render()?,
    )
    .into_response())
}

/// `/supervisor/board`: the board alone, for the page to put in place.
pub async fn part(
    State(state): State<ConsoleState>,
    who: Signed<can::LiveRead>,
) -> Result<Response, ConsoleError> {
    let chunks = cached(&state)
        .await?
        .chunks(&who.session.csrf, buttons(&who))?;
    let body = Body::from_stream(futures::stream::iter(
        chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
    ));
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

/// `/supervisor/events`: the live feed, as server-sent events, for the page to know when
/// to fetch the board again.
pub async fn events(
    State(state): State<ConsoleState>,
    _who: Signed<can::LiveRead>,
) -> Result<Response, ConsoleError> {
    super::feed(&state, |_| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        let today = Today {
            total: 0,
            answered: 0,
            abandoned: 0,
            voicemail: 0,
            service_level: "—".into(),
            average_wait: "—".into(),
            abandon_rate: "—".into(),
        };
        let operator = |ext: &str| Presence {
            extension: ext.into(),
            name: format!("Оператор {ext}"),
            state: "свободен",
            reason: None,
            since: "0:01".into(),
            registered: true,
            answered: 0,
        };
        Reading {
            at: Instant::now(),
            board: Board {
                alerts: Vec::new(),
                alert_log: Vec::new(),
                waiting: 0,
                longest: "0:00".into(),
                queue: Vec::new(),
                operators: vec![operator("1001"), operator("1002")],
                calls: Vec::new(),
                today,
                clustered: false,
                calls_chart: String::new(),
                service_chart: String::new(),
            },
            parts: Default::default(),
        }
    }

    /// One rendering serves every viewer, each with their own token in every form.
    #[test]
    fn each_viewer_gets_their_own_token_from_one_rendering() {
        let r = reading();
        let a = r.part("token-of-a", true).unwrap();
        let first = r.parts[1].get().unwrap().clone();
        let b = r.part("token-of-b", true).unwrap();
        assert!(Arc::ptr_eq(&first, r.parts[1].get().unwrap()));
        // The chunks share the rendering's memory.
        let chunks = r.chunks("token-of-b", true).unwrap();
        assert_eq!(chunks[0].as_ptr(), first[0].as_ptr());
        assert_eq!(a.matches(r#"name="csrf" value="token-of-a""#).count(), 2);
        assert_eq!(b.matches(r#"name="csrf" value="token-of-b""#).count(), 2);
        for html in [&a, &b] {
            assert!(!html.contains(CSRF_SLOT));
        }
        assert!(!a.contains("token-of-b"));
        let none = r.part("token-of-c", false).unwrap();
        assert!(!none.contains("name=\"csrf\"") && !none.contains("token-of-c"));
        assert!(none.contains("Оператор 1002"));
    }
}
