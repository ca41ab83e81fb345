//! The incoming-call journal ("Журнал регистрации входящих звонков", regulation Appendix 6):
//! one entry per call, created by the call flow, completed by operators. The ten columns of
//! the paper journal plus the machine's call detail, and the rules that do not need a
//! database: dispositions, the caller's status, phone-number matching for repeat appeals,
//! validation of operators' edits.

use super::{check_len, double_option, RecordError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How a call ended up; the journal's "result" column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Disposition {
    /// The call is still going on.
    InProgress,
    /// An operator talked to the caller (`operator` says who).
    Answered,
    /// All operators were busy (or `max_wait` passed) and the caller left a voicemail.
    Voicemail,
    /// Outside working hours; the caller left a voicemail.
    AfterHoursVoicemail,
    /// The caller hung up while waiting.
    Abandoned,
    /// The call could not be handled (media failure, no common codec after answer…).
    Failed,
}

impl Disposition {
    pub const ALL: [Disposition; 6] = [
        Disposition::InProgress,
        Disposition::Answered,
        Disposition::Voicemail,
        Disposition::AfterHoursVoicemail,
        Disposition::Abandoned,
        Disposition::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::InProgress => "in_progress",
            Disposition::Answered => "answered",
            Disposition::Voicemail => "voicemail",
            Disposition::AfterHoursVoicemail => "after_hours_voicemail",
            Disposition::Abandoned => "abandoned",
            Disposition::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Disposition> {
        Disposition::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The wording of the CSV export.
    pub fn russian(self) -> &'static str {
        match self {
            Disposition::InProgress => "идёт разговор",
            Disposition::Answered => "принят оператором",
            Disposition::Voicemail => "голосовое сообщение",
            Disposition::AfterHoursVoicemail => "голосовое сообщение (нерабочее время)",
            Disposition::Abandoned => "не дождался ответа",
            Disposition::Failed => "сбой",
        }
    }
}

/// Column 4, "Статус заявителя: ФЛ/ЮЛ".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerStatus {
    /// Физическое лицо (ФЛ).
    Individual,
    /// Юридическое лицо (ЮЛ).
    Legal,
}

impl CallerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallerStatus::Individual => "individual",
            CallerStatus::Legal => "legal",
        }
    }

    pub fn parse(s: &str) -> Option<CallerStatus> {
        match s {
            "individual" => Some(CallerStatus::Individual),
            "legal" => Some(CallerStatus::Legal),
            _ => None,
        }
    }

    pub fn russian(self) -> &'static str {
        match self {
            CallerStatus::Individual => "ФЛ",
            CallerStatus::Legal => "ЮЛ",
        }
    }
}

/// What the appeal was, set by the operator: §8.2's satisfaction level counts repeat
/// complaints among complaints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppealType {
    Question,
    Complaint,
    Application,
    Proposal,
    AtmIncident,
    Other,
}

impl AppealType {
    pub const ALL: [AppealType; 6] = [
        AppealType::Question,
        AppealType::Complaint,
        AppealType::Application,
        AppealType::Proposal,
        AppealType::AtmIncident,
        AppealType::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AppealType::Question => "question",
            AppealType::Complaint => "complaint",
            AppealType::Application => "application",
            AppealType::Proposal => "proposal",
            AppealType::AtmIncident => "atm_incident",
            AppealType::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<AppealType> {
        AppealType::ALL.into_iter().find(|a| a.as_str() == s)
    }

    /// As the console names it.
    pub fn russian(self) -> &'static str {
        match self {
            AppealType::Question => "вопрос",
            AppealType::Complaint => "жалоба",
            AppealType::Application => "заявление",
            AppealType::Proposal => "предложение",
            AppealType::AtmIncident => "инцидент с банкоматом",
            AppealType::Other => "другое",
        }
    }
}

/// A call arriving: what the telephony side knows when it creates the entry.
#[derive(Debug, Clone)]
pub struct NewCall {
    /// SIP Call-ID; unique, so that a retried write never makes a second entry.
    pub call_id: Option<String>,
    pub arrived_at: DateTime<Utc>,
    /// The caller's number (P-Asserted-Identity, else From); column 5.
    pub phone: String,
    /// The From display name, if any; a starting point for column 3.
    pub caller_name: Option<String>,
}

