//! The web console in real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver): logins for every role, the lock-out, the second factor with a
//! code computed here, role refusals, CSRF and idle expiry. The hotline runs in-process.

#[path = "support/browser.rs"]
mod browser;
mod support;

use browser::{code_now, secret_of, until_page, Browser};
use fantoccini::Locator;
use hotline::app::Hotline;
use hotline::records::account::NewUser;
use hotline::records::role::Role;
use std::time::Duration;
use support::*;

const PASSWORD_OF: &str = "Верный-пароль-42";

struct Console {
    hotline: Hotline,
    base: String,
    dir: tempfile::TempDir,
}

impl Console {
    async fn start(console: &str) -> Console {
        let (config, dir) = config("", &format!("[console]\n{console}\n"));
        let hotline = Hotline::start(config).await.expect("hotline starts");
        let base = format!("http://{}", hotline.http_addr);
        Console { hotline, base, dir }
    }

    /// Makes a user; returns the TOTP secret when their role needs one.
    async fn user(&self, login: &str, role: Role) -> Option<Vec<u8>> {
        let new = NewUser {
            login: login.into(),
            name: format!("Тест {login}"),
            role,
            operator: (role == Role::Operator).then(|| OPERATOR.to_string()),
        };
        let (_, uri) = self
            .hotline
            .accounts
            .create_user(&new, PASSWORD_OF, "test")
            .await
            .unwrap();
        uri.map(|u| secret_of(&u))
    }

    /// Waits until the queue knows the phone of `ext` is registered.
    async fn phone_registered(&self, ext: &str) {
        until_hotline(
            || async {
                self.hotline
                    .acd
                    .snapshot()
                    .await
                    .operators
                    .iter()
                    .any(|o| o.extension == ext && o.registered)
            },
            "the phone is registered",
        )
        .await;
    }

    async fn audit(&self, action: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE entity = 'user' AND action = $1",
        )
        .bind(action)
        .fetch_one(self.hotline.records.store.pool())
        .await
        .unwrap()
    }
}

/// The secret of an `otpauth://` URI, as an authenticator app reads it.
/// Over HTTPS (issue 20): the login, a page and a state-changing POST with its CSRF token
/// (the logout) work, the session cookie is Secure, and the page is served with HSTS. Chromium is told
/// to accept the lab's certificate; the reqwest test in `tests/https.rs` checks the chain.
#[tokio::test]
async fn the_console_works_over_https() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = hotline::tls::self_signed(certs_dir.path(), &["127.0.0.1".into()], 30).unwrap();
    let tables = format!(
        "[http.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        certs.cert.display(),
        certs.key.display()
    );
    let (config, _dir) = config("", &tables);
    let hotline = Hotline::start(config).await.expect("hotline starts");
    let c = Console {
        base: format!("https://127.0.0.1:{}", hotline.http_addr.port()),
        hotline,
        dir: _dir,
    };
    c.user("operator1", Role::Operator).await;
    let b = Browser::start_with(&["--ignore-certificate-errors"]).await;
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    until_page(
        &b,
        "return location.protocol === 'https:' && location.pathname === '/operator'",
        "the operator lands on /operator over HTTPS",
        Duration::from_secs(5),
    )
    .await;
    let cookies = b.client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "hotline_session")
        .expect("a session cookie");
    assert_eq!(session.secure(), Some(true));
    assert_eq!(session.http_only(), Some(true));
    // Logging out is a POST with the page's CSRF token.
    b.press("Выйти").await;
    until_page(
        &b,
        "return location.pathname === '/login'",
        "logout over HTTPS",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(c.audit("logout").await, 1);
    b.close().await;
    c.hotline.shutdown().await;
}

