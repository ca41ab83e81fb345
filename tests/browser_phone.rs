//! The browser phone in real headless Chromium with its fake microphone (a 1 kHz tone):
//! the operator switches it on in the console, a test caller (our UA over UDP, sending
//! 440 Hz) is rung on the page, and the audio crosses both ways through WebRTC (ICE-lite,
//! DTLS-SRTP) and the call's media session, into the recording.

#[path = "support/browser.rs"]
mod browser;
mod support;

use browser::{until_page, Browser};
use fantoccini::Locator;
use hotline::app::Hotline;
use hotline::records::account::NewUser;
use hotline::records::role::Role;
use std::time::Duration;
use support::phone::{Caller, Operator};
use support::rtp::*;
use support::*;

const PASSWORD_OF: &str = "Верный-пароль-42";
const SECOND: &str = "1002";

/// The second operator, on a SIP phone.
fn second_operator() -> String {
    format!("[[operators]]\nextension = \"{SECOND}\"\nname = \"Петров Пётр\"\npassword = \"secret-{SECOND}\"\n")
}

struct Lab {
    hotline: Hotline,
    base: String,
    _dir: tempfile::TempDir,
    /// The fake microphone's file.
    _mic: tempfile::TempDir,
    browser: Browser,
    /// The supervisor's TOTP secret.
    boss_secret: Option<Vec<u8>>,
}

impl Lab {
    async fn start(queue: &str) -> Lab {
        Lab::start_with(queue, true).await
    }

    /// [`Lab::start`]; without `microphone` Chromium has no capture device at all.
    async fn start_with(queue: &str, microphone: bool) -> Lab {
        let (config, dir) = config("", &format!("[queue]\n{queue}\n{}", second_operator()));
        let hotline = Hotline::start(config).await.expect("hotline starts");
        let base = format!("http://{}", hotline.http_addr);
        let mut secret = None;
        for (login, role, ext) in [
            ("anna", Role::Operator, Some(OPERATOR)),
            ("petr", Role::Operator, Some(SECOND)),
            ("boss", Role::Supervisor, None),
        ] {
            let new = NewUser {
                login: login.into(),
                name: format!("Тест {login}"),
                role,
                operator: ext.map(str::to_string),
            };
            let (_, uri) = hotline
                .accounts
                .create_user(&new, PASSWORD_OF, "test")
                .await
                .unwrap();
            secret = secret.or(uri.map(|u| browser::secret_of(&u)));
        }
        // The microphone: a 1 kHz tone, 48 kHz mono (Chromium loops the file).
        let mic = tempfile::tempdir().unwrap();
        let wav = mic.path().join("mic.wav");
        write_wav(&wav, 48_000, &sine(1000.0, 48_000, 5.0, 8000.0));
        let capture = format!("--use-file-for-fake-audio-capture={}", wav.display());
        let mut args = vec![
            "--allow-loopback-in-peer-connection",
            "--autoplay-policy=no-user-gesture-required",
        ];
        if microphone {
            args.extend([
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                capture.as_str(),
            ]);
        }
        let browser = Browser::start_with(&args).await;
        Lab {
            hotline,
            base,
            _dir: dir,
            _mic: mic,
            browser,
            boss_secret: secret,
        }
    }

    /// Anna logs in, chooses where her calls ring, signs in to the queue and switches the
    /// browser phone on.
    async fn anna_on_the_browser(&self, ring_at: &str) {
        let b = &self.browser;
        b.log_in(&self.base, "anna", PASSWORD_OF).await;
        b.at("/operator", "the operator's home").await;
        self.switch_on(ring_at).await;
        self.reachable(OPERATOR, true).await;
        self.hotline.acd.sign_in(OPERATOR).await.unwrap();
    }

