//! The non-INVITE server transaction (RFC 3261 §17.2.2).

use super::timer::{Core, Timer};
use super::{check_status, invalid_state, Output, Timers, TransactionError};
use bytes::Bytes;
use std::time::Instant;

/// States of the non-INVITE server transaction (RFC 3261 Figure 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Non-INVITE server transaction. It never retransmits on its own: the client's Timer E drives
/// retransmissions and each retransmitted request is answered with the last response.
#[derive(Debug)]
pub struct ServerNonInvite {
    core: Core,
    state: ServerNonInviteState,
    last_response: Option<Bytes>,
}

impl ServerNonInvite {
    /// A new transaction for a just-received non-INVITE request; starts in Trying.
    pub fn new(reliable: bool, timers: Timers, _now: Instant) -> Self {
        Self {
            core: Core::new(reliable, timers),
            state: ServerNonInviteState::Trying,
            last_response: None,
        }
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    /// A retransmission of the request arrived. §17.2.2: absorbed in Trying (nothing to resend
    /// yet); in Proceeding and Completed the last response is resent.
    pub fn on_retransmission(&mut self, _now: Instant) {
        let resend = match self.state {
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed => {
                self.last_response.clone()
            }
            _ => None,
        };
        if let Some(bytes) = resend {
            self.core.transmit(bytes);
        }
    }

    /// The TU sends a response. §17.2.2: a 1xx moves Trying to Proceeding; a final (200-699)
    /// moves to Completed and arms Timer J (64*T1 on UDP to absorb request retransmissions, zero
    /// on reliable transports). Responses after the final are rejected.
    pub fn send_response(
        &mut self,
        status: u16,
        bytes: Bytes,
        now: Instant,
    ) -> Result<(), TransactionError> {
        check_status(status)?;
        match self.state {
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding => {
                self.last_response = Some(bytes.clone());
                self.core.transmit(bytes);
                if status < 200 {
                    self.state = ServerNonInviteState::Proceeding;
                } else {
                    self.state = ServerNonInviteState::Completed;
                    let j = self.core.timers.t1x64();
                    self.core.arm_linger(Timer::J, now, j);
                }
                Ok(())
            }
            state => Err(invalid_state(status, state)),
        }
    }

    /// Fires every armed timer whose deadline is `<= now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut fired = 0;
        while let Some(timer) = self.core.take_due(now, &mut fired) {
            if timer == Timer::J && self.state == ServerNonInviteState::Completed {
                self.state = ServerNonInviteState::Terminated;
                self.core.terminate();
            }
        }
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
    fn server_non_invite_retransmissions_and_timer_j() {
        let t0 = Instant::now();
        for (reliable, j) in [(false, 32.0), (true, 0.0)] {
            let mut tx = ServerNonInvite::new(reliable, Timers::default(), t0);
            tx.on_retransmission(t0);
            assert_eq!(drain(&mut tx), vec![]);
            let trying = Bytes::from_static(b"SIP/2.0 100 Trying\r\n\r\n");
            tx.send_response(100, trying.clone(), t0).unwrap();
            assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
            tx.on_retransmission(t0);
            assert_eq!(
                drain(&mut tx),
                vec![Output::Transmit(trying.clone()), Output::Transmit(trying)]
            );
            let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n");
            tx.send_response(200, ok.clone(), t0).unwrap();
            assert_eq!(tx.state(), ServerNonInviteState::Completed);
            tx.on_retransmission(t0 + secs(0.5));
            assert_eq!(
                drain(&mut tx),
                vec![Output::Transmit(ok.clone()), Output::Transmit(ok)]
            );
            assert!(tx.send_response(200, Bytes::new(), t0).is_err());
            assert_eq!(tx.poll_timeout(), Some(t0 + secs(j)));
            assert_eq!(run(&mut tx, t0, None), vec![(j, Output::Terminated)]);
            assert_eq!(tx.state(), ServerNonInviteState::Terminated);
        }
    }
}
