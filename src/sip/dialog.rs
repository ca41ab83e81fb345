//! Dialogs on the hotline's side of a call (RFC 3261 §12–§13, §15): as UAS for callers, as
//! UAC for the legs to operators.
//!
//! A [`Dialog`] keeps what every in-dialog request needs (tags, CSeq numbers, remote target,
//! route set) and the 2xx retransmission state: the INVITE server transaction ends when the
//! 2xx is sent, so the UA core itself resends the 2xx with T1 doubling up to T2 until the ACK
//! arrives, and gives up after 64·T1 (§13.3.1.4) by sending BYE. On a leg we place, the dialog
//! is built from our INVITE and completed from the 2xx ([`Dialog::uac`],
//! [`Dialog::confirm_uac`]); the ACK for that 2xx is ours to send ([`Dialog::ack`], §13.2.2.4).

use super::headers::{parse_cseq, tag_param};
use super::message::{addr_uri, first_header};
use super::sdp::Negotiated;
use super::transaction::Timers;
use super::Peer;
use bytes::Bytes;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Identifies a dialog from our side: Call-ID and our (local) tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DialogKey {
    pub call_id: String,
    pub local_tag: String,
}

/// Where a dialog is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogState {
    /// INVITE received, 1xx sent, final not yet sent (UAS); or INVITE sent, no 2xx yet (UAC).
    Early,
    /// 2xx sent, waiting for the ACK.
    WaitingAck,
    /// The call is up.
    Confirmed,
}

/// A 2xx being retransmitted until its ACK arrives.
#[derive(Clone, Debug)]
pub struct PendingAck {
    pub response: Bytes,
    pub cseq: u32,
    pub next_resend: Instant,
    pub interval: Duration,
    pub give_up: Instant,
}

impl PendingAck {
    pub fn new(response: Bytes, cseq: u32, timers: &Timers, now: Instant) -> Self {
        PendingAck {
            response,
            cseq,
            next_resend: now + timers.t1,
            interval: timers.t1,
            give_up: now + timers.t1 * 64,
        }
    }

    /// Advances the schedule after a resend at `now` (T1, 2·T1 … capped at T2).
    pub fn resent(&mut self, timers: &Timers, now: Instant) {
        self.interval = (self.interval * 2).min(timers.t2);
        self.next_resend = now + self.interval;
    }
}

/// Our half of one call's dialog.
#[derive(Debug)]
pub struct Dialog {
    pub id: u64,
    pub key: DialogKey,
    pub remote_tag: Option<String>,
    /// `From` of the INVITE (the caller): becomes `To` in our requests.
    pub remote_header: String,
    /// `To` of the INVITE with our tag: becomes `From` in our requests.
    pub local_header: String,
    /// The caller's Contact URI.
    pub remote_target: String,
    /// Record-Route of the INVITE, in order (§12.1.1).
    pub route_set: Vec<String>,
    pub remote_cseq: u32,
    pub local_cseq: u32,
    /// Where the caller's signalling comes from; in-dialog requests go back there so that
    /// callers behind NAT are reached (like `force_rport`/symmetric signalling).
    pub peer: Peer,
    pub state: DialogState,
    pub pending_ack: Option<PendingAck>,
    /// A re-INVITE of ours… or theirs, in progress: a second one gets 491 (§14.2).
    pub reinvite_in_progress: bool,
    pub media: Option<Negotiated>,
    pub sdp_session_id: u64,
    pub sdp_version: u64,
    pub rtp_port: u16,
    /// When a delayed answer (`answer_delay_ms`) is due.
    pub answer_at: Option<Instant>,
    /// Our SRTP key in the offer of a leg we placed, until its answer keys the media.
    pub srtp_offered: Option<crate::sip::sdes::Offered>,
}

impl Dialog {
    /// Builds the dialog state from an initial INVITE (§12.1.1).
    pub fn from_invite(
        id: u64,
        req: &rsip::Request,
        local_tag: String,
        peer: Peer,
    ) -> Option<Dialog> {
        let call_id = first_header(&req.headers, "Call-ID")?.to_string();
        let from = first_header(&req.headers, "From")?.to_string();
        let to = first_header(&req.headers, "To")?;
        let (cseq, _) = parse_cseq(first_header(&req.headers, "CSeq")?).ok()?;
        let remote_target = first_header(&req.headers, "Contact")
            .map(|c| addr_uri(c).to_string())
            .unwrap_or_else(|| req.uri.to_string());
        let route_set = record_routes(&req.headers);
        Some(Dialog {
            id,
            remote_tag: tag_param(&from).map(str::to_string),
            local_header: format!("{to};tag={local_tag}"),
            key: DialogKey { call_id, local_tag },
            remote_header: from,
            remote_target,
            route_set,
            remote_cseq: cseq,
            local_cseq: 0,
            peer,
            state: DialogState::Early,
            pending_ack: None,
            reinvite_in_progress: false,
            media: None,
            sdp_session_id: id + 1000,
            sdp_version: 1,
            rtp_port: 0,
            answer_at: None,
            srtp_offered: None,
        })
    }

