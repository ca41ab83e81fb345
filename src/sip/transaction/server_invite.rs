//! The INVITE server transaction (RFC 3261 §17.2.1, as amended by RFC 6026 §7.1).

use super::timer::{Core, Timer};
use super::{check_status, invalid_state, Output, Timers, TransactionError};
use bytes::Bytes;
use std::time::{Duration, Instant};

/// States of the INVITE server transaction (RFC 3261 Figure 7 as amended by RFC 6026 Figure 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// INVITE server transaction.
///
/// The TU must send a provisional response (usually 100 Trying) promptly itself: §17.2.1 only
/// requires the transaction to do so when the TU will not respond within 200 ms.
#[derive(Debug)]
pub struct ServerInvite {
    core: Core,
    state: ServerInviteState,
    last_provisional: Option<Bytes>,
    final_response: Option<Bytes>,
    g_interval: Duration,
}

impl ServerInvite {
    /// A new transaction for a just-received INVITE; starts in Proceeding.
    pub fn new(reliable: bool, timers: Timers, _now: Instant) -> Self {
        Self {
            core: Core::new(reliable, timers),
            state: ServerInviteState::Proceeding,
            last_provisional: None,
            final_response: None,
            g_interval: timers.t1,
        }
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// A retransmission of the INVITE arrived. §17.2.1: in Proceeding the most recent
    /// provisional is resent, in Completed the final response. RFC 6026 §7.1: in Accepted the
    /// retransmission is absorbed because the UA core retransmits its 2xx on its own (§13.3.1.4);
    /// in Confirmed it is absorbed too.
    pub fn on_retransmission(&mut self, _now: Instant) {
        let resend = match self.state {
            ServerInviteState::Proceeding => self.last_provisional.clone(),
            ServerInviteState::Completed => self.final_response.clone(),
            _ => None,
        };
        if let Some(bytes) = resend {
            self.core.transmit(bytes);
        }
    }

    /// An ACK matching this transaction (i.e. for a non-2xx final) arrived. §17.2.1: Completed
    /// moves to Confirmed, retransmissions stop, and Timer I absorbs further ACKs (T4 on UDP,
    /// zero on reliable transports). Ignored in every other state.
    pub fn on_ack(&mut self, now: Instant) {
        if self.state != ServerInviteState::Completed {
            return;
        }
        self.state = ServerInviteState::Confirmed;
        self.core.disarm(Timer::G);
        self.core.disarm(Timer::H);
        let t4 = self.core.timers.t4;
        self.core.arm_linger(Timer::I, now, t4);
    }

    /// The TU sends a response. `bytes` is the serialised response; `status` its code.
    ///
    /// * 1xx in Proceeding: remembered (for retransmitted INVITEs) and transmitted.
    /// * 2xx in Proceeding: transmitted, moves to Accepted and arms Timer L = 64*T1 (RFC 6026
    ///   §7.1; RFC 3261 wrongly terminated here, losing retransmitted INVITEs to the TU).
    ///   Further 2xx in Accepted are transmitted: the UA core retransmits 2xx itself.
    /// * 300-699 in Proceeding: transmitted, moves to Completed, arms Timer G (T1, UDP only) and
    ///   Timer H (64*T1) to wait for the ACK (§17.2.1).
    ///
    /// Anything else is rejected with an error and changes nothing.
    pub fn send_response(
        &mut self,
        status: u16,
        bytes: Bytes,
        now: Instant,
    ) -> Result<(), TransactionError> {
        check_status(status)?;
        match (self.state, status) {
            (ServerInviteState::Proceeding, 100..=199) => {
                self.last_provisional = Some(bytes.clone());
                self.core.transmit(bytes);
            }
            (ServerInviteState::Proceeding, 200..=299) => {
                self.core.transmit(bytes);
                self.state = ServerInviteState::Accepted;
                let l = self.core.timers.t1x64();
                self.core.arm(Timer::L, now, l);
            }
            (ServerInviteState::Accepted, 200..=299) => self.core.transmit(bytes),
            (ServerInviteState::Proceeding, _) if status >= 300 => {
                self.final_response = Some(bytes.clone());
                self.core.transmit(bytes);
                self.state = ServerInviteState::Completed;
                if !self.core.reliable {
                    self.g_interval = self.core.timers.t1;
                    self.core.arm(Timer::G, now, self.g_interval);
                }
                let h = self.core.timers.t1x64();
                self.core.arm(Timer::H, now, h);
            }
            (state, _) => return Err(invalid_state(status, state)),
        }
        Ok(())
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
            // §17.2.1: retransmit the final, doubling the interval up to T2.
            (Timer::G, ServerInviteState::Completed) => {
                if let Some(bytes) = self.final_response.clone() {
                    self.core.transmit(bytes);
                }
                self.g_interval = self.g_interval.saturating_mul(2).min(self.core.timers.t2);
                self.core.arm(Timer::G, now, self.g_interval);
            }
            // §17.2.1: no ACK ever came; report a transaction failure to the TU.
            (Timer::H, ServerInviteState::Completed) => {
                self.core.outputs.push_back(Output::Timeout);
                self.terminate();
            }
            (Timer::I, ServerInviteState::Confirmed) | (Timer::L, ServerInviteState::Accepted) => {
                self.terminate()
            }
            _ => {}
        }
    }

