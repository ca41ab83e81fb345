//! The `hotline` binary: `check-config` exit codes and messages, and `serve` on the shipped
//! sample configuration with command-line overrides.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_hotline");
const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/hotline.toml");

fn check_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sample_config_checks_ok() {
    let out = Command::new(BIN)
        .args(["check-config", "--config", SAMPLE])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OK"), "{stdout}");
    assert!(stdout.contains("3 operator(s)"), "{stdout}");
    // Which greeting callers get now, and until when.
    assert!(
        stdout.contains("hotline open now (") || stdout.contains("hotline closed now ("),
        "{stdout}"
    );
    // The sample configures no SMTP: the notices that go nowhere are named.
    assert!(
        stdout.contains("warning: notices not delivered: new voicemail"),
        "{stdout}"
    );
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let sample = std::fs::read_to_string(SAMPLE).unwrap();
    let cases = [
        (
            sample.replace("listen = \"0.0.0.0:5060\"", "listen = \"0.0.0.0:70000\""),
            "listen",
        ),
        (
            sample.replace(
                "hotline_numbers = [\"8800\", \"88002000000\", \"hotline\"]",
                "hotline_numbers = []",
            ),
            "sip.hotline_numbers",
        ),
        (
            sample.replace("max_calls = 4000", "max_calls = 0"),
            "limits.max_calls",
        ),
        (
            sample.replace("extension = \"1002\"", "extension = \"1001\""),
            "operators[1].extension",
        ),
        (
            sample.replace("[limits]", "[limits]\nmax_cals = 3"),
            "max_cals",
        ),
        ("this is not toml = = =".to_string(), "bad.toml"),
    ];
    for (text, key) in cases {
        let (code, stderr) = check_config(&text);
        assert_eq!(code, 2, "{key}: {stderr}");
        assert!(stderr.contains(key), "{key} not named in: {stderr}");
    }
    let out = Command::new(BIN)
        .args(["check-config", "--config", "/nonexistent/hotline.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/hotline.toml"));
}