#[tokio::test]
async fn every_role_logs_in_and_lands_on_its_home() {
    let c = Console::start("").await;
    let b = Browser::start().await;
    for (login, role, home) in [
        ("operator1", Role::Operator, "/operator"),
        ("card1", Role::CardDepartment, "/desk"),
        ("head1", Role::Supervisor, "/supervisor"),
        ("security1", Role::Security, "/desk"),
        ("admin1", Role::Admin, "/admin"),
    ] {
        let secret = c.user(login, role).await;
        b.log_in(&c.base, login, PASSWORD_OF).await;
        if let Some(secret) = secret {
            // The roles that read every customer's data give a code, enrolling at the
            // first login by the QR code shown on the page.
            b.at("/login/code", login).await;
            b.client
                .find(Locator::Css(".qr svg"))
                .await
                .expect("a QR code");
            b.give_code(&code_now(&secret)).await;
            let codes = b.client.find(Locator::Id("recovery-codes")).await.unwrap();
            assert_eq!(codes.find_all(Locator::Css("li")).await.unwrap().len(), 10);
            b.follow("continue").await;
        }
        b.at(home, login).await;
        assert!(b.text().await.contains(&format!("Тест {login}")), "{login}");
        b.press("Выйти").await;
        b.at("/login", login).await;
    }
    assert_eq!(c.audit("login").await, 5);
    assert_eq!(c.audit("logout").await, 5);
    b.close().await;
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_lock_the_login() {
    let c = Console::start("login_max_failures = 3").await;
    c.user("operator1", Role::Operator).await;
    let b = Browser::start().await;
    for _ in 0..3 {
        b.log_in(&c.base, "operator1", "не тот пароль").await;
        b.at("/login", "").await;
        let text = b.text().await;
        assert!(text.contains("Неверный логин или пароль."), "{text}");
    }
    // Locked: even the right password is refused now.
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    b.at("/login", "").await;
    assert!(
        b.text().await.contains("временно заблокирован"),
        "{}",
        b.text().await
    );
    // A login that does not exist gets the same answer as a wrong password.
    b.log_in(&c.base, "nobody", PASSWORD_OF).await;
    assert!(b.text().await.contains("Неверный логин или пароль."));
    assert_eq!(c.audit("login_failed").await, 4);
    assert_eq!(c.audit("locked").await, 1);
    assert_eq!(c.audit("login_locked").await, 1);
    b.close().await;
}

#[tokio::test]
async fn a_wrong_or_replayed_code_is_refused() {
    let c = Console::start("").await;
    let secret = c.user("head1", Role::Supervisor).await.unwrap();
    let b = Browser::start().await;
    b.log_in(&c.base, "head1", PASSWORD_OF).await;
    // Without the code the session opens nothing.
    b.open(&c.base, "/supervisor").await;
    b.at("/login/code", "").await;
    let good = code_now(&secret);
    let wrong = format!("{:06}", (good.parse::<u32>().unwrap() + 1) % 1_000_000);
    b.give_code(&wrong).await;
    assert!(b.text().await.contains("Неверный код."));
    b.give_code(&good).await;
    b.follow("continue").await;
    b.at("/supervisor", "").await;
    b.press("Выйти").await;

    // The same code again, in its own 30 seconds: refused.
    b.log_in(&c.base, "head1", PASSWORD_OF).await;
    b.at("/login/code", "").await;
    b.give_code(&good).await;
    assert!(b.text().await.contains("Неверный код."));
    assert_eq!(c.audit("code_failed").await, 2);
    b.close().await;
}

#[tokio::test]
async fn roles_are_refused_other_pages_and_forms_need_their_token() {
    let c = Console::start("").await;
    c.user("operator1", Role::Operator).await;
    let b = Browser::start().await;
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    b.at("/operator", "").await;
    for page in ["/supervisor", "/admin", "/desk"] {
        b.client.goto(&format!("{}{page}", c.base)).await.unwrap();
        assert!(b.text().await.contains("Доступ запрещён"), "{page}");
    }
    let cookie = format!("hotline_session={}", b.session_cookie().await.unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| {
        http.get(format!("{}{path}", c.base))
            .header("cookie", &cookie)
            .send()
    };
    assert_eq!(get("/admin").await.unwrap().status(), 403);
    assert_eq!(get("/operator").await.unwrap().status(), 200);
    // A state-changing form without the session's CSRF token, or with another: 403.
    for body in [
        "extension=1001&action=sign_in".to_string(),
        "extension=1001&action=sign_in&csrf=00".to_string(),
    ] {
        let r = http
            .post(format!("{}/operator/presence", c.base))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{body}");
    }
    // The login form, before any session, has its own token.
    let r = http
        .post(format!("{}/login", c.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("login=operator1&password={PASSWORD_OF}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Without a session every page goes to the login.
    let r = http
        .get(format!("{}/operator", c.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login");
    b.close().await;
}

#[tokio::test]
async fn an_idle_session_expires_and_logout_ends_it_everywhere() {
    let c = Console::start("session_idle_s = 5").await;
    c.user("operator1", Role::Operator).await;
    let b = Browser::start().await;
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    b.at("/operator", "").await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    b.open(&c.base, "/operator").await;
    b.at("/login", "idle for longer than the limit").await;

    // A copy of the cookie (another tab, another machine) stops working at logout.
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    let cookie = format!("hotline_session={}", b.session_cookie().await.unwrap());
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let status = || async {
        http.get(format!("{}/operator", c.base))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(status().await, 200);
    b.press("Выйти").await;
    assert_eq!(status().await, 303);
    b.close().await;
}

#[tokio::test]
async fn the_voicemail_player_loads_and_processed_takes_the_message_off() {
    use hotline::records::journal::NewCall;
    use hotline::records::voicemail::NewVoicemail;
    let c = Console::start("").await;
    c.user("operator1", Role::Operator).await;
    // A message as the call flow leaves one: its journal entry, its WAV, its record.
    let records = &c.hotline.records;
    let now = chrono::Utc::now();
    let entry = records
        .record_call(&NewCall {
            call_id: Some("vm-1".into()),
            arrived_at: now,
            phone: "+79781234567".into(),
            caller_name: None,
        })
        .await
        .unwrap();
    std::fs::create_dir_all(c.dir.path().join("voicemail")).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(c.dir.path().join("voicemail/vm-1.wav"), spec).unwrap();
    for i in 0..24_000 {
        let t = f64::from(i) / 8000.0;
        w.write_sample((8000.0 * (t * 440.0 * std::f64::consts::TAU).sin()) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    let id = records
        .add_voicemail(&NewVoicemail {
            journal_id: entry,
            arrived_at: now,
            file: "voicemail/vm-1.wav".into(),
            duration: Duration::from_secs(3),
            empty: false,
            after_hours: false,
        })
        .await
        .unwrap();

    // The transcript, and what the classifier made of it (as the transcription worker
    // leaves them).
    sqlx::query(
        "UPDATE voicemails SET transcript = $1, suggested_kind = 'atm_fault', \
         suggested_category = 'fault_out_of_cash', suggested_words = 'нет денег' WHERE id = $2",
    )
    .bind("Банкомат на Ленина семь, нет денег, не выдал наличные")
    .bind(id)
    .execute(records.store.pool())
    .await
    .unwrap();

    let b = Browser::start().await;
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    b.at("/operator", "").await;
    let text = b.text().await;
    assert!(text.contains("+79781234567"), "{text}");
    // One click from the suggestion to the ticket form, filled from the message.
    b.follow(&format!("vm-ticket-{id}")).await;
    b.at("/operator/ticket", "the prefilled ticket form").await;
    let category = b.field("Категория").await;
    assert_eq!(
        category.prop("value").await.unwrap().as_deref(),
        Some("fault_out_of_cash")
    );
    let described = b.field("Что сообщил клиент").await;
    assert_eq!(
        described.prop("value").await.unwrap().as_deref(),
        Some("Банкомат на Ленина семь, нет денег, не выдал наличные")
    );
    let phone = b.field("Телефон заявителя").await;
    assert_eq!(
        phone.prop("value").await.unwrap().as_deref(),
        Some("+79781234567")
    );
    let journal: String = b
        .client
        .find(Locator::Css("input[name=journal_id]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        journal,
        entry.to_string(),
        "the ticket belongs to the message's call"
    );
    b.open(&c.base, "/operator").await;
    // The browser loads the audio (through Range requests) and knows its length.
    let mut duration = None;
    for _ in 0..100 {
        let d = b
            .client
            .execute("return document.querySelector('audio').duration", vec![])
            .await
            .unwrap();
        if let Some(d) = d.as_f64().filter(|d| d.is_finite()) {
            duration = Some(d);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let duration = duration.expect("the audio element reports a duration");
    assert!((duration - 3.0).abs() < 0.1, "{duration}");

    b.press("Обработано").await;
    b.at("/operator", "").await;
    assert!(b.text().await.contains("Необработанных сообщений нет."));
    let by: Option<String> =
        sqlx::query_scalar("SELECT processed_by FROM voicemails WHERE id = $1")
            .bind(id)
            .fetch_one(records.store.pool())
            .await
            .unwrap();
    assert_eq!(by.as_deref(), Some("operator1"));
    b.close().await;
}

/// A 16-bit 8 kHz WAV of a tone, `channels` wide, `secs` long.
fn write_tone(path: &std::path::Path, channels: u16, secs: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..8000 * secs {
        let t = f64::from(i) / 8000.0;
        for _ in 0..channels {
            w.write_sample((8000.0 * (t * 440.0 * std::f64::consts::TAU).sin()) as i16)
                .unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Polls the first `<audio>` matching `css` until it knows its length (loading it first:
/// the journal's players load nothing until asked).
async fn audio_duration(b: &Browser, css: &str) -> f64 {
    let script = format!(
        "const a = document.querySelector('{css}'); \
         if (a.preload !== 'metadata') {{ a.preload = 'metadata'; a.load(); }} \
         return a.duration"
    );
    // Up to 10 s: on a busy CI machine Chromium can take seconds to fetch and read it.
    for _ in 0..200 {
        let d = b.client.execute(&script, vec![]).await.unwrap();
        if let Some(d) = d.as_f64().filter(|d| d.is_finite()) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the audio element {css} reports no duration within 10 s");
}

/// The supervisor's journal: filters, «Экспорт CSV» downloaded by the browser and parsed
/// as Excel in the Russian locale reads it (`;`), an entry's detail with its recording
/// (each listen audited), an edit through the form (audited), and the refusals: the
/// security service hears no call without a ticket of its own.
#[tokio::test]
async fn the_journal_filters_exports_plays_and_edits() {
    use hotline::records::journal::{CallProgress, Disposition, NewCall};
    let c = Console::start("totp_roles = []").await;
    c.user("head1", Role::Supervisor).await;
    c.user("security1", Role::Security).await;
    let records = &c.hotline.records;
    let now = chrono::Utc::now();
    let mut ids = Vec::new();
    for (i, phone) in ["+79781111111", "+79782222222", "+79781111111"]
        .iter()
        .enumerate()
    {
        let id = records
            .record_call(&NewCall {
                call_id: Some(format!("j-{i}")),
                arrived_at: now - chrono::Duration::minutes(10 - i as i64),
                phone: phone.to_string(),
                caller_name: Some(format!("Клиент {i}")),
            })
            .await
            .unwrap();
        ids.push(id);
    }
    let rel = "recordings/j-0.wav";
    write_tone(&c.dir.path().join(rel), 2, 2);
    hotline::store::journal::update_progress(
        &records.store,
        ids[0],
        &CallProgress {
            answered_at: Some(now - chrono::Duration::minutes(10)),
            ended_at: Some(now - chrono::Duration::minutes(9)),
            wait_ms: Some(12_500),
            disposition: Some(Disposition::Answered),
            operator: Some(OPERATOR.into()),
            recording: Some(rel.into()),
        },
    )
    .await
    .unwrap();
    let patch = hotline::records::journal::EntryPatch {
        content: Some(Some("Вопрос; с точкой с запятой, и запятой".into())),
        ..Default::default()
    };
    records
        .patch_entry(ids[0], &patch, "operator1")
        .await
        .unwrap();

    let b = Browser::start().await;
    b.log_in(&c.base, "head1", PASSWORD_OF).await;
    b.at("/supervisor", "").await;
    b.open(&c.base, "/journal").await;
    let rows = b
        .client
        .find_all(Locator::Css("#journal tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    b.type_in("Телефон", "+79781111111").await;
    b.press("Показать").await;
    let rows = b
        .client
        .find_all(Locator::Css("#journal tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{}", b.text().await);

    // «Экспорт CSV»: the browser saves the filtered journal.
    b.client
        .find(Locator::Id("export"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let mut saved = None;
    for _ in 0..200 {
        let files: Vec<_> = std::fs::read_dir(&b.downloads)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        // Chromium makes the file under its final name before the bytes arrive (in a
        // `.crdownload` beside it, renamed over it at the end): done once that is gone
        // and the file has its bytes.
        let writing = files
            .iter()
            .any(|p| p.extension().is_some_and(|x| x == "crdownload"));
        let done = files.into_iter().find(|p| {
            p.extension().is_some_and(|x| x == "csv")
                && std::fs::metadata(p).is_ok_and(|m| m.len() > 0)
        });
        if let Some(p) = done.filter(|_| !writing) {
            saved = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let saved = saved.expect("the browser saved the CSV");
    let bytes = std::fs::read(&saved).unwrap();
    assert!(
        bytes.starts_with("\u{feff}".as_bytes()),
        "the BOM Excel reads UTF-8 by"
    );
    let mut rd = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(&bytes[3..]);
    assert_eq!(&rd.headers().unwrap()[0], "№ п/п");
    let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2, "the filter applies to the export");
    assert!(rows
        .iter()
        .all(|r| &r[4] == "+79781111111" && r.len() == 21));
    let first = rows.iter().find(|r| &r[2] == "Клиент 0").unwrap();
    assert_eq!(&first[6], "Вопрос; с точкой с запятой, и запятой");
    assert_eq!(
        &first[15], "12,5",
        "the decimal comma of the Russian locale"
    );

    // The entry: its columns, its recording (the listen is audited), its edit form.
    b.client
        .goto(&format!("{}/journal/{}", c.base, ids[0]))
        .await
        .unwrap();
    let text = b.text().await;
    assert!(text.contains("Вопрос; с точкой с запятой"), "{text}");
    let d = audio_duration(&b, "#recording audio").await;
    assert!((d - 2.0).abs() < 0.1, "{d}");
    let listens: Vec<(String, String)> = sqlx::query_as(
        "SELECT actor, action FROM audit_log WHERE entity = 'journal' AND entity_id = $1 \
         AND field = 'recording' AND action IN ('listen', 'download')",
    )
    .bind(ids[0])
    .fetch_all(records.store.pool())
    .await
    .unwrap();
    assert!(!listens.is_empty(), "the listen is in the audit log");
    assert!(
        listens.iter().all(|(a, w)| a == "head1" && w == "listen"),
        "{listens:?}"
    );

    let content = b.field("Содержание сообщения").await;
    content.clear().await.unwrap();
    content.send_keys("Перезвонить завтра").await.unwrap();
    b.press("Сохранить").await;
    b.at(&format!("/journal/{}", ids[0]), "saved").await;
    let audit = b.text_of("audit").await;
    assert!(
        audit.contains("Перезвонить завтра") && audit.contains("head1"),
        "{audit}"
    );
    let stored = hotline::store::journal::get(&records.store, ids[0])
        .await
        .unwrap();
    assert_eq!(stored.content.as_deref(), Some("Перезвонить завтра"));
    b.press("Выйти").await;

    // The security service: no journal, and no call of which it holds no ticket.
    b.log_in(&c.base, "security1", PASSWORD_OF).await;
    b.at("/desk", "").await;
    for path in [
        "/journal".to_string(),
        format!("/journal/{}/recording", ids[0]),
    ] {
        b.client.goto(&format!("{}{path}", c.base)).await.unwrap();
        assert!(b.text().await.contains("Доступ запрещён"), "{path}");
    }
    b.close().await;
}

/// Waits until the hotline itself (not the page) is in the state `check` looks for.
async fn until_hotline<F, Fut>(check: F, why: &str) -> tokio::time::Instant
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..1000 {
        if check().await {
            return tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{why}: not within 10 s");
}

/// The wallboard follows the calls live: a caller waiting, then the operator (signed in
/// from the board) busy, each on screen within 1 s of the hotline's own state, brought by
/// the live feed and not by the periodic refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallboard_shows_a_waiting_caller_then_the_operator_busy_live() {
    use hotline::callflow::queue::OperatorState;
    use support::phone::{Caller, Operator};
    let c = Console::start("totp_roles = []").await;
    c.user("head1", Role::Supervisor).await;
    let b = Browser::start().await;
    b.log_in(&c.base, "head1", PASSWORD_OF).await;
    b.at("/supervisor", "").await;
    b.feed_open().await;
    let board_has = |css: &str, text: &str| {
        format!(
            "const el = document.querySelector('{css}'); \
             return !!el && el.textContent.includes('{text}') \
             && document.getElementById('board').getAttribute('data-trigger') === 'event'"
        )
    };

    let mut caller = Caller::dial(c.hotline.sip_addr, "8800", "+79785550001").await;
    let queued = until_hotline(
        || async {
            c.hotline
                .live_calls()
                .await
                .iter()
                .any(|x| x.stage == "queued" && x.phone.contains("79785550001"))
        },
        "the caller is queued",
    )
    .await;
    let shown = until_page(
        &b,
        &board_has("#waiting-callers tbody", "+79785550001"),
        "the waiting caller on the board",
        Duration::from_secs(5),
    )
    .await;
    let lag = shown.saturating_duration_since(queued);
    assert!(
        lag < Duration::from_secs(1),
        "the waiting caller shown {lag:?} after"
    );
    assert_eq!(b.text_of("waiting").await, "1");

    // The operator's phone registers; the supervisor signs them in from the board, and
    // the waiting caller is put through.
    let mut op = Operator::register(c.hotline.sip_addr, OPERATOR, PASSWORD).await;
    c.phone_registered(OPERATOR).await;
    b.press("Войти в очередь").await;
    b.at("/supervisor", "signed in").await;
    b.feed_open().await;
    op.ringing(Duration::from_secs(10))
        .await
        .expect("the operator's phone rings");
    op.answer().await;
    let busy = until_hotline(
        || async {
            c.hotline
                .acd
                .snapshot()
                .await
                .operators
                .iter()
                .any(|o| o.extension == OPERATOR && o.state == OperatorState::Busy)
        },
        "the operator is busy",
    )
    .await;
    let shown = until_page(
        &b,
        &board_has(
            "#operators tbody tr[data-extension=\"1001\"] .state",
            "разговор",
        ),
        "the operator busy on the board",
        Duration::from_secs(5),
    )
    .await;
    let lag = shown.saturating_duration_since(busy);
    assert!(
        lag < Duration::from_secs(1),
        "the busy operator shown {lag:?} after"
    );
    let calls = b.text_of("calls").await;
    assert!(
        calls.contains("+79785550001") && calls.contains("1001"),
        "{calls}"
    );

    caller.hang_up().await;
    b.close().await;
}

/// An alert fires at its threshold: with `waiting_max = 0` one waiting caller starts an
/// episode, which the wallboard shows live and the supervisors get by e-mail (a real SMTP
/// exchange) once, however many checks see it; the caller leaving ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_fires_at_its_threshold_on_the_wallboard_and_by_mail_once() {
    use support::notify::SmtpServer;
    use support::phone::Caller;
    let mut smtp = SmtpServer::start().await;
    // The hotline's log, shown if the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("hotline=info")
        .with_test_writer()
        .try_init();
    let c = Console::start(&format!(
        "totp_roles = []\n\
         [alerts]\nwaiting_max = 0\ncheck_every_s = 1\n\
         [notify]\npublic_url = \"https://hotline.bank.test\"\n\
         supervisor_emails = [\"head@bank.test\"]\nfrom = \"hotline@bank.test\"\npoll_ms = 100\n\
         [notify.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\ntimeout_s = 2\n",
        smtp.addr.port()
    ))
    .await;
    c.user("head1", Role::Supervisor).await;
    let b = Browser::start().await;
    b.log_in(&c.base, "head1", PASSWORD_OF).await;
    b.at("/supervisor", "").await;
    b.feed_open().await;
    assert!(b
        .client
        .find_all(Locator::Css("#alerts .alert"))
        .await
        .unwrap()
        .is_empty());

    let mut caller = Caller::dial(c.hotline.sip_addr, "8800", "+79785550002").await;
    // After the greeting, the caller joins the queue.
    until_hotline(
        || async { !c.hotline.acd.snapshot().await.waiting.is_empty() },
        "the caller is queued",
    )
    .await;
    until_page(
        &b,
        "const a = document.querySelector('#alerts'); \
         return !!a && a.textContent.includes('В очереди 1 звонящий (порог 0)')",
        "the alert on the wallboard",
        Duration::from_secs(10),
    )
    .await;
    let mail = smtp
        .next(Duration::from_secs(10))
        .await
        .expect("the alert is mailed");
    assert_eq!(mail.to, ["head@bank.test"]);
    let subject = mail.header("Subject").unwrap();
    assert!(subject.contains("В очереди 1 звонящий"), "{subject}");
    assert!(mail.text().contains("https://hotline.bank.test/supervisor"));
    // Checks go on every second while the caller waits: the episode is mailed once.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(smtp.drain(Duration::from_millis(500)).await.is_empty());
    let open: i64 =
        sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM alerts WHERE ended_at IS NULL")
            .fetch_one(c.hotline.records.store.pool())
            .await
            .unwrap();
    assert_eq!(open, 1);

    caller.hang_up().await;
    until_page(
        &b,
        "return document.querySelectorAll('#alerts .alert').length === 0",
        "the alert over",
        Duration::from_secs(10),
    )
    .await;
    let ended: Option<i64> = sqlx::query_scalar("SELECT ended_at FROM alerts")
        .fetch_one(c.hotline.records.store.pool())
        .await
        .unwrap();
    assert!(ended.is_some(), "the episode ended");
    b.close().await;
    smtp.stop();
}

/// A call in hand: operator 1001's phone registered and signed in from their page; a caller
/// with an earlier appeal calls. The operator's page shows the number, the greeting and
/// the earlier appeal live; the operator fills the journal entry and registers an ATM
/// security ticket, seeing the category's hint as soon as it is chosen. The security
/// service sees the ticket on /desk without reloading, moves it to inspection, and the
/// buttons change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_hand_its_journal_entry_and_an_atm_ticket_to_the_desk() {
    use hotline::records::journal::NewCall;
    use support::phone::{Caller, Operator};
    let c = Console::start(
        "totp_roles = []\nbank_name = \"РНКБ\"\n\
         [[tickets.atms]]\nid = \"ATM-7\"\naddress = \"г. Симферополь, ул. Ленина, 7\"\n",
    )
    .await;
    c.user("operator1", Role::Operator).await;
    c.user("security1", Role::Security).await;
    let records = &c.hotline.records;
    let earlier = records
        .record_call(&NewCall {
            call_id: Some("earlier-1".into()),
            arrived_at: chrono::Utc::now() - chrono::Duration::days(2),
            phone: "+79785550003".into(),
            caller_name: None,
        })
        .await
        .unwrap();
    let patch = hotline::records::journal::EntryPatch {
        content: Some(Some("Прошлый вопрос о карте".into())),
        ..Default::default()
    };
    records
        .patch_entry(earlier, &patch, "operator1")
        .await
        .unwrap();

    // The security service watches its desk.
    let desk = Browser::start().await;
    desk.log_in(&c.base, "security1", PASSWORD_OF).await;
    desk.at("/desk", "").await;
    desk.feed_open().await;

    let mut op = Operator::register(c.hotline.sip_addr, OPERATOR, PASSWORD).await;
    c.phone_registered(OPERATOR).await;
    let b = Browser::start().await;
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    b.at("/operator", "").await;
    b.press("Войти в очередь").await;
    b.at("/operator", "signed in").await;
    b.feed_open().await;

    let mut caller = Caller::dial(c.hotline.sip_addr, "8800", "+79785550003").await;
    op.ringing(Duration::from_secs(20))
        .await
        .expect("the operator's phone rings");
    until_page(
        &b,
        "const c = document.getElementById('caller'); \
         return !!c && c.textContent.includes('+79785550003')",
        "the ringing call on the operator's page",
        Duration::from_secs(5),
    )
    .await;
    op.answer().await;
    until_page(
        &b,
        "const h = document.querySelector('#in-hand h2'); \
         return !!h && h.textContent.startsWith('Разговор')",
        "the answered call on the operator's page",
        Duration::from_secs(5),
    )
    .await;
    let panel = b.text_of("in-hand").await;
    assert!(
        panel.contains("РНКБ, Тест operator1!"),
        "the script's greeting: {panel}"
    );
    assert!(
        panel.contains("Прошлый вопрос о карте"),
        "the earlier appeal: {panel}"
    );

    // The hold timer counts from the press and warns at its threshold: 120 s as served,
    // lowered to 1 s here so that the test does not wait two minutes.
    let warn_s = b
        .client
        .execute(
            "return document.querySelector('[data-hold-warn-s]').getAttribute('data-hold-warn-s')",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(warn_s.as_str(), Some("120"));
    // In one script, with the focus on the button as a click leaves it: a live refresh of
    // the part waits while the focus is in it, so the lowered threshold stays.
    b.client
        .execute(
            "document.querySelector('[data-hold-warn-s]').setAttribute('data-hold-warn-s', '1'); \
             const t = document.getElementById('hold-toggle'); t.focus(); t.click();",
            vec![],
        )
        .await
        .unwrap();
    until_page(
        &b,
        "const w = document.getElementById('hold-warning'); \
         return !!w && !w.hidden \
         && document.getElementById('hold-timer').textContent.startsWith('на удержании 0:0')",
        "the hold warning",
        Duration::from_secs(5),
    )
    .await;
    let label = b
        .client
        .execute(
            "const t = document.getElementById('hold-toggle'); const l = t.textContent; \
             t.click(); return l;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(label.as_str(), Some("Вернуться к клиенту"));
    until_page(
        &b,
        "return document.getElementById('hold-timer').textContent === '' \
         && document.getElementById('hold-warning').hidden",
        "back from hold",
        Duration::from_secs(5),
    )
    .await;

    // The journal entry of this call.
    b.follow("entry").await;
    let entry_path = b.path().await;
    let content = b.field("Содержание сообщения").await;
    content.send_keys("Банкомат не вернул карту").await.unwrap();
    b.press("Сохранить").await;
    b.at(&entry_path, "saved").await;
    let entry_id: i64 = entry_path.rsplit('/').next().unwrap().parse().unwrap();
    let stored = hotline::store::journal::get(&records.store, entry_id)
        .await
        .unwrap();
    assert_eq!(stored.content.as_deref(), Some("Банкомат не вернул карту"));
    assert_eq!(stored.phone, "+79785550003");

    // The ATM ticket, from the call.
    b.open(&c.base, "/operator").await;
    b.follow("new-ticket").await;
    b.at("/operator/ticket", "the ticket form").await;
    let hint = b.client.find(Locator::Id("hint")).await.unwrap();
    assert_eq!(hint.text().await.unwrap(), "", "no hint before a category");
    b.choose("Категория", "security_card_captured_without_message")
        .await;
    let shown = hint.text().await.unwrap();
    assert!(
        shown.contains("возврат изъятой банкоматом карты"),
        "{shown}"
    );
    b.choose("Банкомат", "ATM-7").await;
    b.press("Зарегистрировать").await;
    let number = b.text_of("number").await;
    assert!(number.starts_with("АТМ-"), "{number}");

    // The security service's desk shows it without a reload.
    until_page(
        &desk,
        &format!(
            "const t = document.querySelector('#tickets'); \
             return !!t && t.textContent.includes('{number}') \
             && document.getElementById('desk').getAttribute('data-trigger') === 'event'"
        ),
        "the new ticket on the desk",
        Duration::from_secs(5),
    )
    .await;
    let atms = desk.text_of("atms").await;
    assert!(
        atms.contains("приостановлен") && atms.contains(&number),
        "{atms}"
    );
    desk.follow_link(&number).await;
    let buttons = |b: &Browser| {
        let client = b.client.clone();
        async move {
            let mut out = Vec::new();
            for e in client
                .find_all(Locator::Css("#moves button"))
                .await
                .unwrap()
            {
                out.push(e.text().await.unwrap());
            }
            out
        }
    };
    assert_eq!(buttons(&desk).await, ["проверка"]);
    assert!(
        desk.client
            .find(Locator::LinkText("запись журнала"))
            .await
            .is_err(),
        "no link to a journal the security service may not open"
    );
    desk.type_in("Комментарий", "Выезд на место").await;
    desk.press("проверка").await;
    let state = desk.text_of("state").await;
    assert_eq!(state, "проверка");
    assert_eq!(buttons(&desk).await, ["не подтвердился", "подтвердился"]);
    let timeline = desk.text_of("timeline").await;
    assert!(
        timeline.contains("Выезд на место") && timeline.contains("security1"),
        "{timeline}"
    );

    caller.hang_up().await;
    b.close().await;
    desk.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_shows_its_reason_and_a_callback_form_goes_from_the_call_to_done() {
    use support::phone::{Caller, Operator};
    let c = Console::start("totp_roles = []").await;
    c.user("operator1", Role::Operator).await;
    c.user("card1", Role::CardDepartment).await;
    c.user("supervisor1", Role::Supervisor).await;
    let mut op = Operator::register(c.hotline.sip_addr, OPERATOR, PASSWORD).await;
    c.phone_registered(OPERATOR).await;
    let b = Browser::start().await;
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    b.at("/operator", "").await;
    b.press("Войти в очередь").await;

    // A pause with its reason, on the operator's page and on the wallboard.
    b.choose("Причина паузы", "lunch").await;
    b.press("Пауза").await;
    b.at("/operator", "paused").await;
    assert_eq!(b.text_of("state").await, "пауза");
    assert_eq!(b.text_of("pause-reason").await, "(обед)");
    let sup = Browser::start().await;
    sup.log_in(&c.base, "supervisor1", PASSWORD_OF).await;
    sup.at("/supervisor", "").await;
    let board = sup.text_of("operators").await;
    assert!(board.contains("пауза (обед)"), "{board}");
    sup.close().await;
    let paused = c.hotline.acd.snapshot().await.operators;
    assert_eq!(
        paused[0].pause_reason,
        Some(hotline::callflow::queue::PauseReason::Lunch)
    );
    b.press("Войти в очередь").await;
    b.at("/operator", "back").await;
    assert!(b.client.find(Locator::Id("pause-reason")).await.is_err());
    b.feed_open().await;

    // A call, and a callback form from it, sent to the card department.
    let mut caller = Caller::dial(c.hotline.sip_addr, "8800", "+79785550011").await;
    op.ringing(Duration::from_secs(20))
        .await
        .expect("the operator's phone rings");
    op.answer().await;
    until_page(
        &b,
        "const h = document.querySelector('#in-hand h2'); \
         return !!h && h.textContent.startsWith('Разговор') && !!document.getElementById('new-callback')",
        "the answered call on the operator's page",
        Duration::from_secs(5),
    )
    .await;
    b.follow("new-callback").await;
    b.at("/operator/callback", "the callback form").await;
    let phone = b.field("Телефон заявителя").await;
    assert_eq!(phone.prop("value").await.unwrap().unwrap(), "+79785550011");
    let name = b.field("ФИО заявителя").await;
    name.clear().await.unwrap();
    name.send_keys("Петров П. П.").await.unwrap();
    b.type_in("Вопрос", "Почему не пришёл кешбэк за ноябрь")
        .await;
    b.type_in("Время словами клиента", "после 18:00").await;
    b.field("Передать сотруднику")
        .await
        .send_keys("Иванова (отдел карт)")
        .await
        .unwrap();
    b.press("Сохранить").await;
    b.at("/callbacks", "saved").await;
    let created = b.text_of("created").await;
    let id: i64 = created
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{created}"));
    let form = hotline::store::callback::get(&c.hotline.records.store, id)
        .await
        .unwrap();
    assert_eq!(form.phone, "+79785550011");
    assert_eq!(form.operator, OPERATOR, "field 8 is the operator");
    assert_eq!(form.caller_name.as_deref(), Some("Петров П. П."));
    assert_eq!(form.assigned_to.as_deref(), Some("Иванова (отдел карт)"));
    assert!(form.sent_at.is_some() && form.journal_id.is_some());
    let mins = (form.convenient_at - chrono::Utc::now()).num_minutes();
    assert!(
        (55..=61).contains(&mins),
        "field 7 defaults to an hour on: {mins}"
    );
    let row = b.text_of("callbacks").await;
    assert!(row.contains("передана, ожидает звонка"), "{row}");
    // The call in hand now shows the caller's open form.
    b.open(&c.base, "/operator").await;
    let open = b.text_of("open-callbacks").await;
    assert!(open.contains("кешбэк"), "{open}");
    caller.hang_up().await;

    // The card department calls back and writes field 10.
    let card = Browser::start().await;
    card.log_in(&c.base, "card1", PASSWORD_OF).await;
    card.at("/desk", "").await;
    card.open(&c.base, "/callbacks?status=open").await;
    card.type_in("Результат звонка", "Кешбэк начислен 3 декабря")
        .await;
    card.press("Перезвонили").await;
    let done = card.text_of("callbacks").await;
    assert!(
        done.contains("перезвонили") && done.contains("(card1)") && done.contains("начислен"),
        "{done}"
    );
    card.close().await;
    let form = hotline::store::callback::get(&c.hotline.records.store, id)
        .await
        .unwrap();
    assert_eq!(form.called_back_by.as_deref(), Some("card1"));
    assert_eq!(form.result.as_deref(), Some("Кешбэк начислен 3 декабря"));

    // The operator's own list: nothing open, the form among the done.
    b.open(&c.base, "/callbacks?status=open").await;
    b.text_of("empty").await;
    b.open(&c.base, "/callbacks?status=done").await;
    assert!(b.text_of("callbacks").await.contains("начислен"));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_sees_health_and_config_issues_tokens_and_purges_after_confirming() {
    use hotline::records::journal::NewCall;
    let c = Console::start("totp_roles = []").await;
    c.user("admin1", Role::Admin).await;
    c.user("operator1", Role::Operator).await;
    let records = &c.hotline.records;
    let old = records
        .record_call(&NewCall {
            call_id: Some("old-1".into()),
            arrived_at: "2019-03-01T08:00:00Z".parse().unwrap(),
            phone: "+79785550077".into(),
            caller_name: None,
        })
        .await
        .unwrap();
    sqlx::query("UPDATE journal_entries SET last_activity_at = $1 WHERE id = $2")
        .bind(hotline::store::ms("2019-03-01T08:10:00Z".parse().unwrap()))
        .bind(old)
        .execute(records.store.pool())
        .await
        .unwrap();
    let young = records
        .record_call(&NewCall {
            call_id: Some("young-1".into()),
            arrived_at: chrono::Utc::now(),
            phone: "+79785550078".into(),
            caller_name: None,
        })
        .await
        .unwrap();

    let b = Browser::start().await;
    b.log_in(&c.base, "admin1", PASSWORD_OF).await;
    b.at("/admin", "").await;

    // Health, in words.
    b.follow("nav-health").await;
    assert_eq!(b.text_of("status").await, "работает");
    let health = b.text_of("health").await;
    for want in [
        "SIP работает",
        "sqlite, доступна",
        "Рабочее время",
        "Уведомления без адресата",
    ] {
        assert!(health.contains(want), "{want}: {health}");
    }

    // The running configuration hides the phones' passwords.
    b.follow("nav-config").await;
    let config = b.text_of("config").await;
    assert!(
        config.contains("[sip]") && config.contains("1001"),
        "{config}"
    );
    assert!(
        !config.contains(PASSWORD),
        "a password on the page: {config}"
    );
    assert!(config.contains("••••••"), "{config}");

    // A token for a machine: shown once, works on the API, stops when revoked.
    b.follow("nav-tokens").await;
    b.type_in("Владелец (система или сотрудник)", "Мониторинг")
        .await;
    b.choose("Роль", "supervisor").await;
    b.press("Выпустить токен").await;
    let token = b.text_of("new-token").await;
    let http = reqwest::Client::new();
    let stats = |token: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/journal", c.base);
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(stats(token.clone()).await, 200);
    let row = b.text_of("tokens").await;
    assert!(
        row.contains("Мониторинг") && row.contains("руководитель"),
        "{row}"
    );
    b.open(&c.base, "/admin/tokens").await;
    assert!(
        b.client.find(Locator::Id("new-token")).await.is_err(),
        "the secret is shown once"
    );
    b.press("Отозвать").await;
    assert_eq!(stats(token).await, 401);

    // Retention: the dry run lists the 2019 entry only; a purge needs the word typed.
    b.follow("nav-retention").await;
    let summary = b.text_of("summary").await;
    assert!(
        summary.contains("Проверка") && summary.contains("1 запись журнала"),
        "{summary}"
    );
    assert!(hotline::store::journal::get(&records.store, old)
        .await
        .is_ok());
    b.type_in("Для подтверждения введите слово УДАЛИТЬ", "удалить")
        .await;
    b.press("Удалить").await;
    assert!(b
        .text()
        .await
        .contains("для удаления введите слово УДАЛИТЬ"));
    assert!(
        hotline::store::journal::get(&records.store, old)
            .await
            .is_ok(),
        "nothing purged without the word"
    );
    b.open(&c.base, "/admin/retention").await;
    b.type_in("Для подтверждения введите слово УДАЛИТЬ", "УДАЛИТЬ")
        .await;
    b.press("Удалить").await;
    let summary = b.text_of("summary").await;
    assert!(
        summary.starts_with("Удалено: 1 запись журнала"),
        "{summary}"
    );
    assert!(hotline::store::journal::get(&records.store, old)
        .await
        .is_err());
    assert!(hotline::store::journal::get(&records.store, young)
        .await
        .is_ok());
    b.close().await;

    // None of it is an operator's.
    let op = Browser::start().await;
    op.log_in(&c.base, "operator1", PASSWORD_OF).await;
    op.at("/operator", "").await;
    for page in [
        "/admin/health",
        "/admin/config",
        "/admin/tokens",
        "/admin/retention",
    ] {
        op.client.goto(&format!("{}{page}", c.base)).await.unwrap();
        assert!(
            op.text().await.contains("Доступ запрещён"),
            "{page}: {}",
            op.text().await
        );
    }
    op.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_for_a_period_count_calls_by_day_satisfaction_and_atm_incidents() {
    use hotline::records::atm::AtmCategory;
    use hotline::records::journal::NewCall;
    use hotline::records::tickets::NewTicket;
    let c = Console::start(
        "totp_roles = []\n\
         [[tickets.atms]]\nid = \"ATM-9\"\naddress = \"г. Севастополь, ул. Большая Морская, 9\"\n",
    )
    .await;
    c.user("supervisor1", Role::Supervisor).await;
    let records = &c.hotline.records;
    let now = chrono::Utc::now();
    // Four calls at local noon today (one day whenever the test runs): answered in 5 s and
    // in 60 s, abandoned, and a repeat complaint.
    let noon = records.calendar.start_of_day(now) + chrono::Duration::hours(12);
    let mut ids = Vec::new();
    for (i, (disposition, wait_ms)) in [
        ("answered", 5_000),
        ("answered", 60_000),
        ("abandoned", 30_000),
        ("answered", 2_000),
    ]
    .into_iter()
    .enumerate()
    {
        let id = records
            .record_call(&NewCall {
                call_id: Some(format!("stats-{i}")),
                arrived_at: noon + chrono::Duration::minutes(i as i64),
                phone: format!("+7978555010{i}"),
                caller_name: None,
            })
            .await
            .unwrap();
        sqlx::query("UPDATE journal_entries SET disposition = $1, wait_ms = $2 WHERE id = $3")
            .bind(disposition)
            .bind(wait_ms)
            .bind(id)
            .execute(records.store.pool())
            .await
            .unwrap();
        ids.push(id);
    }
    sqlx::query("UPDATE journal_entries SET appeal_type = 'complaint' WHERE id IN ($1, $2)")
        .bind(ids[0])
        .bind(ids[3])
        .execute(records.store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE journal_entries SET repeat_of = $1 WHERE id = $2")
        .bind(ids[0])
        .bind(ids[3])
        .execute(records.store.pool())
        .await
        .unwrap();
    records
        .register_ticket(
            &NewTicket {
                kind: AtmCategory::FaultOutOfCash.kind(),
                category: AtmCategory::FaultOutOfCash,
                atm_id: "ATM-9".into(),
                journal_id: Some(ids[1]),
                phone: None,
                caller_name: None,
                description: "Нет наличных".into(),
            },
            Some(OPERATOR),
            Role::Operator,
            "operator1",
        )
        .await
        .unwrap();

    let b = Browser::start().await;
    b.log_in(&c.base, "supervisor1", PASSWORD_OF).await;
    b.at("/supervisor", "").await;
    b.open(&c.base, "/stats").await;
    assert_eq!(b.text_of("total").await, "4");
    assert_eq!(b.text_of("answered").await, "3");
    assert_eq!(b.text_of("abandoned").await, "1");
    // The service level as the API's /stats counts it, over the same calls.
    let api = hotline::store::stats::compute(
        &records.store,
        noon - chrono::Duration::hours(1),
        noon + chrono::Duration::hours(1),
        records.settings.service_level,
    )
    .await
    .unwrap();
    let sl = b.text_of("service-level").await;
    assert!(
        sl.starts_with(&format!("{:.1} %", api.service_level.unwrap() * 100.0)),
        "{sl} vs {api:?}"
    );
    assert_eq!(b.text_of("complaints").await, "2");
    let sat = b.text_of("satisfaction").await;
    assert!(sat.starts_with("низкий: повторных жалоб 1 из 2"), "{sat}");
    // Seven days charted; bars only where there were calls.
    let bars = b
        .client
        .find_all(Locator::Css("#calls-chart rect"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 2, "answered and abandoned: the calls' day only");
    let atm = b.text_of("by-atm").await;
    assert!(
        atm.contains("ATM-9") && atm.contains("Большая Морская"),
        "{atm}"
    );
    let cat = b.text_of("by-category").await;
    assert!(cat.contains("закончились деньги"), "{cat}");
    // A period that ended before the calls has none of them; a reversed one is refused.
    let day = |d: i64| (now - chrono::Duration::days(d)).format("%Y-%m-%d");
    b.client
        .goto(&format!("{}/stats?from={}&to={}", c.base, day(30), day(8)))
        .await
        .unwrap();
    assert_eq!(b.text_of("total").await, "0");
    b.text_of("no-atms").await;
    b.open(&c.base, "/stats?from=2026-02-01&to=2026-01-01")
        .await;
    assert!(b.text().await.contains("`to`: конец периода раньше начала"));
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_keep_the_quick_answers_operators_read_them() {
    let c = Console::start("totp_roles = []").await;
    c.user("supervisor1", Role::Supervisor).await;
    c.user("operator1", Role::Operator).await;
    let sup = Browser::start().await;
    sup.log_in(&c.base, "supervisor1", PASSWORD_OF).await;
    sup.at("/supervisor", "").await;
    sup.open(&c.base, "/quick-answers").await;
    sup.text_of("no-answers").await;
    sup.choose("Тема", "rates").await;
    sup.type_in("Заголовок", "Доллар США").await;
    sup.type_in("Текст", "Покупка 90,10 ₽, продажа 92,40 ₽")
        .await;
    sup.press("Добавить").await;
    sup.at("/quick-answers", "added").await;
    assert!(sup.text_of("answers").await.contains("Покупка 90,10"));

    let op = Browser::start().await;
    op.log_in(&c.base, "operator1", PASSWORD_OF).await;
    op.at("/operator", "").await;
    let quick = op.text_of("quick").await;
    assert!(
        quick.contains("Курсы валют") && quick.contains("Доллар США"),
        "{quick}"
    );
    // The operator reads, and may not write: no form, and a forged post is refused.
    op.open(&c.base, "/quick-answers").await;
    assert!(op.client.find(Locator::Id("new-answer")).await.is_err());
    op.open(&c.base, "/operator").await;
    let status = op
        .client
        .execute(
            "const csrf = document.querySelector('input[name=csrf]').value; \
             return fetch('/quick-answers', {method: 'POST', \
               headers: {'Content-Type': 'application/x-www-form-urlencoded'}, \
               body: 'csrf=' + encodeURIComponent(csrf) + '&topic=rates&title=x&body=y'}) \
             .then(r => r.status)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status.as_u64(), Some(403));

    // The supervisor changes the rate; the operator sees the new one, the log the old one.
    sup.client
        .execute(
            "document.querySelector('#answers details').open = true",
            vec![],
        )
        .await
        .unwrap();
    // The first field labelled «Текст» is the answer's own (the new answer's comes last).
    let body = sup.field("Текст").await;
    body.clear().await.unwrap();
    body.send_keys("Покупка 91,00 ₽, продажа 93,00 ₽")
        .await
        .unwrap();
    sup.press("Сохранить изменения").await;
    op.client.refresh().await.unwrap();
    // The texts are folded (<details>): read what the page holds, shown or not.
    let quick = op
        .client
        .execute(
            "return document.getElementById('quick').textContent",
            vec![],
        )
        .await
        .unwrap();
    let quick = quick.as_str().unwrap();
    assert!(
        quick.contains("91,00") && !quick.contains("90,10"),
        "{quick}"
    );
    let (old, new): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT old_value, new_value FROM audit_log WHERE entity = 'quick_answer' \
         AND action = 'update' AND field = 'body'",
    )
    .fetch_one(c.hotline.records.store.pool())
    .await
    .unwrap();
    assert_eq!(old.as_deref(), Some("Покупка 90,10 ₽, продажа 92,40 ₽"));
    assert_eq!(new.as_deref(), Some("Покупка 91,00 ₽, продажа 93,00 ₽"));
    op.close().await;
    sup.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_atm_waits_in_the_operators_inbox_and_arrives_live() {
    use hotline::records::atm::AtmCategory;
    use hotline::records::tickets::{Caller, NewTicket, TicketState};
    let c = Console::start(
        "totp_roles = []\n\
         [[tickets.atms]]\nid = \"ATM-5\"\naddress = \"г. Ялта, наб. Ленина, 5\"\n",
    )
    .await;
    c.user("operator1", Role::Operator).await;
    let records = &c.hotline.records;
    let fault = |phone: &'static str| NewTicket {
        kind: AtmCategory::FaultOutOfCash.kind(),
        category: AtmCategory::FaultOutOfCash,
        atm_id: "ATM-5".into(),
        journal_id: None,
        phone: Some(phone.into()),
        caller_name: None,
        description: String::new(),
    };
    let restore = |id: i64| async move {
        let op = Caller {
            role: Role::Operator,
            operator: Some(OPERATOR),
            actor: "operator1",
        };
        let card = Caller {
            role: Role::CardDepartment,
            operator: None,
            actor: "card1",
        };
        let now = chrono::Utc::now();
        records
            .transition_ticket(id, TicketState::Routed, None, op, now)
            .await
            .unwrap();
        records
            .transition_ticket(id, TicketState::Restored, None, card, now)
            .await
            .unwrap()
    };
    // Restored while the operator is away.
    let first = records
        .register_ticket(
            &fault("+79785550021"),
            Some(OPERATOR),
            Role::Operator,
            "operator1",
        )
        .await
        .unwrap()
        .ticket;
    restore(first.id).await;

    let b = Browser::start().await;
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    b.at("/operator", "").await;
    let notices = b.text_of("notices").await;
    assert!(
        notices.contains(&first.number) && notices.contains("+79785550021"),
        "kept for the next login: {notices}"
    );
    let own = b.text_of("own-tickets").await;
    assert!(
        own.contains(&first.number) && own.contains("работа восстановлена"),
        "{own}"
    );
    b.press("Прочитано").await;
    b.at("/operator", "read").await;
    assert!(b
        .client
        .find(Locator::Css("#notices li.unread"))
        .await
        .is_err());

    // Restored while the operator watches, by the card department through the API: on
    // the page without a reload.
    b.feed_open().await;
    let second = records
        .register_ticket(
            &fault("+79785550022"),
            Some(OPERATOR),
            Role::Operator,
            "operator1",
        )
        .await
        .unwrap()
        .ticket;
    let (_, card_token) = records
        .create_token("card-system", Role::CardDepartment, None)
        .await
        .unwrap();
    let (_, op_token) = records
        .create_token("operator-phone", Role::Operator, Some(OPERATOR))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    for (token, to) in [(&op_token, "routed"), (&card_token, "restored")] {
        let r = http
            .post(format!(
                "{}/api/v1/atm/tickets/{}/transition",
                c.base, second.id
            ))
            .bearer_auth(token)
            .json(&serde_json::json!({ "to": to }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{to}: {}", r.text().await.unwrap());
    }
    until_page(
        &b,
        &format!(
            "const n = document.querySelector('#notices li.unread'); \
             return !!n && n.textContent.includes('{}') \
             && document.getElementById('inbox').getAttribute('data-trigger') === 'event'",
            second.number
        ),
        "the restoration on the operator's page",
        Duration::from_secs(5),
    )
    .await;
    b.close().await;
}

/// The README's screenshots (`docs/screenshots/*.png`) from a seeded hotline, at 1366×768:
/// `bash scripts/screenshots.sh` runs this (it is not part of the suite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "makes docs/screenshots; run by scripts/screenshots.sh"]
async fn screenshots_for_the_readme() {
    use hotline::records::journal::{CallProgress, Disposition, EntryPatch, NewCall};
    use support::phone::{Caller, Operator};
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let c = Console::start(
        "totp_roles = []\nbank_name = \"РНКБ\"\n\
         [alerts]\nwaiting_max = 0\ncheck_every_s = 1\n\
         [[tickets.atms]]\nid = \"ATM-7\"\naddress = \"г. Симферополь, ул. Ленина, 7\"\n",
    )
    .await;
    for (login, role) in [
        ("operator1", Role::Operator),
        ("head1", Role::Supervisor),
        ("security1", Role::Security),
        ("admin1", Role::Admin),
    ] {
        c.user(login, role).await;
    }
    // A morning's journal: answered, abandoned and voicemail calls with their content.
    let records = &c.hotline.records;
    let now = chrono::Utc::now();
    let phones = [
        "+79781234567",
        "+79787654321",
        "+79780001122",
        "+79785550003",
    ];
    let mut first = 0;
    for i in 0..24i64 {
        let arrived = now - chrono::Duration::minutes((24 - i) * 7);
        let id = records
            .record_call(&NewCall {
                call_id: Some(format!("shot-{i}")),
                arrived_at: arrived,
                phone: phones[i as usize % phones.len()].into(),
                caller_name: Some(
                    ["Иванов И. И.", "Петрова А. С.", "ООО «Ромашка»"][i as usize % 3].into(),
                ),
            })
            .await
            .unwrap();
        first = if first == 0 { id } else { first };
        let disposition = match i % 6 {
            0 => Disposition::Abandoned,
            3 => Disposition::Voicemail,
            _ => Disposition::Answered,
        };
        let answered = disposition == Disposition::Answered;
        hotline::store::journal::update_progress(
            &records.store,
            id,
            &CallProgress {
                answered_at: answered.then(|| arrived + chrono::Duration::seconds(8 + i % 30)),
                ended_at: Some(arrived + chrono::Duration::minutes(3)),
                wait_ms: Some(1000 * (8 + i % 30)),
                disposition: Some(disposition),
                operator: answered.then(|| OPERATOR.to_string()),
                recording: None,
            },
        )
        .await
        .unwrap();
        let content = [
            "Вопрос о курсе валют",
            "Банкомат не выдал деньги",
            "Блокировка карты",
        ];
        let patch = EntryPatch {
            content: Some(Some(content[i as usize % 3].into())),
            ..Default::default()
        };
        records.patch_entry(id, &patch, "operator1").await.unwrap();
    }

    let shot = |b: &Browser, name: &'static str| {
        let client = b.client.clone();
        let path = out.join(format!("{name}.png"));
        async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            std::fs::write(&path, client.screenshot().await.unwrap()).unwrap();
        }
    };
    let b = Browser::start().await;
    b.open(&c.base, "/login").await;
    shot(&b, "login").await;

    // An operator on a call; a second caller waits (and raises the queue alert).
    let mut op = Operator::register(c.hotline.sip_addr, OPERATOR, PASSWORD).await;
    c.phone_registered(OPERATOR).await;
    b.log_in(&c.base, "operator1", PASSWORD_OF).await;
    b.at("/operator", "").await;
    b.press("Войти в очередь").await;
    b.feed_open().await;
    let mut caller = Caller::dial(c.hotline.sip_addr, "8800", "+79785550003").await;
    op.ringing(Duration::from_secs(20)).await.expect("rings");
    op.answer().await;
    until_page(
        &b,
        "const h = document.querySelector('#in-hand h2'); return !!h && h.textContent.startsWith('Разговор')",
        "the call in hand",
        Duration::from_secs(10),
    )
    .await;
    shot(&b, "operator").await;
    b.follow("new-ticket").await;
    b.choose("Категория", "security_card_captured_without_message")
        .await;
    b.choose("Банкомат", "ATM-7").await;
    shot(&b, "atm-ticket").await;
    b.press("Зарегистрировать").await;
    assert!(
        b.text_of("number").await.starts_with("АТМ-"),
        "{}",
        b.text().await
    );
    b.press("Выйти").await;

    let mut waiting = Caller::dial(c.hotline.sip_addr, "8800", "+79787654321").await;
    until_hotline(
        || async { !c.hotline.acd.snapshot().await.waiting.is_empty() },
        "a caller waits",
    )
    .await;
    b.log_in(&c.base, "head1", PASSWORD_OF).await;
    b.at("/supervisor", "").await;
    until_page(
        &b,
        "return document.querySelectorAll('#alerts .alert').length > 0",
        "the alert",
        Duration::from_secs(10),
    )
    .await;
    shot(&b, "supervisor").await;
    b.open(&c.base, "/journal").await;
    shot(&b, "journal").await;
    b.client
        .goto(&format!("{}/journal/{first}", c.base))
        .await
        .unwrap();
    shot(&b, "journal-entry").await;
    b.press("Выйти").await;

    b.log_in(&c.base, "security1", PASSWORD_OF).await;
    b.at("/desk", "").await;
    shot(&b, "desk").await;
    let link = b.client.find(Locator::Css("#tickets a")).await.unwrap();
    b.click_through(link).await;
    shot(&b, "ticket").await;
    b.press("Выйти").await;

    b.log_in(&c.base, "admin1", PASSWORD_OF).await;
    b.at("/admin", "").await;
    shot(&b, "admin").await;

    waiting.hang_up().await;
    caller.hang_up().await;
    b.close().await;
}
