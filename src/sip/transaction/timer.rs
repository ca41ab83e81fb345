//! What the four machines share: the deadlines of the RFC 3261 timers (Table 4, and
//! RFC 6026's L and M) and the queue of outputs for the owner.

use super::{Output, Timers};
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Timer names from RFC 3261 Table 4 and RFC 6026. Declaration order breaks ties between
/// deadlines: terminating timers come before retransmission timers so that nothing is
/// retransmitted in the same instant the transaction gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    B,
    D,
    F,
    H,
    I,
    J,
    K,
    L,
    M,
    A,
    E,
    G,
}

const ALL_TIMERS: [Timer; 12] = [
    Timer::B,
    Timer::D,
    Timer::F,
    Timer::H,
    Timer::I,
    Timer::J,
    Timer::K,
    Timer::L,
    Timer::M,
    Timer::A,
    Timer::E,
    Timer::G,
];

/// State shared by all four machines: transport kind, timer deadlines and the output queue.
#[derive(Debug)]
pub(super) struct Core {
    pub(super) reliable: bool,
    pub(super) timers: Timers,
    deadlines: [Option<Instant>; ALL_TIMERS.len()],
    pub(super) outputs: VecDeque<Output>,
    terminated: bool,
}

impl Core {
    pub(super) fn new(reliable: bool, timers: Timers) -> Self {
        Self {
            reliable,
            timers,
            deadlines: [None; ALL_TIMERS.len()],
            outputs: VecDeque::new(),
            terminated: false,
        }
    }

    /// Arms `timer` at `now + after`; an overflowing deadline simply never fires.
    pub(super) fn arm(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.deadlines[timer as usize] = now.checked_add(after);
    }

    pub(super) fn disarm(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// Arms a "wait for stray retransmissions" timer (D, I, J, K): zero on reliable transports,
    /// where the network does not duplicate messages (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).
    pub(super) fn arm_linger(&mut self, timer: Timer, now: Instant, unreliable: Duration) {
        let after = if self.reliable {
            Duration::ZERO
        } else {
            unreliable
        };
        self.arm(timer, now, after);
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The earliest due timer not yet fired in this `handle_timeout` call; it is disarmed before
    /// being returned so the caller may re-arm it. Firing each timer at most once per call keeps
    /// a zero interval from spinning forever.
    pub(super) fn take_due(&mut self, now: Instant, fired: &mut u16) -> Option<Timer> {
        let mut best: Option<(Timer, Instant)> = None;
        for timer in ALL_TIMERS {
            if *fired & (1 << timer as u16) != 0 {
                continue;
            }
            if let Some(at) = self.deadlines[timer as usize] {
                if at <= now && best.is_none_or(|(_, b)| at < b) {
                    best = Some((timer, at));
                }
            }
        }
        let (timer, _) = best?;
        *fired |= 1 << timer as u16;
        self.disarm(timer);
        Some(timer)
    }

    pub(super) fn transmit(&mut self, bytes: Bytes) {
        self.outputs.push_back(Output::Transmit(bytes));
    }

    pub(super) fn deliver(&mut self, response: rsip::Response) {
        self.outputs.push_back(Output::Deliver(response));
    }

    /// Enters the Terminated state: all timers stop and `Terminated` is queued exactly once.
    pub(super) fn terminate(&mut self) {
        self.deadlines = [None; ALL_TIMERS.len()];
        if !self.terminated {
            self.terminated = true;
            self.outputs.push_back(Output::Terminated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::transaction::testkit::*;

    #[test]
    fn late_handle_timeout_fires_all_due_timers_once() {
        let t0 = Instant::now();
        let mut tx = ClientInvite::new(invite(), false, Timers::default(), t0);
        drain(&mut tx);
        // Called way late: A (due at 0.5 s) and B (due at 32 s) fire in deadline order, each
        // once; A's re-armed deadline (41 s) is not due yet, and B then stops everything.
        tx.handle_timeout(t0 + secs(40.0));
        let out = drain(&mut tx);
        assert_eq!(out.len(), 3);
        assert!(matches!(out[0], Output::Transmit(_)));
        assert_eq!(out[1..], [Output::Timeout, Output::Terminated]);
        tx.handle_timeout(t0 + secs(80.0));
        tx.on_response(resp(200, None), t0 + secs(81.0));
        assert_eq!(drain(&mut tx), vec![]);
        assert_eq!(tx.poll_timeout(), None);
        // Timers that are not armed never fire.
        let mut server = ServerNonInvite::new(false, Timers::default(), t0);
        server.handle_timeout(t0 + secs(1000.0));
        assert_eq!(drain(&mut server), vec![]);
        assert_eq!(server.state(), ServerNonInviteState::Trying);
    }
}
