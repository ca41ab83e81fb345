//! Voicemail recording: the caller's voice alone, in a mono WAV file of its own, while the
//! stereo call recording ([`super::recorder`]) goes on as before.
//!
//! Three parts:
//!
//! * [`Capture`], sans-IO: decides when a message ends. It is fed the caller's decoded
//!   audio (20 ms frames), lost-packet gaps and clock ticks, and keeps its own sample
//!   clock; it never touches a file or reads the time itself, so its tests use synthetic
//!   PCM and a fake clock.
//! * [`MonoWriter`]: the file, written like the call recording (buffered, flushed with
//!   the header rewritten at least once a second, so a crash leaves a file that
//!   [`super::recorder::repair_dir`] makes playable; it reads the frame size from the
//!   `fmt ` chunk, so mono files are repaired like stereo ones).
//! * [`Voicemail`]: the two together, as the media session uses them.
//!
//! # When a message ends
//!
//! * **`max_length`** (default 120 s) of audio in the file: the frame that reaches it is
//!   cut, so the file is exactly `max_length` long;
//! * **long silence** (default 7 s): frames whose RMS is below `threshold_dbfs` (default
//!   −45 dBFS, full scale being ±32768), counted from the last frame above it (or from the
//!   start). Time without any RTP counts as silence too: [`Capture::tick`] follows the wall
//!   clock and pads the file with silence when the caller's audio lags it by more than
//!   [`MAX_SKEW`] (200 ms, ordinary jitter), exactly as the call recording's caller channel
//!   does; lost packets reported afterwards for the same stretch are not filled twice;
//! * when told: the caller pressed `#` (the call flow sends the stop; this module has no
//!   policy about keys), hung up, or the file could not be written.
//!
//! The file is kept as recorded, trailing silence included: nothing is trimmed, nothing
//! lost. The summary says how much of it was speech; a message with less than
//! `min_speech` (default 1 s) of speech is marked `empty` (and journaled all the same).
//!
//! # Allocation
//!
//! [`Voicemail::start`] allocates the write buffers; feeding audio and ticking never
//! allocate, so the per-packet path of the media session stays allocation-free.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hound::{SampleFormat, WavSpec, WavWriter};
use tracing::warn;

use super::leg::FRAME_SAMPLES;
use super::recorder::{
    create_unique_with, create_wav, RecorderError, FLUSH_INTERVAL, MAX_SKEW, SAMPLE_RATE,
};

/// Default longest message (SPEC §2.6).
pub const DEFAULT_MAX_LENGTH: Duration = Duration::from_secs(120);
/// Default silence that ends a message.
pub const DEFAULT_SILENCE: Duration = Duration::from_secs(7);
/// Default least speech for a message not to be `empty`.
pub const DEFAULT_MIN_SPEECH: Duration = Duration::from_secs(1);
/// Default level (RMS of a frame, dBFS) below which a frame is silence.
pub const DEFAULT_THRESHOLD_DBFS: f32 = -45.0;

/// Samples classified together: one 20 ms frame.
const FRAME: usize = FRAME_SAMPLES as usize;

/// Longest lost-packet gap filled at once (1 s), as in the call recording.
const MAX_GAP: u64 = SAMPLE_RATE as u64;

/// Bytes per sample of the mono 16-bit file.
const BLOCK_ALIGN: u64 = 2;

/// Header hound writes for mono 16-bit PCM (plain PCMWAVEFORMAT).
const HEADER_LEN: u64 = 44;

/// Most samples a WAV file can hold (the RIFF size is a `u32`): about 74 hours.
const MAX_SAMPLES: u64 = (u32::MAX as u64 - (HEADER_LEN - 8)) / BLOCK_ALIGN;

/// Samples handed to hound's 16-bit writer in one go (its buffer is allocated once).
const CHUNK: usize = 512;

/// The WAV format of a voicemail: 8 kHz, mono, 16-bit.
const SPEC: WavSpec = WavSpec {
    channels: 1,
    sample_rate: SAMPLE_RATE,
    bits_per_sample: 16,
    sample_format: SampleFormat::Int,
};

/// What the call flow asks for: where to record and when to stop.
#[derive(Clone, Debug, PartialEq)]
pub struct VoicemailSpec {
    /// Where the file goes; a name already taken gets `-2`, `-3`, … before `.wav`.
    pub path: PathBuf,
    /// Longest message.
    pub max_length: Duration,
    /// Silence (from the last speech) that ends the message; zero: no silence stop.
    pub silence: Duration,
    /// Less speech than this marks the message `empty`.
    pub min_speech: Duration,
    /// Frames whose RMS is below this (dBFS) are silence.
    pub threshold_dbfs: f32,
}

