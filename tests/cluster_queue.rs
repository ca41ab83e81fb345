//! The cluster's one operator queue (issue 22) on the machine's PostgreSQL: two nodes'
//! queue actors (`callflow::shared_acd`) on one fresh schema, driven as the call flow
//! drives them, without SIP (tests/cluster.rs rings real phones through Kamailio).
//!
//! - Concurrent claims from two nodes never ring an operator for two calls at once, and
//!   operators answer callers of both nodes.
//! - One line across the nodes: a caller who came a second earlier, on the other node, is
//!   offered first; the operator idle longest gets the call.
//! - A lost node's callers leave the line and its operators' calls end, so they take calls
//!   again.

mod support;

use hotline::callflow::acd::AcdHandle;
use hotline::callflow::queue::{OperatorState, QueueConfig, QueueNotice};
use hotline::callflow::shared_acd;
use hotline::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::{mpsc, watch};

struct Cluster {
    a: AcdHandle,
    b: AcdHandle,
    store: Store,
    _stop: watch::Sender<bool>,
    schema: Option<String>,
}

const OPS: [&str; 3] = ["1001", "1002", "1003"];

impl Cluster {
    async fn start(config: QueueConfig) -> Cluster {
        let (url, schema) = api::fresh_database(api::Db::Postgres).await;
        let store = Store::connect(&url.unwrap()).await.unwrap();
        store.migrate().await.unwrap();
        let (stop, shutdown) = watch::channel(false);
        let ops: Vec<String> = OPS.iter().map(|s| s.to_string()).collect();
        let spawn = |node: &str| {
            shared_acd::spawn(
                config.clone(),
                ops.clone(),
                store.clone(),
                node.to_string(),
                shutdown.clone(),
            )
            .0
        };
        let (a, b) = (spawn("node-a"), spawn("node-b"));
        Cluster {
            a,
            b,
            store,
            _stop: stop,
            schema,
        }
    }

    /// Registers `ext` on `on` and signs them in on the other node (the console of any
    /// node works).
    async fn ready(&self, ext: &str, on: &AcdHandle) {
        on.set_registered(ext, true);
        let other = if std::ptr::eq(on, &self.a) {
            &self.b
        } else {
            &self.a
        };
        for _ in 0..100 {
            if other.sign_in(ext).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{ext} cannot sign in");
    }

    async fn state(&self, ext: &str) -> OperatorState {
        let s = self.a.snapshot().await;
        s.operators
            .iter()
            .find(|o| o.extension == ext)
            .unwrap()
            .state
    }

    async fn stop(self) {
        if let Some(s) = &self.schema {
            api::drop_schema(s).await;
        }
    }
}

fn config() -> QueueConfig {
    QueueConfig {
        ring_timeout: Duration::from_secs(10),
        wrap_up: Duration::ZERO,
        max_wait: Duration::from_secs(120),
        position_every: Duration::ZERO,
    }
}

async fn next_offer(
    rx: &mut mpsc::UnboundedReceiver<QueueNotice>,
    wait: Duration,
) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(QueueNotice::Offer { operator })) => return Some(operator),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