#[tokio::test]
async fn serve_runs_the_sample_config_with_overrides() {
    let data = tempfile::tempdir().unwrap();
    let sip_port = free_port();
    let http_port = free_port();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--config", SAMPLE])
        .args(["--sip-listen", &format!("127.0.0.1:{sip_port}")])
        .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http: std::net::SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(http).await.is_ok() {
            let (status, body) = http_get(http, "/healthz").await;
            assert_eq!(status, 200, "{body}");
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "no /healthz within 5 s");
    let peer = UdpPeer::new(format!("127.0.0.1:{sip_port}").parse().unwrap()).await;
    let mut r = Req::new("OPTIONS", peer.addr(), "cli@test");
    r.uri = "sip:8800@127.0.0.1";
    peer.send(&r.build()).await;
    let resp = peer.expect("SIP/2.0 200").await;
    assert!(header(&resp, "Server").unwrap().starts_with("Hotline/"));
    // SIGTERM stops it cleanly.
    let pid = child.id().unwrap();
    Command::new("kill").arg(pid.to_string()).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

/// A prompt file that is not 8 kHz mono 16-bit PCM, or not a WAV at all, stops `serve` at
/// start-up and fails `check-config`, with a message naming the file.
#[test]
fn bad_prompt_file_is_a_start_up_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts");
    std::fs::create_dir(&prompts).unwrap();
    for entry in std::fs::read_dir(PROMPTS).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, prompts.join(path.file_name().unwrap())).unwrap();
    }
    let config = dir.path().join("hotline.toml");
    let sample = std::fs::read_to_string(SAMPLE).unwrap();
    let text = sample.replace(
        "prompts_dir = \"ivr-prompts\"",
        &format!("prompts_dir = \"{}\"", prompts.display()),
    );
    assert_ne!(text, sample, "the sample names prompts_dir");
    std::fs::write(&config, text).unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .args([
                "--sip-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let check = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap()
    };
    assert!(check(&["check-config"]).status.success());

    // A 44.1 kHz stereo file in place of the greeting.
    let greeting = prompts.join("greeting_working.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&greeting, spec).unwrap();
    for _ in 0..4410 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    let out = run(&["serve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("greeting_working.wav"), "{stderr}");
    assert!(stderr.contains("8000 Hz mono 16-bit"), "{stderr}");
    let out = check(&["check-config"]);
    assert_eq!(out.status.code(), Some(2));

    // A truncated / corrupt file.
    std::fs::write(&greeting, b"RIFF\x10\x00\x00\x00WAVEjunk").unwrap();
    let out = run(&["serve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("greeting_working.wav"), "{stderr}");

    // A missing file.
    std::fs::remove_file(&greeting).unwrap();
    let out = check(&["check-config"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("greeting_working.wav"), "{stderr}");
}

/// `hotline transcribe` runs the real whisper.cpp on a WAV: here with a model the test
/// writes (whisper's format, decodes a known phrase), on an 8 kHz recording.
#[test]
fn transcribe_prints_the_transcript_and_the_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("ggml-test.bin");
    hotline::transcribe::test_model::write_test_model(&model, "Банкомат выдал неправильную сумму")
        .unwrap();
    let wav = dir.path().join("vm.wav");
    support::rtp::write_wav_8k(&wav, &support::rtp::sine_8k(300.0, 4.0, 8000.0));
    let out = Command::new(BIN)
        .args([
            "transcribe",
            "--config",
            SAMPLE,
            "--threads",
            "1",
            "--model",
        ])
        .arg(&model)
        .arg(&wav)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Банкомат выдал неправильную сумму"
    );
    assert!(stderr.contains("4.0 s of audio"), "{stderr}");
    assert!(
        stderr.contains("suggestion: atm_fault / fault_wrong_amount"),
        "{stderr}"
    );
}

#[test]
fn transcribe_without_a_usable_model_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("ggml-base.bin");
    let out = Command::new(BIN)
        .args(["transcribe", "--config", SAMPLE, "--model"])
        .arg(&missing)
        .arg(dir.path().join("vm.wav"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ggml-base.bin"), "{stderr}");
    let bad_wav = dir.path().join("bad.wav");
    std::fs::write(&bad_wav, b"not a wav").unwrap();
    let model = dir.path().join("m.bin");
    hotline::transcribe::test_model::write_test_model(&model, "да").unwrap();
    let out = Command::new(BIN)
        .args(["transcribe", "--config", SAMPLE, "--model"])
        .arg(&model)
        .arg(&bad_wav)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.wav"));
}

/// Runs `hotline user ARGS` on a config, with `stdin` piped in.
fn user_cmd(config: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("user")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn user_commands_create_list_change_and_disable_console_users() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hotline.toml");
    std::fs::write(&cfg, config_text(dir.path(), "", "", "00:00-24:00")).unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // The password comes from standard input (not a terminal here); an operator needs a
    // configured extension, and gets no second factor.
    let out = user_cmd(
        &cfg,
        &[
            "create",
            "--login",
            "ivanova",
            "--name",
            "Иванова Анна",
            "--role",
            "operator",
            "--operator",
            OPERATOR,
        ],
        "длинный-пароль-1\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        out.stdout.is_empty(),
        "no URI for an operator: {}",
        text(&out)
    );
    // A supervisor gets the otpauth:// URI on standard output.
    let out = user_cmd(
        &cfg,
        &[
            "create",
            "--login",
            "head",
            "--name",
            "Петров",
            "--role",
            "supervisor",
        ],
        "длинный-пароль-2\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    let uri = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Hotline:head?secret="),
        "{uri}"
    );

    // Bad input is refused, naming the field.
    for (args, stdin, field) in [
        (
            vec!["create", "--login", "x y", "--name", "N", "--role", "admin"],
            "длинный-пароль-3\n",
            "`login`",
        ),
        (
            vec![
                "create", "--login", "shorty", "--name", "N", "--role", "admin",
            ],
            "short\n",
            "`password`",
        ),
        (
            vec![
                "create",
                "--login",
                "op2",
                "--name",
                "N",
                "--role",
                "operator",
                "--operator",
                "9999",
            ],
            "длинный-пароль-3\n",
            "`operator`",
        ),
        (
            vec![
                "create", "--login", "ivanova", "--name", "N", "--role", "admin",
            ],
            "длинный-пароль-3\n",
            "taken",
        ),
    ] {
        let out = user_cmd(&cfg, &args, stdin);
        assert!(!out.status.success(), "{args:?}");
        assert!(text(&out).contains(field), "{args:?}: {}", text(&out));
    }

    let out = user_cmd(&cfg, &["list"], "");
    let list = String::from_utf8(out.stdout).unwrap();
    assert_eq!(list.lines().count(), 2, "{list}");
    assert!(
        list.contains("ivanova\toperator\tИванова Анна\t1001\t-\tactive"),
        "{list}"
    );

    assert!(user_cmd(&cfg, &["passwd", "ivanova"], "новый-пароль-42\n")
        .status
        .success());
    let out = user_cmd(&cfg, &["totp", "head"], "");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("otpauth://"),
        "{}",
        text(&out)
    );
    assert!(user_cmd(&cfg, &["disable", "ivanova"], "").status.success());
    let list = String::from_utf8(user_cmd(&cfg, &["list"], "").stdout).unwrap();
    assert!(
        list.contains("ivanova\toperator\tИванова Анна\t1001\t-\tdisabled"),
        "{list}"
    );

    // What the CLI did is in the audit log, as the console's users would see it.
    let db = dir.path().join("hotline.db");
    let store = hotline::store::Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE entity = 'user' ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        actions,
        ["create", "create", "password", "totp_reset", "disable"]
    );
}

/// `hotline cert self-signed` writes a CA, a chain and a private key that the hotline loads,
/// for the names asked; the key is readable by its owner only.
#[test]
fn cert_self_signed_writes_a_pair_the_hotline_loads() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["cert", "self-signed", "--out"])
        .arg(dir.path())
        .args([
            "--name",
            "hotline.bank.test",
            "--name",
            "10.0.0.5",
            "--days",
            "10",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hotline.bank.test, 10.0.0.5"), "{stdout}");
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        assert!(dir.path().join(f).is_file(), "{f}");
    }
    let mode = std::fs::metadata(dir.path().join("key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let files = hotline::tls::TlsFiles {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    };
    files.server_config(&[]).expect("the pair loads");
    // The leaf names what was asked and the CA signed it: a client trusting ca.pem accepts it.
    let pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
    let text = String::from_utf8_lossy(&pem);
    assert_eq!(text.matches("BEGIN CERTIFICATE").count(), 2, "leaf and CA");
    let out = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.path().join("ca.pem"))
        .arg(dir.path().join("cert.pem"))
        .output();
    if let Ok(out) = out {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
