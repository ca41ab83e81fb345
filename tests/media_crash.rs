//! A hotline killed in the middle of a call (SIGKILL: no clean-up at all) leaves a playable
//! recording: the file is flushed every second while the call goes on, and the restarted
//! hotline repairs the WAV header the crash left stale.

mod support;

use std::path::{Path, PathBuf};
use support::child::{serve, ShowLog};
use support::rtp::*;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_hotline");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/hotline.toml");

fn wavs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(wavs(&p));
        } else if p.extension().is_some_and(|x| x == "wav") {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn killed_hotline_leaves_a_playable_recording() {
    let data = tempfile::tempdir().unwrap();
    let _log = ShowLog(data.path().join("hotline.log"));
    let mut child = serve(BIN, Path::new(SAMPLE), data.path()).await;
    let mut phone = Phone::call(child.sip, "UDP", "crash@test", &[(0, "PCMU")]).await;
    // 2.5 s of the caller talking, then the server dies mid-sentence.
    let spoken: Vec<u8> = (0..20000u32)
        .map(|i| ((i * 17 + i / 160) % 241) as u8)
        .collect();
    phone.rtp.stream(phone.media, 0, &spoken).await;
    child.kill().await;

    let recordings = data.path().join("recordings");
    let files = wavs(&recordings);
    assert_eq!(files.len(), 1, "{files:?}");

    // Restart: the start-up pass repairs the header; the file then plays.
    serve(BIN, Path::new(SAMPLE), data.path())
        .await
        .kill()
        .await;
    let (samples, channels) = read_wav(&files[0]);
    assert_eq!(channels, 2);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    // Everything up to the last flush (at most a second before the kill) is there, sample
    // for sample: at least the first second of what the caller said.
    let first_second: Vec<i16> = spoken[..8000].iter().map(|&b| ulaw_decode(b)).collect();
    assert!(
        find(&left, &first_second).is_some(),
        "the first second of the call is not in the repaired recording ({} frames)",
        left.len()
    );
    assert!(left.len() >= 8000 + 800, "{} frames kept", left.len());
}

/// kill -9 while 20 callers leave voicemail after hours. After the restart every file plays,
/// every call has a finished journal entry, and every message is registered as the call
/// flow would have registered it: voicemail record with its deadline, transcription job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_during_20_voicemails_loses_no_message() {
    use sqlx::Connection;
    const CALLS: usize = 20;
    let data = tempfile::tempdir().unwrap();
    let _log = ShowLog(data.path().join("hotline.log"));
    let config = data.path().join("hotline.toml");
    let tables = format!(
        "[media]\nprompts_dir = \"{PROMPTS}\"\nrtp_timeout_s = 0\n[limits]\n{TRUSTED_LOOPBACK}\n"
    );
    std::fs::write(
        &config,
        config_text(data.path(), "", &tables, closed_hours()),
    )
    .unwrap();
    let mut child = serve(BIN, &config, data.path()).await;
    let server = child.sip;
    let mut talking = Vec::new();
    for i in 0..CALLS {
        let mut phone =
            Phone::call(server, "UDP", &format!("vmcrash-{i}@test"), &[(0, "PCMU")]).await;
        talking.push(tokio::spawn(async move {
            // The caller speaks (a tone) until the line goes dead.
            let media = phone.media;
            phone.rtp.stream(media, 0, &ulaw_tone(700.0, 60.0)).await;
        }));
    }
    // Every caller is past the greeting and the beep: 20 messages are being written.
    let voicemail = data.path().join("voicemail");
    for _ in 0..600 {
        if wavs(&voicemail).len() >= CALLS {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(wavs(&voicemail).len(), CALLS, "messages being recorded");
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    child.kill().await;
    for t in talking {
        t.abort();
    }

    serve(BIN, &config, data.path()).await.kill().await;

    let files = wavs(&voicemail);
    assert_eq!(files.len(), CALLS);
    for f in &files {
        let (samples, channels) = read_wav(f);
        assert_eq!(channels, 1);
        assert!(
            samples.len() >= 8000,
            "{}: {} samples",
            f.display(),
            samples.len()
        );
    }
    let url = format!("sqlite://{}", data.path().join("hotline.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let entries: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT call_id, disposition, ended_at FROM journal_entries WHERE call_id LIKE 'vmcrash-%'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(entries.len(), CALLS, "{entries:?}");
    for (call_id, disposition, ended_at) in &entries {
        assert_eq!(disposition, "after_hours_voicemail", "{call_id}");
        assert!(ended_at.is_some(), "{call_id}");
    }
    let messages: Vec<(String, Option<i64>, i64, Option<String>)> = sqlx::query_as(
        "SELECT v.file, v.deadline_at, v.empty, t.status FROM voicemails v \
         JOIN journal_entries e ON e.id = v.journal_id \
         LEFT JOIN transcription_jobs t ON t.voicemail_id = v.id \
         WHERE e.call_id LIKE 'vmcrash-%'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(messages.len(), CALLS, "{messages:?}");
    for (file, deadline, empty, job) in &messages {
        assert!(deadline.is_some(), "{file}: a deadline");
        assert_eq!(*empty, 0, "{file}: the caller spoke");
        assert!(job.is_some(), "{file}: a transcription job");
        assert!(data.path().join(file).exists(), "{file}");
    }
}
