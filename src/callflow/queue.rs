//! The operator queue (ACD, SPEC §2.5) as a plain state machine.
//!
//! Callers wait in arrival order. Whenever a caller waits and an operator is free, the caller
//! at the head is offered to the operator who has been idle longest ([`Action::Offer`]); the
//! operator's phone then rings for `ring_timeout`. An operator who lets it ring out, or whose
//! phone refuses, is paused "until they sign in again" and the caller goes back to the head,
//! to be offered to the next free operator at once. A caller who waits `max_wait` goes to
//! voicemail ([`Action::MaxWait`]); every `position_every` they hear their place in the line
//! ([`Action::Position`]). Every change of an operator's state is reported
//! ([`Action::OperatorChanged`]) for the live view and the metrics.
//!
//! A *free* operator is one whose phone is registered, who is signed in, and who is
//! [`OperatorState::Available`]: not ringing, not on a call, not in wrap-up, not paused.
//!
//! Nothing here does I/O or reads the clock: every input carries `now`, outputs are taken
//! with [`Acd::poll_action`], and the owner sleeps until [`Acd::poll_timeout`] and then calls
//! [`Acd::handle_timeout`] (the `quinn-proto` / `str0m` style the SIP core uses too). Timers
//! are handled at their own deadlines, in order, so a late or fake clock replays exactly what
//! would have happened. The tokio actor that owns the one queue is [`super::acd`].
//!
//! The file uses `std` only, on purpose: the queue's rules are what the service standard
//! cares about most, and the file compiles and tests alone in a second, without the crate:
//! `rustc --edition 2021 --test src/callflow/queue.rs -o /tmp/q && /tmp/q`.
//!
//! Sizes: built for 1,000 waiting callers and 100 operators, every event costs O(log n):
//! free operators are a `BTreeSet` ordered by idle-since, waiting callers a `BTreeMap` by
//! arrival, positions come from a Fenwick tree over arrival slots, and timers sit in one
//! `BTreeMap` by deadline, removed as soon as they no longer matter (so
//! [`Acd::poll_timeout`] never wakes the owner for nothing).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

/// The queue's timings (`[queue]` in the configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueConfig {
    /// How long an operator's phone rings before the offer is withdrawn (SPEC: 15 s).
    pub ring_timeout: Duration,
    /// After a call, the operator gets no call for this long (journal entry, callback form).
    pub wrap_up: Duration,
    /// The longest a caller waits before going to voicemail (SPEC: 120 s, the service
    /// standard's two minutes). `ZERO`: no waiting at all, as §6.1 has it: with no operator
    /// free when the caller joins, [`Action::MaxWait`] comes at once.
    pub max_wait: Duration,
    /// How often a waiting caller hears their position. `ZERO`: never.
    pub position_every: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            ring_timeout: Duration::from_secs(15),
            wrap_up: Duration::from_secs(10),
            max_wait: Duration::from_secs(120),
            position_every: Duration::from_secs(30),
        }
    }
}

/// What an operator is doing, as far as the queue is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperatorState {
    /// Not signed in, or the phone is not registered.
    Offline,
    /// Signed in and waiting for a call: free when the phone is registered.
    Available,
    /// The queue has offered a caller; the operator's phone rings.
    Ringing,
    /// On a call.
    Busy,
    /// After a call, for `wrap_up`.
    WrapUp,
    /// On a break or after a missed call: no calls until they sign in again.
    Paused,
}

impl OperatorState {
    /// The state's name in the live view, its feed and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            OperatorState::Offline => "offline",
            OperatorState::Available => "available",
            OperatorState::Ringing => "ringing",
            OperatorState::Busy => "busy",
            OperatorState::WrapUp => "wrap_up",
            OperatorState::Paused => "paused",
        }
    }
}

/// Why an operator is paused: shown on the wallboard, since a supervisor asks who is away
/// and why before calling anyone back to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PauseReason {
    Break,
    Lunch,
    Training,
    /// Work off the phone: callback forms, voicemail, tickets.
    BackOffice,
    Technical,
    /// Set by the queue: the phone refused or did not answer an offer (SPEC §2.5).
    NoAnswer,
}

impl PauseReason {
    /// The reasons a person picks (not [`PauseReason::NoAnswer`], which only the queue sets).
    pub const CHOSEN: [PauseReason; 5] = [
        PauseReason::Break,
        PauseReason::Lunch,
        PauseReason::Training,
        PauseReason::BackOffice,
        PauseReason::Technical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Break => "break",
            PauseReason::Lunch => "lunch",
            PauseReason::Training => "training",
            PauseReason::BackOffice => "back_office",
            PauseReason::Technical => "technical",
            PauseReason::NoAnswer => "no_answer",
        }
    }

    /// One of [`PauseReason::CHOSEN`] by its name.
    pub fn parse(s: &str) -> Option<PauseReason> {
        PauseReason::CHOSEN.into_iter().find(|r| r.as_str() == s)
    }

    pub fn russian(self) -> &'static str {
        match self {
            PauseReason::Break => "перерыв",
            PauseReason::Lunch => "обед",
            PauseReason::Training => "обучение",
            PauseReason::BackOffice => "работа с обращениями",
            PauseReason::Technical => "технические неполадки",
            PauseReason::NoAnswer => "не ответил на звонок",
        }
    }
}

/// What the queue asks its owner to do or to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Ring `operator` for `call`: the caller's flow places the operator leg.
    Offer { call: u64, operator: String },
    /// The offer of `call` to `operator` is withdrawn (ring timeout, the operator signed out
    /// or lost their registration, or the caller left): stop ringing.
    CancelOffer { call: u64, operator: String },
    /// Tell `call` its place in the line (1-based).
    Position { call: u64, position: usize },
    /// `call` has waited `max_wait` (or no operator was free and `max_wait` is zero): it
    /// has left the queue and goes to voicemail.
    MaxWait { call: u64 },
    /// `operator` is now in `state`.
    OperatorChanged {
        operator: String,
        state: OperatorState,
    },
}

impl Action {
    /// The call this action concerns and what its flow is told; `None` for an operator's
    /// change of state, which concerns no call.
    pub fn notice(self) -> Option<(u64, QueueNotice)> {
        Some(match self {
            Action::OperatorChanged { .. } => return None,
            Action::Offer { call, operator } => (call, QueueNotice::Offer { operator }),
            Action::CancelOffer { call, operator } => (call, QueueNotice::CancelOffer { operator }),
            Action::Position { call, position } => (call, QueueNotice::Position(position)),
            Action::MaxWait { call } => (call, QueueNotice::MaxWait),
        })
    }
}

/// What the queue tells one caller's flow: the [`Action`]s that concern a call, without the
/// call id (the caller's channel says whose they are).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueNotice {
    Offer { operator: String },
    CancelOffer { operator: String },
    Position(usize),
    MaxWait,
}

/// Why an operator request was refused.
///
/// Written out by hand rather than with `thiserror`: this file uses `std` only so that it
/// compiles and tests alone (see the module documentation); the impls below are exactly
/// what `#[derive(thiserror::Error)]` would generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The extension is not one of the configured operators.
    UnknownOperator(String),
    /// The operator's phone has no SIP binding: a call offered there could not ring.
    NotRegistered(String),
    /// Pausing an operator who is not signed in.
    NotSignedIn(String),
    /// The queue's actor has stopped (only [`super::acd`] returns this).
    Stopped,
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::UnknownOperator(ext) => write!(f, "no operator {ext}"),
            QueueError::NotRegistered(ext) => {
                write!(f, "the phone of operator {ext} is not registered")
            }
            QueueError::NotSignedIn(ext) => write!(f, "operator {ext} is not signed in"),
            QueueError::Stopped => write!(f, "the operator queue is not running"),
        }
    }
}

impl std::error::Error for QueueError {}

/// The queue at one instant, for the live view (the API layer converts it to JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    /// In arrival order, including callers being offered.
    pub waiting: Vec<WaitingCaller>,
    /// In configuration order.
    pub operators: Vec<OperatorView>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitingCaller {
    pub call: u64,
    pub waited: Duration,
    /// 1-based.
    pub position: usize,
    /// The operator whose phone rings for this caller now.
    pub offered_to: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorView {
    pub extension: String,
    pub state: OperatorState,
    /// Time in this state.
    pub since: Duration,
    pub calls_answered: u64,
    pub registered: bool,
    /// Why, while Paused.
    pub pause_reason: Option<PauseReason>,
}

/// Where a busy operator goes once the call (and the wrap-up) ends: signing out, pausing or
/// losing the registration during a call takes effect after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    Available,
    Paused(PauseReason),
    Offline,
}

/// A timer's deadline plus a sequence number (deadlines may coincide): its key in
/// [`Acd::timers`], kept by the timer's owner so it can be removed when it stops mattering.
type TimerKey = (Instant, u64);

