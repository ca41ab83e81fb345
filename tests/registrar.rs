//! Operators' REGISTER with digest authentication (RFC 8760: SHA-256 and MD5), bindings,
//! expiry, stale nonces and the lock-out of addresses that keep failing.

mod support;

use hotline::sip::digest::client_authorization;
use hotline::sip::registrar::RegistrationEvent;
use hotline::sip::ua::Event;
use std::time::Duration;
use support::*;

/// A REGISTER client over UDP or TCP that keeps Call-ID and CSeq like a phone does.
struct Phone {
    peer: Peer,
    user: String,
    cseq: u32,
    call_id: String,
}

impl Phone {
    async fn new(transport: &str, server: std::net::SocketAddr, user: &str) -> Self {
        Phone {
            peer: Peer::new(transport, server).await,
            user: user.to_string(),
            cseq: 0,
            call_id: format!("reg-{user}-{}", rand_suffix()),
        }
    }

    /// Sends a REGISTER; `contact` None makes it a query; returns the response.
    async fn register(
        &mut self,
        contact: Option<&str>,
        expires: Option<u32>,
        authorization: Option<&str>,
    ) -> String {
        self.cseq += 1;
        let addr = self.peer.addr();
        let tr = self.peer.transport();
        let mut msg = format!(
            "REGISTER sip:hotline.test SIP/2.0\r\nVia: SIP/2.0/{tr} {addr};branch=z9hG4bK-reg-{}-{};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{u}@hotline.test>;tag=ph{}\r\nTo: <sip:{u}@hotline.test>\r\n\
             Call-ID: {}\r\nCSeq: {} REGISTER\r\n",
            self.call_id,
            self.cseq,
            self.cseq,
            self.call_id,
            self.cseq,
            u = self.user,
        );
        if let Some(c) = contact {
            msg.push_str(&format!("Contact: {c}\r\n"));
        }
        if let Some(e) = expires {
            msg.push_str(&format!("Expires: {e}\r\n"));
        }
        if let Some(a) = authorization {
            msg.push_str(&format!("Authorization: {a}\r\n"));
        }
        msg.push_str("Content-Length: 0\r\n\r\n");
        self.peer.send(&msg).await;
        self.peer
            .recv(Duration::from_secs(3))
            .await
            .expect("a response")
    }

    /// REGISTER, answer the challenge for `algorithm` with `password`, return the final response.
    async fn register_auth(
        &mut self,
        contact: Option<&str>,
        expires: Option<u32>,
        algorithm: &str,
        password: &str,
    ) -> String {
        let challenge = self.register(contact, expires, None).await;
        assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
        let www = headers(&challenge, "WWW-Authenticate")
            .into_iter()
            .find(|h| h.contains(&format!("algorithm={algorithm}")))
            .unwrap_or_else(|| panic!("no {algorithm} challenge in {challenge}"))
            .to_string();
        let auth = client_authorization(
            &www,
            "REGISTER",
            "sip:hotline.test",
            &self.user,
            password,
            "0a4f113b",
            1,
        )
        .expect("client computes the response");
        self.register(contact, expires, Some(&auth)).await
    }
}

/// The Authorization value operator 1001 (right password) sends for a challenge.
fn operator_auth(www: &str, cnonce: &str) -> String {
    client_authorization(
        www,
        "REGISTER",
        "sip:hotline.test",
        OPERATOR,
        PASSWORD,
        cnonce,
        1,
    )
    .expect("client computes the response")
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test]
async fn challenge_offers_sha256_then_md5() {
    let (hotline, _dir) = start().await;
    let mut phone = Phone::new("UDP", hotline.sip_addr, OPERATOR).await;
    let r = phone
        .register(Some("<sip:1001@127.0.0.1:5099>"), Some(300), None)
        .await;
    assert!(r.starts_with("SIP/2.0 401 Unauthorized"), "{r}");
    let www = headers(&r, "WWW-Authenticate");
    assert_eq!(www.len(), 2, "{r}");
    assert!(www[0].starts_with("Digest ") && www[0].contains("algorithm=SHA-256"));
    assert!(www[1].contains("algorithm=MD5"));
    for w in &www {
        assert!(
            w.contains("realm=\"hotline.test\"") && w.contains("qop=\"auth\""),
            "{w}"
        );
    }
    hotline.shutdown().await;
}

