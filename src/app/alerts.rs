//! The alert checks: every `check_every_s` the thresholds of `[alerts]` are read against the
//! queue and today's journal, and the episodes that start or end are written (with their
//! e-mails, `desk::alerts`) and put on the live feed for the wallboards.

use crate::callflow::acd::AcdHandle;
use crate::callflow::queue::OperatorState;
use crate::desk::alerts::AlertChanges;
use crate::desk::{DeskError, Records};
use crate::live::LiveEvent;
use crate::records::alert::{evaluate, AlertsConfig, Readings};
use chrono::Utc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// Checks until shutdown.
pub async fn watch_alerts(
    records: Records,
    acd: AcdHandle,
    config: AlertsConfig,
    live: broadcast::Sender<LiveEvent>,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = Duration::from_secs(config.check_every_s.max(1));
    loop {
        match check(&records, &acd, &config).await {
            Ok(changes) => announce(&changes, &live),
            Err(e) => tracing::warn!(error = %e, "alert check failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One check: the readings, the verdict, the episodes.
pub async fn check(
    records: &Records,
    acd: &AcdHandle,
    config: &AlertsConfig,
) -> Result<AlertChanges, DeskError> {
    let now = Utc::now();
    let snap = acd.snapshot().await;
    let from = records.calendar.start_of_day(now);
    let stats =
        crate::store::stats::compute(&records.store, from, now, records.settings.service_level)
            .await?;
    let readings = Readings {
        offered: stats.answered + stats.abandoned + stats.voicemail,
        abandoned: stats.abandoned,
        waiting: snap.waiting.len(),
        voicemail_backlog: stats.voicemail_backlog,
        voicemail_overdue: stats.voicemail_overdue,
        callbacks_overdue: stats.callbacks_overdue,
        unregistered: snap
            .operators
            .iter()
            .filter(|o| o.state != OperatorState::Offline && !o.registered)
            .map(|o| o.extension.clone())
            .collect(),
        open: records.calendar.is_open(now),
        overdue_tickets: crate::store::tickets::overdue(&records.store, now)
            .await?
            .into_iter()
            .map(|t| (t.number, t.atm_id))
            .collect(),
    };
    records.sync_alerts(&evaluate(config, &readings), now).await
}

fn announce(changes: &AlertChanges, live: &broadcast::Sender<LiveEvent>) {
    for (rows, started) in [(&changes.started, true), (&changes.ended, false)] {
        for a in rows {
            if started {
                tracing::warn!(kind = a.kind, subject = a.subject, text = a.text, "alert");
            } else {
                tracing::info!(kind = a.kind, subject = a.subject, "alert over");
            }
            let _ = live.send(LiveEvent::Alert {
                kind: a.kind.clone(),
                subject: a.subject.clone(),
                text: a.text.clone(),
                started,
            });
        }
    }
}
