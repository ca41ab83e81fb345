//! Helpers for the records and API tests: a database of each kind (a temporary SQLite
//! file, or a schema of its own on the PostgreSQL server at 127.0.0.1:5432), the hotline
//! started on it, tokens for every role, and an HTTP client.

use hotline::app::Hotline;
use hotline::records::journal::NewCall;
use hotline::records::role::Role;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::collections::HashMap;

/// The PostgreSQL server every machine here (and CI) runs; override with
/// `HOTLINE_TEST_POSTGRES`.
pub fn postgres_url() -> String {
    std::env::var("HOTLINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, empty database of `db`'s kind: its URL (`None`: the default SQLite file under
/// the data dir) and, for PostgreSQL, the schema that isolates the test from the others
/// (first on the search path of every connection; [`drop_schema`] removes it).
pub async fn fresh_database(db: Db) -> (Option<String>, Option<String>) {
    match db {
        Db::Sqlite => (None, None),
        Db::Postgres => {
            use sqlx::Connection;
            let schema = format!("t_{}", rand_suffix());
            let mut conn = sqlx::PgConnection::connect(&postgres_url())
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 (see .ci/run)");
            // The migrations' extension, made once: tests migrating side by side would race
            // to create it.
            static EXTENSION: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
            EXTENSION
                .get_or_init(|| async {
                    let mut c = sqlx::PgConnection::connect(&postgres_url()).await.unwrap();
                    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
                        .execute(&mut c)
                        .await
                        .expect("pg_trgm");
                })
                .await;
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&mut conn)
                .await
                .expect("create schema");
            let url = format!("{}?options=-c%20search_path%3D{schema}", postgres_url());
            (Some(url), Some(schema))
        }
    }
}

/// Drops a schema [`fresh_database`] made, so that test runs do not pile them up.
pub async fn drop_schema(schema: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_url()).await {
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut conn)
            .await;
    }
}

fn rand_suffix() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

/// The hotline on a fresh database, with a token per role.
pub struct Api {
    pub hotline: Hotline,
    pub dir: tempfile::TempDir,
    pub base: String,
    pub client: reqwest::Client,
    pub tokens: HashMap<&'static str, String>,
    pg_schema: Option<String>,
}

/// The role names, as the API spells them.
pub const ROLES: [&str; 5] = [
    "operator",
    "supervisor",
    "card_department",
    "security",
    "admin",
];

pub async fn start(db: Db) -> Api {
    start_with(db, "").await
}

/// Starts with `tables` appended to the test config (e.g. a `[records]` table).
pub async fn start_with(db: Db, tables: &str) -> Api {
    start_edited(db, tables, |_| {}).await
}

/// [`start_with`], with `edit` applied to the config first.
pub async fn start_edited(
    db: Db,
    tables: &str,
    edit: impl FnOnce(&mut hotline::config::Config),
) -> Api {
    let (mut config, dir) = super::config("", tables);
    edit(&mut config);
    let (url, pg_schema) = fresh_database(db).await;
    config.storage.database_url = url;
    // The records' deadlines are checked against the real calendar and default hours.
    config.calendar = hotline::calendar::CalendarConfig {
        dir: concat!(env!("CARGO_MANIFEST_DIR"), "/sip-config/calendar").into(),
        ..Default::default()
    };
    let hotline = Hotline::start(config).await.expect("hotline starts");
    let base = format!("http://{}/api/v1", hotline.http_addr);
    let mut tokens = HashMap::new();
    for name in ROLES {
        let role = Role::parse(name).unwrap();
        let operator = (role == Role::Operator).then_some(super::OPERATOR);
        let (_, secret) = hotline
            .records
            .create_token(&format!("test {name}"), role, operator)
            .await
            .unwrap();
        tokens.insert(name, secret);
    }
    Api {
        hotline,
        dir,
        base,
        client: reqwest::Client::new(),
        tokens,
        pg_schema,
    }
}

impl Api {
    /// A request as `role` (None: without a token).
    pub async fn call(
        &self,
        role: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, bytes) = self.raw(role, method, path, body, &[]).await;
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, json)
    }

    /// The status of a request whose body is not read (an event stream never ends).
    pub async fn status_only(&self, role: Option<&str>, method: Method, path: &str) -> StatusCode {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(r) = role {
            req = req.bearer_auth(&self.tokens[r]);
        }
        req.send().await.expect("HTTP request").status()
    }

    pub async fn raw(
        &self,
        role: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(r) = role {
            req = req.bearer_auth(&self.tokens[r]);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("HTTP request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body").to_vec();
        (status, headers, bytes)
    }

    pub async fn get(&self, role: &str, path: &str) -> (StatusCode, Value) {
        self.call(Some(role), Method::GET, path, None).await
    }

    /// A journal entry as the call flow would make it.
    pub async fn journal_call(&self, call_id: &str, phone: &str, arrived: &str) -> i64 {
        self.hotline
            .records
            .record_call(&NewCall {
                call_id: Some(call_id.to_string()),
                arrived_at: arrived.parse().unwrap(),
                phone: phone.to_string(),
                caller_name: None,
            })
            .await
            .unwrap()
    }

    pub async fn stop(self) {
        self.hotline.shutdown().await;
        if let Some(schema) = &self.pg_schema {
            drop_schema(schema).await;
        }
    }
}

/// Runs `case(Db)` as two tests, `sqlite` and `postgres`, in a module named `$name`.
#[macro_export]
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::support::api::Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(super::support::api::Db::Postgres).await;
            }
        }
    };
}