#[derive(Clone, Copy, Debug)]
enum Timer {
    Ring { op: u32 },
    WrapUp { op: u32 },
    MaxWait { call: u64 },
    Position { call: u64 },
}

#[derive(Debug)]
struct Operator {
    extension: String,
    state: OperatorState,
    /// When `state` began.
    since: Instant,
    /// The key of the free set while Available; kept through an offer the caller
    /// abandoned, so the operator does not lose their turn.
    idle_since: Instant,
    registered: bool,
    after: After,
    /// The call the phone rings for (Ringing only).
    offer: Option<u64>,
    /// The ring timer (Ringing) or the wrap-up timer (WrapUp).
    timer: Option<TimerKey>,
    calls_answered: u64,
    /// Why, while Paused.
    pause_reason: Option<PauseReason>,
}

#[derive(Debug)]
struct Caller {
    /// Arrival slot: order in the line and index in [`Ranks`].
    slot: usize,
    enqueued: Instant,
    offered_to: Option<u32>,
    /// `max_wait` passed during an offer: MaxWait when the offer ends unanswered.
    expired: bool,
    max_wait: Option<TimerKey>,
    position: Option<TimerKey>,
}

/// Counts callers ahead of a slot in O(log n): a Fenwick tree over arrival slots. Slots are
/// handed out in arrival order and never reused; when they run out, [`Acd::compact`]
/// renumbers the callers densely (O(n log n), at most once per n arrivals).
#[derive(Debug)]
struct Ranks {
    present: Vec<bool>,
    /// 1-based Fenwick tree; `tree[0]` is unused.
    tree: Vec<u32>,
}

impl Ranks {
    /// A tree of `capacity` slots with the first `n` taken.
    fn with_first(capacity: usize, n: usize) -> Ranks {
        let mut present = vec![false; capacity];
        let mut tree = vec![0u32; capacity + 1];
        present[..n].fill(true);
        tree[1..=n].fill(1);
        for i in 1..=capacity {
            let j = i + (i & i.wrapping_neg());
            if j <= capacity {
                tree[j] += tree[i];
            }
        }
        Ranks { present, tree }
    }

    fn capacity(&self) -> usize {
        self.present.len()
    }

    fn insert(&mut self, slot: usize) {
        if !self.present[slot] {
            self.present[slot] = true;
            self.add(slot, 1);
        }
    }

    fn remove(&mut self, slot: usize) {
        if self.present.get(slot) == Some(&true) {
            self.present[slot] = false;
            self.add(slot, -1);
        }
    }

    fn add(&mut self, slot: usize, delta: i32) {
        let mut i = slot + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Taken slots before `slot`.
    fn before(&self, slot: usize) -> usize {
        let mut i = slot;
        let mut sum = 0usize;
        while i > 0 {
            sum += self.tree[i] as usize;
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

/// An operator as the queue holds them, for a store outside the process: a cluster keeps
/// its one queue in the database and every node works on it in turn ([`Acd::export`],
/// [`Acd::restore`]), so the rules stay these, whichever node applies them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorRecord {
    pub extension: String,
    pub state: OperatorState,
    pub since: Instant,
    pub idle_since: Instant,
    pub registered: bool,
    pub after: After,
    /// The call the phone rings for (Ringing).
    pub offer: Option<u64>,
    /// The ring timeout (Ringing) or the end of the wrap-up (WrapUp).
    pub timer_at: Option<Instant>,
    pub calls_answered: u64,
    pub pause_reason: Option<PauseReason>,
}

/// A caller in the queue, for a store outside the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallerRecord {
    pub call: u64,
    pub enqueued: Instant,
    /// The operator whose phone rings for the caller.
    pub offered_to: Option<String>,
    /// `max_wait` passed during an offer.
    pub expired: bool,
    pub max_wait_at: Option<Instant>,
    pub position_at: Option<Instant>,
}

/// The whole queue: operators in configuration order, callers in arrival order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    pub operators: Vec<OperatorRecord>,
    pub callers: Vec<CallerRecord>,
}

/// Fewest arrival slots: compaction never runs more often than every few thousand arrivals.
const MIN_SLOTS: usize = 4096;

/// The operator queue. See the module documentation.
#[derive(Debug)]
pub struct Acd {
    config: QueueConfig,
    operators: Vec<Operator>,
    by_extension: HashMap<String, u32>,
    /// Free operators by (idle-since, configuration order): the first is idle longest.
    free: BTreeSet<(Instant, u32)>,
    callers: HashMap<u64, Caller>,
    /// Callers not being offered, by arrival slot: the first is the head of the line.
    ready: BTreeMap<usize, u64>,
    ranks: Ranks,
    next_slot: usize,
    timers: BTreeMap<TimerKey, Timer>,
    next_timer: u64,
    actions: VecDeque<Action>,
}

impl Acd {
    /// A queue for these operators (the configured extensions, in configuration order: it
    /// breaks ties between operators idle equally long). All start Offline and unregistered;
    /// a repeated extension is ignored.
    pub fn new(config: QueueConfig, operators: Vec<String>, now: Instant) -> Acd {
        let mut by_extension = HashMap::new();
        let mut list = Vec::new();
        for extension in operators {
            if by_extension.contains_key(&extension) {
                continue;
            }
            by_extension.insert(extension.clone(), list.len() as u32);
            list.push(Operator {
                extension,
                state: OperatorState::Offline,
                since: now,
                idle_since: now,
                registered: false,
                after: After::Available,
                offer: None,
                timer: None,
                calls_answered: 0,
                pause_reason: None,
            });
        }
        Acd {
            config,
            operators: list,
            by_extension,
            free: BTreeSet::new(),
            callers: HashMap::new(),
            ready: BTreeMap::new(),
            ranks: Ranks::with_first(MIN_SLOTS, 0),
            next_slot: 0,
            timers: BTreeMap::new(),
            next_timer: 0,
            actions: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// The next thing to do, in the order things happened.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Acd::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|(key, _)| key.0)
    }

    /// Handles every timer due by `now`, each at its own deadline and in order.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((&key, &timer)) = self.timers.first_key_value() {
            if key.0 > now {
                break;
            }
            self.timers.remove(&key);
            let at = key.0;
            match timer {
                Timer::Ring { op } => {
                    self.operators[op as usize].timer = None;
                    // Unanswered: the operator is paused until they sign in again (§2.5).
                    self.withdraw(op, true);
                    self.set_state(op, OperatorState::Paused, at);
                }
                Timer::WrapUp { op } => {
                    self.operators[op as usize].timer = None;
                    self.finish_work(op, at);
                }
                Timer::MaxWait { call } => {
                    let Some(c) = self.callers.get_mut(&call) else {
                        continue;
                    };
                    c.max_wait = None;
                    if c.offered_to.is_some() {
                        // Let the ring finish: the operator may still answer.
                        c.expired = true;
                    } else {
                        self.remove_caller(call);
                        self.actions.push_back(Action::MaxWait { call });
                    }
                }
                Timer::Position { call } => {
                    let Some(c) = self.callers.get(&call) else {
                        continue;
                    };
                    let (slot, offered) = (c.slot, c.offered_to.is_some());
                    if !offered {
                        let position = self.ranks.before(slot) + 1;
                        self.actions.push_back(Action::Position { call, position });
                    }
                    let next = self.schedule(at + self.config.position_every, timer);
                    if let Some(c) = self.callers.get_mut(&call) {
                        c.position = Some(next);
                    }
                }
            }
            self.assign(at);
        }
    }

    /// The operator signs in, or comes back from a pause. Their phone must be registered.
    /// A busy operator becomes available once the call and wrap-up end.
    pub fn sign_in(&mut self, extension: &str, now: Instant) -> Result<(), QueueError> {
        let op = self.index(extension)?;
        let o = &mut self.operators[op as usize];
        if !o.registered {
            return Err(QueueError::NotRegistered(extension.to_string()));
        }
        match o.state {
            OperatorState::Offline | OperatorState::Paused => {
                o.idle_since = now;
                self.set_state(op, OperatorState::Available, now);
            }
            OperatorState::Busy | OperatorState::WrapUp => o.after = After::Available,
            OperatorState::Available | OperatorState::Ringing => {}
        }
        self.assign(now);
        Ok(())
    }

    /// The operator signs out. A ringing offer is withdrawn ([`Action::CancelOffer`]) and the
    /// caller goes back to the head of the line; wrap-up is cut short; a call in progress
    /// goes on and the operator is Offline when it ends.
    pub fn sign_out(&mut self, extension: &str, now: Instant) -> Result<(), QueueError> {
        let op = self.index(extension)?;
        match self.operators[op as usize].state {
            OperatorState::Offline => {}
            OperatorState::Busy => self.operators[op as usize].after = After::Offline,
            OperatorState::Ringing => {
                self.withdraw(op, true);
                self.set_state(op, OperatorState::Offline, now);
            }
            OperatorState::WrapUp => {
                let timer = self.operators[op as usize].timer.take();
                self.cancel(timer);
                self.set_state(op, OperatorState::Offline, now);
            }
            OperatorState::Available | OperatorState::Paused => {
                self.set_state(op, OperatorState::Offline, now);
            }
        }
        self.assign(now);
        Ok(())
    }

