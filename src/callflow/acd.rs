//! The operator queue's actor: one tokio task owns the hotline's one [`Acd`], fed by an
//! unbounded channel and sleeping until the queue's next timer.
//!
//! Callers, the registrar's bindings and the operator console reach it through a cloneable
//! [`AcdHandle`]; nothing else holds queue state, so there is no lock for calls to fight
//! over and every decision is taken in one place, in order (ARCHITECTURE: one owner per
//! piece of state). Fire-and-forget inputs (`enqueue`, `answered`, …) never wait; requests
//! with an answer (`sign_in`, `snapshot`, …) get it through a oneshot.
//!
//! Each queued call hands over its own [`QueueNotice`] sender with `enqueue`; the actor
//! routes that call's offers, withdrawals, positions and max-wait to it, and drops the
//! sender when the call leaves the queue (hung up or left for voicemail, answered, max
//! wait). A call whose receiver is gone is taken out of the queue as if it had left, so a
//! task that died can never keep an operator's phone ringing. Operator states and callers
//! joining and leaving are broadcast as [`QueueChange`]s for the live feed and the metrics.
//!
//! Time is `tokio::time`'s, so tests run on a paused clock.

use super::queue::{
    Acd, Action, OperatorState, PauseReason, QueueConfig, QueueError, QueueNotice, QueueSnapshot,
};
use crate::sip::registrar::Binding;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Changes buffered for a slow subscriber before it starts missing them.
const CHANGES_CAPACITY: usize = 1024;

/// What the queue reports to the live feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueChange {
    /// An operator is now in `state`.
    Operator {
        extension: String,
        state: OperatorState,
    },
    /// A caller joined the end of the line.
    CallerJoined { call: u64 },
    /// A caller is no longer in the queue.
    CallerLeft { call: u64, why: Departure },
}

/// Why a caller left the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// Hung up, or pressed the voicemail key.
    Left,
    /// An operator answered.
    Answered,
    /// Waited `max_wait`: on to voicemail.
    MaxWait,
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Presence {
    SignIn,
    SignOut,
    Pause(PauseReason),
}

pub(super) enum Request {
    Enqueue {
        call: u64,
        notices: mpsc::UnboundedSender<QueueNotice>,
    },
    Leave {
        call: u64,
    },
    Answered {
        call: u64,
        extension: String,
    },
    OfferFailed {
        call: u64,
        extension: String,
    },
    CallEnded {
        extension: String,
    },
    SetRegistered {
        extension: String,
        registered: bool,
        /// The binding just added, when a phone registered (a cluster shares it).
        binding: Option<Box<Binding>>,
    },
    Presence {
        extension: String,
        what: Presence,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
    Snapshot {
        reply: oneshot::Sender<QueueSnapshot>,
    },
}

/// The way to the queue. Cheap to clone; the actor stops when shutdown is signalled or the
/// last handle is dropped.
#[derive(Clone, Debug)]
pub struct AcdHandle {
    requests: mpsc::UnboundedSender<Request>,
    changes: broadcast::Sender<QueueChange>,
    /// In a cluster: the operators' bindings on the other nodes ([`super::shared_acd`]).
    elsewhere: Option<Elsewhere>,
}

/// Operators' SIP bindings on the other nodes of a cluster, by extension: what a node rings
/// when the operator's phone registered elsewhere. Kept by the shared queue's actor.
pub type Elsewhere = std::sync::Arc<std::sync::RwLock<HashMap<String, Binding>>>;

impl AcdHandle {
    /// Starts the actor for these operators (the configured extensions, in configuration
    /// order). It stops when `shutdown` becomes `true` (or its sender is dropped).
    pub fn spawn(
        config: QueueConfig,
        operators: Vec<String>,
        shutdown: watch::Receiver<bool>,
    ) -> (AcdHandle, JoinHandle<()>) {
        let (requests, rx) = mpsc::unbounded_channel();
        let (changes, _) = broadcast::channel(CHANGES_CAPACITY);
        let actor = Actor {
            acd: Acd::new(config, operators, now()),
            notices: HashMap::new(),
            changes: changes.clone(),
        };
        let task = tokio::spawn(actor.run(rx, shutdown));
        let handle = AcdHandle {
            requests,
            changes,
            elsewhere: None,
        };
        (handle, task)
    }

