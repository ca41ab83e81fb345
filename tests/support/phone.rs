//! Test phones over loopback UDP, written from RFC 3261 independently of the hotline's SIP
//! code: a caller that dials the hotline, and an operator's softphone that registers with
//! digest authentication and answers (or refuses, or ignores) what the hotline rings it
//! with. Both carry a real RTP endpoint.

use super::rtp::{self, RtpPeer};
use super::{body, header, SipLink, TlsPeer, UdpPeer};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

/// A SIP endpoint that keeps requests it was not waiting for until it asks for them.
pub struct Endpoint {
    pub peer: SipLink,
    /// Our Contact is a `sips:` URI (over TLS), not `sip:…;transport=tls`.
    pub sips: bool,
    backlog: VecDeque<String>,
    seq: u32,
}

impl Endpoint {
    pub async fn new(server: SocketAddr) -> Endpoint {
        Endpoint::on(SipLink::Udp(UdpPeer::new(server).await))
    }

    /// Over TLS to `server` (the hotline's TLS port), trusting the CA in `ca`.
    pub async fn tls(server: SocketAddr, ca: &std::path::Path) -> Endpoint {
        let peer = TlsPeer::connect(server, ca).await.expect("TLS connection");
        Endpoint::on(SipLink::Tls(peer))
    }

    pub fn on(peer: SipLink) -> Endpoint {
        Endpoint {
            peer,
            sips: false,
            backlog: VecDeque::new(),
            seq: 0,
        }
    }

    /// `Via: SIP/2.0/{transport} {address}` for a request from here.
    pub fn via(&self) -> String {
        format!("SIP/2.0/{} {}", self.peer.via(), self.addr())
    }

    /// Our Contact URI for `user`.
    pub fn contact(&self, user: &str) -> String {
        if self.sips {
            return format!("<sips:{user}@{}>", self.addr());
        }
        format!("<sip:{user}@{}{}>", self.addr(), self.peer.contact_params())
    }

    pub fn addr(&self) -> SocketAddr {
        self.peer.addr()
    }

    pub fn branch(&mut self) -> String {
        self.seq += 1;
        format!("z9hG4bK-ph-{}-{}", self.addr().port(), self.seq)
    }

    /// The next request with `method`, waiting up to `wait`; other requests are kept,
    /// responses skipped.
    pub async fn request(&mut self, method: &str, wait: Duration) -> Option<String> {
        let prefix = format!("{method} ");
        if let Some(i) = self.backlog.iter().position(|m| m.starts_with(&prefix)) {
            return self.backlog.remove(i);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.peer.recv(left).await?;
            if msg.starts_with(&prefix) {
                return Some(msg);
            }
            if !msg.starts_with("SIP/2.0") {
                self.backlog.push_back(msg);
            }
        }
    }

    /// The next final response (≥ 200) to a request with `cseq_method`.
    pub async fn final_response(&mut self, cseq_method: &str, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let msg = self.peer.recv(left).await?;
            if !msg.starts_with("SIP/2.0") {
                self.backlog.push_back(msg);
                continue;
            }
            let code: u16 = msg[8..11].parse().unwrap_or(0);
            let method = header(&msg, "CSeq")
                .and_then(|c| c.split_whitespace().nth(1))
                .unwrap_or_default();
            if code >= 200 && method == cseq_method {
                return Some(msg);
            }
        }
    }

    /// Answers `req` with `code`; `to_tag` is added to To if it has none.
    pub async fn respond(&self, req: &str, code: u16, reason: &str, to_tag: &str, extra: &str) {
        self.respond_body(req, code, reason, to_tag, extra, "")
            .await;
    }

    pub async fn respond_body(
        &self,
        req: &str,
        code: u16,
        reason: &str,
        to_tag: &str,
        extra: &str,
        sdp: &str,
    ) {
        let to = header(req, "To").unwrap_or_default();
        let to = if to.contains(";tag=") {
            to.to_string()
        } else {
            format!("{to};tag={to_tag}")
        };
        let vias: String = super::headers(req, "Via")
            .iter()
            .map(|v| format!("Via: {v}\r\n"))
            .collect();
        // §12.1.1: the route set of a dialog a proxy record-routed.
        let routes: String = super::headers(req, "Record-Route")
            .iter()
            .map(|r| format!("Record-Route: {r}\r\n"))
            .collect();
        let ctype = if sdp.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let msg = format!(
            "SIP/2.0 {code} {reason}\r\n{vias}{routes}From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n\
             {extra}{ctype}Content-Length: {}\r\n\r\n{sdp}",
            header(req, "From").unwrap_or_default(),
            header(req, "Call-ID").unwrap_or_default(),
            header(req, "CSeq").unwrap_or_default(),
            sdp.len(),
        );
        self.peer.send(&msg).await;
    }
}

