//! Call recording: one stereo WAV file per call, written while the call goes on.
//!
//! # Layout
//!
//! Files are 8000 Hz, 16-bit signed PCM with two channels, stored as
//! `DATA_DIR/recordings/YYYY/MM/DD/<call-id>.wav` (see [`path_for`]):
//!
//! * channel 0 (left) is the caller: what we received from them;
//! * channel 1 (right) is what the caller heard: the IVR prompts played to them and,
//!   once bridged, the operator.
//!
//! Keeping the two directions apart (instead of mixing them) lets a listener or a speech
//! pipeline separate the speakers, and lets tests compare each side sample for sample
//! with what was sent.
//!
//! # Alignment by wall clock
//!
//! The two sides arrive independently, in packets, with jitter, and either side may send
//! nothing for a long time (an operator not yet connected, a muted caller, silence
//! suppression, a dead stream). Samples are queued per channel and a frame is written as
//! soon as both channels have a sample for it. If we waited for the slower side forever,
//! one silent side would hold the other back and its queue would grow without bound; if
//! we wrote each side as it came, the sides would drift apart. So [`Recorder::tick`]
//! compares each channel with the wall clock since the recording started and pads a
//! channel that is more than [`MAX_SKEW`] (200 ms, enough for ordinary jitter) behind
//! with silence. A silent side thus costs nothing but zeros in the file, and the queue of
//! the talking side stays around [`MAX_SKEW`] plus one packet. Lost packets inside a
//! stream are reported with [`Recorder::push_silence`]; silence the wall clock already
//! inserted for the same gap is not inserted a second time.
//!
//! Queues have a fixed capacity, allocated when the recording starts; a side that runs
//! ahead of the other by more than that (a sender whose clock is fast, a burst) is
//! written out against silence rather than growing the queue. Per-packet work therefore
//! never allocates, which matters with up to 1,000 recordings on a small machine.
//!
//! # Crash safety
//!
//! Writes go through an 8 KiB buffer, and at least once a second [`Recorder::tick`]
//! flushes the WAV writer. hound's `WavWriter::flush` writes out the buffered samples and
//! then rewrites the RIFF and `data` sizes in the header, so the file on disk is a valid
//! WAV file up to the last flush. If the process dies, at most about a second of audio
//! (plus whatever the buffer had already written past the header's sizes) is not
//! covered by the header. There is no `fsync`: this protects against a crash of the
//! process, not a power loss, which would cost 1,000 syncs a second.
//!
//! At start-up, before any recording begins, [`repair_dir`] walks the recordings and
//! fixes the header of every file a crash left open, so that the audio written after the
//! last flush is playable too. Files too short to hold a header are moved aside, never
//! deleted. The frame size comes from each file's `fmt ` chunk, so the mono voicemail
//! files of [`super::voicemail`] are repaired the same way.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hound::{SampleFormat, WavSpec, WavWriter};
use tracing::{info, warn};

/// Sample rate of recordings (G.711 narrowband).
pub const SAMPLE_RATE: u32 = 8000;

/// How far (in samples, 200 ms) a channel may lag the wall clock before [`Recorder::tick`]
/// pads it with silence. Large enough to absorb network jitter, so a late packet
/// normally still lands where it belongs instead of after inserted silence.
pub const MAX_SKEW: u64 = 1600;

/// [`Recorder::tick`] flushes the file once this long has passed since the last flush.
/// The media task ticks every 200 ms, so flushes come at most 1 s apart: a crash loses at
/// most a second.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(800);

/// Capacity of each channel's queue (600 ms). The channel ahead is at most at the wall
/// clock, and [`Recorder::tick`] keeps the other within [`MAX_SKEW`] of it at every tick
/// (the media task ticks every 200 ms), so a queue holds at most about 400 ms; the rest
/// absorbs bursts without reallocating. Beyond it the queue is written out against
/// silence (see `make_room`). Kept small because a thousand calls record at once: the
/// two queues are 19 KB a call.
const QUEUE_CAPACITY: usize = SAMPLE_RATE as usize * 6 / 10;

/// Longest gap [`Recorder::push_silence`] fills (1 s). Longer jumps in RTP timestamps are
/// not trusted (a restarted stream, a hostile peer); the wall clock covers real pauses.
const MAX_SILENCE: usize = SAMPLE_RATE as usize;

/// Size of the write buffer in front of the file: a quarter of a second of audio, so a
/// call costs about five `write`s a second (one of them the flush) and 8 KB, which with a
/// thousand calls recording at once is 8 MB.
const WRITE_BUFFER: usize = 8 * 1024;

/// Frames (100 ms) both channels must have before [`Recorder::push`] writes them: ten
/// writes a second instead of one per packet. [`Recorder::tick`] writes whatever is
/// paired, so the file never lags by more than one tick.
const WRITE_BATCH: usize = 800;

/// Frames handed to hound's 16-bit writer in one go; its internal buffer is allocated
/// once for this size and reused.
const CHUNK_FRAMES: usize = 512;

/// Bytes per frame: two channels of 16-bit samples.
const BLOCK_ALIGN: u64 = 4;

/// Size of the header hound writes for 2-channel 16-bit PCM: "RIFF", size, "WAVE",
/// a 16-byte "fmt " chunk (plain PCMWAVEFORMAT, no extensible format), "data", size.
const HEADER_LEN: u64 = 44;

/// Most frames a WAV file can hold: the RIFF size field (data + 36) is a `u32`. That is
/// about 37 hours; a recording stops there rather than wrapping the header.
const MAX_FRAMES: u64 = (u32::MAX as u64 - (HEADER_LEN - 8)) / BLOCK_ALIGN;

/// Longest call-id kept in a file name.
const MAX_NAME_LEN: usize = 120;

/// The WAV format of every recording.
const SPEC: WavSpec = WavSpec {
    channels: 2,
    sample_rate: SAMPLE_RATE,
    bits_per_sample: 16,
    sample_format: SampleFormat::Int,
};

