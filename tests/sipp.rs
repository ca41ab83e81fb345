//! End-to-end tests with the real SIPp (`sipp`, Debian package `sip-tester`) against the
//! hotline started in-process on loopback: call load over UDP and TCP with SIPp's built-in
//! `uac` scenario, and operator registration with digest authentication
//! (`tests/sipp/register.xml`, `tests/sipp/register-fail.xml`).
//!
//! SIPp is required: without it these tests fail, unless `HOTLINE_SKIP_SIPP=1` is set, in
//! which case they print a notice and pass. Every SIPp run is bounded twice: by SIPp's own
//! global timeout (`-timeout`, with `-timeout_error` so that reaching it is a failure) and by
//! a hard timeout here that kills the process.
//!
//! Digest algorithms: SIPp 3.6.1 (Debian's sip-tester) answers only MD5 (and AKAv1-MD5)
//! challenges and reads the first `algorithm=` of the 401. Against the hotline's default
//! challenges (SHA-256 first, then MD5) it stops with the fatal error "createAuthHeader:
//! authentication must use MD5 or AKAv1-MD5" (exit status 255) without sending the second
//! REGISTER. So the registration tests configure `auth_algorithms = ["MD5"]`, and
//! `sipp_register_with_default_algorithms` records which of the two behaviours the installed
//! SIPp shows.

mod support;

use hotline::sip::registrar::RegistrationEvent;
use hotline::sip::ua::{EndReason, Event};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use support::*;
use tokio::process::Command;

const SIPP: &str = "sipp";
/// SIPp's own global timeout, in seconds (`-timeout`)…
const SIPP_TIMEOUT_S: u64 = 60;
/// …and ours, after which the process is killed.
const HARD_TIMEOUT: Duration = Duration::from_secs(SIPP_TIMEOUT_S + 30);

/// SIPp's exit status when every call succeeded, and when at least one failed.
const EXIT_ALL_OK: i32 = 0;
const EXIT_SOME_FAILED: i32 = 1;
/// SIPp's exit status after a fatal error (`ERROR()`), e.g. an unsupported digest algorithm.
const EXIT_FATAL: i32 = 255;

/// True when `sipp` can be run. When it cannot: false (skip) if `HOTLINE_SKIP_SIPP=1`,
/// otherwise a panic that says how to get it.
fn sipp_available(test: &str) -> bool {
    let probe = std::process::Command::new(SIPP)
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match probe {
        Ok(_) => true,
        Err(e) if std::env::var("HOTLINE_SKIP_SIPP").as_deref() == Ok("1") => {
            eprintln!("NOTICE: {test} skipped: cannot run `{SIPP}` ({e}) and HOTLINE_SKIP_SIPP=1");
            false
        }
        Err(e) => panic!(
            "cannot run `{SIPP}` ({e}). These tests need SIPp on PATH \
             (Debian/Ubuntu: `apt-get install sip-tester`); set HOTLINE_SKIP_SIPP=1 to skip them"
        ),
    }
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Cumulative counters from the last row of SIPp's statistics CSV (`-trace_stat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stats {
    created: u64,
    successful: u64,
    failed: u64,
}

/// The header and the last row of a `-stf` file (`;`-separated; the last row is the final one).
fn last_stats_row(csv: &str) -> Result<(Vec<&str>, Vec<&str>), String> {
    let mut rows = csv.lines().filter(|l| !l.trim().is_empty());
    let header = rows
        .next()
        .ok_or("empty statistics file")?
        .split(';')
        .collect();
    let last = rows
        .next_back()
        .ok_or("no statistics row")?
        .split(';')
        .collect();
    Ok((header, last))
}

fn parse_stats(csv: &str) -> Result<Stats, String> {
    let (header, last) = last_stats_row(csv)?;
    let column = |name: &str| -> Result<u64, String> {
        let i = header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| format!("no column {name}"))?;
        let v = last.get(i).ok_or_else(|| format!("no value for {name}"))?;
        v.trim().parse().map_err(|e| format!("{name} = {v:?}: {e}"))
    };
    Ok(Stats {
        created: column("TotalCallCreated")?,
        successful: column("SuccessfulCall(C)")?,
        failed: column("FailedCall(C)")?,
    })
}

/// What one SIPp run left behind. Its working directory (logs, statistics) lives as long as
/// this does.
struct SippRun {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    stats: Result<Stats, String>,
    /// The non-zero cumulative failure counters (`FailedTcpClosed(C)=1`, …).
    failure_counters: String,
    dir: tempfile::TempDir,
}

