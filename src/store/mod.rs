//! The records' database, through sqlx: SQLite as the embedded default (a file under the
//! data directory, no set-up) and PostgreSQL for production, with the same behaviour.
//!
//! One code path serves both: the pool is sqlx's `Any` driver, every query uses `$1`-style
//! placeholders (SQLite understands them too), every time is a BIGINT of Unix milliseconds
//! and every flag a BIGINT 0/1, so no type differs between the two. Only the migrations
//! differ in dialect (`schemas/sqlite/`, `schemas/postgres/`), and they are embedded in the
//! binary so that a deployed hotline never depends on its working directory.
//!
//! The SQL of each record lives beside its kind: [`journal`], [`voicemail`], [`callback`],
//! [`audit`], [`tokens`], [`users`] and [`sessions`] (the console's people), [`retention`], [`stats`], [`transcription`] (jobs) and
//! [`outbox`] (notifications). The domain types and rules are in
//! [`crate::records`].

pub mod alerts;
pub mod audit;
pub mod callback;
pub mod cluster;
pub mod inbox;
pub mod journal;
pub mod outbox;
pub mod phones;
pub mod queue;
pub mod quick;
pub mod retention;
pub mod sessions;
pub mod stats;
pub mod tickets;
pub mod tokens;
pub mod transcription;
pub mod users;
pub mod voicemail;

use chrono::{DateTime, Utc};
use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::query::Query;
use sqlx::{Any, AnyPool};
use std::sync::Once;
use std::time::Duration;

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL `{0}` is neither sqlite:// nor postgres://")]
    UnsupportedUrl(String),
    #[error("cannot open the database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: i64 },
    /// The request conflicts with the record's state (e.g. a callback completed twice).
    #[error("{0}")]
    Conflict(String),
}

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How long an SQLite connection waits for another's write lock. Generous: a call-centre
/// burst (two dozen operators saving at once) queues behind fsyncs rather than failing.
const SQLITE_BUSY_TIMEOUT: &str = "PRAGMA busy_timeout = 20000";

/// Bytes SQLite holds now (page caches, statements, schema), for `/metrics`: so that a
/// memory curve can be split into the database's part and the rest (the soak, issue 17).
pub fn sqlite_memory_used() -> i64 {
    // SAFETY: a read of SQLite's global counter; no arguments, callable from any thread.
    unsafe { libsqlite3_sys::sqlite3_memory_used() }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("schemas/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("schemas/postgres");

/// A connection pool and the backend it talks to. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The node of a cluster this process is (`[cluster] node_id`): it marks the calls it
    /// journals and the work it claims, so that a survivor can tell them apart.
    node: Option<std::sync::Arc<str>>,
    /// Where the pool connects (a connection of its own listens for the cluster queue's
    /// notifications).
    url: std::sync::Arc<str>,
}

impl Store {
    /// Opens the database (creating an SQLite file if it does not exist yet). Does not
    /// migrate: [`Store::migrate`] does, at start-up and from `hotline migrate`.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, None).await
    }

    /// [`Store::connect`] with at most `max_connections` (default: 4 on SQLite, 16 on
    /// PostgreSQL). A writer that must never wait behind the API's readers for a pooled
    /// connection (the call log) gets a pool of its own this way.
    pub async fn connect_with(
        url: &str,
        max_connections: Option<u32>,
    ) -> Result<Store, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            if let Some(dir) = sqlite_parent_dir(rest) {
                std::fs::create_dir_all(&dir).map_err(|e| StoreError::Connect {
                    url: url.to_string(),
                    source: sqlx::Error::Io(e),
                })?;
            }
            // `mode=rwc` creates the file; the driver's defaults give foreign keys on,
            // synchronous=FULL (a committed record survives a power cut) and a 5 s busy
            // wait. WAL is set on every connection below: sqlx 0.8 leaves the journal mode
            // alone, and SQLite's default (a rollback journal) lets any reader hold up a
            // commit, and costs two fsyncs a commit instead of one.
            let sep = if rest.contains('?') { '&' } else { '?' };
            let url = if rest.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let max = max_connections.unwrap_or(match backend {
            // SQLite has one writer at a time; a few readers are enough beside it.
            Backend::Sqlite => 4,
            Backend::Postgres => 16,
        });
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Persistent in the file; asked again on each connection so that a
                        // database made by an older build switches too.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        // Explicit, not the driver's default: a writer waits this long for
                        // the write lock before failing (see `begin_write`).
                        sqlx::query(SQLITE_BUSY_TIMEOUT).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact(&url),
                source,
            })?;
        Ok(Store {
            pool,
            backend,
            node: None,
            url: url.as_str().into(),
        })
    }

    /// The same pool, writing as node `node` of a cluster.
    pub fn with_node(mut self, node: Option<&str>) -> Store {
        self.node = node.map(std::sync::Arc::from);
        self
    }

    /// The node this store writes as; `None` on a single node.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Applies the migrations of `schemas/<backend>/` that the database lacks.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a transaction that will write. On SQLite it is `BEGIN IMMEDIATE`: it takes
    /// the write lock at once, waiting (busy timeout) behind another writer. A deferred
    /// `BEGIN` reads first and then tries to upgrade; in WAL mode, if another connection
    /// committed since its snapshot, SQLite answers `SQLITE_BUSY` at once and the busy
    /// timeout cannot help, which is how 23 of 24 concurrent API writes failed. Every write
    /// transaction goes through here, reads stay on [`Store::pool`].
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The directory an `sqlite:` URL's file lives in, to create it first.
fn sqlite_parent_dir(rest: &str) -> Option<std::path::PathBuf> {
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_path_buf())
}

