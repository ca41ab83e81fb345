//! Administration through the desk: API tokens, retries of what failed for good, and the
//! retention purge (§7.6).

use super::{DeskError, Records};
use crate::records::role::Role;
use crate::records::token::TokenInfo;
use crate::store;
use chrono::{DateTime, Months, Utc};

impl Records {
    /// Makes a token; returns its id and the secret (shown once).
    pub async fn create_token(
        &self,
        name: &str,
        role: Role,
        operator: Option<&str>,
    ) -> Result<(i64, String), DeskError> {
        Ok(store::tokens::create(&self.store, name, role, operator).await?)
    }

    pub async fn revoke_token(&self, id: i64) -> Result<(), DeskError> {
        Ok(store::tokens::revoke(&self.store, id).await?)
    }

    /// Every token (never the secrets).
    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, DeskError> {
        Ok(store::tokens::list(&self.store).await?)
    }

    /// The holder of `secret`, if it is a token and not revoked.
    pub async fn authenticate_token(&self, secret: &str) -> Result<Option<TokenInfo>, DeskError> {
        Ok(store::tokens::authenticate(&self.store, secret).await?)
    }

    /// Failed notices due again now, with fresh attempts; returns how many.
    pub async fn retry_notifications(&self, now: DateTime<Utc>) -> Result<u64, DeskError> {
        Ok(store::outbox::retry_failed(&self.store, now).await?)
    }

    /// Failed transcriptions due again now, with fresh attempts; returns how many.
    pub async fn retry_transcriptions(&self) -> Result<u64, DeskError> {
        Ok(store::transcription::retry_failed(&self.store).await?)
    }

    /// The moment before which a last document makes a record due for purging.
    pub fn retention_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now.checked_sub_months(Months::new(12 * self.settings.retention_years))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Purges (or lists, with `dry_run`) what is past retention.
    pub async fn purge(
        &self,
        data_dir: &std::path::Path,
        dry_run: bool,
        actor: &str,
    ) -> Result<store::retention::PurgeReport, DeskError> {
        let cutoff = self.retention_cutoff(Utc::now());
        Ok(store::retention::purge(&self.store, data_dir, cutoff, dry_run, actor).await?)
    }
}