    /// The operator takes a break: no calls until they sign in again. A ringing offer is
    /// withdrawn as on sign-out; a busy operator pauses once the call and wrap-up end.
    pub fn pause(
        &mut self,
        extension: &str,
        reason: PauseReason,
        now: Instant,
    ) -> Result<(), QueueError> {
        let op = self.index(extension)?;
        let o = &mut self.operators[op as usize];
        match o.state {
            OperatorState::Offline => {
                return Err(QueueError::NotSignedIn(extension.to_string()));
            }
            OperatorState::Paused => {
                if o.pause_reason != Some(reason) {
                    o.pause_reason = Some(reason);
                    self.actions.push_back(Action::OperatorChanged {
                        operator: o.extension.clone(),
                        state: OperatorState::Paused,
                    });
                }
            }
            OperatorState::Busy | OperatorState::WrapUp => {
                if matches!(o.after, After::Available | After::Paused(_)) {
                    o.after = After::Paused(reason);
                }
            }
            OperatorState::Ringing => {
                o.pause_reason = Some(reason);
                self.withdraw(op, true);
                self.set_state(op, OperatorState::Paused, now);
            }
            OperatorState::Available => {
                o.pause_reason = Some(reason);
                self.set_state(op, OperatorState::Paused, now);
            }
        }
        self.assign(now);
        Ok(())
    }

    /// The operator's phone gained its first SIP binding (`true`) or lost its last one.
    /// Losing it takes the operator Offline: at once when idle or paused, withdrawing the
    /// offer when ringing, after the call or the wrap-up when busy. Gaining it changes no
    /// state: the operator still signs in. Unknown extensions are ignored (the registrar
    /// only binds configured operators).
    pub fn set_registered(&mut self, extension: &str, registered: bool, now: Instant) {
        let Ok(op) = self.index(extension) else {
            return;
        };
        let o = &mut self.operators[op as usize];
        o.registered = registered;
        if registered {
            return;
        }
        match o.state {
            OperatorState::Offline => {}
            OperatorState::Busy | OperatorState::WrapUp => o.after = After::Offline,
            OperatorState::Ringing => {
                self.withdraw(op, true);
                self.set_state(op, OperatorState::Offline, now);
            }
            OperatorState::Available | OperatorState::Paused => {
                self.set_state(op, OperatorState::Offline, now);
            }
        }
        self.assign(now);
    }

    /// A caller joins the end of the line. A call already in the queue is ignored.
    pub fn enqueue(&mut self, call: u64, now: Instant) {
        if self.callers.contains_key(&call) {
            return;
        }
        if self.next_slot >= self.ranks.capacity() {
            self.compact();
        }
        let slot = self.next_slot;
        self.next_slot += 1;
        self.ranks.insert(slot);
        let max_wait = (!self.config.max_wait.is_zero())
            .then(|| self.schedule(now + self.config.max_wait, Timer::MaxWait { call }));
        let position = (!self.config.position_every.is_zero())
            .then(|| self.schedule(now + self.config.position_every, Timer::Position { call }));
        self.callers.insert(
            call,
            Caller {
                slot,
                enqueued: now,
                offered_to: None,
                expired: false,
                max_wait,
                position,
            },
        );
        self.ready.insert(slot, call);
        self.assign(now);
        if self.config.max_wait.is_zero() {
            // §6.1: no operator free now means voicemail now; one being offered gets its
            // one ring.
            match self.callers.get_mut(&call) {
                Some(c) if c.offered_to.is_some() => c.expired = true,
                Some(_) => {
                    self.remove_caller(call);
                    self.actions.push_back(Action::MaxWait { call });
                }
                None => {}
            }
        }
    }

    /// The caller leaves the line (hung up, or pressed the voicemail key). If their call was
    /// being offered, the offer is withdrawn ([`Action::CancelOffer`]) and the operator is
    /// Available again with their turn kept (idle-since unchanged).
    pub fn leave(&mut self, call: u64, now: Instant) {
        let Some(c) = self.callers.get(&call) else {
            return;
        };
        if let Some(op) = c.offered_to {
            self.release_to_available(op, call, now);
        }
        self.remove_caller(call);
        self.assign(now);
    }

    /// The operator's phone answered `call`: the operator is Busy and the caller has left the
    /// queue for good.
    ///
    /// An answer that crossed a withdrawal (the ring timeout fired, or the operator signed
    /// out, while the 200 OK was on its way) is honoured all the same, because the two are
    /// talking: the operator is Busy, and an offer of the same caller to another operator
    /// meanwhile is withdrawn. Answers for callers no longer queued, or from an operator
    /// already on a call or in wrap-up, are stale and ignored.
    pub fn answered(&mut self, call: u64, extension: &str, now: Instant) {
        let Ok(op) = self.index(extension) else {
            return;
        };
        let Some(c) = self.callers.get(&call) else {
            return;
        };
        let offered_to = c.offered_to;
        let o = &self.operators[op as usize];
        if matches!(o.state, OperatorState::Busy | OperatorState::WrapUp) {
            return;
        }
        if offered_to == Some(op) {
            let o = &mut self.operators[op as usize];
            o.offer = None;
            let timer = o.timer.take();
            self.cancel(timer);
        } else {
            if let Some(other) = offered_to {
                self.release_to_available(other, call, now);
            }
            if let Some(c) = self.callers.get_mut(&call) {
                c.offered_to = None;
            }
            // Ringing for someone else: that caller goes back to the head.
            self.withdraw(op, true);
        }
        self.remove_caller(call);
        let o = &mut self.operators[op as usize];
        o.calls_answered += 1;
        o.after = if o.registered && o.state != OperatorState::Offline {
            After::Available
        } else {
            After::Offline
        };
        self.set_state(op, OperatorState::Busy, now);
        self.assign(now);
    }

    /// The operator's phone refused the offer of `call` or could not be reached: the operator
    /// is paused until they sign in again (SPEC §2.5), the caller goes back to the head and
    /// is offered to the next free operator at once. Stale reports are ignored.
    pub fn offer_failed(&mut self, call: u64, extension: &str, now: Instant) {
        let Ok(op) = self.index(extension) else {
            return;
        };
        let o = &self.operators[op as usize];
        if o.state != OperatorState::Ringing || o.offer != Some(call) {
            return;
        }
        self.withdraw(op, false);
        self.operators[op as usize].pause_reason = Some(PauseReason::NoAnswer);
        self.set_state(op, OperatorState::Paused, now);
        self.assign(now);
    }

    /// The operator's call has ended: wrap-up for `wrap_up`, then Available (idle since the
    /// end of the wrap-up); at once when `wrap_up` is zero. An operator who signed out or
    /// lost their registration during the call is Offline at once. Ignored unless Busy.
    pub fn call_ended(&mut self, extension: &str, now: Instant) {
        let Ok(op) = self.index(extension) else {
            return;
        };
        let o = &self.operators[op as usize];
        if o.state != OperatorState::Busy {
            return;
        }
        if o.after == After::Offline || !o.registered {
            self.operators[op as usize].after = After::Available;
            self.set_state(op, OperatorState::Offline, now);
        } else if self.config.wrap_up.is_zero() {
            self.finish_work(op, now);
        } else {
            let key = self.schedule(now + self.config.wrap_up, Timer::WrapUp { op });
            self.operators[op as usize].timer = Some(key);
            self.set_state(op, OperatorState::WrapUp, now);
        }
        self.assign(now);
    }

    /// Whether `call` is in the queue (waiting or being offered).
    pub fn is_queued(&self, call: u64) -> bool {
        self.callers.contains_key(&call)
    }

    /// Callers in the queue, including those being offered.
    pub fn waiting(&self) -> usize {
        self.callers.len()
    }

    pub fn operator_state(&self, extension: &str) -> Option<OperatorState> {
        let op = self.index(extension).ok()?;
        Some(self.operators[op as usize].state)
    }

    /// The queue now: callers in arrival order, operators in configuration order.
    pub fn snapshot(&self, now: Instant) -> QueueSnapshot {
        let mut waiting: Vec<(usize, WaitingCaller)> = self
            .callers
            .iter()
            .map(|(&call, c)| {
                (
                    c.slot,
                    WaitingCaller {
                        call,
                        waited: now.saturating_duration_since(c.enqueued),
                        position: 0,
                        offered_to: c
                            .offered_to
                            .map(|op| self.operators[op as usize].extension.clone()),
                    },
                )
            })
            .collect();
        waiting.sort_unstable_by_key(|(slot, _)| *slot);
        QueueSnapshot {
            waiting: waiting
                .into_iter()
                .enumerate()
                .map(|(i, (_, mut w))| {
                    w.position = i + 1;
                    w
                })
                .collect(),
            operators: self
                .operators
                .iter()
                .map(|o| OperatorView {
                    extension: o.extension.clone(),
                    state: o.state,
                    since: now.saturating_duration_since(o.since),
                    calls_answered: o.calls_answered,
                    registered: o.registered,
                    pause_reason: o.pause_reason,
                })
                .collect(),
        }
    }

