//! SIP transactions (RFC 3261 §17, with the RFC 6026 corrections) as sans-IO state machines.
//!
//! Each machine owns no socket, no task and no clock. The owner feeds it inputs (received
//! messages, responses from the TU) together with the current time, then drains
//! [`poll_output`](ServerInvite::poll_output) and arms a single timer at
//! [`poll_timeout`](ServerInvite::poll_timeout), calling `handle_timeout(now)` when it expires.
//! This keeps every retransmission and timeout rule deterministic and testable with a fake
//! clock, in the style of `quinn-proto` and `str0m`.
//!
//! Transport reliability matters because RFC 3261 §17.1.1.2 / §17.1.2.2 / §17.2.1 only
//! retransmit over unreliable transports (UDP): on TCP/TLS Timers A, E and G are never armed and
//! the "absorb stray retransmissions" timers D, I, J and K are zero.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use super::headers;
use bytes::Bytes;
use rsip::prelude::*;
use rsip::{Header, Headers, Method};

/// RFC 3261 §8.1.1.7: a branch starting with this cookie was built by an RFC 3261 element and
/// is unique per transaction, so it alone identifies the transaction.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// RFC 3261 §17.1.1.2: Timer D is "at least 32 seconds" on unreliable transports, independent of
/// T1, because it must outlive the server's Timer H-driven retransmissions of the final response.
const TIMER_D_UNRELIABLE: Duration = Duration::from_secs(32);

/// Everything that can go wrong while feeding a transaction or computing a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransactionError {
    /// A header needed for matching or message construction is absent.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header is present but could not be understood.
    #[error("malformed {header} header: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: String,
    },
    /// The top Via has no branch parameter, so a response cannot be matched (§17.1.3).
    #[error("top Via header has no branch parameter")]
    MissingBranch,
    /// The status code is outside 100..=699.
    #[error("invalid status code {0}")]
    InvalidStatus(u16),
    /// The TU tried to send a response the current state does not allow.
    #[error("cannot send a {status} response in state {state}")]
    InvalidState { status: u16, state: String },
}

/// Protocol timer base values (RFC 3261 §17.1.1.1 and Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    /// RTT estimate; the initial retransmission interval.
    pub t1: Duration,
    /// Cap on the retransmission interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum time a message stays in the network.
    pub t4: Duration,
}

impl Default for Timers {
    /// The RFC 3261 recommended values: T1 = 500 ms, T2 = 4 s, T4 = 5 s.
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64*T1: the transaction timeout (Timers B, F, H, J, L, M).
    fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// What a transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Put these bytes on the wire to the transaction's peer.
    Transmit(Bytes),
    /// Client transactions: pass this response up to the TU.
    Deliver(rsip::Response),
    /// Timer B / F (client) or Timer H (server INVITE: no ACK for a non-2xx final) fired.
    Timeout,
    /// The transaction is over; the owner removes it. Emitted exactly once.
    Terminated,
}

// ---------------------------------------------------------------------------------------------
// Shared timer and output plumbing
// ---------------------------------------------------------------------------------------------

/// Timer names from RFC 3261 Table 4 and RFC 6026. Declaration order breaks ties between
/// deadlines: terminating timers come before retransmission timers so that nothing is
/// retransmitted in the same instant the transaction gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
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
struct Core {
    reliable: bool,
    timers: Timers,
    deadlines: [Option<Instant>; ALL_TIMERS.len()],
    outputs: VecDeque<Output>,
    terminated: bool,
}

impl Core {
    fn new(reliable: bool, timers: Timers) -> Self {
        Self {
            reliable,
            timers,
            deadlines: [None; ALL_TIMERS.len()],
            outputs: VecDeque::new(),
            terminated: false,
        }
    }

    /// Arms `timer` at `now + after`; an overflowing deadline simply never fires.
    fn arm(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.deadlines[timer as usize] = now.checked_add(after);
    }

    fn disarm(&mut self, timer: Timer) {
        self.deadlines[timer as usize] = None;
    }