    fn terminate(&mut self) {
        self.state = ServerInviteState::Terminated;
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
    fn server_invite_non_2xx_timer_g_and_h_without_ack() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(false, Timers::default(), t0);
        let busy = Bytes::from_static(b"SIP/2.0 486 Busy Here\r\n\r\n");
        tx.send_response(486, busy.clone(), t0).unwrap();
        assert_eq!(drain(&mut tx), vec![Output::Transmit(busy.clone())]);
        assert_eq!(tx.state(), ServerInviteState::Completed);
        let events = run(&mut tx, t0, None);
        let times = transmit_times(&events);
        assert_eq!(times[..4], [0.5, 1.5, 3.5, 7.5]);
        assert!(intervals(&times)[3..].iter().all(|i| *i == 4.0));
        assert!(events
            .iter()
            .all(|(_, o)| !matches!(o, Output::Transmit(b) if *b != busy)));
        assert_eq!(
            tail(&events, 2),
            vec![(32.0, Output::Timeout), (32.0, Output::Terminated)]
        );
        assert_eq!(tx.state(), ServerInviteState::Terminated);
    }

    #[test]
    fn server_invite_non_2xx_with_ack() {
        let t0 = Instant::now();
        let busy = Bytes::from_static(b"SIP/2.0 486 Busy Here\r\n\r\n");
        for (reliable, linger) in [(false, 5.0), (true, 0.0)] {
            let mut tx = ServerInvite::new(reliable, Timers::default(), t0);
            let ringing = Bytes::from_static(b"SIP/2.0 180 Ringing\r\n\r\n");
            tx.send_response(180, ringing.clone(), t0).unwrap();
            tx.on_retransmission(t0);
            assert_eq!(
                drain(&mut tx),
                vec![Output::Transmit(ringing.clone()), Output::Transmit(ringing)]
            );
            tx.send_response(486, busy.clone(), t0).unwrap();
            drain(&mut tx);
            // A retransmitted INVITE in Completed gets the final again.
            tx.on_retransmission(t0 + secs(0.1));
            assert_eq!(drain(&mut tx), vec![Output::Transmit(busy.clone())]);
            let ack_at = t0 + secs(0.2);
            tx.on_ack(ack_at);
            assert_eq!(tx.state(), ServerInviteState::Confirmed);
            // Further ACKs and INVITE retransmissions are absorbed.
            tx.on_ack(ack_at);
            tx.on_retransmission(ack_at);
            assert_eq!(drain(&mut tx), vec![]);
            assert_eq!(tx.poll_timeout(), Some(ack_at + secs(linger)));
            if linger > 0.0 {
                tx.handle_timeout(ack_at + secs(linger - 0.01));
                assert_eq!(drain(&mut tx), vec![]);
            }
            tx.handle_timeout(ack_at + secs(linger));
            assert_eq!(drain(&mut tx), vec![Output::Terminated]);
            assert_eq!(tx.state(), ServerInviteState::Terminated);
            tx.handle_timeout(ack_at + secs(100.0));
            assert_eq!(drain(&mut tx), vec![]);
        }
    }

    #[test]
    fn server_invite_no_timer_g_on_tcp() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(true, Timers::default(), t0);
        tx.send_response(500, Bytes::from_static(b"500"), t0)
            .unwrap();
        drain(&mut tx);
        assert_eq!(
            run(&mut tx, t0, None),
            vec![(32.0, Output::Timeout), (32.0, Output::Terminated)]
        );
    }

    #[test]
    fn server_invite_2xx_accepted_then_timer_l() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(false, Timers::default(), t0);
        let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n");
        tx.send_response(200, ok.clone(), t0).unwrap();
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        assert_eq!(drain(&mut tx), vec![Output::Transmit(ok.clone())]);
        tx.on_retransmission(t0 + secs(1.0));
        tx.on_ack(t0 + secs(1.0));
        assert_eq!(drain(&mut tx), vec![]);
        // The UA core's own 2xx retransmissions pass through.
        tx.send_response(200, ok.clone(), t0 + secs(0.5)).unwrap();
        assert_eq!(drain(&mut tx), vec![Output::Transmit(ok)]);
        assert!(tx.send_response(180, Bytes::new(), t0).is_err());
        assert!(tx.send_response(486, Bytes::new(), t0).is_err());
        assert_eq!(tx.poll_timeout(), Some(t0 + secs(32.0)));
        assert_eq!(run(&mut tx, t0, None), vec![(32.0, Output::Terminated)]);
    }

    #[test]
    fn server_invite_rejects_bad_input() {
        let t0 = Instant::now();
        let mut tx = ServerInvite::new(false, Timers::default(), t0);
        assert_eq!(
            tx.send_response(99, Bytes::new(), t0),
            Err(TransactionError::InvalidStatus(99))
        );
        assert_eq!(
            tx.send_response(700, Bytes::new(), t0),
            Err(TransactionError::InvalidStatus(700))
        );
        tx.send_response(404, Bytes::new(), t0).unwrap();
        assert!(matches!(
            tx.send_response(200, Bytes::new(), t0),
            Err(TransactionError::InvalidState { status: 200, .. })
        ));
        assert_eq!(tx.state(), ServerInviteState::Completed);
    }
}