    /// The queue as records (see [`OperatorRecord`]).
    pub fn export(&self) -> QueueState {
        let timer_of = |key: Option<TimerKey>| key.map(|k| k.0);
        let mut callers: Vec<(usize, CallerRecord)> = self
            .callers
            .iter()
            .map(|(&call, c)| {
                let record = CallerRecord {
                    call,
                    enqueued: c.enqueued,
                    offered_to: c
                        .offered_to
                        .map(|op| self.operators[op as usize].extension.clone()),
                    expired: c.expired,
                    max_wait_at: timer_of(c.max_wait),
                    position_at: timer_of(c.position),
                };
                (c.slot, record)
            })
            .collect();
        callers.sort_unstable_by_key(|(slot, _)| *slot);
        QueueState {
            operators: self
                .operators
                .iter()
                .map(|o| OperatorRecord {
                    extension: o.extension.clone(),
                    state: o.state,
                    since: o.since,
                    idle_since: o.idle_since,
                    registered: o.registered,
                    after: o.after,
                    offer: o.offer,
                    timer_at: timer_of(o.timer),
                    calls_answered: o.calls_answered,
                    pause_reason: o.pause_reason,
                })
                .collect(),
            callers: callers.into_iter().map(|(_, c)| c).collect(),
        }
    }

    /// The queue [`Acd::export`] gave, with these operators (configuration order): a
    /// configured operator missing from `state` starts Offline, a recorded one no longer
    /// configured is dropped, and so is an offer to them. Callers keep the order given.
    pub fn restore(
        config: QueueConfig,
        operators: Vec<String>,
        state: QueueState,
        now: Instant,
    ) -> Acd {
        let mut acd = Acd::new(config, operators, now);
        for r in state.operators {
            let Ok(op) = acd.index(&r.extension) else {
                continue;
            };
            let timer = r.timer_at.and_then(|at| match r.state {
                OperatorState::Ringing => Some((at, Timer::Ring { op })),
                OperatorState::WrapUp => Some((at, Timer::WrapUp { op })),
                _ => None,
            });
            let timer = timer.map(|(at, t)| acd.schedule(at, t));
            let o = &mut acd.operators[op as usize];
            o.state = r.state;
            o.since = r.since;
            o.idle_since = r.idle_since;
            o.registered = r.registered;
            o.after = r.after;
            o.offer = r.offer.filter(|_| r.state == OperatorState::Ringing);
            o.timer = timer;
            o.calls_answered = r.calls_answered;
            o.pause_reason = r.pause_reason;
            if r.state == OperatorState::Available {
                acd.free.insert((r.idle_since, op));
            }
        }
        let n = state.callers.len();
        acd.ranks = Ranks::with_first((2 * n + 1).next_power_of_two().max(MIN_SLOTS), n);
        acd.next_slot = n;
        for (slot, r) in state.callers.into_iter().enumerate() {
            let offered_to = r
                .offered_to
                .and_then(|ext| acd.index(&ext).ok())
                .filter(|&op| acd.operators[op as usize].offer == Some(r.call));
            let max_wait = r
                .max_wait_at
                .map(|at| acd.schedule(at, Timer::MaxWait { call: r.call }));
            let position = r
                .position_at
                .map(|at| acd.schedule(at, Timer::Position { call: r.call }));
            if offered_to.is_none() {
                acd.ready.insert(slot, r.call);
            }
            acd.callers.insert(
                r.call,
                Caller {
                    slot,
                    enqueued: r.enqueued,
                    offered_to,
                    expired: r.expired,
                    max_wait,
                    position,
                },
            );
        }
        // A ringing operator whose caller is gone (or was not restored) is free again.
        for op in 0..acd.operators.len() as u32 {
            let o = &acd.operators[op as usize];
            let orphan = o.state == OperatorState::Ringing
                && o.offer.is_none_or(|call| {
                    acd.callers.get(&call).and_then(|c| c.offered_to) != Some(op)
                });
            if orphan {
                let timer = acd.operators[op as usize].timer.take();
                acd.cancel(timer);
                acd.operators[op as usize].offer = None;
                acd.set_state(op, OperatorState::Available, now);
            }
        }
        // An operator so freed takes the head of the line now, not at the next event.
        acd.assign(now);
        acd
    }

    fn index(&self, extension: &str) -> Result<u32, QueueError> {
        self.by_extension
            .get(extension)
            .copied()
            .ok_or_else(|| QueueError::UnknownOperator(extension.to_string()))
    }

    /// Offers callers at the head to the operators idle longest while both exist.
    fn assign(&mut self, now: Instant) {
        while !self.ready.is_empty() && !self.free.is_empty() {
            let (_, call) = self.ready.pop_first().expect("not empty");
            let &(_, op) = self.free.first().expect("not empty");
            let key = self.schedule(now + self.config.ring_timeout, Timer::Ring { op });
            let o = &mut self.operators[op as usize];
            o.offer = Some(call);
            o.timer = Some(key);
            let operator = o.extension.clone();
            if let Some(c) = self.callers.get_mut(&call) {
                c.offered_to = Some(op);
            }
            self.actions.push_back(Action::Offer { call, operator });
            self.set_state(op, OperatorState::Ringing, now);
        }
    }

    /// Changes an operator's state, keeping the free set in step, and reports it.
    fn set_state(&mut self, op: u32, state: OperatorState, now: Instant) {
        let o = &mut self.operators[op as usize];
        if o.state == state {
            return;
        }
        if o.state == OperatorState::Available {
            self.free.remove(&(o.idle_since, op));
        }
        o.state = state;
        o.since = now;
        if state != OperatorState::Paused {
            o.pause_reason = None;
        }
        if state == OperatorState::Available {
            self.free.insert((o.idle_since, op));
        }
        self.actions.push_back(Action::OperatorChanged {
            operator: o.extension.clone(),
            state,
        });
    }

    /// Takes back the offer `op` rings for (if any), telling the caller when `notify`, and
    /// puts the caller back at its place at the head, or to voicemail if its wait ran out
    /// during the ring. The operator's new state is the caller's business.
    fn withdraw(&mut self, op: u32, notify: bool) {
        let o = &mut self.operators[op as usize];
        let Some(call) = o.offer.take() else {
            return;
        };
        let timer = o.timer.take();
        if notify {
            let operator = o.extension.clone();
            self.actions
                .push_back(Action::CancelOffer { call, operator });
        }
        self.cancel(timer);
        let Some(c) = self.callers.get_mut(&call) else {
            return;
        };
        c.offered_to = None;
        if c.expired {
            self.remove_caller(call);
            self.actions.push_back(Action::MaxWait { call });
        } else {
            // The caller keeps its arrival slot: it is ahead of everyone who came later.
            self.ready.insert(c.slot, call);
        }
    }

    /// The caller `op` rings for is leaving: stop ringing, and the operator is Available
    /// again with its turn (idle-since) kept.
    fn release_to_available(&mut self, op: u32, call: u64, now: Instant) {
        let o = &mut self.operators[op as usize];
        if o.offer != Some(call) {
            return;
        }
        o.offer = None;
        let timer = o.timer.take();
        let operator = o.extension.clone();
        self.cancel(timer);
        self.actions
            .push_back(Action::CancelOffer { call, operator });
        self.set_state(op, OperatorState::Available, now);
    }

    /// The end of a call's wrap-up (or of the call, without wrap-up).
    fn finish_work(&mut self, op: u32, now: Instant) {
        let o = &mut self.operators[op as usize];
        let after = std::mem::replace(&mut o.after, After::Available);
        let state = match after {
            After::Available if o.registered => {
                o.idle_since = now;
                OperatorState::Available
            }
            After::Paused(reason) => {
                o.pause_reason = Some(reason);
                OperatorState::Paused
            }
            _ => OperatorState::Offline,
        };
        self.set_state(op, state, now);
    }

    fn remove_caller(&mut self, call: u64) -> Option<Caller> {
        let c = self.callers.remove(&call)?;
        self.ready.remove(&c.slot);
        self.ranks.remove(c.slot);
        self.cancel(c.max_wait);
        self.cancel(c.position);
        Some(c)
    }

    fn schedule(&mut self, at: Instant, timer: Timer) -> TimerKey {
        let key = (at, self.next_timer);
        self.next_timer += 1;
        self.timers.insert(key, timer);
        key
    }

    fn cancel(&mut self, key: Option<TimerKey>) {
        if let Some(key) = key {
            self.timers.remove(&key);
        }
    }

