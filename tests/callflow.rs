//! The hotline's behaviour end to end (issue 5, SPEC §2): test phones over loopback UDP as
//! the caller and the operators, real RTP both ways, the journal read back through the API.

mod support;

use hotline::app::Hotline;
use hotline::records::role::Role;
use serde_json::Value;
use std::time::Duration;
use support::phone::{Caller, Operator};
use support::rtp::{self, ulaw_tone as tone, Rtp};
use support::*;

const SECOND_OPERATOR: &str = "1002";
const SECOND_PASSWORD: &str = "secret-1002";

/// The tables every test here adds: loopback trusted, a second operator, short voicemail
/// silence so that messages end quickly.
fn tables(extra: &str) -> String {
    format!(
        "[limits]\n{TRUSTED_LOOPBACK}\n\n[voicemail]\nsilence_s = 1\nmin_speech_ms = 300\n\n\
         {extra}\n\n[[operators]]\nextension = \"{SECOND_OPERATOR}\"\nname = \"Петров Игорь\"\n\
         password = \"{SECOND_PASSWORD}\"\n"
    )
}

struct Flow {
    hotline: Hotline,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    base: String,
    supervisor: String,
}

impl Flow {
    async fn start(extra: &str) -> Flow {
        Flow::start_hours(extra, "00:00-24:00").await
    }

    async fn start_hours(extra: &str, hours: &str) -> Flow {
        let (config, dir) = config_hours("", &tables(extra), hours);
        let hotline = Hotline::start(config).await.expect("hotline starts");
        let (_, supervisor) = hotline
            .records
            .create_token("sup", Role::Supervisor, None)
            .await
            .unwrap();
        let base = format!("http://{}", hotline.http_addr);
        Flow {
            hotline,
            dir,
            http: reqwest::Client::new(),
            base,
            supervisor,
        }
    }

    async fn operator_token(&self, ext: &str) -> String {
        self.hotline
            .records
            .create_token(&format!("op {ext}"), Role::Operator, Some(ext))
            .await
            .unwrap()
            .1
    }

