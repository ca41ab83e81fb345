//! Requests from outside: each finds or opens its server transaction here and goes to its
//! handler; BYE, CANCEL, INFO, OPTIONS and REGISTER are answered here, INVITE and ACK in
//! `invite`.

use super::helpers::{bad_extension, random_tag, status_of};
use super::transactions::{ServerEntry, ServerTx};
use super::{EndReason, Event, UserAgent, ALLOW};
use crate::sip::headers::{parse_cseq, parse_via, tag_param, top_via};
use crate::sip::message::{first_header, response_destination, ResponseBuilder};
use crate::sip::transaction::{
    self, ServerInvite, ServerInviteState, ServerNonInvite, TransactionKey,
};
use crate::sip::{Peer, Transport};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Instant;

impl UserAgent {
    pub(super) fn on_request(
        &mut self,
        req: rsip::Request,
        source: SocketAddr,
        transport: Transport,
        now: Instant,
    ) {
        let Ok(key) = transaction::server_key(&req) else {
            tracing::debug!(%source, "request without usable Via branch dropped");
            return;
        };
        if req.method == rsip::Method::Ack {
            // ACK to a non-2xx final belongs to the INVITE transaction (same branch)…
            if let Some(ServerEntry {
                tx: ServerTx::Invite(tx),
                ..
            }) = self.server.get_mut(&key).map(|e| &mut **e)
            {
                if matches!(
                    tx.state(),
                    ServerInviteState::Completed | ServerInviteState::Confirmed
                ) {
                    tx.on_ack(now);
                    self.drive_server(&key, now);
                    return;
                }
            }
            // …an ACK to a 2xx is a request of its own within the dialog (§13.2.2.4).
            self.on_ack(&req, now);
            return;
        }
        if let Some(e) = self.server.get_mut(&key) {
            match &mut e.tx {
                ServerTx::Invite(t) => t.on_retransmission(now),
                ServerTx::NonInvite(t) => t.on_retransmission(now),
            }
            self.drive_server(&key, now);
            return;
        }
        let Some(via) = first_header(&req.headers, "Via").and_then(|v| parse_via(top_via(v)).ok())
        else {
            return;
        };
        let peer = Peer {
            transport,
            addr: response_destination(&via, source, transport),
        };
        let reliable = transport.is_reliable();
        let tx = if req.method == rsip::Method::Invite {
            ServerTx::Invite(ServerInvite::new(reliable, self.settings.timers, now))
        } else {
            ServerTx::NonInvite(ServerNonInvite::new(reliable, self.settings.timers, now))
        };
        self.server.insert(
            key.clone(),
            Box::new(ServerEntry {
                tx,
                peer,
                scheduled: None,
                dialog: None,
            }),
        );
        let to_tag = first_header(&req.headers, "To")
            .and_then(tag_param)
            .map(str::to_string);
        let initial_invite = req.method == rsip::Method::Invite && to_tag.is_none();
        if !initial_invite && req.method != rsip::Method::Cancel {
            // We support no extension (RFC 3261 §8.2.2.3); an initial INVITE is checked
            // after its Request-URI (404 comes first).
            if let Some(r) = bad_extension(&req, source, &mut self.rng) {
                return self.respond(&key, 420, r, now);
            }
        }
        match req.method {
            rsip::Method::Invite => match to_tag {
                None => self.on_invite(req, key, source, peer, now),
                Some(tag) => self.on_reinvite(req, key, tag, source, now),
            },
            rsip::Method::Bye => self.on_bye(&req, &key, to_tag, source, now),
            rsip::Method::Cancel => self.on_cancel(&req, &key, source, now),
            rsip::Method::Options => {
                let ours = match req.uri.user() {
                    None => true,
                    Some(u) => self.settings.hotline_numbers.contains(u),
                };
                let resp = if self.draining && to_tag.is_none() {
                    // A proxy's keep-alive probe: this node takes no new calls.
                    ResponseBuilder::new(&req, source, 503, "Service Unavailable")
                        .to_tag(&random_tag(&mut self.rng))
                        .header("Retry-After", 5)
                        .header("Warning", "399 hotline \"draining\"")
                        .header("Server", &self.settings.server)
                        .build()
                } else if ours || to_tag.is_some() {
                    ResponseBuilder::new(&req, source, 200, "OK")
                        .to_tag(&random_tag(&mut self.rng))
                        .header("Allow", ALLOW)
                        .header("Accept", "application/sdp")
                        .header("Accept-Language", "ru, en")
                        .header("Server", &self.settings.server)
                        .build()
                } else {
                    self.simple(&req, source, 404, "Not Found")
                };
                self.respond(&key, status_of(&resp), resp, now);
            }
            rsip::Method::Info => self.on_info(&req, &key, to_tag, source, now),
            rsip::Method::Register => {
                let outcome = self.registrar.handle(&req, source, transport, now);
                for ev in outcome.events {
                    self.events.push_back(Event::Registration(ev));
                }
                self.respond(&key, outcome.status, outcome.response, now);
            }
            _ => {
                let resp = ResponseBuilder::new(&req, source, 405, "Method Not Allowed")
                    .to_tag("hl405")
                    .header("Allow", ALLOW)
                    .header("Server", &self.settings.server)
                    .build();
                self.respond(&key, 405, resp, now);
            }
        }
    }

