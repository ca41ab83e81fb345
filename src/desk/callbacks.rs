//! Callback forms (Table 6.1) through the desk: made, sent to the employee who calls
//! back, completed with field 10.

use super::{DeskError, Records};
use crate::records::callback::NewCallbackForm;
use crate::store;
use chrono::{DateTime, Utc};

impl Records {
    /// Makes a form; `operator` is field 8. Returns its id.
    pub async fn create_callback(
        &self,
        form: &NewCallbackForm,
        operator: &str,
        actor: &str,
    ) -> Result<i64, DeskError> {
        Ok(store::callback::create(&self.store, form, operator, actor).await?)
    }

    /// Sends the form to the employee who will call back (journal columns 8–9).
    pub async fn send_callback(
        &self,
        id: i64,
        assigned_to: &str,
        actor: &str,
    ) -> Result<(), DeskError> {
        Ok(store::callback::send(&self.store, id, assigned_to, actor).await?)
    }

    /// Field 10: the callback was made at `at` (journal column 10).
    pub async fn complete_callback(
        &self,
        id: i64,
        at: DateTime<Utc>,
        result: Option<&str>,
        actor: &str,
    ) -> Result<(), DeskError> {
        Ok(store::callback::complete(&self.store, id, at, result, actor).await?)
    }
}