    /// Renumbers the callers' arrival slots densely, in the same order, when the slots run
    /// out: O(n log n), and the next one comes at least n arrivals later.
    fn compact(&mut self) {
        let mut live: Vec<(usize, u64)> = self
            .callers
            .iter()
            .map(|(&call, c)| (c.slot, call))
            .collect();
        live.sort_unstable();
        let capacity = (2 * live.len() + 1).next_power_of_two().max(MIN_SLOTS);
        self.ready.clear();
        for (slot, &(_, call)) in live.iter().enumerate() {
            let c = self.callers.get_mut(&call).expect("live caller");
            c.slot = slot;
            if c.offered_to.is_none() {
                self.ready.insert(slot, call);
            }
        }
        self.ranks = Ranks::with_first(capacity, live.len());
        self.next_slot = live.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OperatorState::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// An [`Acd`] on a fake clock: `at(s)` is `s` seconds after the start.
    struct Q {
        acd: Acd,
        t0: Instant,
    }

    impl Q {
        fn new(config: QueueConfig, ops: &[&str]) -> Q {
            let t0 = Instant::now();
            let acd = Acd::new(config, ops.iter().map(|s| s.to_string()).collect(), t0);
            Q { acd, t0 }
        }

        fn with_defaults(ops: &[&str]) -> Q {
            Q::new(QueueConfig::default(), ops)
        }

        fn at(&self, s: u64) -> Instant {
            self.t0 + secs(s)
        }

        fn drain(&mut self) -> Vec<Action> {
            std::iter::from_fn(|| self.acd.poll_action()).collect()
        }

        /// Registers and signs `ext` in at `s`, discarding the actions.
        fn ready(&mut self, ext: &str, s: u64) {
            let now = self.at(s);
            self.acd.set_registered(ext, true, now);
            self.acd.sign_in(ext, now).unwrap();
        }

        fn enqueue(&mut self, call: u64, s: u64) -> Vec<Action> {
            let now = self.at(s);
            self.acd.enqueue(call, now);
            self.drain()
        }

        fn tick(&mut self, s: u64) -> Vec<Action> {
            let now = self.at(s);
            self.acd.handle_timeout(now);
            self.drain()
        }

        fn state(&self, ext: &str) -> OperatorState {
            self.acd.operator_state(ext).unwrap()
        }
    }

    fn offer(call: u64, op: &str) -> Action {
        Action::Offer {
            call,
            operator: op.into(),
        }
    }

    fn cancel(call: u64, op: &str) -> Action {
        Action::CancelOffer {
            call,
            operator: op.into(),
        }
    }

    fn changed(op: &str, state: OperatorState) -> Action {
        Action::OperatorChanged {
            operator: op.into(),
            state,
        }
    }

    fn position(call: u64, position: usize) -> Action {
        Action::Position { call, position }
    }

    fn offers(actions: &[Action]) -> Vec<(u64, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Offer { call, operator } => Some((*call, operator.clone())),
                _ => None,
            })
            .collect()
    }

    /// Answers `call` on `op` and ends the call at once (zero wrap-up assumed by callers).
    fn serve(q: &mut Q, call: u64, op: &str, s: u64) -> Vec<Action> {
        let now = q.at(s);
        q.acd.answered(call, op, now);
        q.acd.call_ended(op, now);
        q.drain()
    }

    /// A queue saved and restored before every input (as a cluster keeps it in the database)
    /// decides exactly as one kept in memory: the same actions, step by step, and the same
    /// final state, over a long pseudo-random day of calls, answers, refusals, pauses and
    /// registrations (times in irregular milliseconds, so no two timers tie).
    #[test]
    fn a_queue_restored_before_every_input_decides_as_one_kept_in_memory() {
        let ops = ["1001", "1002", "1003", "1004"];
        let config = QueueConfig {
            ring_timeout: secs(15),
            wrap_up: secs(7),
            max_wait: secs(120),
            position_every: secs(30),
        };
        let names: Vec<String> = ops.iter().map(|s| s.to_string()).collect();
        let t0 = Instant::now();
        let mut kept = Acd::new(config.clone(), names.clone(), t0);
        let mut saved = Acd::new(config.clone(), names.clone(), t0).export();
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut now = t0;
        let mut next_call = 1u64;
        let mut offers = 0;
        for step in 0..4000 {
            now += Duration::from_millis(200 + rand(2300));
            let mut restored = Acd::restore(config.clone(), names.clone(), saved, now);
            let op = ops[rand(ops.len() as u64) as usize];
            let queued: Vec<u64> = kept.export().callers.iter().map(|c| c.call).collect();
            let some_call =
                (!queued.is_empty()).then(|| queued[rand(queued.len() as u64) as usize]);
            let ringing = kept
                .export()
                .operators
                .into_iter()
                .find(|o| o.offer.is_some());
            for acd in [&mut kept, &mut restored] {
                acd.handle_timeout(now);
                match (rand_pick(step), some_call, &ringing) {
                    (0..=2, _, _) => acd.enqueue(next_call, now),
                    (3, Some(call), _) => acd.leave(call, now),
                    (4..=5, _, Some(o)) => acd.answered(o.offer.unwrap(), &o.extension, now),
                    (6, _, Some(o)) => acd.offer_failed(o.offer.unwrap(), &o.extension, now),
                    (7, _, _) => acd.call_ended(op, now),
                    (8, _, _) => acd.set_registered(op, true, now),
                    (9, _, _) => {
                        let _ = acd.sign_in(op, now);
                    }
                    (10, _, _) => {
                        let _ = acd.pause(op, PauseReason::Break, now);
                    }
                    (11, _, _) => {
                        let _ = acd.sign_out(op, now);
                    }
                    (12, _, _) => acd.set_registered(op, false, now),
                    _ => {}
                }
            }
            if rand_pick(step) <= 2 {
                next_call += 1;
            }
            let a: Vec<Action> = std::iter::from_fn(|| kept.poll_action()).collect();
            let b: Vec<Action> = std::iter::from_fn(|| restored.poll_action()).collect();
            assert_eq!(a, b, "step {step}");
            offers += offers_in(&a);
            assert_eq!(kept.snapshot(now), restored.snapshot(now), "step {step}");
            saved = restored.export();
        }
        assert!(offers > 200, "the day offered calls: {offers}");

        fn rand_pick(step: u64) -> u64 {
            // Answers and call ends more often than sign-outs: a working queue.
            const PLAN: [u64; 20] = [
                0, 4, 7, 9, 1, 5, 8, 7, 2, 4, 6, 9, 0, 5, 7, 3, 10, 9, 11, 12,
            ];
            PLAN[(step * 7 % 20) as usize]
        }
        fn offers_in(actions: &[Action]) -> usize {
            actions
                .iter()
                .filter(|a| matches!(a, Action::Offer { .. }))
                .count()
        }
    }

    #[test]
    fn the_operator_idle_longest_gets_the_call() {
        let mut q = Q::with_defaults(&["1001", "1002", "1003"]);
        q.ready("1001", 10);
        q.ready("1002", 2);
        q.ready("1003", 5);
        q.drain();
        assert_eq!(
            q.enqueue(1, 20),
            vec![offer(1, "1002"), changed("1002", Ringing)]
        );
        assert_eq!(offers(&q.enqueue(2, 21)), vec![(2, "1003".into())]);
        assert_eq!(offers(&q.enqueue(3, 22)), vec![(3, "1001".into())]);
        assert!(offers(&q.enqueue(4, 23)).is_empty(), "nobody is free");
    }

    #[test]
    fn equally_idle_operators_go_in_configuration_order() {
        let mut q = Q::with_defaults(&["1003", "1001", "1002"]);
        for ext in ["1001", "1002", "1003"] {
            q.ready(ext, 0);
        }
        q.drain();
        let got: Vec<_> = (1..=3).flat_map(|c| offers(&q.enqueue(c, 1))).collect();
        assert_eq!(
            got,
            vec![(1, "1003".into()), (2, "1001".into()), (3, "1002".into())]
        );
    }

    #[test]
    fn callers_are_served_first_come_first_served() {
        let mut q = Q::new(
            QueueConfig {
                wrap_up: Duration::ZERO,
                ..QueueConfig::default()
            },
            &["1001"],
        );
        for (call, s) in [(30, 1), (10, 2), (20, 3)] {
            assert!(q.enqueue(call, s).is_empty());
        }
        q.ready("1001", 4);
        assert_eq!(offers(&q.drain()), vec![(30, "1001".into())]);
        assert_eq!(
            q.acd.snapshot(q.at(4)).waiting[0].offered_to,
            Some("1001".into())
        );
        assert_eq!(q.acd.snapshot(q.at(4)).waiting[0].call, 30);
        assert_eq!(
            serve(&mut q, 30, "1001", 5),
            vec![
                changed("1001", Busy),
                changed("1001", Available),
                offer(10, "1001"),
                changed("1001", Ringing),
            ]
        );
        assert_eq!(
            offers(&serve(&mut q, 10, "1001", 6)),
            vec![(20, "1001".into())]
        );
        assert_eq!(offers(&serve(&mut q, 20, "1001", 7)), vec![]);
        assert_eq!(q.state("1001"), Available);
        assert_eq!(q.acd.waiting(), 0);
    }

    #[test]
    fn ring_timeout_cancels_pauses_and_offers_the_next_operator() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        q.ready("1001", 0);
        q.ready("1002", 1);
        q.drain();
        assert_eq!(offers(&q.enqueue(7, 10)), vec![(7, "1001".into())]);
        assert_eq!(q.acd.poll_timeout(), Some(q.at(25)), "ring timeout first");
        assert!(q.tick(24).is_empty());
        assert_eq!(
            q.tick(25),
            vec![
                cancel(7, "1001"),
                changed("1001", Paused),
                offer(7, "1002"),
                changed("1002", Ringing),
            ]
        );
        // 1002 misses it too: nobody is left, the caller waits at the head.
        assert_eq!(q.tick(40), vec![cancel(7, "1002"), changed("1002", Paused)]);
        assert!(q.acd.is_queued(7));
        // A paused operator gets no calls until signing in again.
        assert!(q.enqueue(8, 41).is_empty());
        q.acd.sign_in("1002", q.at(42)).unwrap();
        assert_eq!(
            q.drain(),
            vec![
                changed("1002", Available),
                offer(7, "1002"),
                changed("1002", Ringing),
            ]
        );
    }

    #[test]
    fn a_failed_offer_pauses_the_operator_and_offers_the_next_at_once() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        q.ready("1001", 0);
        q.ready("1002", 1);
        q.drain();
        q.enqueue(1, 5);
        q.enqueue(2, 6);
        q.acd.offer_failed(1, "1001", q.at(7));
        assert_eq!(
            q.drain(),
            vec![changed("1001", Paused)],
            "no CancelOffer: the call knows; the caller waits at the head while 1002 rings for 2"
        );
        assert_eq!(q.acd.snapshot(q.at(7)).waiting[0].call, 1);
        assert_eq!(q.acd.snapshot(q.at(7)).waiting[0].position, 1);
        // 1002 refuses 2: 1 is still at the head, and 2 goes back behind it.
        q.acd.offer_failed(2, "1002", q.at(8));
        assert_eq!(q.drain(), vec![changed("1002", Paused)]);
        q.acd.sign_in("1002", q.at(9)).unwrap();
        assert_eq!(offers(&q.drain()), vec![(1, "1002".into())]);
        // A stale report (wrong operator, wrong call) changes nothing.
        q.acd.offer_failed(2, "1002", q.at(10));
        q.acd.offer_failed(1, "1001", q.at(10));
        assert!(q.drain().is_empty());
        assert_eq!(q.state("1002"), Ringing);
    }

    #[test]
    fn the_next_free_operator_gets_a_refused_caller() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        q.ready("1001", 0);
        q.ready("1002", 1);
        q.drain();
        q.enqueue(1, 5);
        q.acd.offer_failed(1, "1001", q.at(6));
        assert_eq!(
            q.drain(),
            vec![
                changed("1001", Paused),
                offer(1, "1002"),
                changed("1002", Ringing),
            ]
        );
    }

    #[test]
    fn leaving_while_ringing_cancels_and_the_operator_keeps_its_turn() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        q.ready("1001", 0);
        q.ready("1002", 5);
        q.drain();
        q.enqueue(1, 6);
        q.acd.leave(1, q.at(8));
        assert_eq!(
            q.drain(),
            vec![cancel(1, "1001"), changed("1001", Available)]
        );
        assert!(!q.acd.is_queued(1));
        assert_eq!(
            q.acd.poll_timeout(),
            None,
            "no ring, max-wait or position timers left"
        );
        // 1001 has been idle since 0, longer than 1002 (5): it gets the next caller.
        assert_eq!(offers(&q.enqueue(2, 9)), vec![(2, "1001".into())]);
        // Leaving twice is harmless.
        q.enqueue(3, 10);
        q.acd.leave(3, q.at(11));
        q.acd.leave(3, q.at(12));
        let _ = q.drain();
        assert_eq!(q.acd.waiting(), 1);
    }

    #[test]
    fn max_wait_sends_a_waiting_caller_to_voicemail() {
        let mut q = Q::new(
            QueueConfig {
                position_every: Duration::ZERO,
                ..QueueConfig::default()
            },
            &["1001"],
        );
        q.enqueue(1, 0);
        q.enqueue(2, 30);
        assert_eq!(q.acd.poll_timeout(), Some(q.at(120)));
        assert!(q.tick(119).is_empty());
        assert_eq!(q.tick(120), vec![Action::MaxWait { call: 1 }]);
        assert!(!q.acd.is_queued(1));
        assert_eq!(q.tick(200), vec![Action::MaxWait { call: 2 }]);
        assert_eq!(q.acd.poll_timeout(), None);
    }

    #[test]
    fn max_wait_during_a_ring_lets_the_ring_finish() {
        let mut q = Q::new(
            QueueConfig {
                max_wait: secs(20),
                position_every: Duration::ZERO,
                ..QueueConfig::default()
            },
            &["1001", "1002"],
        );
        q.enqueue(1, 0);
        q.ready("1002", 1);
        q.ready("1001", 10);
        assert_eq!(offers(&q.drain()), vec![(1, "1002".into())], "offered at 1");
        q.acd.offer_failed(1, "1002", q.at(10));
        assert_eq!(
            offers(&q.drain()),
            vec![(1, "1001".into())],
            "re-offered at 10, rings until 25"
        );
        assert!(q.tick(20).is_empty(), "max wait passes during the ring");
        assert!(q.acd.is_queued(1));
        assert_eq!(
            q.tick(25),
            vec![
                cancel(1, "1001"),
                Action::MaxWait { call: 1 },
                changed("1001", Paused),
            ],
            "not offered again: the wait is over"
        );
        assert!(!q.acd.is_queued(1));

        // Answered after max_wait, during the ring: an ordinary answer.
        assert!(q.enqueue(2, 31).is_empty(), "both operators are paused");
        q.acd.sign_in("1001", q.at(40)).unwrap();
        assert_eq!(offers(&q.drain()), vec![(2, "1001".into())]);
        assert!(q.tick(51).is_empty(), "max wait passes during the ring");
        q.acd.answered(2, "1001", q.at(52));
        assert_eq!(q.drain(), vec![changed("1001", Busy)]);
        assert!(!q.acd.is_queued(2));
    }

    #[test]
    fn zero_max_wait_without_a_free_operator_is_voicemail_at_once() {
        let mut q = Q::new(
            QueueConfig {
                max_wait: Duration::ZERO,
                ..QueueConfig::default()
            },
            &["1001"],
        );
        assert_eq!(q.enqueue(1, 0), vec![Action::MaxWait { call: 1 }]);
        assert!(!q.acd.is_queued(1));
        assert_eq!(q.acd.poll_timeout(), None);
        q.acd.set_registered("1001", true, q.at(1));
        q.acd.sign_in("1001", q.at(1)).unwrap();
        q.acd.pause("1001", PauseReason::Break, q.at(2)).unwrap();
        q.drain();
        assert_eq!(q.enqueue(2, 3), vec![Action::MaxWait { call: 2 }]);
    }

    #[test]
    fn zero_max_wait_with_a_free_operator_rings_it_once() {
        let mut q = Q::new(
            QueueConfig {
                max_wait: Duration::ZERO,
                ..QueueConfig::default()
            },
            &["1001", "1002", "1003"],
        );
        for ext in ["1001", "1002", "1003"] {
            q.ready(ext, 0);
        }
        q.drain();
        assert_eq!(
            q.enqueue(1, 1),
            vec![offer(1, "1001"), changed("1001", Ringing)]
        );
        q.acd.answered(1, "1001", q.at(2));
        assert_eq!(q.drain(), vec![changed("1001", Busy)]);

        assert_eq!(offers(&q.enqueue(2, 3)), vec![(2, "1002".into())]);
        q.acd.offer_failed(2, "1002", q.at(4));
        assert_eq!(
            q.drain(),
            vec![Action::MaxWait { call: 2 }, changed("1002", Paused)],
            "1003 is free but the caller does not wait for another ring"
        );
        assert_eq!(offers(&q.enqueue(3, 5)), vec![(3, "1003".into())]);
        assert_eq!(
            q.tick(20),
            vec![
                cancel(3, "1003"),
                Action::MaxWait { call: 3 },
                changed("1003", Paused),
            ]
        );
    }

    #[test]
    fn positions_are_announced_and_move_up_when_someone_leaves() {
        let mut q = Q::with_defaults(&["1001"]);
        q.enqueue(1, 0);
        q.enqueue(2, 1);
        q.enqueue(3, 2);
        assert_eq!(q.tick(29), vec![]);
        assert_eq!(q.tick(30), vec![position(1, 1)]);
        assert_eq!(q.tick(32), vec![position(2, 2), position(3, 3)]);
        q.acd.leave(1, q.at(40));
        assert_eq!(q.tick(60), vec![]);
        assert_eq!(q.tick(62), vec![position(2, 1), position(3, 2)]);
        q.enqueue(4, 70);
        assert_eq!(
            q.tick(100),
            vec![position(2, 1), position(3, 2), position(4, 3)]
        );
    }

    #[test]
    fn no_position_while_being_offered() {
        let mut q = Q::new(
            QueueConfig {
                ring_timeout: secs(20),
                ..QueueConfig::default()
            },
            &["1001"],
        );
        q.enqueue(1, 0);
        q.enqueue(2, 0);
        q.ready("1001", 25);
        q.drain();
        // 1 rings from 25 to 45: at 30 only 2 hears its place (second: 1 is still ahead).
        assert_eq!(q.tick(30), vec![position(2, 2)]);
        assert_eq!(q.tick(45), vec![cancel(1, "1001"), changed("1001", Paused)]);
        assert_eq!(q.tick(60), vec![position(1, 1), position(2, 2)]);
    }

    #[test]
    fn wrap_up_then_available_idle_since_the_end_of_wrap_up() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        q.ready("1001", 0);
        q.drain();
        q.enqueue(1, 1);
        q.acd.answered(1, "1001", q.at(2));
        q.acd.call_ended("1001", q.at(50));
        assert_eq!(
            q.drain(),
            vec![changed("1001", Busy), changed("1001", WrapUp)]
        );
        q.ready("1002", 55);
        q.drain();
        assert_eq!(q.acd.poll_timeout(), Some(q.at(60)));
        assert_eq!(q.tick(60), vec![changed("1001", Available)]);
        // 1002 has been idle since 55, 1001 only since 60.
        assert_eq!(offers(&q.enqueue(2, 61)), vec![(2, "1002".into())]);
        assert_eq!(offers(&q.enqueue(3, 62)), vec![(3, "1001".into())]);
        let s = q.acd.snapshot(q.at(62));
        assert_eq!(s.operators[0].calls_answered, 1);
    }

    #[test]
    fn a_waiting_caller_is_offered_when_wrap_up_ends() {
        let mut q = Q::with_defaults(&["1001"]);
        q.ready("1001", 0);
        q.enqueue(1, 1);
        q.enqueue(2, 1);
        q.acd.answered(1, "1001", q.at(2));
        q.acd.call_ended("1001", q.at(5));
        q.drain();
        assert_eq!(
            q.tick(15),
            vec![
                changed("1001", Available),
                offer(2, "1001"),
                changed("1001", Ringing),
            ]
        );
    }

    #[test]
    fn zero_wrap_up_is_available_at_once() {
        let mut q = Q::new(
            QueueConfig {
                wrap_up: Duration::ZERO,
                ..QueueConfig::default()
            },
            &["1001"],
        );
        q.ready("1001", 0);
        q.enqueue(1, 1);
        q.enqueue(2, 2);
        q.acd.answered(1, "1001", q.at(3));
        q.drain();
        q.acd.call_ended("1001", q.at(4));
        assert_eq!(
            q.drain(),
            vec![
                changed("1001", Available),
                offer(2, "1001"),
                changed("1001", Ringing),
            ]
        );
    }

    #[test]
    fn signing_in_needs_a_registered_phone() {
        let mut q = Q::with_defaults(&["1001"]);
        assert_eq!(
            q.acd.sign_in("1001", q.at(0)),
            Err(QueueError::NotRegistered("1001".into()))
        );
        assert!(q.drain().is_empty());
        q.acd.set_registered("1001", true, q.at(1));
        assert!(q.drain().is_empty(), "registering alone does not sign in");
        assert_eq!(q.state("1001"), Offline);
        q.acd.sign_in("1001", q.at(2)).unwrap();
        assert_eq!(q.drain(), vec![changed("1001", Available)]);
        q.acd.sign_in("1001", q.at(3)).unwrap();
        assert!(q.drain().is_empty(), "signing in twice is harmless");
    }

    #[test]
    fn unknown_extensions_are_errors_or_ignored() {
        let mut q = Q::with_defaults(&["1001"]);
        let unknown = Err(QueueError::UnknownOperator("9999".into()));
        assert_eq!(q.acd.sign_in("9999", q.at(0)), unknown);
        assert_eq!(q.acd.sign_out("9999", q.at(0)), unknown);
        assert_eq!(q.acd.pause("9999", PauseReason::Break, q.at(0)), unknown);
        let e = q.acd.sign_in("9999", q.at(0)).unwrap_err();
        assert_eq!(e.to_string(), "no operator 9999");
        q.enqueue(1, 0);
        q.acd.set_registered("9999", true, q.at(1));
        q.acd.answered(1, "9999", q.at(1));
        q.acd.offer_failed(1, "9999", q.at(1));
        q.acd.call_ended("9999", q.at(1));
        assert!(q.drain().is_empty());
        assert!(q.acd.is_queued(1));
        assert_eq!(q.acd.operator_state("9999"), None);
    }

    #[test]
    fn losing_the_registration_takes_the_operator_offline() {
        let mut q = Q::with_defaults(&["1001", "1002", "1003"]);
        for (ext, s) in [("1001", 0), ("1002", 1), ("1003", 2)] {
            q.ready(ext, s);
        }
        q.drain();
        // Available → Offline at once.
        q.acd.set_registered("1003", false, q.at(3));
        assert_eq!(q.drain(), vec![changed("1003", Offline)]);
        assert_eq!(
            q.acd.sign_in("1003", q.at(4)),
            Err(QueueError::NotRegistered("1003".into()))
        );
        // Ringing → the offer is withdrawn and goes to the next free operator.
        q.enqueue(1, 5);
        q.acd.set_registered("1001", false, q.at(6));
        assert_eq!(
            q.drain(),
            vec![
                cancel(1, "1001"),
                changed("1001", Offline),
                offer(1, "1002"),
                changed("1002", Ringing),
            ]
        );
        // Busy → still Busy; Offline when the call ends, without wrap-up.
        q.acd.answered(1, "1002", q.at(7));
        q.acd.set_registered("1002", false, q.at(8));
        assert_eq!(q.drain(), vec![changed("1002", Busy)]);
        q.acd.call_ended("1002", q.at(9));
        assert_eq!(q.drain(), vec![changed("1002", Offline)]);
        // WrapUp → Offline when the wrap-up ends.
        q.ready("1001", 10);
        q.drain();
        assert_eq!(offers(&q.enqueue(2, 11)), vec![(2, "1001".into())]);
        q.acd.answered(2, "1001", q.at(12));
        q.acd.call_ended("1001", q.at(13));
        q.acd.set_registered("1001", false, q.at(14));
        assert_eq!(
            q.drain(),
            vec![changed("1001", Busy), changed("1001", WrapUp)]
        );
        assert_eq!(q.tick(23), vec![changed("1001", Offline)]);
        let s = q.acd.snapshot(q.at(23));
        assert!(s
            .operators
            .iter()
            .all(|o| !o.registered && o.state == Offline));
    }

    #[test]
    fn signing_out_while_ringing_puts_the_caller_back_at_the_head() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        q.ready("1001", 0);
        q.drain();
        q.enqueue(1, 1);
        q.enqueue(2, 2);
        q.acd.sign_out("1001", q.at(3)).unwrap();
        assert_eq!(q.drain(), vec![cancel(1, "1001"), changed("1001", Offline)]);
        q.ready("1002", 4);
        assert_eq!(offers(&q.drain()), vec![(1, "1002".into())]);
        let s = q.acd.snapshot(q.at(4));
        assert_eq!(s.waiting[0].call, 1);
        assert_eq!(s.waiting[0].offered_to, Some("1002".into()));
        assert_eq!(s.waiting[1].call, 2);
        assert_eq!(s.waiting[1].offered_to, None);
    }

    #[test]
    fn signing_out_during_a_call_takes_effect_when_it_ends() {
        let mut q = Q::with_defaults(&["1001"]);
        q.ready("1001", 0);
        q.enqueue(1, 1);
        q.acd.answered(1, "1001", q.at(2));
        q.drain();
        q.acd.sign_out("1001", q.at(3)).unwrap();
        assert!(q.drain().is_empty());
        assert_eq!(q.state("1001"), Busy);
        q.acd.call_ended("1001", q.at(4));
        assert_eq!(q.drain(), vec![changed("1001", Offline)]);
        // Signing out during wrap-up cuts it short.
        q.ready("1001", 5);
        q.enqueue(2, 6);
        q.acd.answered(2, "1001", q.at(6));
        q.acd.call_ended("1001", q.at(7));
        q.drain();
        q.acd.sign_out("1001", q.at(8)).unwrap();
        assert_eq!(q.drain(), vec![changed("1001", Offline)]);
        assert_eq!(q.acd.poll_timeout(), None, "the wrap-up timer is gone");
    }

    #[test]
    fn pause_and_come_back() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        assert_eq!(
            q.acd.pause("1001", PauseReason::Break, q.at(0)),
            Err(QueueError::NotSignedIn("1001".into()))
        );
        q.ready("1001", 0);
        q.ready("1002", 1);
        q.drain();
        q.acd.pause("1001", PauseReason::Break, q.at(2)).unwrap();
        assert_eq!(q.drain(), vec![changed("1001", Paused)]);
        assert_eq!(offers(&q.enqueue(1, 3)), vec![(1, "1002".into())]);
        // Pausing while ringing withdraws the offer; nobody else is free.
        q.acd.pause("1002", PauseReason::Break, q.at(4)).unwrap();
        assert_eq!(q.drain(), vec![cancel(1, "1002"), changed("1002", Paused)]);
        // Unpausing is signing in: idle since then.
        q.acd.sign_in("1001", q.at(5)).unwrap();
        assert_eq!(
            q.drain(),
            vec![
                changed("1001", Available),
                offer(1, "1001"),
                changed("1001", Ringing),
            ]
        );
        // Pausing during a call: after the wrap-up.
        q.acd.answered(1, "1001", q.at(6));
        q.acd.pause("1001", PauseReason::Break, q.at(7)).unwrap();
        q.acd.call_ended("1001", q.at(8));
        assert_eq!(
            q.drain(),
            vec![changed("1001", Busy), changed("1001", WrapUp)]
        );
        assert_eq!(q.tick(18), vec![changed("1001", Paused)]);
    }

    #[test]
    fn a_pause_keeps_its_reason_until_the_operator_is_back() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        let reason = |q: &Q, ext: &str| {
            let s = q.acd.snapshot(q.at(0));
            s.operators
                .into_iter()
                .find(|o| o.extension == ext)
                .and_then(|o| o.pause_reason)
        };
        q.ready("1001", 0);
        q.ready("1002", 1);
        q.drain();
        q.acd.pause("1001", PauseReason::Lunch, q.at(2)).unwrap();
        assert_eq!(reason(&q, "1001"), Some(PauseReason::Lunch));
        q.drain();
        // A new reason while paused is news for the wallboard; the same one is not.
        q.acd.pause("1001", PauseReason::Training, q.at(3)).unwrap();
        assert_eq!(q.drain(), vec![changed("1001", Paused)]);
        q.acd.pause("1001", PauseReason::Training, q.at(3)).unwrap();
        assert!(q.drain().is_empty());
        assert_eq!(reason(&q, "1001"), Some(PauseReason::Training));
        q.acd.sign_in("1001", q.at(4)).unwrap();
        assert_eq!(reason(&q, "1001"), None);
        // Asked during a call, the reason waits for the wrap-up's end.
        q.acd.sign_out("1002", q.at(4)).unwrap();
        q.enqueue(1, 5);
        q.acd.answered(1, "1001", q.at(5));
        q.acd
            .pause("1001", PauseReason::BackOffice, q.at(6))
            .unwrap();
        assert_eq!(reason(&q, "1001"), None, "busy, not paused yet");
        q.acd.call_ended("1001", q.at(7));
        q.tick(17);
        assert_eq!(q.state("1001"), Paused);
        assert_eq!(reason(&q, "1001"), Some(PauseReason::BackOffice));
        // A refused offer pauses with the queue's own reason.
        q.acd.sign_in("1002", q.at(19)).unwrap();
        q.enqueue(2, 20);
        q.acd.offer_failed(2, "1002", q.at(21));
        assert_eq!(reason(&q, "1002"), Some(PauseReason::NoAnswer));
        assert_eq!(
            PauseReason::parse("no_answer"),
            None,
            "not a reason to pick"
        );
        assert_eq!(PauseReason::parse("lunch"), Some(PauseReason::Lunch));
    }

    #[test]
    fn an_answer_crossing_the_ring_timeout_is_honoured() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        q.ready("1001", 0);
        q.ready("1002", 1);
        q.drain();
        q.enqueue(1, 2);
        // 1001's ring times out and 1002 is offered; then 1001's 200 OK arrives.
        assert_eq!(offers(&q.tick(17)), vec![(1, "1002".into())]);
        q.acd.answered(1, "1001", q.at(17));
        assert_eq!(
            q.drain(),
            vec![
                cancel(1, "1002"),
                changed("1002", Available),
                changed("1001", Busy),
            ]
        );
        assert!(!q.acd.is_queued(1));
        // A second answer for the same call is stale.
        q.acd.answered(1, "1002", q.at(18));
        assert!(q.drain().is_empty());
        assert_eq!(q.state("1002"), Available);
    }

    #[test]
    fn stale_reports_change_nothing() {
        let mut q = Q::with_defaults(&["1001"]);
        q.ready("1001", 0);
        q.drain();
        q.acd.call_ended("1001", q.at(1));
        q.acd.answered(42, "1001", q.at(1));
        q.acd.offer_failed(42, "1001", q.at(1));
        assert!(q.drain().is_empty());
        assert_eq!(q.state("1001"), Available);
        // Enqueueing a call twice keeps one place.
        q.acd.pause("1001", PauseReason::Break, q.at(2)).unwrap();
        q.enqueue(5, 3);
        q.enqueue(5, 4);
        assert_eq!(q.acd.waiting(), 1);
    }

    #[test]
    fn the_snapshot_shows_the_line_and_the_operators() {
        let mut q = Q::with_defaults(&["1001", "1002"]);
        q.ready("1001", 0);
        q.acd.set_registered("1002", true, q.at(0));
        q.enqueue(11, 10);
        q.enqueue(12, 20);
        q.enqueue(13, 25);
        q.acd.leave(12, q.at(26));
        let s = q.acd.snapshot(q.at(30));
        assert_eq!(
            s.waiting,
            vec![
                WaitingCaller {
                    call: 11,
                    waited: secs(20),
                    position: 1,
                    offered_to: Some("1001".into()),
                },
                WaitingCaller {
                    call: 13,
                    waited: secs(5),
                    position: 2,
                    offered_to: None,
                },
            ]
        );
        assert_eq!(
            s.operators,
            vec![
                OperatorView {
                    extension: "1001".into(),
                    state: Ringing,
                    since: secs(20),
                    calls_answered: 0,
                    pause_reason: None,
                    registered: true,
                },
                OperatorView {
                    extension: "1002".into(),
                    state: Offline,
                    since: secs(30),
                    calls_answered: 0,
                    pause_reason: None,
                    registered: true,
                },
            ]
        );
    }

    #[test]
    fn positions_stay_right_through_slot_compaction() {
        // Many more arrivals than slots, with callers leaving out of order: positions must
        // match a plain count.
        let mut q = Q::new(
            QueueConfig {
                max_wait: secs(100_000),
                position_every: secs(1_000_000),
                ..QueueConfig::default()
            },
            &[],
        );
        let mut line: Vec<u64> = Vec::new();
        let mut next = 0u64;
        let mut rng = 12345u64;
        for step in 0..30_000u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if line.len() < 1500 || rng >> 62 != 0 {
                q.acd.enqueue(next, q.at(step / 100));
                line.push(next);
                next += 1;
            }
            if line.len() > 1000 {
                let i = (rng >> 33) as usize % line.len();
                let call = line.remove(i);
                q.acd.leave(call, q.at(step / 100));
            }
        }
        let s = q.acd.snapshot(q.at(400));
        let got: Vec<u64> = s.waiting.iter().map(|w| w.call).collect();
        assert_eq!(got, line);
        for (i, &call) in line.iter().enumerate().step_by(97) {
            let slot = q.acd.callers[&call].slot;
            assert_eq!(q.acd.ranks.before(slot) + 1, i + 1);
        }
        assert!(q.acd.ranks.capacity() <= 8192);
    }

    #[test]
    fn ranks_count_the_slots_before() {
        let mut r = Ranks::with_first(16, 5);
        assert_eq!(r.before(0), 0);
        assert_eq!(r.before(5), 5);
        assert_eq!(r.before(16), 5);
        r.remove(2);
        r.remove(2);
        r.insert(9);
        assert_eq!(r.before(3), 2);
        assert_eq!(r.before(9), 4);
        assert_eq!(r.before(10), 5);
    }

    #[test]
    fn errors_read_well() {
        assert_eq!(
            QueueError::NotRegistered("1001".into()).to_string(),
            "the phone of operator 1001 is not registered"
        );
        let e: Box<dyn std::error::Error> = Box::new(QueueError::NotSignedIn("1002".into()));
        assert_eq!(e.to_string(), "operator 1002 is not signed in");
    }
}
