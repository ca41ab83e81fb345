//! The INVITE client transaction (RFC 3261 §17.1.1, as amended by RFC 6026 §7.2): the
//! INVITE of an operator leg.

use super::timer::{Core, Timer};
use super::{ack_for_non_2xx, cancel_for, Output, Timers};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// RFC 3261 §17.1.1.2: Timer D is "at least 32 seconds" on unreliable transports, independent of
/// T1, because it must outlive the server's Timer H-driven retransmissions of the final response.
const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// States of the INVITE client transaction (RFC 3261 Figure 5 as amended by RFC 6026 Figure 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Accepted,
    Completed,
    Terminated,
}

/// INVITE client transaction.
#[derive(Debug)]
pub struct ClientInvite {
    core: Core,
    state: ClientInviteState,
    request: rsip::Request,
    request_bytes: Bytes,
    a_interval: Duration,
    /// The ACK for the non-2xx final, kept so retransmitted finals get the identical ACK.
    ack: Option<Bytes>,
}

impl ClientInvite {
    /// Starts the transaction: queues the INVITE for transmission, arms Timer A (T1, UDP only)
    /// and Timer B (64*T1) (§17.1.1.2).
    pub fn new(request: rsip::Request, reliable: bool, timers: Timers, now: Instant) -> Self {
        let request_bytes = Bytes::from(request.to_string());
        let mut core = Core::new(reliable, timers);
        core.transmit(request_bytes.clone());
        if !reliable {
            core.arm(Timer::A, now, timers.t1);
        }
        core.arm(Timer::B, now, timers.t1x64());
        Self {
            core,
            state: ClientInviteState::Calling,
            request,
            request_bytes,
            a_interval: timers.t1,
            ack: None,
        }
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// The INVITE this transaction sends.
    pub fn request(&self) -> &rsip::Request {
        &self.request
    }

    /// A CANCEL for this INVITE (§9.1), available only in Proceeding: §9.1 forbids sending a
    /// CANCEL before a provisional response arrived, and after a final there is nothing to
    /// cancel. The CANCEL runs in its own non-INVITE client transaction.
    pub fn cancel(&self) -> Option<rsip::Request> {
        (self.state == ClientInviteState::Proceeding).then(|| cancel_for(&self.request))
    }

    /// A response matching this transaction arrived.
    ///
    /// * 1xx in Calling/Proceeding: moves to Proceeding, stops retransmitting (Timer A) and
    ///   stops Timer B, which RFC 3261 Figure 5 only runs in Calling; delivered to the TU.
    /// * 2xx in Calling/Proceeding: delivered, moves to Accepted with Timer M = 64*T1 (RFC 6026
    ///   §7.2). In Accepted further 2xx (retransmissions or other forks) are delivered too, so
    ///   the TU can (re-)ACK them: the ACK for a 2xx belongs to the TU, not the transaction.
    /// * 300-699 in Calling/Proceeding: moves to Completed, transmits the ACK (§17.1.1.3),
    ///   delivers once and arms Timer D (32 s UDP, zero on reliable transports). Retransmitted
    ///   finals in Completed re-send the same ACK without being delivered again.
    ///
    /// Anything else (late provisionals, bogus status codes) is dropped.
    pub fn on_response(&mut self, response: rsip::Response, now: Instant) {
        let status = response.status_code.code();
        let answering = matches!(
            self.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        );
        match status {
            100..=199 if answering => {
                self.state = ClientInviteState::Proceeding;
                self.core.disarm(Timer::A);
                self.core.disarm(Timer::B);
                self.core.deliver(response);
            }
            200..=299 if answering => {
                self.core.disarm(Timer::A);
                self.core.disarm(Timer::B);
                self.state = ClientInviteState::Accepted;
                let m = self.core.timers.t1x64();
                self.core.arm(Timer::M, now, m);
                self.core.deliver(response);
            }
            200..=299 if self.state == ClientInviteState::Accepted => self.core.deliver(response),
            300..=699 if answering => {
                self.core.disarm(Timer::A);
                self.core.disarm(Timer::B);
                self.state = ClientInviteState::Completed;
                let ack = Bytes::from(ack_for_non_2xx(&self.request, &response).to_string());
                self.ack = Some(ack.clone());
                self.core.transmit(ack);
                self.core.deliver(response);
                self.core.arm_linger(Timer::D, now, TIMER_D_UNRELIABLE);
            }
            300..=699 if self.state == ClientInviteState::Completed => {
                if let Some(ack) = self.ack.clone() {
                    self.core.transmit(ack);
                }
            }
            _ => {}
        }
    }

    /// Fires every armed timer whose deadline is `<= now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut fired = 0;
        while let Some(timer) = self.core.take_due(now, &mut fired) {
            self.fire(timer, now);
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) {
        match (timer, self.state) {
            // §17.1.1.2: retransmit and double; unlike Timer E there is no T2 cap.
            (Timer::A, ClientInviteState::Calling) => {
                self.core.transmit(self.request_bytes.clone());
                self.a_interval = self.a_interval.saturating_mul(2);
                self.core.arm(Timer::A, now, self.a_interval);
            }
            (Timer::B, ClientInviteState::Calling) => {
                self.core.outputs.push_back(Output::Timeout);
                self.terminate();
            }
            (Timer::D, ClientInviteState::Completed) | (Timer::M, ClientInviteState::Accepted) => {
                self.terminate()
            }
            _ => {}
        }
    }

    fn terminate(&mut self) {
        self.state = ClientInviteState::Terminated;
        self.core.terminate();
    }

    /// The earliest armed timer deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// The next pending output, in the order they happened.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.core.outputs.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::testkit::*;

    #[test]
    fn timer_a_schedule_on_udp_then_timer_b() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, Timers::default(), t0);
        let first = drain(&mut tx);
        assert_eq!(first.len(), 1);
        assert_eq!(parse_sent(&first[0]).method, Method::Invite);
        let events = run(&mut tx, t0, None);
        assert_eq!(
            transmit_times(&events),
            vec![0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
        );
        assert_eq!(
            tail(&events, 2),
            vec![(32.0, Output::Timeout), (32.0, Output::Terminated)]
        );
        assert_eq!(tx.state(), ClientInviteState::Terminated);
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn no_timer_a_on_tcp_but_timer_b_fires() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(invite(), true, Timers::default(), t0);
        assert_eq!(drain(&mut tx).len(), 1);
        assert_eq!(tx.poll_timeout(), Some(t0 + secs(32.0)));
        let events = run(&mut tx, t0, None);
        assert_eq!(
            events,
            vec![(32.0, Output::Timeout), (32.0, Output::Terminated)]
        );
    }