    /// A handle whose requests go to `requests` (the cluster's shared queue actor).
    pub(super) fn with_channels(
        requests: mpsc::UnboundedSender<Request>,
        changes: broadcast::Sender<QueueChange>,
        elsewhere: Elsewhere,
    ) -> AcdHandle {
        AcdHandle {
            requests,
            changes,
            elsewhere: Some(elsewhere),
        }
    }

    /// The operator's binding on another node of the cluster, if this node has none.
    pub fn shared_binding(&self, extension: &str) -> Option<Box<Binding>> {
        let map = self.elsewhere.as_ref()?.read().ok()?;
        map.get(extension).cloned().map(Box::new)
    }

    /// `call` joins the end of the line; what the queue has to tell it comes on `notices`.
    /// A call already queued is ignored.
    pub fn enqueue(&self, call: u64, notices: mpsc::UnboundedSender<QueueNotice>) {
        self.send(Request::Enqueue { call, notices });
    }

    /// `call` leaves the line (hung up, or the voicemail key).
    pub fn leave(&self, call: u64) {
        self.send(Request::Leave { call });
    }

    /// The operator's phone answered `call`.
    pub fn answered(&self, call: u64, extension: &str) {
        self.send(Request::Answered {
            call,
            extension: extension.to_string(),
        });
    }

    /// The operator's phone refused the offer of `call` or could not be reached.
    pub fn offer_failed(&self, call: u64, extension: &str) {
        self.send(Request::OfferFailed {
            call,
            extension: extension.to_string(),
        });
    }

    /// The operator's call has ended.
    pub fn call_ended(&self, extension: &str) {
        self.send(Request::CallEnded {
            extension: extension.to_string(),
        });
    }

    /// The operator's phone has at least one SIP binding (`true`), or none any more.
    pub fn set_registered(&self, extension: &str, registered: bool) {
        self.send(Request::SetRegistered {
            extension: extension.to_string(),
            registered,
            binding: None,
        });
    }

    /// The operator's phone registered this binding (a cluster shares it with the other
    /// nodes); reachable as [`AcdHandle::set_registered`].
    pub fn registered_at(&self, extension: &str, reachable: bool, binding: Binding) {
        self.send(Request::SetRegistered {
            extension: extension.to_string(),
            registered: reachable,
            binding: Some(Box::new(binding)),
        });
    }

    /// Signs the operator in (or back from a pause); their phone must be registered.
    pub async fn sign_in(&self, extension: &str) -> Result<(), QueueError> {
        self.presence(extension, Presence::SignIn).await
    }

    pub async fn sign_out(&self, extension: &str) -> Result<(), QueueError> {
        self.presence(extension, Presence::SignOut).await
    }

    pub async fn pause(&self, extension: &str, reason: PauseReason) -> Result<(), QueueError> {
        self.presence(extension, Presence::Pause(reason)).await
    }

    /// The queue now; empty when the actor has stopped.
    pub async fn snapshot(&self) -> QueueSnapshot {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Snapshot { reply });
        rx.await.unwrap_or_default()
    }

