//! The cluster's one operator queue: every node's callers in one line, every operator
//! offered one call at a time, whichever node the call and the operator's phone are on.
//!
//! There is no queue process to fail over. The queue lives in the shared database
//! ([`crate::store::queue`]) and each node takes turns on it: a turn locks it, restores
//! the [`Acd`] from its rows, applies one input (a caller joining, an answer, a sign-in, the
//! timers that are due) and writes back what changed. The rules are the single hotline's
//! own, unchanged (`queue.rs`; its test restores the queue before every input and gets the
//! same decisions). So the lock is the atomic claim: an offer is decided, and the operator
//! marked ringing, in one serialised transaction.
//!
//! What a turn decides for a call on another node goes to that node as a notice row; each
//! node watches the queue's version (every [`LOOK_EVERY`]) and takes its notices. Each node
//! also takes a turn every [`HOUSEKEEPING_EVERY`], and at the queue's next timer, so that
//! timers fire and a lost node's callers and operators are released even when nothing else
//! happens:
//! - callers on a node that is lost or stopped leave the queue (their calls went with it);
//! - an operator on a call of such a node ends the call;
//! - an operator is registered while any live node can ring them, or while the binding a
//!   lost node had, with the edge's Path, has not expired (any node rings through the Path).

use super::acd::{AcdHandle, Departure, Elsewhere, Presence, QueueChange, Request};
use super::queue::{
    Acd, After, CallerRecord, OperatorRecord, OperatorState, PauseReason, QueueConfig, QueueError,
    QueueNotice, QueueSnapshot, QueueState,
};
use crate::sip::registrar::Binding;
use crate::sip::Transport;
use crate::store::queue::{self as sql, CallerRow, NoticeRow, OperatorRow, QueueRows, ReachRow};
use crate::store::{Store, StoreError};
use chrono::Utc;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How often a node looks whether the queue changed (its notices, operators' states).
pub const LOOK_EVERY: Duration = Duration::from_millis(100);
/// How often a node takes a turn with no input (timers, lost nodes, expired bindings).
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);
/// A turn the database refused is tried again this many times.
const TURN_TRIES: u32 = 3;

/// Starts `node`'s actor on the cluster's queue in `store`, for these operators (the same
/// configuration on every node).
pub fn spawn(
    config: QueueConfig,
    operators: Vec<String>,
    store: Store,
    node: String,
    shutdown: watch::Receiver<bool>,
) -> (AcdHandle, JoinHandle<()>) {
    let (requests, rx) = mpsc::unbounded_channel();
    let (changes, _) = broadcast::channel(1024);
    let elsewhere: Elsewhere = Arc::new(RwLock::new(HashMap::new()));
    let actor = Shared {
        config,
        operators,
        store,
        node,
        clock: Clock::now(),
        started: Utc::now().timestamp_millis(),
        notices: HashMap::new(),
        changes: changes.clone(),
        elsewhere: elsewhere.clone(),
        seen: HashMap::new(),
        next_timer: None,
        version: -1,
        pending: Vec::new(),
        pending_departed: Vec::new(),
    };
    let task = tokio::spawn(actor.run(rx, shutdown));
    (AcdHandle::with_channels(requests, changes, elsewhere), task)
}

/// Wall-clock milliseconds (the database's time) against this process's `Instant`s (the
/// queue's). Nodes agree on the wall clock (NTP), not on instants.
#[derive(Clone, Copy)]
struct Clock {
    wall0: i64,
    inst0: Instant,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            wall0: Utc::now().timestamp_millis(),
            inst0: Instant::now(),
        }
    }

    fn instant(&self, ms: i64) -> Instant {
        let d = ms - self.wall0;
        if d >= 0 {
            self.inst0 + Duration::from_millis(d as u64)
        } else {
            self.inst0
                .checked_sub(Duration::from_millis(d.unsigned_abs()))
                .unwrap_or(self.inst0)
        }
    }

    fn ms(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.inst0) {
            Some(d) => self.wall0 + d.as_millis() as i64,
            None => self.wall0 - self.inst0.duration_since(at).as_millis() as i64,
        }
    }
}