/// The call detail the call flow fills in as the call goes on.
#[derive(Debug, Clone, Default)]
pub struct CallProgress {
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub wait_ms: Option<i64>,
    pub disposition: Option<Disposition>,
    /// Extension of the operator who answered.
    pub operator: Option<String>,
    /// Recording path relative to the data directory.
    pub recording: Option<String>,
}

/// The previous entry a repeat appeal is linked to.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EntryRef {
    pub id: i64,
    /// "№ п/п" of that entry and its year.
    pub year: i64,
    pub seq: i64,
}

/// The voicemail left on the call, as the journal shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EntryVoicemail {
    pub id: i64,
    pub transcript: Option<String>,
}

/// One journal entry: the ten columns and the call detail.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Entry {
    pub id: i64,
    /// Column 1, "№ п/п": restarts at 1 each year (`year`).
    pub seq: i64,
    pub year: i64,
    /// Column 2 (the date) is the date of `arrived_at` in the calendar's time zone.
    pub arrived_at: DateTime<Utc>,
    /// Column 3.
    pub caller_name: Option<String>,
    /// Column 4.
    pub caller_status: Option<CallerStatus>,
    /// Column 5.
    pub phone: String,
    /// Column 6: the agreed callback date and time.
    pub callback_at: Option<DateTime<Utc>>,
    /// Column 7: what the caller said (the operator's words, or the voicemail transcript).
    pub content: Option<String>,
    /// Column 8: to whom the appeal was forwarded.
    pub forwarded_to: Option<String>,
    /// Column 9: when.
    pub forwarded_at: Option<DateTime<Utc>>,
    /// Column 10: when the callback was made.
    pub done_at: Option<DateTime<Utc>>,
    pub appeal_type: Option<AppealType>,
    pub call_id: Option<String>,
    pub disposition: Disposition,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Seconds the caller waited for an operator (or for voicemail).
    pub wait_s: Option<f64>,
    pub operator: Option<String>,
    pub recording: Option<String>,
    pub repeat_of: Option<EntryRef>,
    pub voicemail: Option<EntryVoicemail>,
    /// Registration numbers of the ATM tickets registered on this call (`АТМ-2026-000001,
    /// …`); the tickets themselves are behind `/atm/tickets?journal_id=`.
    pub tickets: Option<String>,
    /// The node of a cluster that took the call (`None` on a single hotline).
    pub node: Option<String>,
    /// Why the call ended as it did, when not by its own course: `node_lost` (the node it
    /// was on stopped answering, and a survivor ended it).
    pub end_reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// An operator's edit of an entry: only the columns people fill in. A field left out is
/// unchanged, `null` clears it. Unknown fields are refused, so a typo is not ignored.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPatch {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub caller_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<CallerStatus>)]
    pub caller_status: Option<Option<CallerStatus>>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub callback_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub content: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub forwarded_to: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub forwarded_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub done_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<AppealType>)]
    pub appeal_type: Option<Option<AppealType>>,
}

impl EntryPatch {
    /// Checks lengths and formats; the error names the field.
    pub fn validate(&self) -> Result<(), RecordError> {
        if let Some(Some(v)) = &self.caller_name {
            check_len("caller_name", v, 200)?;
        }
        if let Some(v) = &self.phone {
            validate_phone("phone", v)?;
        }
        if let Some(Some(v)) = &self.content {
            check_len("content", v, 20_000)?;
        }
        if let Some(Some(v)) = &self.forwarded_to {
            check_len("forwarded_to", v, 500)?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.caller_name.is_none()
            && self.caller_status.is_none()
            && self.phone.is_none()
            && self.callback_at.is_none()
            && self.content.is_none()
            && self.forwarded_to.is_none()
            && self.forwarded_at.is_none()
            && self.done_at.is_none()
            && self.appeal_type.is_none()
    }
}

/// A phone number as people write it: digits, `+`, spaces, dashes, parentheses; or the
/// SIP side's `anonymous` for a withheld number.
pub fn validate_phone(field: &'static str, v: &str) -> Result<(), RecordError> {
    let ok_chars = v
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '*' | '#'));
    if v == "anonymous" || (ok_chars && v.chars().any(|c| c.is_ascii_digit()) && v.len() <= 32) {
        Ok(())
    } else {
        Err(RecordError::invalid(
            field,
            "must be a phone number (digits, +, spaces, dashes, parentheses; at most 32)",
        ))
    }
}