/// A dialog as one side of it sees it, enough to send BYE.
#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    /// Our From in requests (with our tag).
    pub local: String,
    /// Their To in requests (with their tag).
    pub remote: String,
    pub target: String,
    pub cseq: u32,
    /// `Route` values for our requests: what a proxy record-routed (RFC 3261 §12.1.2).
    pub route: Vec<String>,
}

impl Dialog {
    /// The `Route` header lines of an in-dialog request.
    fn route_lines(&self) -> String {
        self.route
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect()
    }
}

/// Every `Record-Route` value of `msg`, in order.
fn record_routes(msg: &str) -> Vec<String> {
    let head = msg.split("\r\n\r\n").next().unwrap_or_default();
    super::headers(head, "Record-Route")
        .into_iter()
        .flat_map(|v| v.split(',').map(|r| r.trim().to_string()))
        .collect()
}

/// `sip:…` inside a Contact/To value.
fn uri_of(value: &str) -> String {
    value
        .split_once('<')
        .and_then(|(_, r)| r.split_once('>'))
        .map(|(u, _)| u.to_string())
        .unwrap_or_else(|| value.split(';').next().unwrap_or_default().to_string())
}

async fn send_bye(ep: &mut Endpoint, d: &mut Dialog) -> String {
    d.cseq += 1;
    let branch = ep.branch();
    let msg = format!(
        "BYE {} SIP/2.0\r\nVia: {};branch={branch};rport\r\nMax-Forwards: 70\r\n{}\
         From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
        d.target,
        ep.via(),
        d.route_lines(),
        d.local,
        d.remote,
        d.call_id,
        d.cseq
    );
    ep.peer.send(&msg).await;
    ep.final_response("BYE", WAIT).await.expect("200 to BYE")
}

/// Answers a BYE that arrives within `wait` with 200 OK; the BYE, or `None`.
async fn take_bye(ep: &mut Endpoint, wait: Duration) -> Option<String> {
    let bye = ep.request("BYE", wait).await?;
    ep.respond(&bye, 200, "OK", "x", "").await;
    Some(bye)
}

/// A caller that dials the hotline.
pub struct Caller {
    pub sip: Endpoint,
    pub rtp: RtpPeer,
    pub dialog: Dialog,
    /// Where the hotline wants our RTP.
    pub media: SocketAddr,
    pub ok: String,
}

impl Caller {
    /// INVITE `number` from `from_number` offering PCMU; returns once the call is up (ACK sent).
    pub async fn dial(server: SocketAddr, number: &str, from_number: &str) -> Caller {
        Caller::dial_as(server, number, from_number, None).await
    }

    /// [`Caller::dial`] with the Call-ID given (another caller may be using it too); the
    /// From tag is this phone's own.
    pub async fn dial_as(
        server: SocketAddr,
        number: &str,
        from_number: &str,
        call_id: Option<&str>,
    ) -> Caller {
        Caller::dial_on(Endpoint::new(server).await, number, from_number, call_id).await
    }

    /// [`Caller::dial_as`] from `sip` (over TLS, say).
    pub async fn dial_on(
        sip: Endpoint,
        number: &str,
        from_number: &str,
        call_id: Option<&str>,
    ) -> Caller {
        let caller = Caller::try_dial(sip, number, from_number, call_id, false).await;
        caller.unwrap_or_else(|refused| panic!("{refused}"))
    }