    #[test]
    fn client_invite_non_2xx_generates_ack() {
        let t0 = Instant::now();
        for (reliable, d) in [(false, 32.0), (true, 0.0)] {
            let mut tx = ClientInvite::new(invite(), reliable, Timers::default(), t0);
            drain(&mut tx);
            let busy = resp(486, Some("8321234356"));
            let at = t0 + secs(1.0);
            tx.on_response(busy.clone(), at);
            assert_eq!(tx.state(), ClientInviteState::Completed);
            let out = drain(&mut tx);
            assert_eq!(out.len(), 2);
            assert_eq!(out[1], Output::Deliver(busy.clone()));
            let ack = parse_sent(&out[0]);
            assert_eq!(ack.method, Method::Ack);
            assert_eq!(ack.uri, invite().uri);
            assert_eq!(
                ack.to_header().unwrap().tag().unwrap().unwrap().to_string(),
                "8321234356"
            );
            assert_eq!(ack.from_header().unwrap(), invite().from_header().unwrap());
            assert_eq!(ack.call_id_header().unwrap().value(), "a84b4c76e66710");
            assert_eq!(ack.cseq_header().unwrap().value(), "314159 ACK");
            let vias: Vec<_> = ack
                .headers
                .iter()
                .filter(|h| matches!(h, Header::Via(_)))
                .collect();
            assert_eq!(vias.len(), 1);
            assert_eq!(
                ack.via_header()
                    .unwrap()
                    .typed()
                    .unwrap()
                    .branch()
                    .unwrap()
                    .to_string(),
                "z9hG4bKnashds8"
            );
            let routes: Vec<String> = ack
                .headers
                .iter()
                .filter_map(|h| match h {
                    Header::Route(r) => Some(r.value().to_string()),
                    _ => None,
                })
                .collect();
            assert_eq!(
                routes,
                ["<sip:proxy1.example.com;lr>", "<sip:proxy2.example.com;lr>"]
            );
            assert_eq!(ack.max_forwards_header().unwrap().num().unwrap(), 70);
            assert!(ack.body.is_empty());
            assert!(ack
                .headers
                .iter()
                .any(|h| matches!(h, Header::ContentLength(l) if l.value() == "0")));
            // Retransmitted final: same ACK again, no second delivery.
            tx.on_response(busy, at + secs(0.5));
            assert_eq!(drain(&mut tx), vec![out[0].clone()]);
            assert_eq!(tx.poll_timeout(), Some(at + secs(d)));
            tx.handle_timeout(at + secs(d));
            assert_eq!(drain(&mut tx), vec![Output::Terminated]);
            assert_eq!(tx.state(), ClientInviteState::Terminated);
        }
    }