/// Wakes the actor at each notification of a changed queue; connects again after a loss.
async fn listen(store: Store, woken: mpsc::Sender<()>) {
    loop {
        match sql::listen(&store).await {
            Ok(mut listener) => loop {
                match listener.recv().await {
                    Ok(_) => {
                        // A wake-up already pending covers this one too.
                        let _ = woken.try_send(());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the queue's listener lost its connection");
                        break;
                    }
                }
            },
            Err(e) => tracing::warn!(error = %e, "cannot listen for the queue's changes"),
        }
        if woken.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One input of a turn.
enum Input {
    Nothing,
    Enqueue(u64),
    Leave(u64),
    Answered(u64, String),
    OfferFailed(u64, String),
    CallEnded(String),
    Presence(String, Presence),
}

struct Shared {
    config: QueueConfig,
    operators: Vec<String>,
    store: Store,
    node: String,
    clock: Clock,
    /// When this run began: a call of this node older than that was the previous run's.
    started: i64,
    /// This node's queued calls, by their id on this node.
    notices: HashMap<u64, mpsc::UnboundedSender<QueueNotice>>,
    changes: broadcast::Sender<QueueChange>,
    elsewhere: Elsewhere,
    /// Operators' states as last reported to this node's subscribers.
    seen: HashMap<String, OperatorState>,
    next_timer: Option<Instant>,
    version: i64,
    /// Facts (answers, hang-ups…) of turns that failed, for the next turn.
    pending: Vec<Input>,
    /// Callers those facts let go, forgotten once a turn has taken them.
    pending_departed: Vec<(u64, Departure)>,
}

/// Requests that go in one turn, and what to do after it.
#[derive(Default)]
struct Batch {
    inputs: Vec<Input>,
    /// Callers joining in this turn.
    enqueued: Vec<u64>,
    /// Presence requests: the index of their input, and where the answer goes.
    replies: Vec<(usize, oneshot::Sender<Result<(), QueueError>>)>,
    departed: Vec<(u64, Departure)>,
}

/// Most requests taken into one turn.
const BATCH: usize = 256;

/// What a turn decided.
struct Decided {
    /// For this node's calls, by local id.
    local: Vec<(u64, QueueNotice)>,
    /// Each input's refusal, in order.
    refused: Vec<Option<QueueError>>,
    rows: QueueRows,
    next_timer: Option<Instant>,
}

impl Shared {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut look = tokio::time::interval(LOOK_EVERY);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_EVERY);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Woken by the other nodes' turns (PostgreSQL's NOTIFY); the looks are the net
        // under it, for a listener that lost its connection.
        let (woken_tx, mut woken) = mpsc::channel::<()>(1);
        let listener = (self.store.backend() == crate::store::Backend::Postgres)
            .then(|| tokio::spawn(listen(self.store.clone(), woken_tx)));
        // What this node's previous run left (its notices, where it could ring operators,
        // its callers: this run's call ids start again at 1) goes before the first call.
        if let Err(e) = self.forget_previous_run().await {
            tracing::error!(error = %e, "cannot clear this node's previous run from the queue");
        }
        while !*shutdown.borrow_and_update() {
            let timer = self.next_timer;
            let sleep = timer.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                biased;
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(sleep)), if timer.is_some() => {
                    self.next_timer = None;
                    self.turn_now(Input::Nothing).await;
                }
                _ = housekeeping.tick() => self.turn_now(Input::Nothing).await,
                Some(()) = woken.recv() => self.look().await,
                _ = look.tick() => self.look().await,
                request = requests.recv() => match request {
                    Some(first) => {
                        let mut batch = vec![first];
                        while batch.len() < BATCH {
                            match requests.try_recv() {
                                Ok(more) => batch.push(more),
                                Err(_) => break,
                            }
                        }
                        self.handle(batch).await
                    }
                    None => break,
                },
            }
        }
        if let Some(l) = listener {
            l.abort();
        }
        tracing::debug!(
            waiting = self.notices.len(),
            "shared operator queue stopped"
        );
    }

    /// Handles requests that came together in as few turns as their order allows: one
    /// turn for all of them, but for a snapshot, which sees the turns before it.
    async fn handle(&mut self, batch: Vec<Request>) {
        let mut turn = Batch::default();
        for request in batch {
            match request {
                Request::Enqueue { call, notices } => {
                    if self.notices.contains_key(&call) {
                        continue;
                    }
                    self.notices.insert(call, notices);
                    let _ = self.changes.send(QueueChange::CallerJoined { call });
                    turn.enqueued.push(call);
                    turn.inputs.push(Input::Enqueue(call));
                }
                Request::Leave { call } => {
                    turn.inputs.push(Input::Leave(call));
                    turn.departed.push((call, Departure::Left));
                }
                Request::Answered { call, extension } => {
                    turn.inputs.push(Input::Answered(call, extension));
                    turn.departed.push((call, Departure::Answered));
                }
                Request::OfferFailed { call, extension } => {
                    turn.inputs.push(Input::OfferFailed(call, extension))
                }
                Request::CallEnded { extension } => turn.inputs.push(Input::CallEnded(extension)),
                Request::SetRegistered {
                    extension,
                    registered,
                    binding,
                } => {
                    if let Err(e) = self
                        .reachable(&extension, registered, binding.as_deref())
                        .await
                    {
                        tracing::error!(extension, error = %e, "cannot share the operator's binding");
                    }
                    turn.inputs.push(Input::Nothing);
                }
                Request::Presence {
                    extension,
                    what,
                    reply,
                } => {
                    turn.replies.push((turn.inputs.len(), reply));
                    turn.inputs.push(Input::Presence(extension, what));
                }
                Request::Snapshot { reply } => {
                    self.run_batch(std::mem::take(&mut turn)).await;
                    self.snapshot(reply).await;
                }
            }
        }
        self.run_batch(turn).await;
    }

    /// One turn for a batch's inputs, then what follows them: the presence requests'
    /// answers, and the callers who left forgotten. A batch the database refused sends its
    /// new callers to voicemail (no queue to wait in) rather than waiting for nobody.
    async fn run_batch(&mut self, batch: Batch) {
        if batch.inputs.is_empty() {
            return;
        }
        match self.turn(batch.inputs, batch.departed).await {
            Ok(refusals) => {
                for (i, reply) in batch.replies {
                    let result = match refusals.get(i).cloned().flatten() {
                        Some(refused) => Err(refused),
                        None => Ok(()),
                    };
                    let _ = reply.send(result);
                }
            }
            Err(_) => {
                for (_, reply) in batch.replies {
                    let _ = reply.send(Err(QueueError::Stopped));
                }
                let lost = batch
                    .enqueued
                    .iter()
                    .map(|&call| (call, QueueNotice::MaxWait))
                    .collect();
                self.deliver(lost).await;
                // Answers, hang-ups and refusals are facts: `turn` kept them for the next
                // turn (at the latest the next housekeeping), and the callers they concern
                // stay this node's until then.
            }
        }
    }

    /// A turn whose refusal nobody waits for.
    async fn turn_now(&mut self, input: Input) {
        let _ = self.turn(vec![input], Vec::new()).await;
    }

    /// Takes a turn (tried again when the database refuses it), forgets the callers that
    /// left by it (`departed`) and delivers what it decided for this node's calls; returns
    /// each input's refusal. A call that stopped listening leaves in a turn of its own.
    async fn turn(
        &mut self,
        inputs: Vec<Input>,
        departed: Vec<(u64, Departure)>,
    ) -> Result<Vec<Option<QueueError>>, StoreError> {
        // Facts a failed turn left come first, in their order.
        let carried = self.pending.len();
        let inputs: Vec<Input> = std::mem::take(&mut self.pending)
            .into_iter()
            .chain(inputs)
            .collect();
        let mut last = None;
        for attempt in 0..TURN_TRIES {
            let this = inputs.iter().map(Input::replay).collect();
            match self.try_turn(this).await {
                Ok(decided) => {
                    self.next_timer = decided.next_timer;
                    self.report(&decided.rows);
                    // Forgotten before any delivery: a turn a deaf call starts must not
                    // take a caller just answered for one that lost its place.
                    for (call, why) in std::mem::take(&mut self.pending_departed) {
                        self.departed(call, why);
                    }
                    for (call, why) in departed {
                        self.departed(call, why);
                    }
                    self.deliver(decided.local).await;
                    return Ok(decided.refused.into_iter().skip(carried).collect());
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "a turn on the shared queue failed");
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                }
            }
        }
        let e = last.expect("at least one attempt");
        tracing::error!(error = %e, "the shared queue is out of reach");
        self.pending
            .extend(inputs.into_iter().filter(Input::is_fact));
        self.pending_departed.extend(departed);
        Err(e)
    }

    async fn try_turn(&mut self, inputs: Vec<Input>) -> Result<Decided, StoreError> {
        // Anchored again each turn: a step of the wall clock (NTP) moves the timers with it.
        self.clock = Clock::now();
        let mut tx = sql::lock(&self.store).await?;
        let before = sql::load(&mut tx).await?;
        let reach = sql::reachable(&mut tx).await?;
        let gone: HashSet<String> = sql::gone_nodes(&mut tx).await?.into_iter().collect();
        let wall = Utc::now().timestamp_millis();
        let now = self.clock.instant(wall);
        let mut owners: HashMap<u64, (String, i64)> = before
            .callers
            .iter()
            .map(|c| (c.call as u64, (c.node.clone(), c.local_call)))
            .collect();
        // This node's callers in the line: local id → key.
        let mut mine: HashMap<u64, u64> = before
            .callers
            .iter()
            .filter(|c| c.node == self.node)
            .map(|c| (c.local_call as u64, c.call as u64))
            .collect();
        let mut acd = self.restore(&before, now);

        // Housekeeping: what went with lost or stopped nodes, and this node's last run.
        // This node is never gone to itself: declared lost while alive (its heartbeat
        // stalled), it still holds its calls.
        let gone_elsewhere = |node: &str| node != self.node && gone.contains(node);
        for c in &before.callers {
            let stale = gone_elsewhere(&c.node)
                || (c.node == self.node && !self.notices.contains_key(&(c.local_call as u64)));
            if stale {
                acd.leave(c.call as u64, now);
            }
        }
        for o in &before.operators {
            let on_gone = o
                .call_node
                .as_ref()
                .is_some_and(|n| gone_elsewhere(n) || (*n == self.node && o.since < self.started));
            if o.state == OperatorState::Busy.as_str() && on_gone {
                acd.call_ended(&o.extension, now);
            }
        }
        for ext in &self.operators {
            let registered = reach.iter().any(|(r, node_gone)| {
                r.extension == *ext
                    && (!node_gone
                        || (r.path.is_some() && r.expires_at.is_some_and(|at| at > wall)))
            });
            if acd.operator_state(ext).is_some() {
                let was = before
                    .operators
                    .iter()
                    .find(|o| o.extension == *ext)
                    .is_some_and(|o| o.registered);
                if was != registered {
                    acd.set_registered(ext, registered, now);
                }
            }
        }
        // Keys of the callers joining now: after every key in the line.
        let mut next_key = before
            .callers
            .iter()
            .map(|c| c.call.max(0) as u64)
            .max()
            .unwrap_or(0)
            + 1;
        // Calls this node holds that the queue lost (a turn lost in a database crash) join
        // again, at the end of the line, rather than wait for an offer that cannot come.
        let joining: HashSet<u64> = inputs
            .iter()
            .filter_map(|i| match i {
                Input::Enqueue(c) => Some(*c),
                _ => None,
            })
            .collect();
        let held: HashSet<u64> = before
            .callers
            .iter()
            .filter(|c| c.node == self.node)
            .map(|c| c.local_call as u64)
            .collect();
        let mut lost: Vec<u64> = self
            .notices
            .keys()
            .filter(|c| !held.contains(c) && !joining.contains(c))
            .copied()
            .collect();
        lost.sort_unstable();
        for local in lost {
            tracing::warn!(
                call = local,
                "a queued call had lost its place; it joins again"
            );
            owners.insert(next_key, (self.node.clone(), local as i64));
            acd.enqueue(next_key, now);
            next_key += 1;
        }
        acd.handle_timeout(now);

        let mut refused = Vec::with_capacity(inputs.len());
        for input in inputs {
            let mut refusal = None;
            match input {
                Input::Nothing => {}
                Input::Enqueue(local) => {
                    if let std::collections::hash_map::Entry::Vacant(e) = mine.entry(local) {
                        let key = next_key;
                        next_key += 1;
                        owners.insert(key, (self.node.clone(), local as i64));
                        e.insert(key);
                        acd.enqueue(key, now);
                    }
                }
                Input::Leave(local) => {
                    if let Some(&key) = mine.get(&local) {
                        acd.leave(key, now);
                    }
                }
                Input::Answered(local, ext) => {
                    if let Some(&key) = mine.get(&local) {
                        acd.answered(key, &ext, now);
                    }
                }
                Input::OfferFailed(local, ext) => {
                    if let Some(&key) = mine.get(&local) {
                        acd.offer_failed(key, &ext, now);
                    }
                }
                Input::CallEnded(ext) => acd.call_ended(&ext, now),
                Input::Presence(ext, what) => {
                    let result = match what {
                        Presence::SignIn => acd.sign_in(&ext, now),
                        Presence::SignOut => acd.sign_out(&ext, now),
                        Presence::Pause(reason) => acd.pause(&ext, reason, now),
                    };
                    refusal = result.err();
                }
            }
            refused.push(refusal);
        }

        let mut local = Vec::new();
        let mut remote = Vec::new();
        while let Some(action) = acd.poll_action() {
            // Operators' changes are reported from the rows (`report`), on every node.
            let Some((call, notice)) = action.notice() else {
                continue;
            };
            let Some((node, local_call)) = owners.get(&call) else {
                continue;
            };
            if *node == self.node {
                local.push((*local_call as u64, notice));
            } else {
                remote.push(notice_row(node, *local_call, notice));
            }
        }
        let after = self.to_rows(&acd.export(), &before, &owners);
        let changed = sql::save(&mut tx, &before, &after).await?;
        sql::push_notices(&mut tx, &remote).await?;
        let version = match changed || !remote.is_empty() {
            true => Some(sql::bump(&mut tx).await?),
            false => None,
        };
        tx.commit().await?;
        // This node has seen its own change, unless another came between its last look
        // and this turn (then the next look takes that one's notices).
        if version == Some(self.version + 1) {
            self.version += 1;
        }
        self.share_bindings(&reach, wall);
        Ok(Decided {
            local,
            refused,
            rows: after,
            next_timer: acd.poll_timeout(),
        })
    }

    /// Clears what this node's previous run left in the shared queue: its notices and its
    /// reachability rows (its phones register again), then its callers leave in a turn.
    async fn forget_previous_run(&mut self) -> Result<(), StoreError> {
        let mut tx = sql::lock(&self.store).await?;
        sql::forget_node(&mut tx, &self.node).await?;
        tx.commit().await?;
        self.turn(Vec::new(), Vec::new()).await.map(|_| ())
    }

    /// Writes whether this node can ring `extension` (and the binding by which).
    async fn reachable(
        &self,
        extension: &str,
        reachable: bool,
        binding: Option<&Binding>,
    ) -> Result<(), StoreError> {
        let mut tx = sql::lock(&self.store).await?;
        let row = reachable.then(|| {
            let wall = Utc::now().timestamp_millis();
            ReachRow {
                extension: extension.to_string(),
                node: self.node.clone(),
                contact: binding.map(|b| b.contact.clone()),
                path: binding
                    .filter(|b| !b.path.is_empty())
                    .map(|b| b.path.join(",")),
                source: binding.map(|b| b.source.to_string()),
                transport: binding.map(|b| b.transport.as_str().to_string()),
                expires_at: binding.map(|b| {
                    wall + b
                        .expires_at
                        .saturating_duration_since(Instant::now())
                        .as_millis() as i64
                }),
            }
        });
        sql::set_reachable(&mut tx, extension, &self.node, row.as_ref()).await?;
        let _ = sql::bump(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Looks whether the queue changed since this node last looked: takes its notices,
    /// reports operators' new states, and learns the queue's next timer.
    async fn look(&mut self) {
        let version = match sql::version(&self.store).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the shared queue's version");
                return;
            }
        };
        if version == self.version {
            return;
        }
        match sql::take_notices(&self.store, &self.node).await {
            Ok(notices) => {
                // Seen only once its notices are taken: a failed take is tried again.
                self.version = version;
                let list = notices
                    .into_iter()
                    .filter_map(|n| Some((n.local_call as u64, notice_of(&n)?)))
                    .collect();
                self.deliver(list).await;
            }
            Err(e) => tracing::warn!(error = %e, "cannot take this node's queue notices"),
        }
        match sql::peek(&self.store).await {
            Ok(rows) => {
                self.report(&rows);
                let now = Instant::now();
                let acd = self.restore(&rows, now);
                self.next_timer = acd.poll_timeout();
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the shared queue"),
        }
    }

    /// Hands notices to this node's calls; those that stopped listening leave the queue.
    async fn deliver(&mut self, notices: Vec<(u64, QueueNotice)>) {
        let mut deaf = Vec::new();
        for (call, notice) in notices {
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
        for call in deaf {
            if self.notices.remove(&call).is_none() {
                continue;
            }
            tracing::warn!(
                call,
                "queued call stopped listening; taking it out of the queue"
            );
            let _ = self.changes.send(QueueChange::CallerLeft {
                call,
                why: Departure::Left,
            });
            Box::pin(self.turn_now(Input::Leave(call))).await;
        }
    }

    fn departed(&mut self, call: u64, why: Departure) {
        if self.notices.remove(&call).is_some() {
            let _ = self.changes.send(QueueChange::CallerLeft { call, why });
        }
    }

    /// Tells this node's subscribers (live feed, metrics) of operators whose state changed,
    /// on whatever node it changed.
    fn report(&mut self, rows: &QueueRows) {
        for o in &rows.operators {
            let Some(state) = state_of(&o.state) else {
                continue;
            };
            if self.seen.insert(o.extension.clone(), state) != Some(state) {
                let _ = self.changes.send(QueueChange::Operator {
                    extension: o.extension.clone(),
                    state,
                });
            }
        }
    }

    /// The bindings other nodes hold (and lost nodes held, with a Path), for ringing.
    fn share_bindings(&self, reach: &[(ReachRow, bool)], wall: i64) {
        let mut map = HashMap::new();
        for (r, gone) in reach {
            if r.node == self.node {
                continue;
            }
            let usable = !gone || (r.path.is_some() && r.expires_at.is_some_and(|at| at > wall));
            if let (true, Some(b)) = (usable, binding_of(r, wall)) {
                map.insert(r.extension.clone(), b);
            }
        }
        if let Ok(mut shared) = self.elsewhere.write() {
            *shared = map;
        }
    }

    /// The queue now as this node serves it: every operator, and this node's callers with
    /// their places in the cluster's one line.
    async fn snapshot(&self, reply: oneshot::Sender<QueueSnapshot>) {
        let rows = match sql::peek(&self.store).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the shared queue");
                let _ = reply.send(QueueSnapshot::default());
                return;
            }
        };
        let now = Instant::now();
        let acd = self.restore(&rows, now);
        let mut snapshot = acd.snapshot(now);
        let mine: HashMap<u64, u64> = rows
            .callers
            .iter()
            .filter(|c| c.node == self.node)
            .map(|c| (c.call as u64, c.local_call as u64))
            .collect();
        snapshot.waiting.retain_mut(|w| match mine.get(&w.call) {
            Some(&local) => {
                w.call = local;
                true
            }
            None => false,
        });
        let _ = reply.send(snapshot);
    }

    /// The queue the rows hold, with this node's configuration.
    fn restore(&self, rows: &QueueRows, now: Instant) -> Acd {
        Acd::restore(
            self.config.clone(),
            self.operators.clone(),
            self.to_state(rows),
            now,
        )
    }

    fn to_state(&self, rows: &QueueRows) -> QueueState {
        let at = |ms: i64| self.clock.instant(ms);
        QueueState {
            operators: rows
                .operators
                .iter()
                .filter_map(|o| {
                    Some(OperatorRecord {
                        extension: o.extension.clone(),
                        state: state_of(&o.state)?,
                        since: at(o.since),
                        idle_since: at(o.idle_since),
                        registered: o.registered,
                        after: after_of(&o.after_call),
                        offer: o.offer.map(|c| c as u64),
                        timer_at: o.timer_at.map(at),
                        calls_answered: o.calls_answered.max(0) as u64,
                        pause_reason: o.pause_reason.as_deref().and_then(reason_of),
                    })
                })
                .collect(),
            callers: rows
                .callers
                .iter()
                .map(|c| CallerRecord {
                    call: c.call as u64,
                    enqueued: at(c.enqueued),
                    offered_to: c.offered_to.clone(),
                    expired: c.expired,
                    max_wait_at: c.max_wait_at.map(at),
                    position_at: c.position_at.map(at),
                })
                .collect(),
        }
    }

    fn to_rows(
        &self,
        state: &QueueState,
        before: &QueueRows,
        owners: &HashMap<u64, (String, i64)>,
    ) -> QueueRows {
        let ms = |at: Instant| self.clock.ms(at);
        let operators = state
            .operators
            .iter()
            .map(|o| {
                let previous = before.operators.iter().find(|b| b.extension == o.extension);
                let call_node = match o.state {
                    OperatorState::Ringing => o
                        .offer
                        .and_then(|call| owners.get(&call))
                        .map(|(node, _)| node.clone()),
                    OperatorState::Busy | OperatorState::WrapUp => {
                        // The same call as before: same state since the same instant.
                        match previous
                            .filter(|p| p.state == o.state.as_str() && p.since == ms(o.since))
                        {
                            Some(p) => p.call_node.clone(),
                            // Answered here: the call is this node's.
                            None if o.state == OperatorState::Busy => Some(self.node.clone()),
                            None => previous.and_then(|p| p.call_node.clone()),
                        }
                    }
                    _ => None,
                };
                OperatorRow {
                    extension: o.extension.clone(),
                    state: o.state.as_str().to_string(),
                    since: ms(o.since),
                    idle_since: ms(o.idle_since),
                    registered: o.registered,
                    after_call: after_str(o.after),
                    offer: o.offer.map(|c| c as i64),
                    timer_at: o.timer_at.map(ms),
                    calls_answered: o.calls_answered as i64,
                    pause_reason: o.pause_reason.map(|r| r.as_str().to_string()),
                    call_node,
                }
            })
            .collect();
        let callers = state
            .callers
            .iter()
            .filter_map(|c| {
                let (node, local_call) = owners.get(&c.call)?;
                Some(CallerRow {
                    call: c.call as i64,
                    node: node.clone(),
                    local_call: *local_call,
                    enqueued: ms(c.enqueued),
                    offered_to: c.offered_to.clone(),
                    expired: c.expired,
                    max_wait_at: c.max_wait_at.map(ms),
                    position_at: c.position_at.map(ms),
                })
            })
            .collect();
        QueueRows { operators, callers }
    }
}

