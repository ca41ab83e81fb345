//! The cluster's one operator queue (issue 22) on the machine's PostgreSQL: two nodes'
//! queue actors (`callflow::shared_acd`, each with its own connection pool, as two
//! processes would have) on a fresh schema.
//!
//!     cargo bench --bench queue_claim -- [CALLERS] [WAITING]      (defaults 400 1000)
//!
//! 1. **Claim on arrival, two nodes contending**: 20 operators, CALLERS callers arriving
//!    on both nodes at once (alternately, 100 a second in all); each answers at once and
//!    hangs up 50 ms later. The claim latency is the time from a caller's `enqueue` to its
//!    offer arriving: the enqueuing node's turn (the advisory lock, with the other node
//!    contending for it) decides it and the operator is marked ringing.
//! 2. **Hand-over**: 3 operators and callers queued behind them on both nodes. When an
//!    operator hangs up, the next caller is offered them: the time from the `call_ended`
//!    to the offer arriving, split by whether the caller is on the node whose operator
//!    hung up (its own turn decides and delivers) or on the other (a notice row, taken by
//!    that node when it next looks, every 100 ms).
//! 3. **A deep line**: WAITING callers wait (nobody signed in); the time of a sign-in (a
//!    turn that reads and rewrites the queue) and of one more caller joining, against the
//!    same with an empty line.
//!
//! Prints p50/p99 per measure. Exit status 0, or 1 on a broken run.

use hotline::callflow::acd::AcdHandle;
use hotline::callflow::queue::{QueueConfig, QueueNotice};
use hotline::callflow::shared_acd;
use hotline::store::Store;
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

fn postgres_url() -> String {
    std::env::var("HOTLINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn config() -> QueueConfig {
    QueueConfig {
        ring_timeout: Duration::from_secs(30),
        wrap_up: Duration::ZERO,
        max_wait: Duration::from_secs(3600),
        position_every: Duration::ZERO,
    }
}

struct Nodes {
    a: AcdHandle,
    b: AcdHandle,
    _stop: watch::Sender<bool>,
    schema: String,
}

/// Two nodes on a fresh schema with operators `1001…`.
async fn nodes(operators: usize) -> Nodes {
    use sqlx::Connection;
    static RUN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let schema = format!("bench_{}_{run}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(&postgres_url())
        .await
        .expect("PostgreSQL on 127.0.0.1:5432");
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{}?options=-c%20search_path%3D{schema}", postgres_url());
    let (stop, shutdown) = watch::channel(false);
    let ops: Vec<String> = (0..operators).map(|i| format!("{}", 1001 + i)).collect();
    let mut handles = Vec::new();
    for node in ["node-a", "node-b"] {
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let (h, _) = shared_acd::spawn(
            config(),
            ops.clone(),
            store,
            node.to_string(),
            shutdown.clone(),
        );
        handles.push(h);
    }
    let b = handles.pop().unwrap();
    let a = handles.pop().unwrap();
    Nodes {
        a,
        b,
        _stop: stop,
        schema,
    }
}

async fn drop_schema(schema: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_url()).await {
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await;
    }
}

/// Registers and signs in `count` operators from 1001, alternately on each node.
async fn sign_in(n: &Nodes, count: usize) {
    for i in 0..count {
        let ext = format!("{}", 1001 + i);
        let node = if i % 2 == 0 { &n.a } else { &n.b };
        node.set_registered(&ext, true);
        let mut ok = false;
        for _ in 0..200 {
            if node.sign_in(&ext).await.is_ok() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ok, "{ext} signs in");
    }
}

async fn offer(rx: &mut mpsc::UnboundedReceiver<QueueNotice>, wait: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(QueueNotice::Offer { operator })) => return Some(operator),
            Ok(Some(_)) => continue,
            _ => return None,
        }
    }
}

fn percentiles(name: &str, mut v: Vec<Duration>) -> bool {
    if v.is_empty() {
        println!("{name}: no samples");
        return false;
    }
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    println!(
        "{name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3
    );
    true
}