    /// Chooses where calls ring on the operator's page, then opens the phone's page and
    /// switches it on.
    async fn switch_on(&self, ring_at: &str) {
        let b = &self.browser;
        b.open(&self.base, "/operator").await;
        b.client
            .find(Locator::Css(&format!(
                "input[name=ring_at][value={ring_at}]"
            )))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        b.press("Сохранить").await;
        b.open(&self.base, "/operator/phone").await;
        b.button("Включить телефон в браузере")
            .await
            .click()
            .await
            .unwrap();
        until_page(
            b,
            "return document.getElementById('phone-state').textContent === 'включён'",
            "the browser phone connects (ICE, DTLS)",
            Duration::from_secs(15),
        )
        .await;
    }

    /// Waits until the queue counts `ext` as reachable (or not).
    async fn reachable(&self, ext: &str, want: bool) {
        for _ in 0..500 {
            let snap = self.hotline.acd.snapshot().await;
            if snap
                .operators
                .iter()
                .any(|o| o.extension == ext && o.registered == want)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{ext} reachable is not {want} within 10 s");
    }

    /// Waits until the page rings; returns who it says calls.
    async fn rings(&self) -> String {
        until_page(
            &self.browser,
            "return !document.getElementById('phone-ring').hidden",
            "the page rings",
            Duration::from_secs(10),
        )
        .await;
        self.browser.text_of("ring-from").await
    }

    async fn click(&self, text: &str) {
        self.browser.button(text).await.click().await.unwrap();
    }

    /// Waits for the ring and answers it on the page, until the call shows.
    async fn pick_up(&self) {
        self.rings().await;
        self.click("Ответить").await;
        self.in_call().await;
    }

    async fn in_call(&self) {
        until_page(
            &self.browser,
            "return !document.getElementById('phone-call').hidden",
            "the page shows the call",
            Duration::from_secs(10),
        )
        .await;
    }

    async fn ended(&self) -> String {
        until_page(
            &self.browser,
            "return !document.getElementById('phone-ended').hidden",
            "the page shows the call ended",
            Duration::from_secs(10),
        )
        .await;
        self.browser.text_of("phone-ended").await
    }

    /// The loudest frequency the page's analyser of `side` hears now ("remote", "mic").
    async fn page_hears(&self, side: &str) -> f64 {
        let v = self
            .browser
            .client
            .execute(
                "const a = window.hotlinePhone[arguments[0]]; if (!a) return null; \
                 const d = new Float32Array(a.frequencyBinCount); a.getFloatFrequencyData(d); \
                 let best = 0; for (let i = 1; i < d.length; i++) if (d[i] > d[best]) best = i; \
                 return best * a.context.sampleRate / a.fftSize;",
                vec![serde_json::Value::String(side.into())],
            )
            .await
            .unwrap();
        v.as_f64().unwrap_or(0.0)
    }

    /// The page's two level meters (microphone, caller), 0 to 1.
    async fn meters(&self) -> (f64, f64) {
        let v = self
            .browser
            .client
            .execute(
                "return [document.getElementById('mic-level').value, \
                 document.getElementById('remote-level').value];",
                vec![],
            )
            .await
            .unwrap();
        let at = |i: usize| v.get(i).and_then(|x| x.as_f64()).unwrap_or(0.0);
        (at(0), at(1))
    }

    async fn close(self) {
        self.browser.close().await;
        self.hotline.shutdown().await;
    }
}

fn sine(hz: f64, rate: u32, secs: f64, amplitude: f64) -> Vec<i16> {
    let n = (f64::from(rate) * secs) as usize;
    (0..n)
        .map(|i| {
            (amplitude * (2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(rate)).sin())
                as i16
        })
        .collect()
}

fn write_wav(path: &std::path::Path, rate: u32, samples: &[i16]) {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut f = Vec::new();
    f.extend_from_slice(b"RIFF");
    f.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    f.extend_from_slice(b"WAVEfmt ");
    f.extend_from_slice(&16u32.to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * 2).to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&16u16.to_le_bytes());
    f.extend_from_slice(b"data");
    f.extend_from_slice(&(data.len() as u32).to_le_bytes());
    f.extend_from_slice(&data);
    std::fs::write(path, f).unwrap();
}