impl VoicemailSpec {
    /// A spec with the default limits.
    pub fn new(path: impl Into<PathBuf>) -> VoicemailSpec {
        let limits = CaptureLimits::default();
        VoicemailSpec {
            path: path.into(),
            max_length: limits.max_length,
            silence: limits.silence,
            min_speech: limits.min_speech,
            threshold_dbfs: limits.threshold_dbfs,
        }
    }

    pub fn limits(&self) -> CaptureLimits {
        CaptureLimits {
            max_length: self.max_length,
            silence: self.silence,
            min_speech: self.min_speech,
            threshold_dbfs: self.threshold_dbfs,
        }
    }
}

/// Why a voicemail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoicemailStop {
    /// The call flow stopped it (the caller pressed `#`).
    Key,
    /// It reached `max_length`.
    MaxLength,
    /// Long silence.
    Silence,
    /// The session ended (the caller hung up) while it recorded.
    HangUp,
    /// The file could not be created or written; what reached it is kept.
    Error,
}

/// What the call flow gets when a voicemail ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoicemailSummary {
    /// The file (as created: possibly with a `-N` suffix).
    pub path: PathBuf,
    /// Audio in the file.
    pub duration: Duration,
    /// How much of it was above the silence threshold.
    pub speech: Duration,
    /// Less speech than `min_speech`: kept and journaled, but nobody said anything.
    pub empty: bool,
    pub stop: VoicemailStop,
}

impl VoicemailSummary {
    /// The summary of a voicemail whose file could not be created.
    pub fn failed(path: PathBuf) -> VoicemailSummary {
        VoicemailSummary {
            path,
            duration: Duration::ZERO,
            speech: Duration::ZERO,
            empty: true,
            stop: VoicemailStop::Error,
        }
    }
}

/// When a message ends (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CaptureLimits {
    pub max_length: Duration,
    /// Zero: the message does not end on silence.
    pub silence: Duration,
    pub min_speech: Duration,
    pub threshold_dbfs: f32,
}

impl Default for CaptureLimits {
    fn default() -> Self {
        CaptureLimits {
            max_length: DEFAULT_MAX_LENGTH,
            silence: DEFAULT_SILENCE,
            min_speech: DEFAULT_MIN_SPEECH,
            threshold_dbfs: DEFAULT_THRESHOLD_DBFS,
        }
    }
}

/// What one input to the [`Capture`] means for the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// For [`Capture::audio`]: how many leading samples of the input belong to the
    /// message. For [`Capture::gap`] and [`Capture::tick`]: samples of silence to write.
    pub samples: usize,
    /// The message ends here (reported once).
    pub stop: Option<VoicemailStop>,
}

impl Step {
    const NOTHING: Step = Step {
        samples: 0,
        stop: None,
    };
}

/// The end-of-message decision, sans IO. Its clock is the samples of the message; `tick`
/// keeps that clock within [`MAX_SKEW`] of the wall clock.
#[derive(Debug)]
pub struct Capture {
    max_samples: u64,
    /// `None`: no silence stop.
    silence_samples: Option<u64>,
    min_speech_samples: u64,
    /// Mean square (of 16-bit samples) at the threshold.
    threshold_ms: f64,
    started: Instant,
    /// Samples in the message so far.
    samples: u64,
    /// Samples of frames at or above the threshold.
    speech: u64,
    /// Silent samples since the last speech frame (or the start).
    trailing: u64,
    /// Silence `tick` inserted since the caller's last audio; a gap reported later for
    /// the same stretch uses this up first.
    padded: u64,
    stopped: Option<VoicemailStop>,
}

impl Capture {
    /// A message starting at `now`.
    pub fn new(limits: &CaptureLimits, now: Instant) -> Capture {
        let dbfs = if limits.threshold_dbfs.is_finite() {
            limits.threshold_dbfs
        } else {
            DEFAULT_THRESHOLD_DBFS
        };
        let amplitude = 32768.0 * 10f64.powf(f64::from(dbfs) / 20.0);
        Capture {
            max_samples: duration_to_samples(limits.max_length).min(MAX_SAMPLES),
            silence_samples: (!limits.silence.is_zero())
                .then(|| duration_to_samples(limits.silence)),
            min_speech_samples: duration_to_samples(limits.min_speech),
            threshold_ms: amplitude * amplitude,
            started: now,
            samples: 0,
            speech: 0,
            trailing: 0,
            padded: 0,
            stopped: None,
        }
    }