/// Errors of recording and repair. Each names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// A recording with this path exists already; it is never overwritten.
    #[error("recording {}: file already exists", .path.display())]
    AlreadyExists { path: PathBuf },
    /// A file system operation failed.
    #[error("recording {}: {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        #[source]
        source: io::Error,
    },
    /// The WAV writer failed (in practice an I/O error underneath).
    #[error("recording {}: writing WAV: {source}", .path.display())]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    /// A file bigger than a WAV header can describe; left untouched by repair.
    #[error("recording {}: {len} bytes is more than a WAV file can hold", .path.display())]
    TooLarge { path: PathBuf, len: u64 },
    /// The recording stopped at an earlier error (already reported by `tick`).
    #[error("recording {}: stopped after an earlier write error", .path.display())]
    Stopped { path: PathBuf },
}

impl RecorderError {
    fn io(path: &Path, action: &'static str, source: io::Error) -> Self {
        RecorderError::Io {
            path: path.to_path_buf(),
            action,
            source,
        }
    }
}

/// Which side of the call samples belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// Left channel: what the caller sent.
    Caller,
    /// Right channel: what the caller heard (prompts, the operator).
    Other,
}

impl Channel {
    fn index(self) -> usize {
        match self {
            Channel::Caller => 0,
            Channel::Other => 1,
        }
    }
}

/// What [`Recorder::finish`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingSummary {
    pub path: PathBuf,
    /// Frames (samples per channel) in the file.
    pub frames: u64,
    /// Length of the audio.
    pub duration: Duration,
}

/// One call's recording. See the module documentation.
///
/// Dropping a recorder without [`finish`](Recorder::finish) still writes out what is
/// queued and fixes the header (hound's own `Drop` does the latter), but errors are then
/// only logged; call `finish` to see them.
pub struct Recorder {
    path: PathBuf,
    /// `None` only after `finish` took it.
    writer: Option<WavWriter<BufWriter<File>>>,
    /// Samples per channel not yet written, because the other channel has none for them.
    /// After every write at least one of the two is empty.
    queues: [VecDeque<i16>; 2],
    /// Silence `tick` inserted per channel since that channel's last real samples; a
    /// later `push_silence` for the same gap uses this up first.
    padded: [u64; 2],
    started: Instant,
    written_frames: u64,
    last_flush: Instant,
    /// A write failed: nothing more is written.
    failed: bool,
    /// The failure, until `tick` or `finish` reports it.
    pending: Option<RecorderError>,
    /// The file reached the WAV size limit: nothing more is written.
    full: bool,
}

impl Recorder {
    /// Starts a recording at `path`, creating its directories. `now` is the start of the
    /// wall clock that [`tick`](Recorder::tick) aligns the channels to.
    ///
    /// Refuses to overwrite an existing file ([`RecorderError::AlreadyExists`]). The
    /// header is written to disk at once, so even a crash in the first second leaves a
    /// file [`repair_dir`] can fix.
    /// Like [`Recorder::create`], but a name already taken (the same Call-ID again the same
    /// day, or two Call-IDs that sanitise alike) gets `-2`, `-3`, … before `.wav`: a call
    /// is never left unrecorded because of its name.
    pub fn create_unique(path: &Path, now: Instant) -> Result<Recorder, RecorderError> {
        create_unique_with(path, |candidate| Recorder::create(candidate, now))
    }

