//! Working-hours calendar (SPEC §4).
//!
//! The call centre's regime is set by an order of the bank ("Режим работы CALL-центра
//! устанавливается приказом"), so nothing here is hard-coded: the `[calendar]` table of
//! `hotline.toml` gives the time zone, the hours of each weekday and how much shorter a
//! pre-holiday day is, and a directory holds one data file per year of the Russian production
//! calendar (public holidays, days off moved by the government's yearly decree, Saturdays made
//! working days, pre-holiday days). Adding next year is a new data file, not a code change.
//!
//! The calendar answers three questions for the rest of the hotline:
//! * is the call centre open now ([`Calendar::is_open`]) — which greeting to play;
//! * what are the weekday hours ([`Calendar::weekday_hours`]) — the after-hours prompt text
//!   «Мы работаем в будние дни с __ до __»;
//! * when is a deadline counted in working days ([`Calendar::add_working_days`],
//!   [`Calendar::next_working_day_deadline`], [`Calendar::deadline_in_working_days`]) — the
//!   voicemail "no later than the next working day" and the 3/5/7/10 working-day deadlines.
//!
//! All instants are UTC ([`DateTime<Utc>`]); local dates and wall-clock hours are in the
//! configured time zone. Outside the loaded years only weekends and the weekly hours count
//! (no holidays are known there): callers check [`Calendar::covers`] and warn.
//!
//! This module does no I/O except reading the year files in [`Calendar::load`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::Deserialize;

/// Opening and closing wall-clock time of one day: open inclusive, close exclusive.
pub type DayHours = (NaiveTime, NaiveTime);

/// Weekly hours parsed from [`WeekHours`], indexed by [`Weekday::num_days_from_monday`].
pub type WeekSchedule = [Option<DayHours>; 7];

/// The longest run of consecutive non-working days [`Calendar::add_working_days`] scans before
/// giving up. Validated data cannot reach it (at least one weekday has hours, so only loaded
/// year files can close whole weeks, and it would take ten entirely closed years); it exists so
/// that no configuration can make the scan run unbounded.
const MAX_NON_WORKING_RUN: u32 = 366 * 10;

const WEEKDAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const WEEKDAY_NAMES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// `[calendar]` table of `hotline.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// IANA time zone of the call centre; local dates and hours are read in it.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Directory of year files: every `*.toml` in it is one year of the production calendar.
    /// Relative paths are taken from the working directory.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Hours per weekday. Giving the table replaces the default whole: a day left out is closed.
    #[serde(default)]
    pub hours: WeekHours,
    /// How much earlier a pre-holiday (shortened) day closes. Labour Code art. 95: the day
    /// before a non-working holiday is one hour shorter.
    #[serde(default = "default_shortened_by_minutes")]
    pub shortened_by_minutes: u32,
}

fn default_time_zone() -> String {
    "Europe/Moscow".to_owned()
}

fn default_dir() -> PathBuf {
    PathBuf::from("sip-config/calendar")
}

fn default_shortened_by_minutes() -> u32 {
    60
}

impl Default for CalendarConfig {
    fn default() -> Self {
        Self {
            time_zone: default_time_zone(),
            dir: default_dir(),
            hours: WeekHours::default(),
            shortened_by_minutes: default_shortened_by_minutes(),
        }
    }
}

/// `[calendar.hours]`: `"HH:MM-HH:MM"` per weekday; an absent day is closed.
///
/// There is deliberately no `#[serde(default)]` on the struct: a configured table lists the
/// open days, and a day it leaves out is closed rather than silently getting default hours.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeekHours {
    pub mon: Option<String>,
    pub tue: Option<String>,
    pub wed: Option<String>,
    pub thu: Option<String>,
    pub fri: Option<String>,
    pub sat: Option<String>,
    pub sun: Option<String>,
}

impl Default for WeekHours {
    /// Monday to Friday 09:00-18:00, Saturday and Sunday closed.
    fn default() -> Self {
        let day = || Some("09:00-18:00".to_owned());
        Self {
            mon: day(),
            tue: day(),
            wed: day(),
            thu: day(),
            fri: day(),
            sat: None,
            sun: None,
        }
    }
}

impl WeekHours {
    /// Parses every day's `"HH:MM-HH:MM"`; an error names the key (`calendar.hours.mon`).
    pub fn parse(&self) -> Result<WeekSchedule, CalendarError> {
        let days = [
            &self.mon, &self.tue, &self.wed, &self.thu, &self.fri, &self.sat, &self.sun,
        ];
        let mut week: WeekSchedule = [None; 7];
        for (i, day) in days.iter().enumerate() {
            if let Some(text) = day {
                week[i] = Some(parse_day_hours(WEEKDAY_KEYS[i], text)?);
            }
        }
        Ok(week)
    }
}

fn parse_day_hours(day_key: &str, text: &str) -> Result<DayHours, CalendarError> {
    let bad = |reason: &str| CalendarError::BadHours {
        key: format!("calendar.hours.{day_key}"),
        value: text.to_owned(),
        reason: reason.to_owned(),
    };
    let (open, close) = text
        .split_once('-')
        .ok_or_else(|| bad("expected \"HH:MM-HH:MM\""))?;
    let time = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M");
    let open = time(open).map_err(|_| bad("expected \"HH:MM-HH:MM\""))?;
    // "24:00" closes at the end of the day (a line open round the clock): kept as the
    // day's last instant, since a time of day has no 24:00.
    let close = if close.trim() == "24:00" {
        NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).expect("a valid time")
    } else {
        time(close).map_err(|_| bad("expected \"HH:MM-HH:MM\""))?
    };
    if open >= close {
        return Err(bad("the opening time must be before the closing time"));
    }
    Ok((open, close))
}

