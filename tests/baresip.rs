//! A real softphone as the operator (issue 5): `baresip` (Debian package `baresip`, 1.0.0)
//! registers with the hotline started in-process and auto-answers; SIPp (`sipp`, Debian
//! package `sip-tester`) calls the hotline number. The hotline greets the caller, queues
//! the call, rings the operator's registered contact, baresip answers and sends its
//! `ausine` tone, and SIPp hangs up after its pause. The journal entry and the call's
//! recording are read back.
//!
//! Both programs are required: without them the test fails and says how to install them.
//!
//! What baresip 1.0.0 (libre 1.1.0) needs here:
//! - `auth_algorithms = ["MD5"]`: libre applies its digest handler to *every*
//!   WWW-Authenticate header of a 401 and gives up with ENOSYS ("Register: Function not
//!   implemented") on the first one whose `algorithm` is not MD5, so the hotline's SHA-256
//!   challenge must not be offered at all, not even second.
//! - No `uuid` module: with it baresip adds `;+sip.instance="<urn:uuid:…>"` to its Contact,
//!   whose quoted `<…>` the hotline's Contact parsing does not handle yet (it takes the last
//!   `>` as the end of the URI).
//! - `net_interface 127.0.0.1` and `sip_listen 127.0.0.1:PORT`: otherwise it binds eth0 and
//!   puts that address in its Contact and SDP (`net_interface lo` fails: libre finds no
//!   address on the loopback interface).
//! - Headless audio: `ausine` as the source (it supports only 48 kHz stereo, so
//!   `ausrc_srate 48000` / `ausrc_channels 2`; baresip resamples to PCMU), `aubridge` as the
//!   player and alert device (no sound card needed).
//! - Auto-answer: the account's `answermode=auto`, carried out by the `menu` module.

mod support;

use hotline::records::role::Role;
use serde_json::Value;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;
use tokio::process::{Child, Command};

const BARESIP: &str = "baresip";
const SIPP: &str = "sipp";
/// The tone baresip's `ausine` sends, Hz.
const TONE_HZ: f64 = 1000.0;
/// SIPp's pause after the call is answered (the hotline answers at once and greets), ms.
const SIPP_PAUSE_MS: u64 = 20_000;

/// Panics with the install command unless `program` can be started.
fn require(program: &str, package: &str) {
    let probe = std::process::Command::new(program)
        .arg("-h")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = probe {
        panic!(
            "cannot run `{program}` ({e}): this test needs it on PATH \
             (Debian/Ubuntu: `apt-get install -y {package}`; .ci/run installs it)"
        );
    }
}

