//! The outbox's delivery task: at start it puts rows a crash left `sending` back to
//! `pending`, then it delivers due rows oldest first, one at a time, and schedules a failed
//! one again after an exponential backoff (`retry_base_s` doubling up to `retry_max_s`);
//! after `max_attempts` (or a permanent refusal) the row is marked failed and kept.
//!
//! On shutdown the delivery in progress is finished first, so that a clean restart never
//! sends a notice twice.

use super::smtp::Mailer;
use super::webhook::Webhooks;
use super::{NotifyConfig, NotifyError};
use chrono::{DateTime, Utc};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A row of the outbox to deliver.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    /// `voicemail_new`, `ticket_routed`, …: the webhook's `X-Hotline-Event`.
    pub event: String,
    /// `email` or `webhook`.
    pub channel: String,
    pub recipient: String,
    pub subject: String,
    /// The e-mail's text.
    pub body: String,
    /// The webhook's JSON.
    pub payload: String,
    /// Attempts so far, before this one.
    pub attempts: i64,
}

/// The outbox as the worker sees it: the rows due, and what became of each. It lives with
/// the records (their writes add its rows in the same transaction), so the worker is handed
/// it rather than reaching into the database.
pub trait Outbox: Send + Sync + 'static {
    /// Puts rows a crash left `sending` back to `pending`; returns how many.
    fn recover(&self) -> impl Future<Output = Result<u64, NotifyError>> + Send;
    /// The oldest rows due at `now`.
    fn due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Delivery>, NotifyError>> + Send;
    /// Takes a due row for delivery; `false` if another worker (or a retry request) got
    /// there first.
    fn claim(&self, id: i64) -> impl Future<Output = Result<bool, NotifyError>> + Send;
    fn mark_sent(
        &self,
        id: i64,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<(), NotifyError>> + Send;
    /// Due again at `retry_at`, or failed for good when `None`.
    fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<(), NotifyError>> + Send;
}

/// Delivers the outbox.
pub struct Deliverer<O> {
    outbox: O,
    mailer: Option<Mailer>,
    webhooks: Webhooks,
    config: NotifyConfig,
}

impl<O: Outbox> Deliverer<O> {
    pub fn new(outbox: O, config: &NotifyConfig) -> Result<Deliverer<O>, NotifyError> {
        let mailer = config
            .smtp
            .as_ref()
            .map(|s| Mailer::new(s, &config.from))
            .transpose()?;
        Ok(Deliverer {
            outbox,
            mailer,
            webhooks: Webhooks::new(&config.all_webhooks())?,
            config: config.clone(),
        })
    }

    /// Runs until `shutdown` turns true.
    pub fn spawn(self, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            match self.outbox.recover().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(n, "notices left in delivery by a crash are due again"),
                Err(e) => tracing::error!(error = %e, "outbox recovery failed"),
            }
            let poll = Duration::from_millis(self.config.poll_ms.max(10));
            loop {
                if *shutdown.borrow() {
                    break;
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
        let due = self.outbox.due(Utc::now(), 50).await?;
        let mut tried = 0;
        for row in due {
            if *shutdown.borrow() {
                break;
            }
            if !self.outbox.claim(row.id).await? {
                continue;
            }
            tried += 1;
            let attempts = row.attempts + 1;
            match self.deliver(&row).await {
                Ok(()) => {
                    self.outbox.mark_sent(row.id, Utc::now()).await?;
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
                    self.outbox
                        .mark_failed(row.id, &e.to_string(), retry)
                        .await?;
                }
            }
        }
        Ok(tried)
    }

    async fn deliver(&self, row: &Delivery) -> Result<(), NotifyError> {
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
