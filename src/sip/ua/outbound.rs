//! Legs we place to operators: the INVITE to the newest binding of a registered operator,
//! and withdrawing it (CANCEL before the answer, BYE after). Their responses arrive in
//! `leg_responses`.

use super::call::Call;
use super::helpers::{contact_header, is_plain_uri, random_tag, sanitize_display, sanitize_user};
use super::transactions::{ClientEntry, ClientTx};
use super::{EndReason, Originate, OriginateError, UserAgent, ALLOW};
use crate::sip::dialog::{Dialog, DialogKey, DialogState};
use crate::sip::sdes::{Offered, Policy};
use crate::sip::sdp::{self, Direction, LocalMedia};
use crate::sip::transaction::{self, ClientInvite, TransactionKey};
use crate::sip::Peer;
use crate::sip::Transport;
use std::time::Instant;

/// Whether we want an operator leg cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CancelState {
    No,
    /// Asked for before any provisional response: sent when the first one arrives (§9.1).
    Wanted,
    Sent,
}

/// What a leg we placed (to an operator) needs besides its dialog.
pub(super) struct Outbound {
    /// The INVITE's client transaction.
    pub(super) invite_tx: TransactionKey,
    /// A 180/183 was reported.
    pub(super) ringing: bool,
    pub(super) cancel: CancelState,
    /// After our CANCEL: when to stop waiting for the INVITE's final response (§9.1, 64·T1).
    pub(super) give_up_at: Option<Instant>,
}

/// Where a loose-routing proxy URI (a Path entry, `<sip:10.0.0.5:5060;lr>`) is reached:
/// an IP literal and port (5060 when absent), over UDP unless it says `transport=tcp`.
/// Proxies are addressed by IP, so no DNS is needed (and none is done).
fn next_hop(route: &str) -> Option<Peer> {
    let uri = crate::sip::message::addr_uri(route).strip_prefix("sip:")?;
    let (hostport, params) = uri.split_once(';').unwrap_or((uri, ""));
    let hostport = hostport.rsplit('@').next()?;
    let addr = hostport
        .parse()
        .ok()
        .or_else(|| format!("{hostport}:5060").parse().ok())?;
    let tcp = params
        .split(';')
        .any(|p| p.eq_ignore_ascii_case("transport=tcp"));
    Some(Peer {
        transport: if tcp { Transport::Tcp } else { Transport::Udp },
        addr,
    })
}

