//! What the INVITE transaction of an operator leg delivers: ringing, the answer (ACKed
//! by us, for every retransmission too), a failure; and 2xx responses nobody wants any
//! more, which are ACKed and ended with BYE.

use super::helpers::{random_tag, sdp_of};
use super::outbound::CancelState;
use super::transactions::ClientTx;
use super::{EndReason, Event, UserAgent, MAX_2XX_DIALOGS};
use crate::sip::dialog::{Dialog, DialogKey, DialogState};
use crate::sip::headers::tag_param;
use crate::sip::message::first_header;
use crate::sip::sdp;
use crate::sip::transaction::TransactionKey;
use crate::sip::Transmit;
use bytes::Bytes;
use std::time::Instant;

impl UserAgent {
    /// A response the INVITE transaction of leg `leg` delivered.
    pub(super) fn on_leg_response(
        &mut self,
        tx_key: &TransactionKey,
        leg: &DialogKey,
        resp: rsip::Response,
        now: Instant,
    ) {
        match resp.status_code.code() {
            100..=199 => self.on_leg_provisional(leg, resp.status_code.code(), now),
            200..=299 => self.on_leg_2xx(tx_key, leg, &resp, now),
            status => self.on_leg_failed(leg, status),
        }
    }

    pub(super) fn on_leg_provisional(&mut self, leg: &DialogKey, status: u16, now: Instant) {
        let Some(call) = self.calls.get_mut(leg) else {
            return;
        };
        let Some(out) = call.outbound.as_mut() else {
            return;
        };
        match out.cancel {
            CancelState::Wanted => self.send_cancel(leg, now),
            CancelState::Sent => {}
            CancelState::No => {
                if matches!(status, 180 | 183) && !out.ringing {
                    out.ringing = true;
                    let call = call.dialog.id;
                    self.events.push_back(Event::OperatorRinging { call });
                }
            }
        }
    }

