//! Supervisors' statistics over a period (SPEC §5): counts by disposition, service level,
//! waits, repeat share and the §8.2 satisfaction level, plus the backlog as it is now.

use super::{ms, Store, StoreError};
use crate::records::hourly::CallFact;
use crate::records::journal::Disposition;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use std::time::Duration;
use utoipa::ToSchema;

/// §8.2: the share of repeat complaints among the year's complaints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Satisfaction {
    /// At most 10 %.
    High,
    /// Over 10 %, at most 40 %.
    Medium,
    /// Over 40 %.
    Low,
}

impl Satisfaction {
    /// `None` without complaints: there is nothing to judge.
    pub fn from_counts(complaints: i64, repeat_complaints: i64) -> Option<Satisfaction> {
        if complaints <= 0 {
            return None;
        }
        // Integer comparison: 10 % exactly is still "high".
        let r = repeat_complaints * 100;
        Some(if r <= complaints * 10 {
            Satisfaction::High
        } else if r <= complaints * 40 {
            Satisfaction::Medium
        } else {
            Satisfaction::Low
        })
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stats {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub total: i64,
    pub answered: i64,
    pub abandoned: i64,
    pub voicemail: i64,
    pub after_hours_voicemail: i64,
    pub failed: i64,
    pub in_progress: i64,
    /// Share of the calls offered to operators (queued: answered, abandoned or in-hours
    /// voicemail with a wait) that were answered within `service_level_s`; `null` when
    /// none was offered.
    pub service_level: Option<f64>,
    pub service_level_s: u64,
    /// Over calls that waited (answered, abandoned, in-hours voicemail).
    pub average_wait_s: Option<f64>,
    pub longest_wait_s: Option<f64>,
    pub repeat_calls: i64,
    pub repeat_share: Option<f64>,
    pub complaints: i64,
    pub repeat_complaints: i64,
    pub satisfaction: Option<Satisfaction>,
    /// Now, not over the period: voicemail not yet processed, and how many are overdue.
    pub voicemail_backlog: i64,
    pub voicemail_overdue: i64,
    /// Now: callbacks not made by the agreed time.
    pub callbacks_overdue: i64,
}

fn share(part: i64, whole: i64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

pub async fn compute(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    service_level: Duration,
) -> Result<Stats, StoreError> {
    let sl_ms = i64::try_from(service_level.as_millis()).unwrap_or(i64::MAX);
    let count = |cond: &str| {
        format!("CAST(COALESCE(SUM(CASE WHEN {cond} THEN 1 ELSE 0 END), 0) AS BIGINT)")
    };
    let waited = "wait_ms IS NOT NULL AND disposition IN ('answered', 'abandoned', 'voicemail')";
    let sql = format!(
        "SELECT CAST(COUNT(*) AS BIGINT), {}, {}, {}, {}, {}, {}, {}, \
         CAST(COALESCE(SUM(CASE WHEN {waited} THEN wait_ms ELSE 0 END), 0) AS BIGINT), {}, \
         CAST(MAX(CASE WHEN {waited} THEN wait_ms END) AS BIGINT), {}, {}, {} \
         FROM journal_entries WHERE arrived_at >= $1 AND arrived_at < $2",
        count("disposition = 'answered'"),
        count("disposition = 'abandoned'"),
        count("disposition = 'voicemail'"),
        count("disposition = 'after_hours_voicemail'"),
        count("disposition = 'failed'"),
        count("disposition = 'in_progress'"),
        count("disposition = 'answered' AND wait_ms <= $3"),
        count(waited),
        count("repeat_of IS NOT NULL"),
        count("appeal_type = 'complaint'"),
        count("appeal_type = 'complaint' AND repeat_of IS NOT NULL"),
    );
    let r = sqlx::query(&sql)
        .bind(ms(from))
        .bind(ms(to))
        .bind(sl_ms)
        .fetch_one(store.pool())
        .await?;
    let g = |i: usize| r.try_get::<i64, _>(i);
    let (total, answered, abandoned, voicemail) = (g(0)?, g(1)?, g(2)?, g(3)?);
    let (after_hours, failed, in_progress, within) = (g(4)?, g(5)?, g(6)?, g(7)?);
    let (wait_sum, waited_n) = (g(8)?, g(9)?);
    let longest: Option<i64> = r.try_get(10)?;
    let (repeats, complaints, repeat_complaints) = (g(11)?, g(12)?, g(13)?);
    let now = ms(Utc::now());
    let backlog = sqlx::query(
        "SELECT CAST(COUNT(*) AS BIGINT), \
         CAST(COALESCE(SUM(CASE WHEN deadline_at < $1 THEN 1 ELSE 0 END), 0) AS BIGINT) \
         FROM voicemails WHERE processed_at IS NULL",
    )
    .bind(now)
    .fetch_one(store.pool())
    .await?;
    let callbacks_overdue: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM callback_forms \
         WHERE called_back_at IS NULL AND convenient_at < $1",
    )
    .bind(now)
    .fetch_one(store.pool())
    .await?;
    Ok(Stats {
        from,
        to,
        total,
        answered,
        abandoned,
        voicemail,
        after_hours_voicemail: after_hours,
        failed,
        in_progress,
        // Offered to operators = queued (a wait is recorded): a caller who hung up during
        // the greeting, after hours above all, was never offered and does not count.
        service_level: share(within, waited_n),
        service_level_s: service_level.as_secs(),
        average_wait_s: (waited_n > 0).then(|| wait_sum as f64 / waited_n as f64 / 1000.0),
        longest_wait_s: longest.map(|w| w as f64 / 1000.0),
        repeat_calls: repeats,
        repeat_share: share(repeats, total),
        complaints,
        repeat_complaints,
        satisfaction: Satisfaction::from_counts(complaints, repeat_complaints),
        voicemail_backlog: backlog.try_get(0)?,
        voicemail_overdue: backlog.try_get(1)?,
        callbacks_overdue,
    })
}

/// The calls that arrived in `from..to`, as the hourly charts count them.
pub async fn call_facts(
    store: &Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<CallFact>, StoreError> {
    let rows = sqlx::query(
        "SELECT arrived_at, disposition, wait_ms FROM journal_entries \
         WHERE arrived_at >= $1 AND arrived_at < $2",
    )
    .bind(ms(from))
    .bind(ms(to))
    .fetch_all(store.pool())
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let disposition: String = r.try_get(1)?;
        let Some(disposition) = Disposition::parse(&disposition) else {
            continue;
        };
        let wait: Option<i64> = r.try_get(2)?;
        out.push(CallFact {
            arrived_at: super::from_ms(r.try_get(0)?),
            disposition,
            wait: wait.map(|w| Duration::from_millis(w.max(0) as u64)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfaction_thresholds_of_8_2() {
        assert_eq!(Satisfaction::from_counts(0, 0), None);
        assert_eq!(Satisfaction::from_counts(10, 1), Some(Satisfaction::High));
        assert_eq!(
            Satisfaction::from_counts(100, 11),
            Some(Satisfaction::Medium)
        );
        assert_eq!(Satisfaction::from_counts(10, 4), Some(Satisfaction::Medium));
        assert_eq!(Satisfaction::from_counts(100, 41), Some(Satisfaction::Low));
    }
}
