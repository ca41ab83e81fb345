//! Statistics for a period (`/stats`): the figures of the API's `/stats` in words, calls and
//! the service level day by day, the §8.2 satisfaction level, and ATM incidents by ATM and
//! by category. Counts only, no customer's data: the admin sees it too.

use super::journal::day_start;
use super::pages::Who;
use super::session::Signed;
use super::{ConsoleError, ConsoleState};
use crate::records::access::can;
use crate::records::hourly::{by_day, Hour};
use crate::store::stats::Satisfaction;
use askama::Template;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use chrono::{Days, NaiveDate, Utc};
use serde::Deserialize;

/// The longest period one page charts, day by day.
const MAX_DAYS: u64 = 366;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Period {
    from: String,
    to: String,
}

/// A figure with its label.
struct Tile {
    id: &'static str,
    label: &'static str,
    value: String,
}

struct AtmLine {
    id: String,
    address: String,
    faults: i64,
    security: i64,
    open: i64,
}

#[derive(Template)]
#[template(path = "stats.html")]
struct StatsPage {
    user: Option<Who>,
    from: String,
    to: String,
    tiles: Vec<Tile>,
    satisfaction: String,
    calls_chart: String,
    service_chart: String,
    atms: Vec<AtmLine>,
    categories: Vec<(String, &'static str, i64)>,
}

fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{:.1} %", v * 100.0))
}

fn seconds(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.0} с"))
}

fn satisfaction(s: Option<Satisfaction>, complaints: i64, repeat: i64) -> String {
    let level = match s {
        None => return "жалоб за период не было".into(),
        Some(Satisfaction::High) => "высокий",
        Some(Satisfaction::Medium) => "средний",
        Some(Satisfaction::Low) => "низкий",
    };
    format!(
        "{level}: повторных жалоб {repeat} из {complaints} ({:.0} %; высокий — до 10 %, средний — до 40 %)",
        repeat as f64 * 100.0 / complaints.max(1) as f64
    )
}

/// `/stats?from=гггг-мм-дд&to=гггг-мм-дд`: both days included; the last 7 days by default.
pub async fn page(
    State(state): State<ConsoleState>,
    who: Signed<can::StatsRead>,
    Query(p): Query<Period>,
) -> Result<Response, ConsoleError> {
    let cal = &state.records.calendar;
    let tz = cal.tz();
    let today = cal.local_date(Utc::now());
    let parse = |field: &str, v: &str, default: NaiveDate| -> Result<NaiveDate, ConsoleError> {
        if v.trim().is_empty() {
            return Ok(default);
        }
        NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").map_err(|_| {
            ConsoleError::BadRequest(format!("`{field}`: дата в виде гггг-мм-дд, а не {v:?}"))
        })
    };
    let last = parse("to", &p.to, today)?;
    let first = parse("from", &p.from, last - Days::new(6))?;
    if last < first {
        return Err(ConsoleError::BadRequest(
            "`to`: конец периода раньше начала".into(),
        ));
    }
    let days = (last - first).num_days() as u64 + 1;
    if days > MAX_DAYS {
        return Err(ConsoleError::BadRequest(format!(
            "`from`: период длиннее {MAX_DAYS} дней"
        )));
    }
    let day =
        |d: NaiveDate, plus: u64| day_start("from", &d.format("%Y-%m-%d").to_string(), tz, plus);
    let from = day(first, 0)?.expect("a date");
    let to = day(last, 1)?.expect("a date");
    let store = &state.records.store;
    let sl = state.records.settings.service_level;
    let s = crate::store::stats::compute(store, from, to, sl).await?;
    let facts = crate::store::stats::call_facts(store, from, to).await?;
    let buckets: Vec<(String, Hour)> = by_day(&facts, tz, sl, first, days as usize)
        .into_iter()
        .enumerate()
        .map(|(i, h)| ((first + Days::new(i as u64)).format("%d.%m").to_string(), h))
        .collect();
    let every = (buckets.len() / 8).max(1);
    let offered = s.answered + s.abandoned + s.voicemail;
    let tiles = vec![
        Tile {
            id: "total",
            label: "Звонков",
            value: s.total.to_string(),
        },
        Tile {
            id: "answered",
            label: "Принято",
            value: s.answered.to_string(),
        },
        Tile {
            id: "abandoned",
            label: "Потеряно",
            value: s.abandoned.to_string(),
        },
        Tile {
            id: "voicemail",
            label: "Голосовая почта",
            value: (s.voicemail + s.after_hours_voicemail).to_string(),
        },
        Tile {
            id: "service-level",
            label: "Уровень обслуживания",
            value: format!("{} (за {} с)", percent(s.service_level), s.service_level_s),
        },
        Tile {
            id: "average-wait",
            label: "Среднее ожидание",
            value: seconds(s.average_wait_s),
        },
        Tile {
            id: "longest-wait",
            label: "Дольше всех ждал",
            value: seconds(s.longest_wait_s),
        },
        Tile {
            id: "abandon-rate",
            label: "Доля потерянных",
            value: percent((offered > 0).then(|| s.abandoned as f64 / offered as f64)),
        },
        Tile {
            id: "repeat",
            label: "Повторные обращения",
            value: percent(s.repeat_share),
        },
        Tile {
            id: "complaints",
            label: "Жалобы",
            value: s.complaints.to_string(),
        },
    ];
    let tickets = crate::store::tickets::stats(store, from, to).await?;
    let page = StatsPage {
        user: Some(Who::of(&who.session)),
        from: first.format("%Y-%m-%d").to_string(),
        to: last.format("%Y-%m-%d").to_string(),
        tiles,
        satisfaction: satisfaction(s.satisfaction, s.complaints, s.repeat_complaints),
        calls_chart: super::charts::calls(&buckets, every, "по дням"),
        service_chart: super::charts::service(&buckets, every, "по дням", s.service_level_s),
        atms: tickets
            .by_atm
            .into_iter()
            .map(|a| AtmLine {
                id: a.atm_id,
                address: a.address,
                faults: a.faults,
                security: a.security,
                open: a.open,
            })
            .collect(),
        categories: tickets
            .by_category
            .into_iter()
            .map(|c| (c.name, super::pages::ticket_kind_name(c.kind), c.count))
            .collect(),
    };
    Ok(Html(page.render()?).into_response())
}