/// 1: enqueue → offer with operators free, both nodes enqueuing.
async fn claim_on_arrival(callers: usize) -> bool {
    let n = nodes(20).await;
    sign_in(&n, 20).await;
    let mut tasks = Vec::new();
    let start = Instant::now();
    for i in 0..callers {
        // 100 a second in all, alternating nodes.
        let due = start + Duration::from_millis(10 * i as u64);
        tokio::time::sleep_until(due.into()).await;
        let node = if i % 2 == 0 { n.a.clone() } else { n.b.clone() };
        tasks.push(tokio::spawn(async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let asked = Instant::now();
            node.enqueue(i as u64, tx);
            let op = offer(&mut rx, Duration::from_secs(30)).await?;
            let took = asked.elapsed();
            node.answered(i as u64, &op);
            tokio::time::sleep(Duration::from_millis(50)).await;
            node.call_ended(&op);
            Some(took)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        if let Some(d) = t.await.unwrap() {
            lat.push(d);
        }
    }
    let all = lat.len() == callers;
    if !all {
        println!("claim on arrival: {} of {callers} offered", lat.len());
    }
    let ok = percentiles("claim on arrival (two nodes contending)", lat);
    drop_schema(&n.schema).await;
    ok && all
}

/// 2: call_ended → the next caller's offer, same node and other node.
async fn hand_over(callers: usize) -> bool {
    let n = nodes(3).await;
    sign_in(&n, 3).await;
    // When each operator last hung up, and on which node.
    let ended: Arc<Mutex<HashMap<String, (Instant, &'static str)>>> = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..callers {
        let (node, name) = if i % 2 == 0 {
            (n.a.clone(), "a")
        } else {
            (n.b.clone(), "b")
        };
        let ended = ended.clone();
        tasks.push(tokio::spawn(async move {
            let (tx, mut rx) = mpsc::unbounded_channel();
            let joined = Instant::now();
            node.enqueue(i as u64, tx);
            let op = offer(&mut rx, Duration::from_secs(120)).await?;
            let got = Instant::now();
            let sample = ended
                .lock()
                .unwrap()
                .get(&op)
                .filter(|(at, _)| *at > joined)
                .map(|(at, by)| (got - *at, *by == name));
            node.answered(i as u64, &op);
            tokio::time::sleep(Duration::from_millis(20)).await;
            ended
                .lock()
                .unwrap()
                .insert(op.clone(), (Instant::now(), name));
            node.call_ended(&op);
            Some(sample)
        }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (mut same, mut other) = (Vec::new(), Vec::new());
    let mut served = 0;
    for t in tasks {
        if let Some(sample) = t.await.unwrap() {
            served += 1;
            match sample {
                Some((d, true)) => same.push(d),
                Some((d, false)) => other.push(d),
                None => {}
            }
        }
    }
    if served != callers {
        println!("hand-over: {served} of {callers} offered");
    }
    let ok1 = percentiles("hand-over, caller on the same node", same);
    let ok2 = percentiles("hand-over, caller on the other node", other);
    drop_schema(&n.schema).await;
    ok1 && ok2 && served == callers
}

/// 3: a sign-in and a caller joining, with `waiting` callers in the line.
async fn deep_line(waiting: usize) -> bool {
    let n = nodes(100).await;
    let mut keep = Vec::new();
    for i in 0..waiting {
        let (tx, rx) = mpsc::unbounded_channel();
        let node = if i % 2 == 0 { &n.a } else { &n.b };
        node.enqueue(i as u64, tx);
        keep.push(rx);
    }
    // Wait until every caller is in (a snapshot is answered after the enqueues before it).
    let _ = n.a.snapshot().await;
    let _ = n.b.snapshot().await;
    let mut sign_ins = Vec::new();
    let mut joins = Vec::new();
    for i in 0..40 {
        let ext = format!("{}", 1001 + i);
        n.a.set_registered(&ext, true);
        let _ = n.a.snapshot().await;
        // Paused at once so the line stays as deep: the sign-in's turn is what is timed.
        let t = Instant::now();
        let r = n.a.sign_in(&ext).await;
        sign_ins.push(t.elapsed());
        if r.is_err() {
            println!("{ext}: {r:?}");
            return false;
        }
        let _ =
            n.a.pause(&ext, hotline::callflow::queue::PauseReason::Break)
                .await;
        let (tx, rx) = mpsc::unbounded_channel();
        let t = Instant::now();
        n.b.enqueue(100_000 + i as u64, tx);
        let _ = n.b.snapshot().await;
        joins.push(t.elapsed());
        keep.push(rx);
    }
    let ok1 = percentiles(&format!("sign-in with {waiting} waiting"), sign_ins);
    let ok2 = percentiles(&format!("join + snapshot with {waiting} waiting"), joins);
    drop_schema(&n.schema).await;
    ok1 && ok2
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let callers: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(400);
    let waiting: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ok = rt.block_on(async {
        let a = claim_on_arrival(callers).await;
        let b = hand_over(callers / 4).await;
        let c = deep_line(0).await;
        let d = deep_line(waiting).await;
        a && b && c && d
    });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
