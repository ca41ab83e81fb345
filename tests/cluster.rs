//! Two hotline nodes on one PostgreSQL behind real Kamailio (Debian's `kamailio`, its
//! dispatcher, with `sip-config/kamailio/kamailio.cfg`): calls are spread over both nodes,
//! and a node that drains (a rolling upgrade) loses no call. Its call in progress goes on
//! to its end, new calls are refused with 503 and Kamailio places them on the other node,
//! and the node stops once its last call is over. Every call has one journal entry.
//!
//! A node killed with SIGKILL is noticed by the survivor, which ends the lost node's calls
//! in progress (failed, `node_lost`) within 10 s and delivers the notification the lost
//! node was sending; the restarted node joins again and takes calls.

mod support;

use hotline::app::Hotline;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::notify::SmtpServer;
use support::phone::Caller;
use support::rtp::ulaw_tone;
use support::*;

/// Kamailio on a free loopback port, dispatching to `nodes`; killed when dropped.
struct Kamailio {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Kamailio {
    fn start(nodes: &[SocketAddr]) -> Kamailio {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("dispatcher.list");
        let lines: String = nodes.iter().map(|n| format!("1 sip:{n}\n")).collect();
        std::fs::write(&list, lines).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let cfg = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/sip-config/kamailio/kamailio.cfg"
        );
        let child = Command::new("kamailio")
            .args(["-DD", "-E", "-f", cfg, "-l"])
            .arg(format!("udp:{addr}"))
            .arg("-A")
            .arg(format!("DSLIST=\"{}\"", list.display()))
            .args(["-A", "PROBE_S=1", "-w"])
            .arg(dir.path())
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kamailio (Debian package kamailio) runs");
        Kamailio {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Waits until the edge answers its own OPTIONS.
    async fn ready(&self) {
        assert!(
            probe_until(self.addr, "200", 100).await,
            "Kamailio does not answer on {}",
            self.addr
        );
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends OPTIONS to `node` until it answers `status`, at most `tries` times 100 ms;
/// whether it did.
async fn probe_until(node: SocketAddr, status: &str, tries: u32) -> bool {
    let probe = UdpPeer::new(node).await;
    for i in 0..tries {
        // A new transaction each time: a repeated branch would be answered from the
        // transaction's cache (a 200 sent just before the drain began).
        let call_id = format!("probe-{}-{i}", node.port());
        let branch = format!("z9hG4bK-probe-{i}");
        let mut req = Req::new("OPTIONS", probe.addr(), &call_id);
        req.uri = "sip:127.0.0.1";
        req.branch = &branch;
        probe.send(&req.build()).await;
        if let Some(r) = probe.recv(Duration::from_millis(100)).await {
            if r.starts_with(&format!("SIP/2.0 {status}")) {
                return true;
            }
        }
    }
    false
}

/// A node of the cluster on the shared database `url`.
async fn node(id: &str, url: &str) -> (Hotline, tempfile::TempDir) {
    node_with(id, url, "").await
}

/// [`node`] with more configuration `tables`.
async fn node_with(id: &str, url: &str, tables: &str) -> (Hotline, tempfile::TempDir) {
    let (mut config, dir) = config("", tables);
    config.storage.database_url = Some(url.to_string());
    config.cluster.node_id = Some(id.to_string());
    config.validate().expect("a valid cluster node");
    (Hotline::start(config).await.expect("the node starts"), dir)
}

/// The node a call landed on: the port of the Contact in its 200.
fn node_of(caller: &Caller) -> u16 {
    let contact = header(&caller.ok, "Contact").expect("Contact in the 200");
    let hostport = contact
        .split("@")
        .nth(1)
        .and_then(|s| s.split(['>', ';']).next())
        .expect("a host:port in the Contact");
    hostport.rsplit(':').next().unwrap().parse().unwrap()
}

/// The caller's 440 Hz for `secs`, so that no silence timer ends the call meanwhile.
async fn keep_talking(caller: &mut Caller, secs: f64) {
    caller.talk(&ulaw_tone(440.0, secs)).await;
}

/// Three more operators for the cluster's shared queue; loopback trusted (the edge relays
/// every phone's REGISTER) and no wrap-up.
const TEAM: [(&str, &str); 4] = [
    (OPERATOR, PASSWORD),
    ("1002", "secret-1002"),
    ("1003", "secret-1003"),
    ("1004", "secret-1004"),
];

fn team_tables() -> String {
    let mut t = format!("[limits]\n{TRUSTED_LOOPBACK}\n\n[queue]\nwrap_up_s = 0\n\n");
    for (ext, pw) in &TEAM[1..] {
        t.push_str(&format!(
            "[[operators]]\nextension = \"{ext}\"\nname = \"Оператор {ext}\"\npassword = \"{pw}\"\n\n"
        ));
    }
    t
}

/// What an operator's phone saw: each call it answered (caller's number, answered, hung
/// up), and INVITEs for another call that came while it was on one (a phone answers them
/// 486 Busy Here; the hotline must never send them).
#[derive(Debug, Default)]
struct PhoneLog {
    calls: Vec<(String, Instant, Instant)>,
    while_busy: Vec<String>,
}

/// An operator's phone registered through the edge that answers every call it is rung for,
/// talks `talk` and hangs up, until the task is aborted; what it saw goes to `log`.
fn answering(
    mut op: support::phone::Operator,
    talk: Duration,
    log: Arc<Mutex<PhoneLog>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Some(invite) = op.ringing(Duration::from_secs(600)).await else {
                break;
            };
            let call_id = header(&invite, "Call-ID").unwrap_or_default().to_string();
            let from = header(&invite, "From").unwrap_or_default().to_string();
            let number = from
                .split("sip:")
                .nth(1)
                .and_then(|s| s.split('@').next())
                .unwrap_or_default()
                .to_string();
            op.answer().await;
            let start = Instant::now();
            // Talk in slices, listening meanwhile for a second call.
            let slices = (talk.as_millis() / 100).max(1);
            for _ in 0..slices {
                op.talk(&ulaw_tone(300.0, 0.1)).await;
                if let Some(other) = op.sip.request("INVITE", Duration::from_millis(1)).await {
                    if header(&other, "Call-ID") != Some(call_id.as_str()) {
                        op.sip.respond(&other, 486, "Busy Here", "busy", "").await;
                        log.lock().unwrap().while_busy.push(other);
                    }
                }
            }
            // The BYE goes through the edge to the node; a killed node answers nothing.
            let _ = tokio::time::timeout(Duration::from_secs(5), op.hang_up()).await;
            log.lock()
                .unwrap()
                .calls
                .push((number, start, Instant::now()));
        }
    })
}

/// The team's phones register through the edge; returns them and the node each landed on
/// (from the shared queue's `queue_reachable`), once every binding is shared with its Path.
async fn register_team(
    edge: SocketAddr,
    pool: &sqlx::AnyPool,
) -> (Vec<support::phone::Operator>, HashMap<String, String>) {
    let mut phones = Vec::new();
    for (ext, pw) in TEAM {
        phones.push(support::phone::Operator::register(edge, ext, pw).await);
    }
    for _ in 0..100 {
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT extension, node, path FROM queue_reachable")
                .fetch_all(pool)
                .await
                .unwrap();
        if rows.len() == TEAM.len() {
            assert!(
                rows.iter().all(|r| r.2.is_some()),
                "every binding has the edge's Path: {rows:?}"
            );
            let home: HashMap<String, String> = rows.into_iter().map(|(e, n, _)| (e, n)).collect();
            let on_a = home.values().filter(|n| *n == "node-a").count();
            assert!(
                on_a > 0 && on_a < TEAM.len(),
                "phones on both nodes: {home:?}"
            );
            return (phones, home);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the team's bindings are not all shared");
}

/// No operator had two calls at once: by each phone's own log, and by the journal's
/// answer-to-end spans of each operator.
fn one_call_at_a_time(logs: &[Arc<Mutex<PhoneLog>>], rows: &[JournalRow]) {
    for (i, log) in logs.iter().enumerate() {
        let log = log.lock().unwrap();
        assert!(
            log.while_busy.is_empty(),
            "phone {} was rung while on a call: {:?}",
            TEAM[i].0,
            log.while_busy
        );
    }
    for (ext, _) in TEAM {
        let mut spans: Vec<(i64, i64)> = rows
            .iter()
            .filter(|r| r.2.as_deref() == Some(ext))
            .filter_map(|r| Some((r.4?, r.5?)))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[1].0 >= w[0].1, "{ext} had two calls at once: {spans:?}");
        }
    }
}

/// The journal once every entry has ended: the last calls' ends reach it a moment after
/// their last BYE (waits up to 10 s, then returns it as it is).
async fn ended_journal(pool: &sqlx::AnyPool) -> Vec<JournalRow> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = journal(pool).await;
        if rows.iter().all(|r| r.5.is_some()) || Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn journal(pool: &sqlx::AnyPool) -> Vec<JournalRow> {
    sqlx::query_as(
        "SELECT call_id, disposition, operator, node_id, answered_at, ended_at \
         FROM journal_entries ORDER BY answered_at",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The issue's "one hotline": operators' phones register through Kamailio (each lands on
/// one node, by the hash of its address), callers are spread over both nodes, and every
/// caller is answered by whichever operator is free, on either node: the INVITE to a phone
/// registered on the other node goes through the edge by the phone's Path. No operator has
/// two calls at once, by the phones' own logs and by the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_on_either_node_answer_the_callers_of_both() {
    let (url, schema) = api::fresh_database(api::Db::Postgres).await;
    let url = url.unwrap();
    let (a, _a_dir) = node_with("node-a", &url, &team_tables()).await;
    let (b, _b_dir) = node_with("node-b", &url, &team_tables()).await;
    let edge = Kamailio::start(&[a.sip_addr, b.sip_addr]);
    edge.ready().await;
    let pool = a.records.store.pool();

    // Every phone registers through the edge; the shared queue says where each landed.
    let (phones, home) = register_team(edge.addr, pool).await;
    // Signed in on A's console, whichever node holds the phone.
    for (ext, _) in TEAM {
        assert!(sign_in(&a, ext).await, "{ext} signs in");
    }

    // 16 callers, four at a time, alternate between the nodes.
    const CALLS: usize = 16;
    let logs: Vec<Arc<Mutex<PhoneLog>>> = TEAM.iter().map(|_| Arc::default()).collect();
    let team: Vec<_> = phones
        .into_iter()
        .zip(&logs)
        .map(|(op, log)| answering(op, Duration::from_millis(400), log.clone()))
        .collect();
    let mut numbers = HashMap::new();
    for batch in 0..CALLS / 4 {
        let mut callers = Vec::new();
        for i in 0..4 {
            let number = format!("7916200{batch:02}{i:02}");
            let c = Caller::dial(edge.addr, "8800", &number).await;
            let node = if node_of(&c) == a.sip_addr.port() {
                "node-a"
            } else {
                "node-b"
            };
            numbers.insert(number, (c.call_id().to_string(), node));
            callers.push(c);
        }
        // Each caller talks (so no silence timer ends the call) until the hotline's BYE,
        // sent when the operator hangs up.
        let talking: Vec<_> = callers
            .into_iter()
            .map(|mut c| {
                tokio::spawn(async move {
                    for _ in 0..120 {
                        keep_talking(&mut c, 0.5).await;
                        if c.expect_bye(Duration::from_millis(1)).await.is_some() {
                            return true;
                        }
                    }
                    false
                })
            })
            .collect();
        for t in talking {
            assert!(
                t.await.unwrap(),
                "the operator hung up and the hotline ended the call"
            );
        }
    }
    // Every caller was answered, some by an operator on the other node.
    for t in &team {
        t.abort();
    }
    let mut cross = 0;
    let mut total = 0;
    let rows = ended_journal(pool).await;
    for (number, (call_id, node)) in &numbers {
        let row = rows
            .iter()
            .find(|r| r.0.starts_with(call_id.as_str()))
            .unwrap_or_else(|| panic!("{number}: no journal entry"));
        assert_eq!(row.1, "answered", "{number}: {row:?}\n{logs:?}");
        assert_eq!(
            row.3.as_deref(),
            Some(*node),
            "{number}: journaled by its node"
        );
        let op = row.2.clone().expect("an operator");
        total += 1;
        if home[&op] != *node {
            cross += 1;
        }
    }
    assert_eq!(total, CALLS);
    assert!(
        cross > 0,
        "some callers were answered by an operator on the other node"
    );
    one_call_at_a_time(&logs, &rows);
    b.shutdown().await;
    a.shutdown().await;
    drop(edge);
    if let Some(s) = schema {
        api::drop_schema(&s).await;
    }
}

/// A journal entry: call id, disposition, operator, node, answered and ended (ms).
type JournalRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// Signs `ext` in on `node`, waiting for the registration to reach the shared queue.
async fn sign_in(node: &Hotline, ext: &str) -> bool {
    for _ in 0..100 {
        if node.acd.sign_in(ext).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_two_nodes_and_a_draining_node_loses_none() {
    let (url, schema) = api::fresh_database(api::Db::Postgres).await;
    let url = url.unwrap();
    let (a, _a_dir) = node("node-a", &url).await;
    let (b, _b_dir) = node("node-b", &url).await;
    let (a_port, b_port) = (a.sip_addr.port(), b.sip_addr.port());
    let edge = Kamailio::start(&[a.sip_addr, b.sip_addr]);
    edge.ready().await;
    let mut call_ids = Vec::new();

    // Round robin: four calls, two on each node.
    let mut calls = Vec::new();
    for i in 0..4 {
        let c = Caller::dial(edge.addr, "8800", &format!("7916000000{i}")).await;
        call_ids.push(c.call_id().to_string());
        calls.push(c);
    }
    let on = |port: u16, calls: &[Caller]| calls.iter().filter(|c| node_of(c) == port).count();
    assert_eq!(on(a_port, &calls), 2, "two calls on node A");
    assert_eq!(on(b_port, &calls), 2, "two calls on node B");
    // The calls end through the edge (Kamailio record-routed them): one kept up on A.
    let mut held = None;
    for mut c in calls {
        if node_of(&c) == a_port && held.is_none() {
            held = Some(c);
            continue;
        }
        let ok = c.hang_up().await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}\n{}", c.ok);
    }
    let mut held = held.expect("a call on node A");

    // A drains, with its call up: its probe and a new call get 503 from it...
    let started = Instant::now();
    let draining = tokio::spawn(a.drain(Duration::from_secs(60), std::future::pending::<()>()));
    assert!(
        probe_until(SocketAddr::from(([127, 0, 0, 1], a_port)), "503", 50).await,
        "node A's OPTIONS says 503 while draining"
    );
    // ...and every new call through the edge is answered, on B.
    let mut later = Vec::new();
    for i in 0..6 {
        let c = Caller::dial(edge.addr, "8800", &format!("7916100000{i}")).await;
        assert_eq!(
            node_of(&c),
            b_port,
            "call {i} after the drain began is on B"
        );
        call_ids.push(c.call_id().to_string());
        later.push(c);
    }
    // A's call is still up, and A with it.
    keep_talking(&mut held, 2.0).await;
    assert!(!draining.is_finished(), "A waits for its call");
    assert!(
        held.expect_bye(Duration::from_millis(10)).await.is_none(),
        "nobody cut A's call"
    );
    assert!(held.hang_up().await.starts_with("SIP/2.0 200"));
    tokio::time::timeout(Duration::from_secs(10), draining)
        .await
        .expect("A stops once its last call is over")
        .unwrap();
    assert!(started.elapsed() > Duration::from_secs(2));
    for mut c in later {
        assert!(c.hang_up().await.starts_with("SIP/2.0 200"));
    }

    // The records: one journal entry per call, each ended, whichever node took it.
    let pool = b.records.store.pool();
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in &call_ids {
        loop {
            let rows: Vec<(Option<i64>,)> =
                sqlx::query_as("SELECT ended_at FROM journal_entries WHERE call_id LIKE $1")
                    .bind(format!("{id}%"))
                    .fetch_all(pool)
                    .await
                    .unwrap();
            if rows.len() == 1 && rows[0].0.is_some() {
                break;
            }
            assert!(rows.len() <= 1, "{id}: {} journal entries", rows.len());
            assert!(Instant::now() < deadline, "{id}: no ended journal entry");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    b.shutdown().await;
    drop(edge);
    if let Some(s) = schema {
        api::drop_schema(&s).await;
    }
}

/// The binary: SIGTERM drains a node of a cluster (its default). Its OPTIONS says 503, the
/// call in progress holds it up, and it exits cleanly once that call ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_cluster_node_until_its_last_call_ends() {
    let (url, schema) = api::fresh_database(api::Db::Postgres).await;
    let url = url.unwrap();
    let data = tempfile::tempdir().unwrap();
    let text = config_text(
        data.path(),
        "",
        "[cluster]\nnode_id = \"node-x\"\n",
        "00:00-24:00",
    )
    .replacen(
        "[storage]\n",
        &format!("[storage]\ndatabase_url = \"{url}\"\n"),
        1,
    );
    let config = data.path().join("hotline.toml");
    std::fs::write(&config, text).unwrap();
    let mut node = support::child::serve(env!("CARGO_BIN_EXE_hotline"), &config, data.path()).await;
    let _log = support::child::ShowLog(node.log.clone());
    assert!(
        probe_until(node.sip, "200", 50).await,
        "the node takes calls"
    );
    let mut caller = Caller::dial(node.sip, "8800", "79162000001").await;

    let pid = node.process.id().unwrap().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    assert!(
        probe_until(node.sip, "503", 50).await,
        "draining: OPTIONS says 503"
    );
    keep_talking(&mut caller, 2.0).await;
    assert!(
        node.process.try_wait().unwrap().is_none(),
        "the call holds the node up"
    );
    assert!(caller.hang_up().await.starts_with("SIP/2.0 200"));
    let status = tokio::time::timeout(Duration::from_secs(15), node.process.wait())
        .await
        .expect("the node exits once its last call ends")
        .unwrap();
    assert!(status.success(), "{status}");
    if let Some(s) = schema {
        api::drop_schema(&s).await;
    }
}

/// A supervisor's console session opened on `node` (whose `[console] totp_roles` is
/// empty): the cookie's value.
async fn supervisor_session(node: &Hotline) -> String {
    let new = hotline::records::account::NewUser {
        login: "petrova".into(),
        name: "Петрова Мария".into(),
        role: hotline::records::role::Role::Supervisor,
        operator: None,
    };
    node.accounts
        .create_user(&new, "correct horse battery", "test")
        .await
        .unwrap();
    let outcome = node
        .accounts
        .login(
            "petrova",
            "correct horse battery",
            "127.0.0.1",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let hotline::desk::accounts::LoginOutcome::Opened(opened) = outcome else {
        panic!("the supervisor signs in: {outcome:?}");
    };
    assert!(!opened.factor_due);
    opened.secret
}

/// `[notify]` sending e-mail through `smtp_port`, waiting `timeout_s` for the server.
fn notify_tables(smtp_port: u16, timeout_s: u64) -> String {
    format!(
        r#"
[notify]
public_url = "https://hotline.bank.test"
from = "hotline@bank.test"
retry_base_s = 1
retry_max_s = 2
poll_ms = 100

[notify.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"
timeout_s = {timeout_s}
"#
    )
}

/// An SMTP port that accepts connections and never says a word: a node delivering to it
/// keeps its notification `sending` until it gives up (or is killed).
async fn tarpit() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

/// The state of the journal entry of `call_id`: disposition, end reason, node.
async fn entry_of(
    pool: &sqlx::AnyPool,
    call_id: &str,
) -> Vec<(String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT disposition, end_reason, node_id FROM journal_entries WHERE call_id LIKE $1",
    )
    .bind(format!("{call_id}%"))
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A node killed with SIGKILL, calls up and an e-mail in hand: the survivor ends its call
/// within 10 s (failed, `node_lost`) and leaves its own call alone, the e-mail is delivered
/// once by the survivor, new calls go to the survivor, and the restarted node joins again
/// and is given calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_taken_over_by_the_survivor_and_rejoins() {
    let (url, schema) = api::fresh_database(api::Db::Postgres).await;
    let url = url.unwrap();
    let db = {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&url).await.unwrap()
    };

    // Node A, the binary, its mail stuck in a tarpit.
    let (stuck, _tarpit) = tarpit().await;
    let a_data = tempfile::tempdir().unwrap();
    let tables = format!(
        "[cluster]\nnode_id = \"node-a\"\n{}",
        notify_tables(stuck.port(), 120)
    );
    let text = config_text(a_data.path(), "", &tables, "00:00-24:00").replacen(
        "[storage]\n",
        &format!("[storage]\ndatabase_url = \"{url}\"\n"),
        1,
    );
    let a_config = a_data.path().join("hotline.toml");
    std::fs::write(&a_config, text).unwrap();
    let bin = env!("CARGO_BIN_EXE_hotline");
    let mut a = support::child::serve(bin, &a_config, a_data.path()).await;
    let _log = support::child::ShowLog(a.log.clone());

    // A notification A takes in hand (and cannot deliver).
    let now = chrono::Utc::now().timestamp_millis();
    sqlx::query(
        "INSERT INTO notifications (dedupe_key, event, channel, recipient, subject, body, \
         payload, entity, entity_id, status, attempts, next_attempt_at, created_at) \
         VALUES ('takeover-1', 'voicemail_new', 'email', 'head@bank.test', 'Takeover 1', \
         'A message', '{}', 'voicemail', 1, 'pending', 0, $1, $1)",
    )
    .bind(now)
    .execute(&db)
    .await
    .unwrap();
    let claimed = || async {
        sqlx::query_as::<_, (String, Option<String>)>(
            "SELECT status, claimed_by FROM notifications WHERE dedupe_key = 'takeover-1'",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while claimed().await != ("sending".into(), Some("node-a".into())) {
        assert!(Instant::now() < deadline, "node A never took the e-mail");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Node B, in-process, with a working mail server; Kamailio in front of both.
    let mut smtp = SmtpServer::start().await;
    let b_tables = format!(
        "{}\n[console]\ntotp_roles = []\n",
        notify_tables(smtp.addr.port(), 5)
    );
    let (b, _b_dir) = node_with("node-b", &url, &b_tables).await;
    let edge = Kamailio::start(&[a.sip, b.sip_addr]);
    edge.ready().await;
    let mut call_ids = Vec::new();
    let (mut on_a, mut on_b) = (None, None);
    for i in 0..4 {
        let c = Caller::dial(edge.addr, "8800", &format!("7916300000{i}")).await;
        call_ids.push(c.call_id().to_string());
        match node_of(&c) {
            p if p == a.sip.port() && on_a.is_none() => on_a = Some(c),
            p if p == b.sip_addr.port() && on_b.is_none() => on_b = Some(c),
            _ => {
                let mut c = c;
                assert!(c.hang_up().await.starts_with("SIP/2.0 200"));
            }
        }
    }
    let (mut on_a, mut on_b) = (on_a.expect("a call on A"), on_b.expect("a call on B"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while entry_of(&db, on_a.call_id()).await.is_empty() {
        assert!(Instant::now() < deadline, "A's call is journaled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second of the call, so that A's recorder has written to its file (a loaded CI
    // machine once killed A before the file existed, and there was nothing to link).
    keep_talking(&mut on_a, 1.0).await;

    // kill -9 A, its call up.
    a.kill().await;
    let killed = Instant::now();
    let ended = loop {
        let rows = entry_of(&db, on_a.call_id()).await;
        if rows.len() == 1 && rows[0].0 != "in_progress" {
            break rows;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "A's call is not ended 10 s after A was killed: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("A's call ended by B {:?} after the kill", killed.elapsed());
    assert_eq!(
        ended[0],
        (
            "failed".to_string(),
            Some("node_lost".to_string()),
            Some("node-a".to_string())
        )
    );
    // The supervisor's journal says why the call failed, and where it was.
    let secret = supervisor_session(&b).await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM journal_entries WHERE call_id LIKE $1")
        .bind(format!("{}%", on_a.call_id()))
        .fetch_one(&db)
        .await
        .unwrap();
    let page = reqwest::Client::new()
        .get(format!("http://{}/journal/{id}", b.http_addr))
        .header("Cookie", format!("hotline_session={secret}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("узел node-a перестал отвечать"),
        "the entry page gives the reason:\n{html}"
    );
    let (state, taken_by): (String, Option<String>) =
        sqlx::query_as("SELECT state, taken_by FROM cluster_nodes WHERE node_id = 'node-a'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        (state.as_str(), taken_by.as_deref()),
        ("lost", Some("node-b"))
    );

    // The e-mail A had in hand is delivered by B, once.
    let mails = smtp
        .collect(1, Duration::from_secs(10), Duration::from_secs(2))
        .await;
    let ours: Vec<_> = mails
        .iter()
        .filter(|m| m.header("Subject").as_deref() == Some("Takeover 1"))
        .collect();
    assert_eq!(ours.len(), 1, "delivered once: {mails:?}");
    assert_eq!(claimed().await.0, "sent");

    // B's own call goes on; new calls go to B.
    keep_talking(&mut on_b, 0.5).await;
    assert!(on_b.expect_bye(Duration::from_millis(10)).await.is_none());
    assert_eq!(entry_of(&db, on_b.call_id()).await[0].0, "in_progress");
    for i in 0..3 {
        let mut c = Caller::dial(edge.addr, "8800", &format!("7916400000{i}")).await;
        assert_eq!(
            node_of(&c),
            b.sip_addr.port(),
            "call {i} after the kill is on B"
        );
        call_ids.push(c.call_id().to_string());
        assert!(c.hang_up().await.starts_with("SIP/2.0 200"));
    }
    assert!(on_b.hang_up().await.starts_with("SIP/2.0 200"));

    // A comes back: it joins again, and Kamailio gives it calls once its probe answers.
    let a_sip = a.sip.to_string();
    let a = support::child::serve_at(bin, &a_config, a_data.path(), &a_sip).await;
    let (state,): (String,) =
        sqlx::query_as("SELECT state FROM cluster_nodes WHERE node_id = 'node-a'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(state, "up");
    // Its recovery linked the recording of the call it lost (the file is on its disk);
    // the ending B wrote stands.
    let (disposition, reason, recording): (String, Option<String>, Option<String>) =
        sqlx::query_as(
            "SELECT disposition, end_reason, recording FROM journal_entries WHERE call_id LIKE $1",
        )
        .bind(format!("{}%", on_a.call_id()))
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        (disposition.as_str(), reason.as_deref()),
        ("failed", Some("node_lost"))
    );
    let recording = recording.expect("the lost call's recording is linked");
    assert!(a_data.path().join(&recording).is_file(), "{recording}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = Caller::dial(edge.addr, "8800", "79165000000").await;
        call_ids.push(c.call_id().to_string());
        let port = node_of(&c);
        assert!(c.hang_up().await.starts_with("SIP/2.0 200"));
        if port == a.sip.port() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node is given no call"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // One journal entry per call (the call log commits in the background: a moment).
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in &call_ids {
        loop {
            let n = entry_of(&db, id).await.len();
            assert!(n <= 1, "{id}: {n} journal entries");
            if n == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{id}: no journal entry");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    drop(a);
    b.shutdown().await;
    drop(edge);
    db.close().await;
    if let Some(s) = schema {
        api::drop_schema(&s).await;
    }
}

/// A recording is on the disk of the node that took the call; asked of the other node, it
/// is fetched from there, whole or by range, with the asker's own rights checked by the
/// node that serves it, and each listen audited once. A console session opened on one node
/// is good on the other, one node's wallboard shows the other's calls, and each node's
/// metrics carry its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_sessions_and_the_wallboard_span_the_nodes() {
    use hotline::records::role::Role;
    let (url, schema) = api::fresh_database(api::Db::Postgres).await;
    let url = url.unwrap();
    // Supervisors without a second factor here, so that a session opens with a password.
    let console = "[console]\ntotp_roles = []\n";
    let (a, a_dir) = node_with("node-a", &url, console).await;
    let (b, _b_dir) = node_with("node-b", &url, console).await;

    // A call on A, recorded there.
    let mut caller = Caller::dial(a.sip_addr, "8800", "79166000001").await;
    keep_talking(&mut caller, 1.0).await;
    assert!(caller.hang_up().await.starts_with("SIP/2.0 200"));
    let pool = b.records.store.pool();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (id, recording) = loop {
        let row: Option<(i64, Option<String>, String)> = sqlx::query_as(
            "SELECT id, recording, disposition FROM journal_entries WHERE call_id LIKE $1",
        )
        .bind(format!("{}%", caller.call_id()))
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some((id, Some(rec), d)) = row {
            if d != "in_progress" {
                break (id, rec);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the call's recording is journaled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let file = std::fs::read(a_dir.path().join(&recording)).expect("the file is on A");
    assert!(file.len() > 8000, "{} bytes", file.len());

    let (_, secret) = b
        .records
        .create_token("test supervisor", Role::Supervisor, None)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let get = |node: &Hotline, range: Option<&str>, token: Option<&str>| {
        let mut r = http.get(format!(
            "http://{}/api/v1/journal/{id}/recording?download=1",
            node.http_addr
        ));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(range) = range {
            r = r.header("Range", range);
        }
        r.send()
    };

    // Whole, from B: the same bytes, named for download.
    let whole = get(&b, None, Some(&secret)).await.unwrap();
    assert_eq!(whole.status(), 200, "{:?}", whole.headers());
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert!(whole.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment"));
    assert_eq!(whole.bytes().await.unwrap().as_ref(), file.as_slice());
    // A range, from B.
    let part = get(&b, Some("bytes=100-199"), Some(&secret)).await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", file.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &file[100..200]);
    // Without a token, or with an operator's: refused by B before anything is fetched.
    assert_eq!(get(&b, None, None).await.unwrap().status(), 401);
    let (_, operator) = b
        .records
        .create_token("test operator", Role::Operator, Some(OPERATOR))
        .await
        .unwrap();
    assert_eq!(get(&b, None, Some(&operator)).await.unwrap().status(), 403);

    // The console too: a session opened on A is good on B (sessions are rows of the
    // shared database), and B fetches the recording from A with it.
    let session = supervisor_session(&a).await;
    let page = http
        .get(format!("http://{}/journal/{id}/recording", b.http_addr))
        .header("Cookie", format!("hotline_session={session}"))
        .header("Range", "bytes=44-")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 206);
    assert_eq!(page.bytes().await.unwrap().as_ref(), &file[44..]);

    // The listens (the download, and the console's range that is a later part of a
    // listen, so not one) are audited once, by A.
    let listens: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE entity = 'journal' AND entity_id = $1 \
         AND field = 'recording' AND action IN ('listen', 'download')",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(listens, 1);

    // A's wallboard shows the call up on B (B publishes it with its heartbeat).
    let mut on_b = Caller::dial(b.sip_addr, "8800", "79166000009").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let board = http
            .get(format!("http://{}/supervisor/board", a.http_addr))
            .header("Cookie", format!("hotline_session={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(board.status(), 200);
        let html = board.text().await.unwrap();
        if html.contains("6000009") && html.contains("node-b") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's call is not on A's board:\n{html}"
        );
        keep_talking(&mut on_b, 0.3).await;
    }
    assert!(on_b.hang_up().await.starts_with("SIP/2.0 200"));

    // Each node's metrics carry its name.
    for (n, name) in [(&a, "node-a"), (&b, "node-b")] {
        let text = http
            .get(format!("http://{}/metrics", n.http_addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let line = format!("hotline_active_calls{{node=\"{name}\"}} ");
        assert!(text.contains(&line), "{line} in\n{text}");
    }

    // A gone, B says so.
    a.shutdown().await;
    let gone = get(&b, None, Some(&secret)).await.unwrap();
    assert_eq!(gone.status(), 502);
    assert!(gone.text().await.unwrap().contains("node-a"));
    b.shutdown().await;
    if let Some(s) = schema {
        api::drop_schema(&s).await;
    }
}

/// A node of the cluster as the binary: its data directory, configuration and process.
struct BinaryNode {
    data: tempfile::TempDir,
    config: std::path::PathBuf,
    child: support::child::Child,
}

impl BinaryNode {
    async fn start(id: &str, url: &str) -> BinaryNode {
        BinaryNode::start_with(id, url, &format!("[limits]\n{TRUSTED_LOOPBACK}\n")).await
    }

    /// [`BinaryNode::start`] with more configuration `tables`.
    async fn start_with(id: &str, url: &str, tables: &str) -> BinaryNode {
        let data = tempfile::tempdir().unwrap();
        let tables = format!("[cluster]\nnode_id = \"{id}\"\n{tables}");
        let text = config_text(data.path(), "", &tables, "00:00-24:00").replacen(
            "[storage]\n",
            &format!("[storage]\ndatabase_url = \"{url}\"\n"),
            1,
        );
        let config = data.path().join("hotline.toml");
        std::fs::write(&config, text).unwrap();
        let child =
            support::child::serve(env!("CARGO_BIN_EXE_hotline"), &config, data.path()).await;
        BinaryNode {
            data,
            config,
            child,
        }
    }

    /// SIGTERM (a drain: the node's default), then waits for it to exit, cleanly.
    async fn drain(&mut self) {
        let pid = self.child.process.id().unwrap().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.process.wait())
            .await
            .expect("the node exits once its calls are over")
            .unwrap();
        assert!(status.success(), "{status}");
    }

    /// Starts the node again where it was (the proxy's list names its address).
    async fn restart(&mut self) {
        let sip = self.child.sip.to_string();
        self.child = support::child::serve_at(
            env!("CARGO_BIN_EXE_hotline"),
            &self.config,
            self.data.path(),
            &sip,
        )
        .await;
    }
}

/// SIPp running `scenario` against the edge with `args` (calls, rate…), its statistics in
/// `dir/stat.csv`; killed if dropped.
fn sipp(
    scenario: &str,
    edge: SocketAddr,
    args: &[&str],
    dir: &std::path::Path,
) -> tokio::process::Child {
    tokio::process::Command::new("sipp")
        .args(["-sf", scenario, "-s", "8800"])
        .args(args)
        .args([
            "-i",
            "127.0.0.1",
            "-nostdin",
            "-trace_err",
            "-timeout",
            "180s",
        ])
        .args(["-timeout_error", "-trace_stat", "-stf"])
        .arg(dir.join("stat.csv"))
        .arg(edge.to_string())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("sipp (Debian package sip-tester) runs")
}

/// A counter of SIPp's last statistics line (`SuccessfulCall(C)`, …).
fn sipp_count(dir: &std::path::Path, name: &str) -> Option<u64> {
    let stats = std::fs::read_to_string(dir.join("stat.csv")).ok()?;
    let mut lines = stats.lines();
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let row: Vec<&str> = lines.last()?.split(';').collect();
    let i = header.iter().position(|h| *h == name)?;
    row.get(i)?.trim().parse().ok()
}

/// A rolling upgrade under load: SIPp places 300 calls of 2 s through Kamailio at 10 a
/// second while each node in turn drains (SIGTERM), exits and starts again. Not one call
/// fails, and each has one ended journal entry. (With SIGTERM stopping a node at once
/// instead, 20 of the 300 fail here: the calls the node had up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_sipp_load_fails_no_call() {
    let (url, schema) = api::fresh_database(api::Db::Postgres).await;
    let url = url.unwrap();
    let mut a = BinaryNode::start("node-a", &url).await;
    let _a_log = support::child::ShowLog(a.child.log.clone());
    let mut b = BinaryNode::start("node-b", &url).await;
    let _b_log = support::child::ShowLog(b.child.log.clone());
    let edge = Kamailio::start(&[a.child.sip, b.child.sip]);
    edge.ready().await;

    let dir = tempfile::tempdir().unwrap();
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/support/uac-record-route.xml"
    );
    let sipp = sipp(
        scenario,
        edge.addr,
        &["-m", "300", "-r", "10", "-d", "2000"],
        dir.path(),
    );

    // Each node in turn, while the calls come: drain, exit, start again.
    for node in [&mut a, &mut b] {
        tokio::time::sleep(Duration::from_secs(3)).await;
        node.drain().await;
        node.restart().await;
        assert!(
            probe_until(node.child.sip, "200", 50).await,
            "the node takes calls again"
        );
    }
    let out = tokio::time::timeout(Duration::from_secs(120), sipp.wait_with_output())
        .await
        .expect("sipp finishes")
        .unwrap();
    let last = |name: &str| sipp_count(dir.path(), name);
    assert!(
        out.status.success()
            && last("SuccessfulCall(C)") == Some(300)
            && last("FailedCall(C)") == Some(0),
        "sipp: {} successful, {} failed ({})\n{}",
        last("SuccessfulCall(C)").unwrap_or(0),
        last("FailedCall(C)").unwrap_or(0),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // One ended entry per call, whichever node took it.
    let db = {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&url).await.unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (all, ended, calls): (i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(ended_at), COUNT(DISTINCT call_id) FROM journal_entries",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if all == 300 && ended == 300 && calls == 300 {
            break;
        }
        assert!(all <= 300, "{all} journal entries for 300 calls");
        assert!(
            Instant::now() < deadline,
            "{all} entries, {ended} ended, {calls} calls"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    db.close().await;
    drop(edge);
    drop((a, b));
    if let Some(s) = schema {
        api::drop_schema(&s).await;
    }
}

/// The issue's cluster run. Four operators' test phones register through Kamailio and land
/// on both nodes (A is the binary, B in the test).
/// 1. SIPp places 200 calls through the edge, each staying until the operator hangs up:
///    every call is answered by an operator, some by operators on the other node (rung
///    through the edge by the phone's Path), no phone is rung while on a call, and B's
///    wallboard shows A's calls.
/// 2. During a second run, A is killed with SIGKILL: its calls drop, B finalises them
///    within 10 s (failed, node_lost), the calls that follow are all taken by B and
///    answered (A's phones too, through the Path), and every call SIPp placed has exactly
///    one journal entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sipp_callers_reach_operators_on_both_nodes_and_survive_a_killed_node() {
    let (url, schema) = api::fresh_database(api::Db::Postgres).await;
    let url = url.unwrap();
    let mut a = BinaryNode::start_with("node-a", &url, &team_tables()).await;
    let _a_log = support::child::ShowLog(a.child.log.clone());
    let b_tables = format!("{}[console]\ntotp_roles = []\n", team_tables());
    let (b, _b_dir) = node_with("node-b", &url, &b_tables).await;
    let edge = Kamailio::start(&[a.child.sip, b.sip_addr]);
    edge.ready().await;
    let pool = b.records.store.pool();
    let (phones, home) = register_team(edge.addr, pool).await;
    for (ext, _) in TEAM {
        assert!(sign_in(&b, ext).await, "{ext} signs in");
    }
    let logs: Vec<Arc<Mutex<PhoneLog>>> = TEAM.iter().map(|_| Arc::default()).collect();
    let team: Vec<_> = phones
        .into_iter()
        .zip(&logs)
        .map(|(op, log)| answering(op, Duration::from_millis(300), log.clone()))
        .collect();
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/uac-until-bye.xml");

    // 1. 200 calls, 5 a second.
    let dir = tempfile::tempdir().unwrap();
    let run = sipp(scenario, edge.addr, &["-m", "200", "-r", "5"], dir.path());
    // Meanwhile B's wallboard shows calls A took.
    let session = supervisor_session(&b).await;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let html = http
            .get(format!("http://{}/supervisor/board", b.http_addr))
            .header("Cookie", format!("hotline_session={session}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if html.contains("node-a") {
            break;
        }
        assert!(Instant::now() < deadline, "A's calls on B's board:\n{html}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let out = tokio::time::timeout(Duration::from_secs(240), run.wait_with_output())
        .await
        .expect("sipp finishes")
        .unwrap();
    let count = |name| sipp_count(dir.path(), name);
    assert!(
        out.status.success()
            && count("SuccessfulCall(C)") == Some(200)
            && count("FailedCall(C)") == Some(0),
        "sipp: {:?} successful, {:?} failed\n{}",
        count("SuccessfulCall(C)"),
        count("FailedCall(C)"),
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = ended_journal(pool).await;
    assert_eq!(rows.len(), 200, "one journal entry per call");
    let mut cross = 0;
    for r in &rows {
        assert_eq!(r.1, "answered", "{r:?}");
        let op = r.2.as_deref().expect("an operator");
        if Some(home[op].as_str()) != r.3.as_deref() {
            cross += 1;
        }
    }
    let on_a = rows
        .iter()
        .filter(|r| r.3.as_deref() == Some("node-a"))
        .count();
    assert!(on_a > 50 && on_a < 150, "{on_a} of 200 calls on A");
    assert!(
        cross > 0,
        "some calls answered by an operator on the other node"
    );
    one_call_at_a_time(&logs, &rows);
    let answered: usize = logs.iter().map(|l| l.lock().unwrap().calls.len()).sum();
    assert_eq!(answered, 200, "the phones answered every call");

    // 2. 60 more calls; A is killed 4 s in.
    let dir = tempfile::tempdir().unwrap();
    let run = sipp(scenario, edge.addr, &["-m", "60", "-r", "5"], dir.path());
    tokio::time::sleep(Duration::from_secs(4)).await;
    a.child.kill().await;
    let killed = Instant::now();
    let killed_ms = chrono::Utc::now().timestamp_millis();
    // B finalises A's calls within 10 s.
    loop {
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM journal_entries WHERE node_id = 'node-a' \
             AND disposition = 'in_progress'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if open == 0 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "{open} of A's calls still in progress 10 s after the kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let finalised = killed.elapsed();
    let out = tokio::time::timeout(Duration::from_secs(240), run.wait_with_output())
        .await
        .expect("sipp finishes")
        .unwrap();
    let _ = out;
    let created = count2(dir.path(), "TotalCallCreated");
    let (ok, failed) = (
        count2(dir.path(), "SuccessfulCall(C)"),
        count2(dir.path(), "FailedCall(C)"),
    );
    assert_eq!(created, 60);
    assert_eq!(ok + failed, 60);
    // Every call has exactly one entry: 200 before, 60 now.
    let rows = ended_journal(pool).await;
    let ids: std::collections::HashSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(rows.len(), 260, "one journal entry per call");
    assert_eq!(ids.len(), 260);
    let arrived: Vec<(Option<String>, i64, String, Option<String>)> =
        sqlx::query_as("SELECT node_id, arrived_at, disposition, end_reason FROM journal_entries")
            .fetch_all(pool)
            .await
            .unwrap();
    let lost = arrived
        .iter()
        .filter(|r| r.3.as_deref() == Some("node_lost"))
        .count() as u64;
    for r in &arrived {
        if r.0.as_deref() == Some("node-a") {
            assert!(
                r.2 == "answered" || r.3.as_deref() == Some("node_lost"),
                "{r:?}"
            );
        }
        if r.1 > killed_ms + 1000 {
            assert_eq!(
                r.0.as_deref(),
                Some("node-b"),
                "a call after the kill: {r:?}"
            );
            assert_eq!(r.2, "answered", "{r:?}");
        }
    }
    // The calls that failed are the ones A had up.
    assert_eq!(failed, lost, "SIPp's failed calls are A's lost ones");
    one_call_at_a_time(&logs, &rows);
    eprintln!(
        "kill: {lost} of A's calls ended as node_lost {:.1} s after the kill; {ok} of 60 \
         answered",
        finalised.as_secs_f64()
    );
    for t in &team {
        t.abort();
    }
    b.shutdown().await;
    drop(edge);
    drop(a);
    if let Some(s) = schema {
        api::drop_schema(&s).await;
    }
}

fn count2(dir: &std::path::Path, name: &str) -> u64 {
    sipp_count(dir, name).unwrap_or_else(|| panic!("{name} in SIPp's statistics"))
}