    /// Decoded audio from the caller. The message may end with it: `samples` then says
    /// how much of `pcm` still belongs to it (less than all at `max_length`).
    pub fn audio(&mut self, pcm: &[i16]) -> Step {
        if self.stopped.is_some() {
            return Step::NOTHING;
        }
        // Real audio ends the stretch `padded` was counting.
        self.padded = 0;
        let room = usize::try_from(self.max_samples - self.samples).unwrap_or(usize::MAX);
        let take = pcm.len().min(room);
        for frame in pcm[..take].chunks(FRAME) {
            let n = frame.len() as u64;
            if self.is_speech(frame) {
                self.speech += n;
                self.trailing = 0;
            } else {
                self.trailing += n;
            }
            self.samples += n;
        }
        let stop = self.decide(0);
        Step {
            samples: take,
            stop,
        }
    }

    /// `n` samples lost (or suppressed) before the caller's next audio: silence, except
    /// what `tick` already padded for the same stretch. At most a second is filled.
    pub fn gap(&mut self, n: usize) -> Step {
        if self.stopped.is_some() {
            return Step::NOTHING;
        }
        let n = (n as u64).min(MAX_GAP);
        let covered = n.min(self.padded);
        self.padded -= covered;
        let n = self.silence(n - covered);
        let stop = self.decide(0);
        Step {
            samples: n as usize,
            stop,
        }
    }

    /// The wall clock: call regularly (the media session does every 200 ms). Pads the
    /// message with silence when the caller's audio lags the clock by more than
    /// [`MAX_SKEW`] (no RTP), and ends it on silence or `max_length` by the clock.
    pub fn tick(&mut self, now: Instant) -> Step {
        if self.stopped.is_some() {
            return Step::NOTHING;
        }
        // (`silence` stops at `max_length`: by the clock, a message that lags ends
        // `MAX_SKEW` after it.)
        let expected = self.expected(now);
        let lag = expected
            .saturating_sub(MAX_SKEW)
            .saturating_sub(self.samples);
        let mut pad = self.silence(lag);
        self.padded += pad;
        // Time not covered by audio yet is silence as well: no packet came for it.
        let behind = expected.saturating_sub(self.samples);
        let stop = self.decide(behind);
        if stop == Some(VoicemailStop::Silence) {
            // The file covers the silence that ended it.
            pad += self.silence(behind);
        }
        Step {
            samples: pad as usize,
            stop,
        }
    }

    /// Ends the message for a reason from outside (a key, a hang-up, an error). False if
    /// it had ended already.
    pub fn stop(&mut self, why: VoicemailStop) -> bool {
        if self.stopped.is_some() {
            return false;
        }
        self.stopped = Some(why);
        true
    }

    /// Why the message ended, once it has.
    pub fn stopped(&self) -> Option<VoicemailStop> {
        self.stopped
    }

    /// Length of the message so far.
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.samples)
    }

    /// Speech in the message so far.
    pub fn speech(&self) -> Duration {
        samples_to_duration(self.speech)
    }

    /// Less than `min_speech` of speech (so far).
    pub fn is_empty(&self) -> bool {
        self.speech < self.min_speech_samples
    }

    /// Samples in the message so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    fn is_speech(&self, frame: &[i16]) -> bool {
        let sum: i64 = frame.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
        sum as f64 >= self.threshold_ms * frame.len() as f64
    }

    /// Adds up to `n` samples of silence (no further than `max_length`); returns how many.
    fn silence(&mut self, n: u64) -> u64 {
        let n = n.min(self.max_samples - self.samples);
        self.samples += n;
        self.trailing += n;
        n
    }

    /// Whether the message ends now, with `behind` samples of the clock not yet covered.
    fn decide(&mut self, behind: u64) -> Option<VoicemailStop> {
        let stop = if self.samples >= self.max_samples {
            Some(VoicemailStop::MaxLength)
        } else if self
            .silence_samples
            .is_some_and(|s| self.trailing + behind >= s)
        {
            Some(VoicemailStop::Silence)
        } else {
            None
        };
        if stop.is_some() {
            self.stopped = stop;
        }
        stop
    }

    /// Samples the wall clock says the message has at `now`.
    fn expected(&self, now: Instant) -> u64 {
        duration_to_samples(now.saturating_duration_since(self.started))
    }
}