impl SippRun {
    /// Contents of the SIPp log files whose names end with `suffix` (`_errors.log`,
    /// `_messages.log`), concatenated.
    fn logs(&self, suffix: &str) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return out;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(suffix) {
                out.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
            }
        }
        out
    }

    /// Everything useful for a failure message.
    fn report(&self) -> String {
        format!(
            "sipp exit status: {}\nstatistics: {:?} {}\n--- stdout (tail) ---\n{}\n--- stderr ---\n{}\n\
             --- errors log (head) ---\n{}\n--- messages log (tail) ---\n{}",
            self.status,
            self.stats,
            self.failure_counters,
            tail(&self.stdout, 3000),
            tail(&self.stderr, 3000),
            head(&self.logs("_errors.log"), 4000),
            tail(&self.logs("_messages.log"), 4000),
        )
    }

    /// Exit status 0, and the statistics say `calls` calls, all successful.
    fn assert_all_successful(&self, calls: u64) {
        assert_eq!(self.status.code(), Some(EXIT_ALL_OK), "{}", self.report());
        let stats = self
            .stats
            .as_ref()
            .unwrap_or_else(|e| panic!("cannot read SIPp statistics: {e}\n{}", self.report()));
        assert_eq!(
            (stats.successful, stats.failed),
            (calls, 0),
            "successful and failed calls\n{}",
            self.report()
        );
        assert_eq!(stats.created, calls, "{}", self.report());
    }
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn head(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Runs `sipp <args> … <server>` in a fresh temporary directory (so that its logs land
/// there), bounded by SIPp's global timeout and by [`HARD_TIMEOUT`].
async fn run_sipp(args: &[&str], server: SocketAddr) -> SippRun {
    let dir = tempfile::tempdir().expect("tempdir for sipp");
    let stat_file = dir.path().join("stat.csv");
    let mut cmd = Command::new(SIPP);
    cmd.args(args)
        .args([
            "-i",
            "127.0.0.1",
            "-nostdin",
            "-trace_err",
            "-trace_stat",
            "-stf",
        ])
        .arg(&stat_file)
        .args(["-timeout", &format!("{SIPP_TIMEOUT_S}s"), "-timeout_error"])
        .arg(server.to_string())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {SIPP}: {e}"));
    // On timeout the future, and with it the child, is dropped: kill_on_drop kills SIPp.
    let output = match tokio::time::timeout(HARD_TIMEOUT, child.wait_with_output()).await {
        Ok(result) => result.expect("waiting for sipp"),
        Err(_) => panic!("sipp {args:?} still running after {HARD_TIMEOUT:?}; killed"),
    };
    let csv =
        std::fs::read_to_string(&stat_file).map_err(|e| format!("{}: {e}", stat_file.display()));
    let stats = csv.as_deref().map_err(Clone::clone).and_then(parse_stats);
    let failure_counters = csv
        .as_deref()
        .ok()
        .and_then(|csv| last_stats_row(csv).ok())
        .map(|(header, last)| {
            header
                .iter()
                .zip(&last)
                .filter(|(h, v)| {
                    h.starts_with("Failed") && h.ends_with("(C)") && !matches!(v.trim(), "0" | "")
                })
                .map(|(h, v)| format!("{h}={}", v.trim()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    SippRun {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        stats,
        failure_counters,
        dir,
    }
}

/// Counts (offered, answered, ended by the caller's BYE) calls among the hotline's events,
/// waiting up to 5 s for `calls` of each.
async fn count_calls(events: &mut SipEvents, calls: usize) -> [usize; 3] {
    let mut seen = [0usize; 3];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while seen.iter().any(|&n| n < calls) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Event::CallOffered { .. })) => seen[0] += 1,
            Ok(Ok(Event::CallAnswered { .. })) => seen[1] += 1,
            Ok(Ok(Event::CallEnded {
                reason: EndReason::RemoteBye,
                ..
            })) => seen[2] += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("hotline events: {e}"),
            Err(_) => break,
        }
    }
    seen
}

/// SIPp's built-in `uac` scenario (INVITE, ACK, BYE) to the hotline number, `calls` calls at
/// `rate` calls a second over `transport` (SIPp's `-t`), with the default test limits.
async fn uac_load(transport: &str, calls: u64, rate: u64) {
    let (hotline, _dir) = start_trusted("", "").await;
    let mut events = sip_events(&hotline);
    let (m, r) = (calls.to_string(), rate.to_string());
    let run = run_sipp(
        &[
            "-sn", "uac", "-s", "8800", "-t", transport, "-m", &m, "-r", &r,
        ],
        hotline.sip_addr,
    )
    .await;
    run.assert_all_successful(calls);
    let n = calls as usize;
    assert_eq!(
        count_calls(&mut events, n).await,
        [n, n, n],
        "offered, answered and ended-by-BYE calls seen by the hotline"
    );
    hotline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_500_calls_no_failures() {
    if !sipp_available("sipp_uac_500_calls_no_failures") {
        return;
    }
    uac_load("u1", 500, 100).await;
}

/// One TCP connection for every call (`-t t1`), as a carrier's SBC would keep: 300 requests
/// in 2 s on one connection from a trusted source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_uac_tcp_100_calls_no_failures() {
    if !sipp_available("sipp_uac_tcp_100_calls_no_failures") {
        return;
    }
    uac_load("t1", 100, 50).await;
}

/// `sipp -sf <scenario> -s 1001 -au 1001 -ap <password> -m 1`, with SIP messages traced.
async fn register(scenario_file: &str, password: &str, server: SocketAddr) -> SippRun {
    let path = scenario(scenario_file);
    let path = path.to_str().expect("UTF-8 path");
    run_sipp(
        &[
            "-sf",
            path,
            "-s",
            OPERATOR,
            "-au",
            OPERATOR,
            "-ap",
            password,
            "-m",
            "1",
            "-trace_msg",
        ],
        server,
    )
    .await
}

/// The next registration event, within 5 s.
async fn next_registration(events: &mut SipEvents) -> RegistrationEvent {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(Event::Registration(r)) => return r,
                Ok(_) => {}
                Err(e) => panic!("hotline events: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("a registration event within 5 s")
}

#[tokio::test]
async fn sipp_register_with_digest() {
    if !sipp_available("sipp_register_with_digest") {
        return;
    }
    // MD5 only: SIPp 3.6.1 cannot answer SHA-256 (see the module documentation). Two wrong
    // passwords below stay under the default lock-out of 5 failures.
    let (hotline, _dir) = start_trusted(r#"auth_algorithms = ["MD5"]"#, "").await;
    let mut events = sip_events(&hotline);

    // REGISTER -> 401 -> REGISTER with credentials -> 200.
    let ok = register("register.xml", PASSWORD, hotline.sip_addr).await;
    ok.assert_all_successful(1);
    let messages = ok.logs("_messages.log");
    assert!(
        messages.contains("algorithm=MD5") && messages.contains("Authorization: Digest"),
        "{}",
        ok.report()
    );
    match next_registration(&mut events).await {
        RegistrationEvent::Registered {
            extension, contact, ..
        } => {
            assert_eq!(extension, OPERATOR);
            assert!(contact.starts_with("sip:1001@127.0.0.1:"), "{contact}");
        }
        other => panic!("expected Registered, got {other:?}"),
    }

    // A wrong password: the scenario that expects 403 succeeds only if 403 arrives…
    let refused = register("register-fail.xml", "wrong-password", hotline.sip_addr).await;
    refused.assert_all_successful(1);
    assert!(
        refused.logs("_messages.log").contains("SIP/2.0 403"),
        "{}",
        refused.report()
    );

    // …and the scenario that expects 200 fails on it, with SIPp's exit status 1.
    let failed = register("register.xml", "wrong-password", hotline.sip_addr).await;
    assert_eq!(
        failed.status.code(),
        Some(EXIT_SOME_FAILED),
        "{}",
        failed.report()
    );
    assert_eq!(
        failed.stats.as_ref().map(|s| (s.successful, s.failed)),
        Ok((0, 1)),
        "{}",
        failed.report()
    );
    let errors = failed.logs("_errors.log");
    assert!(
        errors.contains("while expecting '200'") && errors.contains("SIP/2.0 403 Forbidden"),
        "{}",
        failed.report()
    );

    // Two failures are below the lock-out threshold: the right password still works.
    register("register.xml", PASSWORD, hotline.sip_addr)
        .await
        .assert_all_successful(1);
    hotline.shutdown().await;
}

/// The hotline's default challenges offer SHA-256 first, then MD5, in two WWW-Authenticate
/// headers. A SIPp with SHA-256 (newer than 3.6.1) must register with it; SIPp 3.6.1 reads
/// only the first `algorithm=`, supports only MD5 and stops with a fatal error before the
/// second REGISTER. Anything else is a failure.
#[tokio::test]
async fn sipp_register_with_default_algorithms() {
    if !sipp_available("sipp_register_with_default_algorithms") {
        return;
    }
    let (hotline, _dir) = start_trusted("", "").await;
    let run = register("register.xml", PASSWORD, hotline.sip_addr).await;
    let messages = run.logs("_messages.log");
    assert_eq!(
        messages.matches("WWW-Authenticate: Digest").count(),
        2,
        "{}",
        run.report()
    );
    assert!(
        messages.contains("algorithm=SHA-256, qop=\"auth\"\r\nWWW-Authenticate: Digest")
            || messages.contains("algorithm=SHA-256, qop=\"auth\"\nWWW-Authenticate: Digest"),
        "SHA-256 is offered first\n{}",
        run.report()
    );
    match run.status.code() {
        Some(EXIT_ALL_OK) => {
            run.assert_all_successful(1);
            assert!(
                messages.contains("algorithm=SHA-256") && messages.contains("Authorization:"),
                "{}",
                run.report()
            );
        }
        Some(EXIT_FATAL) => {
            let said = format!("{}{}", run.stderr, run.logs("_errors.log"));
            assert!(
                said.contains("authentication must use MD5 or AKAv1-MD5"),
                "{}",
                run.report()
            );
            // It gave up before answering the challenge: no credentials were sent.
            assert!(!messages.contains("Authorization:"), "{}", run.report());
            eprintln!(
                "NOTICE: this SIPp cannot answer the default SHA-256 challenge \
                 (\"authentication must use MD5 or AKAv1-MD5\")"
            );
        }
        _ => panic!(
            "unexpected outcome with the default digest algorithms\n{}",
            run.report()
        ),
    }
    hotline.shutdown().await;
}

#[test]
fn sipp_statistics_are_parsed_from_the_last_row() {
    let csv = "StartTime;TotalCallCreated;CurrentCall;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
               2026-01-01\t00:00:00.0\t1.0;0;0;0;0;0;0;\n\
               2026-01-01\t00:00:05.0\t6.0;500;0;12;498;0;2;\n";
    assert_eq!(
        parse_stats(csv),
        Ok(Stats {
            created: 500,
            successful: 498,
            failed: 2
        })
    );
    assert!(parse_stats("StartTime;SuccessfulCall(C)\n").is_err());
}

/// RTP payloads of a pcap capture (Ethernet / IPv4 / UDP, as SIPp's shipped captures are).
fn pcap_rtp_payloads(path: &str) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&data[..4], &[0xD4, 0xC3, 0xB2, 0xA1], "little-endian pcap");
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        let frame = &data[off + 16..off + 16 + caplen];
        off += 16 + caplen;
        let ip = &frame[14..];
        let udp = &ip[usize::from(ip[0] & 0x0F) * 4..];
        let rtp = &udp[8..];
        out.push(rtp[12..].to_vec());
    }
    out
}

/// SIPp plays the shipped captures into a call: 7 s of A-law speech (`g711a.pcap`), then
/// the RFC 4733 digits 1 and # (`dtmf_2833_1.pcap`, `dtmf_2833_pound.pcap`). The hotline
/// detects each digit once and records the speech sample for sample.
#[tokio::test]
async fn sipp_pcap_audio_and_dtmf_are_recorded_and_detected() {
    if !sipp_available("sipp_pcap_audio_and_dtmf_are_recorded_and_detected") {
        return;
    }
    use hotline::callflow::{DtmfVia, Event as CallEvent};
    let (hotline, _dir) = start_trusted("", "").await;
    let mut events = hotline.subscribe();
    let xml = scenario("pcap-call.xml");
    let media_port = (free_port() & !1).to_string();
    let run = run_sipp(
        &["-sf", xml.to_str().unwrap(), "-m", "1", "-mp", &media_port],
        hotline.sip_addr,
    )
    .await;
    run.assert_all_successful(1);

    let mut digits = Vec::new();
    let mut recording = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while recording.is_none() {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(CallEvent::Dtmf { digit, via, .. })) => digits.push((digit, via)),
            Ok(Ok(CallEvent::RecordingSaved { recording: r, .. })) => recording = r,
            Ok(Ok(_)) => {}
            other => panic!("no recording: {other:?}"),
        }
    }
    assert_eq!(digits, vec![('1', DtmfVia::Rtp), ('#', DtmfVia::Rtp)]);
    let recording = recording.unwrap();
    assert!(
        recording.duration >= Duration::from_secs(8),
        "{recording:?}"
    );
    let mut reader = hound::WavReader::open(&recording.path).unwrap();
    let left: Vec<i16> = reader
        .samples::<i16>()
        .step_by(2)
        .map(Result::unwrap)
        .collect();
    // Two seconds of the capture's speech (packets 100–166), decoded by the textbook A-law.
    let speech: Vec<i16> = pcap_rtp_payloads("/usr/share/sip-tester/g711a.pcap")[100..166]
        .iter()
        .flatten()
        .map(|&b| support::rtp::alaw_decode(b))
        .collect();
    assert!(
        speech.iter().any(|&s| s.abs() > 1000),
        "the capture has speech there"
    );
    assert!(
        support::rtp::find(&left, &speech).is_some(),
        "the capture's speech is not in the caller's channel"
    );
    hotline.shutdown().await;
}