/// Everything that can be wrong with the calendar's configuration or data. Each message names
/// the file and key, so that whoever edits the data finds the line to fix.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("`calendar.time_zone`: {value:?} is not a known IANA time zone")]
    BadTimeZone { value: String },
    #[error("`{key}`: {value:?}: {reason}")]
    BadHours {
        key: String,
        value: String,
        reason: String,
    },
    #[error("`calendar.hours`: every day is closed; at least one day needs hours")]
    NoOpenDay,
    #[error(
        "`calendar.shortened_by_minutes`: {minutes} minutes leaves nothing of {day}'s \
         {open}-{close}",
        open = .hours.0.format("%H:%M"),
        close = .hours.1.format("%H:%M")
    )]
    ShortenedTooLong {
        minutes: u32,
        day: &'static str,
        hours: DayHours,
    },
    #[error("{}: {error}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("{}: {message}", .path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("{file}: `{key}`: {value} is not a date (expected \"YYYY-MM-DD\")")]
    BadDate {
        file: String,
        key: String,
        value: String,
    },
    #[error("{file}: `{key}`: date {date} is not in year {year}")]
    WrongYear {
        file: String,
        key: String,
        date: NaiveDate,
        year: i32,
    },
    #[error("{file}: `{key}`: {date} is listed twice")]
    DuplicateDate {
        file: String,
        key: String,
        date: NaiveDate,
    },
    #[error("{file}: {date} is both in `holidays` and in `working_days`")]
    HolidayAndWorkingDay { file: String, date: NaiveDate },
    #[error(
        "{file}: `{key}`: {date} is a {weekday}; `working_days` lists only Saturdays and \
         Sundays made working days"
    )]
    WorkingDayNotWeekend {
        file: String,
        key: String,
        date: NaiveDate,
        weekday: &'static str,
    },
    #[error(
        "{file}: `{key}`: {date} is not a working day (a holiday, or a weekend not in \
         `working_days`), so it cannot be shortened"
    )]
    ShortenedNotWorking {
        file: String,
        key: String,
        date: NaiveDate,
    },
    #[error("{second}: year {year} is already loaded from {first}")]
    DuplicateYear {
        year: i32,
        first: String,
        second: String,
    },
}

/// One year of the production calendar: the exceptions to "Saturday and Sunday off".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YearData {
    year: i32,
    holidays: BTreeSet<NaiveDate>,
    working_days: BTreeSet<NaiveDate>,
    shortened_days: BTreeSet<NaiveDate>,
}

/// The year file as written; dates stay raw so that errors can name `holidays[3]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YearFile {
    year: i32,
    #[serde(default)]
    holidays: Vec<toml::Value>,
    #[serde(default)]
    working_days: Vec<toml::Value>,
    #[serde(default)]
    shortened_days: Vec<toml::Value>,
}

impl YearData {
    /// Builds and validates a year from dates (for tests and callers without files).
    /// Errors name the year as `year 2026`.
    pub fn new(
        year: i32,
        holidays: &[NaiveDate],
        working_days: &[NaiveDate],
        shortened_days: &[NaiveDate],
    ) -> Result<Self, CalendarError> {
        Self::build(
            &format!("year {year}"),
            year,
            holidays.to_vec(),
            working_days.to_vec(),
            shortened_days.to_vec(),
        )
    }

    /// Parses the text of a year file; `file` is how errors name it (its path).
    pub fn parse(file: &str, text: &str) -> Result<Self, CalendarError> {
        let raw: YearFile = toml::from_str(text).map_err(|e| CalendarError::Syntax {
            path: PathBuf::from(file),
            message: e.to_string(),
        })?;
        let dates = |key: &str, values: &[toml::Value]| -> Result<Vec<NaiveDate>, CalendarError> {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    value_to_date(v).ok_or_else(|| CalendarError::BadDate {
                        file: file.to_owned(),
                        key: format!("{key}[{i}]"),
                        value: match v {
                            toml::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                    })
                })
                .collect()
        };
        Self::build(
            file,
            raw.year,
            dates("holidays", &raw.holidays)?,
            dates("working_days", &raw.working_days)?,
            dates("shortened_days", &raw.shortened_days)?,
        )
    }

    fn build(
        file: &str,
        year: i32,
        holidays: Vec<NaiveDate>,
        working_days: Vec<NaiveDate>,
        shortened_days: Vec<NaiveDate>,
    ) -> Result<Self, CalendarError> {
        let collect =
            |key: &str, list: Vec<NaiveDate>| -> Result<BTreeSet<NaiveDate>, CalendarError> {
                let mut set = BTreeSet::new();
                for (i, date) in list.into_iter().enumerate() {
                    let key = format!("{key}[{i}]");
                    if date.year() != year {
                        return Err(CalendarError::WrongYear {
                            file: file.to_owned(),
                            key,
                            date,
                            year,
                        });
                    }
                    if !set.insert(date) {
                        return Err(CalendarError::DuplicateDate {
                            file: file.to_owned(),
                            key,
                            date,
                        });
                    }
                }
                Ok(set)
            };
        let holidays = collect("holidays", holidays)?;
        let working_list = working_days.clone();
        let working_days = collect("working_days", working_days)?;
        let shortened_list = shortened_days.clone();
        let shortened_days = collect("shortened_days", shortened_days)?;

        for (i, date) in working_list.iter().enumerate() {
            if holidays.contains(date) {
                return Err(CalendarError::HolidayAndWorkingDay {
                    file: file.to_owned(),
                    date: *date,
                });
            }
            if !is_weekend(*date) {
                return Err(CalendarError::WorkingDayNotWeekend {
                    file: file.to_owned(),
                    key: format!("working_days[{i}]"),
                    date: *date,
                    weekday: weekday_name(date.weekday()),
                });
            }
        }
        for (i, date) in shortened_list.iter().enumerate() {
            let nationally_working =
                !holidays.contains(date) && (!is_weekend(*date) || working_days.contains(date));
            if !nationally_working {
                return Err(CalendarError::ShortenedNotWorking {
                    file: file.to_owned(),
                    key: format!("shortened_days[{i}]"),
                    date: *date,
                });
            }
        }
        Ok(Self {
            year,
            holidays,
            working_days,
            shortened_days,
        })
    }

    /// The calendar year this data describes.
    pub fn year(&self) -> i32 {
        self.year
    }
}