/// A loopback port free for UDP and TCP whose successor is free for TCP too (baresip
/// listens on `PORT` over UDP and TCP, and on `PORT + 1` for TLS).
fn free_port_pair() -> u16 {
    loop {
        let port = free_port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// Writes baresip's configuration directory for operator `ext` registering at `registrar`,
/// over TLS trusting the CA in `tls_ca` when given, with `mediaenc` (`srtp`: best effort;
/// `srtp-mand`: `RTP/SAVP` only) when given: the `srtp` module is loaded before the account,
/// which names it.
fn baresip_config(
    dir: &Path,
    sip_port: u16,
    registrar: std::net::SocketAddr,
    ext: &str,
    password: &str,
    tls_ca: Option<&Path>,
    mediaenc: Option<&str>,
) {
    let srtp_module = if mediaenc.is_some() {
        "module\t\t\tsrtp.so\n"
    } else {
        ""
    };
    let cafile = tls_ca.map_or(String::new(), |ca| {
        format!("sip_cafile\t\t{}\n", ca.display())
    });
    // RTP ports above the hotline's default range (20000–39999).
    let config = format!(
        "poll_method\t\tepoll\n\
         sip_listen\t\t127.0.0.1:{sip_port}\n\
         net_interface\t\t127.0.0.1\n\
         rtp_ports\t\t40000-49998\n\
         {cafile}\
         module_path\t\t/usr/lib/baresip/modules\n\
         module\t\t\tg711.so\n\
         module\t\t\tausine.so\n\
         module\t\t\taubridge.so\n\
         {srtp_module}\
         module\t\t\taccount.so\n\
         module\t\t\tmenu.so\n\
         audio_player\t\taubridge,nowhere\n\
         audio_alert\t\taubridge,nowhere\n\
         audio_source\t\tausine,{TONE_HZ}\n\
         ausrc_srate\t\t48000\n\
         ausrc_channels\t\t2\n"
    );
    std::fs::write(dir.join("config"), config).expect("baresip config");
    let transport = if tls_ca.is_some() { "tls" } else { "udp" };
    let mediaenc = mediaenc.map_or(String::new(), |m| format!(";mediaenc={m}"));
    let account = format!(
        "<sip:{ext}@{registrar};transport={transport}>;auth_pass={password};answermode=auto;regint=600{mediaenc}\n"
    );
    std::fs::write(dir.join("accounts"), account).expect("baresip accounts");
}

/// `baresip -v -f DIR`, output to `DIR/baresip.log`; killed when dropped.
fn spawn_baresip(dir: &Path) -> Child {
    let log = std::fs::File::create(dir.join("baresip.log")).expect("baresip log");
    Command::new(BARESIP)
        .arg("-v")
        .arg("-f")
        .arg(dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BARESIP}: {e}"))
}

/// The end of baresip's log, without its once-a-tick status lines.
fn baresip_log(dir: &Path) -> String {
    let text = std::fs::read(dir.join("baresip.log")).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .filter(|l| !l.trim().is_empty() && !l.contains("audio="))
        .collect();
    let from = lines.len().saturating_sub(80);
    format!("--- baresip log (tail) ---\n{}", lines[from..].join("\n"))
}

/// Goertzel power of `hz` in 8 kHz `pcm`, normalised by length.
fn power(pcm: &[i16], hz: f64) -> f64 {
    let k = 2.0 * (2.0 * std::f64::consts::PI * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s = f64::from(x) + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / (pcm.len().max(1) as f64).powi(2)
}

fn rms(pcm: &[i16]) -> f64 {
    let sum: f64 = pcm.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / pcm.len().max(1) as f64).sqrt()
}

/// Starts baresip as operator [`OPERATOR`] registering at `registrar` (over TLS trusting
/// `ca` when given, with `mediaenc` when given) and signs the operator in once it has
/// registered. The phone (killed when dropped) and its directory.
async fn start_operator(
    hotline: &hotline::app::Hotline,
    registrar: std::net::SocketAddr,
    ca: Option<&Path>,
    mediaenc: Option<&str>,
) -> (Child, tempfile::TempDir) {
    let (_, token) = hotline
        .records
        .create_token("op", Role::Operator, Some(OPERATOR))
        .await
        .unwrap();
    let sign_in = format!(
        "http://{}/api/v1/operators/{OPERATOR}/sign-in",
        hotline.http_addr
    );
    let phone_dir = tempfile::tempdir().expect("baresip dir");
    let sip_port = free_port_pair();
    baresip_config(
        phone_dir.path(),
        sip_port,
        registrar,
        OPERATOR,
        PASSWORD,
        ca,
        mediaenc,
    );
    let mut phone = spawn_baresip(phone_dir.path());
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = phone.try_wait() {
            panic!(
                "baresip exited before registering ({status})\n{}",
                baresip_log(phone_dir.path())
            );
        }
        let r = http
            .post(&sign_in)
            .bearer_auth(&token)
            .send()
            .await
            .expect("sign-in request");
        match r.status().as_u16() {
            204 => return (phone, phone_dir),
            409 => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!(
                "sign-in: {other} {}\n{}",
                r.text().await.unwrap_or_default(),
                baresip_log(phone_dir.path())
            ),
        }
    }
    panic!(
        "the operator could not sign in within 15 s: baresip did not register\n{}",
        baresip_log(phone_dir.path())
    );
}

/// How baresip reaches the hotline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Link {
    Udp,
    /// SIP over TLS, plain RTP.
    Tls,
    /// SIP over TLS, and SRTP by SDES (baresip's `srtp` module, `mediaenc=srtp`), which the
    /// hotline offers an operator on TLS as `RTP/AVP` with `a=crypto`.
    Srtp,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_operator_answers_a_sipp_caller_through_the_hotline() {
    operator_answers_a_sipp_caller(Link::Udp).await;
}

/// The same over TLS (issue 20): the hotline requires TLS of operators, baresip registers
/// on the TLS port trusting the lab's CA, and is rung over its own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_operator_over_tls_answers_a_sipp_caller() {
    operator_answers_a_sipp_caller(Link::Tls).await;
}