impl Input {
    /// What happened on a call or a phone, which the queue must learn even late: lost, an
    /// operator would stay busy or ringing for ever.
    fn is_fact(&self) -> bool {
        matches!(
            self,
            Input::Leave(_) | Input::Answered(..) | Input::OfferFailed(..) | Input::CallEnded(_)
        )
    }

    /// The same input, for a turn tried again.
    fn replay(&self) -> Input {
        match self {
            Input::Nothing => Input::Nothing,
            Input::Enqueue(c) => Input::Enqueue(*c),
            Input::Leave(c) => Input::Leave(*c),
            Input::Answered(c, e) => Input::Answered(*c, e.clone()),
            Input::OfferFailed(c, e) => Input::OfferFailed(*c, e.clone()),
            Input::CallEnded(e) => Input::CallEnded(e.clone()),
            Input::Presence(e, p) => Input::Presence(e.clone(), *p),
        }
    }
}

fn notice_row(node: &str, local_call: i64, notice: QueueNotice) -> NoticeRow {
    let (kind, operator, position) = match notice {
        QueueNotice::Offer { operator } => ("offer", Some(operator), None),
        QueueNotice::CancelOffer { operator } => ("cancel", Some(operator), None),
        QueueNotice::Position(p) => ("position", None, Some(p as i64)),
        QueueNotice::MaxWait => ("max_wait", None, None),
    };
    NoticeRow {
        node: node.to_string(),
        local_call,
        kind: kind.to_string(),
        operator,
        position,
    }
}

