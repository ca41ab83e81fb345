//! The call log ([`hotline::desk::calllog`]) against a database that goes away, on
//! SQLite and on the PostgreSQL server: writes are answered `Spooled` within the bound while
//! the database cannot take them, and every one lands, in order and once, when it is back
//! (also after a crash of the hotline in the outage).
//!
//! The outage is a lock held from a second connection: SQLite's write lock (`BEGIN
//! IMMEDIATE`), or PostgreSQL's `ACCESS EXCLUSIVE` lock on `journal_entries`, which stops
//! even the reads. Either way the call log's writes hang rather than fail, the harder case
//! for a bound.

mod support;

use hotline::calendar::{Calendar, CalendarConfig};
use hotline::desk::calllog::{CallLog, CallVoicemail, Durable, SPOOL_FILE};
use hotline::desk::Records;
use hotline::records::journal::{CallProgress, Disposition, Entry, NewCall};
use hotline::records::RecordsSettings;
use hotline::store::Store;
use sqlx::Connection;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::api::{drop_schema, fresh_database, Db};
use tokio::sync::watch;

/// The bound on a caller's wait the tests run with.
const BOUND: Duration = Duration::from_millis(500);
/// What a spooled answer may take beyond the bound (an fsync, a busy test machine).
const SLACK: Duration = Duration::from_millis(700);

struct Setup {
    records: Records,
    url: String,
    schema: Option<String>,
    dir: tempfile::TempDir,
}

async fn setup(db: Db) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = fresh_database(db).await;
    let url = url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("h.db").display()));
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let calendar = Calendar::load(&CalendarConfig {
        dir: concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/calendar").into(),
        ..Default::default()
    })
    .unwrap();
    Setup {
        records: Records::new(store, Arc::new(calendar), RecordsSettings::default()),
        url,
        schema,
        dir,
    }
}

impl Setup {
    fn spool_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("spool")
    }

    async fn finish(self) {
        self.records.store.close().await;
        if let Some(schema) = &self.schema {
            drop_schema(schema).await;
        }
    }
}

/// The database made unavailable to writes from a second connection until released.
enum Outage {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Outage {
    async fn start(url: &str) -> Outage {
        if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            Outage::Sqlite(c)
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("LOCK TABLE journal_entries IN ACCESS EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .unwrap();
            Outage::Postgres(c)
        }
    }