    /// INFO in a dialog: DTMF relay (RFC 2976 style, as phones send it), or an empty keepalive.
    pub(super) fn on_info(
        &mut self,
        req: &rsip::Request,
        key: &TransactionKey,
        to_tag: Option<String>,
        source: SocketAddr,
        now: Instant,
    ) {
        let Some(dkey) = to_tag.and_then(|tag| self.find_call(req, &tag)) else {
            let r = self.simple(req, source, 481, "Call/Transaction Does Not Exist");
            return self.respond(key, 481, r, now);
        };
        if req.body.is_empty() {
            let r = self.simple(req, source, 200, "OK");
            return self.respond(key, 200, r, now);
        }
        let content_type = first_header(&req.headers, "Content-Type").unwrap_or_default();
        match crate::sip::info::parse_info(content_type, &req.body) {
            Ok(digit) => {
                let call = self.calls[&dkey].dialog.id;
                self.events.push_back(Event::Dtmf { call, digit });
                let r = self.simple(req, source, 200, "OK");
                self.respond(key, 200, r, now);
            }
            Err(e) => {
                tracing::debug!(%source, error = %e, "INFO refused");
                let r = ResponseBuilder::new(req, source, 415, "Unsupported Media Type")
                    .to_tag(&dkey.local_tag)
                    .header("Accept", "application/dtmf-relay, application/dtmf")
                    .header("Warning", format!("399 hotline \"{e}\""))
                    .build();
                self.respond(key, 415, r, now);
            }
        }
    }

    /// A final response with only the mandatory headers (and our To tag if it had none).
    pub(super) fn simple(
        &mut self,
        req: &rsip::Request,
        source: SocketAddr,
        code: u16,
        reason: &str,
    ) -> Bytes {
        ResponseBuilder::new(req, source, code, reason)
            .to_tag(&random_tag(&mut self.rng))
            .header("Server", &self.settings.server)
            .build()
    }

    pub(super) fn on_bye(
        &mut self,
        req: &rsip::Request,
        key: &TransactionKey,
        to_tag: Option<String>,
        source: SocketAddr,
        now: Instant,
    ) {
        let found = to_tag.and_then(|t| self.find_call(req, &t));
        let Some(dkey) = found else {
            let r = self.simple(req, source, 481, "Call/Transaction Does Not Exist");
            return self.respond(key, 481, r, now);
        };
        let cseq = first_header(&req.headers, "CSeq")
            .and_then(|v| parse_cseq(v).ok())
            .map(|(n, _)| n)
            .unwrap_or(0);
        let call = self.calls.get_mut(&dkey).expect("found");
        if !call.dialog.accept_remote_cseq(cseq, false) {
            let r = self.simple(req, source, 500, "Server Internal Error");
            return self.respond(key, 500, r, now);
        }
        let ok = self.simple(req, source, 200, "OK");
        self.respond(key, 200, ok, now);
        self.end_call(&dkey, EndReason::RemoteBye);
    }