    pub fn create(path: &Path, now: Instant) -> Result<Recorder, RecorderError> {
        let mut writer = create_wav(path, SPEC)?;
        // Let hound allocate its sample buffer now rather than on the first packet.
        let _ = writer.get_i16_writer(2 * CHUNK_FRAMES as u32);
        Ok(Recorder {
            path: path.to_path_buf(),
            writer: Some(writer),
            queues: [
                VecDeque::with_capacity(QUEUE_CAPACITY),
                VecDeque::with_capacity(QUEUE_CAPACITY),
            ],
            padded: [0; 2],
            started: now,
            written_frames: 0,
            last_flush: now,
            failed: false,
            pending: None,
            full: false,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Frames written to the file so far (not counting queued samples).
    pub fn written_frames(&self) -> u64 {
        self.written_frames
    }

    /// Samples of `ch` waiting for the other channel (for tests and metrics).
    pub fn queued(&self, ch: Channel) -> usize {
        self.queues[ch.index()].len()
    }

    /// Whether a write error stopped the recording.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Appends samples to one channel and writes every frame both channels now have.
    /// Never allocates. Write errors are kept and reported by the next
    /// [`tick`](Recorder::tick).
    pub fn push(&mut self, ch: Channel, samples: &[i16]) {
        let c = ch.index();
        // Real audio ends the gap that `padded` was counting.
        self.padded[c] = 0;
        let mut rest = samples;
        while !rest.is_empty() && self.active() {
            let take = self.make_room(c).min(rest.len());
            let (now, later) = rest.split_at(take);
            self.queues[c].extend(now.iter().copied());
            rest = later;
            if self.queues[0].len().min(self.queues[1].len()) >= WRITE_BATCH {
                self.write_paired();
            }
        }
    }

    /// Appends `n` samples of silence to one channel: lost packets or silence
    /// suppression, from a gap in RTP timestamps. Silence [`tick`](Recorder::tick)
    /// already inserted for this channel since its last samples counts against `n`, so a
    /// gap is not filled twice. At most one second is filled; longer gaps are left to
    /// the wall-clock alignment.
    pub fn push_silence(&mut self, ch: Channel, n: usize) {
        let c = ch.index();
        let n = n.min(MAX_SILENCE) as u64;
        let covered = n.min(self.padded[c]);
        self.padded[c] -= covered;
        self.append_silence(c, n - covered);
    }

    /// Call regularly (every 20 ms to 1 s). Pads a channel that is more than
    /// [`MAX_SKEW`] behind the wall clock with silence so the other is not held back,
    /// writes what both channels have, and flushes the file (samples and header sizes)
    /// if the last flush was [`FLUSH_INTERVAL`] ago or longer.
    ///
    /// Returns a write error once; the recording stops at the first one.
    pub fn tick(&mut self, now: Instant) -> Result<(), RecorderError> {
        if self.active() {
            let target = self.expected(now).saturating_sub(MAX_SKEW);
            for c in 0..2 {
                let total = self.written_frames + self.queues[c].len() as u64;
                if total < target {
                    let missing = target - total;
                    self.padded[c] = self.padded[c].saturating_add(missing);
                    self.append_silence(c, missing);
                }
            }
            self.write_paired();
        }
        if !self.failed && now.saturating_duration_since(self.last_flush) >= FLUSH_INTERVAL {
            if let Some(writer) = self.writer.as_mut() {
                if let Err(e) = writer.flush() {
                    self.fail(e);
                }
            }
            self.last_flush = now;
        }
        match self.pending.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Ends the recording: pads the shorter channel with silence to the longer, writes
    /// everything and finalizes the header.
    pub fn finish(mut self) -> Result<RecordingSummary, RecorderError> {
        self.write_all_queued();
        let writer = self.writer.take();
        if self.failed {
            // Still let hound fix the header for what was written; the error matters more.
            drop(writer);
            return Err(self.pending.take().unwrap_or(RecorderError::Stopped {
                path: self.path.clone(),
            }));
        }
        if let Some(writer) = writer {
            writer.finalize().map_err(|source| RecorderError::Wav {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(RecordingSummary {
            path: self.path.clone(),
            frames: self.written_frames,
            duration: frames_to_duration(self.written_frames),
        })
    }

    /// Samples per channel the wall clock says should exist at `now`.
    fn expected(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.started).as_nanos();
        let samples = elapsed * u128::from(SAMPLE_RATE) / 1_000_000_000;
        u64::try_from(samples).unwrap_or(u64::MAX)
    }

    fn active(&self) -> bool {
        !self.failed && !self.full && self.writer.is_some()
    }

    /// Free space in queue `c`, at least one sample. A full queue means the other
    /// channel has nothing (else they would have been written), so part of it is
    /// written against silence instead of growing the queue.
    fn make_room(&mut self, c: usize) -> usize {
        if self.queues[c].len() >= QUEUE_CAPACITY {
            self.write_frames(QUEUE_CAPACITY / 4);
        }
        QUEUE_CAPACITY.saturating_sub(self.queues[c].len()).max(1)
    }

    fn append_silence(&mut self, c: usize, n: u64) {
        let mut rest = n;
        while rest > 0 && self.active() {
            let room = self.make_room(c);
            let take = usize::try_from(rest).map_or(room, |r| r.min(room));
            let len = self.queues[c].len();
            self.queues[c].resize(len + take, 0);
            rest -= take as u64;
            self.write_paired();
        }
    }

    /// Writes the frames both channels have.
    fn write_paired(&mut self) {
        let n = self.queues[0].len().min(self.queues[1].len());
        self.write_frames(n);
    }

    /// Writes everything queued, the shorter channel padded with silence.
    fn write_all_queued(&mut self) {
        let n = self.queues[0].len().max(self.queues[1].len());
        self.write_frames(n);
    }

    /// Writes `n` frames from the front of the queues; an empty queue gives silence.
    fn write_frames(&mut self, n: usize) {
        if !self.active() {
            // Nothing more will be written; keep memory bounded.
            self.queues[0].clear();
            self.queues[1].clear();
            return;
        }
        let room = usize::try_from(MAX_FRAMES - self.written_frames).unwrap_or(usize::MAX);
        let mut left = n.min(room);
        let result = match self.writer.as_mut() {
            Some(writer) => {
                let [left_q, right_q] = &mut self.queues;
                let mut result = Ok(());
                while left > 0 {
                    let k = left.min(CHUNK_FRAMES);
                    // Copy each channel out as (at most two) slices, then interleave in a
                    // tight loop: per-element `VecDeque` iteration cost more than the rest
                    // of the relay path together.
                    let mut lefts = [0i16; CHUNK_FRAMES];
                    let mut rights = [0i16; CHUNK_FRAMES];
                    take_front(left_q, &mut lefts[..k]);
                    take_front(right_q, &mut rights[..k]);
                    let mut out = writer.get_i16_writer(2 * k as u32);
                    for (&a, &b) in lefts[..k].iter().zip(&rights[..k]) {
                        out.write_sample(a);
                        out.write_sample(b);
                    }
                    if let Err(e) = out.flush() {
                        result = Err(e);
                        break;
                    }
                    self.written_frames += k as u64;
                    left -= k;
                }
                result
            }
            None => Ok(()),
        };
        if let Err(e) = result {
            self.fail(e);
        } else if n > room {
            warn!(
                path = %self.path.display(),
                frames = self.written_frames,
                "recording reached the WAV size limit; the rest of the call is not recorded"
            );
            self.full = true;
            self.queues[0].clear();
            self.queues[1].clear();
        }
    }

    fn fail(&mut self, source: hound::Error) {
        warn!(path = %self.path.display(), error = %source, "recording stopped: write failed");
        self.failed = true;
        self.queues[0].clear();
        self.queues[1].clear();
        if self.pending.is_none() {
            self.pending = Some(RecorderError::Wav {
                path: self.path.clone(),
                source,
            });
        }
    }
}

impl Drop for Recorder {
    /// Best effort when `finish` was not called (an error path, a panicking task): write
    /// what is queued; dropping hound's writer then rewrites the header sizes and the
    /// buffer is flushed. Errors can only be logged here.
    fn drop(&mut self) {
        if self.writer.is_none() {
            return;
        }
        self.write_all_queued();
        if let Some(mut writer) = self.writer.take() {
            if !self.failed {
                if let Err(e) = writer.flush() {
                    warn!(path = %self.path.display(), error = %e, "recording dropped unfinished; header update failed");
                }
            }
        }
    }
}

fn frames_to_duration(frames: u64) -> Duration {
    let nanos = u128::from(frames) * 1_000_000_000 / u128::from(SAMPLE_RATE);
    Duration::new(
        u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
        (nanos % 1_000_000_000) as u32,
    )
}

/// Moves up to `out.len()` samples from the front of `queue` into `out`; the rest of `out`
/// (a queue shorter than asked) is silence.
fn take_front(queue: &mut VecDeque<i16>, out: &mut [i16]) {
    let n = out.len().min(queue.len());
    let (a, b) = queue.as_slices();
    let from_a = n.min(a.len());
    out[..from_a].copy_from_slice(&a[..from_a]);
    out[from_a..n].copy_from_slice(&b[..n - from_a]);
    out[n..].fill(0);
    queue.drain(..n);
}

/// A new WAV file at `path` (and its directories) with its header on disk; never
/// overwrites a file (`AlreadyExists`). Shared by the call recording and the voicemail.
pub(crate) fn create_wav(
    path: &Path,
    spec: WavSpec,
) -> Result<WavWriter<BufWriter<File>>, RecorderError> {
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() {
            fs::create_dir_all(parent)
                .map_err(|e| RecorderError::io(parent, "creating directory", e))?;
        }
    }
    let file = match OpenOptions::new().write(true).create_new(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(RecorderError::AlreadyExists {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(RecorderError::io(path, "creating file", e)),
    };
    WavWriter::new(BufWriter::with_capacity(WRITE_BUFFER, file), spec)
        .and_then(|mut writer| writer.flush().map(|()| writer))
        .map_err(|source| {
            // The file is ours and holds nothing useful; do not leave it for repair.
            let _ = fs::remove_file(path);
            RecorderError::Wav {
                path: path.to_path_buf(),
                source,
            }
        })
}

/// Calls `create` with `path`, then, while it answers [`RecorderError::AlreadyExists`],
/// with `<stem>-2.wav`, `<stem>-3.wav`, … up to `-1000`: the search behind
/// [`Recorder::create_unique`], shared with the voicemail writer.
pub(crate) fn create_unique_with<T>(
    path: &Path,
    mut create: impl FnMut(&Path) -> Result<T, RecorderError>,
) -> Result<T, RecorderError> {
    let stem = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut candidate = path.to_path_buf();
    for n in 2..=1000 {
        match create(&candidate) {
            Err(RecorderError::AlreadyExists { .. }) => {
                candidate = path.with_file_name(format!("{stem}-{n}.wav"));
            }
            other => return other,
        }
    }
    Err(RecorderError::AlreadyExists {
        path: path.to_path_buf(),
    })
}

/// Where the recording of `call_id` on `date` (year, month, day) goes:
/// `root/YYYY/MM/DD/<call-id>.wav`.
///
/// The call-id comes from the network, so it is made safe for a file name: characters
/// other than `A-Z a-z 0-9 . _ -` become `_`, it is cut to 120 characters, a leading dot
/// becomes `_` (no `.`, `..` or hidden files) and an empty id becomes `_`. Distinct ids
/// can map to the same name; [`Recorder::create`] then refuses rather than overwrite.
pub fn path_for(root: &Path, date: (i32, u32, u32), call_id: &str) -> PathBuf {
    let (year, month, day) = date;
    let mut name: String = call_id
        .chars()
        .take(MAX_NAME_LEN)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        name.push('_');
    }
    if name.starts_with('.') {
        name.replace_range(..1, "_");
    }
    name.push_str(".wav");
    root.join(format!("{year:04}"))
        .join(format!("{month:02}"))
        .join(format!("{day:02}"))
        .join(name)
}

/// What [`repair_dir`] did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// `.wav` files looked at.
    pub checked: usize,
    /// Files whose header was fixed (and tail cut to whole frames).
    pub repaired: Vec<PathBuf>,
    /// Files that could not be WAV files, moved aside: the paths they have now
    /// (`<name>.wav.broken`).
    pub broken: Vec<PathBuf>,
    /// Files or directories that could not be checked or fixed; left as they are.
    pub failed: Vec<(PathBuf, RecorderError)>,
}

/// The start-up pass: fixes the headers of recordings a crash left open.
///
/// Walks `root` recursively (symbolic links are not followed) and checks every `*.wav`
/// file. A file whose RIFF or `data` size disagrees with its length (a crash after the
/// last flush; `0` or `0xFFFFFFFF` from streaming writers) gets both sizes patched to
/// cover all the audio in the file, cut down to whole frames. A file that cannot hold a
/// WAV header, or lacks the `fmt ` or `data` chunk, is renamed to `<name>.wav.broken`
/// for a human to look at; nothing is deleted. Healthy files are not modified.
///
/// Must run before any recording starts: the header of a file being written lags its
/// length on purpose. A missing `root` is not an error (nothing recorded yet). Problems
/// with single files are collected in [`RepairReport::failed`] rather than stopping the
/// pass; only an unreadable `root` is an error.
pub fn repair_dir(root: &Path) -> Result<RepairReport, RecorderError> {
    let mut report = RepairReport::default();
    match fs::symlink_metadata(root) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(RecorderError::io(root, "reading directory", e)),
        Ok(_) => {}
    }
    let entries =
        fs::read_dir(root).map_err(|e| RecorderError::io(root, "reading directory", e))?;
    // Depth first, one open directory handle per level.
    let mut pending = vec![(root.to_path_buf(), entries)];
    while let Some((dir, entries)) = pending.last_mut() {
        let Some(entry) = entries.next() else {
            pending.pop();
            continue;
        };
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let err = RecorderError::io(dir, "reading directory", e);
                report.failed.push((dir.clone(), err));
                continue;
            }
        };
        let path = entry.path();
        // `DirEntry::file_type` does not follow symbolic links.
        let file_type = match entry.file_type() {
            Ok(t) => t,
            Err(e) => {
                report.failed.push((
                    path.clone(),
                    RecorderError::io(&path, "reading file type", e),
                ));
                continue;
            }
        };
        if file_type.is_dir() {
            match fs::read_dir(&path) {
                Ok(sub) => pending.push((path, sub)),
                Err(e) => {
                    let err = RecorderError::io(&path, "reading directory", e);
                    report.failed.push((path, err));
                }
            }
        } else if file_type.is_file() && has_wav_extension(&path) {
            report.checked += 1;
            match repair_file(&path) {
                Ok(Checked::Healthy) => {}
                Ok(Checked::Repaired) => {
                    info!(path = %path.display(), "repaired the header of a recording left open");
                    report.repaired.push(path);
                }
                Ok(Checked::Broken(reason)) => match move_aside(&path) {
                    Ok(moved) => {
                        warn!(path = %path.display(), moved = %moved.display(), reason, "recording unreadable; moved aside");
                        report.broken.push(moved);
                    }
                    Err(e) => report.failed.push((path, e)),
                },
                Err(e) => {
                    warn!(error = %e, "could not check a recording");
                    report.failed.push((path, e));
                }
            }
        }
    }
    Ok(report)
}

fn has_wav_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("wav"))
}