/// A URL without its password, for error messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Milliseconds since the Unix epoch, the database's time format.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The inverse of [`ms`]; out-of-range values (never written by us) clamp to the epoch.
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub fn opt_from_ms(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(from_ms)
}

/// A value bound into dynamically built SQL.
#[derive(Debug, Clone)]
pub enum Param {
    Int(i64),
    Text(String),
}

/// SQL built piece by piece with `$n` placeholders numbered as values are bound, for the
/// queries whose WHERE clause depends on the filters given.
#[derive(Debug, Default)]
pub struct Sql {
    text: String,
    params: Vec<Param>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            params: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub fn bind(&mut self, value: Param) -> &mut Sql {
        self.params.push(value);
        self.text.push('$');
        self.text.push_str(&self.params.len().to_string());
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The query with every value bound, ready to run.
    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for p in &self.params {
            q = match p {
                Param::Int(v) => q.bind(*v),
                Param::Text(v) => q.bind(v.as_str()),
            };
        }
        q
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_only() {
        assert_eq!(
            redact("postgres://hotline:s3cret@db:5432/hotline"),
            "postgres://hotline:***@db:5432/hotline"
        );
        assert_eq!(
            redact("postgres://hotline@db/hotline"),
            "postgres://hotline@db/hotline"
        );
        assert_eq!(redact("sqlite://data/h.db"), "sqlite://data/h.db");
    }

    /// Every connection writes through a write-ahead log with full syncs: a reader never
    /// holds up the call log's commits, and a commit survives a power cut.
    #[tokio::test]
    async fn sqlite_connections_use_wal_with_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("h.db").display());
        let store = Store::connect(&url).await.unwrap();
        // Hold one connection so that the next check gets a second one.
        let mut first = store.pool().acquire().await.unwrap();
        let mut second = store.pool().acquire().await.unwrap();
        for conn in [&mut first, &mut second] {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!((mode.as_str(), sync), ("wal", 2));
        }
    }

    #[test]
    fn sqlite_parent_dir_of_urls() {
        assert_eq!(
            sqlite_parent_dir("//data/x/hotline.db?mode=rwc"),
            Some("data/x".into())
        );
        assert_eq!(sqlite_parent_dir("//hotline.db"), None);
        assert_eq!(sqlite_parent_dir(":memory:"), None);
    }

    #[test]
    fn sql_numbers_placeholders_in_order() {
        let mut sql = Sql::new("SELECT 1 WHERE a = ");
        sql.bind(Param::Int(1))
            .push(" AND b LIKE ")
            .bind(Param::Text("x".into()));
        assert_eq!(sql.text(), "SELECT 1 WHERE a = $1 AND b LIKE $2");
    }

    #[test]
    fn like_escape_escapes_wildcards() {
        assert_eq!(like_escape("50%_a\\b"), "50\\%\\_a\\\\b");
    }
}