fn notice_of(n: &NoticeRow) -> Option<QueueNotice> {
    Some(match n.kind.as_str() {
        "offer" => QueueNotice::Offer {
            operator: n.operator.clone()?,
        },
        "cancel" => QueueNotice::CancelOffer {
            operator: n.operator.clone()?,
        },
        "position" => QueueNotice::Position(n.position? as usize),
        "max_wait" => QueueNotice::MaxWait,
        _ => return None,
    })
}

fn state_of(s: &str) -> Option<OperatorState> {
    use OperatorState::*;
    [Offline, Available, Ringing, Busy, WrapUp, Paused]
        .into_iter()
        .find(|st| st.as_str() == s)
}

fn reason_of(s: &str) -> Option<PauseReason> {
    PauseReason::parse(s).or((s == PauseReason::NoAnswer.as_str()).then_some(PauseReason::NoAnswer))
}

fn after_of(s: &str) -> After {
    match s.strip_prefix("paused:").and_then(reason_of) {
        Some(reason) => After::Paused(reason),
        None if s == "offline" => After::Offline,
        None => After::Available,
    }
}

fn after_str(a: After) -> String {
    match a {
        After::Available => "available".to_string(),
        After::Offline => "offline".to_string(),
        After::Paused(r) => format!("paused:{}", r.as_str()),
    }
}

/// A binding another node shared, in the form the SIP core rings.
fn binding_of(r: &ReachRow, wall: i64) -> Option<Binding> {
    let contact = r.contact.clone()?;
    let source = r.source.as_deref()?.parse().ok()?;
    let transport = match r.transport.as_deref() {
        Some("TCP") => Transport::Tcp,
        Some("TLS") => Transport::Tls,
        _ => Transport::Udp,
    };
    let now = Instant::now();
    let left = r.expires_at.map_or(0, |at| (at - wall).max(0) as u64);
    Some(Binding {
        contact,
        expires_at: now + Duration::from_millis(left),
        call_id: String::new(),
        cseq: 0,
        source,
        transport,
        updated_at: now,
        path: r
            .path
            .as_deref()
            .map(|p| p.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
    })
}