    /// The dialog of an INVITE we send (§12.1.2), before any response: `local_header` is our
    /// From (with our tag), `remote_header` the To (without a tag yet), `remote_target` the
    /// Request-URI. The INVITE has CSeq 1; the remote CSeq is empty until the peer sends a
    /// request (0 here, so any CSeq of theirs is accepted first).
    pub fn uac(
        id: u64,
        key: DialogKey,
        local_header: String,
        remote_header: String,
        remote_target: String,
        peer: Peer,
    ) -> Dialog {
        Dialog {
            id,
            key,
            remote_tag: None,
            local_header,
            remote_header,
            remote_target,
            route_set: Vec::new(),
            remote_cseq: 0,
            local_cseq: 1,
            peer,
            state: DialogState::Early,
            pending_ack: None,
            reinvite_in_progress: false,
            media: None,
            sdp_session_id: id + 1000,
            sdp_version: 1,
            rtp_port: 0,
            answer_at: None,
            srtp_offered: None,
        }
    }

    /// Completes a UAC dialog from the 2xx to our INVITE (§12.1.2): the remote tag and To
    /// from the response, the remote target from its Contact (kept if it has none), the route
    /// set from its Record-Route in reverse order. The state becomes Confirmed (we ACK at once).
    pub fn confirm_uac(&mut self, resp: &rsip::Response) {
        if let Some(to) = first_header(&resp.headers, "To") {
            self.remote_tag = tag_param(to).map(str::to_string);
            self.remote_header = to.to_string();
        }
        if let Some(c) = first_header(&resp.headers, "Contact") {
            let uri = addr_uri(c).trim();
            if !uri.is_empty() {
                self.remote_target = uri.to_string();
            }
        }
        self.route_set = record_routes(&resp.headers);
        self.route_set.reverse();
        self.state = DialogState::Confirmed;
    }

    /// Checks and records the CSeq of an in-dialog request (§12.2.2): lower than the last
    /// one means out of order and is refused with 500.
    pub fn accept_remote_cseq(&mut self, cseq: u32, is_ack: bool) -> bool {
        if is_ack {
            return true;
        }
        if cseq <= self.remote_cseq {
            return false;
        }
        self.remote_cseq = cseq;
        true
    }

    /// An in-dialog request from us (BYE, re-INVITE) per §12.2.1.1.
    pub fn request(&mut self, method: &str, via_host: &str, branch: &str, server: &str) -> Bytes {
        self.local_cseq += 1;
        self.build(method, self.local_cseq, via_host, branch, server)
    }

    /// The ACK for a 2xx to our INVITE with CSeq `cseq` (§13.2.2.4): sent to the remote
    /// target with the route set, the INVITE's CSeq number, a branch of its own and no body.
    pub fn ack(&self, cseq: u32, via_host: &str, branch: &str, server: &str) -> Bytes {
        self.build("ACK", cseq, via_host, branch, server)
    }

    fn build(&self, method: &str, cseq: u32, via_host: &str, branch: &str, server: &str) -> Bytes {
        let mut out = String::with_capacity(512);
        let _ = write!(out, "{method} {} SIP/2.0\r\n", self.remote_target);
        let _ = write!(
            out,
            "Via: SIP/2.0/{} {via_host};branch={branch};rport\r\n",
            self.peer.transport.as_str()
        );
        out.push_str("Max-Forwards: 70\r\n");
        let _ = write!(out, "From: {}\r\n", self.local_header);
        let _ = write!(out, "To: {}\r\n", self.remote_header);
        let _ = write!(out, "Call-ID: {}\r\n", self.key.call_id);
        let _ = write!(out, "CSeq: {cseq} {method}\r\n");
        for r in &self.route_set {
            let _ = write!(out, "Route: {r}\r\n");
        }
        let _ = write!(out, "User-Agent: {server}\r\nContent-Length: 0\r\n\r\n");
        Bytes::from(out)
    }
}