    #[test]
    fn client_invite_2xx_accepted_and_timer_m() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, Timers::default(), t0);
        drain(&mut tx);
        let ringing = resp(180, Some("x"));
        tx.on_response(ringing.clone(), t0 + secs(0.2));
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert_eq!(drain(&mut tx), vec![Output::Deliver(ringing)]);
        // No more INVITE retransmissions and no Timer B once proceeding.
        assert_eq!(tx.poll_timeout(), None);
        let ok = resp(200, Some("x"));
        let at = t0 + secs(10.0);
        tx.on_response(ok.clone(), at);
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        assert_eq!(drain(&mut tx), vec![Output::Deliver(ok.clone())]);
        tx.on_response(ok.clone(), at + secs(0.5));
        assert_eq!(drain(&mut tx), vec![Output::Deliver(ok)]);
        tx.on_response(resp(486, Some("y")), at + secs(0.6));
        assert_eq!(drain(&mut tx), vec![]);
        assert_eq!(tx.poll_timeout(), Some(at + secs(32.0)));
        tx.handle_timeout(at + secs(32.0));
        assert_eq!(drain(&mut tx), vec![Output::Terminated]);
    }

    #[test]
    fn cancel_only_after_provisional() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, Timers::default(), t0);
        assert!(tx.cancel().is_none());
        tx.on_response(resp(180, Some("x")), t0 + secs(1.0));
        let cancel = tx.cancel().expect("cancel after 180");
        let invite = invite();
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.uri, invite.uri);
        assert_eq!(cancel.cseq_header().unwrap().value(), "314159 CANCEL");
        assert_eq!(
            cancel.call_id_header().unwrap(),
            invite.call_id_header().unwrap()
        );
        assert_eq!(cancel.from_header().unwrap(), invite.from_header().unwrap());
        assert_eq!(cancel.to_header().unwrap(), invite.to_header().unwrap());
        assert_eq!(cancel.via_header().unwrap(), invite.via_header().unwrap());
        assert_eq!(
            server_key(&cancel).unwrap().branch,
            server_key(&invite).unwrap().branch
        );
        assert_eq!(server_key(&cancel).unwrap().method, Method::Cancel);
        tx.on_response(resp(200, Some("x")), t0 + secs(2.0));
        assert!(tx.cancel().is_none());
    }
}