/// The key repeat appeals and the phone filter match on: the digits, with a Russian
/// number's `+7`/`8` trunk prefix dropped, so that `+7 (978) 123-45-67`, `89781234567` and
/// `9781234567` are one caller. Empty for withheld numbers, which never match.
pub fn phone_key(phone: &str) -> String {
    let digits: String = phone.chars().filter(|c| c.is_ascii_digit()).collect();
    if digits.len() == 11 && (digits.starts_with('7') || digits.starts_with('8')) {
        digits[1..].to_string()
    } else {
        digits
    }
}

/// Filters of the journal list and export.
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    /// Arrived at or after.
    pub from: Option<DateTime<Utc>>,
    /// Arrived before.
    pub to: Option<DateTime<Utc>>,
    pub operator: Option<String>,
    pub disposition: Option<Disposition>,
    /// Matched on [`phone_key`].
    pub phone: Option<String>,
    /// Case-insensitive text in the caller's name, the content or a voicemail transcript.
    pub text: Option<String>,
    /// Only entries marked as repeat appeals.
    pub repeat: Option<bool>,
}

/// Where a page of the journal starts: entries are listed newest first, by arrival and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub arrived_ms: i64,
    pub id: i64,
}

impl Cursor {
    /// Opaque to clients; `<arrived ms>.<id>`, base64url.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{}.{}", self.arrived_ms, self.id))
    }

    pub fn decode(s: &str) -> Result<Cursor, RecordError> {
        use base64::Engine;
        let bad = || RecordError::invalid("cursor", "is not a cursor this API returned");
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        let text = String::from_utf8(raw).map_err(|_| bad())?;
        let (a, i) = text.split_once('.').ok_or_else(bad)?;
        Ok(Cursor {
            arrived_ms: a.parse().map_err(|_| bad())?,
            id: i.parse().map_err(|_| bad())?,
        })
    }
}

/// Lower-cased text the `text` filter searches: SQLite's `lower()` and `LIKE` fold ASCII
/// only, so Cyrillic is folded here, identically for both databases.
pub fn search_text(parts: &[Option<&str>]) -> String {
    let mut out = String::new();
    for p in parts.iter().flatten() {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&p.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_key_unifies_russian_formats() {
        assert_eq!(phone_key("+7 (978) 123-45-67"), "9781234567");
        assert_eq!(phone_key("89781234567"), "9781234567");
        assert_eq!(phone_key("9781234567"), "9781234567");
        assert_eq!(phone_key("1001"), "1001");
        assert_eq!(phone_key("anonymous"), "");
    }

    #[test]
    fn phone_validation() {
        assert!(validate_phone("phone", "+7 (978) 123-45-67").is_ok());
        assert!(validate_phone("phone", "anonymous").is_ok());
        let e = validate_phone("phone", "call me").unwrap_err();
        assert!(e.to_string().contains("phone"));
        assert!(validate_phone("phone", "").is_err());
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            arrived_ms: 1_767_225_600_000,
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("nonsense!").is_err());
        assert!(Cursor::decode("bm9kb3Q").is_err()); // "nodot"
    }

    #[test]
    fn patch_distinguishes_absent_null_and_value() {
        let p: EntryPatch =
            serde_json::from_str(r#"{"caller_name": null, "content": "Вопрос"}"#).unwrap();
        assert_eq!(p.caller_name, Some(None));
        assert_eq!(p.content, Some(Some("Вопрос".into())));
        assert_eq!(p.forwarded_to, None);
        assert!(serde_json::from_str::<EntryPatch>(r#"{"contnet": "x"}"#).is_err());
    }

    #[test]
    fn search_text_folds_cyrillic() {
        assert_eq!(
            search_text(&[Some("Банкомат"), None, Some("СКИММЕР")]),
            "банкомат\nскиммер"
        );
    }

    #[test]
    fn dispositions_round_trip() {
        for d in Disposition::ALL {
            assert_eq!(Disposition::parse(d.as_str()), Some(d));
        }
        assert_eq!(Disposition::parse("lost"), None);
    }
}
