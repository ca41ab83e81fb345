//! The transaction tables: our server transactions (requests we answer) and client
//! transactions (requests we sent), driven here, and the one timer queue for them, for
//! calls and for the registrar sweep.

use super::{Event, UserAgent, SWEEP_INTERVAL};
use crate::sip::dialog::DialogKey;
use crate::sip::transaction::{
    self, ClientInvite, ClientNonInvite, Output, ServerInvite, ServerNonInvite, TransactionKey,
};
use crate::sip::{Peer, Transmit};
use bytes::Bytes;
use std::time::Instant;

/// A request we answer, as one of the two server machines.
pub(super) enum ServerTx {
    Invite(ServerInvite),
    NonInvite(ServerNonInvite),
}

/// A request we answer: its machine, where its responses go, its armed timer.
pub(super) struct ServerEntry {
    pub(super) tx: ServerTx,
    pub(super) peer: Peer,
    pub(super) scheduled: Option<Instant>,
    /// The call an INVITE transaction created (a CANCEL finds it through here).
    pub(super) dialog: Option<DialogKey>,
}

/// A request we sent, as one of the two client machines.
pub(super) enum ClientTx {
    Invite(ClientInvite),
    NonInvite(ClientNonInvite),
}

impl ClientTx {
    pub(super) fn poll_output(&mut self) -> Option<Output> {
        match self {
            ClientTx::Invite(t) => t.poll_output(),
            ClientTx::NonInvite(t) => t.poll_output(),
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            ClientTx::Invite(t) => t.poll_timeout(),
            ClientTx::NonInvite(t) => t.poll_timeout(),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        match self {
            ClientTx::Invite(t) => t.handle_timeout(now),
            ClientTx::NonInvite(t) => t.handle_timeout(now),
        }
    }

    pub(super) fn on_response(&mut self, resp: rsip::Response, now: Instant) {
        match self {
            ClientTx::Invite(t) => t.on_response(resp, now),
            ClientTx::NonInvite(t) => t.on_response(resp, now),
        }
    }
}

/// Our own requests: the INVITE of an operator leg, and BYE / CANCEL.
pub(super) struct ClientEntry {
    pub(super) tx: ClientTx,
    pub(super) peer: Peer,
    pub(super) scheduled: Option<Instant>,
    /// An INVITE's leg: its responses go there.
    pub(super) leg: Option<DialogKey>,
    /// The ACKs we sent for 2xx responses to this INVITE, by the 2xx's To tag: a
    /// retransmitted 2xx gets the same ACK again (§13.2.2.4), even after the leg ended.
    pub(super) acks: Vec<(String, Bytes)>,
}

/// What a timer in the queue is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum TimerRef {
    Server(TransactionKey),
    Client(TransactionKey),
    Dialog(DialogKey),
    Sweep,
}

