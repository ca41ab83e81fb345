//! The callback form ("Форма для обратной связи с заявителем", regulation Table 6.1): when
//! the operator cannot answer at once, the question goes to a competent employee who calls
//! the customer back at the time the customer chose (field 7). Fields 1–9 are the
//! operator's, field 10 the employee's. A form whose field 7 has passed without field 10 is
//! overdue.

use super::journal::CallerStatus;
use super::{check_len, RecordError};
use crate::records::journal::validate_phone;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The operator who "took" a form made from a voicemail (field 8).
pub const VOICEMAIL_OPERATOR: &str = "voicemail";

/// A form as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallbackForm {
    pub id: i64,
    pub journal_id: Option<i64>,
    pub voicemail_id: Option<i64>,
    /// Fields 1 and 2: date and time of the call.
    pub called_at: DateTime<Utc>,
    /// Field 3.
    pub caller_name: Option<String>,
    /// Field 4.
    pub phone: String,
    /// Field 5.
    pub caller_status: Option<CallerStatus>,
    /// Field 6: the question.
    pub question: String,
    /// Field 7: when the caller can take the call.
    pub convenient_at: DateTime<Utc>,
    /// Field 7 in the caller's words ("after 18:00", "weekdays").
    pub convenient_note: Option<String>,
    /// Field 8: the operator (extension) who took the call, or `voicemail`.
    pub operator: String,
    /// Field 9.
    pub operator_comment: Option<String>,
    /// The employee the form was sent to, and when.
    pub assigned_to: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Field 10: when the employee called back, who, and the outcome.
    pub called_back_at: Option<DateTime<Utc>>,
    pub called_back_by: Option<String>,
    pub result: Option<String>,
    /// Field 7 passed without a callback.
    pub overdue: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// A new form from the operator console. With `journal_id`, fields 1–5 default to the
/// journal entry's.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCallbackForm {
    #[serde(default)]
    pub journal_id: Option<i64>,
    #[serde(default)]
    pub called_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub caller_name: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub caller_status: Option<CallerStatus>,
    pub question: String,
    pub convenient_at: DateTime<Utc>,
    #[serde(default)]
    pub convenient_note: Option<String>,
    #[serde(default)]
    pub operator_comment: Option<String>,
}

impl NewCallbackForm {
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.question.trim().is_empty() {
            return Err(RecordError::invalid("question", "must not be empty"));
        }
        check_len("question", &self.question, 20_000)?;
        if let Some(p) = &self.phone {
            validate_phone("phone", p)?;
        } else if self.journal_id.is_none() {
            return Err(RecordError::invalid(
                "phone",
                "is required when the form is not made from a journal entry",
            ));
        }
        if let Some(v) = &self.caller_name {
            check_len("caller_name", v, 200)?;
        }
        if let Some(v) = &self.convenient_note {
            check_len("convenient_note", v, 500)?;
        }
        if let Some(v) = &self.operator_comment {
            check_len("operator_comment", v, 5_000)?;
        }
        Ok(())
    }
}

/// Sending a form to the employee who will call back.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendCallback {
    /// Name or e-mail of the employee.
    pub assigned_to: String,
}

/// Field 10, filled by the employee after calling.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteCallback {
    /// When the call was made; now if absent. Not in the future.
    #[serde(default)]
    pub called_back_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub result: Option<String>,
}

/// Which forms a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    /// Not called back yet.
    Open,
    /// Not called back and field 7 has passed.
    Overdue,
    /// Called back.
    Done,
}