/// And with SRTP to the operator (issue 20): libre's SRTP, not ours, at the other end.
/// The caller (SIPp) is plain RTP; the tone the caller hears in the recording is what the
/// hotline decrypted from baresip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_operator_with_srtp_answers_a_sipp_caller() {
    operator_answers_a_sipp_caller(Link::Srtp).await;
}

async fn operator_answers_a_sipp_caller(link: Link) {
    let tls = link != Link::Udp;
    require(BARESIP, "baresip");
    require(SIPP, "sip-tester");
    let t0 = Instant::now();
    let certs_dir = tempfile::tempdir().expect("certs dir");
    let certs = hotline::tls::self_signed(certs_dir.path(), &["127.0.0.1".into()], 30).unwrap();
    let tls_table = if tls {
        format!(
            "[sip.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n\
             require_for_operators = true\n",
            certs.cert.display(),
            certs.key.display()
        )
    } else {
        String::new()
    };

    // baresip 1.0.0 answers only MD5 challenges, and fails on any other one offered.
    let (config, dir) = config(
        r#"auth_algorithms = ["MD5"]"#,
        &format!("[limits]\n{TRUSTED_LOOPBACK}\n{tls_table}"),
    );
    let hotline = hotline::app::Hotline::start(config)
        .await
        .expect("hotline starts");
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/v1", hotline.http_addr);
    let records = &hotline.records;
    let (_, supervisor) = records
        .create_token("sup", Role::Supervisor, None)
        .await
        .unwrap();

    // The softphone registers; the operator can sign in once it has.
    let (registrar, ca) = match tls {
        true => (
            hotline.sip_tls_addr.expect("TLS listens"),
            Some(certs.ca.as_path()),
        ),
        false => (hotline.sip_addr, None),
    };
    let mediaenc = (link == Link::Srtp).then_some("srtp");
    let (mut phone, phone_dir) = start_operator(&hotline, registrar, ca, mediaenc).await;
    eprintln!("baresip registered and signed in after {:?}", t0.elapsed());
    if tls {
        // baresip's own account of it: `1001@127.0.0.1: {0/TLS/v4} 200 OK`.
        let log = baresip_log(phone_dir.path());
        assert!(
            log.contains("/TLS/v4} 200 OK"),
            "registered over TLS\n{log}"
        );
    }

    // Whether the operator's leg was agreed as SRTP (what the hotline's SIP core reports).
    let mut sip = sip_events(&hotline);
    let leg_srtp = tokio::spawn(async move {
        loop {
            match sip.recv().await {
                Ok(hotline::sip::ua::Event::OperatorAnswered { media, .. }) => {
                    return Some(media.srtp.is_some())
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return None,
            }
        }
    });

    // SIPp calls the hotline number and hangs up SIPP_PAUSE_MS after the hotline answers.
    let sipp_dir = tempfile::tempdir().expect("sipp dir");
    let media_port = (free_port() & !1).to_string();
    let pause = SIPP_PAUSE_MS.to_string();
    let call_started = Instant::now();
    let sipp = Command::new(SIPP)
        .args([
            "-sn", "uac", "-s", "8800", "-m", "1", "-l", "1", "-d", &pause,
        ])
        .args(["-i", "127.0.0.1", "-mp", &media_port, "-nostdin"])
        .args([
            "-trace_err",
            "-trace_msg",
            "-timeout",
            "60s",
            "-timeout_error",
        ])
        .arg(hotline.sip_addr.to_string())
        .current_dir(sipp_dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {SIPP}: {e}"));
    let out = tokio::time::timeout(Duration::from_secs(90), sipp.wait_with_output())
        .await
        .expect("sipp still running after 90 s; killed")
        .expect("waiting for sipp");
    let call_took = call_started.elapsed();
    let sipp_logs = |suffix: &str| -> String {
        let mut s = String::new();
        for e in std::fs::read_dir(sipp_dir.path()).unwrap().flatten() {
            if e.file_name().to_string_lossy().ends_with(suffix) {
                s.push_str(&String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()));
            }
        }
        s
    };
    let messages = sipp_logs("_messages.log");
    let report = || {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut from = stdout.len().saturating_sub(2500);
        while !stdout.is_char_boundary(from) {
            from += 1;
        }
        let tail = &stdout[from..];
        format!(
            "sipp: {}\n--- sipp stdout (tail) ---\n{tail}\n--- sipp stderr ---\n{}\n\
             --- sipp errors ---\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            sipp_logs("_errors.log"),
            baresip_log(phone_dir.path()),
        )
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "one successful call\n{}",
        report()
    );
    eprintln!("sipp's call took {call_took:?}");
    let call_id = messages
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("Call-ID")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Call-ID in SIPp's messages\n{}", report()));

    // The journal: answered by 1001.
    let mut entry = Value::Null;
    for _ in 0..100 {
        let r = http
            .get(format!("{base}/journal?limit=50"))
            .bearer_auth(&supervisor)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        if let Some(e) = body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| is_call(e, &call_id))
        {
            if e["disposition"] != "in_progress" && !e["ended_at"].is_null() {
                entry = e.clone();
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !entry.is_null(),
        "no final journal entry for {call_id}\n{}",
        report()
    );
    eprintln!("journal entry: {entry}");
    assert_eq!(entry["disposition"], "answered", "{entry}\n{}", report());
    assert_eq!(entry["operator"], OPERATOR, "{entry}");
    let srtp = tokio::time::timeout(Duration::from_secs(1), leg_srtp)
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
    assert_eq!(srtp, Some(link == Link::Srtp), "the operator's leg SRTP");
    assert!(!entry["answered_at"].is_null(), "{entry}");

    // The recording: stereo, and in its right channel (what the caller heard) baresip's tone
    // once the call was bridged: the last seconds, before SIPp's BYE.
    let rel = entry["recording"].as_str().expect("a recording");
    let (samples, channels) = support::rtp::read_wav(&dir.path().join(rel));
    assert_eq!(channels, 2, "{rel}");
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    let secs = right.len() as f64 / 8000.0;
    eprintln!("recording {rel}: {secs:.1} s");
    assert!(right.len() > 4 * 8000, "recording of {secs:.1} s");
    let end = right.len() - 4000;
    let window = &right[end - 16000..end];
    let (tone, off) = (power(window, TONE_HZ), power(window, 700.0));
    eprintln!(
        "heard in the last 2.5–0.5 s: rms {:.0}, power at {TONE_HZ} Hz {tone:.0}, at 700 Hz {off:.0}",
        rms(window)
    );
    assert!(
        rms(window) > 300.0,
        "the caller heard silence after the bridge"
    );
    assert!(
        tone > 100.0 * off.max(1.0),
        "the caller did not hear baresip's {TONE_HZ} Hz (power {tone:.0}, at 700 Hz {off:.0})"
    );

    // baresip saw the call established, and ended by the hotline's BYE on the caller's.
    let mut ended = false;
    for _ in 0..50 {
        let log = String::from_utf8_lossy(
            &std::fs::read(phone_dir.path().join("baresip.log")).unwrap_or_default(),
        )
        .into_owned();
        if log.contains("Call established") && log.contains("terminated (duration") {
            ended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ended,
        "baresip's call was not established and ended\n{}",
        baresip_log(phone_dir.path())
    );

    phone.start_kill().ok();
    let _ = phone.wait().await;
    hotline.shutdown().await;
    eprintln!("total {:?}", t0.elapsed());
}

/// Mandatory SRTP end to end (issue 20): `[media] srtp = "required"`, baresip with
/// `mediaenc=srtp-mand` (it takes `RTP/SAVP` only) as the operator over TLS, and the
/// project's test UA calling over TLS with SRTP. The caller hears baresip's tone (libre
/// encrypted it, the hotline decrypted it and encrypted it again for the caller), and the
/// recording holds both sides in clear: the caller's tone sample for sample, baresip's tone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_operator_with_mandatory_srtp_takes_an_srtp_call() {
    require(BARESIP, "baresip");
    let certs_dir = tempfile::tempdir().expect("certs dir");
    let certs = hotline::tls::self_signed(certs_dir.path(), &["127.0.0.1".into()], 30).unwrap();
    let tables = format!(
        "[limits]\n{TRUSTED_LOOPBACK}\n[media]\nsrtp = \"required\"\n\
         [sip.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n\
         require_for_operators = true\n",
        certs.cert.display(),
        certs.key.display()
    );
    let (config, _dir) = config(r#"auth_algorithms = ["MD5"]"#, &tables);
    let hotline = hotline::app::Hotline::start(config)
        .await
        .expect("hotline starts");
    let tls = hotline.sip_tls_addr.expect("TLS listens");
    let (mut phone, phone_dir) =
        start_operator(&hotline, tls, Some(certs.ca.as_path()), Some("srtp-mand")).await;
    let mut events = hotline.subscribe();

    let sip = support::phone::Endpoint::tls(tls, &certs.ca).await;
    let mut caller = support::phone::Caller::try_dial(sip, "8800", "+79785550200", None, true)
        .await
        .unwrap_or_else(|r| panic!("{r}\n{}", baresip_log(phone_dir.path())));
    let mut operator_leg = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while operator_leg.is_none() {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(hotline::callflow::Event::Sip(hotline::sip::ua::Event::OperatorAnswered {
                media,
                ..
            }))) => operator_leg = Some(media),
            Ok(_) => {}
            Err(_) => panic!(
                "baresip did not answer within 20 s\n{}",
                baresip_log(phone_dir.path())
            ),
        }
    }
    let keys = operator_leg
        .unwrap()
        .srtp
        .expect("the operator's leg is SRTP");
    assert!(keys.savp, "RTP/SAVP, as srtp-mand wants");

    // Give the bridge a moment, then listen: baresip's 1000 Hz, decrypted by the caller.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (heard, _) = caller.rtp.collect(Duration::from_secs(2)).await;
    let pcm: Vec<i16> = heard
        .iter()
        .flat_map(|p| p.payload.iter().map(|b| support::rtp::ulaw_decode(*b)))
        .collect();
    assert!(
        heard.len() >= 80,
        "the caller got {} packets in 2 s",
        heard.len()
    );
    assert_eq!(caller.rtp.refused(), 0, "every packet authenticated");
    let (tone, off) = (power(&pcm, TONE_HZ), power(&pcm, 700.0));
    assert!(
        rms(&pcm) > 300.0 && tone > 100.0 * off.max(1.0),
        "the caller did not hear baresip's tone (rms {:.0}, {TONE_HZ} Hz {tone:.0}, 700 Hz {off:.0})",
        rms(&pcm)
    );
    // The caller speaks: a 440 Hz second.
    let spoken = support::rtp::ulaw_tone(440.0, 1.0);
    caller.talk(&spoken).await;
    assert!(caller.hang_up().await.starts_with("SIP/2.0 200"));
    let path = loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Ok(hotline::callflow::Event::RecordingSaved { recording, .. })) => {
                break recording.expect("a recording").path
            }
            Ok(_) => {}
            Err(_) => panic!("no recording"),
        }
    };
    let (samples, channels) = support::rtp::read_wav(&path);
    assert_eq!(channels, 2);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    // A stretch of what the caller sent, in the middle of its second, exactly.
    let decoded: Vec<i16> = spoken
        .iter()
        .map(|b| support::rtp::ulaw_decode(*b))
        .collect();
    assert!(
        support::rtp::find(&left, &decoded[3200..4800]).is_some(),
        "the caller's audio is not in the recording sample for sample"
    );
    let end = right.len().saturating_sub(8000);
    let window = &right[end.saturating_sub(16000)..end];
    assert!(
        power(window, TONE_HZ) > 100.0 * power(window, 700.0).max(1.0),
        "baresip's tone is not in the recording"
    );
    phone.start_kill().ok();
    let _ = phone.wait().await;
    hotline.shutdown().await;
}