/// One operator's offers and call ends as the callers saw them: (what, call, when).
type Log = Arc<Mutex<Vec<(String, &'static str, u64, Instant)>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_from_two_nodes_ring_an_operator_for_one_call_at_a_time() {
    let c = Cluster::start(config()).await;
    // 1001 registered on A, 1002 and 1003 on B.
    c.ready("1001", &c.a).await;
    c.ready("1002", &c.b).await;
    c.ready("1003", &c.b).await;

    // 24 callers on each node at once; each answers its offer after a moment, talks a
    // little and hangs up.
    let log: Log = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..48u64 {
        let (node, name) = if i % 2 == 0 {
            (c.a.clone(), "a")
        } else {
            (c.b.clone(), "b")
        };
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let call = 1000 + i;
            node.enqueue(call, tx);
            let op = next_offer(&mut rx, Duration::from_secs(60))
                .await
                .unwrap_or_else(|| panic!("call {i} on {name} was never offered"));
            log.lock()
                .unwrap()
                .push((op.clone(), "offer", i, Instant::now()));
            tokio::time::sleep(Duration::from_millis(5 + (i * 7) % 25)).await;
            node.answered(call, &op);
            tokio::time::sleep(Duration::from_millis(10 + (i * 13) % 40)).await;
            log.lock()
                .unwrap()
                .push((op.clone(), "end", i, Instant::now()));
            node.call_ended(&op);
            (name, op)
        }));
    }
    let mut served: HashMap<(&str, String), usize> = HashMap::new();
    for t in tasks {
        let (node, op) = tokio::time::timeout(Duration::from_secs(90), t)
            .await
            .expect("every caller is served")
            .unwrap();
        *served.entry((node, op)).or_default() += 1;
    }
    // No operator was offered a call before their previous call ended.
    let log = log.lock().unwrap().clone();
    for op in OPS {
        let mut mine: Vec<_> = log.iter().filter(|e| e.0 == op).collect();
        mine.sort_by_key(|e| e.3);
        let mut busy: Option<u64> = None;
        for (_, what, call, _) in &mine {
            match (*what, busy) {
                ("offer", None) => busy = Some(*call),
                ("end", Some(b)) if b == *call => busy = None,
                _ => panic!("{op} had two calls at once: {mine:?}"),
            }
        }
    }
    // Each node's callers were answered by operators registered on the other node.
    assert!(
        served.contains_key(&("a", "1002".into())) || served.contains_key(&("a", "1003".into())),
        "{served:?}"
    );
    assert!(served.contains_key(&("b", "1001".into())), "{served:?}");
    assert_eq!(served.values().sum::<usize>(), 48);
    // The last ends reach the queue (each through its own node) and everyone is free.
    for op in OPS {
        let mut state = c.state(op).await;
        for _ in 0..50 {
            if state == OperatorState::Available {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            state = c.state(op).await;
        }
        assert_eq!(state, OperatorState::Available, "{op}");
    }
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_across_nodes_first_come_first_served_and_longest_idle_first() {
    let c = Cluster::start(config()).await;
    c.a.set_registered("1001", true);
    c.b.set_registered("1002", true);
    // B's caller comes first, A's 1.2 s later; nobody is signed in yet.
    let (tx_b, mut rx_b) = mpsc::unbounded_channel();
    c.b.enqueue(1, tx_b);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (tx_a, mut rx_a) = mpsc::unbounded_channel();
    c.a.enqueue(1, tx_a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let waiting = c.b.snapshot().await.waiting;
    assert_eq!(
        waiting.len(),
        1,
        "B's snapshot holds its own caller: {waiting:?}"
    );
    assert_eq!(waiting[0].position, 1, "first in the one line");
    assert_eq!(
        c.a.snapshot().await.waiting[0].position,
        2,
        "A's caller is second"
    );

    // 1002 signs in (on A's console): B's caller, the first, rings there; A's waits.
    for _ in 0..100 {
        if c.a.sign_in("1002").await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        next_offer(&mut rx_b, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("1002")
    );
    assert_eq!(
        next_offer(&mut rx_a, Duration::from_millis(500)).await,
        None
    );
    c.b.answered(1, "1002");
    // 1001 signs in: A's caller rings there.
    c.b.sign_in("1001").await.unwrap();
    assert_eq!(
        next_offer(&mut rx_a, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("1001")
    );
    c.a.answered(1, "1001");

    // Both calls end, 1001's first: 1001 has been idle longest and gets the next caller,
    // whichever node it is on.
    c.a.call_ended("1001");
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.b.call_ended("1002");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    c.b.enqueue(2, tx);
    assert_eq!(
        next_offer(&mut rx, Duration::from_secs(5)).await.as_deref(),
        Some("1001")
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nodes_callers_leave_and_its_operators_are_freed() {
    let c = Cluster::start(config()).await;
    for (node, state) in [("node-a", "up"), ("node-b", "up")] {
        sqlx::query(
            "INSERT INTO cluster_nodes (node_id, state, started_at, heartbeat_at) \
             VALUES ($1, $2, 0, 0)",
        )
        .bind(node)
        .bind(state)
        .execute(c.store.pool())
        .await
        .unwrap();
    }
    c.ready("1001", &c.b).await;
    c.ready("1002", &c.b).await;
    // A's first caller is answered by 1001, its second rings 1002.
    let (tx1, mut rx1) = mpsc::unbounded_channel();
    c.a.enqueue(1, tx1);
    let op1 = next_offer(&mut rx1, Duration::from_secs(5)).await.unwrap();
    c.a.answered(1, &op1);
    let (tx2, mut rx2) = mpsc::unbounded_channel();
    c.a.enqueue(2, tx2);
    let op2 = next_offer(&mut rx2, Duration::from_secs(5)).await.unwrap();
    assert_ne!(op1, op2);
    // A third caller, on B, waits: both operators are taken by A's calls.
    let (tx3, mut rx3) = mpsc::unbounded_channel();
    c.b.enqueue(3, tx3);
    assert_eq!(next_offer(&mut rx3, Duration::from_millis(500)).await, None);

    // A is lost (a survivor's take-over marks it so): B's housekeeping frees both operators
    // and B's caller is offered one at once.
    let lost = Instant::now();
    sqlx::query("UPDATE cluster_nodes SET state = 'lost' WHERE node_id = 'node-a'")
        .execute(c.store.pool())
        .await
        .unwrap();
    let op3 = next_offer(&mut rx3, Duration::from_secs(5))
        .await
        .expect("B's caller gets an operator A held");
    assert!(
        lost.elapsed() < Duration::from_secs(3),
        "{:?}",
        lost.elapsed()
    );
    c.b.answered(3, &op3);
    let s = c.b.snapshot().await;
    assert!(s.waiting.is_empty(), "{s:?}");
    let states: Vec<_> = s
        .operators
        .iter()
        .map(|o| (o.extension.as_str(), o.state))
        .collect();
    assert!(
        states.contains(&(op3.as_str(), OperatorState::Busy)),
        "{states:?}"
    );
    let other = if op3 == "1001" { "1002" } else { "1001" };
    assert!(
        states.contains(&(other, OperatorState::Available)),
        "{states:?}"
    );
    c.stop().await;
}

/// A node that stops without a word (as after `kill -9`) and starts again under its id
/// begins with a clean slate: its previous run's callers leave the line (this run's call
/// ids start again at 1) and the operators it could ring are not taken as registered
/// until their phones register again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_under_its_id_forgets_its_previous_run() {
    let (url, schema) = api::fresh_database(api::Db::Postgres).await;
    let store = Store::connect(&url.unwrap()).await.unwrap();
    store.migrate().await.unwrap();
    let ops: Vec<String> = OPS.iter().map(|s| s.to_string()).collect();
    let (stop, shutdown) = watch::channel(false);
    let (first, task) = shared_acd::spawn(
        config(),
        ops.clone(),
        store.clone(),
        "node-a".into(),
        shutdown,
    );
    first.set_registered("1002", true);
    let (tx, _rx) = mpsc::unbounded_channel();
    first.enqueue(5, tx);
    let mut waiting = 0;
    for _ in 0..100 {
        waiting = first.snapshot().await.waiting.len();
        if waiting == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(waiting, 1);
    stop.send(true).unwrap();
    task.await.unwrap();

    let (_stop, shutdown) = watch::channel(false);
    let (second, _task) =
        shared_acd::spawn(config(), ops, store.clone(), "node-a".into(), shutdown);
    let s = second.snapshot().await;
    assert!(
        s.waiting.is_empty(),
        "the previous run's caller is gone: {s:?}"
    );
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM queue_callers")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert!(
        second.sign_in("1002").await.is_err(),
        "1002's phone has not registered with this run"
    );
    // This run's call 1 joins and is offered once 1002 registers and signs in.
    let (tx, mut rx) = mpsc::unbounded_channel();
    second.enqueue(1, tx);
    second.set_registered("1002", true);
    for _ in 0..100 {
        if second.sign_in("1002").await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        next_offer(&mut rx, Duration::from_secs(5)).await.as_deref(),
        Some("1002")
    );
    if let Some(s) = &schema {
        api::drop_schema(s).await;
    }
}