    /// Operator state changes and callers joining and leaving, from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<QueueChange> {
        self.changes.subscribe()
    }

    async fn presence(&self, extension: &str, what: Presence) -> Result<(), QueueError> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Presence {
            extension: extension.to_string(),
            what,
            reply,
        });
        rx.await.unwrap_or(Err(QueueError::Stopped))
    }

    fn send(&self, request: Request) {
        // After shutdown there is no queue to tell; callers go on without one.
        let _ = self.requests.send(request);
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

struct Actor {
    acd: Acd,
    notices: HashMap<u64, mpsc::UnboundedSender<QueueNotice>>,
    changes: broadcast::Sender<QueueChange>,
}

impl Actor {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        while !*shutdown.borrow_and_update() {
            // A deadline is always given to `sleep_until`; without a timer the branch is off.
            let deadline = self.acd.poll_timeout();
            let sleep = deadline
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                request = requests.recv() => match request {
                    Some(request) => self.handle(request),
                    None => break,
                },
                () = tokio::time::sleep_until(sleep), if deadline.is_some() => {
                    let now = now();
                    self.acd.handle_timeout(now);
                    self.flush(now);
                }
            }
        }
        tracing::debug!(waiting = self.acd.waiting(), "operator queue stopped");
    }

    fn handle(&mut self, request: Request) {
        let now = now();
        match request {
            Request::Enqueue { call, notices } => {
                if self.acd.is_queued(call) || self.notices.contains_key(&call) {
                    return;
                }
                self.notices.insert(call, notices);
                let _ = self.changes.send(QueueChange::CallerJoined { call });
                self.acd.enqueue(call, now);
            }
            Request::Leave { call } => {
                self.acd.leave(call, now);
                self.flush(now);
                self.departed(call, Departure::Left);
            }
            Request::Answered { call, extension } => {
                self.acd.answered(call, &extension, now);
                self.flush(now);
                self.departed(call, Departure::Answered);
            }
            Request::OfferFailed { call, extension } => {
                self.acd.offer_failed(call, &extension, now)
            }
            Request::CallEnded { extension } => self.acd.call_ended(&extension, now),
            Request::SetRegistered {
                extension,
                registered,
                ..
            } => self.acd.set_registered(&extension, registered, now),
            Request::Presence {
                extension,
                what,
                reply,
            } => {
                let result = match what {
                    Presence::SignIn => self.acd.sign_in(&extension, now),
                    Presence::SignOut => self.acd.sign_out(&extension, now),
                    Presence::Pause(reason) => self.acd.pause(&extension, reason, now),
                };
                let _ = reply.send(result);
            }
            Request::Snapshot { reply } => {
                let _ = reply.send(self.acd.snapshot(now));
            }
        }
        self.flush(now);
    }

    /// Routes the queue's actions: a call's to its channel, operator changes to the
    /// subscribers. A call that can no longer hear is taken out of the queue.
    fn flush(&mut self, now: std::time::Instant) {
        loop {
            let mut deaf: Vec<u64> = Vec::new();
            while let Some(action) = self.acd.poll_action() {
                if let Action::OperatorChanged { operator, state } = &action {
                    let _ = self.changes.send(QueueChange::Operator {
                        extension: operator.clone(),
                        state: *state,
                    });
                }
                let Some((call, notice)) = action.notice() else {
                    continue;
                };
                let max_wait = notice == QueueNotice::MaxWait;
                if let Some(tx) = self.notices.get(&call) {
                    if tx.send(notice).is_err() && !max_wait {
                        deaf.push(call);
                    }
                }
                if max_wait {
                    self.departed(call, Departure::MaxWait);
                }
            }
            if deaf.is_empty() {
                return;
            }
            // After the actions already queued have gone out; leaving may free operators
            // and produce more, hence the loop.
            for call in deaf {
                if self.notices.remove(&call).is_none() {
                    continue;
                }
                tracing::warn!(
                    call,
                    "queued call stopped listening; taking it out of the queue"
                );
                self.acd.leave(call, now);
                let _ = self.changes.send(QueueChange::CallerLeft {
                    call,
                    why: Departure::Left,
                });
            }
        }
    }

    /// Forgets `call`'s channel once the queue no longer has it.
    fn departed(&mut self, call: u64, why: Departure) {
        if self.acd.is_queued(call) {
            return;
        }
        if self.notices.remove(&call).is_some() {
            let _ = self.changes.send(QueueChange::CallerLeft { call, why });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QueueConfig {
        QueueConfig {
            wrap_up: Duration::ZERO,
            ..QueueConfig::default()
        }
    }

    fn start(
        config: QueueConfig,
        ops: &[&str],
    ) -> (AcdHandle, JoinHandle<()>, watch::Sender<bool>) {
        let (stop, shutdown) = watch::channel(false);
        let (acd, task) = AcdHandle::spawn(
            config,
            ops.iter().map(|s| s.to_string()).collect(),
            shutdown,
        );
        (acd, task, stop)
    }

    fn offer(op: &str) -> Option<QueueNotice> {
        Some(QueueNotice::Offer {
            operator: op.into(),
        })
    }

    async fn ready(acd: &AcdHandle, ext: &str) {
        acd.set_registered(ext, true);
        acd.sign_in(ext).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_is_offered_answered_and_forgotten() {
        let (acd, _task, _stop) = start(config(), &["1001"]);
        ready(&acd, "1001").await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        acd.enqueue(1, tx);
        assert_eq!(rx.recv().await, offer("1001"));
        acd.answered(1, "1001");
        assert_eq!(
            rx.recv().await,
            None,
            "the queue dropped the caller's channel"
        );
        let s = acd.snapshot().await;
        assert!(s.waiting.is_empty());
        assert_eq!(s.operators[0].state, OperatorState::Busy);
        assert_eq!(s.operators[0].calls_answered, 1);
        acd.call_ended("1001");
        let s = acd.snapshot().await;
        assert_eq!(s.operators[0].state, OperatorState::Available);
    }

    #[tokio::test(start_paused = true)]
    async fn ring_timeout_withdraws_the_offer_and_rings_the_next_operator() {
        let (acd, _task, _stop) = start(config(), &["1001", "1002"]);
        ready(&acd, "1001").await;
        ready(&acd, "1002").await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        acd.enqueue(1, tx);
        assert_eq!(rx.recv().await, offer("1001"));
        let t = Instant::now();
        assert_eq!(
            rx.recv().await,
            Some(QueueNotice::CancelOffer {
                operator: "1001".into()
            })
        );
        let rang = t.elapsed();
        assert!(
            rang >= Duration::from_secs(15) && rang < Duration::from_millis(15_010),
            "{rang:?}"
        );
        assert_eq!(rx.recv().await, offer("1002"));
        let s = acd.snapshot().await;
        assert_eq!(s.operators[0].state, OperatorState::Paused);
        assert_eq!(s.waiting[0].offered_to.as_deref(), Some("1002"));
        // The refusal path: the next operator is paused too, the caller waits at the head.
        acd.offer_failed(1, "1002");
        let s = acd.snapshot().await;
        assert_eq!(s.operators[1].state, OperatorState::Paused);
        assert_eq!(s.waiting[0].offered_to, None);
    }

    #[tokio::test(start_paused = true)]
    async fn positions_then_max_wait_on_the_callers_channel() {
        let (acd, _task, _stop) = start(QueueConfig::default(), &["1001"]);
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let t = Instant::now();
        acd.enqueue(1, tx1);
        acd.enqueue(2, tx2);
        assert_eq!(rx2.recv().await, Some(QueueNotice::Position(2)));
        assert!(t.elapsed() >= Duration::from_secs(30));
        assert_eq!(rx1.try_recv(), Ok(QueueNotice::Position(1)));
        acd.leave(1);
        assert_eq!(rx1.recv().await, None, "left: its channel is dropped");
        assert_eq!(rx2.recv().await, Some(QueueNotice::Position(1)));
        assert_eq!(rx2.recv().await, Some(QueueNotice::Position(1)));
        assert_eq!(rx2.recv().await, Some(QueueNotice::MaxWait));
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_secs(120) && waited < Duration::from_millis(120_010),
            "{waited:?}"
        );
        assert_eq!(rx2.recv().await, None);
        assert!(acd.snapshot().await.waiting.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn presence_errors_come_back() {
        let (acd, _task, _stop) = start(config(), &["1001"]);
        assert_eq!(
            acd.sign_in("9999").await,
            Err(QueueError::UnknownOperator("9999".into()))
        );
        assert_eq!(
            acd.sign_in("1001").await,
            Err(QueueError::NotRegistered("1001".into()))
        );
        assert_eq!(
            acd.pause("1001", PauseReason::Break).await,
            Err(QueueError::NotSignedIn("1001".into()))
        );
        ready(&acd, "1001").await;
        acd.pause("1001", PauseReason::Break).await.unwrap();
        acd.sign_out("1001").await.unwrap();
        assert_eq!(
            acd.snapshot().await.operators[0].state,
            OperatorState::Offline
        );
    }

    #[tokio::test(start_paused = true)]
    async fn subscribers_see_operators_and_callers_come_and_go() {
        let (acd, _task, _stop) = start(config(), &["1001"]);
        let mut changes = acd.subscribe();
        ready(&acd, "1001").await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        acd.enqueue(1, tx);
        assert_eq!(rx.recv().await, offer("1001"));
        acd.leave(1);
        assert_eq!(
            rx.recv().await,
            Some(QueueNotice::CancelOffer {
                operator: "1001".into()
            })
        );
        assert_eq!(rx.recv().await, None);
        let (tx, _rx) = mpsc::unbounded_channel();
        acd.enqueue(2, tx);
        acd.answered(2, "1001");
        acd.call_ended("1001");
        acd.snapshot().await;
        let op = |state| QueueChange::Operator {
            extension: "1001".into(),
            state,
        };
        let mut got = Vec::new();
        while let Ok(c) = changes.try_recv() {
            got.push(c);
        }
        assert_eq!(
            got,
            vec![
                op(OperatorState::Available),
                QueueChange::CallerJoined { call: 1 },
                op(OperatorState::Ringing),
                op(OperatorState::Available),
                QueueChange::CallerLeft {
                    call: 1,
                    why: Departure::Left
                },
                QueueChange::CallerJoined { call: 2 },
                op(OperatorState::Ringing),
                op(OperatorState::Busy),
                QueueChange::CallerLeft {
                    call: 2,
                    why: Departure::Answered
                },
                op(OperatorState::Available),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_stopped_listening_leaves_the_queue() {
        let (acd, _task, _stop) = start(config(), &["1001"]);
        acd.set_registered("1001", true);
        let (tx, rx) = mpsc::unbounded_channel();
        acd.enqueue(1, tx);
        drop(rx);
        let (tx, mut rx2) = mpsc::unbounded_channel();
        acd.enqueue(2, tx);
        acd.sign_in("1001").await.unwrap();
        // The offer to 1 could not be delivered: 1 is gone and 2 gets the operator.
        assert_eq!(rx2.recv().await, offer("1001"));
        let s = acd.snapshot().await;
        assert_eq!(s.waiting.len(), 1);
        assert_eq!(s.waiting[0].call, 2);
        assert_eq!(s.operators[0].state, OperatorState::Ringing);
    }

    #[tokio::test(start_paused = true)]
    async fn registration_loss_withdraws_a_ringing_offer() {
        let (acd, _task, _stop) = start(config(), &["1001"]);
        ready(&acd, "1001").await;
        let (tx, mut rx) = mpsc::unbounded_channel();
        acd.enqueue(1, tx);
        assert_eq!(rx.recv().await, offer("1001"));
        acd.set_registered("1001", false);
        assert_eq!(
            rx.recv().await,
            Some(QueueNotice::CancelOffer {
                operator: "1001".into()
            })
        );
        let s = acd.snapshot().await;
        assert!(!s.operators[0].registered);
        assert_eq!(s.operators[0].state, OperatorState::Offline);
        assert_eq!(s.waiting[0].call, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_actor() {
        let (acd, task, stop) = start(config(), &["1001"]);
        stop.send(true).unwrap();
        task.await.unwrap();
        assert_eq!(acd.sign_in("1001").await, Err(QueueError::Stopped));
        assert_eq!(acd.snapshot().await, QueueSnapshot::default());
        // Fire-and-forget inputs after shutdown are dropped quietly.
        let (tx, mut rx) = mpsc::unbounded_channel();
        acd.enqueue(1, tx);
        assert_eq!(rx.recv().await, None);
    }
}
