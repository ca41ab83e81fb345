//! A hotline killed in the middle of a call (SIGKILL: no clean-up at all) leaves a playable
//! recording: the file is flushed every second while the call goes on, and the restarted
//! hotline repairs the WAV header the crash left stale.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use support::rtp::*;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_hotline");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/hotline.toml");

fn serve(data: &Path, sip: u16, http: u16) -> tokio::process::Child {
    tokio::process::Command::new(BIN)
        .args(["serve", "--config", SAMPLE])
        .args(["--sip-listen", &format!("127.0.0.1:{sip}")])
        .args(["--http-listen", &format!("127.0.0.1:{http}")])
        .arg("--data-dir")
        .arg(data)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

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
    let (sip_port, http_port) = (free_port(), free_port());
    let http = format!("127.0.0.1:{http_port}").parse().unwrap();
    let mut child = serve(data.path(), sip_port, http_port);
    wait_healthy(http).await;

    let server = format!("127.0.0.1:{sip_port}").parse().unwrap();
    let mut phone = Phone::call(server, "UDP", "crash@test", &[(0, "PCMU")]).await;
    // 2.5 s of the caller talking, then the server dies mid-sentence.
    let spoken: Vec<u8> = (0..20000u32)
        .map(|i| ((i * 17 + i / 160) % 241) as u8)
        .collect();
    phone.rtp.stream(phone.media, 0, &spoken).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let recordings = data.path().join("recordings");
    let files = wavs(&recordings);
    assert_eq!(files.len(), 1, "{files:?}");

    // Restart: the start-up pass repairs the header; the file then plays.
    let mut child = serve(data.path(), sip_port, http_port);
    wait_healthy(http).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
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
