//! Finishing the calls of a run that stopped without ending them (a crash, kill -9, a
//! power cut). At start-up the recordings and voicemail files it left open have been made
//! playable ([`crate::media::recorder::repair_dir`]); their journal entries still say
//! `in_progress`. Each is finished here, before SIP listens, through the call log like any
//! call's writes:
//!
//! - a voicemail file of the call: it is registered as the call flow would have registered
//!   it (voicemail record, next-working-day deadline, callback form, notice to the head of
//!   the call centre, transcription job), and the entry ends as voicemail;
//! - otherwise the entry ends as answered (an operator had answered) or failed, with its
//!   recording if there is one.
//!
//! Files are found where the call flow puts them: `path_for` of the call's Call-ID and local
//! arrival date, or a `-N` variant of that name when it was taken. The end time is the
//! file's last write (the recorder flushes every few hundred milliseconds), else the
//! arrival.
//!
//! A node of a cluster finishes only its own entries: the others' `in_progress` entries are
//! their live calls. It also looks again at the calls of its previous run that a survivor
//! ended as lost ([`crate::store::cluster::take_over`]) without their files: a recording or
//! a voicemail found now is linked (the voicemail registered), else the survivor's ending
//! stands.

use super::VoicemailSettings;
use crate::calendar::Calendar;
use crate::desk::calllog::{CallLog, CallLogError, CallVoicemail};
use crate::media::recorder::path_for;
use crate::records::journal::{CallProgress, Disposition};
use crate::store::journal::{unfinished, Unfinished};
use crate::store::{Store, StoreError};
use chrono::{DateTime, Datelike, Utc};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("cannot list the calls left unfinished: {0}")]
    Store(#[from] StoreError),
    #[error("cannot finish call {call_id}: {source}")]
    CallLog {
        call_id: String,
        source: CallLogError,
    },
}

/// What [`finish_unfinished_calls`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Entries ended.
    pub finished: usize,
    /// Of those, voicemails registered from their files.
    pub voicemails: usize,
}

/// Where the call flow keeps files, and how it judges a voicemail.
pub struct Files<'a> {
    pub data_dir: &'a Path,
    pub calendar: &'a Calendar,
    pub voicemail: &'a VoicemailSettings,
}

/// Finishes every entry left `in_progress` by an earlier run. See the module documentation.
pub async fn finish_unfinished_calls(
    store: &Store,
    calllog: &CallLog,
    files: &Files<'_>,
    previous_run: Option<DateTime<Utc>>,
) -> Result<Recovered, RecoveryError> {
    let mut done = Recovered::default();
    for call in unfinished(store, store.node(), previous_run).await? {
        let fail = |source| RecoveryError::CallLog {
            call_id: call.call_id.clone(),
            source,
        };
        let plan = plan(&call, files);
        if call.lost && plan.voicemail.is_none() && plan.progress.recording.is_none() {
            continue;
        }
        if let Some(vm) = plan.voicemail {
            calllog
                .voicemail(call.call_id.clone(), vm)
                .await
                .map_err(fail)?;
            done.voicemails += 1;
        }
        calllog
            .progress(call.call_id.clone(), plan.progress)
            .await
            .map_err(fail)?;
        done.finished += 1;
    }
    Ok(done)
}

/// The writes that finish one call.
#[derive(Debug)]
struct Plan {
    voicemail: Option<CallVoicemail>,
    progress: CallProgress,
}

fn plan(call: &Unfinished, files: &Files<'_>) -> Plan {
    // The journal keys a call `Call-ID;from-tag=…`; files are named by the Call-ID.
    let sip_call_id = call.call_id.split(";from-tag=").next().unwrap_or_default();
    let local = files.calendar.local_date(call.arrived_at);
    let date = (local.year(), local.month(), local.day());
    let find = |dir: &str| {
        find_file(
            &path_for(&files.data_dir.join(dir), date, sip_call_id),
            call.arrived_at,
        )
    };
    let recording = find("recordings");
    let message = find("voicemail").and_then(|path| read_message(&path, files.voicemail));
    let relative = |p: &Path| {
        p.strip_prefix(files.data_dir)
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    };
    let ended_at = [
        recording.as_deref(),
        message.as_ref().map(|m| m.path.as_path()),
    ]
    .into_iter()
    .flatten()
    .filter_map(modified)
    .max()
    .unwrap_or(call.arrived_at)
    .max(call.arrived_at);
    let after_hours = !files.calendar.is_open(call.arrived_at);
    let voicemail = message.as_ref().and_then(|m| {
        Some(CallVoicemail {
            arrived_at: call.arrived_at,
            file: relative(&m.path)?,
            duration: m.duration,
            empty: m.empty,
            after_hours,
        })
    });
    let disposition = if voicemail.is_some() {
        if after_hours {
            Disposition::AfterHoursVoicemail
        } else {
            Disposition::Voicemail
        }
    } else if call.answered_at.is_some() {
        Disposition::Answered
    } else {
        Disposition::Failed
    };
    Plan {
        voicemail,
        progress: CallProgress {
            ended_at: Some(ended_at),
            disposition: Some(disposition),
            recording: recording.as_deref().and_then(relative),
            ..CallProgress::default()
        },
    }
}