enum Checked {
    Healthy,
    Repaired,
    Broken(&'static str),
}

/// Where the header of a WAV file says things are.
struct Layout {
    riff_size: u32,
    /// Offset of the `data` chunk's size field; the samples follow it.
    data_size_at: u64,
    data_size: u32,
    block_align: u16,
}

fn repair_file(path: &Path) -> Result<Checked, RecorderError> {
    let mut file = File::open(path).map_err(|e| RecorderError::io(path, "opening", e))?;
    let len = file
        .metadata()
        .map_err(|e| RecorderError::io(path, "reading metadata", e))?
        .len();
    let layout = match read_layout(&mut file, len) {
        Ok(Ok(layout)) => layout,
        Ok(Err(reason)) => return Ok(Checked::Broken(reason)),
        Err(e) => return Err(RecorderError::io(path, "reading header", e)),
    };
    drop(file);
    if len - 8 > u64::from(u32::MAX) {
        return Err(RecorderError::TooLarge {
            path: path.to_path_buf(),
            len,
        });
    }
    let data_start = layout.data_size_at + 4;
    let available = len - data_start;
    if u64::from(layout.riff_size) == len - 8 && u64::from(layout.data_size) <= available {
        // Consistent (possibly with chunks after the data, which hound never writes).
        return Ok(Checked::Healthy);
    }
    // A crash: the audio runs to the end of the file, cut to whole frames.
    let data_size = available - available % u64::from(layout.block_align);
    let new_len = data_start + data_size;
    let mut file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| RecorderError::io(path, "opening for repair", e))?;
    let io = |e| RecorderError::io(path, "repairing header", e);
    if new_len < len {
        file.set_len(new_len).map_err(io)?;
    }
    // Both fit: len - 8 <= u32::MAX was checked above.
    let riff_size = (new_len - 8) as u32;
    file.seek(SeekFrom::Start(4)).map_err(io)?;
    file.write_all(&riff_size.to_le_bytes()).map_err(io)?;
    file.seek(SeekFrom::Start(layout.data_size_at))
        .map_err(io)?;
    file.write_all(&(data_size as u32).to_le_bytes())
        .map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Checked::Repaired)
}