    pub(super) fn on_cancel(
        &mut self,
        req: &rsip::Request,
        key: &TransactionKey,
        source: SocketAddr,
        now: Instant,
    ) {
        let invite_key = TransactionKey {
            method: rsip::Method::Invite,
            ..key.clone()
        };
        let pending = match self.server.get(&invite_key).map(|e| &**e) {
            Some(ServerEntry {
                tx: ServerTx::Invite(tx),
                dialog,
                ..
            }) => Some((tx.state() == ServerInviteState::Proceeding, dialog.clone())),
            _ => None,
        };
        let Some((pending, dkey)) = pending else {
            let r = self.simple(req, source, 481, "Call/Transaction Does Not Exist");
            return self.respond(key, 481, r, now);
        };
        let ok = self.simple(req, source, 200, "OK");
        self.respond(key, 200, ok, now);
        if !pending {
            return; // already answered: CANCEL has no effect (§9.2)
        }
        if let Some(call) = dkey.as_ref().and_then(|k| self.calls.get_mut(k)) {
            let dkey = call.dialog.key.clone();
            call.invite_tx = None;
            if let Some(inv) = call.invite.take() {
                let r = ResponseBuilder::new(&inv, call.source, 487, "Request Terminated")
                    .to_tag(&dkey.local_tag)
                    .build();
                self.respond(&invite_key, 487, r, now);
            }
            self.end_call(&dkey, EndReason::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ua::testkit::*;

    #[test]
    fn bye_response_is_absorbed_on_retransmitted_bye() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("c4", "z9hG4bK4"), src(), Transport::Udp, t0);
        let to = to_of(&drain(&mut ua).pop().unwrap());
        let bye = in_dialog("BYE", "c4", "z9hG4bKb", &to, 2);
        ua.handle_message(request(&bye), src(), Transport::Udp, t0);
        let first = drain(&mut ua);
        assert_eq!(first.len(), 1);
        assert!(first[0].starts_with("SIP/2.0 200"));
        // The retransmitted BYE gets the same 200 again from the transaction (not a 481).
        ua.handle_message(
            request(&bye),
            src(),
            Transport::Udp,
            t0 + Duration::from_millis(500),
        );
        assert_eq!(drain(&mut ua), first);
        // After Timer J (64·T1) the transaction is gone.
        run(&mut ua, t0, t0 + Duration::from_secs(33));
        assert_eq!(ua.open_transactions(), 0);
    }

    /// A draining node (a rolling upgrade) answers its proxy's probe and new calls with
    /// 503, and keeps the call it has until that call's own BYE.
    #[test]
    fn a_draining_node_refuses_probes_and_new_calls_but_keeps_its_calls() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        let options = |branch: &str| {
            request(&format!(
                "OPTIONS sip:hotline.test SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
                 From: <sip:proxy@x>;tag=pt\r\nTo: <sip:hotline.test>\r\nCall-ID: {branch}\r\n\
                 CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ))
        };
        ua.handle_message(options("z9hG4bKo1"), src(), Transport::Udp, t0);
        assert!(drain(&mut ua)[0].starts_with("SIP/2.0 200"));
        ua.handle_message(invite("d1", "z9hG4bKd1"), src(), Transport::Udp, t0);
        let to = to_of(&drain(&mut ua).pop().unwrap());
        assert!(!ua.is_draining());

        ua.drain();
        assert!(ua.is_draining());
        ua.handle_message(options("z9hG4bKo2"), src(), Transport::Udp, t0);
        let probe = drain(&mut ua);
        assert!(probe[0].starts_with("SIP/2.0 503"), "{}", probe[0]);
        assert!(probe[0].contains("Warning: 399 hotline \"draining\""));
        ua.handle_message(invite("d2", "z9hG4bKd2"), src(), Transport::Udp, t0);
        let refused = drain(&mut ua);
        let last = refused.last().unwrap();
        assert!(last.starts_with("SIP/2.0 503"), "{last}");
        assert!(last.contains("Retry-After: 5") && last.contains("draining"));
        assert_eq!(ua.active_calls(), 1, "only the call in progress");

        let bye = in_dialog("BYE", "d1", "z9hG4bKdb", &to, 2);
        ua.handle_message(request(&bye), src(), Transport::Udp, t0);
        assert!(drain(&mut ua)[0].starts_with("SIP/2.0 200"));
        assert_eq!(ua.active_calls(), 0);
    }

    #[test]
    fn info_dtmf_becomes_an_event_and_other_bodies_get_415() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("i1", "z9hG4bKi1"), src(), Transport::Udp, t0);
        let to = to_of(&drain(&mut ua).pop().unwrap());
        let info = |branch: &str, ctype: &str, body: &str, cseq: u32| {
            format!(
                "INFO sip:8800@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER};branch={branch}\r\n\
                 From: <sip:caller@x>;tag=ft\r\nTo: {to}\r\nCall-ID: i1\r\nCSeq: {cseq} INFO\r\n\
                 Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let _: Vec<Event> = std::iter::from_fn(|| ua.poll_event()).collect();
        let msg = info(
            "z9hG4bKi2",
            "application/dtmf-relay",
            "Signal=*\r\nDuration=250\r\n",
            2,
        );
        ua.handle_message(request(&msg), src(), Transport::Udp, t0);
        assert!(drain(&mut ua)[0].starts_with("SIP/2.0 200"));
        assert_eq!(
            ua.poll_event(),
            Some(Event::Dtmf {
                call: 1,
                digit: '*'
            })
        );
        let msg = info("z9hG4bKi3", "text/plain", "hello", 3);
        ua.handle_message(request(&msg), src(), Transport::Udp, t0);
        let r = drain(&mut ua);
        assert!(r[0].starts_with("SIP/2.0 415"), "{}", r[0]);
        assert!(r[0].contains("Accept: application/dtmf-relay"));
        assert_eq!(ua.poll_event(), None);
    }
}