async fn register_query_unregister(transport: &str, algorithm: &str) {
    let (hotline, _dir) = start().await;
    let mut events = sip_events(&hotline);
    let mut phone = Phone::new(transport, hotline.sip_addr, OPERATOR).await;
    let contact = format!(
        "<sip:1001@{};transport={}>",
        phone.peer.addr(),
        transport.to_lowercase()
    );
    let r = phone
        .register_auth(Some(&contact), Some(300), algorithm, PASSWORD)
        .await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let bound = header(&r, "Contact").expect("binding listed");
    assert!(bound.contains(&phone.peer.addr().to_string()), "{bound}");
    let expires: u32 = bound.rsplit("expires=").next().unwrap().parse().unwrap();
    assert!((299..=300).contains(&expires), "{bound}");

    // A query (no Contact) lists the binding.
    let q = phone.register_auth(None, None, algorithm, PASSWORD).await;
    assert!(q.starts_with("SIP/2.0 200"), "{q}");
    assert_eq!(headers(&q, "Contact").len(), 1, "{q}");

    // Expires: 0 removes it.
    let r = phone
        .register_auth(Some(&contact), Some(0), algorithm, PASSWORD)
        .await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(headers(&r, "Contact").is_empty(), "{r}");

    let mut seen = Vec::new();
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(300), events.recv()).await {
        if let Event::Registration(r) = ev {
            seen.push(r);
        }
    }
    assert!(
        matches!(&seen[0], RegistrationEvent::Registered { extension, .. } if extension == "1001")
    );
    assert!(
        matches!(&seen[1], RegistrationEvent::Unregistered { extension, .. } if extension == "1001")
    );
    hotline.shutdown().await;
}

#[tokio::test]
async fn register_sha256_over_udp() {
    register_query_unregister("UDP", "SHA-256").await;
}

#[tokio::test]
async fn register_md5_over_tcp() {
    register_query_unregister("TCP", "MD5").await;
}

#[tokio::test]
async fn wildcard_contact_removes_all_bindings() {
    let (hotline, _dir) = start().await;
    let mut phone = Phone::new("UDP", hotline.sip_addr, OPERATOR).await;
    for port in [5071, 5072] {
        let c = format!("<sip:1001@127.0.0.1:{port}>");
        let r = phone
            .register_auth(Some(&c), Some(600), "MD5", PASSWORD)
            .await;
        assert!(r.starts_with("SIP/2.0 200"));
    }
    let q = phone.register_auth(None, None, "MD5", PASSWORD).await;
    assert_eq!(headers(&q, "Contact").len(), 2, "{q}");
    let r = phone
        .register_auth(Some("*"), Some(0), "MD5", PASSWORD)
        .await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(headers(&r, "Contact").is_empty());
    // `*` with a non-zero Expires is malformed.
    let r = phone
        .register_auth(Some("*"), Some(60), "MD5", PASSWORD)
        .await;
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    hotline.shutdown().await;
}

#[tokio::test]
async fn too_brief_expiry_is_423() {
    let (hotline, _dir) = start().await;
    let mut phone = Phone::new("UDP", hotline.sip_addr, OPERATOR).await;
    let r = phone
        .register_auth(Some("<sip:1001@127.0.0.1:5071>"), Some(10), "MD5", PASSWORD)
        .await;
    assert!(r.starts_with("SIP/2.0 423"), "{r}");
    assert_eq!(header(&r, "Min-Expires"), Some("60"));
    hotline.shutdown().await;
}

