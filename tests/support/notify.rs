//! Receivers of the hotline's notifications for tests: a small SMTP server (enough of RFC
//! 5321 for lettre: EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that hands over each message
//! it accepts, and a webhook endpoint that records each POST and can refuse the first ones.

use base64::Engine;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// The DATA, dot-unstuffed, CRLF line ends.
    pub data: String,
}

impl Mail {
    /// A header's value, unfolded, with RFC 2047 encoded words decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| decode_words(v.trim()))
        })
    }

    /// The body as text (base64 decoded when so encoded).
    pub fn text(&self) -> String {
        let body = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if encoding == "base64" {
            let joined: String = body.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(joined)
                    .expect("base64 body"),
            )
            .expect("UTF-8 body")
        } else {
            body.to_string()
        }
    }
}

/// Decodes `=?utf-8?b?…?=` words (what lettre writes for non-ASCII headers). As RFC 2047
/// says, the space between two encoded words is not text; the space next to a plain word
/// is.
fn decode_words(v: &str) -> String {
    let mut out = String::new();
    let mut prev_encoded = false;
    for (i, word) in v.split_whitespace().enumerate() {
        let lower = word.to_ascii_lowercase();
        let encoded = lower.starts_with("=?utf-8?b?") && word.ends_with("?=");
        if i > 0 && !(encoded && prev_encoded) {
            out.push(' ');
        }
        if encoded {
            let b = &word[10..word.len() - 2];
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b)
                .expect("encoded word");
            out.push_str(&String::from_utf8_lossy(&bytes));
        } else {
            out.push_str(word);
        }
        prev_encoded = encoded;
    }
    out
}

/// The SMTP server: every accepted message arrives on [`SmtpServer::next`].
pub struct SmtpServer {
    pub addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<Mail>,
    task: JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        SmtpServer::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// On a given address (to come back where a stopped one was).
    pub async fn start_on(addr: SocketAddr) -> SmtpServer {
        let listener = TcpListener::bind(addr).await.expect("bind SMTP");
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = session(stream, tx).await;
                });
            }
        });
        SmtpServer { addr, rx, task }
    }

    pub async fn next(&mut self, wait: Duration) -> Option<Mail> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Messages that arrive within `wait`.
    pub async fn drain(&mut self, wait: Duration) -> Vec<Mail> {
        let mut all = Vec::new();
        while let Some(m) = self.next(wait).await {
            all.push(m);
        }
        all
    }

    /// At least `n` mails, waiting up to `limit` in all for them (a loaded machine delays
    /// retries), then whatever else arrives within `settle` (so that a duplicate shows).
    pub async fn collect(&mut self, n: usize, limit: Duration, settle: Duration) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut all = Vec::new();
        while all.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(m) => all.push(m),
                None => break,
            }
        }
        all.extend(self.drain(settle).await);
        all
    }

    /// Stops listening (open sessions end with the test).
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn session(
    stream: tokio::net::TcpStream,
    tx: mpsc::UnboundedSender<Mail>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 smtp.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-smtp.test\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = address(&cmd[10..]);
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(address(&cmd[8..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 end with .\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let l = line.strip_prefix('.').unwrap_or(&line);
                data.push_str(l);
            }
            let _ = tx.send(Mail {
                from: from.clone(),
                to: to.clone(),
                data,
            });
            b"250 OK queued\r\n"
        } else if upper == "RSET" || upper == "NOOP" {
            b"250 OK\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

fn address(s: &str) -> String {
    let s = s.trim();
    let s = s.split_whitespace().next().unwrap_or("");
    s.trim_start_matches('<').trim_end_matches('>').to_string()
}

/// A POST the webhook endpoint received.
#[derive(Debug, Clone)]
pub struct Hook {
    pub event: Option<String>,
    pub delivery: Option<String>,
    pub signature: Option<String>,
    pub body: String,
}

/// The webhook endpoint: answers 503 to the first `refuse` requests, 200 after.
pub struct WebhookServer {
    pub url: String,
    rx: mpsc::UnboundedReceiver<Hook>,
    pub refused: Arc<AtomicUsize>,
}

impl WebhookServer {
    pub async fn start(refuse: usize) -> WebhookServer {
        use axum::http::{HeaderMap, StatusCode};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/hotline", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::unbounded_channel();
        let refused = Arc::new(AtomicUsize::new(0));
        let counter = refused.clone();
        let app = axum::Router::new().route(
            "/hooks/hotline",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let tx = tx.clone();
                let counter = counter.clone();
                async move {
                    if counter.load(Ordering::SeqCst) < refuse {
                        counter.fetch_add(1, Ordering::SeqCst);
                        return StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    };
                    let _ = tx.send(Hook {
                        event: h("x-hotline-event"),
                        delivery: h("x-hotline-delivery"),
                        signature: h("x-hotline-signature"),
                        body,
                    });
                    StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookServer { url, rx, refused }
    }

    pub async fn next(&mut self, wait: Duration) -> Option<Hook> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }
}
