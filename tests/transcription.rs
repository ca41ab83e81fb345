//! Voicemail transcription and notifications end to end (issue 6, SPEC §2.6–2.7, §3.2): a
//! message left in a real call is transcribed by whisper.cpp (through whisper-rs, on a tiny
//! model the test writes in whisper.cpp's format, which decodes a known phrase), classified,
//! put on its callback form and the journal, and announced by e-mail to an SMTP server the
//! test runs and by a signed webhook. The delivery tests take the SMTP server away, restart
//! the hotline in the middle and count what arrives.

mod support;

use hotline::app::Hotline;
use hotline::notify::webhook;
use hotline::records::role::Role;
use hotline::records::voicemail::NewVoicemail;
use hotline::transcribe::worker::JobEvent;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::api::{drop_schema, fresh_database, Db};
use support::notify::{Mail, SmtpServer, WebhookServer};
use support::phone::Caller;
use support::rtp;
use support::*;

/// What the test model hears in any audio.
const PHRASE: &str = "Банкомат выдал неправильную сумму денег";
const HEAD: &str = "head.callcentre@bank.test";
const SECRET: &str = "hook-secret";

/// The tables of a hotline that transcribes with the test model and notifies `smtp` and
/// `hook`.
fn tables(model: &Path, smtp_port: u16, hook: &str, extra: &str) -> String {
    format!(
        r#"[limits]
{TRUSTED_LOOPBACK}

[voicemail]
silence_s = 1
min_speech_ms = 300

[transcription]
model = "{}"
threads = 1

[notify]
public_url = "https://hotline.bank.test"
head_email = "{HEAD}"
from = "hotline@bank.test"
retry_base_s = 1
retry_max_s = 2
# Retries every 2 s: on a loaded machine a test can outlast the default 50 attempts, and a
# notice marked failed (kept, but no longer tried) would look lost.
max_attempts = 1000
poll_ms = 100

[notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
timeout_s = 2

[[notify.webhooks]]
url = "{hook}"
secret = "{SECRET}"

{extra}
"#,
        model.display()
    )
}

fn test_model(dir: &Path) -> PathBuf {
    let path = dir.join("ggml-test.bin");
    hotline::transcribe::test_model::write_test_model(&path, PHRASE).expect("test model");
    path
}

async fn get(hotline: &Hotline, token: &str, path: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!("http://{}{path}", hotline.http_addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

async fn supervisor(hotline: &Hotline) -> String {
    hotline
        .records
        .create_token("sup", Role::Supervisor, None)
        .await
        .unwrap()
        .1
}

/// Waits for the job of voicemail `id` to be done.
async fn transcribed(events: &mut tokio::sync::broadcast::Receiver<JobEvent>, id: i64) -> JobEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("transcribed in time")
            .expect("events");
        match &e {
            JobEvent::Done { voicemail_id, .. } if *voicemail_id == id => return e,
            JobEvent::Failed {
                voicemail_id,
                error,
                ..
            } if *voicemail_id == id => {
                panic!("transcription failed: {error}")
            }
            _ => {}
        }
    }
}

fn mail_for(mails: &[Mail], subject_start: &str) -> Mail {
    mails
        .iter()
        .find(|m| {
            m.header("Subject")
                .unwrap_or_default()
                .starts_with(subject_start)
        })
        .unwrap_or_else(|| panic!("no mail \"{subject_start}…\" in {mails:#?}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voicemail_from_a_call_is_transcribed_classified_and_announced() {
    let models = tempfile::tempdir().unwrap();
    let model = test_model(models.path());
    let mut smtp = SmtpServer::start().await;
    let mut hook = WebhookServer::start(0).await;
    let (config, _dir) = config_hours(
        "",
        &tables(&model, smtp.addr.port(), &hook.url, ""),
        closed_hours(),
    );
    let hotline = Hotline::start(config).await.expect("hotline starts");
    let mut jobs = hotline.subscribe_transcriptions();
    let token = supervisor(&hotline).await;
    // The worker loads the model in the background, right after start.
    let loading = tokio::time::Instant::now() + Duration::from_secs(20);
    while !hotline.transcription_status().ready {
        let status = hotline.transcription_status();
        assert!(status.warning.is_none(), "{status:?}");
        assert!(
            tokio::time::Instant::now() < loading,
            "the test model never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // After hours: greeting, beep, a message ended with '#'.
    let mut caller = Caller::dial(hotline.sip_addr, "8800", "+79781112233").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while !hotline
        .live_calls()
        .await
        .iter()
        .any(|c| c.call_id == caller.call_id() && c.stage == "voicemail")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached voicemail"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    caller.talk(&rtp::ulaw_tone(700.0, 1.5)).await;
    caller.press('#').await;
    assert!(caller.expect_bye(Duration::from_secs(20)).await.is_some());

    // The head of the call centre is told at once, with the link to the recording.
    let first = smtp
        .next(Duration::from_secs(30))
        .await
        .expect("first e-mail");
    assert_eq!(first.to, vec![HEAD.to_string()]);
    let subject = first.header("Subject").unwrap();
    assert!(
        subject.starts_with("Новое голосовое сообщение от +79781112233"),
        "{subject}"
    );
    let list = get(&hotline, &token, "/api/v1/voicemail").await;
    let vm_id = list["voicemail"][0]["id"].as_i64().expect("a voicemail");
    let link = format!("https://hotline.bank.test/api/v1/voicemail/{vm_id}/audio");
    assert!(first.text().contains(&link), "{}", first.text());
    assert!(first
        .text()
        .contains("4. Номер телефона заявителя: +79781112233"));

    // whisper ran on the message: the job is done, the transcript stored everywhere.
    let JobEvent::Done { suggestion, .. } = transcribed(&mut jobs, vm_id).await else {
        unreachable!()
    };
    assert_eq!(suggestion.kind.as_str(), "atm_fault");
    let vm = get(&hotline, &token, &format!("/api/v1/voicemail/{vm_id}")).await;
    assert_eq!(vm["transcript"], PHRASE, "{vm}");
    assert_eq!(vm["transcription_status"], "done");
    assert_eq!(vm["suggestion"]["kind"], "atm_fault");
    assert_eq!(vm["suggestion"]["category"], "fault_wrong_amount");
    let form = get(
        &hotline,
        &token,
        &format!("/api/v1/callbacks/{}", vm["callback_id"].as_i64().unwrap()),
    )
    .await;
    assert_eq!(form["question"], PHRASE, "field 6: {form}");
    assert_eq!(form["operator"], "voicemail", "field 8: {form}");
    assert_eq!(form["phone"], "+79781112233");
    let entry = get(
        &hotline,
        &token,
        &format!("/api/v1/journal/{}", vm["journal_id"]),
    )
    .await;
    assert_eq!(entry["content"], PHRASE, "journal column 7: {entry}");

    // Then the transcript, by e-mail and by both webhooks, each signed.
    let second = smtp
        .next(Duration::from_secs(30))
        .await
        .expect("second e-mail");
    assert!(second
        .header("Subject")
        .unwrap()
        .starts_with("Расшифровка голосового сообщения"));
    let text = second.text();
    assert!(
        text.contains(&format!("6. Суть вопроса: {PHRASE}")),
        "{text}"
    );
    assert!(
        text.contains("Подсказка классификатора: неисправность банкомата"),
        "{text}"
    );
    assert!(text.contains(&link));
    let mut events = Vec::new();
    for _ in 0..2 {
        let h = hook.next(Duration::from_secs(30)).await.expect("webhook");
        let sig = h.signature.clone().expect("signed");
        assert!(
            webhook::verify(SECRET, &sig, &h.body, chrono::Utc::now().timestamp(), 300),
            "bad signature {sig} on {}",
            h.body
        );
        assert!(!webhook::verify(
            "wrong",
            &sig,
            &h.body,
            chrono::Utc::now().timestamp(),
            300
        ));
        let body: Value = serde_json::from_str(&h.body).unwrap();
        assert_eq!(body["event"], h.event.clone().unwrap());
        assert_eq!(body["data"]["voicemail_id"], vm_id);
        assert_eq!(body["data"]["audio_url"], link);
        events.push(body);
    }
    events.sort_by_key(|b| b["delivery"].as_i64());
    assert_eq!(events[0]["event"], "voicemail_new");
    assert_eq!(events[1]["event"], "voicemail_transcript");
    assert_eq!(events[1]["data"]["transcript"], PHRASE);
    assert_eq!(
        events[1]["data"]["suggestion"]["category"],
        "fault_wrong_amount"
    );

    // /healthz reports the model and the jobs; the outbox empties (the last delivery may
    // still be on its way when the webhook has answered).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let health = loop {
        let (status, health) = http_get(hotline.http_addr, "/healthz").await;
        assert_eq!(status, 200);
        let health: Value = serde_json::from_str(&health).unwrap();
        if health["notifications"]["backlog"] == 0 || tokio::time::Instant::now() > deadline {
            break health;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["transcription"]["ready"], true, "{health}");
    assert_eq!(health["transcription"]["jobs"]["done"], 1, "{health}");
    assert_eq!(health["notifications"]["backlog"], 0, "{health}");
    // Nothing else was sent.
    assert!(smtp.next(Duration::from_millis(500)).await.is_none());
    hotline.shutdown().await;
}

/// A voicemail recorded straight through the records (the WAV written as the call flow
/// does), for the delivery tests.
async fn leave_voicemail(hotline: &Hotline, data_dir: &Path, phone: &str) -> i64 {
    let call = hotline
        .records
        .record_call(&hotline::records::journal::NewCall {
            call_id: Some(format!("vm-{phone}")),
            arrived_at: chrono::Utc::now(),
            phone: phone.to_string(),
            caller_name: None,
        })
        .await
        .unwrap();
    let file = format!("voicemail/{phone}.wav");
    rtp::write_wav_8k(&data_dir.join(&file), &rtp::sine_8k(500.0, 2.0, 8000.0));
    hotline
        .records
        .add_voicemail(&NewVoicemail {
            journal_id: call,
            arrived_at: chrono::Utc::now(),
            file,
            duration: Duration::from_secs(2),
            empty: false,
            after_hours: true,
        })
        .await
        .unwrap()
}

async fn outbox(hotline: &Hotline, vm: i64) -> Vec<hotline::store::outbox::Queued> {
    hotline::store::outbox::for_entity(&hotline.records.store, "voicemail", vm)
        .await
        .unwrap()
}

/// SMTP down while a voicemail arrives: the e-mails wait and are retried; the hotline
/// restarts in the middle (one transcription cut off as a crash would leave it); when the
/// server is back every notice arrives exactly once. On both databases.
async fn smtp_outage_and_restart_lose_and_repeat_nothing(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let model = test_model(dir.path());
    // The SMTP server's port, reserved and closed: connections are refused.
    let port = free_port();
    let mut hook = WebhookServer::start(2).await;
    let (database, schema) = fresh_database(db).await;
    let hook_url = hook.url.clone();
    let make_config = |data: &Path| {
        let (mut config, tmp) = config("", &tables(&model, port, &hook_url, ""));
        config.storage.data_dir = data.to_path_buf();
        config.storage.database_url = database.clone();
        (config, tmp)
    };
    let data = dir.path().join("data");
    let (config, _t1) = make_config(&data);
    let hotline = Hotline::start(config).await.expect("hotline starts");
    let mut jobs = hotline.subscribe_transcriptions();
    let first = leave_voicemail(&hotline, &data, "+79780000001").await;
    transcribed(&mut jobs, first).await;
    // The e-mails are tried, refused, and wait for their next attempt.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = outbox(&hotline, first).await;
        let mails: Vec<_> = rows.iter().filter(|r| r.channel == "email").collect();
        if mails.len() == 2
            && mails
                .iter()
                .all(|r| r.attempts >= 1 && r.last_error.is_some())
        {
            assert!(mails
                .iter()
                .all(|r| r.status == "pending" || r.status == "sending"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not retried: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The webhook refused twice (503) and then took both notices.
    for _ in 0..2 {
        assert!(hook.next(Duration::from_secs(20)).await.is_some());
    }
    // A second message whose transcription is "in progress" when the process dies: its
    // job row is left running, as a crash would leave it.
    let second = leave_voicemail(&hotline, &data, "+79780000002").await;
    transcribed(&mut jobs, second).await;
    sqlx::query("UPDATE transcription_jobs SET status = 'running' WHERE voicemail_id = $1")
        .bind(second)
        .execute(hotline.records.store.pool())
        .await
        .unwrap();
    hotline.shutdown().await;

    // The relay comes back; the hotline starts again on the same data.
    let mut smtp = SmtpServer::start_on(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let (config, _t2) = make_config(&data);
    let hotline = Hotline::start(config).await.expect("hotline restarts");
    let mut mails = smtp
        .collect(4, Duration::from_secs(60), Duration::from_secs(3))
        .await;
    mails.sort_by_key(|m| m.header("Subject"));
    let subjects: Vec<String> = mails.iter().map(|m| m.header("Subject").unwrap()).collect();
    // Two messages, each "new" and "transcript": four e-mails, none twice (the resumed job
    // of the second finds its notices already queued).
    assert_eq!(mails.len(), 4, "{subjects:#?}");
    for phone in ["+79780000001", "+79780000002"] {
        let of: Vec<_> = subjects.iter().filter(|s| s.contains(phone)).collect();
        assert_eq!(of.len(), 2, "{phone}: {subjects:#?}");
    }
    let _ = mail_for(&mails, "Новое голосовое сообщение от +79780000001");
    let ids: std::collections::HashSet<_> = mails
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), 4, "distinct Message-IDs");
    for vm in [first, second] {
        let rows = outbox(&hotline, vm).await;
        assert_eq!(rows.len(), 4, "2 e-mails + 2 webhooks: {rows:?}");
        assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
        // The resumed job runs in SCHED_IDLE: on a loaded machine it finishes when the
        // CPU has time, so it is waited for.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            let state = hotline::store::transcription::state(&hotline.records.store, vm)
                .await
                .unwrap()
                .unwrap();
            if state.status == "done" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job of {vm}: {}",
                state.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Webhooks: the second message's two, nothing repeated.
    let mut hooks = 0;
    while hook.next(Duration::from_secs(2)).await.is_some() {
        hooks += 1;
    }
    assert_eq!(hooks, 2);
    hotline.shutdown().await;
    if let Some(s) = schema {
        drop_schema(&s).await;
    }
}

on_both_databases!(smtp_outage_and_restart_lose_and_repeat_nothing);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_model_is_a_warning_and_jobs_wait() {
    let smtp = SmtpServer::start().await;
    let hook = WebhookServer::start(0).await;
    let missing = Path::new("/nonexistent/ggml-base.bin");
    let (config, dir) = config("", &tables(missing, smtp.addr.port(), &hook.url, ""));
    let hotline = Hotline::start(config)
        .await
        .expect("starts without a model");
    // The worker tries the model in the background, right after start.
    let loading = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = hotline.transcription_status();
        if status.warning.is_some() {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < loading,
            "no warning: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.ready);
    let warning = status.warning.expect("a warning");
    assert!(warning.contains("/nonexistent/ggml-base.bin"), "{warning}");
    let (code, health) = http_get(hotline.http_addr, "/healthz").await;
    assert_eq!(code, 200, "calls still work: {health}");
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(health["transcription"]["ready"], false);
    assert!(health["transcription"]["warning"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/ggml-base.bin"));
    let vm = leave_voicemail(&hotline, dir.path(), "+79780000003").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = hotline::store::transcription::state(&hotline.records.store, vm)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.status, "pending", "the job waits for a model");
    assert_eq!(state.attempts, 0);
    hotline.shutdown().await;
}