/// Accepts both a quoted `"2026-01-01"` and a TOML local date `2026-01-01`.
fn value_to_date(value: &toml::Value) -> Option<NaiveDate> {
    match value {
        toml::Value::String(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok(),
        toml::Value::Datetime(dt) if dt.time.is_none() && dt.offset.is_none() => {
            let d = dt.date?;
            NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
        }
        _ => None,
    }
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

fn weekday_name(day: Weekday) -> &'static str {
    WEEKDAY_NAMES[day.num_days_from_monday() as usize]
}

/// The loaded working-hours calendar. Cheap to query; build it once at start-up.
#[derive(Debug, Clone)]
pub struct Calendar {
    tz: Tz,
    week: WeekSchedule,
    /// Hours of a Saturday or Sunday made a working day (see [`Calendar::hours_on`]).
    transferred_hours: DayHours,
    shortened_by: TimeDelta,
    years: BTreeMap<i32, YearData>,
}

impl Calendar {
    /// Loads the calendar: parses the time zone and hours of `cfg` and reads every `*.toml` in
    /// `cfg.dir` (in name order) as one year. A missing directory is an error; an empty one is
    /// not (every year is then uncovered, which [`Calendar::covers`] reports).
    pub fn load(cfg: &CalendarConfig) -> Result<Self, CalendarError> {
        let tz = parse_tz(&cfg.time_zone)?;
        let week = cfg.hours.parse()?;

        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |error| CalendarError::Io { path, error }
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&cfg.dir).map_err(io_err(&cfg.dir))? {
            let path = entry.map_err(io_err(&cfg.dir))?.path();
            if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();

        let mut years = Vec::with_capacity(files.len());
        let mut seen: BTreeMap<i32, String> = BTreeMap::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
            let name = path.display().to_string();
            let data = YearData::parse(&name, &text)?;
            if let Some(first) = seen.get(&data.year) {
                return Err(CalendarError::DuplicateYear {
                    year: data.year,
                    first: first.clone(),
                    second: name,
                });
            }
            seen.insert(data.year, name);
            years.push(data);
        }
        Self::from_parts(tz, week, cfg.shortened_by_minutes, years)
    }

    /// Builds a calendar from parsed parts (tests, or data from elsewhere than files).
    /// Checks what [`Calendar::load`] checks beyond the year data itself: every day's hours
    /// open before they close, at least one day has hours (so a run of working-day counting
    /// always ends), the shortening leaves part of every open day, and no year comes twice.
    pub fn from_parts(
        tz: Tz,
        week: WeekSchedule,
        shortened_by_minutes: u32,
        years: Vec<YearData>,
    ) -> Result<Self, CalendarError> {
        for (i, day) in week.iter().enumerate() {
            if let Some((open, close)) = day {
                if open >= close {
                    return Err(CalendarError::BadHours {
                        key: format!("calendar.hours.{}", WEEKDAY_KEYS[i]),
                        value: format!("{}-{}", open.format("%H:%M"), close.format("%H:%M")),
                        reason: "the opening time must be before the closing time".to_owned(),
                    });
                }
            }
        }
        // A Saturday made a working day replaces some weekday's work, and which one is not
        // knowable from the data: it gets Monday's hours, or those of the first day after
        // Monday that has any.
        let transferred_hours = week
            .iter()
            .flatten()
            .next()
            .copied()
            .ok_or(CalendarError::NoOpenDay)?;
        let shortened_by = TimeDelta::minutes(i64::from(shortened_by_minutes));
        for (i, day) in week.iter().enumerate() {
            if let Some(hours @ (open, close)) = *day {
                if close - open <= shortened_by {
                    return Err(CalendarError::ShortenedTooLong {
                        minutes: shortened_by_minutes,
                        day: WEEKDAY_NAMES[i],
                        hours,
                    });
                }
            }
        }

        let mut by_year = BTreeMap::new();
        for data in years {
            let year = data.year;
            if by_year.insert(year, data).is_some() {
                return Err(CalendarError::DuplicateYear {
                    year,
                    first: "an earlier entry".to_owned(),
                    second: format!("year {year}"),
                });
            }
        }
        Ok(Self {
            tz,
            week,
            transferred_hours,
            shortened_by,
            years: by_year,
        })
    }

    /// The configured time zone.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The call centre's local date at `at`.
    pub fn local_date(&self, at: DateTime<Utc>) -> NaiveDate {
        at.with_timezone(&self.tz).date_naive()
    }

    /// Local midnight of the day of `at` ("today" on the supervisor's screens).
    pub fn start_of_day(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        use chrono::TimeZone;
        let midnight = self.local_date(at).and_hms_opt(0, 0, 0).expect("midnight");
        self.tz
            .from_local_datetime(&midnight)
            .earliest()
            .map_or(at, |t| t.with_timezone(&Utc))
    }

    /// Whether a year file for `year` was loaded. Outside the loaded years no holidays are
    /// known and only weekends and the weekly hours count: the caller should warn.
    pub fn covers(&self, year: i32) -> bool {
        self.years.contains_key(&year)
    }

    /// What to warn about at `now`: the current year has no file, or (from November on)
    /// the next one has none yet. A missing year silently makes its holidays working days.
    pub fn coverage_warning(&self, now: DateTime<Utc>) -> Option<String> {
        let today = self.local_date(now);
        let year = today.year();
        if !self.covers(year) {
            Some(format!(
                "no calendar file for {year}: only weekends count as days off"
            ))
        } else if today.month() >= 11 && !self.covers(year + 1) {
            Some(format!(
                "no calendar file for {} yet: add it before 1 January, or its holidays count as working days",
                year + 1
            ))
        } else {
            None
        }
    }

    /// The loaded years, ascending.
    pub fn years(&self) -> Vec<i32> {
        self.years.keys().copied().collect()
    }

    /// A holiday or moved day off is not a working day; a Saturday or Sunday listed in
    /// `working_days` is; any other day is a working day when the weekly hours open it.
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        if let Some(data) = self.years.get(&date.year()) {
            if data.holidays.contains(&date) {
                return false;
            }
            if data.working_days.contains(&date) {
                return true;
            }
        }
        self.week[date.weekday().num_days_from_monday() as usize].is_some()
    }

    /// Whether `date` is a pre-holiday day in the loaded data (it closes earlier).
    pub fn is_shortened(&self, date: NaiveDate) -> bool {
        self.years
            .get(&date.year())
            .is_some_and(|data| data.shortened_days.contains(&date))
    }

    /// Opening hours on `date`, or `None` on a non-working day.
    ///
    /// A Saturday or Sunday made a working day by a transfer gets Monday's hours (or the first
    /// open day's after Monday if Monday is closed): the day it stands in for is not in the
    /// data. A shortened day closes `shortened_by_minutes` earlier.
    pub fn hours_on(&self, date: NaiveDate) -> Option<DayHours> {
        if !self.is_working_day(date) {
            return None;
        }
        let (open, close) = self.week[date.weekday().num_days_from_monday() as usize]
            .unwrap_or(self.transferred_hours);
        if self.is_shortened(date) {
            Some((open, close - self.shortened_by))
        } else {
            Some((open, close))
        }
    }

    /// Whether the call centre is open at `at`: within the local day's hours, opening time
    /// included, closing time excluded.
    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.tz);
        self.hours_on(local.date_naive())
            .is_some_and(|(open, close)| open <= local.time() && local.time() < close)
    }

    /// Whether the call centre is open at `at`, and when that changes: the closing time if
    /// open, the next opening if closed (`None`: no opening within a year). Local time.
    pub fn hours_now(&self, at: DateTime<Utc>) -> (bool, Option<NaiveDateTime>) {
        let local = at.with_timezone(&self.tz);
        let today = local.date_naive();
        if let Some((_, close)) = self.hours_on(today).filter(|_| self.is_open(at)) {
            return (true, Some(today.and_time(close)));
        }
        let mut date = today;
        for _ in 0..=366 {
            if let Some((open, _)) = self.hours_on(date) {
                if date > today || local.time() < open {
                    return (false, Some(date.and_time(open)));
                }
            }
            let Some(next) = date.succ_opt() else { break };
            date = next;
        }
        (false, None)
    }

    /// Whether the call centre is open at `at` and until when, or when it opens next, in
    /// local time: for the start-up log and `check-config`, so that whoever starts the
    /// hotline sees at once which greeting callers get.
    pub fn describe(&self, at: DateTime<Utc>) -> String {
        let now = at.with_timezone(&self.tz).format("%a %d.%m.%Y %H:%M");
        match self.hours_now(at) {
            (true, Some(close)) => format!(
                "open now ({now} {}) until {}",
                self.tz,
                close.format("%H:%M")
            ),
            (_, Some(open)) => format!(
                "closed now ({now} {}); opens {} at {}",
                self.tz,
                open.format("%a %d.%m.%Y"),
                open.format("%H:%M")
            ),
            (_, None) => format!("closed now ({now} {}); no opening within a year", self.tz),
        }
    }

    /// The hours Monday to Friday share, for the after-hours prompt «Мы работаем в будние дни
    /// с __ до __»; `None` when they differ or a weekday is closed (the prompt would be wrong).
    pub fn weekday_hours(&self) -> Option<DayHours> {
        let first = self.week[0]?;
        self.week[1..5]
            .iter()
            .all(|day| *day == Some(first))
            .then_some(first)
    }

    /// The `n`-th working day after `date`: `n = 0` is `date` itself (working or not), `n = 1`
    /// the next working day after it. Deadlines "in N working days" count from here.
    ///
    /// It always ends: validated data keeps some day of the week open, and a scan that meets
    /// more than ten years of consecutive non-working days (or the end of chrono's date range)
    /// stops and returns the day it reached.
    pub fn add_working_days(&self, date: NaiveDate, n: u32) -> NaiveDate {
        let mut day = date;
        let mut left = n;
        let mut closed_run = 0u32;
        while left > 0 {
            let Some(next) = day.succ_opt() else {
                return day;
            };
            day = next;
            if self.is_working_day(day) {
                left -= 1;
                closed_run = 0;
            } else {
                closed_run += 1;
                if closed_run > MAX_NON_WORKING_RUN {
                    return day;
                }
            }
        }
        day
    }

    /// The voicemail deadline "no later than the next working day" (SPEC §2.6): the closing
    /// time of the first working day after the local date of `at`, as UTC.
    pub fn next_working_day_deadline(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        self.deadline_in_working_days(at, 1)
    }

    /// The closing time of [`add_working_days`](Self::add_working_days)`(local date of at, n)`,
    /// as UTC. A deadline never falls on a day off: with `n = 0` on a non-working day it is the
    /// next working day's closing time.
    pub fn deadline_in_working_days(&self, at: DateTime<Utc>, n: u32) -> DateTime<Utc> {
        let mut day = self.add_working_days(self.local_date(at), n);
        if !self.is_working_day(day) {
            day = self.add_working_days(day, 1);
        }
        let close = self
            .hours_on(day)
            .map_or(self.transferred_hours.1, |(_, close)| close);
        self.local_to_utc(day.and_time(close))
    }

    /// A local wall-clock time as UTC. In a DST fold the earlier instant is taken (a deadline
    /// is never later than meant); in a DST gap the offset in force before the gap is used.
    fn local_to_utc(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => t.with_timezone(&Utc),
            LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
            LocalResult::None => {
                let before = local - TimeDelta::days(1);
                let offset = self.tz.offset_from_utc_datetime(&before).fix();
                let utc = local - TimeDelta::seconds(i64::from(offset.local_minus_utc()));
                Utc.from_utc_datetime(&utc)
            }
        }
    }
}