    /// [`Caller::dial_on`] offering SRTP (`RTP/SAVP`, a key of its own) when `srtp`; the
    /// final response when it is not a 200.
    pub async fn try_dial(
        mut sip: Endpoint,
        number: &str,
        from_number: &str,
        call_id: Option<&str>,
        srtp: bool,
    ) -> Result<Caller, String> {
        let mut rtp = RtpPeer::bind().await;
        let key = srtp.then(rtp::srtp_key);
        let offer = rtp::offer_keyed(rtp.port(), &[(0, "PCMU")], key.as_deref());
        let call_id = call_id.map(str::to_string).unwrap_or_else(|| {
            format!(
                "call-{}-{}@127.0.0.1",
                sip.addr().port(),
                rand::random::<u32>()
            )
        });
        let from = format!(
            "\"Клиент\" <sip:{from_number}@carrier.test>;tag=c{}",
            sip.addr().port()
        );
        let branch = sip.branch();
        let invite = format!(
            "INVITE sip:{number}@hotline.test SIP/2.0\r\nVia: {via};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:{number}@hotline.test>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: {contact}\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{offer}",
            offer.len(),
            via = sip.via(),
            contact = sip.contact("caller"),
        );
        sip.peer.send(&invite).await;
        let ok = sip
            .final_response("INVITE", WAIT)
            .await
            .expect("final response to INVITE");
        if !ok.starts_with("SIP/2.0 200") {
            return Err(ok);
        }
        if let Some(ours) = key {
            let theirs = rtp::crypto_key(body(&ok)).expect("a=crypto in the answer");
            rtp.key(&ours, &theirs);
        }
        let to = header(&ok, "To").unwrap().to_string();
        let target = uri_of(header(&ok, "Contact").expect("Contact in 200"));
        // Through a proxy: its Record-Route, reversed, routes our ACK and BYE (§12.1.2).
        let mut route = record_routes(&ok);
        route.reverse();
        let routes: String = route.iter().map(|r| format!("Route: {r}\r\n")).collect();
        let ack_branch = sip.branch();
        let ack = format!(
            "ACK {target} SIP/2.0\r\nVia: {};branch={ack_branch};rport\r\nMax-Forwards: 70\r\n{routes}\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            sip.via()
        );
        sip.peer.send(&ack).await;
        let media = rtp::media_addr(body(&ok));
        Ok(Caller {
            sip,
            rtp,
            dialog: Dialog {
                call_id,
                local: from,
                remote: to,
                target,
                cseq: 1,
                route,
            },
            media,
            ok,
        })
    }

    pub fn call_id(&self) -> &str {
        &self.dialog.call_id
    }

    /// Hangs up; returns the 200 to the BYE.
    pub async fn hang_up(&mut self) -> String {
        send_bye(&mut self.sip, &mut self.dialog).await
    }

    /// Waits for the hotline's BYE and answers it.
    pub async fn expect_bye(&mut self, wait: Duration) -> Option<String> {
        take_bye(&mut self.sip, wait).await
    }

    /// Sends µ-law audio in real time (20 ms packets).
    pub async fn talk(&mut self, payload: &[u8]) {
        self.rtp.stream(self.media, 0, payload).await;
    }

    /// Presses a key (RFC 4733, payload type 101).
    pub async fn press(&mut self, digit: char) {
        self.rtp.press(self.media, 101, digit).await;
    }
}

/// An operator's softphone.
pub struct Operator {
    pub sip: Endpoint,
    pub rtp: RtpPeer,
    pub extension: String,
    /// The INVITE being answered, and our To tag for it.
    invite: Option<(String, String)>,
    pub dialog: Option<Dialog>,
    /// Where the hotline wants our RTP (from its offer).
    pub media: Option<SocketAddr>,
}

impl Operator {
    /// Registers `extension` with `password` (digest, SHA-256 or MD5 as offered).
    pub async fn register(server: SocketAddr, extension: &str, password: &str) -> Operator {
        let sip = Endpoint::new(server).await;
        let (op, ok) = Operator::try_register(sip, extension, password).await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        op
    }

    /// Registers from `sip` (over TLS, say); returns the phone and the final response,
    /// whatever it is.
    pub async fn try_register(
        mut sip: Endpoint,
        extension: &str,
        password: &str,
    ) -> (Operator, String) {
        let rtp = RtpPeer::bind().await;
        let call_id = format!("reg-{extension}-{}", sip.addr().port());
        let mut auth: Option<String> = None;
        let mut last = String::new();
        for cseq in 1..=2 {
            let branch = sip.branch();
            let mut msg = format!(
                "REGISTER sip:hotline.test SIP/2.0\r\nVia: {via};branch={branch};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{extension}@hotline.test>;tag=r{cseq}\r\n\
                 To: <sip:{extension}@hotline.test>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n\
                 Contact: {contact}\r\nExpires: 600\r\n",
                via = sip.via(),
                contact = sip.contact(extension),
            );
            if let Some(x) = &auth {
                msg.push_str(&format!("Authorization: {x}\r\n"));
            }
            msg.push_str("Content-Length: 0\r\n\r\n");
            sip.peer.send(&msg).await;
            let resp = sip
                .final_response("REGISTER", WAIT)
                .await
                .expect("REGISTER answered");
            last = resp.clone();
            if !resp.starts_with("SIP/2.0 401") {
                break;
            }
            let www = header(&resp, "WWW-Authenticate").expect("challenge");
            auth = Some(
                hotline::sip::digest::client_authorization(
                    www,
                    "REGISTER",
                    "sip:hotline.test",
                    extension,
                    password,
                    "0a4f113b",
                    1,
                )
                .expect("digest response"),
            );
            assert!(cseq < 2, "second REGISTER refused: {resp}");
        }
        let op = Operator {
            sip,
            rtp,
            extension: extension.to_string(),
            invite: None,
            dialog: None,
            media: None,
        };
        (op, last)
    }