impl UserAgent {
    /// [`UserAgent::originate`].
    pub(super) fn place_leg(&mut self, o: Originate, now: Instant) -> Result<u64, OriginateError> {
        if !self.registrar.is_operator(&o.extension) {
            return Err(OriginateError::UnknownExtension(o.extension));
        }
        let binding = match self.registrar.newest(&o.extension, now) {
            Some(b) => b.clone(),
            None => match o.via {
                Some(b) => *b,
                None => return Err(OriginateError::NotRegistered(o.extension)),
            },
        };
        let target = binding.contact.clone();
        if !is_plain_uri(&target) {
            return Err(OriginateError::BadContact(o.extension));
        }
        // Through the Path when the phone registered through a proxy (RFC 3327 §5.3): the
        // INVITE goes to the first hop with the Path as its route set.
        let peer = match binding.path.first() {
            Some(first) => match next_hop(first) {
                Some(peer) => peer,
                None => return Err(OriginateError::BadContact(o.extension)),
            },
            None => Peer {
                transport: binding.transport,
                addr: binding.source,
            },
        };
        let routes: String = binding
            .path
            .iter()
            .map(|p| format!("Route: {p}\r\n"))
            .collect();
        // SRTP to every operator whose phone registered over TLS, unless it is off: best
        // effort when optional (a phone without SRTP answers plain RTP), `RTP/SAVP` when
        // required; no operator without TLS then.
        let srtp = match (self.settings.srtp, peer.transport) {
            (Policy::Off, _) => None,
            (Policy::Optional, Transport::Tls) => Some(Offered::new(false)),
            (Policy::Required, Transport::Tls) => Some(Offered::new(true)),
            (Policy::Required, _) => return Err(OriginateError::NotEncrypted(o.extension)),
            (Policy::Optional, _) => None,
        };
        let Some(rtp_port) = self.ports.allocate() else {
            return Err(OriginateError::NoRtpPort);
        };
        let id = self.next_call;
        let number = sanitize_user(&o.caller_number);
        let display = o
            .caller_name
            .as_deref()
            .map(sanitize_display)
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| number.clone());
        let domain = &self.settings.domain;
        let key = DialogKey {
            call_id: format!(
                "{}{}@{domain}",
                random_tag(&mut self.rng),
                random_tag(&mut self.rng)
            ),
            local_tag: random_tag(&mut self.rng),
        };
        let identity = format!("\"{display}\" <sip:{number}@{domain}>");
        let from = format!("{identity};tag={}", key.local_tag);
        let to = format!("<sip:{}@{domain}>", o.extension);
        let contact = contact_header(
            "hotline",
            self.settings.host_for(peer.transport),
            peer.transport,
        );
        let mut dialog = Dialog::uac(id, key.clone(), from, to, target, peer);
        dialog.rtp_port = rtp_port;
        let local = LocalMedia {
            address: self.settings.media_ip,
            port: rtp_port,
            session_id: dialog.sdp_session_id,
            session_version: dialog.sdp_version,
        };
        let offer = sdp::offer_with(&local, Direction::SendRecv, srtp.as_ref());
        dialog.srtp_offered = srtp;
        let text = format!(
            "INVITE {target} SIP/2.0\r\n\
             Via: SIP/2.0/{transport} {host};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n{routes}From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\nContact: {contact}\r\nP-Asserted-Identity: {identity}\r\n\
             Allow: {ALLOW}\r\nUser-Agent: {server}\r\nContent-Type: application/sdp\r\n\
             Content-Length: {len}\r\n\r\n{offer}",
            target = dialog.remote_target,
            transport = peer.transport.as_str(),
            host = self.settings.host_for(peer.transport),
            branch = random_tag(&mut self.rng),
            from = dialog.local_header,
            to = dialog.remote_header,
            call_id = key.call_id,
            server = self.settings.server,
            len = offer.len(),
        );
        let parsed = rsip::Request::try_from(text.as_bytes())
            .ok()
            .and_then(|req| Some((transaction::client_request_key(&req).ok()?, req)));
        let Some((tx_key, req)) = parsed else {
            tracing::warn!(extension = %o.extension, "cannot build an INVITE to the operator's contact");
            self.ports.release(rtp_port);
            return Err(OriginateError::BadContact(o.extension));
        };
        self.next_call += 1;
        let tx = ClientInvite::new(req, peer.transport.is_reliable(), self.settings.timers, now);
        self.client.insert(
            tx_key.clone(),
            ClientEntry {
                tx: ClientTx::Invite(tx),
                peer,
                scheduled: None,
                leg: Some(key.clone()),
                acks: Vec::new(),
            },
        );
        self.calls.insert(
            key,
            Box::new(Call {
                dialog,
                invite_tx: None,
                invite: None,
                source: peer.addr,
                contact,
                answer_sdp: String::new(),
                scheduled: None,
                hangup_on_ack: None,
                port_handed_over: false,
                outbound: Some(Outbound {
                    invite_tx: tx_key.clone(),
                    ringing: false,
                    cancel: CancelState::No,
                    give_up_at: None,
                }),
            }),
        );
        tracing::info!(call = id, extension = %o.extension, peer = %peer.addr, "ringing operator");
        self.drive_client(&tx_key, now);
        Ok(id)
    }

    /// [`UserAgent::cancel`].
    pub(super) fn withdraw_leg(&mut self, call: u64, now: Instant) {
        let Some(dkey) = self.call_key(call) else {
            return;
        };
        let c = self.calls.get_mut(&dkey).expect("found");
        let Some(out) = c.outbound.as_mut() else {
            tracing::debug!(call, "cancel of an inbound call ignored");
            return;
        };
        if c.dialog.state == DialogState::Confirmed {
            self.send_bye(&dkey, now);
            self.end_call(&dkey, EndReason::Cancelled);
            return;
        }
        if out.cancel == CancelState::No {
            out.cancel = CancelState::Wanted;
            self.send_cancel(&dkey, now);
        }
    }

    /// Sends the CANCEL a leg wants once its INVITE transaction allows it (Proceeding).
    pub(super) fn send_cancel(&mut self, dkey: &DialogKey, now: Instant) {
        let Some(out) = self.calls.get_mut(dkey).and_then(|c| c.outbound.as_mut()) else {
            return;
        };
        if out.cancel != CancelState::Wanted {
            return;
        }
        let Some(ClientEntry {
            tx: ClientTx::Invite(tx),
            peer,
            ..
        }) = self.client.get(&out.invite_tx)
        else {
            return;
        };
        let Some(cancel) = tx.cancel() else {
            return; // no provisional response yet
        };
        let peer = *peer;
        out.cancel = CancelState::Sent;
        out.give_up_at = Some(now + self.settings.timers.t1 * 64);
        self.start_client(cancel, peer, now);
        self.reschedule_call(dkey);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ua::testkit::*;

    /// A binding shared by another node of a cluster is rung through its Path: the INVITE
    /// goes to the edge named first, with the Path as its Route, to the phone's Contact.
    #[test]
    fn a_binding_with_a_path_is_rung_through_the_path() {
        let t0 = Instant::now();
        let (mut ua, _ports) = op_ua(t0);
        let path = "<sip:192.0.2.50:5088;lr;received=sip:198.51.100.20:40000>";
        let binding = crate::sip::registrar::Binding {
            contact: OP_CONTACT.into(),
            expires_at: t0 + std::time::Duration::from_secs(600),
            call_id: String::new(),
            cseq: 0,
            source: OP_SOURCE.parse().unwrap(),
            transport: Transport::Udp,
            updated_at: t0,
            path: vec![path.into()],
        };
        let o = Originate {
            via: Some(Box::new(binding.clone())),
            ..leg_to("1001", "+79780000001", None)
        };
        ua.originate(o, t0).unwrap();
        let sent = drain_peers(&mut ua);
        let (peer, invite) = &sent[0];
        assert_eq!(peer.addr, "192.0.2.50:5088".parse().unwrap());
        assert!(
            invite.starts_with(&format!("INVITE {OP_CONTACT} SIP/2.0\r\n")),
            "{invite}"
        );
        assert!(
            invite.contains(&format!("\r\nRoute: {path}\r\n")),
            "{invite}"
        );

        // A Path whose first hop is no address is no way to the phone.
        let o = Originate {
            via: Some(Box::new(crate::sip::registrar::Binding {
                path: vec!["<sip:edge.example;lr>".into()],
                ..binding
            })),
            ..leg_to("1001", "+79780000001", None)
        };
        assert_eq!(
            ua.originate(o, t0),
            Err(OriginateError::BadContact("1001".into()))
        );
    }

    #[test]
    fn originate_sends_the_invite_to_the_registered_source() {
        let t0 = Instant::now();
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
        let before = ua.next_call;
        let leg = ua
            .originate(leg_to("1001", "+79780000001", Some("Иван Петров")), t0)
            .unwrap();
        assert_eq!(leg, before, "legs are numbered like inbound calls");
        assert_eq!(ua.active_calls(), 1);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        let (peer, invite) = &sent[0];
        assert_eq!(
            *peer,
            Peer {
                transport: Transport::Udp,
                addr: op_src()
            },
            "sent to where the REGISTER came from, not to the Contact"
        );
        assert!(
            invite.starts_with(&format!("INVITE {OP_CONTACT} SIP/2.0\r\n")),
            "{invite}"
        );
        let via = line(invite, "Via");
        assert!(
            via.starts_with("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"),
            "{via}"
        );
        assert!(via.ends_with(";rport"), "{via}");
        assert_eq!(line(invite, "Max-Forwards"), "70");
        let from = line(invite, "From");
        assert!(
            from.starts_with("\"Иван Петров\" <sip:+79780000001@hotline.test>;tag="),
            "{from}"
        );
        assert_eq!(line(invite, "To"), "<sip:1001@hotline.test>");
        assert_eq!(
            line(invite, "P-Asserted-Identity"),
            "\"Иван Петров\" <sip:+79780000001@hotline.test>"
        );
        assert_eq!(line(invite, "CSeq"), "1 INVITE");
        assert_eq!(line(invite, "Contact"), "<sip:hotline@127.0.0.1:5060>");
        assert_eq!(line(invite, "Allow"), ALLOW);
        assert_eq!(line(invite, "User-Agent"), ua.settings.server);
        assert_eq!(line(invite, "Content-Type"), "application/sdp");
        let body = invite.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(line(invite, "Content-Length"), body.len().to_string());
        let port = *ports.held().iter().next().unwrap();
        assert!(
            body.contains(&format!("m=audio {port} RTP/AVP 0 8 101\r\n")),
            "{body}"
        );
        assert!(body.contains("c=IN IP4 127.0.0.1\r\n"));
        assert!(body.contains("a=rtpmap:8 PCMA/8000\r\n"));
        assert!(body.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        // Without a name the number is the display name.
        let _ = ua
            .originate(leg_to("1001", "84950000000", None), t0)
            .unwrap();
        let invite = drain_peers(&mut ua).pop().unwrap().1;
        assert!(
            line(&invite, "From")
                .starts_with("\"84950000000\" <sip:84950000000@hotline.test>;tag="),
            "{invite}"
        );
        assert_ne!(line(&invite, "Call-ID"), line(&sent[0].1, "Call-ID"));
    }

    #[test]
    fn cancel_after_180_then_487() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert_eq!(events(&mut ua), vec![Event::OperatorRinging { call: leg }]);
        ua.cancel(leg, t0);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        let (peer, cancel) = &sent[0];
        assert_eq!(peer.addr, op_src());
        assert!(
            cancel.starts_with(&format!("CANCEL {OP_CONTACT} SIP/2.0\r\n")),
            "{cancel}"
        );
        assert_eq!(
            line(cancel, "Via"),
            line(&invite, "Via"),
            "same branch as the INVITE"
        );
        assert_eq!(line(cancel, "CSeq"), "1 CANCEL");
        assert_eq!(line(cancel, "To"), "<sip:1001@hotline.test>");
        assert_eq!(line(cancel, "Call-ID"), line(&invite, "Call-ID"));
        ua.cancel(leg, t0);
        assert!(drain(&mut ua).is_empty(), "one CANCEL");
        assert_eq!(
            ua.active_calls(),
            1,
            "the leg lasts until the INVITE's final response"
        );
        ua.handle_message(
            op_reply(cancel, 200, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert!(drain(&mut ua).is_empty());
        ua.handle_message(
            op_reply(&invite, 487, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        let sent = drain(&mut ua);
        assert_eq!(sent.len(), 1);
        assert!(
            sent[0].starts_with(&format!("ACK {OP_CONTACT} SIP/2.0")),
            "{}",
            sent[0]
        );
        assert_eq!(line(&sent[0], "CSeq"), "1 ACK");
        assert_eq!(
            line(&sent[0], "Via"),
            line(&invite, "Via"),
            "the transaction's ACK"
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());
        assert_eq!(ua.active_calls(), 0);
        run(&mut ua, t0, t0 + Duration::from_secs(40));
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.open_transactions(), 0);
    }

    #[test]
    fn cancel_before_any_provisional_waits_for_it() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.cancel(leg, t0);
        assert!(
            drain(&mut ua).is_empty(),
            "§9.1: no CANCEL before a provisional response"
        );
        // hangup() of a leg not answered is the same as cancel().
        ua.hangup(leg, EndReason::Hangup, t0);
        assert!(drain(&mut ua).is_empty());
        let t1 = t0 + Duration::from_millis(200);
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t1,
        );
        let sent = drain(&mut ua);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].starts_with("CANCEL "), "{}", sent[0]);
        assert!(
            events(&mut ua).is_empty(),
            "no ringing for a leg being cancelled"
        );
        ua.handle_message(
            op_reply(&sent[0], 200, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t1,
        );
        ua.handle_message(
            op_reply(&invite, 487, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t1,
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());

        // Nothing ever comes: Timer B ends the leg, still as cancelled, without a CANCEL.
        let t2 = t0 + Duration::from_secs(100);
        let leg = ua.originate(leg_to("1001", "1", None), t2).unwrap();
        drain(&mut ua);
        ua.cancel(leg, t2);
        let later = run(&mut ua, t2, t2 + Duration::from_secs(33));
        assert!(
            later.iter().all(|(_, m)| m.starts_with("INVITE ")),
            "{later:?}"
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());

        // A CANCEL the operator never answers: given up 64·T1 after it.
        let t3 = t0 + Duration::from_secs(200);
        let leg = ua.originate(leg_to("1001", "1", None), t3).unwrap();
        let invite = drain(&mut ua).pop().unwrap();
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t3,
        );
        let _ = events(&mut ua);
        ua.cancel(leg, t3);
        assert!(drain(&mut ua)[0].starts_with("CANCEL "));
        run(&mut ua, t3, t3 + Duration::from_secs(31));
        assert!(events(&mut ua).is_empty());
        run(
            &mut ua,
            t3 + Duration::from_secs(31),
            t3 + Duration::from_secs(33),
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());
        assert_eq!(ua.active_calls(), 0);
    }

    #[test]
    fn originate_only_to_registered_operators() {
        let t0 = Instant::now();
        let (mut ua, ports) = op_ua(t0);
        assert_eq!(
            ua.originate(leg_to("1001", "1", None), t0),
            Err(OriginateError::NotRegistered("1001".into()))
        );
        assert_eq!(
            ua.originate(leg_to("8800", "1", None), t0),
            Err(OriginateError::UnknownExtension("8800".into())),
            "a hotline number is no operator"
        );
        assert_eq!(
            ua.originate(leg_to("sip:evil@203.0.113.9", "1", None), t0),
            Err(OriginateError::UnknownExtension(
                "sip:evil@203.0.113.9".into()
            ))
        );
        register_op(
            &mut ua,
            "1001",
            "pw1",
            OP_CONTACT,
            OP_SOURCE,
            Transport::Udp,
            t0,
        );
        assert_eq!(
            ua.originate(leg_to("1002", "1", None), t0),
            Err(OriginateError::NotRegistered("1002".into()))
        );
        // The binding expires (Expires: 300).
        let late = t0 + Duration::from_secs(301);
        assert_eq!(
            ua.originate(leg_to("1001", "1", None), late),
            Err(OriginateError::NotRegistered("1001".into()))
        );
        assert!(drain(&mut ua).is_empty(), "nothing sent");
        assert!(events(&mut ua).is_empty());
        assert!(ports.held().is_empty(), "no port held");
        assert_eq!(ua.active_calls(), 0);
        let mut ua = ua.with_ports(Box::new(NoPorts));
        register_op(
            &mut ua,
            "1001",
            "pw1",
            OP_CONTACT,
            OP_SOURCE,
            Transport::Udp,
            late,
        );
        assert_eq!(
            ua.originate(leg_to("1001", "1", None), late),
            Err(OriginateError::NoRtpPort)
        );
        assert!(drain(&mut ua).is_empty());
    }

    #[test]
    fn the_newest_binding_is_rung_over_its_transport() {
        let t0 = Instant::now();
        let (mut ua, _ports) = op_ua(t0);
        register_op(
            &mut ua,
            "1001",
            "pw1",
            OP_CONTACT,
            OP_SOURCE,
            Transport::Udp,
            t0,
        );
        let t1 = t0 + Duration::from_secs(5);
        let tcp_contact = "sip:1001@10.0.0.6:5080;transport=tcp";
        register_op(
            &mut ua,
            "1001",
            "pw1",
            tcp_contact,
            "198.51.100.21:41000",
            Transport::Tcp,
            t1,
        );
        ua.originate(leg_to("1001", "5", None), t1).unwrap();
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        let (peer, invite) = &sent[0];
        assert_eq!(
            *peer,
            Peer {
                transport: Transport::Tcp,
                addr: "198.51.100.21:41000".parse().unwrap()
            }
        );
        // (rsip prints the transport parameter's value in capitals.)
        let request_line = invite.split("\r\n").next().unwrap();
        assert!(
            request_line.eq_ignore_ascii_case(&format!("INVITE {tcp_contact} SIP/2.0")),
            "{invite}"
        );
        assert!(line(invite, "Via").starts_with("SIP/2.0/TCP "));
        assert_eq!(
            line(invite, "Contact"),
            "<sip:hotline@127.0.0.1:5060;transport=tcp>"
        );
        // No Timer A on TCP: silence until Timer B.
        let later = run(&mut ua, t1, t1 + Duration::from_secs(33));
        assert!(later.is_empty(), "{later:?}");
        assert!(matches!(
            &events(&mut ua)[..],
            [Event::OperatorFailed { status: 408, .. }]
        ));
    }

    #[test]
    fn a_hostile_caller_cannot_inject_headers() {
        let t0 = Instant::now();
        let (mut ua, _ports) = op_ua(t0);
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
            .originate(
                leg_to(
                    "1001",
                    "+7978\r\nX-Evil: 1\r\n<sip:x@y>;\"",
                    Some("Bob\" <sip:bob@evil>\r\nX-Injected: yes\r\n\r\nv=0\\"),
                ),
                t0,
            )
            .unwrap();
        let invite = drain(&mut ua).pop().unwrap();
        let (head, body) = invite.split_once("\r\n\r\n").unwrap();
        assert!(body.starts_with("v=0\r\no=hotline "), "{body}");
        for l in head.split("\r\n").skip(1) {
            let name = l.split(':').next().unwrap();
            assert!(
                [
                    "Via",
                    "Max-Forwards",
                    "From",
                    "To",
                    "Call-ID",
                    "CSeq",
                    "Contact",
                    "P-Asserted-Identity",
                    "Allow",
                    "User-Agent",
                    "Content-Type",
                    "Content-Length"
                ]
                .contains(&name),
                "unexpected header line {l:?} in {invite}"
            );
        }
        let from = line(&invite, "From");
        assert!(
            from.starts_with("\"Bob sip:bob@evil X-Injected: yes v=0\" <sip:+7978X-Evil1sipxy@hotline.test>;tag="),
            "{from}"
        );
        assert_eq!(
            line(&invite, "P-Asserted-Identity"),
            "\"Bob sip:bob@evil X-Injected: yes v=0\" <sip:+7978X-Evil1sipxy@hotline.test>"
        );
        ua.cancel(leg, t0);
        // Nothing usable left: anonymous, and the number as name.
        ua.originate(leg_to("1001", "\"\r\n<>;@", Some("\r\n\"\"")), t0)
            .unwrap();
        let invite = drain(&mut ua).pop().unwrap();
        assert!(
            line(&invite, "From").starts_with("\"anonymous\" <sip:anonymous@hotline.test>;tag="),
            "{invite}"
        );
        assert_eq!(sanitize_display(&"я".repeat(100)).chars().count(), 64);
        assert_eq!(sanitize_user(&"1".repeat(100)).len(), 32);
    }
}