impl UserAgent {
    pub(super) fn schedule(&mut self, at: Instant, target: TimerRef) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), target);
    }

    /// Fires one due timer of the table.
    pub(super) fn on_timer(&mut self, target: TimerRef, now: Instant) {
        match target {
            TimerRef::Server(key) => {
                if let Some(e) = self.server.get_mut(&key) {
                    e.scheduled = None;
                    match &mut e.tx {
                        ServerTx::Invite(t) => t.handle_timeout(now),
                        ServerTx::NonInvite(t) => t.handle_timeout(now),
                    }
                    self.drive_server(&key, now);
                }
            }
            TimerRef::Client(key) => {
                if let Some(e) = self.client.get_mut(&key) {
                    e.scheduled = None;
                    e.tx.handle_timeout(now);
                    self.drive_client(&key, now);
                }
            }
            TimerRef::Dialog(key) => self.on_dialog_timer(&key, now),
            TimerRef::Sweep => {
                for ev in self.registrar.sweep(now) {
                    self.events.push_back(Event::Registration(ev));
                }
                self.schedule(now + SWEEP_INTERVAL, TimerRef::Sweep);
            }
        }
    }

    pub(super) fn on_response(&mut self, resp: rsip::Response, now: Instant) {
        let Ok(key) = transaction::client_key(&resp) else {
            return;
        };
        let Some(e) = self.client.get_mut(&key) else {
            tracing::debug!("stray response dropped");
            return;
        };
        e.tx.on_response(resp, now);
        self.drive_client(&key, now);
    }

    /// Hands a response to a server transaction and collects what it wants sent.
    pub(super) fn respond(
        &mut self,
        key: &TransactionKey,
        status: u16,
        bytes: Bytes,
        now: Instant,
    ) {
        let Some(e) = self.server.get_mut(key) else {
            return;
        };
        let result = match &mut e.tx {
            ServerTx::Invite(t) => t.send_response(status, bytes, now),
            ServerTx::NonInvite(t) => t.send_response(status, bytes, now),
        };
        if let Err(err) = result {
            tracing::warn!(%err, status, "response refused by transaction");
        }
        self.drive_server(key, now);
    }

    pub(super) fn drive_server(&mut self, key: &TransactionKey, now: Instant) {
        let Some(e) = self.server.get_mut(key) else {
            return;
        };
        let mut terminated = false;
        loop {
            let out = match &mut e.tx {
                ServerTx::Invite(t) => t.poll_output(),
                ServerTx::NonInvite(t) => t.poll_output(),
            };
            match out {
                Some(Output::Transmit(bytes)) => self.transmits.push_back(Transmit {
                    peer: e.peer,
                    bytes,
                }),
                Some(Output::Terminated) => terminated = true,
                Some(Output::Timeout) => {
                    tracing::debug!("server transaction timed out (no ACK)");
                }
                Some(Output::Deliver(_)) => {}
                None => break,
            }
        }
        if terminated {
            self.server.remove(key);
            return;
        }
        let next = match &e.tx {
            ServerTx::Invite(t) => t.poll_timeout(),
            ServerTx::NonInvite(t) => t.poll_timeout(),
        };
        if let Some(at) = next {
            if e.scheduled.is_none_or(|s| at < s) {
                e.scheduled = Some(at);
                self.schedule(at.max(now), TimerRef::Server(key.clone()));
            }
        }
    }

    pub(super) fn drive_client(&mut self, key: &TransactionKey, now: Instant) {
        let Some(e) = self.client.get_mut(key) else {
            return;
        };
        let leg = e.leg.clone();
        let mut terminated = false;
        let mut timed_out = false;
        let mut delivered = Vec::new();
        loop {
            let out = e.tx.poll_output();
            match out {
                Some(Output::Transmit(bytes)) => self.transmits.push_back(Transmit {
                    peer: e.peer,
                    bytes,
                }),
                Some(Output::Deliver(resp)) => {
                    tracing::debug!(status = resp.status_code.code(), "response to our request");
                    if leg.is_some() {
                        delivered.push(resp);
                    }
                }
                Some(Output::Timeout) => {
                    tracing::info!(peer = %e.peer.addr, "our request timed out");
                    timed_out = true;
                }
                Some(Output::Terminated) => terminated = true,
                None => break,
            }
        }
        if terminated {
            self.client.remove(key);
        } else if let Some(at) = e.tx.poll_timeout() {
            if e.scheduled.is_none_or(|s| at < s) {
                e.scheduled = Some(at);
                self.schedule(at.max(now), TimerRef::Client(key.clone()));
            }
        }
        let Some(leg) = leg else {
            return;
        };
        for resp in delivered {
            self.on_leg_response(key, &leg, resp, now);
        }
        if timed_out {
            self.on_leg_failed(&leg, 408);
        }
    }

    /// Runs one of our non-INVITE requests (BYE, CANCEL) in a client transaction.
    pub(super) fn start_client(&mut self, req: rsip::Request, peer: Peer, now: Instant) {
        let Ok(key) = transaction::client_request_key(&req) else {
            return;
        };
        let tx = ClientNonInvite::new(req, peer.transport.is_reliable(), self.settings.timers, now);
        self.client.insert(
            key.clone(),
            ClientEntry {
                tx: ClientTx::NonInvite(tx),
                peer,
                scheduled: None,
                leg: None,
                acks: Vec::new(),
            },
        );
        self.drive_client(&key, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::ua::testkit::*;

    #[test]
    fn unanswered_bye_is_retransmitted_until_timer_f() {
        let t0 = Instant::now();
        let mut ua = ua(t0);
        ua.handle_message(invite("c2", "z9hG4bK2"), src(), Transport::Udp, t0);
        drain(&mut ua);
        let t_bye = t0 + Duration::from_secs(32);
        run(&mut ua, t0, t_bye);
        let byes: Vec<u64> = run(&mut ua, t_bye, t_bye + Duration::from_secs(40))
            .iter()
            .filter(|(_, m)| m.starts_with("BYE "))
            .map(|(d, _)| d.as_millis() as u64)
            .collect();
        // Timer E: 0.5, 1.5, 3.5, 7.5, then T2 (4 s) steps, up to Timer F at 32 s.
        assert_eq!(byes[..5], [500, 1500, 3500, 7500, 11500]);
        assert!(byes.iter().all(|&t| t < 32_000));
        assert_eq!(
            ua.open_transactions(),
            0,
            "Timer F ended the BYE; Timer L the INVITE"
        );
    }
}
