//! The speech-to-text engine: whisper.cpp through `whisper-rs`, behind [`Transcriber`].
//!
//! The trait exists so that the job worker can be driven by any engine (tests use the real
//! one with a generated model, see [`super::test_model`]); there is one production engine.
//! A loaded model is shared read-only; each transcription makes its own whisper state
//! (decoder caches), so several can run at once on one model.

use super::resample::{self, WHISPER_RATE};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    /// The model file is missing, unreadable or not a whisper model.
    #[error("whisper model {path}: {reason}")]
    Model { path: PathBuf, reason: String },
    /// The recording cannot be read.
    #[error("audio: {0}")]
    Audio(String),
    /// whisper failed on it.
    #[error("inference: {0}")]
    Inference(String),
}

/// Turns 16 kHz mono f32 audio into text.
pub trait Transcriber: Send + Sync {
    fn transcribe(&self, audio_16k: &[f32]) -> Result<String, TranscribeError>;
}

/// The magic number that starts a ggml whisper model ("ggml", little-endian).
pub const GGML_MAGIC: u32 = 0x6767_6d6c;

/// A loaded whisper model and how to run it.
pub struct WhisperTranscriber {
    ctx: WhisperContext,
    language: String,
    threads: u32,
}

impl WhisperTranscriber {
    /// Loads a ggml model (`ggml-base.bin`, `ggml-small.bin`, …). Checks the file first so
    /// that a wrong path or a wrong file reads as such, not as whisper.cpp's terse failure.
    pub fn load(path: &Path, language: &str, threads: u32) -> Result<Self, TranscribeError> {
        let model_err = |reason: String| TranscribeError::Model {
            path: path.to_path_buf(),
            reason,
        };
        let mut magic = [0u8; 4];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(|e| model_err(e.to_string()))?;
        if u32::from_le_bytes(magic) != GGML_MAGIC {
            return Err(model_err("not a ggml whisper model (bad magic)".into()));
        }
        // whisper.cpp logs every tensor to stderr; route it to tracing instead.
        whisper_rs::install_logging_hooks();
        let ctx = WhisperContext::new_with_params(path, WhisperContextParameters::default())
            .map_err(|e| model_err(format!("whisper.cpp cannot load it: {e}")))?;
        Ok(WhisperTranscriber {
            ctx,
            language: language.to_owned(),
            threads,
        })
    }
}

/// Whisper skips input under a second; voicemail that short is padded with silence.
const MIN_SAMPLES: usize = WHISPER_RATE as usize;

impl Transcriber for WhisperTranscriber {
    fn transcribe(&self, audio_16k: &[f32]) -> Result<String, TranscribeError> {
        let mut state = self
            .ctx
            .create_state()
            .map_err(|e| TranscribeError::Inference(format!("cannot create a state: {e}")))?;
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(self.threads as i32);
        params.set_language(Some(&self.language));
        // Each 30 s window on its own (no earlier text as prompt, within a message nor
        // across messages): on noisy phone audio, conditioning on the previous window's
        // text is what makes whisper repeat itself.
        params.set_no_context(true);
        params.set_n_max_text_ctx(0);
        // A voicemail transcript is read, not subtitled.
        params.set_no_timestamps(true);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        let padded;
        let audio = if audio_16k.len() < MIN_SAMPLES {
            padded = [audio_16k, &vec![0.0; MIN_SAMPLES - audio_16k.len()]].concat();
            &padded[..]
        } else {
            audio_16k
        };
        state
            .full(params, audio)
            .map_err(|e| TranscribeError::Inference(e.to_string()))?;
        let mut text = String::new();
        for segment in state.as_iter() {
            let s = segment
                .to_str_lossy()
                .map_err(|e| TranscribeError::Inference(e.to_string()))?;
            text.push_str(&s);
        }
        Ok(text.trim().to_owned())
    }
}

/// A finished transcription.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub text: String,
    /// Length of the recording.
    pub audio_seconds: f64,
    /// Time spent in the engine (resampling excluded): `elapsed / audio` is the real-time
    /// factor the benchmark reports.
    pub elapsed: Duration,
}

/// Reads a mono (or stereo, mixed down) 16-bit WAV, resamples it to 16 kHz and transcribes.
pub fn transcribe_wav(
    engine: &dyn Transcriber,
    path: &Path,
) -> Result<Transcript, TranscribeError> {
    let (audio, audio_seconds) = read_wav_16k(path)?;
    let started = Instant::now();
    let text = engine.transcribe(&audio)?;
    Ok(Transcript {
        text,
        audio_seconds,
        elapsed: started.elapsed(),
    })
}

/// A WAV file as whisper's input, and its length in seconds.
pub fn read_wav_16k(path: &Path) -> Result<(Vec<f32>, f64), TranscribeError> {
    let audio_err =
        |e: &dyn std::fmt::Display| TranscribeError::Audio(format!("{}: {e}", path.display()));
    let mut reader = hound::WavReader::open(path).map_err(|e| audio_err(&e))?;
    let spec = reader.spec();
    if spec.sample_format != hound::SampleFormat::Int || spec.bits_per_sample != 16 {
        return Err(audio_err(&"only 16-bit PCM WAV is supported"));
    }
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| audio_err(&e))?;
    let channels = usize::from(spec.channels.max(1));
    let mono: Vec<i16> = if channels == 1 {
        samples
    } else {
        samples
            .chunks(channels)
            .map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / c.len() as i32) as i16)
            .collect()
    };
    if mono.is_empty() {
        return Err(audio_err(&"the recording is empty"));
    }
    let seconds = mono.len() as f64 / f64::from(spec.sample_rate);
    let audio = resample::to_whisper(&mono, spec.sample_rate).map_err(|e| audio_err(&e))?;
    Ok((audio, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_foreign_model_file_says_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("ggml-base.bin");
        let err = WhisperTranscriber::load(&missing, "ru", 1).err().unwrap();
        assert!(
            matches!(&err, TranscribeError::Model { path, .. } if path == &missing),
            "{err}"
        );
        let foreign = dir.path().join("model.bin");
        std::fs::write(&foreign, b"GGUF and more").unwrap();
        let err = WhisperTranscriber::load(&foreign, "ru", 1).err().unwrap();
        assert!(err.to_string().contains("bad magic"), "{err}");
    }

    #[test]
    fn wav_is_read_mixed_down_and_resampled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..8000 {
            w.write_sample((i % 100) as i16).unwrap();
            w.write_sample((i % 100) as i16).unwrap();
        }
        w.finalize().unwrap();
        let (audio, seconds) = read_wav_16k(&path).unwrap();
        assert!((seconds - 1.0).abs() < 1e-9);
        assert!((audio.len() as i64 - 16_000).abs() <= 2);

        let bad = dir.path().join("bad.wav");
        std::fs::write(&bad, b"RIFF....WAVEjunk").unwrap();
        assert!(matches!(read_wav_16k(&bad), Err(TranscribeError::Audio(_))));
    }
}