    /// Arms a "wait for stray retransmissions" timer (D, I, J, K): zero on reliable transports,
    /// where the network does not duplicate messages (§17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2).
    fn arm_linger(&mut self, timer: Timer, now: Instant, unreliable: Duration) {
        let after = if self.reliable {
            Duration::ZERO
        } else {
            unreliable
        };
        self.arm(timer, now, after);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The earliest due timer not yet fired in this `handle_timeout` call; it is disarmed before
    /// being returned so the caller may re-arm it. Firing each timer at most once per call keeps
    /// a zero interval from spinning forever.
    fn take_due(&mut self, now: Instant, fired: &mut u16) -> Option<Timer> {
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

    fn transmit(&mut self, bytes: Bytes) {
        self.outputs.push_back(Output::Transmit(bytes));
    }

    fn deliver(&mut self, response: rsip::Response) {
        self.outputs.push_back(Output::Deliver(response));
    }

    /// Enters the Terminated state: all timers stop and `Terminated` is queued exactly once.
    fn terminate(&mut self) {
        self.deadlines = [None; ALL_TIMERS.len()];
        if !self.terminated {
            self.terminated = true;
            self.outputs.push_back(Output::Terminated);
        }
    }
}

fn check_status(status: u16) -> Result<(), TransactionError> {
    if (100..=699).contains(&status) {
        Ok(())
    } else {
        Err(TransactionError::InvalidStatus(status))
    }
}

fn invalid_state(status: u16, state: impl std::fmt::Debug) -> TransactionError {
    TransactionError::InvalidState {
        status,
        state: format!("{state:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// INVITE server transaction (§17.2.1, RFC 6026 §7.1)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Non-INVITE server transaction (§17.2.2)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// INVITE client transaction (§17.1.1, RFC 6026 §7.2)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Non-INVITE client transaction (§17.1.2)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Matching (§17.1.3, §17.2.3)
// ---------------------------------------------------------------------------------------------

/// Transaction matching key (§17.1.3 / §17.2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionKey {
    /// The top Via branch, or an `rfc2543:`-prefixed composite for pre-RFC 3261 peers.
    pub branch: String,
    /// Normalised top Via sent-by: lower-cased host, explicit port.
    pub sent_by: String,
    /// ACK is mapped to INVITE on the server side; CANCEL stays CANCEL.
    pub method: Method,
}

// `rsip::Method` does not implement `Hash`, so hash its discriminant (consistent with its `Eq`).
impl Hash for TransactionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.branch.hash(state);
        self.sent_by.hash(state);
        std::mem::discriminant(&self.method).hash(state);
    }
}

/// The key of the server transaction a received request belongs to (§17.2.3).
///
/// With an RFC 3261 branch the key is branch + sent-by + method, ACK mapped to INVITE so the
/// ACK for a non-2xx final finds its INVITE transaction; a CANCEL keeps its own method because
/// it is a separate transaction (§9.2). Without the magic cookie (RFC 2543 peers) the key is
/// built from the Request-URI, From tag, Call-ID, CSeq number and top Via, which are equal in
/// the INVITE, its retransmissions and the ACK for a non-2xx (the To tag is left out because
/// the ACK carries one the INVITE lacks).
pub fn server_key(request: &rsip::Request) -> Result<TransactionKey, TransactionError> {
    let top = top_via(&request.headers)?;
    let via = parse_via(top)?;
    let method = match request.method {
        Method::Ack => Method::Invite,
        other => other,
    };
    let branch = match via.branch {
        Some(branch) if branch.starts_with(MAGIC_COOKIE) => branch,
        _ => {
            let from = header_str(&request.headers, Field::From)
                .ok_or(TransactionError::MissingHeader("From"))?;
            let from_tag = headers::tag_param(from).unwrap_or_default();
            let call_id = header_str(&request.headers, Field::CallId)
                .ok_or(TransactionError::MissingHeader("Call-ID"))?
                .trim();
            let (seq, _) = parse_cseq(&request.headers)?;
            format!(
                "rfc2543:{}|{}|{}|{}|{}",
                request.uri,
                from_tag,
                call_id,
                seq,
                top.trim()
            )
        }
    };
    Ok(TransactionKey {
        branch,
        sent_by: via.sent_by,
        method,
    })
}

/// The key of the client transaction a received response belongs to (§17.1.3): top Via branch,
/// sent-by and the CSeq method (which tells an INVITE's response from its CANCEL's).
pub fn client_key(response: &rsip::Response) -> Result<TransactionKey, TransactionError> {
    client_key_from(&response.headers)
}

/// The key under which a client transaction for an outgoing `request` is registered; equals
/// [`client_key`] of its responses.
pub fn client_request_key(request: &rsip::Request) -> Result<TransactionKey, TransactionError> {
    client_key_from(&request.headers)
}

fn client_key_from(headers: &Headers) -> Result<TransactionKey, TransactionError> {
    let via = parse_via(top_via(headers)?)?;
    let branch = via.branch.ok_or(TransactionError::MissingBranch)?;
    let (_, method) = parse_cseq(headers)?;
    Ok(TransactionKey {
        branch,
        sent_by: via.sent_by,
        method,
    })
}

// ---------------------------------------------------------------------------------------------
// Message construction (§17.1.1.3, §9.1)
// ---------------------------------------------------------------------------------------------

/// The ACK for a non-2xx final response, built by the INVITE client transaction
/// (§17.1.1.3): same Request-URI, Call-ID, From and CSeq number (method ACK) as the INVITE, To
/// from the response (carrying its tag), a single Via equal to the INVITE's top Via (so it
/// matches the server transaction), the INVITE's Route headers, Max-Forwards 70 and no body.
/// Headers missing from the inputs are left out rather than invented.
pub fn ack_for_non_2xx(request: &rsip::Request, response: &rsip::Response) -> rsip::Request {
    let to = first_header(&response.headers, Field::To).cloned();
    derived_request(request, Method::Ack, to)
}

/// A CANCEL for `request` (§9.1): same Request-URI, Call-ID, To, From and CSeq number (method
/// CANCEL), a single Via equal to the request's top Via (so the server matches it to the INVITE
/// transaction), the same Route headers, Max-Forwards 70 and no body.
pub fn cancel_for(request: &rsip::Request) -> rsip::Request {
    let to = first_header(&request.headers, Field::To).cloned();
    derived_request(request, Method::Cancel, to)
}

/// Shared body of [`ack_for_non_2xx`] and [`cancel_for`].
fn derived_request(request: &rsip::Request, method: Method, to: Option<Header>) -> rsip::Request {
    let src = &request.headers;
    let mut headers = Headers::default();
    if let Ok(via) = top_via(src) {
        headers.push(Header::Via(rsip::headers::Via::new(via.trim())));
    }
    for header in src.iter() {
        if let Header::Route(_) = header {
            headers.push(header.clone());
        }
    }
    headers.push(Header::MaxForwards(70.into()));
    if let Some(from) = first_header(src, Field::From) {
        headers.push(from.clone());
    }
    if let Some(to) = to {
        headers.push(to);
    }
    if let Some(call_id) = first_header(src, Field::CallId) {
        headers.push(call_id.clone());
    }
    if let Some(seq) = header_str(src, Field::CSeq).and_then(|v| v.split_whitespace().next()) {
        headers.push(Header::CSeq(rsip::headers::CSeq::new(format!(
            "{seq} {method}"
        ))));
    }
    headers.push(Header::ContentLength(0.into()));
    rsip::Request {
        method,
        uri: request.uri.clone(),
        version: request.version.clone(),
        headers,
        body: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Header helpers. rsip does not know compact header forms (§7.3.3) and fails on IPv6 sent-by,
// so the few fields transactions need are read from the raw header values here.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Field {
    Via,
    From,
    To,
    CallId,
    CSeq,
}

impl Field {
    /// Compact form (§7.3.3); rsip parses those as `Header::Other`.
    fn compact(self) -> Option<&'static str> {
        match self {
            Field::Via => Some("v"),
            Field::From => Some("f"),
            Field::To => Some("t"),
            Field::CallId => Some("i"),
            Field::CSeq => None,
        }
    }
}

fn field_value(header: &Header, field: Field) -> Option<&str> {
    match (field, header) {
        (Field::Via, Header::Via(h)) => Some(h.value()),
        (Field::From, Header::From(h)) => Some(h.value()),
        (Field::To, Header::To(h)) => Some(h.value()),
        (Field::CallId, Header::CallId(h)) => Some(h.value()),
        (Field::CSeq, Header::CSeq(h)) => Some(h.value()),
        (field, Header::Other(name, value)) => field
            .compact()
            .filter(|c| name.trim().eq_ignore_ascii_case(c))
            .map(|_| value.as_str()),
        _ => None,
    }
}

fn first_header(headers: &Headers, field: Field) -> Option<&Header> {
    headers
        .iter()
        .find(|header| field_value(header, field).is_some())
}

fn header_str(headers: &Headers, field: Field) -> Option<&str> {
    headers.iter().find_map(|header| field_value(header, field))
}

/// The first value of the first Via header (a header line may carry several, comma-separated).
fn top_via(headers: &Headers) -> Result<&str, TransactionError> {
    let value = header_str(headers, Field::Via).ok_or(TransactionError::MissingHeader("Via"))?;
    Some(headers::top_via(value))
        .filter(|v| !v.is_empty())
        .ok_or_else(|| malformed("Via", "empty value"))
}

fn malformed(header: &'static str, reason: impl Into<String>) -> TransactionError {
    TransactionError::MalformedHeader {
        header,
        reason: reason.into(),
    }
}

/// The parts of one Via value that matching needs.
struct ViaParts {
    sent_by: String,
    branch: Option<String>,
}

/// Reads a via-parm as the message checks do ([`headers::parse_via`]).
fn parse_via(value: &str) -> Result<ViaParts, TransactionError> {
    let via = headers::parse_via(value).map_err(|e| malformed("Via", e.to_string()))?;
    Ok(ViaParts {
        sent_by: via.normalized_sent_by(),
        branch: via.branch.map(str::to_string),
    })
}

/// CSeq number and method.
fn parse_cseq(headers: &Headers) -> Result<(u32, Method), TransactionError> {
    let value = header_str(headers, Field::CSeq).ok_or(TransactionError::MissingHeader("CSeq"))?;
    let (seq, method) = headers::parse_cseq(value).map_err(|e| malformed("CSeq", e.to_string()))?;
    let method = method
        .parse::<Method>()
        .map_err(|_| malformed("CSeq", format!("unknown method {method:?}")))?;
    Ok((seq, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
        Route: <sip:proxy1.example.com;lr>\r\n\
        Route: <sip:proxy2.example.com;lr>\r\n\
        Max-Forwards: 70\r\n\
        To: Bob <sip:bob@biloxi.example.com>\r\n\
        From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
        Call-ID: a84b4c76e66710\r\n\
        CSeq: 314159 INVITE\r\n\
        Content-Length: 0\r\n\r\n";

    fn req(raw: &str) -> rsip::Request {
        rsip::Request::try_from(raw.as_bytes()).expect("test request parses")
    }

    fn invite() -> rsip::Request {
        req(INVITE)
    }

    fn options() -> rsip::Request {
        req(&INVITE.replace("INVITE", "OPTIONS"))
    }

    fn resp(code: u16, to_tag: Option<&str>) -> rsip::Response {
        let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let raw = format!(
            "SIP/2.0 {code} Whatever\r\n\
             Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
             To: Bob <sip:bob@biloxi.example.com>{tag}\r\n\
             From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
             Call-ID: a84b4c76e66710\r\n\
             CSeq: 314159 INVITE\r\n\
             Content-Length: 0\r\n\r\n"
        );
        rsip::Response::try_from(raw.as_bytes()).expect("test response parses")
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Uniform access to the four machines for the timer-driving helpers.
    trait Machine {
        fn timeout(&self) -> Option<Instant>;
        fn fire(&mut self, now: Instant);
        fn output(&mut self) -> Option<Output>;
    }

    macro_rules! machine {
        ($($t:ty),*) => {$(
            impl Machine for $t {
                fn timeout(&self) -> Option<Instant> { self.poll_timeout() }
                fn fire(&mut self, now: Instant) { self.handle_timeout(now) }
                fn output(&mut self) -> Option<Output> { self.poll_output() }
            }
        )*};
    }
    machine!(ServerInvite, ServerNonInvite, ClientInvite, ClientNonInvite);

    fn drain(m: &mut impl Machine) -> Vec<Output> {
        std::iter::from_fn(|| m.output()).collect()
    }

    /// Follows `poll_timeout` until no timer is left (or `until`), returning each output with
    /// its offset from `start` in seconds.
    fn run(m: &mut impl Machine, start: Instant, until: Option<f64>) -> Vec<(f64, Output)> {
        let mut events = Vec::new();
        while let Some(at) = m.timeout() {
            if until.is_some_and(|u| at > start + secs(u)) {
                break;
            }
            m.fire(at);
            let offset = (at - start).as_secs_f64();
            events.extend(drain(m).into_iter().map(|o| (offset, o)));
        }
        events
    }

    fn transmit_times(events: &[(f64, Output)]) -> Vec<f64> {
        events
            .iter()
            .filter(|(_, o)| matches!(o, Output::Transmit(_)))
            .map(|(t, _)| *t)
            .collect()
    }

    fn tail(events: &[(f64, Output)], n: usize) -> Vec<(f64, Output)> {
        events[events.len() - n..].to_vec()
    }

    fn parse_sent(output: &Output) -> rsip::Request {
        match output {
            Output::Transmit(bytes) => rsip::Request::try_from(bytes.clone()).expect("parses"),
            other => panic!("expected Transmit, got {other:?}"),
        }
    }

    fn intervals(times: &[f64]) -> Vec<f64> {
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }

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

    #[test]
    fn server_key_matching() {
        let invite_key = server_key(&invite()).unwrap();
        assert_eq!(
            invite_key,
            TransactionKey {
                branch: "z9hG4bKnashds8".into(),
                sent_by: "pc33.atlanta.example.com:5060".into(),
                method: Method::Invite,
            }
        );
        let ack = ack_for_non_2xx(&invite(), &resp(486, Some("t")));
        assert_eq!(server_key(&ack).unwrap(), invite_key);
        let cancel = cancel_for(&invite());
        assert_ne!(server_key(&cancel).unwrap(), invite_key);
        // Explicit default port and host case do not matter; another sent-by does.
        let same = INVITE.replace(
            "pc33.atlanta.example.com;",
            "PC33.Atlanta.Example.com:5060;",
        );
        assert_eq!(server_key(&req(&same)).unwrap(), invite_key);
        let other = INVITE.replace(
            "pc33.atlanta.example.com;",
            "pc33.atlanta.example.com:5070;",
        );
        assert_ne!(server_key(&req(&other)).unwrap(), invite_key);
        // Compact form and IPv6 sent-by.
        let v6 = INVITE.replace(
            "Via: SIP/2.0/UDP pc33.atlanta.example.com",
            "v: SIP/2.0/TLS [2001:DB8:0::1]",
        );
        assert_eq!(server_key(&req(&v6)).unwrap().sent_by, "[2001:db8::1]:5061");
        // Usable as a HashMap key.
        let map: std::collections::HashMap<_, _> = [(invite_key.clone(), 1)].into();
        assert_eq!(map.get(&server_key(&ack).unwrap()), Some(&1));
    }

    #[test]
    fn server_key_rfc2543_fallback() {
        let old = INVITE.replace(";branch=z9hG4bKnashds8", "");
        let key = server_key(&req(&old)).unwrap();
        assert!(key.branch.starts_with("rfc2543:"));
        assert!(key.branch.contains("1928301774") && key.branch.contains("a84b4c76e66710"));
        assert_eq!(key.method, Method::Invite);
        let ack = ack_for_non_2xx(&req(&old), &resp(486, Some("t")));
        assert_eq!(server_key(&ack).unwrap(), key);
        let retrans = server_key(&req(&old)).unwrap();
        assert_eq!(retrans, key);
        let other_call = old.replace("a84b4c76e66710", "zzz");
        assert_ne!(server_key(&req(&other_call)).unwrap(), key);
        let non_cookie = INVITE.replace("z9hG4bKnashds8", "oldbranch");
        assert!(server_key(&req(&non_cookie))
            .unwrap()
            .branch
            .starts_with("rfc2543:"));
    }

    #[test]
    fn keys_error_instead_of_panicking() {
        let no_via = INVITE.replace(
            "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n",
            "",
        );
        assert_eq!(
            server_key(&req(&no_via)),
            Err(TransactionError::MissingHeader("Via"))
        );
        for bad in [
            "Via: garbage",
            "Via: SIP/2.0/UDP host:99999;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP [::1;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP ;branch=z9hG4bK1",
            "Via: SIP/2.0/UDP a:b:c;branch=z9hG4bK1",
        ] {
            let raw = INVITE.replace(
                "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8",
                bad,
            );
            assert!(
                matches!(
                    server_key(&req(&raw)),
                    Err(TransactionError::MalformedHeader { .. })
                ),
                "{bad}"
            );
        }
        let no_cseq_old = INVITE
            .replace(";branch=z9hG4bKnashds8", "")
            .replace("CSeq: 314159 INVITE\r\n", "");
        assert_eq!(
            server_key(&req(&no_cseq_old)),
            Err(TransactionError::MissingHeader("CSeq"))
        );
        // Client side: responses need a branch and a parsable CSeq.
        let mut r = resp(200, None);
        assert_eq!(
            client_key(&r).unwrap(),
            client_request_key(&invite()).unwrap()
        );
        r.headers.retain(|h| !matches!(h, Header::CSeq(_)));
        assert_eq!(client_key(&r), Err(TransactionError::MissingHeader("CSeq")));
        let mut r = resp(200, None);
        r.headers
            .unique_push(Header::Via(rsip::headers::Via::new("SIP/2.0/UDP h")));
        assert_eq!(client_key(&r), Err(TransactionError::MissingBranch));
        let mut r = resp(200, None);
        r.headers
            .unique_push(Header::CSeq(rsip::headers::CSeq::new("x INVITE")));
        assert!(matches!(
            client_key(&r),
            Err(TransactionError::MalformedHeader { .. })
        ));
        // Builders never panic on header-less input.
        let bare = req("OPTIONS sip:a@b SIP/2.0\r\n\r\n");
        let ack = ack_for_non_2xx(
            &bare,
            &rsip::Response::try_from(&b"SIP/2.0 500 X\r\n\r\n"[..]).unwrap(),
        );
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(cancel_for(&bare).method, Method::Cancel);
    }

    #[test]
    fn client_key_distinguishes_cancel_from_invite() {
        let invite_key = client_request_key(&invite()).unwrap();
        let cancel_key = client_request_key(&cancel_for(&invite())).unwrap();
        assert_eq!(invite_key.branch, cancel_key.branch);
        assert_ne!(invite_key, cancel_key);
        let mut r = resp(200, None);
        r.headers
            .unique_push(Header::CSeq(rsip::headers::CSeq::new("314159 CANCEL")));
        assert_eq!(client_key(&r).unwrap(), cancel_key);
    }

    #[test]
    fn top_via_of_multi_value_header() {
        let raw = INVITE.replace(
            "branch=z9hG4bKnashds8\r\n",
            "branch=z9hG4bKnashds8, SIP/2.0/UDP other:5070;branch=z9hG4bKzzz\r\n",
        );
        let request = req(&raw);
        assert_eq!(
            server_key(&request).unwrap(),
            server_key(&invite()).unwrap()
        );
        let cancel = cancel_for(&request);
        assert_eq!(
            cancel.via_header().unwrap().value(),
            "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8"
        );
    }

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
