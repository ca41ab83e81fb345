//! Console accounts on both databases: failed logins sent at once are all counted, so a
//! guesser cannot outrun the lock-out by sending in parallel.

mod support;

use hotline::calendar::{Calendar, CalendarConfig};
use hotline::desk::accounts::{AccountSettings, Accounts, LoginOutcome};
use hotline::desk::Records;
use hotline::records::account::NewUser;
use hotline::records::role::Role;
use hotline::records::RecordsSettings;
use hotline::store::Store;
use std::sync::Arc;
use support::api::{drop_schema, fresh_database, Db};

async fn concurrent_failures_are_all_counted(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (url, schema) = fresh_database(db).await;
    let url = url.unwrap_or_else(|| format!("sqlite://{}", dir.path().join("t.db").display()));
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let cal = CalendarConfig {
        dir: concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/calendar").into(),
        ..Default::default()
    };
    let records = Records::new(
        store.clone(),
        Arc::new(Calendar::load(&cal).unwrap()),
        RecordsSettings::default(),
    );
    let mut settings = AccountSettings::default();
    settings.login_limit.max_failures = 1000;
    let accounts = Accounts::new(records, settings);
    let new = NewUser {
        login: "head".into(),
        name: "Петров".into(),
        role: Role::Supervisor,
        operator: None,
    };
    accounts
        .create_user(&new, "длинный-пароль-1", "test")
        .await
        .unwrap();

    let tries = 16;
    let guesses = (0..tries).map(|i| {
        let a = accounts.clone();
        tokio::spawn(async move {
            a.login(
                "head",
                &format!("guess-{i}"),
                "10.1.1.1",
                chrono::Utc::now(),
            )
            .await
            .unwrap()
        })
    });
    for r in futures::future::join_all(guesses).await {
        assert!(matches!(r.unwrap(), LoginOutcome::Refused));
    }
    for key in ["login:head", "addr:10.1.1.1"] {
        let n: i64 = sqlx::query_scalar("SELECT count FROM login_failures WHERE key = $1")
            .bind(key)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(n, tries, "{db:?} {key}");
    }
    let failed: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM audit_log WHERE action = 'login_failed'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(failed, tries);
    store.close().await;
    if let Some(s) = schema {
        drop_schema(&s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_are_all_counted_sqlite() {
    concurrent_failures_are_all_counted(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_failures_are_all_counted_postgres() {
    concurrent_failures_are_all_counted(Db::Postgres).await;
}