    async fn end(self) {
        match self {
            Outage::Sqlite(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            Outage::Postgres(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

fn arrival(call_id: &str, phone: &str) -> NewCall {
    NewCall {
        call_id: Some(call_id.into()),
        arrived_at: chrono::Utc::now(),
        phone: phone.into(),
        caller_name: Some(format!("caller {call_id}")),
    }
}

/// Awaits a write, checking that it was answered within the bound.
async fn timed(
    what: &str,
    w: impl std::future::Future<Output = Result<Durable, hotline::desk::calllog::CallLogError>>,
) -> Durable {
    let t = Instant::now();
    let d = w.await.unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        t.elapsed() <= BOUND + SLACK,
        "{what} answered after {:?}",
        t.elapsed()
    );
    d
}

async fn drained(log: &CallLog) {
    let t = Instant::now();
    while log.pending() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{} writes still pending",
            log.pending()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn entry(r: &Records, call_id: &str) -> Entry {
    let id = hotline::store::journal::id_by_call_id(&r.store, call_id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no entry for {call_id}"));
    hotline::store::journal::get(&r.store, id).await.unwrap()
}

async fn count(r: &Records, from: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {from}"))
        .fetch_one(r.store.pool())
        .await
        .unwrap()
}

fn spool_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(SPOOL_FILE)).map_or(0, |m| m.len())
}

/// Three calls' writes, made while the database is away: a's progress (a was stored
/// before), b from arrival to a voicemail and a last progress, c's arrival.
async fn writes_in_outage(log: &CallLog, answered_at: chrono::DateTime<chrono::Utc>) {
    let answer = CallProgress {
        answered_at: Some(answered_at),
        operator: Some("1001".into()),
        disposition: Some(Disposition::Answered),
        wait_ms: Some(2500),
        ..CallProgress::default()
    };
    let writes: Vec<(&str, Durable)> = vec![
        (
            "a progress",
            timed("a progress", log.progress("a".into(), answer)).await,
        ),
        (
            "b arrival",
            timed("b arrival", log.arrived(arrival("b", "+79785550002"))).await,
        ),
        (
            "b waited",
            timed(
                "b waited",
                log.progress(
                    "b".into(),
                    CallProgress {
                        wait_ms: Some(60_000),
                        ..CallProgress::default()
                    },
                ),
            )
            .await,
        ),
        (
            "b voicemail",
            timed(
                "b voicemail",
                log.voicemail(
                    "b".into(),
                    CallVoicemail {
                        arrived_at: chrono::Utc::now(),
                        file: "voicemail/b.wav".into(),
                        duration: Duration::from_secs(7),
                        empty: false,
                        after_hours: false,
                    },
                ),
            )
            .await,
        ),
        (
            "b ended",
            timed(
                "b ended",
                log.progress(
                    "b".into(),
                    CallProgress {
                        ended_at: Some(answered_at + chrono::Duration::seconds(90)),
                        // After the voicemail's own disposition: the order decides.
                        disposition: Some(Disposition::Failed),
                        ..CallProgress::default()
                    },
                ),
            )
            .await,
        ),
        (
            "c arrival",
            timed("c arrival", log.arrived(arrival("c", "+79785550003"))).await,
        ),
    ];
    for (what, d) in writes {
        assert_eq!(d, Durable::Spooled, "{what}");
    }
}

/// Everything [`writes_in_outage`] wrote is in the database, once and in order.
async fn all_landed(r: &Records, answered_at: chrono::DateTime<chrono::Utc>) {
    let a = entry(r, "a").await;
    assert_eq!(a.seq, 1);
    assert_eq!(a.disposition, Disposition::Answered);
    assert_eq!(a.operator.as_deref(), Some("1001"));
    assert_eq!(
        a.answered_at.map(|t| t.timestamp_millis()),
        Some(answered_at.timestamp_millis())
    );
    assert_eq!(a.wait_s, Some(2.5));
    let b = entry(r, "b").await;
    assert_eq!(b.seq, 2);
    assert_eq!(b.caller_name.as_deref(), Some("caller b"));
    assert_eq!(b.wait_s, Some(60.0));
    assert_eq!(
        b.disposition,
        Disposition::Failed,
        "b's last write applied last"
    );
    assert!(b.ended_at.is_some());
    assert!(b.voicemail.is_some(), "b's voicemail is linked");
    let c = entry(r, "c").await;
    assert_eq!(c.seq, 3);
    assert_eq!(count(r, "journal_entries").await, 3);
    assert_eq!(count(r, "voicemails").await, 1);
    assert_eq!(count(r, "callback_forms").await, 1);
}

async fn outage_then_back(db: Db) {
    let s = setup(db).await;
    let (stop, stop_rx) = watch::channel(false);
    let (log, task) =
        CallLog::spawn_with(s.records.clone(), s.spool_dir(), BOUND, stop_rx).unwrap();
    assert_eq!(
        timed("a arrival", log.arrived(arrival("a", "+79785550001"))).await,
        Durable::Stored
    );
    let outage = Outage::start(&s.url).await;
    let answered_at = chrono::Utc::now();
    writes_in_outage(&log, answered_at).await;
    assert_eq!(log.pending(), 6);
    assert!(spool_len(&s.spool_dir()) > 0, "the writes are in the spool");
    // Still away a while: the retries fail and nothing is lost or doubled.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(log.pending(), 6);
    outage.end().await;
    drained(&log).await;
    all_landed(&s.records, answered_at).await;
    assert_eq!(
        spool_len(&s.spool_dir()),
        0,
        "the spool is emptied once stored"
    );
    // Back to normal: stored at once, numbered next.
    assert_eq!(
        timed("d arrival", log.arrived(arrival("d", "+79785550004"))).await,
        Durable::Stored
    );
    assert_eq!(entry(&s.records, "d").await.seq, 4);
    stop.send(true).unwrap();
    task.await.unwrap();
    s.finish().await;
}
on_both_databases!(outage_then_back);

async fn crash_during_outage(db: Db) {
    let s = setup(db).await;
    let (_stop, stop_rx) = watch::channel(false);
    let (log, task) =
        CallLog::spawn_with(s.records.clone(), s.spool_dir(), BOUND, stop_rx).unwrap();
    assert_eq!(
        log.arrived(arrival("a", "+79785550001")).await.unwrap(),
        Durable::Stored
    );
    let outage = Outage::start(&s.url).await;
    let answered_at = chrono::Utc::now();
    writes_in_outage(&log, answered_at).await;
    // The crash: the task dies where it stands, without its shutdown's last try.
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    drop(log);
    assert!(spool_len(&s.spool_dir()) > 0);
    outage.end().await;
    assert_eq!(
        count(&s.records, "journal_entries").await,
        1,
        "only a before the crash"
    );
    // The next start replays the spool.
    let (stop, stop_rx) = watch::channel(false);
    let (log, task) =
        CallLog::spawn_with(s.records.clone(), s.spool_dir(), BOUND, stop_rx).unwrap();
    drained(&log).await;
    all_landed(&s.records, answered_at).await;
    assert_eq!(spool_len(&s.spool_dir()), 0);
    log.arrived(arrival("d", "+79785550004")).await.unwrap();
    assert_eq!(
        entry(&s.records, "d").await.seq,
        4,
        "no number lost or doubled"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
    s.finish().await;
}
on_both_databases!(crash_during_outage);

/// What the call log's batches apply (`update_progress_many`, several calls' updates in a
/// fixed number of statements) ends exactly as the same updates one by one: the same
/// columns and the same audit lines, across its 200-update chunks too; a Call-ID without
/// an entry fails the batch.
async fn batched_progress_matches_one_by_one(db: Db) {
    use hotline::store::{audit, journal};
    let s = setup(db).await;
    let r = &s.records;
    const CALLS: usize = 120;
    let t0 = chrono::Utc::now();
    let mut calls = Vec::new();
    for i in 0..CALLS {
        for kind in ["one", "many"] {
            calls.push(arrival(&format!("{kind}-{i}"), &format!("+7978{i:07}")));
        }
    }
    r.record_calls(&calls).await.unwrap();
    // Per call: answered, then ended (one value repeated, one changed), then a replay.
    let updates = |i: usize| -> Vec<CallProgress> {
        let at = |ms: i64| Some(t0 + chrono::Duration::milliseconds(ms));
        let answered = CallProgress {
            answered_at: at(1000 + i as i64),
            wait_ms: Some(i as i64),
            operator: Some(format!("{}", 1000 + i % 7)),
            disposition: Some(Disposition::Answered),
            ..CallProgress::default()
        };
        let ended = CallProgress {
            ended_at: at(9000),
            disposition: Some(if i.is_multiple_of(3) {
                Disposition::Failed
            } else {
                Disposition::Answered
            }),
            recording: i.is_multiple_of(2).then(|| format!("recordings/{i}.wav")),
            ..CallProgress::default()
        };
        vec![answered, ended.clone(), ended]
    };
    let one_by_one: Vec<Vec<CallProgress>> = (0..CALLS).map(updates).collect();
    for (i, list) in one_by_one.iter().enumerate() {
        let id = journal::id_by_call_id(&r.store, &format!("one-{i}"))
            .await
            .unwrap()
            .unwrap();
        for p in list {
            journal::update_progress(&r.store, id, p).await.unwrap();
        }
    }
    // The same, interleaved across calls as the FIFO holds them: every call's first
    // update, then every call's second… (360 updates: the chunks split calls).
    let names: Vec<String> = (0..CALLS).map(|i| format!("many-{i}")).collect();
    let mut batch: Vec<(&str, &CallProgress)> = Vec::new();
    for step in 0..3 {
        for (i, list) in one_by_one.iter().enumerate() {
            batch.push((names[i].as_str(), &list[step]));
        }
    }
    let mut tx = r.store.pool().begin().await.unwrap();
    journal::update_progress_many(&mut tx, &batch, chrono::Utc::now())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let lines = |h: Vec<audit::AuditEntry>| -> Vec<(String, Option<String>, Option<String>)> {
        h.into_iter()
            .filter(|a| a.action == "update")
            .map(|a| (a.field.unwrap_or_default(), a.old_value, a.new_value))
            .collect()
    };
    for i in 0..CALLS {
        let (a, b) = (
            entry(r, &format!("one-{i}")).await,
            entry(r, &format!("many-{i}")).await,
        );
        assert_eq!(
            (a.answered_at, a.ended_at, a.wait_s, a.disposition),
            (b.answered_at, b.ended_at, b.wait_s, b.disposition),
            "call {i}"
        );
        assert_eq!((&a.operator, &a.recording), (&b.operator, &b.recording));
        assert!(b.answered_at.is_some() && b.ended_at.is_some());
        let (ha, hb) = (
            lines(audit::history(&r.store, "journal", a.id).await.unwrap()),
            lines(audit::history(&r.store, "journal", b.id).await.unwrap()),
        );
        assert_eq!(ha, hb, "audit of call {i}");
        assert!(ha.len() >= 5, "{ha:?}");
    }
    // A Call-ID without an entry fails the batch, and the transaction changes nothing.
    let before = count(r, "audit_log").await;
    let stray = CallProgress {
        wait_ms: Some(1),
        ..CallProgress::default()
    };
    let mut tx = r.store.pool().begin().await.unwrap();
    let e = journal::update_progress_many(
        &mut tx,
        &[("many-0", &stray), ("nobody", &stray)],
        chrono::Utc::now(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("nobody"), "{e}");
    drop(tx);
    assert_eq!(count(r, "audit_log").await, before);
    assert_eq!(entry(r, "many-0").await.wait_s, Some(0.0));
    s.finish().await;
}
on_both_databases!(batched_progress_matches_one_by_one);
