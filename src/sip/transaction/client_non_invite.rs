//! The non-INVITE client transaction (RFC 3261 §17.1.2): our BYE and CANCEL.

use super::timer::{Core, Timer};
use super::{Output, Timers};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// States of the non-INVITE client transaction (RFC 3261 Figure 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Non-INVITE client transaction.
#[derive(Debug)]
pub struct ClientNonInvite {
    core: Core,
    state: ClientNonInviteState,
    request: rsip::Request,
    request_bytes: Bytes,
    e_interval: Duration,
}

impl ClientNonInvite {
    /// Starts the transaction: queues the request for transmission, arms Timer E (T1, UDP only)
    /// and Timer F (64*T1) (§17.1.2.2).
    pub fn new(request: rsip::Request, reliable: bool, timers: Timers, now: Instant) -> Self {
        let request_bytes = Bytes::from(request.to_string());
        let mut core = Core::new(reliable, timers);
        core.transmit(request_bytes.clone());
        if !reliable {
            core.arm(Timer::E, now, timers.t1);
        }
        core.arm(Timer::F, now, timers.t1x64());
        Self {
            core,
            state: ClientNonInviteState::Trying,
            request,
            request_bytes,
            e_interval: timers.t1,
        }
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    /// The request this transaction sends.
    pub fn request(&self) -> &rsip::Request {
        &self.request
    }

    /// A response matching this transaction arrived (§17.1.2.2).
    ///
    /// * 1xx in Trying/Proceeding: moves to Proceeding and is delivered; Timer E keeps running
    ///   but from its next firing retransmits every T2.
    /// * 200-699 in Trying/Proceeding: moves to Completed, delivered once, Timer K (T4 on UDP,
    ///   zero on reliable transports) absorbs retransmitted finals.
    ///
    /// Anything else (retransmitted finals, bogus status codes) is absorbed.
    pub fn on_response(&mut self, response: rsip::Response, now: Instant) {
        if !matches!(
            self.state,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
        ) {
            return;
        }
        match response.status_code.code() {
            100..=199 => {
                self.state = ClientNonInviteState::Proceeding;
                self.core.deliver(response);
            }
            200..=699 => {
                self.state = ClientNonInviteState::Completed;
                self.core.disarm(Timer::E);
                self.core.disarm(Timer::F);
                let t4 = self.core.timers.t4;
                self.core.arm_linger(Timer::K, now, t4);
                self.core.deliver(response);
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
        let timers = self.core.timers;
        match (timer, self.state) {
            // §17.1.2.2: double up to T2 in Trying; a flat T2 once a provisional arrived.
            (Timer::E, ClientNonInviteState::Trying | ClientNonInviteState::Proceeding) => {
                self.core.transmit(self.request_bytes.clone());
                self.e_interval = if self.state == ClientNonInviteState::Proceeding {
                    timers.t2
                } else {
                    self.e_interval.saturating_mul(2).min(timers.t2)
                };
                self.core.arm(Timer::E, now, self.e_interval);
            }
            (Timer::F, ClientNonInviteState::Trying | ClientNonInviteState::Proceeding) => {
                self.core.outputs.push_back(Output::Timeout);
                self.terminate();
            }
            (Timer::K, ClientNonInviteState::Completed) => self.terminate(),
            _ => {}
        }
    }

    fn terminate(&mut self) {
        self.state = ClientNonInviteState::Terminated;
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
    fn timer_e_capped_at_t2_and_timer_f() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(options(), false, Timers::default(), t0);
        assert_eq!(drain(&mut tx).len(), 1);
        let events = run(&mut tx, t0, None);
        let times = transmit_times(&events);
        assert_eq!(times[0], 0.5);
        assert_eq!(
            intervals(&times),
            vec![1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
        );
        assert_eq!(
            tail(&events, 2),
            vec![(32.0, Output::Timeout), (32.0, Output::Terminated)]
        );
    }

    #[test]
    fn timer_e_uses_t2_after_provisional() {
        let t0 = Instant::now();
        let mut tx = ClientNonInvite::new(options(), false, Timers::default(), t0);
        drain(&mut tx);
        let trying = resp(100, None);
        tx.on_response(trying.clone(), t0 + secs(0.2));
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        assert_eq!(drain(&mut tx), vec![Output::Deliver(trying)]);
        let events = run(&mut tx, t0, None);
        let times = transmit_times(&events);
        assert_eq!(times[0], 0.5);
        assert!(intervals(&times).iter().all(|i| *i == 4.0), "{times:?}");
        assert_eq!(
            tail(&events, 2),
            vec![(32.0, Output::Timeout), (32.0, Output::Terminated)]
        );
    }

    #[test]
    fn client_non_invite_final_delivered_once_then_timer_k() {
        let t0 = Instant::now();
        for (reliable, k) in [(false, 5.0), (true, 0.0)] {
            let mut tx = ClientNonInvite::new(options(), reliable, Timers::default(), t0);
            drain(&mut tx);
            let ok = resp(200, Some("b"));
            tx.on_response(ok.clone(), t0 + secs(1.0));
            assert_eq!(drain(&mut tx), vec![Output::Deliver(ok.clone())]);
            assert_eq!(tx.state(), ClientNonInviteState::Completed);
            tx.on_response(ok, t0 + secs(1.5));
            assert_eq!(drain(&mut tx), vec![]);
            assert_eq!(tx.poll_timeout(), Some(t0 + secs(1.0 + k)));
            tx.handle_timeout(tx.poll_timeout().unwrap());
            assert_eq!(drain(&mut tx), vec![Output::Terminated]);
        }
    }
}
