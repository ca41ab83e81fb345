//! Alert episodes through the desk: the checks' verdict ([`crate::records::alert::evaluate`])
//! becomes rows, and each episode that starts enqueues its e-mail to the supervisors in
//! the same transaction, so none is lost and none is sent twice.

use super::{notices, DeskError, Records};
use crate::records::alert::Raised;
use crate::store;
use crate::store::alerts::AlertRow;
use chrono::{DateTime, Utc};

/// What one check changed.
#[derive(Debug, Default)]
pub struct AlertChanges {
    pub started: Vec<AlertRow>,
    pub ended: Vec<AlertRow>,
}

impl AlertChanges {
    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.ended.is_empty()
    }
}

impl Records {
    /// Starts an episode for each alert in `raised` that has none open, and ends the open
    /// episodes no longer raised.
    pub async fn sync_alerts(
        &self,
        raised: &[Raised],
        now: DateTime<Utc>,
    ) -> Result<AlertChanges, DeskError> {
        // Most checks change nothing: they read and leave, without taking SQLite's one
        // write lock from the calls' writers.
        let open = store::alerts::open(&self.store).await?;
        if same(&open, raised) {
            return Ok(AlertChanges::default());
        }
        let mut tx = self.store.begin_write().await?;
        let open = store::alerts::open_in(&mut tx).await?;
        let mut changes = AlertChanges::default();
        for r in raised {
            let kind = r.kind.as_str();
            if open
                .iter()
                .any(|o| o.kind == kind && o.subject == r.subject)
            {
                continue;
            }
            if let Some(row) =
                store::alerts::start_in(&mut tx, kind, &r.subject, &r.text, now).await?
            {
                if r.kind.mailed_with_the_episode() {
                    let (n, sinks) = notices::alerts::started(&row, &self.targets, self.tz());
                    store::outbox::enqueue(&mut tx, &n, &sinks, now).await?;
                }
                changes.started.push(row);
            }
        }
        for o in open {
            let still = raised
                .iter()
                .any(|r| r.kind.as_str() == o.kind && r.subject == o.subject);
            if !still {
                store::alerts::end_in(&mut tx, o.id, now).await?;
                changes.ended.push(o);
            }
        }
        tx.commit().await?;
        Ok(changes)
    }
}

/// Whether the open episodes are exactly the raised alerts.
fn same(open: &[AlertRow], raised: &[Raised]) -> bool {
    open.len() == raised.len()
        && raised.iter().all(|r| {
            open.iter()
                .any(|o| o.kind == r.kind.as_str() && o.subject == r.subject)
        })
}

#[cfg(test)]
mod tests {
    //! Episodes on a real SQLite file.

    use super::*;
    use crate::records::alert::AlertKind;

    async fn records(dir: &std::path::Path) -> Records {
        crate::desk::sqlite_records(&dir.join("t.db")).await
    }

    fn raised(kind: AlertKind, subject: &str) -> Raised {
        Raised {
            kind,
            subject: subject.into(),
            text: format!("{} {subject}", kind.as_str()),
        }
    }

    #[tokio::test]
    async fn an_episode_starts_once_and_ends_when_no_longer_raised() {
        let dir = tempfile::tempdir().unwrap();
        let r = records(dir.path()).await;
        let now = Utc::now();
        let waiting = raised(AlertKind::Waiting, "");
        let phone = raised(AlertKind::OperatorUnregistered, "1001");
        let c = r
            .sync_alerts(std::slice::from_ref(&waiting), now)
            .await
            .unwrap();
        assert_eq!(c.started.len(), 1);
        assert_eq!(c.started[0].kind, "waiting");
        // Seen again: the same episode.
        let c = r
            .sync_alerts(&[waiting.clone(), phone.clone()], now)
            .await
            .unwrap();
        assert_eq!((c.started.len(), c.ended.len()), (1, 0));
        assert_eq!(c.started[0].subject, "1001");
        let c = r
            .sync_alerts(std::slice::from_ref(&phone), now)
            .await
            .unwrap();
        assert_eq!((c.started.len(), c.ended.len()), (0, 1));
        assert_eq!(c.ended[0].kind, "waiting");
        assert!(r
            .sync_alerts(std::slice::from_ref(&phone), now)
            .await
            .unwrap()
            .is_empty());
        // Raised again later: a new episode.
        let c = r.sync_alerts(&[waiting, phone], now).await.unwrap();
        assert_eq!(c.started.len(), 1);
        let all = crate::store::alerts::recent(&r.store, 10).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all.iter().filter(|a| a.ended_at.is_none()).count(), 2);
    }
}