/// Reads the chunk layout up to the `data` chunk. The inner `Err` says why the file
/// cannot be a WAV file; the outer one is an I/O error.
fn read_layout(file: &mut File, len: u64) -> io::Result<Result<Layout, &'static str>> {
    if len < HEADER_LEN {
        return Ok(Err("shorter than a WAV header"));
    }
    let mut head = [0u8; 12];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut head)?;
    if &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Ok(Err("not a RIFF/WAVE file"));
    }
    let riff_size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    let mut block_align = None;
    let mut pos: u64 = 12;
    loop {
        if pos + 8 > len {
            return Ok(Err(if block_align.is_some() {
                "no data chunk"
            } else {
                "no fmt chunk"
            }));
        }
        let mut chunk = [0u8; 8];
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut chunk)?;
        let size = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
        match &chunk[0..4] {
            b"data" => {
                let Some(block_align) = block_align else {
                    return Ok(Err("data chunk before the fmt chunk"));
                };
                return Ok(Ok(Layout {
                    riff_size,
                    data_size_at: pos + 4,
                    data_size: size,
                    block_align,
                }));
            }
            b"fmt " => {
                if size < 16 || pos + 8 + 16 > len {
                    return Ok(Err("fmt chunk too short"));
                }
                let mut fmt = [0u8; 16];
                file.read_exact(&mut fmt)?;
                let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
                let align = u16::from_le_bytes([fmt[12], fmt[13]]);
                if channels == 0 || align == 0 {
                    return Ok(Err("invalid fmt chunk"));
                }
                block_align = Some(align);
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        pos += 8 + u64::from(size) + u64::from(size & 1);
    }
}

