//! The records the bank's regulation demands (SPEC §3): the incoming-call journal, callback
//! forms, voicemail, ATM tickets, with the audit log of every change. This module is the
//! domain, at the bottom: types, validation and rules, no I/O. The SQL is in
//! [`crate::store`], the writes go through [`crate::desk`].

pub mod access;
pub mod account;
pub mod alert;
pub mod atm;
pub mod callback;
pub mod hourly;
pub mod journal;
pub mod notice;
pub mod quick;
pub mod ring;
pub mod role;
pub mod spreadsheet;
pub mod tickets;
pub mod token;
pub mod voicemail;

use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Input that breaks a rule of the records, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("`{field}`: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
}

impl RecordError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> RecordError {
        RecordError::Invalid {
            field,
            message: message.into(),
        }
    }
}

/// Rejects text over `max` characters, naming the field.
pub(crate) fn check_len(field: &'static str, v: &str, max: usize) -> Result<(), RecordError> {
    if v.chars().count() > max {
        Err(RecordError::invalid(
            field,
            format!("is longer than {max} characters"),
        ))
    } else {
        Ok(())
    }
}

/// `Option<Option<T>>` from JSON: absent → `None`, `null` → `Some(None)`, a value →
/// `Some(Some(v))`. Used with `#[serde(default)]` so that a patch can clear a field.
pub(crate) fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A file the database names (recordings, voicemail), inside the data directory; `None`
/// for an absolute path or one with `..`, which no record of ours holds.
pub fn data_file(data_dir: &std::path::Path, rel: &str) -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(rel);
    p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| data_dir.join(p))
}

/// Settings of the records (`[records]` in hotline.toml).
#[derive(Debug, Clone)]
pub struct RecordsSettings {
    /// A call from a number with an entry this recent is a repeat appeal (ch. 3).
    pub repeat_window: Duration,
    /// Records and recordings are kept this many years after their last document (§7.6).
    pub retention_years: u32,
    /// Service level: share of calls answered within this many seconds.
    pub service_level: Duration,
}

impl Default for RecordsSettings {
    fn default() -> Self {
        RecordsSettings {
            repeat_window: Duration::from_secs(30 * 86_400),
            retention_years: 5,
            service_level: Duration::from_secs(20),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_stays_inside_the_data_dir() {
        let d = std::path::Path::new("/data");
        assert_eq!(
            data_file(d, "voicemail/2026/x.wav"),
            Some("/data/voicemail/2026/x.wav".into())
        );
        assert_eq!(data_file(d, "../etc/passwd"), None);
        assert_eq!(data_file(d, "/etc/passwd"), None);
    }
}
