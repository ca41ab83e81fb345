//! The table of calls (inbound calls and operator legs alike): finding them, ending them,
//! their timers (delayed answer, 2xx retransmission until the ACK, giving up after our
//! CANCEL) and our BYE.

use super::helpers::random_tag;
use super::outbound::Outbound;
use super::transactions::TimerRef;
use super::{EndReason, Event, UserAgent};
use crate::sip::dialog::{Dialog, DialogKey};
use crate::sip::message::first_header;
use crate::sip::transaction::TransactionKey;
use crate::sip::Transmit;
use std::net::SocketAddr;
use std::time::Instant;

/// A call as the core sees it: the dialog plus what answering still needs.
pub(super) struct Call {
    pub(super) dialog: Dialog,
    /// The INVITE's server transaction while it has no final response.
    pub(super) invite_tx: Option<TransactionKey>,
    /// The INVITE itself until the final response is sent (a delayed answer needs it).
    pub(super) invite: Option<rsip::Request>,
    /// Where the INVITE came from (for `received`/`rport` in responses).
    pub(super) source: SocketAddr,
    /// Our Contact in this dialog: the number dialled, at our address, on the caller's transport.
    pub(super) contact: String,
    pub(super) answer_sdp: String,
    pub(super) scheduled: Option<Instant>,
    /// The call flow hung up before the ACK came: BYE once it does.
    pub(super) hangup_on_ack: Option<EndReason>,
    /// `Some` for a leg we placed to an operator.
    pub(super) outbound: Option<Outbound>,
    /// The RTP port was handed to the call flow (in [`Event::CallOffered`] or
    /// [`Event::OperatorAnswered`]): from then on the call flow owns it, takes its socket
    /// for the media, and frees it if the call ends first. The core must not free it
    /// then: a BYE right behind the ACK would close the socket before the media took it.
    pub(super) port_handed_over: bool,
}

impl UserAgent {
    /// The dialog of call number `call`.
    pub(super) fn call_key(&self, call: u64) -> Option<DialogKey> {
        self.calls
            .iter()
            .find(|(_, c)| c.dialog.id == call)
            .map(|(k, _)| k.clone())
    }

    /// The dialog an in-dialog request belongs to (Call-ID and our tag).
    pub(super) fn find_call(&self, req: &rsip::Request, local_tag: &str) -> Option<DialogKey> {
        let key = DialogKey {
            call_id: first_header(&req.headers, "Call-ID")?.to_string(),
            local_tag: local_tag.to_string(),
        };
        self.calls.contains_key(&key).then_some(key)
    }

    pub(super) fn end_call(&mut self, dkey: &DialogKey, reason: EndReason) {
        if let Some(call) = self.calls.remove(dkey) {
            if !call.port_handed_over {
                self.ports.release(call.dialog.rtp_port);
            }
            self.events.push_back(Event::CallEnded {
                call: call.dialog.id,
                reason,
            });
        }
    }

    pub(super) fn reschedule_call(&mut self, dkey: &DialogKey) {
        let Some(call) = self.calls.get_mut(dkey) else {
            return;
        };
        let next = [
            call.dialog.answer_at,
            call.outbound.as_ref().and_then(|o| o.give_up_at),
            call.dialog
                .pending_ack
                .as_ref()
                .map(|p| p.next_resend.min(p.give_up)),
        ]
        .into_iter()
        .flatten()
        .min();
        if let Some(at) = next {
            if call.scheduled.is_none_or(|s| at < s) {
                call.scheduled = Some(at);
                self.schedule(at, TimerRef::Dialog(dkey.clone()));
            }
        }
    }

    pub(super) fn on_dialog_timer(&mut self, dkey: &DialogKey, now: Instant) {
        let Some(call) = self.calls.get_mut(dkey) else {
            return;
        };
        call.scheduled = None;
        if let Some(out) = &call.outbound {
            if out.give_up_at.is_some_and(|t| t <= now) {
                // §9.1: no final response 64·T1 after our CANCEL: the INVITE counts as
                // cancelled and its transaction is destroyed.
                let tx = out.invite_tx.clone();
                self.client.remove(&tx);
                self.end_call(dkey, EndReason::Cancelled);
                return;
            }
        }
        if call.dialog.answer_at.is_some_and(|t| t <= now) {
            call.dialog.answer_at = None;
            self.answer(dkey, now);
            return;
        }
        let call = self.calls.get_mut(dkey).expect("present");
        let peer = call.dialog.peer;
        if let Some(p) = &mut call.dialog.pending_ack {
            if now >= p.give_up {
                // §13.3.1.4: no ACK within 64·T1: the session is over; tell the caller.
                call.dialog.pending_ack = None;
                tracing::info!(call_id = %dkey.call_id, "no ACK for 2xx; sending BYE");
                self.send_bye(dkey, now);
                self.end_call(dkey, EndReason::AckTimeout);
                return;
            }
            if now >= p.next_resend {
                self.transmits.push_back(Transmit {
                    peer,
                    bytes: p.response.clone(),
                });
                p.resent(&self.settings.timers, now);
            }
        }
        self.reschedule_call(dkey);
    }

    /// Sends BYE in a dialog through a client non-INVITE transaction.
    pub(super) fn send_bye(&mut self, dkey: &DialogKey, now: Instant) {
        let Some(call) = self.calls.get_mut(dkey) else {
            return;
        };
        let branch = format!("z9hG4bK{}", random_tag(&mut self.rng));
        let bytes = call.dialog.request(
            "BYE",
            self.settings.host_for(call.dialog.peer.transport),
            &branch,
            &self.settings.server,
        );
        let peer = call.dialog.peer;
        let Ok(req) = rsip::Request::try_from(&bytes[..]) else {
            tracing::error!("could not parse our own BYE");
            return;
        };
        self.start_client(req, peer, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ua::testkit::*;

    #[test]
    fn unacknowledged_2xx_backs_off_to_t2_then_bye_at_64_t1() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("c1", "z9hG4bK1"), src(), Transport::Udp, t0);
        let sent = drain(&mut ua);
        assert!(sent[0].starts_with("SIP/2.0 100"));
        assert!(sent[1].starts_with("SIP/2.0 200"));
        let later = run(&mut ua, t0, t0 + Duration::from_secs(33));
        let resends: Vec<u64> = later
            .iter()
            .filter(|(_, m)| m.starts_with("SIP/2.0 200"))
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        // 0.5, 1.5, 3.5, 7.5, then every 4 s until 32 s.
        assert_eq!(
            resends,
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        let bye = later.iter().find(|(_, m)| m.starts_with("BYE ")).unwrap();
        assert_eq!(bye.0, Duration::from_secs(32));
        assert!(bye.1.contains("To: <sip:caller@x>;tag=ft\r\n"));
        assert_eq!(ua.active_calls(), 0);
        let events: Vec<Event> = std::iter::from_fn(|| ua.poll_event()).collect();
        assert!(events.contains(&Event::CallEnded {
            call: 1,
            reason: EndReason::AckTimeout
        }));
    }
}