/// Renames a broken file to `<name>.broken` (or `.broken.N` if that exists already),
/// so it is out of the way but kept.
fn move_aside(path: &Path) -> Result<PathBuf, RecorderError> {
    let mut target = path.as_os_str().to_owned();
    target.push(".broken");
    let base = PathBuf::from(target);
    let mut candidate = base.clone();
    let mut n = 0u32;
    while fs::symlink_metadata(&candidate).is_ok() {
        n += 1;
        if n > 1000 {
            return Err(RecorderError::io(
                path,
                "moving aside",
                io::Error::new(io::ErrorKind::AlreadyExists, "too many .broken files"),
            ));
        }
        let mut name = base.as_os_str().to_owned();
        name.push(format!(".{n}"));
        candidate = PathBuf::from(name);
    }
    fs::rename(path, &candidate).map_err(|e| RecorderError::io(path, "moving aside", e))?;
    Ok(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hound::WavReader;
    use tempfile::TempDir;

    const FRAME: usize = 160;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// All samples of a file as (left, right) channel vectors.
    fn read_channels(path: &Path) -> (Vec<i16>, Vec<i16>) {
        let mut reader = WavReader::open(path).expect("open wav");
        let spec = reader.spec();
        assert_eq!(spec.channels, 2);
        assert_eq!(spec.sample_rate, 8000);
        assert_eq!(spec.bits_per_sample, 16);
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .expect("read samples");
        assert_eq!(samples.len() % 2, 0);
        let left = samples.iter().step_by(2).copied().collect();
        let right = samples.iter().skip(1).step_by(2).copied().collect();
        (left, right)
    }

    fn caller_sample(i: usize) -> i16 {
        (i % 30_000) as i16 + 1
    }

    fn other_sample(i: usize) -> i16 {
        -((i % 30_000) as i16) - 1
    }

    /// Writes a finalized file with `frames` frames through hound directly.
    fn write_plain(path: &Path, frames: usize) {
        let mut w = WavWriter::create(path, SPEC).unwrap();
        for i in 0..frames {
            w.write_sample(caller_sample(i)).unwrap();
            w.write_sample(other_sample(i)).unwrap();
        }
        w.finalize().unwrap();
    }

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn both_sides_recorded_sample_for_sample() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        let caller: Vec<i16> = (0..1600).collect();
        let other: Vec<i16> = (10000..11600).collect();
        for (k, (a, b)) in caller.chunks(FRAME).zip(other.chunks(FRAME)).enumerate() {
            rec.push(Channel::Caller, a);
            rec.push(Channel::Other, b);
            rec.tick(t0 + ms(20 * (k as u64 + 1))).unwrap();
        }
        let summary = rec.finish().unwrap();
        assert_eq!(summary.frames, 1600);
        assert_eq!(summary.duration, ms(200));
        assert_eq!(summary.path, path);
        let (left, right) = read_channels(&path);
        assert_eq!(left, caller);
        assert_eq!(right, other);
    }

    #[test]
    fn out_of_step_pushes_stay_aligned() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        let caller: Vec<i16> = (0..4000).map(caller_sample).collect();
        let other: Vec<i16> = (0..4000).map(other_sample).collect();
        // The caller's packets come in bursts of five, the other side's one by one.
        for (k, burst) in caller.chunks(5 * FRAME).enumerate() {
            rec.push(Channel::Caller, burst);
            for b in other[k * 5 * FRAME..(k + 1) * 5 * FRAME].chunks(FRAME) {
                rec.push(Channel::Other, b);
            }
        }
        rec.finish().unwrap();
        let (left, right) = read_channels(&path);
        assert_eq!(left, caller);
        assert_eq!(right, other);
    }

    #[test]
    fn silent_side_is_padded_and_does_not_hold_back() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        let caller: Vec<i16> = (0..24_000).map(caller_sample).collect();
        for (k, packet) in caller.chunks(FRAME).enumerate() {
            rec.push(Channel::Caller, packet);
            rec.tick(t0 + ms(20 * (k as u64 + 1))).unwrap();
            assert!(rec.queued(Channel::Caller) <= MAX_SKEW as usize + FRAME);
            assert_eq!(rec.queued(Channel::Other), 0);
        }
        assert_eq!(rec.written_frames(), 24_000 - MAX_SKEW);
        let summary = rec.finish().unwrap();
        assert_eq!(summary.frames, 24_000);
        assert_eq!(summary.duration, Duration::from_secs(3));
        let (left, right) = read_channels(&path);
        assert_eq!(left, caller);
        assert!(right.iter().all(|&s| s == 0));
        assert_eq!(right.len(), 24_000);
    }

    #[test]
    fn other_side_joining_late_keeps_its_samples() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        // 2 s of caller only, then 1 s of both.
        for k in 0..150u64 {
            let i = k as usize * FRAME;
            let packet: Vec<i16> = (i..i + FRAME).map(caller_sample).collect();
            rec.push(Channel::Caller, &packet);
            if k >= 100 {
                let j = (k as usize - 100) * FRAME;
                let packet: Vec<i16> = (j..j + FRAME).map(other_sample).collect();
                rec.push(Channel::Other, &packet);
            }
            rec.tick(t0 + ms(20 * (k + 1))).unwrap();
        }
        rec.finish().unwrap();
        let (left, right) = read_channels(&path);
        let caller: Vec<i16> = (0..24_000).map(caller_sample).collect();
        assert_eq!(left, caller);
        // The operator's audio is all there, in order, after the padding.
        let start = right.iter().position(|&s| s != 0).unwrap();
        let other: Vec<i16> = (0..8000).map(other_sample).collect();
        assert_eq!(&right[start..start + 8000], &other[..]);
        // Padding only went up to MAX_SKEW behind the clock.
        assert_eq!(start, 16_000 - MAX_SKEW as usize);
    }

    #[test]
    fn both_sides_silent_follow_the_clock() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        // A stalled media task: one tick after ten minutes.
        rec.tick(t0 + Duration::from_secs(600)).unwrap();
        assert_eq!(rec.written_frames(), 600 * 8000 - MAX_SKEW);
        assert_eq!(rec.queued(Channel::Caller), 0);
        assert_eq!(rec.queued(Channel::Other), 0);
        // An Instant before the start is not an error.
        rec.tick(t0 - ms(5)).unwrap();
        let summary = rec.finish().unwrap();
        assert_eq!(summary.frames, 600 * 8000 - MAX_SKEW);
    }

    #[test]
    fn lost_packets_are_not_filled_twice() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        let packet = [7i16; FRAME];
        // 1 s of both sides.
        for k in 0..50u64 {
            rec.push(Channel::Caller, &packet);
            rec.push(Channel::Other, &packet);
            rec.tick(t0 + ms(20 * (k + 1))).unwrap();
        }
        // The caller loses 500 ms of packets; the clock pads part of the gap.
        for k in 50..75u64 {
            rec.push(Channel::Other, &packet);
            rec.tick(t0 + ms(20 * (k + 1))).unwrap();
        }
        // The next packet reports the gap: only what the clock did not pad is added.
        rec.push_silence(Channel::Caller, 25 * FRAME);
        rec.push(Channel::Caller, &packet);
        rec.push(Channel::Other, &packet);
        rec.tick(t0 + ms(20 * 76)).unwrap();
        let caller_total = rec.written_frames() + rec.queued(Channel::Caller) as u64;
        let other_total = rec.written_frames() + rec.queued(Channel::Other) as u64;
        assert_eq!(caller_total, 76 * FRAME as u64);
        assert_eq!(other_total, 76 * FRAME as u64);
        rec.finish().unwrap();
        let (left, right) = read_channels(&path);
        assert_eq!(left.len(), 76 * FRAME);
        assert!(left[..50 * FRAME].iter().all(|&s| s == 7));
        assert!(left[50 * FRAME..75 * FRAME].iter().all(|&s| s == 0));
        assert!(left[75 * FRAME..].iter().all(|&s| s == 7));
        assert!(right.iter().all(|&s| s == 7));
    }

    #[test]
    fn queues_stay_bounded_without_ticks() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        let caller: Vec<i16> = (0..80_000).map(caller_sample).collect();
        rec.push(Channel::Caller, &caller);
        assert!(rec.queued(Channel::Caller) <= QUEUE_CAPACITY);
        // A bogus timestamp jump fills at most a second.
        rec.push_silence(Channel::Other, usize::MAX);
        assert!(rec.queued(Channel::Other) <= QUEUE_CAPACITY);
        let summary = rec.finish().unwrap();
        // The silence pairs with the caller's queued samples; what is left of the second
        // runs past the caller's end (against silence on the caller's channel).
        assert!(
            (80_000..=80_000 + MAX_SILENCE as u64).contains(&summary.frames),
            "{}",
            summary.frames
        );
        let (left, right) = read_channels(&path);
        assert_eq!(&left[..80_000], &caller[..]);
        assert!(left[80_000..].iter().all(|&s| s == 0));
        assert!(
            right.iter().all(|&s| s == 0),
            "the other side only had silence"
        );
    }

    #[test]
    fn flushed_file_is_playable_while_recording() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("call.wav");
        let copy = dir.path().join("copy.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        let caller: Vec<i16> = (0..8000).map(caller_sample).collect();
        let other: Vec<i16> = (0..8000).map(other_sample).collect();
        for (a, b) in caller.chunks(FRAME).zip(other.chunks(FRAME)) {
            rec.push(Channel::Caller, a);
            rec.push(Channel::Other, b);
        }
        rec.tick(t0 + Duration::from_secs(1)).unwrap();
        fs::copy(&path, &copy).unwrap();
        let (left, right) = read_channels(&copy);
        assert!(left.len() >= 8000);
        assert_eq!(&left[..8000], &caller[..]);
        assert_eq!(&right[..8000], &other[..]);
        rec.finish().unwrap();
    }

    #[test]
    fn crash_leaves_a_repairable_file() {
        let dir = TempDir::new().unwrap();
        let root = dir.path().join("recordings");
        let path = path_for(&root, (2024, 5, 9), "crash-call");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        let total = 8000 * 5 + 400;
        let caller: Vec<i16> = (0..total).map(caller_sample).collect();
        let other: Vec<i16> = (0..total).map(other_sample).collect();
        let mut chunks = caller.chunks(FRAME).zip(other.chunks(FRAME));
        // 2.5 s with ticks: a flush every FLUSH_INTERVAL.
        for k in 0..125u64 {
            let (a, b) = chunks.next().unwrap();
            rec.push(Channel::Caller, a);
            rec.push(Channel::Other, b);
            rec.tick(t0 + ms(20 * (k + 1))).unwrap();
        }
        // More than the write buffer holds, without a flush.
        for (a, b) in chunks {
            rec.push(Channel::Caller, a);
            rec.push(Channel::Other, b);
        }
        // Crash: no finish, no Drop.
        std::mem::forget(rec);

        let every = FLUSH_INTERVAL.as_millis() as u64;
        let flushed = 2500 / every * every * 8;
        let bytes = fs::read(&path).unwrap();
        assert!(bytes.len() as u64 > HEADER_LEN + flushed * BLOCK_ALIGN);
        assert_eq!(u64::from(u32_at(&bytes, 40)), flushed * BLOCK_ALIGN);

        let report = repair_dir(&root).unwrap();
        assert_eq!(report.checked, 1);
        assert_eq!(report.repaired, vec![path.clone()]);
        assert!(report.broken.is_empty());
        assert!(report.failed.is_empty());
        let (left, right) = read_channels(&path);
        assert!(left.len() as u64 > flushed);
        assert_eq!(&left[..], &caller[..left.len()]);
        assert_eq!(&right[..], &other[..right.len()]);

        let again = repair_dir(&root).unwrap();
        assert_eq!(again.checked, 1);
        assert!(again.repaired.is_empty());
        assert!(again.broken.is_empty());
    }

    #[test]
    fn drop_without_finish_finalizes() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("call.wav");
        let t0 = Instant::now();
        let mut rec = Recorder::create(&path, t0).unwrap();
        rec.push(Channel::Caller, &[1; 500]);
        rec.push(Channel::Other, &[2; 300]);
        drop(rec);
        let (left, right) = read_channels(&path);
        assert_eq!(left, vec![1; 500]);
        assert_eq!(&right[..300], &[2; 300][..]);
        assert!(right[300..].iter().all(|&s| s == 0));
        // Nothing for the start-up pass to do.
        let report = repair_dir(dir.path()).unwrap();
        assert_eq!(report.checked, 1);
        assert!(report.repaired.is_empty());
    }

    #[test]
    fn create_makes_directories_and_refuses_to_overwrite() {
        let dir = TempDir::new().unwrap();
        let path = path_for(dir.path(), (2024, 1, 2), "abc");
        let t0 = Instant::now();
        let rec = Recorder::create(&path, t0).unwrap();
        // The header is on disk at once.
        assert_eq!(fs::metadata(&path).unwrap().len(), HEADER_LEN);
        rec.finish().unwrap();
        let before = fs::read(&path).unwrap();
        let err = Recorder::create(&path, t0).err().unwrap();
        assert!(matches!(err, RecorderError::AlreadyExists { .. }));
        assert!(err.to_string().contains("abc.wav"));
        assert_eq!(fs::read(&path).unwrap(), before);
        // An empty recording reads back as empty.
        let (left, _) = read_channels(&path);
        assert!(left.is_empty());
    }

    #[test]
    fn create_unique_picks_a_free_name() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("a_b.wav");
        let t0 = Instant::now();
        let first = Recorder::create_unique(&path, t0).unwrap();
        let second = Recorder::create_unique(&path, t0).unwrap();
        let third = Recorder::create_unique(&path, t0).unwrap();
        assert_eq!(first.path(), path);
        assert_eq!(second.path(), dir.path().join("a_b-2.wav"));
        assert_eq!(third.path(), dir.path().join("a_b-3.wav"));
    }

    #[test]
    fn path_for_builds_dated_safe_names() {
        let root = Path::new("/data/recordings");
        assert_eq!(
            path_for(root, (2024, 3, 7), "a84b4c76e66710@pc33.example.com"),
            Path::new("/data/recordings/2024/03/07/a84b4c76e66710_pc33.example.com.wav")
        );
        let cases = [
            ("../../etc/passwd", "_._.._etc_passwd.wav"),
            ("a/b", "a_b.wav"),
            ("abc@host", "abc_host.wav"),
            ("", "_.wav"),
            (".", "_.wav"),
            ("..", "_..wav"),
            ("a\\b\0c", "a_b_c.wav"),
            ("zé", "z_.wav"),
            ("Ok.-_9", "Ok.-_9.wav"),
        ];
        for (id, name) in cases {
            let p = path_for(root, (2024, 12, 31), id);
            assert_eq!(
                p.parent().unwrap(),
                Path::new("/data/recordings/2024/12/31")
            );
            assert_eq!(p.file_name().unwrap(), name, "call-id {id:?}");
        }
        let long = "x".repeat(500);
        let p = path_for(root, (2024, 1, 1), &long);
        assert_eq!(p.file_name().unwrap().len(), MAX_NAME_LEN + 4);
        for id in ["../../etc/passwd", "..", ".", "/abs", "a/../../b"] {
            let p = path_for(root, (2024, 1, 1), id);
            assert!(p.starts_with("/data/recordings/2024/01/01"));
            assert_eq!(p.components().count(), 7, "{id:?} -> {p:?}");
        }
    }

    #[test]
    fn repair_fixes_patches_and_moves_aside() {
        let dir = TempDir::new().unwrap();
        let root = dir.path();
        let day = root.join("2024").join("05").join("09");
        fs::create_dir_all(&day).unwrap();

        // Data size 0xFFFFFFFF, RIFF size stale, an odd trailing byte.
        let open = day.join("open.wav");
        write_plain(&open, 1000);
        let mut bytes = fs::read(&open).unwrap();
        bytes[4..8].copy_from_slice(&0u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes.push(0x55);
        fs::write(&open, &bytes).unwrap();

        // Crash right after the header: sizes 0, data after it, half a frame at the end.
        let zero = root.join("2023").join("zero.wav");
        fs::create_dir_all(zero.parent().unwrap()).unwrap();
        write_plain(&zero, 10);
        let mut bytes = fs::read(&zero).unwrap();
        bytes[4..8].copy_from_slice(&36u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 2]);
        fs::write(&zero, &bytes).unwrap();

        let short = day.join("short.wav");
        fs::write(&short, [b'R'; 20]).unwrap();
        let empty = day.join("empty.wav");
        fs::write(&empty, b"").unwrap();

        let healthy = day.join("healthy.wav");
        write_plain(&healthy, 500);
        let healthy_bytes = fs::read(&healthy).unwrap();

        let notes = day.join("notes.txt");
        fs::write(&notes, b"not audio").unwrap();
        let odd = day.join("junk.wav.broken");
        fs::write(&odd, b"old").unwrap();

        #[cfg(unix)]
        std::os::unix::fs::symlink(&open, root.join("link.wav")).unwrap();

        let report = repair_dir(root).unwrap();
        assert_eq!(report.checked, 5, "{report:?}");
        let mut repaired = report.repaired.clone();
        repaired.sort();
        let mut want = vec![open.clone(), zero.clone()];
        want.sort();
        assert_eq!(repaired, want);
        let mut broken = report.broken.clone();
        broken.sort();
        assert_eq!(
            broken,
            vec![day.join("empty.wav.broken"), day.join("short.wav.broken")]
        );
        assert!(report.failed.is_empty());

        let bytes = fs::read(&open).unwrap();
        assert_eq!(bytes.len(), 44 + 4000);
        assert_eq!(u32_at(&bytes, 4), 36 + 4000);
        assert_eq!(u32_at(&bytes, 40), 4000);
        let (left, right) = read_channels(&open);
        assert_eq!(left, (0..1000).map(caller_sample).collect::<Vec<_>>());
        assert_eq!(right, (0..1000).map(other_sample).collect::<Vec<_>>());

        let (left, _) = read_channels(&zero);
        assert_eq!(left, (0..10).map(caller_sample).collect::<Vec<_>>());
        assert_eq!(fs::metadata(&zero).unwrap().len(), 44 + 40);

        assert!(!short.exists());
        assert_eq!(fs::read(day.join("short.wav.broken")).unwrap(), [b'R'; 20]);
        assert_eq!(fs::read(&healthy).unwrap(), healthy_bytes);
        assert_eq!(fs::read(&notes).unwrap(), b"not audio");
        assert_eq!(fs::read(&odd).unwrap(), b"old");

        // Once fixed, nothing more to do.
        let again = repair_dir(root).unwrap();
        assert_eq!(again.checked, 3);
        assert!(again.repaired.is_empty() && again.broken.is_empty());
    }

    #[test]
    fn broken_files_never_overwrite_earlier_ones() {
        let dir = TempDir::new().unwrap();
        let file = dir.path().join("x.wav");
        fs::write(dir.path().join("x.wav.broken"), b"first").unwrap();
        fs::write(&file, b"second").unwrap();
        let report = repair_dir(dir.path()).unwrap();
        assert_eq!(report.broken, vec![dir.path().join("x.wav.broken.1")]);
        assert_eq!(fs::read(dir.path().join("x.wav.broken")).unwrap(), b"first");
        assert_eq!(
            fs::read(dir.path().join("x.wav.broken.1")).unwrap(),
            b"second"
        );
    }

    #[test]
    fn repair_of_missing_root_is_empty() {
        let dir = TempDir::new().unwrap();
        let report = repair_dir(&dir.path().join("nope")).unwrap();
        assert_eq!(report.checked, 0);
    }

    #[test]
    fn repair_never_panics_on_garbage() {
        let dir = TempDir::new().unwrap();
        let mut seed: u64 = 0x1234_5678_9abc_def0;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..300 {
            let len = (next() % 200) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Mostly plausible headers with random chunk sizes and formats.
            if i % 3 != 0 && len >= 12 {
                bytes[0..4].copy_from_slice(b"RIFF");
                bytes[8..12].copy_from_slice(b"WAVE");
                if len >= 20 && i % 2 == 0 {
                    bytes[12..16].copy_from_slice(b"fmt ");
                    let size = [16u32, 18, 40, 2, u32::MAX][i % 5];
                    bytes[16..20].copy_from_slice(&size.to_le_bytes());
                }
                if len >= 44 && i % 4 == 0 {
                    bytes[36..40].copy_from_slice(b"data");
                }
            }
            fs::write(dir.path().join(format!("f{i}.wav")), &bytes).unwrap();
        }
        let report = repair_dir(dir.path()).unwrap();
        assert_eq!(report.checked, 300);
        assert!(report.failed.is_empty());
        for path in &report.repaired {
            // Whatever was repaired has consistent sizes now.
            let bytes = fs::read(path).unwrap();
            assert_eq!(u32_at(&bytes, 4) as usize, bytes.len() - 8);
        }
        assert_eq!(repair_dir(dir.path()).unwrap().repaired.len(), 0);
    }
}
