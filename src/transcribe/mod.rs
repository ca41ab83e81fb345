//! Voicemail transcription (SPEC §2.7): whisper.cpp through `whisper-rs` behind the small
//! [`Transcriber`](engine::Transcriber) trait, 8 kHz telephone audio resampled to whisper's 16 kHz
//! ([`resample`]), the database-backed job worker ([`worker`]) that a restart resumes,
//! and the keyword classifier ([`classify`]) that suggests an ATM ticket to the operator.
//!
//! Inference is CPU-heavy and blocking: it runs on a bounded pool of blocking threads
//! (`[transcription] workers` × `threads`), never on the runtime threads that move RTP.

pub mod classify;
pub mod engine;
pub mod resample;
pub mod test_model;
pub mod worker;

use serde::Deserialize;
use std::path::PathBuf;

/// A `[transcription]` setting that cannot work, naming its key.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("`{key}`: {problem}")]
    Invalid {
        key: &'static str,
        problem: &'static str,
    },
}

fn invalid(key: &'static str, problem: &'static str) -> SettingError {
    SettingError::Invalid { key, problem }
}

/// `[transcription]` in `hotline.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptionConfig {
    /// A whisper.cpp ggml model (`ggml-base.bin`, `ggml-small.bin`). Unset or missing:
    /// a warning at start-up and in `/healthz`; jobs wait until a model is there.
    #[serde(default)]
    pub model: Option<PathBuf>,
    /// Spoken language (ISO 639-1) given to whisper; the hotline's callers speak Russian.
    #[serde(default = "default_language")]
    pub language: String,
    /// CPU threads one transcription uses.
    #[serde(default = "default_threads")]
    pub threads: u32,
    /// Transcriptions run at once. `workers × threads` should leave cores to the media.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// A job that failed this many times stays `failed` (its error kept) until retried.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        TranscriptionConfig {
            model: None,
            language: default_language(),
            threads: default_threads(),
            workers: default_workers(),
            max_attempts: default_max_attempts(),
        }
    }
}

impl TranscriptionConfig {
    pub fn validate(&self) -> Result<(), SettingError> {
        if self.language.len() != 2 || !self.language.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(invalid(
                "transcription.language",
                "must be a two-letter language code such as \"ru\"",
            ));
        }
        if !(1..=64).contains(&self.threads) {
            return Err(invalid("transcription.threads", "must be between 1 and 64"));
        }
        if !(1..=16).contains(&self.workers) {
            return Err(invalid("transcription.workers", "must be between 1 and 16"));
        }
        if self.max_attempts == 0 {
            return Err(invalid("transcription.max_attempts", "must be at least 1"));
        }
        Ok(())
    }
}

fn default_language() -> String {
    "ru".into()
}
fn default_threads() -> u32 {
    2
}
fn default_workers() -> usize {
    1
}
fn default_max_attempts() -> u32 {
    3
}
