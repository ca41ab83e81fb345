//! What the core's tests share: a UA on a fake clock, the caller's INVITE and in-dialog
//! requests, a registered operator and the responses of its phone.

pub(super) use super::{Event, Originate, RtpPorts, UaSettings, UserAgent};
use crate::sip::digest::Algorithm;
use crate::sip::registrar::RegistrarSettings;
use crate::sip::transaction::Timers;
pub(super) use crate::sip::{Peer, Transport};
pub(super) use std::collections::HashSet;
pub(super) use std::net::SocketAddr;
pub(super) use std::time::{Duration, Instant};

pub(super) const CALLER: &str = "192.0.2.10:5062";

/// The core's settings as the configuration's defaults make them for a hotline at
/// `hotline.test`, number 8800, listening on 127.0.0.1:5060.
pub(super) fn settings() -> UaSettings {
    let mut settings = UaSettings {
        hotline_numbers: HashSet::from(["8800".to_string()]),
        domain: "hotline.test".into(),
        server: format!("Hotline/{}", env!("CARGO_PKG_VERSION")),
        contact_host: String::new(),
        contact_host_tls: String::new(),
        media_ip: [127, 0, 0, 1].into(),
        answer_delay: Duration::ZERO,
        timers: Timers::default(),
        max_calls: 1000,
        peak_call_rate: 200,
        rtp_ports: (20000, 39999),
        media_trusted: Vec::new(),
        // Fixed, so that every run of a test sends the same bytes.
        rng_seed: Some([0x5e; 32]),
        srtp: crate::sip::sdes::Policy::Optional,
    };
    settings.set_address(None, "127.0.0.1:5060".parse().unwrap());
    settings
}

/// The registrar's settings (configuration defaults) with these operators and passwords.
pub(super) fn registrar_settings(operators: &[(&str, &str)]) -> RegistrarSettings {
    RegistrarSettings {
        realm: "hotline.test".into(),
        algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        nonce_lifetime: Duration::from_secs(300),
        max_failures: 5,
        lockout: Duration::from_secs(15 * 60),
        min_expires: 60,
        max_expires: 3600,
        server: format!("Hotline/{}", env!("CARGO_PKG_VERSION")),
        accounts: operators
            .iter()
            .map(|(extension, password)| (extension.to_string(), Some(password.to_string())))
            .collect(),
        require_tls: false,
    }
}

pub(super) fn ua(t0: Instant) -> UserAgent {
    UserAgent::new(settings(), registrar_settings(&[]), t0)
}

pub(super) fn request(text: &str) -> rsip::SipMessage {
    rsip::SipMessage::try_from(text).unwrap()
}

pub(super) fn invite(call_id: &str, branch: &str) -> rsip::SipMessage {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    request(&format!(
        "INVITE sip:8800@hotline.test SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
         From: <sip:caller@x>;tag=ft\r\nTo: <sip:8800@hotline.test>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{CALLER}>\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ))
}

pub(super) fn drain(ua: &mut UserAgent) -> Vec<String> {
    std::iter::from_fn(|| ua.poll_transmit())
        .map(|t| String::from_utf8(t.bytes.to_vec()).unwrap())
        .collect()
}

/// Runs the clock from `from` to `to` in 10 ms steps, collecting what is sent and when.
pub(super) fn run(ua: &mut UserAgent, from: Instant, to: Instant) -> Vec<(Duration, String)> {
    let mut out = Vec::new();
    let mut now = from;
    while now <= to {
        if ua.poll_timeout().is_some_and(|t| t <= now) {
            ua.handle_timeout(now);
            for m in drain(ua) {
                out.push((now - from, m));
            }
        }
        now += Duration::from_millis(10);
    }
    out
}

