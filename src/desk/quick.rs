//! Quick answers through the desk: checked, then written with their audit lines.

use super::{DeskError, Records};
use crate::records::quick::QuickAnswerText;
use crate::store;
use chrono::Utc;

impl Records {
    pub async fn add_quick_answer(
        &self,
        a: &QuickAnswerText,
        actor: &str,
    ) -> Result<i64, DeskError> {
        a.validate()?;
        Ok(store::quick::create(&self.store, a, actor, Utc::now()).await?)
    }

    pub async fn change_quick_answer(
        &self,
        id: i64,
        a: &QuickAnswerText,
        actor: &str,
    ) -> Result<(), DeskError> {
        a.validate()?;
        Ok(store::quick::update(&self.store, id, a, actor, Utc::now()).await?)
    }

    pub async fn remove_quick_answer(&self, id: i64, actor: &str) -> Result<(), DeskError> {
        Ok(store::quick::delete(&self.store, id, actor, Utc::now()).await?)
    }
}