/// A mono 8 kHz 16-bit WAV file written as it grows; see the module documentation.
///
/// Dropped without [`finish`](MonoWriter::finish), hound still rewrites the header sizes
/// and the buffer is flushed (errors then go unseen).
pub struct MonoWriter {
    path: PathBuf,
    /// `None` only after `finish` took it.
    writer: Option<WavWriter<BufWriter<File>>>,
    written: u64,
    last_flush: Instant,
    failed: bool,
}

impl MonoWriter {
    /// Creates the file (and its directories); refuses to overwrite one. The header is on
    /// disk at once.
    pub fn create(path: &Path, now: Instant) -> Result<MonoWriter, RecorderError> {
        let mut writer = create_wav(path, SPEC)?;
        // hound allocates its sample buffer now rather than on the first packet.
        let _ = writer.get_i16_writer(CHUNK as u32);
        Ok(MonoWriter {
            path: path.to_path_buf(),
            writer: Some(writer),
            written: 0,
            last_flush: now,
            failed: false,
        })
    }

    /// Like [`MonoWriter::create`], but a name already taken gets `-2`, `-3`, … before
    /// `.wav` (as [`super::recorder::Recorder::create_unique`]).
    pub fn create_unique(path: &Path, now: Instant) -> Result<MonoWriter, RecorderError> {
        create_unique_with(path, |candidate| MonoWriter::create(candidate, now))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Samples written (to the buffer; on disk after the next flush).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends samples. Never allocates. After an error nothing more is written.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), RecorderError> {
        for chunk in samples.chunks(CHUNK) {
            self.write_chunk(chunk.len(), |i| chunk[i])?;
        }
        Ok(())
    }

    /// Appends `n` samples of silence.
    pub fn write_silence(&mut self, n: u64) -> Result<(), RecorderError> {
        let mut rest = n;
        while rest > 0 {
            let k = rest.min(CHUNK as u64) as usize;
            self.write_chunk(k, |_| 0)?;
            rest -= k as u64;
        }
        Ok(())
    }

    /// Flushes the samples and rewrites the header sizes if the last flush was
    /// [`FLUSH_INTERVAL`] ago or longer.
    pub fn tick(&mut self, now: Instant) -> Result<(), RecorderError> {
        if self.failed || now.saturating_duration_since(self.last_flush) < FLUSH_INTERVAL {
            return Ok(());
        }
        self.last_flush = now;
        let result = match self.writer.as_mut() {
            Some(writer) => writer.flush(),
            None => Ok(()),
        };
        result.map_err(|e| self.fail(e))
    }

