//! The day by the hour, as the supervisor's charts show it: calls answered, abandoned and
//! sent to voicemail in each local hour, and the service level of the calls that hour.

use super::journal::Disposition;
use chrono::{DateTime, Timelike, Utc};
use std::time::Duration;

/// One local hour of the day.
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

/// Buckets `calls` by their local hour in `tz`. A call counts towards the service level as
/// `/stats` counts it: offered to operators means answered, abandoned or an in-hours
/// voicemail with a recorded wait.
pub fn by_hour(calls: &[CallFact], tz: chrono_tz::Tz, service_level: Duration) -> [Hour; 24] {
    let mut hours = [Hour::default(); 24];
    let mut offered = [0u32; 24];
    let mut within = [0u32; 24];
    for c in calls {
        let h = c.arrived_at.with_timezone(&tz).hour() as usize;
        let waited = c.wait.is_some();
        match c.disposition {
            Disposition::Answered => {
                hours[h].answered += 1;
                if waited {
                    offered[h] += 1;
                    if c.wait.is_some_and(|w| w <= service_level) {
                        within[h] += 1;
                    }
                }
            }
            Disposition::Abandoned => {
                hours[h].abandoned += 1;
                offered[h] += u32::from(waited);
            }
            Disposition::Voicemail => {
                hours[h].voicemail += 1;
                offered[h] += u32::from(waited);
            }
            Disposition::AfterHoursVoicemail => hours[h].voicemail += 1,
            Disposition::InProgress | Disposition::Failed => {}
        }
    }
    for h in 0..24 {
        hours[h].service_level =
            (offered[h] > 0).then(|| f64::from(within[h]) / f64::from(offered[h]));
    }
    hours
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
}
