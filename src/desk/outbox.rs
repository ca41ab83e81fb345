//! The outbox as the notify worker reads and marks it: the rows are written with the
//! records they announce, so the desk hands them over and notify only delivers.

use super::Records;
use crate::notify::worker::{Delivery, Outbox};
use crate::notify::NotifyError;
use crate::store::{self, StoreError};
use chrono::{DateTime, Utc};

fn unavailable(e: StoreError) -> NotifyError {
    NotifyError::Outbox(e.to_string())
}

impl Outbox for Records {
    async fn recover(&self) -> Result<u64, NotifyError> {
        store::outbox::recover(&self.store)
            .await
            .map_err(unavailable)
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>, NotifyError> {
        let rows = store::outbox::due(&self.store, now, limit)
            .await
            .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|q| Delivery {
                id: q.id,
                event: q.event,
                channel: q.channel,
                recipient: q.recipient,
                subject: q.subject,
                body: q.body,
                payload: q.payload,
                attempts: q.attempts,
            })
            .collect())
    }

    async fn claim(&self, id: i64) -> Result<bool, NotifyError> {
        store::outbox::claim(&self.store, id)
            .await
            .map_err(unavailable)
    }

    async fn mark_sent(&self, id: i64, now: DateTime<Utc>) -> Result<(), NotifyError> {
        store::outbox::mark_sent(&self.store, id, now)
            .await
            .map_err(unavailable)
    }

    async fn mark_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), NotifyError> {
        store::outbox::mark_failed(&self.store, id, error, retry_at)
            .await
            .map_err(unavailable)
    }
}
