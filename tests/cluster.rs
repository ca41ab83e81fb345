//! Two hotline nodes on one PostgreSQL behind real Kamailio (Debian's `kamailio`, its
//! dispatcher, with `sip-config/kamailio/kamailio.cfg`): calls are spread over both nodes,
//! and a node that drains (a rolling upgrade) loses no call. Its call in progress goes on
//! to its end, new calls are refused with 503 and Kamailio places them on the other node,
//! and the node stops once its last call is over. Every call has one journal entry.

mod support;

use hotline::app::Hotline;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
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
    let (mut config, dir) = config("", "");
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
        "00:00-23:59",
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