/// An in-dialog request from the caller (To carries our tag).
pub(super) fn in_dialog(method: &str, call_id: &str, branch: &str, to: &str, cseq: u32) -> String {
    format!(
        "{method} sip:8800@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
         From: <sip:caller@x>;tag=ft\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The To header (with our tag) of a response.
pub(super) fn to_of(msg: &str) -> String {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix("To: "))
        .unwrap()
        .to_string()
}

pub(super) fn src() -> SocketAddr {
    CALLER.parse().unwrap()
}

/// An allocator whose range is exhausted.
pub(super) struct NoPorts;

impl RtpPorts for NoPorts {
    fn allocate(&mut self) -> Option<u16> {
        None
    }
    fn release(&mut self, _port: u16) {}
}

/// Where operator 1001's REGISTER comes from (its NAT's public side)…
pub(super) const OP_SOURCE: &str = "198.51.100.20:40000";

/// …and the Contact it registers (its private address).
pub(super) const OP_CONTACT: &str = "sip:1001@10.0.0.5:5070";

/// Allocates like [`CountingPorts`] and remembers what is held, so tests see releases.
#[derive(Clone, Default)]
pub(super) struct HeldPorts(std::sync::Arc<std::sync::Mutex<(u16, HashSet<u16>)>>);

impl HeldPorts {
    pub(super) fn held(&self) -> HashSet<u16> {
        self.0.lock().unwrap().1.clone()
    }
}

impl RtpPorts for HeldPorts {
    fn allocate(&mut self) -> Option<u16> {
        let mut g = self.0.lock().unwrap();
        let port = 20000 + g.0 * 2;
        g.0 += 1;
        g.1.insert(port);
        Some(port)
    }
    fn release(&mut self, port: u16) {
        self.0.lock().unwrap().1.remove(&port);
    }
}

pub(super) fn op_ua(t0: Instant) -> (UserAgent, HeldPorts) {
    let registrar = registrar_settings(&[("1001", "pw1"), ("1002", "pw2")]);
    let ports = HeldPorts::default();
    let ua = UserAgent::new(settings(), registrar, t0).with_ports(Box::new(ports.clone()));
    (ua, ports)
}

/// Digest REGISTER of `user` (challenge, then the answer) from `source`.
pub(super) fn register_op(
    ua: &mut UserAgent,
    user: &str,
    password: &str,
    contact: &str,
    source: &str,
    transport: Transport,
    now: Instant,
) {
    let tr = transport.as_str();
    let register = |n: u32, auth: &str| {
        format!(
            "REGISTER sip:hotline.test SIP/2.0\r\nVia: SIP/2.0/{tr} {source};branch=z9hG4bKreg{user}{n};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@hotline.test>;tag=r{user}\r\nTo: <sip:{user}@hotline.test>\r\n\
             Call-ID: reg-{user}\r\nCSeq: {n} REGISTER\r\nContact: <{contact}>\r\nExpires: 300\r\n{auth}\
             Content-Length: 0\r\n\r\n"
        )
    };
    let source: SocketAddr = source.parse().unwrap();
    let n = now.elapsed().as_nanos() as u32 % 1000 * 2 + 1;
    ua.handle_message(request(&register(n, "")), source, transport, now);
    let challenge = drain(ua).pop().unwrap();
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let www = challenge
        .split("\r\n")
        .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .unwrap();
    let auth = crate::sip::digest::client_authorization(
        www,
        "REGISTER",
        "sip:hotline.test",
        user,
        password,
        "c0ffee",
        1,
    )
    .unwrap();
    let msg = register(n + 1, &format!("Authorization: {auth}\r\n"));
    ua.handle_message(request(&msg), source, transport, now);
    let ok = drain(ua).pop().unwrap();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let _: Vec<Event> = std::iter::from_fn(|| ua.poll_event()).collect();
}

pub(super) fn leg_to(ext: &str, number: &str, name: Option<&str>) -> Originate {
    Originate {
        extension: ext.into(),
        caller_number: number.into(),
        caller_name: name.map(str::to_string),
        for_call: None,
        via: None,
    }
}

pub(super) fn drain_peers(ua: &mut UserAgent) -> Vec<(Peer, String)> {
    std::iter::from_fn(|| ua.poll_transmit())
        .map(|t| (t.peer, String::from_utf8(t.bytes.to_vec()).unwrap()))
        .collect()
}

pub(super) fn events(ua: &mut UserAgent) -> Vec<Event> {
    std::iter::from_fn(|| ua.poll_event()).collect()
}

pub(super) fn line<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

pub(super) fn op_src() -> SocketAddr {
    OP_SOURCE.parse().unwrap()
}

/// The operator's SDP answer: PCMA and telephone-event.
pub(super) const OP_ANSWER: &str =
    "v=0\r\no=- 2 2 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
    m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

/// The operator's response to one of our requests (`req` as sent).
pub(super) fn op_reply(
    req: &str,
    status: u16,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> rsip::SipMessage {
    let to = match to_tag {
        Some(t) if !line(req, "To").contains(";tag=") => format!("{};tag={t}", line(req, "To")),
        _ => line(req, "To").to_string(),
    };
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    request(&format!(
        "SIP/2.0 {status} Whatever\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         {extra}{ctype}Content-Length: {}\r\n\r\n{body}",
        line(req, "Via"),
        line(req, "From"),
        line(req, "Call-ID"),
        line(req, "CSeq"),
        body.len()
    ))
}

pub(super) const OP_2XX_EXTRA: &str = "Contact: <sip:1001@10.0.0.5:5070;ob>\r\n\
    Record-Route: <sip:p1.test;lr>\r\nRecord-Route: <sip:p2.test;lr>\r\n";

/// A registered operator and an INVITE sent to it: (ua, ports, leg, INVITE text).
pub(super) fn rung(t0: Instant) -> (UserAgent, HeldPorts, u64, String) {
    let (mut ua, ports) = op_ua(t0);
    register_op(
        &mut ua,
        "1001",
        "pw1",
        OP_CONTACT,
        OP_SOURCE,
        Transport::Udp,
        t0,
    );
    let leg = ua
        .originate(leg_to("1001", "+79780000001", Some("Иван Петров")), t0)
        .unwrap();
    let sent = drain_peers(&mut ua);
    assert_eq!(sent.len(), 1);
    (ua, ports, leg, sent[0].1.clone())
}

/// `rung`, then 180 and a 200 with SDP: returns the ACK too.
pub(super) fn answered(t0: Instant) -> (UserAgent, HeldPorts, u64, String, String) {
    let (mut ua, ports, leg, invite) = rung(t0);
    ua.handle_message(
        op_reply(&invite, 180, Some("op1"), "", ""),
        op_src(),
        Transport::Udp,
        t0,
    );
    ua.handle_message(
        op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, OP_ANSWER),
        op_src(),
        Transport::Udp,
        t0,
    );
    let sent = drain_peers(&mut ua);
    assert_eq!(sent.len(), 1, "{sent:?}");
    (ua, ports, leg, invite, sent[0].1.clone())
}