/// Goertzel power of `hz` in 8 kHz `pcm`, normalised by length.
fn power(pcm: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = f64::from(x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (pcm.len().max(1) as f64).powi(2)
}

/// `pcm` is mostly `hz`: its power there is far above the other tone's.
fn is_tone(pcm: &[i16], hz: f64, other: f64) -> bool {
    let (p, q) = (power(pcm, hz), power(pcm, other));
    p > 1000.0 && p > 20.0 * q
}

/// The whole path: ring, answer, 440 Hz to the page and 1 kHz to the caller, both in the
/// recording, the caller's hang-up shown on the page; then the operator hangs up a
/// second call from the page and the caller gets the BYE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_rings_in_the_browser_and_audio_crosses_both_ways() {
    let lab = Lab::start("wrap_up_s = 0").await;
    lab.anna_on_the_browser("browser").await;
    let mut events = lab.hotline.subscribe();

    let mut caller = Caller::dial(lab.hotline.sip_addr, "8800", "79161234567").await;
    let from = lab.rings().await;
    assert!(from.contains("79161234567"), "{from}");
    // The ring tone plays: 425 Hz, a second in every five.
    let mut ring = 0.0;
    for _ in 0..70 {
        ring = lab.page_hears("ring").await;
        if (ring - 425.0).abs() < 30.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        (ring - 425.0).abs() < 30.0,
        "the ring tone peaks at {ring} Hz"
    );
    lab.click("Ответить").await;
    lab.in_call().await;
    assert_eq!(
        lab.page_hears("ring").await,
        0.0,
        "the ring stops on answer"
    );

    // The caller talks (440 Hz) for 3 s; meanwhile the page listens.
    let tone = ulaw_tone(440.0, 3.0);
    let listen = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        lab.page_hears("remote").await
    };
    let ((), (heard_on_page, meters)) = tokio::join!(caller.talk(&tone), async {
        let heard = listen.await;
        (heard, lab.meters().await)
    });
    assert!(
        (heard_on_page - 440.0).abs() < 30.0,
        "the page's analyser peaks at {heard_on_page} Hz"
    );
    // The caller's level meter moves while they talk.
    assert!(meters.1 > 0.05, "the caller's meter shows {}", meters.1);
    // And the caller hears the operator's microphone: 1 kHz.
    let (packets, _) = caller.rtp.collect(Duration::from_millis(1000)).await;
    let pcm: Vec<i16> = packets
        .iter()
        .flat_map(|p| p.payload.iter().map(|&b| ulaw_decode(b)))
        .collect();
    let tail = &pcm[pcm.len().saturating_sub(8000)..];
    assert!(
        is_tone(tail, 1000.0, 440.0),
        "the caller hears 1 kHz: {} vs {}",
        power(tail, 1000.0),
        power(tail, 440.0)
    );
    // The microphone's meter moves once the caller is quiet (while the caller's tone
    // played, the echo canceller held the microphone down; see the recording below).
    let mut mic = 0.0;
    for _ in 0..20 {
        mic = lab.meters().await.0;
        if mic > 0.05 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(mic > 0.05, "the microphone's meter shows {mic}");

    // Muted, the caller hears silence (the hotline sends it in place of the microphone);
    // unmuted, the tone again.
    let mute_shows = |label: &'static str| {
        format!("return document.getElementById('phone-mute').textContent === '{label}'")
    };
    lab.click("Выключить микрофон").await;
    let b = &lab.browser;
    let wait = Duration::from_secs(5);
    until_page(b, &mute_shows("Включить микрофон"), "muted", wait).await;
    caller.rtp.collect(Duration::from_millis(200)).await;
    let (packets, _) = caller.rtp.collect(Duration::from_millis(600)).await;
    let muted: Vec<i16> = packets
        .iter()
        .flat_map(|p| p.payload.iter().map(|&b| ulaw_decode(b)))
        .collect();
    assert!(
        muted.len() >= 2400 && muted.iter().all(|&s| s.abs() < 8),
        "silence while muted"
    );
    lab.click("Включить микрофон").await;
    until_page(b, &mute_shows("Выключить микрофон"), "unmuted", wait).await;
    caller.rtp.collect(Duration::from_millis(1000)).await;

    caller.hang_up().await;
    let ended = lab.ended().await;
    assert!(ended.contains("клиент завершил"), "{ended}");
    let path = recording_saved(&mut events).await;
    let (samples, channels) = read_wav(&path);
    assert_eq!(channels, 2);
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    // The last 2 s of the conversation: the caller's tone left, the operator's right.
    // In 0.5 s pieces: the caller's tone on the left while they talked; the operator's
    // on the right once the caller fell silent (the browser's echo canceller turns the
    // microphone down while the caller's tone plays from the speaker, as it should).
    let pieces = |ch: &[i16]| {
        ch.chunks_exact(4000)
            .map(<[i16]>::to_vec)
            .collect::<Vec<_>>()
    };
    let (left, right) = (pieces(&left), pieces(&right));
    assert!(
        left.iter().filter(|w| is_tone(w, 440.0, 1000.0)).count() >= 4,
        "the caller's 440 Hz is on the left for 2 s"
    );
    let last = right.last().expect("a recording of more than 0.5 s");
    assert!(
        is_tone(last, 1000.0, 440.0),
        "the operator's 1 kHz is on the right: {} vs {}",
        power(last, 1000.0),
        power(last, 440.0)
    );

    // A second call, hung up from the page.
    let mut caller = Caller::dial(lab.hotline.sip_addr, "8800", "79167654321").await;
    lab.pick_up().await;
    lab.click("Завершить").await;
    assert!(
        caller.expect_bye(Duration::from_secs(5)).await.is_some(),
        "the caller gets a BYE when the operator hangs up in the page"
    );
    let ended = lab.ended().await;
    assert!(ended.contains("вы завершили"), "{ended}");
    lab.close().await;
}

