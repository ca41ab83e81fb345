//! Headless Chromium for the browser tests (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver), shared by the console's and the browser phone's tests (each
//! includes this file with `#[path]`, so that the other test binaries do not link it).
#![allow(dead_code)]

use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// chromedriver on a free port, and a headless Chromium session through it. Both end when
/// this is dropped (the browser with its driver).
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    /// Where the browser saves downloads.
    pub downloads: std::path::PathBuf,
}

impl Browser {
    pub async fn start() -> Browser {
        Browser::start_with(&[]).await
    }

    /// [`Browser::start`] with more Chromium arguments.
    pub async fn start_with(extra: &[&str]) -> Browser {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver) runs");
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1366,768",
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": args,
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        driver,
                        _profile: profile,
                        downloads,
                    }
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no WebDriver session: {last:?}");
    }

    /// Kills Chromium at once (SIGKILL to every process of this profile), as a crashed
    /// machine or a pulled cable would end it: no beacon, no DTLS close, no goodbye.
    pub fn kill(&self) {
        let profile = format!("user-data-dir={}", self._profile.path().display());
        let _ = Command::new("pkill").args(["-9", "-f", &profile]).status();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// The input a visible label names (`<label for=…>`): how a person finds a field.
    pub async fn field(&self, label: &str) -> fantoccini::elements::Element {
        let l = self
            .client
            .find(Locator::XPath(&format!(
                "//label[normalize-space()='{label}']"
            )))
            .await
            .unwrap_or_else(|e| panic!("no label «{label}»: {e}"));
        let id = l
            .attr("for")
            .await
            .unwrap()
            .expect("the label names its field");
        self.client.find(Locator::Id(&id)).await.unwrap()
    }

    /// Types `text` into the field `label` names.
    pub async fn type_in(&self, label: &str, text: &str) {
        self.field(label).await.send_keys(text).await.unwrap();
    }

    /// Picks the option `value` of the list `label` names.
    pub async fn choose(&self, label: &str, value: &str) {
        self.field(label)
            .await
            .select_by_value(value)
            .await
            .unwrap();
    }

    /// Goes to `path` of the console at `base`.
    pub async fn open(&self, base: &str, path: &str) {
        self.client.goto(&format!("{base}{path}")).await.unwrap();
    }

    pub async fn button(&self, text: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::XPath(&format!(
                "//button[normalize-space()='{text}']"
            )))
            .await
            .unwrap_or_else(|e| panic!("no button «{text}»: {e}"))
    }

    /// Clicks and waits until the page it leads to has loaded: the old document carries a
    /// mark that a new one lacks.
    pub async fn click_through(&self, target: fantoccini::elements::Element) {
        self.client
            .execute("window.__before_click = true", vec![])
            .await
            .unwrap();
        target.click().await.unwrap();
        self.wait_for_new_page().await;
    }

    /// Follows the link `text` to its page. A page that re-renders itself live (the desk,
    /// the wallboard) may replace the link between finding and clicking it: then the new
    /// one is found and clicked.
    pub async fn follow_link(&self, text: &str) {
        for _ in 0..20 {
            let link = self
                .client
                .find(Locator::LinkText(text))
                .await
                .unwrap_or_else(|e| panic!("no link «{text}»: {e}"));
            self.client
                .execute("window.__before_click = true", vec![])
                .await
                .unwrap();
            match link.click().await {
                Ok(()) => return self.wait_for_new_page().await,
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference => {}
                Err(e) => panic!("clicking «{text}»: {e}"),
            }
        }
        panic!("the link «{text}» kept going stale");
    }

    pub async fn wait_for_new_page(&self) {
        for _ in 0..200 {
            let state = self
                .client
                .execute(
                    "return window.__before_click ? 'old' : document.readyState",
                    vec![],
                )
                .await
                .ok()
                .and_then(|v| v.as_str().map(str::to_string));
            if state.as_deref() == Some("complete") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the click led nowhere within 10 s");
    }

    /// Follows the link with this id.
    pub async fn follow(&self, id: &str) {
        let link = self.client.find(Locator::Id(id)).await.unwrap();
        self.click_through(link).await;
    }

    /// Presses the button with this text and waits for the page it leads to. A live part
    /// refreshed under the click (a stale button) is found again, as a person would.
    pub async fn press(&self, text: &str) {
        for _ in 0..5 {
            self.client
                .execute("window.__before_click = true", vec![])
                .await
                .unwrap();
            if self.button(text).await.click().await.is_ok() {
                return self.wait_for_new_page().await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not press «{text}»");
    }

    /// Asserts the page's path, showing the page when it is another.
    /// (The page may still be arriving: it is polled for up to 5 s.)
    pub async fn at(&self, want: &str, why: &str) {
        let mut path = String::new();
        for _ in 0..100 {
            path = self.path().await;
            if path == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{why}: at {path}, not {want}: {:?}", self.text().await);
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Types the login and password and presses «Войти». (Typing is tried again if the
    /// page was replaced under it, as a person would.)
    pub async fn log_in(&self, base: &str, login: &str, password: &str) {
        for _ in 0..20 {
            self.client.goto(&format!("{base}/login")).await.unwrap();
            let typed = async {
                self.field("Логин").await.send_keys(login).await?;
                self.field("Пароль").await.send_keys(password).await
            };
            if typed.await.is_ok() {
                self.press("Войти").await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not type into the login form");
    }

    pub async fn give_code(&self, code: &str) {
        self.type_in("Код", code).await;
        self.press("Подтвердить").await;
    }

    /// The text of the element with this id, as shown. Read in one script: a live part
    /// replaced between a find and a read would leave a stale element.
    pub async fn text_of(&self, id: &str) -> String {
        let v = self
            .client
            .execute(
                "const e = document.getElementById(arguments[0]); \
                 return e ? e.innerText.replace(/[ \\t]+/g, ' ').trim() : null;",
                vec![serde_json::Value::String(id.into())],
            )
            .await
            .unwrap();
        v.as_str()
            .unwrap_or_else(|| panic!("no #{id}: {:?}", v))
            .to_string()
    }

    /// Waits until the page's live feed (server-sent events) is connected.
    pub async fn feed_open(&self) {
        until_page(
            self,
            "return document.body.getAttribute('data-feed') === 'open'",
            "the page's live feed connects",
            Duration::from_secs(10),
        )
        .await;
    }

    pub async fn session_cookie(&self) -> Option<String> {
        let cookies = self.client.get_all_cookies().await.unwrap();
        cookies
            .iter()
            .find(|c| c.name() == "hotline_session")
            .map(|c| c.value().to_string())
    }
}

/// Polls `script` (a JavaScript expression's body returning a boolean) in the page until it
/// is true; returns when it became so.
pub async fn until_page(
    b: &Browser,
    script: &str,
    why: &str,
    wait: Duration,
) -> tokio::time::Instant {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let v = b.client.execute(script, vec![]).await.unwrap();
        if v.as_bool() == Some(true) {
            return tokio::time::Instant::now();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{why}: not within {wait:?}: {}",
            b.text().await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The TOTP secret of an `otpauth://` URI.
pub fn secret_of(uri: &str) -> Vec<u8> {
    let s = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    data_encoding::BASE32_NOPAD.decode(s.as_bytes()).unwrap()
}

/// The TOTP code for now.
pub fn code_now(secret: &[u8]) -> String {
    let step = hotline::records::account::totp::step_of(chrono::Utc::now().timestamp());
    format!(
        "{:06}",
        hotline::records::account::totp::code_at(secret, step)
    )
}
