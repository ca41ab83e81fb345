//! Where operators are rung, through the desk.

use super::{DeskError, Records};
use crate::records::ring::RingAt;
use crate::store;
use chrono::Utc;

impl Records {
    /// Every operator's choice of where to be rung (loaded at start).
    pub async fn ring_choices(&self) -> Result<Vec<(String, RingAt)>, DeskError> {
        Ok(store::phones::list(&self.store).await?)
    }

    /// Keeps `extension`'s choice of where to be rung.
    pub async fn set_ring_at(
        &self,
        extension: &str,
        ring_at: RingAt,
        actor: &str,
    ) -> Result<(), DeskError> {
        Ok(store::phones::set(&self.store, extension, ring_at, actor, Utc::now()).await?)
    }
}
