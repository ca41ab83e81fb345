//! The outbox's delivery task: at start it puts rows a crash left `sending` back to
//! `pending`, then it delivers due rows oldest first, one at a time, and schedules a failed
//! one again after an exponential backoff (`retry_base_s` doubling up to `retry_max_s`);
//! after `max_attempts` (or a permanent refusal) the row is marked failed and kept. It also
//! enqueues the reminders of overdue voicemail every `overdue_check_s`.
//!
//! On shutdown the delivery in progress is finished first, so that a clean restart never
//! sends a notice twice.

use super::smtp::Mailer;
use super::webhook::Webhooks;
use super::{NotifyConfig, NotifyError};
use crate::desk::Records;
use crate::store::outbox::{self, Queued};
use chrono::Utc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Delivers the outbox.
pub struct Deliverer {
    records: Records,
    mailer: Option<Mailer>,
    webhooks: Webhooks,
    config: NotifyConfig,
}

impl Deliverer {
    pub fn new(records: Records, config: &NotifyConfig) -> Result<Deliverer, NotifyError> {
        let mailer = config
            .smtp
            .as_ref()
            .map(|s| Mailer::new(s, &config.from))
            .transpose()?;
        Ok(Deliverer {
            records,
            mailer,
            webhooks: Webhooks::new(&config.all_webhooks())?,
            config: config.clone(),
        })
    }

    /// Runs until `shutdown` turns true.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            match outbox::recover(&self.records.store).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(n, "notices left in delivery by a crash are due again"),
                Err(e) => tracing::error!(error = %e, "outbox recovery failed"),
            }
            let poll = Duration::from_millis(self.config.poll_ms.max(10));
            let overdue_every = Duration::from_secs(self.config.overdue_check_s.max(1));
            let mut last_overdue: Option<tokio::time::Instant> = None;
            loop {
                if *shutdown.borrow() {
                    break;
                }
                if last_overdue.is_none_or(|t| t.elapsed() >= overdue_every) {
                    last_overdue = Some(tokio::time::Instant::now());
                    match self.records.remind_overdue_voicemail(Utc::now()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(n, "overdue voicemail reminders enqueued"),
                        Err(e) => tracing::warn!(error = %e, "overdue voicemail check failed"),
                    }
                }
                let delivered = match self.deliver_due(&shutdown).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox unavailable");
                        0
                    }
                };
                if delivered == 0 {
                    tokio::select! {
                        _ = tokio::time::sleep(poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        })
    }

    /// Delivers what is due now; returns how many rows it tried.
    pub async fn deliver_due(
        &self,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<usize, NotifyError> {
        let due = outbox::due(&self.records.store, Utc::now(), 50).await?;
        let mut tried = 0;
        for row in due {
            if *shutdown.borrow() {
                break;
            }
            if !outbox::claim(&self.records.store, row.id).await? {
                continue;
            }
            tried += 1;
            let attempts = row.attempts + 1;
            match self.deliver(&row).await {
                Ok(()) => {
                    outbox::mark_sent(&self.records.store, row.id, Utc::now()).await?;
                    tracing::info!(
                        id = row.id,
                        event = row.event,
                        channel = row.channel,
                        to = row.recipient,
                        "notice delivered"
                    );
                }
                Err(e) => {
                    let retry = match &e {
                        NotifyError::Permanent(_) => None,
                        _ if attempts >= i64::from(self.config.max_attempts) => None,
                        _ => Some(Utc::now() + backoff(&self.config, attempts)),
                    };
                    tracing::warn!(
                        id = row.id,
                        attempts,
                        error = %e,
                        retry = ?retry,
                        "notice not delivered"
                    );
                    outbox::mark_failed(&self.records.store, row.id, &e.to_string(), retry).await?;
                }
            }
        }
        Ok(tried)
    }

    async fn deliver(&self, row: &Queued) -> Result<(), NotifyError> {
        match row.channel.as_str() {
            "email" => {
                let mailer = self.mailer.as_ref().ok_or_else(|| {
                    NotifyError::Transient("no [notify.smtp] relay is configured".into())
                })?;
                mailer
                    .send(row.id, &row.recipient, &row.subject, &row.body)
                    .await
            }
            "webhook" => {
                self.webhooks
                    .send(row.id, &row.recipient, &row.event, &row.payload)
                    .await
            }
            other => Err(NotifyError::Permanent(format!("unknown channel {other}"))),
        }
    }
}

/// The wait before attempt `attempts + 1`: base × 2^(attempts − 1), at most `retry_max_s`.
pub fn backoff(config: &NotifyConfig, attempts: i64) -> chrono::Duration {
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let secs = config
        .retry_base_s
        .saturating_mul(1u64 << exp)
        .min(config.retry_max_s.max(config.retry_base_s));
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = NotifyConfig {
            retry_base_s: 30,
            retry_max_s: 600,
            ..NotifyConfig::default()
        };
        let secs: Vec<i64> = (1..=7).map(|a| backoff(&c, a).num_seconds()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 600, 600]);
        assert_eq!(backoff(&c, 1_000_000).num_seconds(), 600);
    }
}
