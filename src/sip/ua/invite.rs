//! INVITE from outside: a new call (checked, then answered at once or after ringing), the
//! ACK for our 2xx, and re-INVITEs in a call (hold, unhold, new media).

use super::call::Call;
use super::helpers::{
    bad_extension, contact_header, random_tag, sdp_offer, unacceptable_content,
    vet_media_destination, warning_code,
};
use super::{Event, UserAgent, ALLOW};
use crate::sip::dialog::{Dialog, DialogKey, DialogState, PendingAck};
use crate::sip::headers::{parse_cseq, tag_param};
use crate::sip::message::{addr_uri, first_header, ResponseBuilder};
use crate::sip::sdes::Keys;
use crate::sip::sdp::{self, Direction, LocalMedia};
use crate::sip::transaction::TransactionKey;
use crate::sip::Peer;
use std::net::SocketAddr;
use std::time::Instant;

impl UserAgent {
    pub(super) fn on_invite(
        &mut self,
        req: rsip::Request,
        key: TransactionKey,
        source: SocketAddr,
        peer: Peer,
        now: Instant,
    ) {
        // 100 Trying at once: stops the caller's INVITE retransmissions (§17.2.1).
        let trying = ResponseBuilder::new(&req, source, 100, "Trying").build();
        self.respond(&key, 100, trying, now);

        let number = req.uri.user().unwrap_or_default().to_string();
        if !self.settings.hotline_numbers.contains(&number) {
            let r = self.simple(&req, source, 404, "Not Found");
            return self.respond(&key, 404, r, now);
        }
        if self.calls.len() >= self.settings.max_calls || self.draining {
            let tag = random_tag(&mut self.rng);
            let mut r = ResponseBuilder::new(&req, source, 503, "Service Unavailable")
                .to_tag(&tag)
                .header("Retry-After", 5)
                .header("Server", &self.settings.server);
            if self.draining {
                r = r.header("Warning", "399 hotline \"draining\"");
            }
            return self.respond(&key, 503, r.build(), now);
        }
        if let Some(r) = bad_extension(&req, source, &mut self.rng) {
            return self.respond(&key, 420, r, now);
        }
        // RFC 3261 §21.4.16 / §21.4.7: a body we cannot read is 415, an answer the caller
        // cannot read is 406; both name what we do take.
        if let Some((status, r)) =
            unacceptable_content(&req, source, &self.settings.server, &mut self.rng)
        {
            return self.respond(&key, status, r, now);
        }
        let local_tag = random_tag(&mut self.rng);
        let id = self.next_call;
        self.next_call += 1;
        let Some(mut dialog) = Dialog::from_invite(id, &req, local_tag, peer) else {
            let r = self.simple(&req, source, 400, "Bad Request");
            return self.respond(&key, 400, r, now);
        };
        let Some(rtp_port) = self.ports.allocate() else {
            let r = ResponseBuilder::new(&req, source, 503, "Service Unavailable")
                .to_tag(&dialog.key.local_tag)
                .header("Retry-After", 5)
                .header("Warning", "399 hotline \"no free RTP port\"")
                .header("Server", &self.settings.server)
                .build();
            return self.respond(&key, 503, r, now);
        };
        let local = LocalMedia {
            address: self.settings.media_ip,
            port: rtp_port,
            session_id: dialog.sdp_session_id,
            session_version: dialog.sdp_version,
        };
        let security = self.settings.security(peer.transport);
        let mut answer = match sdp_offer(&req)
            .and_then(|offer| sdp::answer_with(offer, &local, security, None))
        {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(%source, error = %e, "INVITE refused: SDP");
                let r = ResponseBuilder::new(&req, source, 488, "Not Acceptable Here")
                    .to_tag(&dialog.key.local_tag)
                    .header("Warning", format!("{} hotline \"{e}\"", warning_code(&e)))
                    .header("Server", &self.settings.server)
                    .build();
                self.ports.release(rtp_port);
                return self.respond(&key, 488, r, now);
            }
        };
        vet_media_destination(
            &mut answer.negotiated,
            dialog.peer.addr.ip(),
            &self.settings.media_trusted,
        );
        dialog.rtp_port = rtp_port;
        dialog.media = Some(answer.negotiated.clone());
        let dkey = dialog.key.clone();
        let contact = contact_header(
            &number,
            self.settings.host_for(peer.transport),
            peer.transport,
        );
        self.events.push_back(Event::CallOffered {
            call: id,
            call_id: dkey.call_id.clone(),
            from: dialog.remote_header.clone(),
            number,
            rtp_port,
            media: answer.negotiated,
        });
        let ring = self.settings.answer_delay;
        let call = Call {
            dialog,
            invite_tx: Some(key.clone()),
            invite: Some(req),
            source,
            contact,
            answer_sdp: answer.sdp,
            scheduled: None,
            hangup_on_ack: None,
            outbound: None,
            port_handed_over: true,
        };
        self.calls.insert(dkey.clone(), Box::new(call));
        if let Some(entry) = self.server.get_mut(&key) {
            entry.dialog = Some(dkey.clone());
        }
        if ring.is_zero() {
            self.answer(&dkey, now);
        } else {
            let call = self.calls.get_mut(&dkey).expect("just inserted");
            let req = call.invite.as_ref().expect("kept until answered");
            let ringing = ResponseBuilder::new(req, source, 180, "Ringing")
                .to_tag(&dkey.local_tag)
                .header("Contact", &call.contact)
                .build();
            call.dialog.answer_at = Some(now + ring);
            self.respond(&key, 180, ringing, now);
            self.reschedule_call(&dkey);
        }
    }

    /// Sends the 200 OK to a pending INVITE.
    pub(super) fn answer(&mut self, dkey: &DialogKey, now: Instant) {
        let Some(call) = self.calls.get_mut(dkey) else {
            return;
        };
        let (Some(req), Some(tx_key)) = (call.invite.take(), call.invite_tx.take()) else {
            return;
        };
        let ok = ResponseBuilder::new(&req, call.source, 200, "OK")
            .to_tag(&dkey.local_tag)
            .header("Contact", &call.contact)
            .header("Allow", ALLOW)
            .header("Server", &self.settings.server)
            .body("application/sdp", call.answer_sdp.as_bytes())
            .build();
        call.dialog.state = DialogState::WaitingAck;
        call.dialog.pending_ack = Some(PendingAck::new(
            ok.clone(),
            call.dialog.remote_cseq,
            &self.settings.timers,
            now,
        ));
        let id = call.dialog.id;
        self.respond(&tx_key, 200, ok, now);
        self.events.push_back(Event::CallAnswered { call: id });
        self.reschedule_call(dkey);
    }

    pub(super) fn on_ack(&mut self, req: &rsip::Request, now: Instant) {
        let Some(tag) = first_header(&req.headers, "To").and_then(tag_param) else {
            return;
        };
        let tag = tag.to_string();
        let Some(dkey) = self.find_call(req, &tag) else {
            return;
        };
        let cseq = first_header(&req.headers, "CSeq")
            .and_then(|v| parse_cseq(v).ok())
            .map(|(n, _)| n);
        let call = self.calls.get_mut(&dkey).expect("found");
        if let Some(p) = &call.dialog.pending_ack {
            if Some(p.cseq) == cseq {
                call.dialog.pending_ack = None;
                let first = call.dialog.state != DialogState::Confirmed;
                call.dialog.state = DialogState::Confirmed;
                call.dialog.reinvite_in_progress = false;
                let id = call.dialog.id;
                if !req.body.is_empty() {
                    // The answer to the offer we made in a 2xx to an offer-less re-INVITE.
                    let ours = call
                        .dialog
                        .media
                        .as_ref()
                        .and_then(|m| m.srtp.as_ref())
                        .map(Keys::reoffer);
                    if let Ok(mut n) = sdp::parse_answer_with(&req.body, ours.as_ref()) {
                        vet_media_destination(
                            &mut n,
                            call.dialog.peer.addr.ip(),
                            &self.settings.media_trusted,
                        );
                        if call.dialog.media.as_ref() != Some(&n) {
                            call.dialog.media = Some(n.clone());
                            self.events
                                .push_back(Event::MediaChanged { call: id, media: n });
                        }
                    }
                }
                if first {
                    self.events.push_back(Event::CallConfirmed { call: id });
                }
                if let Some(reason) = call.hangup_on_ack.take() {
                    self.send_bye(&dkey, now);
                    self.end_call(&dkey, reason);
                }
            }
        }
    }

    pub(super) fn on_reinvite(
        &mut self,
        req: rsip::Request,
        key: TransactionKey,
        to_tag: String,
        source: SocketAddr,
        now: Instant,
    ) {
        let Some(dkey) = self.find_call(&req, &to_tag) else {
            let r = self.simple(&req, source, 481, "Call/Transaction Does Not Exist");
            return self.respond(&key, 481, r, now);
        };
        let cseq = first_header(&req.headers, "CSeq")
            .and_then(|v| parse_cseq(v).ok())
            .map(|(n, _)| n)
            .unwrap_or(0);
        let call = self.calls.get_mut(&dkey).expect("found");
        if !call.dialog.accept_remote_cseq(cseq, false) {
            let r = self.simple(&req, source, 500, "Server Internal Error");
            return self.respond(&key, 500, r, now);
        }
        if call.dialog.state == DialogState::Early || call.dialog.reinvite_in_progress {
            // §14.2: an INVITE while one is still being answered.
            let r = ResponseBuilder::new(&req, source, 500, "Server Internal Error")
                .header("Retry-After", 1)
                .build();
            return self.respond(&key, 500, r, now);
        }
        if let Some(c) = first_header(&req.headers, "Contact") {
            call.dialog.remote_target = addr_uri(c).to_string();
        }
        call.dialog.sdp_version += 1;
        let local = LocalMedia {
            address: self.settings.media_ip,
            port: call.dialog.rtp_port,
            session_id: call.dialog.sdp_session_id,
            session_version: call.dialog.sdp_version,
        };
        let keys = call.dialog.media.as_ref().and_then(|m| m.srtp.clone());
        let security = self.settings.security(call.dialog.peer.transport);
        let body = if req.body.is_empty() {
            // Offer-less re-INVITE: we offer (SRTP under our key if the call is SRTP), the
            // ACK answers (§14.2).
            let ours = keys.as_ref().map(Keys::reoffer);
            Ok(sdp::offer_with(&local, Direction::SendRecv, ours.as_ref()))
        } else {
            sdp::answer_with(&req.body, &local, security, keys.as_ref()).map(|mut a| {
                vet_media_destination(
                    &mut a.negotiated,
                    call.dialog.peer.addr.ip(),
                    &self.settings.media_trusted,
                );
                let id = call.dialog.id;
                if call.dialog.media.as_ref() != Some(&a.negotiated) {
                    call.dialog.media = Some(a.negotiated.clone());
                    self.events.push_back(Event::MediaChanged {
                        call: id,
                        media: a.negotiated,
                    });
                }
                a.sdp
            })
        };
        let call = self.calls.get_mut(&dkey).expect("found");
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                call.dialog.sdp_version -= 1;
                let r = ResponseBuilder::new(&req, source, 488, "Not Acceptable Here")
                    .header("Warning", format!("{} hotline \"{e}\"", warning_code(&e)))
                    .build();
                return self.respond(&key, 488, r, now);
            }
        };
        let ok = ResponseBuilder::new(&req, source, 200, "OK")
            .header("Contact", &call.contact)
            .header("Allow", ALLOW)
            .header("Server", &self.settings.server)
            .body("application/sdp", body.as_bytes())
            .build();
        call.dialog.reinvite_in_progress = true;
        call.dialog.pending_ack = Some(PendingAck::new(
            ok.clone(),
            cseq,
            &self.settings.timers,
            now,
        ));
        self.respond(&key, 200, ok, now);
        self.reschedule_call(&dkey);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ua::testkit::*;

    #[test]
    fn ack_stops_retransmissions_and_transactions_are_cleaned_up() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("c3", "z9hG4bK3"), src(), Transport::Udp, t0);
        let to = to_of(&drain(&mut ua).pop().unwrap());
        let t1 = t0 + Duration::from_millis(200);
        let ack = in_dialog("ACK", "c3", "z9hG4bKa", &to, 1);
        ua.handle_message(request(&ack), src(), Transport::Udp, t1);
        assert!(run(&mut ua, t1, t0 + Duration::from_secs(40)).is_empty());
        assert_eq!(ua.active_calls(), 1, "the call stays up");
        assert_eq!(
            ua.open_transactions(),
            0,
            "Timer L removed the INVITE transaction"
        );
    }

    #[test]
    fn no_rtp_port_gives_503() {
        let t0 = Instant::now();
        let mut ua = ua(t0).with_ports(Box::new(NoPorts));
        ua.handle_message(invite("p1", "z9hG4bKp1"), src(), Transport::Udp, t0);
        let sent = drain(&mut ua);
        assert!(sent[1].starts_with("SIP/2.0 503"), "{}", sent[1]);
        assert!(sent[1].contains("no free RTP port"));
        assert_eq!(ua.active_calls(), 0);
    }
}