/// `path`, or the newest `-N` variant of it (`create_unique`'s names), written at or after
/// `since` (a file of an older call with the same Call-ID is not this call's).
fn find_file(path: &Path, since: DateTime<Utc>) -> Option<PathBuf> {
    let dir = path.parent()?;
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    let entries = std::fs::read_dir(dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let Some(name) = p.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
                return false;
            };
            p.extension().is_some_and(|e| e == "wav")
                && (name == stem
                    || name
                        .strip_prefix(&stem)
                        .and_then(|rest| rest.strip_prefix('-'))
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        })
        .filter_map(|p| Some((modified(&p)?, p)))
        .filter(|(at, _)| *at >= since - chrono::Duration::seconds(1))
        .max_by_key(|(at, _)| *at)
        .map(|(_, p)| p)
}

fn modified(path: &Path) -> Option<DateTime<Utc>> {
    let t = std::fs::metadata(path).ok()?.modified().ok()?;
    Some(DateTime::<Utc>::from(t))
}

/// A repaired voicemail file: its length, and whether it holds speech as the recorder
/// judges it (20 ms frames whose RMS reaches `silence_dbfs`, at least `min_speech` of them).
struct Message {
    path: PathBuf,
    duration: Duration,
    empty: bool,
}

fn read_message(path: &Path, config: &VoicemailSettings) -> Option<Message> {
    let reader = match hound::WavReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "voicemail left by a crash is unreadable");
            return None;
        }
    };
    let spec = reader.spec();
    let rate = u64::from(spec.sample_rate.max(1));
    let channels = u64::from(spec.channels.max(1));
    let frames = u64::from(reader.len()) / channels;
    let amplitude = 32768.0 * 10f64.powf(f64::from(config.silence_dbfs) / 20.0);
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .filter_map(Result::ok)
        .collect();
    let frame = crate::media::leg::FRAME_SAMPLES as usize;
    let speech_frames = samples
        .chunks(frame)
        .filter(|f| {
            let sum: i64 = f.iter().map(|&s| i64::from(s) * i64::from(s)).sum();
            sum as f64 >= amplitude * amplitude * f.len() as f64
        })
        .count() as u64;
    let speech = Duration::from_millis(speech_frames * frame as u64 * 1000 / rate);
    Some(Message {
        path: path.to_path_buf(),
        duration: Duration::from_millis(frames * 1000 / rate),
        empty: speech < config.min_speech.max(Duration::from_millis(1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(path: &Path, samples: &[i16]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for s in samples {
            w.write_sample(*s).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn finds_the_name_or_its_numbered_variants_but_not_others() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("2026/12/05/abc_x.wav");
        let since = Utc::now() - chrono::Duration::seconds(5);
        assert_eq!(find_file(&base, since), None);
        wav(&dir.path().join("2026/12/05/abc_x-2.wav"), &[0; 10]);
        wav(&dir.path().join("2026/12/05/abc_x-other.wav"), &[0; 10]);
        wav(&dir.path().join("2026/12/05/abc_xy.wav"), &[0; 10]);
        assert_eq!(
            find_file(&base, since),
            Some(dir.path().join("2026/12/05/abc_x-2.wav"))
        );
        // A file older than the call is another call's.
        assert_eq!(
            find_file(&base, Utc::now() + chrono::Duration::hours(1)),
            None
        );
    }

    #[test]
    fn a_message_with_sound_is_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        let config = VoicemailSettings {
            max_length: Duration::from_secs(120),
            silence: Duration::from_secs(7),
            min_speech: Duration::from_secs(1),
            silence_dbfs: -45.0,
        };
        let loud: Vec<i16> = (0..16000)
            .map(|i| if i % 20 < 10 { 8000 } else { -8000 })
            .collect();
        wav(&dir.path().join("loud.wav"), &loud);
        wav(&dir.path().join("quiet.wav"), &[3; 16000]);
        let m = read_message(&dir.path().join("loud.wav"), &config).unwrap();
        assert_eq!(m.duration, Duration::from_secs(2));
        assert!(!m.empty);
        let q = read_message(&dir.path().join("quiet.wav"), &config).unwrap();
        assert!(q.empty);
    }
}
