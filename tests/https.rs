//! The console and the API over HTTPS (issue 20): a client that trusts the lab's CA gets
//! the pages with HSTS and Secure cookies, plain HTTP on the redirect listener is sent to
//! HTTPS, and the HTTPS port does not speak plain HTTP.

mod support;

use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_and_api_are_served_over_https_with_hsts_and_secure_cookies() {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = hotline::tls::self_signed(certs_dir.path(), &["127.0.0.1".into()], 30).unwrap();
    let tables = format!(
        "[http.tls]\ncert = \"{}\"\nkey = \"{}\"\nredirect_from = \"127.0.0.1:0\"\n\
         hsts_max_age_s = 86400\n",
        certs.cert.display(),
        certs.key.display()
    );
    let (hotline, _dir) = start_with("", &tables).await;
    let port = hotline.http_addr.port();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    // The API: health over HTTPS, with HSTS.
    let r = client
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=86400");

    // The console: the login form's cookie is Secure (and still HttpOnly, SameSite=Strict).
    let r = client
        .get(format!("https://127.0.0.1:{port}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(!cookies.is_empty());
    for c in &cookies {
        assert!(
            c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }
    assert!(r.text().await.unwrap().contains("Войти"));

    // A client that does not trust the CA is refused by the handshake.
    let stranger = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(stranger
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err());

    // Plain HTTP on the redirect listener: 308 to the same path on HTTPS.
    let plain = hotline.http_redirect_addr.expect("redirect listener");
    let (status, head) = raw_get(plain, "/journal?from=2026-12-01").await;
    assert_eq!(status, 308, "{head}");
    assert!(
        head.contains(&format!(
            "location: https://127.0.0.1:{port}/journal?from=2026-12-01"
        )),
        "{head}"
    );
    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let (status, _) = raw_get(hotline.http_addr, "/healthz").await;
    assert_eq!(status, 0);
    // At shutdown the HTTPS port is closed with the server.
    let addr = hotline.http_addr;
    hotline.shutdown().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the HTTPS port still accepts after shutdown"
    );
}

/// A GET over plain TCP: the status (0 if there was no HTTP answer) and the head, lower-cased.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let status = text
        .strip_prefix("http/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}