    async fn post(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.supervisor)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Registers `ext` and signs it in through the API with its own operator token.
    async fn operator(&self, ext: &str, password: &str) -> Operator {
        let op = Operator::register(self.hotline.sip_addr, ext, password).await;
        let token = self.operator_token(ext).await;
        // The registration reaches the queue through the call flow: retry briefly.
        for _ in 0..50 {
            let (status, body) = self
                .post(&token, &format!("/api/v1/operators/{ext}/sign-in"))
                .await;
            if status == 204 {
                return op;
            }
            assert_eq!(status, 409, "{body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{ext} could not sign in");
    }

    /// The journal entry of `call_id` once its disposition is final.
    async fn entry(&self, call_id: &str) -> Value {
        for _ in 0..200 {
            let (status, body) = self.get("/api/v1/journal?limit=50").await;
            assert_eq!(status, 200, "{body}");
            if let Some(e) = body["entries"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| is_call(e, call_id))
            {
                if e["disposition"] != "in_progress" && !e["ended_at"].is_null() {
                    return e.clone();
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no final journal entry for {call_id}");
    }

    /// Waits until the call is at `stage` in the live view.
    async fn stage(&self, call_id: &str, stage: &str, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let calls = self.hotline.live_calls().await;
            if calls
                .iter()
                .any(|c| c.call_id == call_id && c.stage == stage)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{call_id} never reached {stage}: {calls:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn wav(&self, rel: &str) -> (Vec<i16>, u16) {
        rtp::read_wav(&self.dir.path().join(rel))
    }

    async fn stop(self) {
        self.hotline.shutdown().await;
    }
}

/// Goertzel power of `hz` in `pcm`, normalised by length.
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

fn decode(packets: &[Rtp]) -> Vec<i16> {
    packets
        .iter()
        .filter(|p| p.pt == 0)
        .flat_map(|p| p.payload.iter().map(|&b| rtp::ulaw_decode(b)))
        .collect()
}

/// Channel `ch` of interleaved stereo samples.
fn channel(samples: &[i16], ch: usize) -> Vec<i16> {
    samples.iter().skip(ch).step_by(2).copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_call_audio_both_ways_recorded_and_journaled() {
    let flow = Flow::start("[queue]\nwrap_up_s = 0\n").await;
    let mut op = flow.operator(OPERATOR, PASSWORD).await;
    let mut caller = Caller::dial(flow.hotline.sip_addr, "8800", "+79781234567").await;

    // The greeting is heard (audio, not silence), then the operator's phone rings with the
    // caller's number.
    let (greeting, _) = caller.rtp.collect(Duration::from_millis(500)).await;
    let heard = decode(&greeting);
    assert!(heard.iter().map(|s| i64::from(*s).abs()).max().unwrap_or(0) > 1000);
    let invite = op
        .ringing(Duration::from_secs(20))
        .await
        .expect("the operator's phone rings");
    assert!(
        invite.starts_with(&format!("INVITE sip:{OPERATOR}@")),
        "{invite}"
    );
    let pai = header(&invite, "P-Asserted-Identity").expect("PAI");
    assert!(pai.contains("+79781234567"), "{pai}");
    assert!(header(&invite, "From").unwrap().contains("+79781234567"));
    op.answer().await;
    flow.stage(caller.call_id(), "connected", Duration::from_secs(5))
        .await;

    // Audio both ways: the caller's 1 kHz reaches the operator, the operator's 600 Hz the
    // caller.
    let to_operator = tone(1000.0, 1.0);
    let (_, (at_op, _)) = tokio::join!(
        caller.talk(&to_operator),
        op.rtp.collect(Duration::from_millis(1300))
    );
    let at_op = decode(&at_op);
    assert!(at_op.len() > 6000, "operator got {} samples", at_op.len());
    assert!(power(&at_op, 1000.0) > 50.0 * power(&at_op, 600.0));
    let to_caller = tone(600.0, 1.0);
    let (_, (at_caller, _)) = tokio::join!(
        op.talk(&to_caller),
        caller.rtp.collect(Duration::from_millis(1300))
    );
    let at_caller = decode(&at_caller);
    assert!(
        at_caller.len() > 6000,
        "caller got {} samples",
        at_caller.len()
    );
    assert!(power(&at_caller, 600.0) > 50.0 * power(&at_caller, 1000.0));

    // The caller hangs up: the operator's leg gets BYE.
    assert!(caller.hang_up().await.starts_with("SIP/2.0 200"));
    assert!(op.expect_bye(Duration::from_secs(5)).await.is_some());

    let e = flow.entry(caller.call_id()).await;
    assert_eq!(e["disposition"], "answered");
    assert_eq!(e["operator"], OPERATOR);
    assert_eq!(e["phone"], "+79781234567");
    assert!(!e["answered_at"].is_null());
    assert!(e["wait_s"].as_f64().unwrap() >= 0.0);
    // The recording holds both voices, each on its channel.
    let (samples, channels) = flow.wav(e["recording"].as_str().expect("recording"));
    assert_eq!(channels, 2);
    let left = channel(&samples, 0);
    let right = channel(&samples, 1);
    assert!(power(&left, 1000.0) > 10.0 * power(&left, 600.0));
    let tail = &right[right.len().saturating_sub(16000)..];
    assert!(power(tail, 600.0) > 10.0 * power(tail, 1000.0));
    flow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_hangs_up_and_the_caller_gets_bye() {
    let flow = Flow::start("").await;
    let mut op = flow.operator(OPERATOR, PASSWORD).await;
    let mut caller = Caller::dial(flow.hotline.sip_addr, "8800", "+79781110000").await;
    op.ringing(Duration::from_secs(20)).await.expect("rings");
    op.answer().await;
    flow.stage(caller.call_id(), "connected", Duration::from_secs(5))
        .await;
    assert!(op.hang_up().await.starts_with("SIP/2.0 200"));
    assert!(caller.expect_bye(Duration::from_secs(5)).await.is_some());
    let e = flow.entry(caller.call_id()).await;
    assert_eq!(e["disposition"], "answered");
    // Wrap-up follows the call (default 10 s).
    let (_, live) = flow.get("/api/v1/live").await;
    let ops = live["operators"].as_array().unwrap();
    let me = ops.iter().find(|o| o["extension"] == OPERATOR).unwrap();
    assert_eq!(me["state"], "wrap_up", "{live}");
    flow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_busy_queue_then_voicemail_kept_and_journaled() {
    // Nobody signed in, a 1 s queue: the caller waits, hears "all busy", the beep, and
    // leaves a message that ends on silence.
    let flow = Flow::start("[queue]\nmax_wait_s = 1\n").await;
    let mut caller = Caller::dial(flow.hotline.sip_addr, "8800", "+79782223344").await;
    flow.stage(caller.call_id(), "queued", Duration::from_secs(20))
        .await;
    flow.stage(caller.call_id(), "voicemail", Duration::from_secs(30))
        .await;
    caller.talk(&tone(1000.0, 1.5)).await;
    // Silence (no RTP at all) ends the message; "saved", then the hotline hangs up.
    assert!(caller.expect_bye(Duration::from_secs(20)).await.is_some());
    let e = flow.entry(caller.call_id()).await;
    assert_eq!(e["disposition"], "voicemail");
    assert!(e["wait_s"].as_f64().unwrap() >= 1.0);
    let vm_id = e["voicemail"]["id"].as_i64().expect("a voicemail");
    let (status, vm) = flow.get(&format!("/api/v1/voicemail/{vm_id}")).await;
    assert_eq!(status, 200, "{vm}");
    assert_eq!(vm["empty"], false);
    assert_eq!(vm["after_hours"], false);
    assert!(!vm["deadline_at"].is_null());
    assert!(vm["duration_s"].as_f64().unwrap() >= 1.5);
    let (samples, channels) = flow.wav(vm["file"].as_str().unwrap());
    assert_eq!(channels, 1);
    // The caller's 1 kHz is in the message, not just noise.
    assert!(power(&samples, 1000.0) > 10.0 * power(&samples, 600.0));
    flow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_hours_greeting_states_the_hours_then_voicemail_until_hash() {
    let hours = closed_hours();
    let flow = Flow::start_hours("", hours).await;
    let mut caller = Caller::dial(flow.hotline.sip_addr, "8800", "+79785556677").await;
    flow.stage(caller.call_id(), "voicemail", Duration::from_secs(40))
        .await;
    caller.talk(&tone(800.0, 1.0)).await;
    caller.press('#').await;
    assert!(caller.expect_bye(Duration::from_secs(20)).await.is_some());
    let e = flow.entry(caller.call_id()).await;
    assert_eq!(e["disposition"], "after_hours_voicemail");
    assert!(e["wait_s"].is_null(), "never queued");
    let vm_id = e["voicemail"]["id"].as_i64().expect("a voicemail");
    let (_, vm) = flow.get(&format!("/api/v1/voicemail/{vm_id}")).await;
    assert_eq!(vm["after_hours"], true);
    assert_eq!(vm["empty"], false);
    // What the caller heard (the recording's right channel) includes the configured
    // opening hour, spoken from the prompts: the hours come from the config.
    let (samples, _) = flow.wav(e["recording"].as_str().unwrap());
    let heard = channel(&samples, 1);
    let hour = &hours[..2];
    let from = rtp::read_wav(&std::path::Path::new(PROMPTS).join(format!("from_{hour}.wav"))).0;
    assert!(
        rtp::find(&heard, &from[..2000.min(from.len())]).is_some(),
        "from_{hour} not heard"
    );
    flow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_hanging_up_in_the_queue_is_abandoned() {
    let flow = Flow::start("").await;
    let mut caller = Caller::dial(flow.hotline.sip_addr, "8800", "+79789990000").await;
    flow.stage(caller.call_id(), "queued", Duration::from_secs(20))
        .await;
    let (_, live) = flow.get("/api/v1/live").await;
    assert_eq!(live["waiting"].as_array().unwrap().len(), 1, "{live}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    caller.hang_up().await;
    let e = flow.entry(caller.call_id()).await;
    assert_eq!(e["disposition"], "abandoned");
    assert!(e["wait_s"].as_f64().unwrap() >= 0.4);
    assert!(e["voicemail"].is_null());
    let (_, live) = flow.get("/api/v1/live").await;
    assert!(live["waiting"].as_array().unwrap().is_empty(), "{live}");
    flow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_timeout_pauses_the_first_operator_and_rings_the_next() {
    let flow = Flow::start("[queue]\nring_timeout_s = 1\n").await;
    // 1001 signs in first, so it has been idle longest and is rung first.
    let mut first = flow.operator(OPERATOR, PASSWORD).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut second = flow.operator(SECOND_OPERATOR, SECOND_PASSWORD).await;
    let caller = Caller::dial(flow.hotline.sip_addr, "8800", "+79781212121").await;
    first
        .ringing(Duration::from_secs(20))
        .await
        .expect("first rung");
    // It does not answer: CANCEL after the ring timeout, then the next operator rings.
    assert!(first.expect_cancel(Duration::from_secs(5)).await.is_some());
    second
        .ringing(Duration::from_secs(5))
        .await
        .expect("second rung");
    second.answer().await;
    flow.stage(caller.call_id(), "connected", Duration::from_secs(5))
        .await;
    let (_, live) = flow.get("/api/v1/live").await;
    let state = |ext: &str| {
        live["operators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["extension"] == ext)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state(OPERATOR), "paused", "{live}");
    assert_eq!(state(SECOND_OPERATOR), "busy", "{live}");
    second.hang_up().await;
    let e = flow.entry(caller.call_id()).await;
    assert_eq!(e["operator"], SECOND_OPERATOR);
    flow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_operator_is_paused_and_key_1_leaves_the_queue_for_voicemail() {
    let flow = Flow::start("").await;
    let mut op = flow.operator(OPERATOR, PASSWORD).await;
    let mut caller = Caller::dial(flow.hotline.sip_addr, "8800", "+79783334455").await;
    op.ringing(Duration::from_secs(20)).await.expect("rings");
    op.refuse(486, "Busy Here").await;
    flow.stage(caller.call_id(), "queued", Duration::from_secs(5))
        .await;
    // Nobody else is free: the caller presses 1 and leaves a message.
    caller.press('1').await;
    flow.stage(caller.call_id(), "voicemail", Duration::from_secs(30))
        .await;
    caller.talk(&tone(1000.0, 1.0)).await;
    caller.press('#').await;
    assert!(caller.expect_bye(Duration::from_secs(20)).await.is_some());
    let e = flow.entry(caller.call_id()).await;
    assert_eq!(e["disposition"], "voicemail");
    let (_, live) = flow.get("/api/v1/live").await;
    let me = live["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["extension"] == OPERATOR)
        .unwrap()
        .clone();
    assert_eq!(me["state"], "paused", "{live}");
    flow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_rules_metrics_and_live_events() {
    let flow = Flow::start("").await;
    let token = flow.operator_token(OPERATOR).await;
    // Not registered yet: 409 with a reason.
    let (status, body) = flow
        .post(&token, &format!("/api/v1/operators/{OPERATOR}/sign-in"))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("regist"), "{body}");
    // An operator may not sign somebody else in.
    let (status, _) = flow
        .post(
            &token,
            &format!("/api/v1/operators/{SECOND_OPERATOR}/sign-in"),
        )
        .await;
    assert_eq!(status, 403);
    // Unknown extension: 404.
    let (status, _) = flow
        .post(&flow.supervisor, "/api/v1/operators/9999/sign-in")
        .await;
    assert_eq!(status, 404);

    // The SSE feed reports the operator signing in.
    let url = format!("{}/api/v1/live/events", flow.base);
    let mut events = flow
        .http
        .get(url)
        .bearer_auth(&flow.supervisor)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    assert!(events.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let _op = flow.operator(OPERATOR, PASSWORD).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains("\"available\"") {
        let chunk = tokio::time::timeout_at(deadline, events.chunk())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains(OPERATOR), "{seen}");

    // Metrics: text exposition with the operator states and the calls.
    let mut caller = Caller::dial(flow.hotline.sip_addr, "8800", "+79780001122").await;
    flow.stage(caller.call_id(), "ringing", Duration::from_secs(20))
        .await;
    let metrics = flow
        .http
        .get(format!("{}/metrics", flow.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("hotline_active_calls 1"), "{metrics}");
    assert!(
        metrics.contains("hotline_operators{state=\"ringing\"} 1"),
        "{metrics}"
    );
    caller.hang_up().await;
    flow.entry(caller.call_id()).await;
    let metrics = flow
        .http
        .get(format!("{}/metrics", flow.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("hotline_calls_total{disposition=\"abandoned\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("hotline_waiting_callers 0"), "{metrics}");
    flow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_answered_while_the_database_is_locked_and_journaled_after() {
    use sqlx::Connection;
    let flow = Flow::start("").await;
    let db = flow.dir.path().join("hotline.db");
    let mut lock = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .unwrap();

    // The call is answered and queued although nothing can be written.
    let mut caller = Caller::dial(flow.hotline.sip_addr, "8800", "+79784445566").await;
    flow.stage(caller.call_id(), "queued", Duration::from_secs(25))
        .await;
    caller.hang_up().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        flow.hotline.calllog.pending() > 0,
        "writes wait for the database"
    );

    sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
    drop(lock);
    let e = flow.entry(caller.call_id()).await;
    assert_eq!(e["disposition"], "abandoned");
    assert_eq!(e["phone"], "+79784445566");
    flow.stop().await;
}

/// Two callers who send the same Call-ID (different From tags) are two dialogs (RFC 3261
/// §12) and two journal entries, each with its own phone and recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_call_id_is_two_calls_in_the_journal() {
    let flow = Flow::start("").await;
    let mut a = Caller::dial_as(flow.hotline.sip_addr, "8800", "+79780000001", Some("dup@x")).await;
    let mut b = Caller::dial_as(flow.hotline.sip_addr, "8800", "+79780000002", Some("dup@x")).await;
    assert_eq!(a.call_id(), b.call_id());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.hang_up().await.starts_with("SIP/2.0 200"));
    assert!(b.hang_up().await.starts_with("SIP/2.0 200"));
    let mut entries = Vec::new();
    for _ in 0..200 {
        let (status, body) = flow.get("/api/v1/journal?limit=50").await;
        assert_eq!(status, 200, "{body}");
        entries = body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| is_call(e, "dup@x") && !e["ended_at"].is_null())
            .cloned()
            .collect();
        if entries.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(entries.len(), 2, "{entries:?}");
    let mut phones: Vec<&str> = entries
        .iter()
        .map(|e| e["phone"].as_str().unwrap())
        .collect();
    phones.sort();
    assert_eq!(phones, ["+79780000001", "+79780000002"]);
    assert_ne!(entries[0]["call_id"], entries[1]["call_id"]);
    flow.stop().await;
}

/// ACK and BYE back to back: the call was answered (by the IVR) and ended at once. It is
/// journaled as abandoned with its recording, never as failed: the media must not depend
/// on winning a race with the caller's BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_right_after_the_answer_is_not_a_failure() {
    let flow = Flow::start("").await;
    for i in 0..7 {
        let call_id = format!("quick-{i}@test");
        let rtp = support::rtp::RtpPeer::bind().await;
        let offer = rtp::offer(rtp.port(), &[(0, "PCMU")]);
        let mut sip = Peer::new("UDP", flow.hotline.sip_addr).await;
        let mut invite = sip.req("INVITE", &call_id);
        invite.body = &offer;
        sip.send(&invite.build()).await;
        let ok = sip.expect("SIP/2.0 200").await;
        let to_tag = tag(header(&ok, "To").unwrap());
        let mut ack = sip.req("ACK", &call_id);
        ack.branch = "z9hG4bK-ack-1";
        ack.to_tag = Some(&to_tag);
        let mut bye = sip.req("BYE", &call_id);
        bye.branch = "z9hG4bK-bye-1";
        bye.to_tag = Some(&to_tag);
        bye.cseq = 2;
        let (ack, bye) = (ack.build(), bye.build());
        sip.send(&ack).await;
        sip.send(&bye).await;
        loop {
            let m = sip.recv(Duration::from_secs(5)).await.expect("200 to BYE");
            if m.starts_with("SIP/2.0 200") && header(&m, "CSeq").unwrap().ends_with("BYE") {
                break;
            }
        }
        let e = flow.entry(&call_id).await;
        assert_eq!(e["disposition"], "abandoned", "call {i}: {e}");
        assert!(e["recording"].is_string(), "call {i}: {e}");
    }
    flow.stop().await;
}
