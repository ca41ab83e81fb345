//! Faults, as tests: the database taken away in the middle of calls. PostgreSQL is reached
//! through a proxy ([`support::pgproxy`]) that can cut it off, so the server the other
//! tests share keeps running.

mod support;

use std::time::{Duration, Instant};
use support::api::{drop_schema, fresh_database, Db};
use support::pgproxy::PgProxy;
use support::*;

/// `/healthz` within `limit`, as (status, JSON).
async fn health(http: std::net::SocketAddr, limit: Duration) -> (u16, serde_json::Value) {
    let (status, body) = tokio::time::timeout(limit, http_get(http, "/healthz"))
        .await
        .unwrap_or_else(|_| panic!("/healthz gave no answer within {limit:?}"));
    (status, serde_json::from_str(&body).unwrap())
}

/// PostgreSQL away for 30 s while calls come and go: every call is answered, `/healthz`
/// answers at once and says the database is unreachable, and once it is back every call
/// has its journal entry, numbered without gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_away_for_30_s_during_calls_loses_nothing() {
    let (url, schema) = fresh_database(Db::Postgres).await;
    let (url, schema) = (url.unwrap(), schema.unwrap());
    let upstream = tokio::net::lookup_host("127.0.0.1:5432")
        .await
        .unwrap()
        .next()
        .unwrap();
    let upstream = std::env::var("HOTLINE_TEST_POSTGRES")
        .ok()
        .and_then(|u| {
            let host = u.split('@').nth(1)?.split('/').next()?.to_string();
            std::net::ToSocketAddrs::to_socket_addrs(&host).ok()?.next()
        })
        .unwrap_or(upstream);
    let proxy = PgProxy::start(upstream).await;
    let (mut config, _dir) = config("", &format!("[limits]\n{TRUSTED_LOOPBACK}\n"));
    config.storage.database_url = Some(proxy.url(&url));
    let hotline = hotline::app::Hotline::start(config).await.expect("starts");
    let (status, h) = health(hotline.http_addr, Duration::from_secs(3)).await;
    assert_eq!(status, 200, "{h}");
    assert_eq!(h["database"]["reachable"], true, "{h}");

    let mut call_ids = Vec::new();
    let mut call = |n: usize| {
        let id = format!("fault-{n}@test");
        call_ids.push(id.clone());
        let sip = hotline.sip_addr;
        async move {
            let mut phone = Phone::call(sip, "UDP", &id, &[(0, "PCMU")]).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            phone.bye().await;
        }
    };
    call(0).await;
    proxy.down();
    let away = Instant::now();
    let mut n = 1;
    let mut slowest = Duration::ZERO;
    while away.elapsed() < Duration::from_secs(30) {
        call(n).await;
        n += 1;
        let asked = Instant::now();
        let (status, h) = health(hotline.http_addr, Duration::from_secs(3)).await;
        slowest = slowest.max(asked.elapsed());
        assert_eq!(status, 200, "calls are still answered: {h}");
        assert_eq!(h["database"]["reachable"], false, "{h}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert!(
        slowest < Duration::from_secs(3),
        "/healthz took {slowest:?}"
    );
    proxy.up();
    call(n).await;
    let total = n + 1;

    // Every call, before, during and after the outage, is in the journal with its end.
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut rows: Vec<(i64, String, Option<i64>)> = Vec::new();
    for _ in 0..300 {
        rows = sqlx::query_as(
            "SELECT seq, call_id, ended_at FROM journal_entries WHERE call_id LIKE 'fault-%' ORDER BY seq",
        )
        .fetch_all(&mut db)
        .await
        .unwrap();
        if rows.len() == total && rows.iter().all(|r| r.2.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(rows.len(), total, "{rows:?}");
    assert!(rows.iter().all(|r| r.2.is_some()), "{rows:?}");
    for id in &call_ids {
        assert!(
            rows.iter().any(|r| r.1.starts_with(&format!("{id};"))),
            "{id} missing: {rows:?}"
        );
    }
    let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (1..=total as i64).collect::<Vec<_>>(), "gapless");
    let (_, h) = health(hotline.http_addr, Duration::from_secs(3)).await;
    assert_eq!(h["database"]["reachable"], true, "{h}");
    hotline.shutdown().await;
    drop_schema(&schema).await;
}