    /// Finalises the header; returns the samples in the file.
    pub fn finish(mut self) -> Result<u64, RecorderError> {
        let writer = self.writer.take();
        if self.failed {
            drop(writer);
            return Err(RecorderError::Stopped {
                path: self.path.clone(),
            });
        }
        if let Some(writer) = writer {
            writer.finalize().map_err(|source| RecorderError::Wav {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(self.written)
    }

    fn write_chunk(
        &mut self,
        k: usize,
        sample: impl Fn(usize) -> i16,
    ) -> Result<(), RecorderError> {
        if self.failed {
            return Err(RecorderError::Stopped {
                path: self.path.clone(),
            });
        }
        let k = k.min(usize::try_from(MAX_SAMPLES - self.written).unwrap_or(usize::MAX));
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut out = writer.get_i16_writer(k as u32);
        for i in 0..k {
            out.write_sample(sample(i));
        }
        match out.flush() {
            Ok(()) => {
                self.written += k as u64;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    fn fail(&mut self, source: hound::Error) -> RecorderError {
        warn!(path = %self.path.display(), error = %source, "voicemail stopped: write failed");
        self.failed = true;
        RecorderError::Wav {
            path: self.path.clone(),
            source,
        }
    }
}

/// A voicemail being recorded: the [`Capture`] deciding, the [`MonoWriter`] writing.
pub struct Voicemail {
    capture: Capture,
    writer: MonoWriter,
}

impl Voicemail {
    /// Creates the file (a unique name near `spec.path`) and starts the message at `now`.
    /// All its buffers are allocated here.
    pub fn start(spec: &VoicemailSpec, now: Instant) -> Result<Voicemail, RecorderError> {
        let writer = MonoWriter::create_unique(&spec.path, now)?;
        Ok(Voicemail {
            capture: Capture::new(&spec.limits(), now),
            writer,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// The caller's decoded audio, after `gap` lost samples. Returns why the message ends,
    /// if it ends now. Never allocates.
    pub fn audio(&mut self, gap: u32, pcm: &[i16]) -> Option<VoicemailStop> {
        if gap > 0 {
            let step = self.capture.gap(gap as usize);
            if let Some(stop) = self.silence(step) {
                return Some(stop);
            }
        }
        let step = self.capture.audio(pcm);
        if self.writer.write(&pcm[..step.samples]).is_err() {
            return Some(self.error());
        }
        step.stop
    }

    /// The wall clock (every 200 ms or so): pads a caller who sends nothing, flushes the
    /// file, and returns why the message ends, if it ends now.
    pub fn tick(&mut self, now: Instant) -> Option<VoicemailStop> {
        let step = self.capture.tick(now);
        if let Some(stop) = self.silence(step) {
            return Some(stop);
        }
        if self.writer.tick(now).is_err() {
            return Some(self.error());
        }
        None
    }

    /// Finalises the file. `stop` is why, unless the capture had decided already (or the
    /// file failed, which makes it [`VoicemailStop::Error`]).
    pub fn finish(mut self, stop: VoicemailStop) -> VoicemailSummary {
        self.capture.stop(stop);
        let mut stop = self.capture.stopped().unwrap_or(stop);
        let path = self.writer.path().to_path_buf();
        if let Err(e) = self.writer.finish() {
            tracing::error!(error = %e, "voicemail not finalised");
            stop = VoicemailStop::Error;
        }
        VoicemailSummary {
            path,
            duration: self.capture.duration(),
            speech: self.capture.speech(),
            empty: self.capture.is_empty(),
            stop,
        }
    }

    fn silence(&mut self, step: Step) -> Option<VoicemailStop> {
        if self.writer.write_silence(step.samples as u64).is_err() {
            return Some(self.error());
        }
        step.stop
    }

    fn error(&mut self) -> VoicemailStop {
        self.capture.stop(VoicemailStop::Error);
        self.capture.stopped().unwrap_or(VoicemailStop::Error)
    }
}

fn duration_to_samples(d: Duration) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(SAMPLE_RATE) / 1_000_000_000).unwrap_or(u64::MAX)
}

fn samples_to_duration(n: u64) -> Duration {
    Duration::from_nanos(n.saturating_mul(1_000_000_000 / u64::from(SAMPLE_RATE)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::recorder::repair_dir;
    use hound::WavReader;
    use std::fs;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A 20 ms frame of a 400 Hz tone at about −12 dBFS, phase-continuous over `k`.
    fn tone(k: u64) -> [i16; FRAME] {
        let mut f = [0i16; FRAME];
        for (i, s) in f.iter_mut().enumerate() {
            let t = (k * FRAME as u64 + i as u64) as f64 / 8000.0;
            *s = (8000.0 * (2.0 * std::f64::consts::PI * 400.0 * t).sin()) as i16;
        }
        f
    }

    /// Line noise well below −45 dBFS (RMS ≈ 60, i.e. about −55 dBFS).
    fn hiss(k: u64) -> [i16; FRAME] {
        let mut f = [0i16; FRAME];
        for (i, s) in f.iter_mut().enumerate() {
            *s = if (k as usize + i).is_multiple_of(2) {
                60
            } else {
                -60
            };
        }
        f
    }

    fn read(path: &Path) -> Vec<i16> {
        let mut r = WavReader::open(path).unwrap();
        assert_eq!(r.spec().channels, 1);
        assert_eq!(r.spec().sample_rate, 8000);
        assert_eq!(r.spec().bits_per_sample, 16);
        r.samples::<i16>().map(Result::unwrap).collect()
    }

    /// Feeds frames `from..to` of `frame` at 20 ms each (frame `k` arriving at its end),
    /// ticking every 200 ms; returns the first stop and the frame it came with.
    fn run(
        c: &mut Capture,
        t0: Instant,
        range: std::ops::Range<u64>,
        frame: fn(u64) -> [i16; FRAME],
    ) -> Option<(u64, VoicemailStop)> {
        for k in range {
            if let Some(stop) = c.audio(&frame(k)).stop {
                return Some((k, stop));
            }
            if (k + 1).is_multiple_of(10) {
                if let Some(stop) = c.tick(t0 + ms(20 * (k + 1))).stop {
                    return Some((k, stop));
                }
            }
        }
        None
    }

    #[test]
    fn thresholds_tell_tone_from_hiss() {
        let c = Capture::new(&CaptureLimits::default(), Instant::now());
        assert!(c.is_speech(&tone(0)));
        assert!(!c.is_speech(&hiss(0)));
        assert!(!c.is_speech(&[0; FRAME]));
        // −45 dBFS is an RMS of about 184.
        assert!(c.is_speech(&[190; FRAME]));
        assert!(!c.is_speech(&[180; FRAME]));
        let loud = Capture::new(
            &CaptureLimits {
                threshold_dbfs: -20.0,
                ..CaptureLimits::default()
            },
            Instant::now(),
        );
        assert!(!loud.is_speech(&[190; FRAME]));
        assert!(loud.is_speech(&tone(0)));
    }

    #[test]
    fn long_silence_after_speech_ends_the_message() {
        let t0 = Instant::now();
        let mut c = Capture::new(&CaptureLimits::default(), t0);
        // 3 s of speech, then hiss.
        assert_eq!(run(&mut c, t0, 0..150, tone), None);
        assert_eq!(c.speech(), Duration::from_secs(3));
        let (k, stop) = run(&mut c, t0, 150..1000, hiss).unwrap();
        assert_eq!(stop, VoicemailStop::Silence);
        // Seven seconds (350 frames) after the last speech frame.
        assert_eq!(k, 150 + 350 - 1);
        assert_eq!(c.duration(), Duration::from_secs(10));
        assert_eq!(c.speech(), Duration::from_secs(3));
        assert!(!c.is_empty());
        // Reported once; nothing more is taken.
        assert_eq!(c.audio(&tone(0)), Step::NOTHING);
        assert_eq!(c.tick(t0 + Duration::from_secs(20)), Step::NOTHING);
        assert_eq!(c.duration(), Duration::from_secs(10));
    }

    #[test]
    fn speech_restarts_the_silence_count() {
        let t0 = Instant::now();
        let mut c = Capture::new(&CaptureLimits::default(), t0);
        // 5 s of silence from the start, a word, 5 s of silence, a word: no stop.
        assert_eq!(run(&mut c, t0, 0..250, hiss), None);
        assert_eq!(run(&mut c, t0, 250..260, tone), None);
        assert_eq!(run(&mut c, t0, 260..510, hiss), None);
        assert_eq!(run(&mut c, t0, 510..520, tone), None);
        let (k, stop) = run(&mut c, t0, 520..2000, hiss).unwrap();
        assert_eq!((k, stop), (520 + 349, VoicemailStop::Silence));
        assert_eq!(c.speech(), ms(400));
        // 0.4 s of speech is less than the default minimum: empty.
        assert!(c.is_empty());
    }

    #[test]
    fn max_length_cuts_the_frame_that_reaches_it() {
        let t0 = Instant::now();
        let limits = CaptureLimits {
            max_length: ms(1010),
            ..CaptureLimits::default()
        };
        let mut c = Capture::new(&limits, t0);
        for k in 0..50 {
            assert_eq!(
                c.audio(&tone(k)),
                Step {
                    samples: FRAME,
                    stop: None
                }
            );
        }
        // 1000 ms so far; the next frame has room for 10 ms only.
        let step = c.audio(&tone(50));
        assert_eq!(
            step,
            Step {
                samples: 80,
                stop: Some(VoicemailStop::MaxLength)
            }
        );
        assert_eq!(c.duration(), ms(1010));
        assert_eq!(c.speech(), ms(1010));
        assert!(!c.is_empty());
    }

    #[test]
    fn no_rtp_at_all_is_silence_by_the_clock() {
        let t0 = Instant::now();
        let mut c = Capture::new(&CaptureLimits::default(), t0);
        // One second of speech, then the phone sends nothing.
        assert_eq!(run(&mut c, t0, 0..50, tone), None);
        let mut padded = 0;
        let mut stop = None;
        let mut at = Duration::ZERO;
        for tick in 6..100u64 {
            let step = c.tick(t0 + ms(200 * tick));
            padded += step.samples;
            if step.stop.is_some() {
                stop = step.stop;
                at = ms(200 * tick);
                break;
            }
            // The padding keeps the message within MAX_SKEW of the clock.
            assert_eq!(c.samples(), 1600 * tick - MAX_SKEW);
        }
        assert_eq!(stop, Some(VoicemailStop::Silence));
        // Silence from the last speech (1 s) for 7 s, caught by the next 200 ms tick.
        assert_eq!(at, Duration::from_secs(8));
        // The file covers the clock up to the stop.
        assert_eq!(c.duration(), at);
        assert_eq!(padded as u64, 7 * 8000);
    }

    #[test]
    fn nothing_at_all_ends_after_the_silence_and_is_empty() {
        let t0 = Instant::now();
        let mut c = Capture::new(&CaptureLimits::default(), t0);
        let mut stops = Vec::new();
        for tick in 1..=40u64 {
            stops.extend(c.tick(t0 + ms(200 * tick)).stop);
        }
        assert_eq!(stops, vec![VoicemailStop::Silence]);
        assert_eq!(c.duration(), Duration::from_secs(7));
        assert_eq!(c.speech(), Duration::ZERO);
        assert!(c.is_empty());
    }

    #[test]
    fn lost_packets_are_silence_and_are_not_filled_twice() {
        let t0 = Instant::now();
        let mut c = Capture::new(&CaptureLimits::default(), t0);
        assert_eq!(run(&mut c, t0, 0..50, tone), None);
        // 600 ms without packets; the ticks pad what lags by more than 200 ms.
        let step = c.tick(t0 + ms(1400));
        assert_eq!(step.samples, 1600);
        let step = c.tick(t0 + ms(1600));
        assert_eq!(step.samples, 1600);
        // The next packet reports the 600 ms (30 frames) it follows; 400 ms are covered.
        assert_eq!(c.gap(30 * FRAME).samples, 1600);
        assert_eq!(c.audio(&tone(80)).samples, FRAME);
        assert_eq!(c.duration(), ms(1620));
        // A bogus jump fills at most a second.
        assert_eq!(c.gap(usize::MAX).samples, 8000);
        assert_eq!(c.speech(), ms(1020));
    }

    #[test]
    fn wall_clock_max_length_when_the_stream_thins_out() {
        let t0 = Instant::now();
        let limits = CaptureLimits {
            max_length: Duration::from_secs(2),
            silence: Duration::ZERO,
            ..CaptureLimits::default()
        };
        let mut c = Capture::new(&limits, t0);
        assert_eq!(run(&mut c, t0, 0..50, tone), None);
        // No silence stop configured: the clock runs the message to its length.
        let mut stop = None;
        for tick in 6..30u64 {
            if let Some(s) = c.tick(t0 + ms(200 * tick)).stop {
                stop = Some((s, tick));
                break;
            }
        }
        assert_eq!(stop, Some((VoicemailStop::MaxLength, 11)));
        assert_eq!(c.duration(), Duration::from_secs(2));
    }

    #[test]
    fn outside_stops_are_kept_once() {
        let t0 = Instant::now();
        let mut c = Capture::new(&CaptureLimits::default(), t0);
        c.audio(&tone(0));
        assert!(c.stop(VoicemailStop::Key));
        assert!(!c.stop(VoicemailStop::HangUp));
        assert_eq!(c.stopped(), Some(VoicemailStop::Key));
        assert_eq!(c.audio(&tone(1)), Step::NOTHING);
        assert_eq!(c.duration(), ms(20));
    }

    #[test]
    fn zero_max_length_ends_at_once() {
        let t0 = Instant::now();
        let limits = CaptureLimits {
            max_length: Duration::ZERO,
            ..CaptureLimits::default()
        };
        let mut c = Capture::new(&limits, t0);
        assert_eq!(c.tick(t0).stop, Some(VoicemailStop::MaxLength));
        assert_eq!(c.duration(), Duration::ZERO);
    }

    #[test]
    fn voicemail_file_holds_what_was_said() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let spec = VoicemailSpec::new(dir.path().join("2026/01/05/vm.wav"));
        let mut vm = Voicemail::start(&spec, t0).unwrap();
        let mut sent = Vec::new();
        for k in 0..100u64 {
            // Frame 40 is lost: the next packet says so.
            if k == 40 {
                continue;
            }
            let gap = if k == 41 { FRAME as u32 } else { 0 };
            if k == 41 {
                sent.extend_from_slice(&[0; FRAME]);
            }
            let f = tone(k);
            sent.extend_from_slice(&f);
            assert_eq!(vm.audio(gap, &f), None);
            assert_eq!(vm.tick(t0 + ms(20 * (k + 1))), None);
        }
        let summary = vm.finish(VoicemailStop::Key);
        assert_eq!(summary.path, spec.path);
        assert_eq!(summary.stop, VoicemailStop::Key);
        assert_eq!(summary.duration, Duration::from_secs(2));
        assert_eq!(summary.speech, ms(1980));
        assert!(!summary.empty);
        assert_eq!(read(&spec.path), sent);
    }

    #[test]
    fn names_are_unique_and_stops_from_the_capture_win() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let spec = VoicemailSpec {
            max_length: ms(100),
            ..VoicemailSpec::new(dir.path().join("a.wav"))
        };
        let first = Voicemail::start(&spec, t0).unwrap();
        let mut second = Voicemail::start(&spec, t0).unwrap();
        assert_eq!(first.path(), dir.path().join("a.wav"));
        assert_eq!(second.path(), dir.path().join("a-2.wav"));
        let mut stop = None;
        for k in 0..10 {
            stop = stop.or(second.audio(0, &tone(k)));
        }
        assert_eq!(stop, Some(VoicemailStop::MaxLength));
        // The session stopping afterwards does not change why it ended.
        let summary = second.finish(VoicemailStop::HangUp);
        assert_eq!(summary.stop, VoicemailStop::MaxLength);
        assert_eq!(summary.duration, ms(100));
        assert_eq!(read(&summary.path).len(), 800);
        // Less than a second of speech: empty, but the file is there.
        assert!(summary.empty);
        let summary = first.finish(VoicemailStop::HangUp);
        assert_eq!(summary.stop, VoicemailStop::HangUp);
        assert_eq!(summary.duration, Duration::ZERO);
        assert!(read(&summary.path).is_empty());
    }

    #[test]
    fn unwritable_place_is_an_error_at_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("blocked"), b"a file").unwrap();
        let spec = VoicemailSpec::new(dir.path().join("blocked/vm.wav"));
        assert!(Voicemail::start(&spec, Instant::now()).is_err());
        let failed = VoicemailSummary::failed(spec.path.clone());
        assert_eq!(failed.stop, VoicemailStop::Error);
        assert!(failed.empty);
        assert_eq!(failed.duration, Duration::ZERO);
    }

    #[test]
    fn flushed_file_is_valid_while_recording_and_a_crash_is_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("voicemail");
        let path = root.join("2026/01/05/crash.wav");
        let copy = dir.path().join("copy.wav");
        let t0 = Instant::now();
        let mut vm = Voicemail::start(&VoicemailSpec::new(&path), t0).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), HEADER_LEN);
        let mut sent = Vec::new();
        // 2 s with ticks: flushed every FLUSH_INTERVAL.
        for k in 0..100u64 {
            let f = tone(k);
            sent.extend_from_slice(&f);
            vm.audio(0, &f);
            vm.tick(t0 + ms(20 * (k + 1)));
        }
        fs::copy(&path, &copy).unwrap();
        let during = read(&copy);
        assert!(during.len() >= 8000, "{} samples readable", during.len());
        assert_eq!(&during[..], &sent[..during.len()]);
        // More than the write buffer holds, and no flush, then a crash (no Drop).
        for k in 100..400u64 {
            let f = tone(k);
            sent.extend_from_slice(&f);
            vm.audio(0, &f);
        }
        std::mem::forget(vm);
        let report = repair_dir(&root).unwrap();
        assert_eq!(report.checked, 1);
        assert_eq!(report.repaired, vec![path.clone()]);
        assert!(report.broken.is_empty() && report.failed.is_empty());
        let repaired = read(&path);
        assert!(repaired.len() > 16_000, "{} samples kept", repaired.len());
        assert_eq!(&repaired[..], &sent[..repaired.len()]);
        assert!(repair_dir(&root).unwrap().repaired.is_empty());
    }

    #[test]
    fn odd_byte_after_a_crash_is_cut_to_whole_samples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.wav");
        let mut w = MonoWriter::create(&path, Instant::now()).unwrap();
        w.write(&[1, 2, 3]).unwrap();
        assert_eq!(w.finish().unwrap(), 3);
        let mut bytes = fs::read(&path).unwrap();
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        bytes.push(0x55);
        fs::write(&path, &bytes).unwrap();
        let report = repair_dir(dir.path()).unwrap();
        assert_eq!(report.repaired, vec![path.clone()]);
        assert_eq!(read(&path), vec![1, 2, 3]);
        assert_eq!(fs::metadata(&path).unwrap().len(), HEADER_LEN + 6);
    }

    #[test]
    fn dropped_writer_leaves_a_valid_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drop.wav");
        let mut w = MonoWriter::create(&path, Instant::now()).unwrap();
        w.write(&[5; 1000]).unwrap();
        w.write_silence(600).unwrap();
        drop(w);
        let samples = read(&path);
        assert_eq!(samples.len(), 1600);
        assert!(samples[..1000].iter().all(|&s| s == 5));
        assert!(samples[1000..].iter().all(|&s| s == 0));
        assert!(repair_dir(dir.path()).unwrap().repaired.is_empty());
    }
}