/// Closing the tab mid-call ends the operator's leg as a hang-up would: the caller gets
/// a BYE, and the journal entry is complete (answered by 1001, ended).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_tab_mid_call_ends_the_leg_and_the_journal_entry_is_complete() {
    lost_mid_call(Lost::TabClosed).await;
}

/// The browser dies without a word (SIGKILL: no beacon, no DTLS close): the hotline
/// notices the silence (ICE consent checks stop) and the call ends as for a closed tab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gone_without_a_word_is_noticed_and_its_call_ends() {
    lost_mid_call(Lost::Killed).await;
}

enum Lost {
    TabClosed,
    Killed,
}

/// The operator's page is lost mid-call: the caller gets a BYE, the operator is no longer
/// reachable, and the journal entry is complete.
async fn lost_mid_call(how: Lost) {
    let lab = Lab::start("wrap_up_s = 0").await;
    lab.anna_on_the_browser("browser").await;
    let mut caller = Caller::dial(lab.hotline.sip_addr, "8800", "79160000001").await;
    lab.pick_up().await;
    // The silence limit is 15 s; the caller keeps talking meanwhile, as callers do.
    let within = match how {
        Lost::TabClosed => {
            lab.browser.client.close_window().await.unwrap();
            Duration::from_secs(20)
        }
        Lost::Killed => {
            lab.browser.kill();
            Duration::from_secs(30)
        }
    };
    let tone = ulaw_tone(440.0, 0.5);
    let mut bye = None;
    let deadline = std::time::Instant::now() + within;
    while bye.is_none() && std::time::Instant::now() < deadline {
        caller.talk(&tone).await;
        bye = caller.expect_bye(Duration::from_millis(100)).await;
    }
    assert!(
        bye.is_some(),
        "the caller's call ends when the operator's page is lost"
    );
    lab.reachable(OPERATOR, false).await;
    // The journal entry: answered by the operator, with its end.
    let mut entry = None;
    for _ in 0..100 {
        let rows: Vec<(Option<String>, Option<i64>)> =
            sqlx::query_as("SELECT operator, ended_at FROM journal_entries WHERE call_id LIKE $1")
                .bind(format!("{}%", caller.call_id()))
                .fetch_all(lab.hotline.records.store.pool())
                .await
                .unwrap();
        if let Some(r) = rows.into_iter().next().filter(|r| r.1.is_some()) {
            entry = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (operator, _) = entry.expect("the journal entry is ended");
    assert_eq!(operator.as_deref(), Some(OPERATOR));
    let _ = lab.browser.client.clone().close().await;
    lab.hotline.shutdown().await;
}

/// A browser ring nobody answers times out to the next operator (on a SIP phone); with
/// «оба» the SIP phone and the page ring together, and answering on the page cancels the
/// phone's ring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_ring_moves_on_and_both_phones_ring_until_one_answers() {
    let lab = Lab::start("wrap_up_s = 0\nring_timeout_s = 3").await;
    lab.anna_on_the_browser("browser").await;
    // The page rings; meanwhile Petr's SIP phone registers and he signs in.
    let mut caller = Caller::dial(lab.hotline.sip_addr, "8800", "79160000002").await;
    lab.rings().await;
    let mut petr =
        Operator::register(lab.hotline.sip_addr, SECOND, &format!("secret-{SECOND}")).await;
    lab.reachable(SECOND, true).await;
    lab.hotline.acd.sign_in(SECOND).await.unwrap();
    let invite = petr.ringing(Duration::from_secs(10)).await;
    assert!(
        invite.is_some(),
        "after the ring timeout Petr's phone rings"
    );
    let ended = lab.ended().await;
    assert!(
        ended.contains("не дождался") || ended.contains("передан"),
        "{ended}"
    );
    petr.answer().await;
    caller.hang_up().await;
    petr.expect_bye(Duration::from_secs(5)).await;
    lab.hotline.acd.sign_out(SECOND).await.unwrap();

    // Both: Anna's own SIP phone and her page ring; she answers on the page.
    lab.switch_on("both").await;
    // Back from the no-answer pause.
    lab.hotline.acd.sign_in(OPERATOR).await.unwrap();
    let mut desk = Operator::register(lab.hotline.sip_addr, OPERATOR, PASSWORD).await;
    // «Отклонить» on the page is her refusal: the desk phone stops ringing too.
    let mut caller = Caller::dial(lab.hotline.sip_addr, "8800", "79160000005").await;
    assert!(
        desk.ringing(Duration::from_secs(10)).await.is_some(),
        "the desk phone rings"
    );
    lab.rings().await;
    lab.click("Отклонить").await;
    assert!(
        desk.expect_cancel(Duration::from_secs(5)).await.is_some(),
        "a decline on the page cancels the desk phone's ring"
    );
    let ended = lab.ended().await;
    assert!(ended.contains("отклонили"), "{ended}");
    caller.hang_up().await;
    lab.hotline.acd.sign_in(OPERATOR).await.unwrap();
    let mut caller = Caller::dial(lab.hotline.sip_addr, "8800", "79160000003").await;
    assert!(
        desk.ringing(Duration::from_secs(10)).await.is_some(),
        "the desk phone rings"
    );
    lab.pick_up().await;
    assert!(
        desk.expect_cancel(Duration::from_secs(5)).await.is_some(),
        "the desk phone's ring is cancelled"
    );
    caller.hang_up().await;
    lab.ended().await;
    lab.close().await;
}

/// Only the operator's own session opens a phone or acts on its calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_sessions_cannot_open_a_phone_or_answer_its_calls() {
    let lab = Lab::start("wrap_up_s = 0").await;
    lab.anna_on_the_browser("browser").await;
    let mut caller = Caller::dial(lab.hotline.sip_addr, "8800", "79160000004").await;
    lab.rings().await;
    let http = lab.hotline.http_addr;
    // No session at all.
    let (status, _) = post_form(http, "/operator/phone/offer", None, "sdp=v%3D0").await;
    assert_eq!(status, 403);
    // Petr's session (his own CSRF token) on Anna's ringing call.
    let (cookie, csrf) = login(http, "petr", None).await;
    let anna_leg = hotline::phone::hub::FIRST_LEG;
    let (status, body) = post_form(
        http,
        "/operator/phone/action",
        Some(&cookie),
        &format!("csrf={csrf}&action=answer&leg={anna_leg}"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Without his token.
    let (status, _) = post_form(
        http,
        "/operator/phone/action",
        Some(&cookie),
        &format!("action=answer&leg={anna_leg}"),
    )
    .await;
    assert_eq!(status, 403);
    // A supervisor has no phone.
    let (cookie, csrf) = login(http, "boss", lab.boss_secret.as_deref()).await;
    let (status, _) = post_form(
        http,
        "/operator/phone/offer",
        Some(&cookie),
        &format!("csrf={csrf}&sdp=v%3D0"),
    )
    .await;
    assert_eq!(status, 403);
    // Anna's page still rings, and answers.
    lab.click("Ответить").await;
    lab.in_call().await;
    caller.hang_up().await;
    lab.ended().await;
    lab.close().await;
}

/// A window that lost the phone to a newer one cannot switch the newer one off: its «off»
/// (the beacon a closing tab sends) names its own connection, which the hub ignores once
/// replaced. The page's own «Выключить» still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_windows_off_leaves_the_newer_phone_on() {
    let lab = Lab::start("wrap_up_s = 0").await;
    let http = lab.hotline.http_addr;
    // The older window: Anna's other session posts an offer and is given connection A.
    let (cookie, csrf) = login(http, "anna", None).await;
    let offering = hotline::phone::loopback::Offering::new(
        "127.0.0.1:9".parse().unwrap(),
        std::time::Instant::now(),
    )
    .unwrap();
    let body = format!("csrf={csrf}&sdp={}", urlencode(&offering.sdp));
    let (status, answer, headers) =
        request(http, "POST", "/operator/phone/offer", Some(&cookie), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.starts_with("v=0"), "{answer}");
    let older: u64 = headers
        .iter()
        .find(|(name, _)| name == "x-phone-connection")
        .and_then(|(_, v)| v.trim().parse().ok())
        .expect("the answer names its connection");
    // The newer window: the page in Chromium takes the phone over.
    lab.anna_on_the_browser("browser").await;
    let (status, body) = post_form(
        http,
        "/operator/phone/action",
        Some(&cookie),
        &format!("csrf={csrf}&action=off&connection={older}"),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    // Still on: a call rings on the page and is answered there.
    let mut caller = Caller::dial(lab.hotline.sip_addr, "8800", "79160000006").await;
    lab.pick_up().await;
    assert_eq!(
        lab.browser.text_of("phone-state").await,
        "включён",
        "the newer phone is on"
    );
    caller.hang_up().await;
    lab.ended().await;
    // The page's own «Выключить» switches it off.
    lab.click("Выключить").await;
    lab.reachable(OPERATOR, false).await;
    lab.close().await;
}

/// Logs `login` in over plain HTTP (with the code of `secret` where their role needs
/// one); their session cookie and CSRF token.
async fn login(http: std::net::SocketAddr, login: &str, secret: Option<&[u8]>) -> (String, String) {
    let (_, page, headers) = request(http, "GET", "/login", None, "").await;
    let login_cookie = cookies(headers).join("; ");
    let token = csrf_of(&page);
    let body = format!(
        "csrf={token}&login={login}&password={}",
        urlencode(PASSWORD_OF)
    );
    let (_, _, headers) = request(http, "POST", "/login", Some(&login_cookie), &body).await;
    let session_of = |headers| {
        cookies(headers)
            .into_iter()
            .find(|c| c.starts_with("hotline_session="))
            .expect("a session cookie")
    };
    let mut session = session_of(headers);
    if let Some(secret) = secret {
        // The second factor opens a new session.
        let (_, page, _) = request(http, "GET", "/login/code", Some(&session), "").await;
        let body = format!("csrf={}&code={}", csrf_of(&page), browser::code_now(secret));
        let (_, _, headers) = request(http, "POST", "/login/code", Some(&session), &body).await;
        session = session_of(headers);
    }
    // A page with the session's token in its forms.
    let (_, home, _) = request(http, "GET", "/callbacks", Some(&session), "").await;
    (session, csrf_of(&home))
}

fn csrf_of(page: &str) -> String {
    let field = "name=\"csrf\" value=\"";
    let at = page.find(field).expect("a CSRF field") + field.len();
    page[at..].split('"').next().unwrap().to_string()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn post_form(
    http: std::net::SocketAddr,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, String) {
    let (status, body, _) = request(http, "POST", path, cookie, body).await;
    (status, body)
}

/// One HTTP/1.1 request; the status, the body and the headers (names in lower case).
async fn request(
    http: std::net::SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: &str,
) -> (u16, String, Vec<(String, String)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n{cookie}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // An event stream never ends: read what comes within a moment.
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_string()))
        .collect();
    (status, body.to_string(), headers)
}

/// The `Set-Cookie` name=value pairs of a response's headers.
fn cookies(headers: Vec<(String, String)>) -> Vec<String> {
    headers
        .into_iter()
        .filter(|(name, _)| name == "set-cookie")
        .map(|(_, c)| c.split(';').next().unwrap().to_string())
        .collect()
}

/// The operator's choice of where calls ring is kept in the records, one row per
/// operator, on both databases.
async fn the_ring_choice_is_kept(db: support::api::Db) {
    use hotline::records::ring::RingAt;
    let api = support::api::start(db).await;
    let records = &api.hotline.records;
    assert!(records.ring_choices().await.unwrap().is_empty());
    records
        .set_ring_at(OPERATOR, RingAt::Both, "anna")
        .await
        .unwrap();
    records
        .set_ring_at(SECOND, RingAt::Browser, "petr")
        .await
        .unwrap();
    records
        .set_ring_at(OPERATOR, RingAt::Browser, "anna")
        .await
        .unwrap();
    assert_eq!(
        records.ring_choices().await.unwrap(),
        vec![
            (OPERATOR.to_string(), RingAt::Browser),
            (SECOND.to_string(), RingAt::Browser)
        ]
    );
    api.stop().await;
}
on_both_databases!(the_ring_choice_is_kept);

/// Without a microphone the page says so, and the phone stays off: the operator is not
/// counted as reachable on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_microphone_is_shown_and_the_phone_stays_off() {
    let lab = Lab::start_with("", false).await;
    let b = &lab.browser;
    b.log_in(&lab.base, "anna", PASSWORD_OF).await;
    b.at("/operator", "the operator's home").await;
    b.open(&lab.base, "/operator/phone").await;
    lab.click("Включить телефон в браузере").await;
    until_page(
        b,
        "return !document.getElementById('mic-warning').hidden",
        "the microphone warning",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(b.text_of("phone-state").await, "выключен: нет микрофона");
    assert!(!lab
        .hotline
        .acd
        .snapshot()
        .await
        .operators
        .iter()
        .any(|o| o.registered));
    lab.close().await;
}