#[tokio::test]
async fn wrong_password_unknown_user_and_foreign_extension_are_403() {
    let (hotline, _dir) = start_trusted("", "auth_max_failures = 50").await;
    let mut phone = Phone::new("UDP", hotline.sip_addr, OPERATOR).await;
    let r = phone
        .register_auth(
            Some("<sip:1001@127.0.0.1:5071>"),
            Some(300),
            "SHA-256",
            "wrong-password",
        )
        .await;
    assert!(r.starts_with("SIP/2.0 403"), "{r}");

    // Unknown users are challenged like known ones, then refused the same way.
    let mut stranger = Phone::new("UDP", hotline.sip_addr, "1999").await;
    let r = stranger
        .register_auth(
            Some("<sip:1999@127.0.0.1:5071>"),
            Some(300),
            "MD5",
            "whatever1",
        )
        .await;
    assert!(r.starts_with("SIP/2.0 403"), "{r}");

    // Authenticating as 1001 does not let one register 1002's extension.
    let mut thief = Phone::new("UDP", hotline.sip_addr, "1002").await;
    let challenge = thief
        .register(Some("<sip:1002@127.0.0.1:5071>"), Some(300), None)
        .await;
    let www = headers(&challenge, "WWW-Authenticate")[0].to_string();
    let auth = operator_auth(&www, "c1");
    let r = thief
        .register(Some("<sip:1002@127.0.0.1:5071>"), Some(300), Some(&auth))
        .await;
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    hotline.shutdown().await;
}

#[tokio::test]
async fn repeated_failures_lock_the_address_out() {
    let (hotline, _dir) =
        start_trusted("", "auth_max_failures = 3\nauth_lockout_minutes = 15").await;
    let mut phone = Phone::new("UDP", hotline.sip_addr, OPERATOR).await;
    let contact = Some("<sip:1001@127.0.0.1:5071>");
    // A challenge kept from before the lock-out, to try the right password afterwards.
    let early = phone.register(contact, Some(300), None).await;
    let www = headers(&early, "WWW-Authenticate")[0].to_string();
    for _ in 0..3 {
        let r = phone
            .register_auth(contact, Some(300), "MD5", "guess-guess")
            .await;
        assert!(r.starts_with("SIP/2.0 403"), "{r}");
    }
    // Locked: no challenge any more…
    let r = phone.register(contact, Some(300), None).await;
    assert!(
        r.starts_with("SIP/2.0 403"),
        "locked address must not be challenged: {r}"
    );
    // …and even the right password is refused.
    let auth = operator_auth(&www, "c7");
    let r = phone.register(contact, Some(300), Some(&auth)).await;
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    // Over TCP from the same address too.
    let mut tcp_phone = Phone::new("TCP", hotline.sip_addr, OPERATOR).await;
    let r = tcp_phone.register(contact, Some(300), None).await;
    assert!(r.starts_with("SIP/2.0 403"), "{r}");
    hotline.shutdown().await;
}

#[tokio::test]
async fn stale_nonce_is_rechallenged_with_stale_true() {
    let (hotline, _dir) = start_trusted("", "nonce_lifetime_s = 1").await;
    let mut phone = Phone::new("UDP", hotline.sip_addr, OPERATOR).await;
    let contact = Some("<sip:1001@127.0.0.1:5071>");
    let challenge = phone.register(contact, Some(300), None).await;
    let www = headers(&challenge, "WWW-Authenticate")[0].to_string();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let auth = operator_auth(&www, "c9");
    let r = phone.register(contact, Some(300), Some(&auth)).await;
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let fresh = headers(&r, "WWW-Authenticate")[0].to_string();
    assert!(fresh.contains("stale=true"), "{fresh}");
    let auth = operator_auth(&fresh, "c9");
    let r = phone.register(contact, Some(300), Some(&auth)).await;
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    hotline.shutdown().await;
}