    /// A 2xx to a leg's INVITE: the answer, a retransmission of it, or one nobody wants any
    /// more (the leg was cancelled or has ended, or a second fork answered).
    pub(super) fn on_leg_2xx(
        &mut self,
        tx_key: &TransactionKey,
        leg: &DialogKey,
        resp: &rsip::Response,
        now: Instant,
    ) {
        let tag = first_header(&resp.headers, "To")
            .and_then(tag_param)
            .unwrap_or_default()
            .to_string();
        let Some(entry) = self.client.get(tx_key) else {
            return;
        };
        let peer = entry.peer;
        if let Some((_, ack)) = entry.acks.iter().find(|(t, _)| *t == tag) {
            // §13.2.2.4: every retransmission of the 2xx gets the ACK again.
            let bytes = ack.clone();
            self.transmits.push_back(Transmit { peer, bytes });
            return;
        }
        let branch = format!("z9hG4bK{}", random_tag(&mut self.rng));
        let (host, server) = (
            self.settings.host_for(peer.transport),
            &self.settings.server,
        );
        let wanted = self.calls.get_mut(leg).filter(|c| {
            c.dialog.state == DialogState::Early
                && c.outbound
                    .as_ref()
                    .is_some_and(|o| o.cancel == CancelState::No)
        });
        if let Some(call) = wanted {
            call.dialog.confirm_uac(resp);
            let ack = call.dialog.ack(1, host, &branch, server);
            let offered = call.dialog.srtp_offered.take();
            let answer = sdp_of(&resp.headers, &resp.body)
                .and_then(|body| sdp::parse_answer_with(body, offered.as_ref()));
            let id = call.dialog.id;
            let rtp_port = call.dialog.rtp_port;
            if let Ok(media) = &answer {
                call.dialog.media = Some(media.clone());
                call.port_handed_over = true;
            }
            self.remember_ack(tx_key, tag, ack.clone());
            self.transmits.push_back(Transmit { peer, bytes: ack });
            match answer {
                Ok(media) => {
                    tracing::info!(call = id, "operator answered");
                    self.events.push_back(Event::OperatorAnswered {
                        call: id,
                        rtp_port,
                        media,
                    });
                }
                Err(e) => {
                    tracing::info!(call = id, error = %e, "operator's 2xx without a usable SDP answer; BYE");
                    self.send_bye(leg, now);
                    self.fail_leg(leg, 488);
                }
            }
            return;
        }
        // Still a dialog the far end considers up: ACK it, then end it (§13.2.2.4, §15).
        if entry.acks.len() >= MAX_2XX_DIALOGS {
            tracing::debug!(call_id = %leg.call_id, "too many 2xx dialogs for one INVITE; dropped");
            return;
        }
        let ClientTx::Invite(tx) = &entry.tx else {
            return;
        };
        let invite = tx.request();
        let text = |name| first_header(&invite.headers, name).unwrap_or_default();
        let key = DialogKey {
            call_id: text("Call-ID").to_string(),
            local_tag: tag_param(text("From")).unwrap_or_default().to_string(),
        };
        let mut dialog = Dialog::uac(
            0,
            key,
            text("From").to_string(),
            text("To").to_string(),
            invite.uri.to_string(),
            peer,
        );
        dialog.confirm_uac(resp);
        let ack = dialog.ack(1, host, &branch, server);
        let bye_branch = format!("z9hG4bK{}", random_tag(&mut self.rng));
        let bye = dialog.request("BYE", host, &bye_branch, server);
        self.remember_ack(tx_key, tag, ack.clone());
        self.transmits.push_back(Transmit { peer, bytes: ack });
        if let Ok(req) = rsip::Request::try_from(&bye[..]) {
            self.start_client(req, peer, now);
        }
        let cancelled = self.calls.get(leg).is_some_and(|c| {
            c.dialog.state == DialogState::Early
                && c.outbound
                    .as_ref()
                    .is_some_and(|o| o.cancel != CancelState::No)
        });
        if cancelled {
            tracing::info!(call_id = %leg.call_id, "2xx crossed our CANCEL; ACK and BYE");
            self.end_call(leg, EndReason::Cancelled);
        }
    }

    pub(super) fn remember_ack(&mut self, tx_key: &TransactionKey, tag: String, ack: Bytes) {
        if let Some(e) = self.client.get_mut(tx_key) {
            e.acks.push((tag, ack));
        }
    }

    /// A leg's INVITE got a final ≥ 300 (ACKed by the transaction) or timed out (408): the
    /// leg ends, as cancelled if we had asked for that.
    pub(super) fn on_leg_failed(&mut self, leg: &DialogKey, status: u16) {
        let Some(call) = self.calls.get(leg) else {
            return;
        };
        let Some(out) = &call.outbound else {
            return;
        };
        if call.dialog.state != DialogState::Early {
            return;
        }
        if out.cancel == CancelState::No {
            self.fail_leg(leg, status);
        } else {
            self.end_call(leg, EndReason::Cancelled);
        }
    }

