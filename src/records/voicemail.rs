//! Voicemail records: a message a caller left (the file itself is written by the call
//! flow), and the duty to process it "no later than the next working day" (SPEC §2.6): the
//! deadline is computed from the calendar when the record is made and stored with it.

use super::atm::{AtmCategory, TicketKind};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::ToSchema;

/// A message as the call flow hands it over.
#[derive(Debug, Clone)]
pub struct NewVoicemail {
    pub journal_id: i64,
    pub arrived_at: DateTime<Utc>,
    /// Path of the WAV relative to the data directory.
    pub file: String,
    pub duration: Duration,
    /// Too short to hold a message; kept and journaled all the same.
    pub empty: bool,
    /// Left outside working hours.
    pub after_hours: bool,
}

/// A voicemail as stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Voicemail {
    pub id: i64,
    pub journal_id: i64,
    pub phone: String,
    pub arrived_at: DateTime<Utc>,
    pub file: String,
    pub duration_s: f64,
    pub empty: bool,
    pub after_hours: bool,
    /// End of the next working day after arrival.
    pub deadline_at: DateTime<Utc>,
    /// Past the deadline and not processed.
    pub overdue: bool,
    pub transcript: Option<String>,
    pub processed_by: Option<String>,
    pub processed_at: Option<DateTime<Utc>>,
    /// The callback form made from this message.
    pub callback_id: Option<i64>,
    /// What the transcript suggests to the operator: an ATM ticket kind and category, and
    /// the words that made it so (SPEC §2.7). None until transcribed.
    #[schema(value_type = Option<Object>)]
    pub suggestion: Option<Suggestion>,
    /// The transcription job: pending / running / done / failed; none for an empty message.
    pub transcription_status: Option<String>,
    /// Why the last attempt failed.
    pub transcription_error: Option<String>,
}

/// Which messages a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VoicemailStatus {
    Open,
    Overdue,
    Processed,
}

/// What the classifier suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestedKind {
    AtmFault,
    AtmSecurity,
    /// Not about an ATM (a callback request, a card question, …).
    Other,
}

impl SuggestedKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SuggestedKind::AtmFault => "atm_fault",
            SuggestedKind::AtmSecurity => "atm_security",
            SuggestedKind::Other => "other",
        }
    }
}

impl From<TicketKind> for SuggestedKind {
    fn from(k: TicketKind) -> Self {
        match k {
            TicketKind::AtmFault => SuggestedKind::AtmFault,
            TicketKind::AtmSecurity => SuggestedKind::AtmSecurity,
        }
    }
}

/// The suggestion with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub kind: SuggestedKind,
    /// None when the kind is `other`.
    pub category: Option<AtmCategory>,
    /// The transcript's words that made the suggestion, in text order.
    pub matched: Vec<String>,
}

/// What the notices say about a message.
#[derive(Debug, Clone)]
pub struct VoicemailFacts {
    pub id: i64,
    pub journal_id: i64,
    /// The journal's number, "№ 12/2026".
    pub journal_no: String,
    pub phone: String,
    pub arrived_at: DateTime<Utc>,
    pub duration_s: f64,
    pub after_hours: bool,
    pub empty: bool,
    pub deadline_at: DateTime<Utc>,
    pub callback_id: Option<i64>,
    pub transcript: Option<String>,
    pub suggestion: Option<Suggestion>,
}

/// A message's transcription handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptionJob {
    pub id: i64,
    pub voicemail_id: i64,
    /// The WAV, relative to the data directory.
    pub file: String,
    /// Attempts including this one.
    pub attempts: i64,
}

/// What a finished transcription brings.
#[derive(Debug, Clone)]
pub struct Transcribed<'a> {
    pub transcript: &'a str,
    pub suggestion: &'a Suggestion,
    pub audio: Duration,
    pub elapsed: Duration,
}