fn parse_tz(name: &str) -> Result<Tz, CalendarError> {
    name.parse::<Tz>().map_err(|_| CalendarError::BadTimeZone {
        value: name.to_owned(),
    })
}

impl fmt::Display for YearData {
    /// A one-line summary for logs: `2026: 19 holidays, 0 working days, 4 shortened days`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} holidays, {} working days, {} shortened days",
            self.year,
            self.holidays.len(),
            self.working_days.len(),
            self.shortened_days.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn utc(y: i32, m: u32, day: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.from_utc_datetime(&d(y, m, day).and_hms_opt(h, min, 0).unwrap())
    }

    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn shipped_dir() -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/calendar"))
    }

    /// The calendar as shipped: default config, the real `sip-config/calendar`.
    fn shipped() -> Calendar {
        let cfg = CalendarConfig {
            dir: shipped_dir(),
            ..CalendarConfig::default()
        };
        Calendar::load(&cfg).unwrap()
    }

    /// Russia's 2025 production calendar (Government Decree of 4 Oct 2024 No. 1335): Saturday
    /// 1 November was a working day, moved to Monday 3 November.
    fn year_2025() -> YearData {
        let holidays = [
            d(2025, 1, 1),
            d(2025, 1, 2),
            d(2025, 1, 3),
            d(2025, 1, 4),
            d(2025, 1, 5),
            d(2025, 1, 6),
            d(2025, 1, 7),
            d(2025, 1, 8),
            d(2025, 2, 23),
            d(2025, 3, 8),
            d(2025, 5, 1),
            d(2025, 5, 2),
            d(2025, 5, 8),
            d(2025, 5, 9),
            d(2025, 6, 12),
            d(2025, 6, 13),
            d(2025, 11, 3),
            d(2025, 11, 4),
            d(2025, 12, 31),
        ];
        let shortened = [
            d(2025, 3, 7),
            d(2025, 4, 30),
            d(2025, 6, 11),
            d(2025, 11, 1),
        ];
        YearData::new(2025, &holidays, &[d(2025, 11, 1)], &shortened).unwrap()
    }

    #[test]
    fn describes_open_and_the_next_opening() {
        let c = with_2025();
        // Friday 7 March 2025 is shortened (08:00 Moscow is 05:00 UTC, 17:00 is 14:00 UTC).
        let open = c.describe(utc(2025, 3, 7, 7, 0));
        assert!(open.starts_with("open now (Fri 07.03.2025 10:00"), "{open}");
        assert!(open.ends_with("until 17:00"), "{open}");
        // Friday evening: Saturday 8 March is a holiday, the next opening is Monday.
        let closed = c.describe(utc(2025, 3, 7, 16, 0));
        assert!(closed.contains("opens Mon 10.03.2025 at 09:00"), "{closed}");
        // Early in the morning of a working day: today.
        let early = c.describe(utc(2025, 3, 11, 3, 0));
        assert!(early.contains("opens Tue 11.03.2025 at 09:00"), "{early}");
    }

    fn with_2025() -> Calendar {
        Calendar::from_parts(
            chrono_tz::Europe::Moscow,
            WeekHours::default().parse().unwrap(),
            60,
            vec![year_2025()],
        )
        .unwrap()
    }

    fn working_days_in(cal: &Calendar, year: i32) -> usize {
        d(year, 1, 1)
            .iter_days()
            .take_while(|day| day.year() == year)
            .filter(|day| cal.is_working_day(*day))
            .count()
    }

    #[test]
    fn shipped_2026_has_247_working_days() {
        let cal = shipped();
        assert!(cal.covers(2026));
        assert!(cal.years().contains(&2026));
        assert_eq!(working_days_in(&cal, 2026), 247);
    }

    #[test]
    fn shipped_2026_working_hours_norm_is_1972() {
        // The official norm for a 40-hour week: 247 eight-hour days less four shortened hours.
        let cal = shipped();
        let minutes: i64 = d(2026, 1, 1)
            .iter_days()
            .take_while(|day| day.year() == 2026)
            .filter_map(|day| cal.hours_on(day))
            .map(|(open, close)| (close - open).num_minutes() - 60) // a lunch hour
            .sum();
        assert_eq!(minutes, 1972 * 60);
    }

    #[test]
    fn shipped_2026_days() {
        let cal = shipped();
        // Transferred days off: from Saturday 3 Jan to Friday 9 Jan, from Sunday 4 Jan to 31 Dec.
        assert!(!cal.is_working_day(d(2026, 1, 9)));
        assert!(!cal.is_working_day(d(2026, 12, 31)));
        assert!(cal.is_working_day(d(2026, 1, 12)));
        assert!(cal.is_working_day(d(2026, 12, 30)));
        // 8 March is a Sunday: the day off moves to Monday 9 March.
        assert!(!cal.is_working_day(d(2026, 3, 9)));
        assert!(!cal.is_working_day(d(2026, 2, 23)));
        assert!(!cal.is_working_day(d(2026, 5, 11)));
        assert!(!cal.is_working_day(d(2026, 11, 4)));
        // A plain Saturday.
        assert!(!cal.is_working_day(d(2026, 3, 14)));
        assert_eq!(cal.hours_on(d(2026, 3, 14)), None);
        assert!(cal.is_working_day(d(2026, 3, 10)));
    }

    #[test]
    fn transferred_working_saturday_2025() {
        let cal = with_2025();
        assert!(cal.is_working_day(d(2025, 11, 1)));
        assert!(!cal.is_working_day(d(2025, 11, 3)));
        assert!(!cal.is_working_day(d(2025, 11, 4)));
        assert_eq!(cal.add_working_days(d(2025, 10, 31), 1), d(2025, 11, 1));
        assert_eq!(cal.add_working_days(d(2025, 10, 31), 2), d(2025, 11, 5));
        // Monday's hours, one hour shorter before the 3–4 November days off.
        assert_eq!(cal.hours_on(d(2025, 11, 1)), Some((t(9, 0), t(17, 0))));
        assert_eq!(working_days_in(&cal, 2025), 247);
    }

    #[test]
    fn transferred_saturday_takes_first_open_day_when_monday_closed() {
        let hours = WeekHours {
            mon: None,
            tue: Some("10:00-19:00".into()),
            ..WeekHours::default()
        };
        let cal = Calendar::from_parts(
            chrono_tz::Europe::Moscow,
            hours.parse().unwrap(),
            60,
            vec![year_2025()],
        )
        .unwrap();
        assert_eq!(cal.hours_on(d(2025, 11, 1)), Some((t(10, 0), t(18, 0))));
        assert!(!cal.is_working_day(d(2025, 11, 10)));
        assert_eq!(cal.weekday_hours(), None);
    }

    #[test]
    fn shortened_day_closes_an_hour_early() {
        let cal = shipped();
        assert!(cal.is_shortened(d(2026, 4, 30)));
        assert_eq!(cal.hours_on(d(2026, 4, 30)), Some((t(9, 0), t(17, 0))));
        assert_eq!(cal.hours_on(d(2026, 4, 29)), Some((t(9, 0), t(18, 0))));
        // 16:59 MSK open, 17:00 MSK closed.
        assert!(cal.is_open(utc(2026, 4, 30, 13, 59)));
        assert!(!cal.is_open(utc(2026, 4, 30, 14, 0)));
        for day in [d(2026, 5, 8), d(2026, 6, 11), d(2026, 11, 3)] {
            assert_eq!(cal.hours_on(day), Some((t(9, 0), t(17, 0))), "{day}");
        }
    }

    #[test]
    fn is_open_in_moscow_time() {
        let cal = shipped();
        // Tuesday 10 March 2026; Moscow is UTC+3.
        assert!(!cal.is_open(utc(2026, 3, 10, 5, 59))); // 08:59
        assert!(cal.is_open(utc(2026, 3, 10, 6, 0))); // 09:00
        assert!(cal.is_open(utc(2026, 3, 10, 14, 59))); // 17:59
        assert!(!cal.is_open(utc(2026, 3, 10, 15, 0))); // 18:00
                                                        // The local date decides: 21:30 UTC on the 9th is 00:30 on Tuesday the 10th.
        assert_eq!(cal.local_date(utc(2026, 3, 9, 21, 30)), d(2026, 3, 10));
        // Holiday Monday 9 March and Saturday 14 March: closed all day.
        for h in 0..24 {
            assert!(!cal.is_open(utc(2026, 3, 9, h, 0)), "9 March {h}:00 UTC");
            assert!(!cal.is_open(utc(2026, 3, 14, h, 0)), "14 March {h}:00 UTC");
        }
    }

    #[test]
    fn is_open_in_another_time_zone() {
        let cfg = CalendarConfig {
            time_zone: "Asia/Vladivostok".into(),
            dir: shipped_dir(),
            ..CalendarConfig::default()
        };
        let cal = Calendar::load(&cfg).unwrap();
        assert_eq!(cal.tz(), chrono_tz::Asia::Vladivostok);
        // UTC+10: 23:00 UTC on Monday 9 March is 09:00 on Tuesday the 10th.
        assert!(cal.is_open(utc(2026, 3, 9, 23, 0)));
        assert!(!cal.is_open(utc(2026, 3, 9, 22, 59)));
    }

    #[test]
    fn coverage_warnings() {
        let cal = shipped();
        assert_eq!(cal.coverage_warning(utc(2026, 6, 1, 9, 0)), None);
        assert_eq!(cal.coverage_warning(utc(2027, 6, 1, 9, 0)), None);
        let w = cal.coverage_warning(utc(2027, 11, 2, 9, 0)).unwrap();
        assert!(w.contains("2028"), "{w}");
        let w = cal.coverage_warning(utc(2029, 3, 1, 9, 0)).unwrap();
        assert!(w.contains("no calendar file for 2029"), "{w}");
    }

    #[test]
    fn add_working_days_2026() {
        let cal = shipped();
        assert_eq!(cal.add_working_days(d(2026, 3, 10), 0), d(2026, 3, 10));
        assert_eq!(cal.add_working_days(d(2026, 1, 2), 1), d(2026, 1, 12));
        assert_eq!(cal.add_working_days(d(2026, 5, 8), 1), d(2026, 5, 12));
        assert_eq!(cal.add_working_days(d(2026, 4, 30), 3), d(2026, 5, 6));
        assert_eq!(cal.add_working_days(d(2026, 3, 6), 1), d(2026, 3, 10));
        assert_eq!(cal.add_working_days(d(2026, 3, 10), 10), d(2026, 3, 24));
        // Across the new year into the (provisional) 2027 file: 1–8 January are holidays.
        assert!(cal.covers(2027));
        assert_eq!(cal.add_working_days(d(2026, 12, 30), 1), d(2027, 1, 11));
        // Beyond the loaded years only weekends count: 3 January 2028 is a Monday, which a
        // 2028 file will make a holiday. `check-config` warns about a missing year.
        assert!(!cal.covers(2028));
        assert_eq!(cal.add_working_days(d(2027, 12, 31), 1), d(2028, 1, 3));
    }

    #[test]
    fn voicemail_deadlines() {
        let cal = shipped();
        // Friday 8 May 2026 20:00 MSK → Tuesday 12 May 18:00 MSK.
        assert_eq!(
            cal.next_working_day_deadline(utc(2026, 5, 8, 17, 0)),
            utc(2026, 5, 12, 15, 0)
        );
        // Friday 6 March 10:00 MSK → Tuesday 10 March 18:00 MSK (9 March is a day off).
        assert_eq!(
            cal.next_working_day_deadline(utc(2026, 3, 6, 7, 0)),
            utc(2026, 3, 10, 15, 0)
        );
        // 02:00 MSK on Friday 6 March is still 5 March in UTC: the local date counts.
        assert_eq!(
            cal.next_working_day_deadline(utc(2026, 3, 5, 23, 0)),
            utc(2026, 3, 10, 15, 0)
        );
        // The next working day is shortened: the deadline is its earlier close.
        assert_eq!(
            cal.next_working_day_deadline(utc(2026, 4, 29, 12, 0)),
            utc(2026, 4, 30, 14, 0)
        );
        // n working days; n = 0 on a day off is the next working day's close.
        assert_eq!(
            cal.deadline_in_working_days(utc(2026, 4, 30, 12, 0), 3),
            utc(2026, 5, 6, 15, 0)
        );
        assert_eq!(
            cal.deadline_in_working_days(utc(2026, 3, 10, 12, 0), 0),
            utc(2026, 3, 10, 15, 0)
        );
        assert_eq!(
            cal.deadline_in_working_days(utc(2026, 3, 8, 12, 0), 0),
            utc(2026, 3, 10, 15, 0)
        );
    }

    #[test]
    fn weekday_hours_for_the_prompt() {
        let cal = shipped();
        assert_eq!(cal.weekday_hours(), Some((t(9, 0), t(18, 0))));
        let friday_short = WeekHours {
            fri: Some("09:00-16:45".into()),
            ..WeekHours::default()
        };
        let cal = Calendar::from_parts(
            chrono_tz::Europe::Moscow,
            friday_short.parse().unwrap(),
            60,
            vec![],
        )
        .unwrap();
        assert_eq!(cal.weekday_hours(), None);
    }

    #[test]
    fn uncovered_year_counts_weekends_only() {
        let cal = Calendar::from_parts(
            chrono_tz::Europe::Moscow,
            WeekHours::default().parse().unwrap(),
            60,
            vec![],
        )
        .unwrap();
        assert!(cal.years().is_empty());
        assert!(cal.is_working_day(d(2026, 1, 1))); // no data: a plain Thursday
        assert_eq!(working_days_in(&cal, 2026), 261);
    }

    #[test]
    fn add_working_days_ends_with_everything_closed() {
        // Only Sunday open, and a year file that closes every Sunday of 2026: the scan crosses
        // the closed year and finds the first Sunday of 2027.
        let sundays: Vec<NaiveDate> = d(2026, 1, 1)
            .iter_days()
            .take_while(|day| day.year() == 2026)
            .filter(|day| day.weekday() == Weekday::Sun)
            .collect();
        let year = YearData::new(2026, &sundays, &[], &[]).unwrap();
        let hours = WeekHours {
            mon: None,
            tue: None,
            wed: None,
            thu: None,
            fri: None,
            sat: None,
            sun: Some("10:00-12:00".into()),
        };
        let cal = Calendar::from_parts(
            chrono_tz::Europe::Moscow,
            hours.parse().unwrap(),
            60,
            vec![year],
        )
        .unwrap();
        assert_eq!(cal.add_working_days(d(2026, 1, 1), 1), d(2027, 1, 3));
        let none = WeekHours { sun: None, ..hours };
        assert!(matches!(
            Calendar::from_parts(chrono_tz::Europe::Moscow, none.parse().unwrap(), 60, vec![]),
            Err(CalendarError::NoOpenDay)
        ));
    }

    #[test]
    fn config_deserializes_with_defaults() {
        let cfg: CalendarConfig = toml::from_str("").unwrap();
        assert_eq!(cfg.time_zone, "Europe/Moscow");
        assert_eq!(cfg.dir, PathBuf::from("sip-config/calendar"));
        assert_eq!(cfg.hours, WeekHours::default());
        assert_eq!(cfg.shortened_by_minutes, 60);

        // A given hours table lists the open days; the others are closed.
        let cfg: CalendarConfig =
            toml::from_str("[hours]\nmon = \"08:00-17:00\"\nsat = \"10:00-14:00\"\n").unwrap();
        let week = cfg.hours.parse().unwrap();
        assert_eq!(week[0], Some((t(8, 0), t(17, 0))));
        assert_eq!(week[1], None);
        assert_eq!(week[5], Some((t(10, 0), t(14, 0))));

        assert!(toml::from_str::<CalendarConfig>("timezone = \"UTC\"").is_err());
        assert!(toml::from_str::<CalendarConfig>("[hours]\nmonday = \"09:00-18:00\"").is_err());
    }

    #[test]
    fn year_file_accepts_toml_dates() {
        let data = YearData::parse(
            "x.toml",
            "year = 2026\nholidays = [2026-01-01, \"2026-01-02\"]\n",
        )
        .unwrap();
        assert_eq!(data.year(), 2026);
        assert_eq!(
            data.to_string(),
            "2026: 2 holidays, 0 working days, 0 shortened days"
        );
    }

    /// Writes year files into a fresh directory and loads it with the default hours.
    fn load_files(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<Calendar, CalendarError>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let cfg = CalendarConfig {
            dir: dir.path().to_path_buf(),
            ..CalendarConfig::default()
        };
        let result = Calendar::load(&cfg);
        (dir, result)
    }

    fn load_error(files: &[(&str, &str)]) -> String {
        let (dir, result) = load_files(files);
        let msg = result.unwrap_err().to_string();
        // Messages name the path as given; strip the temp dir for readable asserts.
        msg.replace(&format!("{}/", dir.path().display()), "")
    }

    #[test]
    fn load_error_bad_date() {
        let msg = load_error(&[(
            "2026.toml",
            "year = 2026\nholidays = [\"2026-01-01\", \"2026-01-02\", \"2026-01-05\", \"2026-13-01\"]\n",
        )]);
        assert_eq!(
            msg,
            "2026.toml: `holidays[3]`: 2026-13-01 is not a date (expected \"YYYY-MM-DD\")"
        );
    }

    #[test]
    fn load_error_wrong_year() {
        let msg = load_error(&[(
            "2026.toml",
            "year = 2026\nholidays = [\"2026-01-01\"]\nshortened_days = [\"2025-04-30\"]\n",
        )]);
        assert_eq!(
            msg,
            "2026.toml: `shortened_days[0]`: date 2025-04-30 is not in year 2026"
        );
    }

    #[test]
    fn load_error_duplicate_year() {
        let text = "year = 2026\nholidays = [\"2026-01-01\"]\n";
        let msg = load_error(&[("2026.toml", text), ("2026-copy.toml", text)]);
        assert_eq!(
            msg,
            "2026.toml: year 2026 is already loaded from 2026-copy.toml"
        );
    }

    #[test]
    fn load_error_holiday_and_working_day() {
        let msg = load_error(&[(
            "2025.toml",
            "year = 2025\nholidays = [\"2025-11-01\"]\nworking_days = [\"2025-11-01\"]\n",
        )]);
        assert_eq!(
            msg,
            "2025.toml: 2025-11-01 is both in `holidays` and in `working_days`"
        );
    }

    #[test]
    fn load_error_other_data_mistakes() {
        let msg = load_error(&[(
            "2026.toml",
            "year = 2026\nworking_days = [\"2026-03-10\"]\n",
        )]);
        assert!(
            msg.starts_with("2026.toml: `working_days[0]`: 2026-03-10 is a Tuesday"),
            "{msg}"
        );
        let msg = load_error(&[(
            "2026.toml",
            "year = 2026\nholidays = [\"2026-05-01\"]\nshortened_days = [\"2026-05-01\"]\n",
        )]);
        assert!(
            msg.starts_with("2026.toml: `shortened_days[0]`: 2026-05-01 is not a working day"),
            "{msg}"
        );
        let msg = load_error(&[(
            "2026.toml",
            "year = 2026\nholidays = [\"2026-01-01\", \"2026-01-01\"]\n",
        )]);
        assert_eq!(msg, "2026.toml: `holidays[1]`: 2026-01-01 is listed twice");
        let msg = load_error(&[("2026.toml", "year = 2026\nholiday = []\n")]);
        assert!(msg.starts_with("2026.toml: "), "{msg}");
        assert!(msg.contains("holiday"), "{msg}");
        let msg = load_error(&[("2026.toml", "holidays = []\n")]);
        assert!(
            msg.starts_with("2026.toml: ") && msg.contains("year"),
            "{msg}"
        );
    }

    #[test]
    fn load_ignores_other_files_and_reads_every_year() {
        let (_dir, result) = load_files(&[
            ("2026.toml", "year = 2026\nholidays = [\"2026-01-01\"]\n"),
            ("2027.toml", "year = 2027\nholidays = [\"2027-01-01\"]\n"),
            ("README.md", "not a year"),
        ]);
        let cal = result.unwrap();
        assert_eq!(cal.years(), vec![2026, 2027]);
        assert!(!cal.is_working_day(d(2027, 1, 1)));
    }

    /// "24:00" closes at midnight: open in the day's last second, and the greeting's
    /// closing time reads 24:00 (see `FlowPrompts::load`).
    #[test]
    fn a_day_may_close_at_24_00() {
        let (open, close) = parse_day_hours("mon", "00:00-24:00").unwrap();
        assert_eq!(open, NaiveTime::from_hms_opt(0, 0, 0).unwrap());
        assert!(close > NaiveTime::from_hms_opt(23, 59, 59).unwrap());
        assert!(parse_day_hours("mon", "00:00-24:01").is_err());
    }

    #[test]
    fn load_error_bad_hours() {
        let cases = [
            ("9-18", "`calendar.hours.mon`: \"9-18\": expected \"HH:MM-HH:MM\""),
            ("09:00", "`calendar.hours.mon`: \"09:00\": expected \"HH:MM-HH:MM\""),
            (
                "18:00-09:00",
                "`calendar.hours.mon`: \"18:00-09:00\": the opening time must be before the closing time",
            ),
        ];
        for (value, want) in cases {
            let cfg = CalendarConfig {
                dir: shipped_dir(),
                hours: WeekHours {
                    mon: Some(value.into()),
                    ..WeekHours::default()
                },
                ..CalendarConfig::default()
            };
            assert_eq!(Calendar::load(&cfg).unwrap_err().to_string(), want);
        }
        let cfg = CalendarConfig {
            dir: shipped_dir(),
            shortened_by_minutes: 540,
            ..CalendarConfig::default()
        };
        assert_eq!(
            Calendar::load(&cfg).unwrap_err().to_string(),
            "`calendar.shortened_by_minutes`: 540 minutes leaves nothing of Monday's 09:00-18:00"
        );
    }

    #[test]
    fn load_error_bad_tz_and_missing_dir() {
        let cfg = CalendarConfig {
            time_zone: "Europe/Moskva".into(),
            dir: shipped_dir(),
            ..CalendarConfig::default()
        };
        assert_eq!(
            Calendar::load(&cfg).unwrap_err().to_string(),
            "`calendar.time_zone`: \"Europe/Moskva\" is not a known IANA time zone"
        );
        let cfg = CalendarConfig {
            dir: PathBuf::from("/nonexistent/calendar"),
            ..CalendarConfig::default()
        };
        let msg = Calendar::load(&cfg).unwrap_err().to_string();
        assert!(msg.starts_with("/nonexistent/calendar: "), "{msg}");
    }
}