    /// Waits for the hotline to ring this phone; answers 180 Ringing; returns the INVITE.
    pub async fn ringing(&mut self, wait: Duration) -> Option<String> {
        let invite = self.sip.request("INVITE", wait).await?;
        let to_tag = format!("op{}", rand::random::<u32>());
        self.sip.respond(&invite, 180, "Ringing", &to_tag, "").await;
        self.media = Some(rtp::media_addr(body(&invite)));
        self.invite = Some((invite.clone(), to_tag));
        Some(invite)
    }

    /// Answers the ringing call with 200 OK (PCMU) and waits for the ACK; an SRTP offer is
    /// answered with SRTP under a key of the phone's own.
    pub async fn answer(&mut self) {
        let (invite, to_tag) = self.invite.take().expect("a ringing call");
        let theirs = rtp::crypto_key(body(&invite));
        let ours = theirs.as_ref().map(|_| rtp::srtp_key());
        let mut sdp = rtp::offer_keyed(self.rtp.port(), &[(0, "PCMU")], ours.as_deref());
        if !body(&invite).contains(" RTP/SAVP ") {
            // Best-effort SRTP (RTP/AVP with a=crypto) is answered on the same profile.
            sdp = sdp.replace(" RTP/SAVP ", " RTP/AVP ");
        }
        if let (Some(ours), Some(theirs)) = (&ours, &theirs) {
            self.rtp.key(ours, theirs);
        }
        let contact = format!("Contact: {}\r\n", self.sip.contact(&self.extension));
        self.sip
            .respond_body(&invite, 200, "OK", &to_tag, &contact, &sdp)
            .await;
        let ack = self.sip.request("ACK", WAIT).await.expect("ACK to our 200");
        assert!(ack.contains("CSeq: 1 ACK"), "{ack}");
        let from = header(&invite, "From").unwrap().to_string();
        let to = format!("{};tag={to_tag}", header(&invite, "To").unwrap());
        self.dialog = Some(Dialog {
            call_id: header(&invite, "Call-ID").unwrap().to_string(),
            local: to,
            remote: from,
            target: uri_of(header(&invite, "Contact").expect("Contact in INVITE")),
            cseq: 0,
            route: record_routes(&invite),
        });
    }

    /// Refuses the ringing call with `code` and takes the ACK.
    pub async fn refuse(&mut self, code: u16, reason: &str) {
        let (invite, to_tag) = self.invite.take().expect("a ringing call");
        self.sip.respond(&invite, code, reason, &to_tag, "").await;
        self.sip
            .request("ACK", WAIT)
            .await
            .expect("ACK to our refusal");
    }

    /// Takes the hotline's CANCEL of the ringing call: 200 to it, 487 to the INVITE, ACK.
    pub async fn expect_cancel(&mut self, wait: Duration) -> Option<String> {
        let cancel = self.sip.request("CANCEL", wait).await?;
        let (invite, to_tag) = self.invite.take().expect("a ringing call");
        self.sip.respond(&cancel, 200, "OK", &to_tag, "").await;
        self.sip
            .respond(&invite, 487, "Request Terminated", &to_tag, "")
            .await;
        self.sip.request("ACK", WAIT).await.expect("ACK to 487");
        Some(cancel)
    }

    /// Hangs up the answered call.
    pub async fn hang_up(&mut self) -> String {
        let mut d = self.dialog.take().expect("an answered call");
        send_bye(&mut self.sip, &mut d).await
    }

    /// Waits for the hotline's BYE and answers it.
    pub async fn expect_bye(&mut self, wait: Duration) -> Option<String> {
        let bye = take_bye(&mut self.sip, wait).await;
        if bye.is_some() {
            self.dialog = None;
        }
        bye
    }

    /// Sends µ-law audio in real time to the hotline.
    pub async fn talk(&mut self, payload: &[u8]) {
        let to = self.media.expect("the hotline's media address");
        self.rtp.stream(to, 0, payload).await;
    }
}
