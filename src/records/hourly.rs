//! Calls by the hour (the wallboard's day) or by the day (a period's statistics), as the
//! supervisor's charts show them: calls answered, abandoned and sent to voicemail in each
//! local hour or day, and the service level of the calls in it.

use super::journal::Disposition;
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use std::time::Duration;

/// One local hour, or one day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Hour {
    pub answered: u32,
    pub abandoned: u32,
    /// In hours (all operators busy) and after hours.
    pub voicemail: u32,
    /// Of the calls offered to operators this hour, the share answered within the service
    /// level; `None` when none was offered.
    pub service_level: Option<f64>,
}

/// A call as the charts count it.
#[derive(Debug, Clone, Copy)]
pub struct CallFact {
    pub arrived_at: DateTime<Utc>,
    pub disposition: Disposition,
    pub wait: Option<Duration>,
}

/// Buckets `calls` by their local hour in `tz`.
pub fn by_hour(calls: &[CallFact], tz: chrono_tz::Tz, service_level: Duration) -> [Hour; 24] {
    let v = tally(calls, service_level, 24, |c| {
        Some(c.arrived_at.with_timezone(&tz).hour() as usize)
    });
    let mut hours = [Hour::default(); 24];
    hours.copy_from_slice(&v);
    hours
}

/// Buckets `calls` by their local date in `tz`, one bucket per day of `days` from `first`;
/// calls outside are left out.
pub fn by_day(
    calls: &[CallFact],
    tz: chrono_tz::Tz,
    service_level: Duration,
    first: NaiveDate,
    days: usize,
) -> Vec<Hour> {
    tally(calls, service_level, days, |c| {
        let d = (c.arrived_at.with_timezone(&tz).date_naive() - first).num_days();
        usize::try_from(d).ok().filter(|&d| d < days)
    })
}

/// A call counts towards the service level as `/stats` counts it: offered to operators
/// means answered, abandoned or an in-hours voicemail with a recorded wait.
fn tally(
    calls: &[CallFact],
    service_level: Duration,
    n: usize,
    bucket: impl Fn(&CallFact) -> Option<usize>,
) -> Vec<Hour> {
    let mut out = vec![Hour::default(); n];
    let mut offered = vec![0u32; n];
    let mut within = vec![0u32; n];
    for c in calls {
        let Some(h) = bucket(c) else { continue };
        let waited = c.wait.is_some();
        match c.disposition {
            Disposition::Answered => {
                out[h].answered += 1;
                if waited {
                    offered[h] += 1;
                    if c.wait.is_some_and(|w| w <= service_level) {
                        within[h] += 1;
                    }
                }
            }
            Disposition::Abandoned => {
                out[h].abandoned += 1;
                offered[h] += u32::from(waited);
            }
            Disposition::Voicemail => {
                out[h].voicemail += 1;
                offered[h] += u32::from(waited);
            }
            Disposition::AfterHoursVoicemail => out[h].voicemail += 1,
            Disposition::InProgress | Disposition::Failed => {}
        }
    }
    for (h, bucket) in out.iter_mut().enumerate() {
        bucket.service_level =
            (offered[h] > 0).then(|| f64::from(within[h]) / f64::from(offered[h]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn call(h: u32, m: u32, d: Disposition, wait_s: Option<u64>) -> CallFact {
        // 06:xx UTC is 09:xx in Moscow.
        CallFact {
            arrived_at: Utc.with_ymd_and_hms(2026, 4, 1, h, m, 0).unwrap(),
            disposition: d,
            wait: wait_s.map(Duration::from_secs),
        }
    }

    #[test]
    fn calls_fall_in_their_local_hour_with_that_hours_service_level() {
        use Disposition::*;
        let calls = [
            call(6, 5, Answered, Some(5)),
            call(6, 10, Answered, Some(40)),
            call(6, 20, Abandoned, Some(30)),
            call(6, 50, Voicemail, Some(60)),
            call(7, 0, Answered, Some(1)),
            call(20, 0, AfterHoursVoicemail, None),
            call(7, 30, InProgress, None),
        ];
        let tz: chrono_tz::Tz = "Europe/Moscow".parse().unwrap();
        let h = by_hour(&calls, tz, Duration::from_secs(20));
        assert_eq!((h[9].answered, h[9].abandoned, h[9].voicemail), (2, 1, 1));
        // 1 of 4 offered within 20 s.
        assert_eq!(h[9].service_level, Some(0.25));
        assert_eq!(h[10].answered, 1);
        assert_eq!(h[10].service_level, Some(1.0));
        assert_eq!((h[23].voicemail, h[23].service_level), (1, None));
        assert_eq!(h[8], Hour::default());
    }

    #[test]
    fn calls_fall_on_their_local_day() {
        use Disposition::*;
        let calls = [
            // 2026-04-01 06:05 UTC is 09:05 on 1 April in Moscow; 22:30 UTC is 01:30 on 2 April.
            call(6, 5, Answered, Some(5)),
            call(22, 30, Abandoned, Some(30)),
        ];
        let tz: chrono_tz::Tz = "Europe/Moscow".parse().unwrap();
        let first = NaiveDate::from_ymd_opt(2026, 3, 31).unwrap();
        let d = by_day(&calls, tz, Duration::from_secs(20), first, 3);
        assert_eq!(d.len(), 3);
        assert_eq!(d[0], Hour::default());
        assert_eq!((d[1].answered, d[1].service_level), (1, Some(1.0)));
        assert_eq!((d[2].abandoned, d[2].service_level), (1, Some(0.0)));
        // A day outside the period is left out.
        let d = by_day(&calls, tz, Duration::from_secs(20), first, 2);
        assert_eq!(d[1].answered, 1);
        assert_eq!(d.iter().map(|b| b.abandoned).sum::<u32>(), 0);
    }
}