/// Record-Route values of a message, in order.
fn record_routes(headers: &rsip::Headers) -> Vec<String> {
    use rsip::headers::UntypedHeader;
    headers
        .iter()
        .filter_map(|h| match h {
            rsip::Header::RecordRoute(r) => Some(r.value().to_string()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Transport;

    fn invite() -> rsip::Request {
        rsip::Request::try_from(
            "INVITE sip:8800@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1\r\n\
             Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\n\
             From: \"Caller\" <sip:+7978@x>;tag=abc\r\nTo: <sip:8800@h>\r\nCall-ID: c1\r\n\
             CSeq: 7 INVITE\r\nContact: <sip:caller@10.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap()
    }

    #[test]
    fn dialog_from_invite_and_bye() {
        let peer = Peer {
            transport: Transport::Udp,
            addr: "10.0.0.1:5070".parse().unwrap(),
        };
        let mut d = Dialog::from_invite(1, &invite(), "lt".into(), peer).unwrap();
        assert_eq!(d.remote_tag.as_deref(), Some("abc"));
        assert_eq!(d.remote_target, "sip:caller@10.0.0.1:5070");
        assert_eq!(d.route_set, vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
        let bye = d.request("BYE", "127.0.0.1:5060", "z9hG4bKb1", "Hotline");
        let r = rsip::Request::try_from(&bye[..]).unwrap();
        assert_eq!(r.method, rsip::Method::Bye);
        assert_eq!(r.uri.to_string(), "sip:caller@10.0.0.1:5070");
        let text = String::from_utf8(bye.to_vec()).unwrap();
        assert!(text.contains("From: <sip:8800@h>;tag=lt\r\n"));
        assert!(text.contains("To: \"Caller\" <sip:+7978@x>;tag=abc\r\n"));
        assert!(text.contains("CSeq: 1 BYE\r\n"));
        assert!(
            text.find("Route: <sip:p1;lr>").unwrap() < text.find("Route: <sip:p2;lr>").unwrap()
        );
    }

    #[test]
    fn uac_dialog_from_the_2xx_and_its_ack() {
        let peer = Peer {
            transport: Transport::Udp,
            addr: "198.51.100.20:40000".parse().unwrap(),
        };
        let key = DialogKey {
            call_id: "c9".into(),
            local_tag: "ours".into(),
        };
        let mut d = Dialog::uac(
            4,
            key,
            "\"7978\" <sip:7978@h>;tag=ours".into(),
            "<sip:1001@h>".into(),
            "sip:1001@10.0.0.5:5070".into(),
            peer,
        );
        assert_eq!(d.state, DialogState::Early);
        let ok = rsip::Response::try_from(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
             Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\n\
             From: \"7978\" <sip:7978@h>;tag=ours\r\nTo: <sip:1001@h>;tag=theirs\r\nCall-ID: c9\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:1001@10.0.0.5:5070;ob>\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        d.confirm_uac(&ok);
        assert_eq!(d.state, DialogState::Confirmed);
        assert_eq!(d.remote_tag.as_deref(), Some("theirs"));
        assert_eq!(d.remote_target, "sip:1001@10.0.0.5:5070;ob");
        assert_eq!(
            d.route_set,
            vec!["<sip:p2;lr>", "<sip:p1;lr>"],
            "reversed (§12.1.2)"
        );
        let ack = String::from_utf8(d.ack(1, "127.0.0.1:5060", "z9hG4bKa", "H").to_vec()).unwrap();
        assert!(
            ack.starts_with("ACK sip:1001@10.0.0.5:5070;ob SIP/2.0\r\n"),
            "{ack}"
        );
        assert!(ack.contains("CSeq: 1 ACK\r\n") && ack.contains("To: <sip:1001@h>;tag=theirs\r\n"));
        assert!(ack.find("Route: <sip:p2;lr>").unwrap() < ack.find("Route: <sip:p1;lr>").unwrap());
        let bye = String::from_utf8(d.request("BYE", "127.0.0.1:5060", "z9hG4bKb", "H").to_vec())
            .unwrap();
        assert!(bye.contains("CSeq: 2 BYE\r\n"), "the INVITE had CSeq 1");
    }

    #[test]
    fn remote_cseq_must_increase() {
        let peer = Peer {
            transport: Transport::Udp,
            addr: "10.0.0.1:5070".parse().unwrap(),
        };
        let mut d = Dialog::from_invite(1, &invite(), "lt".into(), peer).unwrap();
        assert!(!d.accept_remote_cseq(7, false));
        assert!(d.accept_remote_cseq(8, false));
        assert!(d.accept_remote_cseq(7, true));
    }

    #[test]
    fn pending_ack_schedule_doubles_to_t2() {
        let t = Timers::default();
        let now = Instant::now();
        let mut p = PendingAck::new(Bytes::new(), 1, &t, now);
        let mut gaps = vec![p.interval];
        for _ in 0..5 {
            let at = p.next_resend;
            p.resent(&t, at);
            gaps.push(p.interval);
        }
        let ms: Vec<u128> = gaps.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(p.give_up - now, Duration::from_secs(32));
    }
}
