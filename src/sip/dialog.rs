//! Dialogs on the hotline's side of a call (UAS, RFC 3261 §12–§13, §15).
//!
//! A [`Dialog`] keeps what every in-dialog request needs (tags, CSeq numbers, remote target,
//! route set) and the 2xx retransmission state: the INVITE server transaction ends when the
//! 2xx is sent, so the UA core itself resends the 2xx with T1 doubling up to T2 until the ACK
//! arrives, and gives up after 64·T1 (§13.3.1.4) by sending BYE.

use super::message::{addr_uri, first_header, parse_cseq, tag_param};
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
    /// INVITE received, 1xx sent, final not yet sent.
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
        let (cseq, _) = parse_cseq(first_header(&req.headers, "CSeq")?)?;
        let remote_target = first_header(&req.headers, "Contact")
            .map(|c| addr_uri(c).to_string())
            .unwrap_or_else(|| req.uri.to_string());
        let route_set = req
            .headers
            .iter()
            .filter_map(|h| match h {
                rsip::Header::RecordRoute(r) => {
                    use rsip::headers::UntypedHeader;
                    Some(r.value().to_string())
                }
                _ => None,
            })
            .collect();
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
        })
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
        let _ = write!(out, "CSeq: {} {method}\r\n", self.local_cseq);
        for r in &self.route_set {
            let _ = write!(out, "Route: {r}\r\n");
        }
        let _ = write!(out, "User-Agent: {server}\r\nContent-Length: 0\r\n\r\n");
        Bytes::from(out)
    }
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