    /// Ends an operator leg that was never answered with [`Event::OperatorFailed`].
    pub(super) fn fail_leg(&mut self, leg: &DialogKey, status: u16) {
        if let Some(call) = self.calls.remove(leg) {
            if !call.port_handed_over {
                self.ports.release(call.dialog.rtp_port);
            }
            tracing::info!(call = call.dialog.id, status, "operator leg failed");
            self.events.push_back(Event::OperatorFailed {
                call: call.dialog.id,
                status,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::sdp::{Direction, Negotiated};
    use crate::sip::ua::testkit::*;

    #[test]
    fn ringing_answer_ack_and_retransmitted_2xx() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        // 100 is not ringing; 180 is, once.
        ua.handle_message(
            op_reply(&invite, 100, None, "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert!(events(&mut ua).is_empty());
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert_eq!(events(&mut ua), vec![Event::OperatorRinging { call: leg }]);
        assert!(
            drain(&mut ua).is_empty(),
            "no INVITE retransmissions once ringing"
        );
        let ok = op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, OP_ANSWER);
        let t1 = t0 + Duration::from_secs(3);
        ua.handle_message(ok.clone(), op_src(), Transport::Udp, t1);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1, "{sent:?}");
        let (peer, ack) = &sent[0];
        assert_eq!(peer.addr, op_src());
        assert!(
            ack.starts_with("ACK sip:1001@10.0.0.5:5070;ob SIP/2.0\r\n"),
            "{ack}"
        );
        assert_eq!(line(ack, "CSeq"), "1 ACK");
        assert_eq!(line(ack, "To"), "<sip:1001@hotline.test>;tag=op1");
        assert_eq!(line(ack, "From"), line(&invite, "From"));
        assert_eq!(line(ack, "Call-ID"), line(&invite, "Call-ID"));
        assert_ne!(
            line(ack, "Via"),
            line(&invite, "Via"),
            "an ACK to a 2xx has its own branch"
        );
        // Route set: the Record-Route in reverse.
        assert!(
            ack.find("Route: <sip:p2.test;lr>").unwrap()
                < ack.find("Route: <sip:p1.test;lr>").unwrap()
        );
        let port = *ports.held().iter().next().unwrap();
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorAnswered {
                call: leg,
                rtp_port: port,
                media: Negotiated {
                    codecs: vec![(8, sdp::Codec::Pcma)],
                    telephone_event: Some(101),
                    remote_rtp: Some("10.0.0.5:30000".parse().unwrap()),
                    direction: Direction::SendRecv,
                    ptime: None,
                    srtp: None,
                },
            }]
        );
        // The 2xx again (our ACK was lost): the same ACK again, no second event.
        ua.handle_message(
            ok,
            op_src(),
            Transport::Udp,
            t1 + Duration::from_millis(500),
        );
        assert_eq!(drain_peers(&mut ua), sent);
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.active_calls(), 1);
        // The operator hangs up.
        let bye = format!(
            "BYE sip:hotline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKobye;rport\r\n\
             From: <sip:1001@hotline.test>;tag=op1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            line(&invite, "From"),
            line(&invite, "Call-ID")
        );
        ua.handle_message(request(&bye), op_src(), Transport::Udp, t1);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        assert!(sent[0].1.starts_with("SIP/2.0 200"), "{}", sent[0].1);
        assert_eq!(sent[0].0.addr, op_src(), "rport: back to the source");
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::RemoteBye
            }]
        );
        assert_eq!(ua.active_calls(), 0);
        // Answered: the port was handed to the call flow with OperatorAnswered, and it is
        // the call flow's to free (the core freeing it would race the media taking it).
        assert_eq!(
            ports.held().len(),
            1,
            "handed over, not released by the core"
        );
        // Timer M ends the INVITE transaction, Timer J the BYE's.
        run(&mut ua, t1, t1 + Duration::from_secs(40));
        assert_eq!(ua.open_transactions(), 0);
    }

    #[test]
    fn in_dialog_requests_on_the_leg_and_our_bye() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite, _ack) = answered(t0);
        let _ = events(&mut ua);
        let our_tag = tag_param(line(&invite, "From")).unwrap().to_string();
        let in_dialog = |method: &str, cseq: u32, extra: &str, body: &str| {
            let ctype = if body.is_empty() {
                String::new()
            } else {
                format!("Content-Type: {extra}\r\n")
            };
            format!(
                "{method} sip:hotline@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5070;branch=z9hG4bKo{method}{cseq}\r\n\
                 From: <sip:1001@hotline.test>;tag=op1\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n\
                 Contact: <sip:1001@10.0.0.5:5070;ob>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
                line(&invite, "From"),
                line(&invite, "Call-ID"),
                body.len()
            )
        };
        // INFO keepalive and DTMF.
        ua.handle_message(
            request(&in_dialog("INFO", 1, "", "")),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert!(drain(&mut ua)[0].starts_with("SIP/2.0 200"));
        let dtmf = in_dialog(
            "INFO",
            2,
            "application/dtmf-relay",
            "Signal=5\r\nDuration=160\r\n",
        );
        ua.handle_message(request(&dtmf), op_src(), Transport::Udp, t0);
        assert!(drain(&mut ua)[0].starts_with("SIP/2.0 200"));
        assert_eq!(
            events(&mut ua),
            vec![Event::Dtmf {
                call: leg,
                digit: '5'
            }]
        );
        // Hold: re-INVITE with sendonly, answered with our port, recvonly.
        let hold = OP_ANSWER.replace("a=rtpmap:8", "a=sendonly\r\na=rtpmap:8");
        let reinvite = in_dialog("INVITE", 3, "application/sdp", &hold);
        ua.handle_message(request(&reinvite), op_src(), Transport::Udp, t0);
        let ok = drain(&mut ua).pop().unwrap();
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        let port = *ports.held().iter().next().unwrap();
        assert!(
            ok.contains(&format!("m=audio {port} RTP/AVP 8 101")),
            "{ok}"
        );
        assert!(ok.contains("a=recvonly"), "{ok}");
        assert_eq!(line(&ok, "Contact"), "<sip:hotline@127.0.0.1:5060>");
        assert!(line(&ok, "To").ends_with(&format!(";tag={our_tag}")));
        let ev = events(&mut ua);
        assert!(
            matches!(&ev[..], [Event::MediaChanged { call, media }] if *call == leg && media.direction == Direction::RecvOnly),
            "{ev:?}"
        );
        ua.handle_message(
            request(&in_dialog("ACK", 3, "", "")),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert!(drain(&mut ua).is_empty());
        // We hang up: BYE to the 2xx Contact (the re-INVITE's), via the route set, to the source.
        ua.hangup(leg, EndReason::Hangup, t0);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        let (peer, bye) = &sent[0];
        assert_eq!(peer.addr, op_src());
        assert!(
            bye.starts_with("BYE sip:1001@10.0.0.5:5070;ob SIP/2.0\r\n"),
            "{bye}"
        );
        assert_eq!(line(bye, "CSeq"), "2 BYE");
        assert_eq!(line(bye, "To"), "<sip:1001@hotline.test>;tag=op1");
        assert_eq!(line(bye, "From"), line(&invite, "From"));
        assert!(
            bye.find("Route: <sip:p2.test;lr>").unwrap()
                < bye.find("Route: <sip:p1.test;lr>").unwrap()
        );
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Hangup
            }]
        );
        assert_eq!(ports.held().len(), 1, "handed over to the call flow");
        assert_eq!(ua.active_calls(), 0);
    }

    #[test]
    fn a_2xx_crossing_the_cancel_is_acked_and_ended_with_bye() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.handle_message(
            op_reply(&invite, 180, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        let _ = events(&mut ua);
        ua.cancel(leg, t0);
        let cancel = drain(&mut ua).pop().unwrap();
        let ok = op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, OP_ANSWER);
        ua.handle_message(ok.clone(), op_src(), Transport::Udp, t0);
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(
            sent[0]
                .1
                .starts_with("ACK sip:1001@10.0.0.5:5070;ob SIP/2.0"),
            "{}",
            sent[0].1
        );
        assert_eq!(line(&sent[0].1, "To"), "<sip:1001@hotline.test>;tag=op1");
        let bye = &sent[1].1;
        assert!(
            bye.starts_with("BYE sip:1001@10.0.0.5:5070;ob SIP/2.0"),
            "{bye}"
        );
        assert_eq!(line(bye, "CSeq"), "2 BYE");
        assert_eq!(line(bye, "To"), "<sip:1001@hotline.test>;tag=op1");
        assert_eq!(line(bye, "From"), line(&invite, "From"));
        assert!(sent.iter().all(|(p, _)| p.addr == op_src()));
        assert_eq!(
            events(&mut ua),
            vec![Event::CallEnded {
                call: leg,
                reason: EndReason::Cancelled
            }]
        );
        assert!(ports.held().is_empty());
        // The CANCEL's 200 (or a 481), a retransmitted 2xx: the ACK again, nothing else.
        ua.handle_message(
            op_reply(&cancel, 200, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        ua.handle_message(
            ok,
            op_src(),
            Transport::Udp,
            t0 + Duration::from_millis(500),
        );
        let again = drain(&mut ua);
        assert_eq!(again, vec![sent[0].1.clone()]);
        ua.handle_message(
            op_reply(bye, 200, None, "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        run(&mut ua, t0, t0 + Duration::from_secs(40));
        assert!(events(&mut ua).is_empty());
        assert_eq!(ua.open_transactions(), 0);
    }

    #[test]
    fn busy_operator_fails_the_leg() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.handle_message(
            op_reply(&invite, 486, Some("op1"), "", ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        let sent = drain_peers(&mut ua);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.addr, op_src());
        assert!(
            sent[0].1.starts_with(&format!("ACK {OP_CONTACT} SIP/2.0")),
            "{}",
            sent[0].1
        );
        assert_eq!(line(&sent[0].1, "To"), "<sip:1001@hotline.test>;tag=op1");
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorFailed {
                call: leg,
                status: 486
            }]
        );
        assert!(ports.held().is_empty());
        assert_eq!(ua.active_calls(), 0);
        // Cancelling or hanging up a failed leg does nothing.
        ua.cancel(leg, t0);
        ua.hangup(leg, EndReason::Hangup, t0);
        assert!(drain(&mut ua).is_empty());
        assert!(events(&mut ua).is_empty());
    }

    #[test]
    fn answer_without_sdp_is_acked_ended_and_fails_with_488() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        ua.handle_message(
            op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, ""),
            op_src(),
            Transport::Udp,
            t0,
        );
        let sent = drain(&mut ua);
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent[0].starts_with("ACK "), "{}", sent[0]);
        assert!(sent[1].starts_with("BYE "), "{}", sent[1]);
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorFailed {
                call: leg,
                status: 488
            }]
        );
        assert!(ports.held().is_empty());
        // An answer with no codec in common counts the same.
        let leg = ua.originate(leg_to("1001", "2", None), t0).unwrap();
        let invite = drain(&mut ua).pop().unwrap();
        let g729 = OP_ANSWER
            .replace("RTP/AVP 8 101", "RTP/AVP 18")
            .replace("a=rtpmap:8 PCMA", "a=rtpmap:18 G729");
        ua.handle_message(
            op_reply(&invite, 200, Some("op1"), OP_2XX_EXTRA, &g729),
            op_src(),
            Transport::Udp,
            t0,
        );
        assert_eq!(drain(&mut ua).len(), 2);
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorFailed {
                call: leg,
                status: 488
            }]
        );
        assert!(ports.held().is_empty());
    }

    #[test]
    fn no_response_retransmits_on_timer_a_then_408() {
        let t0 = Instant::now();
        let (mut ua, ports, leg, invite) = rung(t0);
        let later = run(&mut ua, t0, t0 + Duration::from_secs(33));
        let resends: Vec<u64> = later
            .iter()
            .filter(|(_, m)| *m == invite)
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        assert_eq!(resends, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(later.len(), resends.len());
        assert_eq!(
            events(&mut ua),
            vec![Event::OperatorFailed {
                call: leg,
                status: 408
            }]
        );
        assert!(ports.held().is_empty());
        assert_eq!(ua.active_calls(), 0);
        assert_eq!(ua.open_transactions(), 0);
    }
}
