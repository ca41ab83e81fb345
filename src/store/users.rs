//! The SQL of the console's users ([`crate::records::account`]), their recovery codes and
//! the failed-login counters. Every change to a user is written with its audit line by the
//! desk, in one transaction.

use super::{from_ms, ms, opt_from_ms, Store, StoreError};
use crate::records::account::guard::Failures;
use crate::records::account::{NewUser, User};
use crate::records::role::Role;
use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, Row};

/// What a login checks, beside the user: kept out of [`User`] so that nothing shows it.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub password_hash: String,
    /// base32.
    pub totp_secret: Option<String>,
    pub totp_last_step: Option<i64>,
}

const COLUMNS: &str = "id, login, name, role, operator, totp_enrolled, disabled_at, created_at, \
                       password_hash, totp_secret, totp_last_step";

fn from_row(r: &sqlx::any::AnyRow) -> Result<(User, Credentials), StoreError> {
    let role: String = r.try_get(3)?;
    let user = User {
        id: r.try_get(0)?,
        login: r.try_get(1)?,
        name: r.try_get(2)?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Conflict(format!("unknown role {role} in users")))?,
        operator: r.try_get(4)?,
        totp_enrolled: r.try_get::<i64, _>(5)? != 0,
        disabled: r.try_get::<Option<i64>, _>(6)?.is_some(),
        created_at: from_ms(r.try_get(7)?),
    };
    let cred = Credentials {
        password_hash: r.try_get(8)?,
        totp_secret: r.try_get(9)?,
        totp_last_step: r.try_get(10)?,
    };
    Ok((user, cred))
}

pub async fn insert(
    conn: &mut AnyConnection,
    u: &NewUser,
    password_hash: &str,
    totp_secret: Option<&str>,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (login, name, role, operator, password_hash, totp_secret, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(&u.login)
    .bind(u.name.trim())
    .bind(u.role.as_str())
    .bind(&u.operator)
    .bind(password_hash)
    .bind(totp_secret)
    .bind(ms(now))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("login {} is taken", u.login))
        }
        _ => e.into(),
    })?;
    Ok(id)
}

pub async fn by_login(
    store: &Store,
    login: &str,
) -> Result<Option<(User, Credentials)>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE login = $1"))
        .bind(login)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn by_id(store: &Store, id: i64) -> Result<Option<(User, Credentials)>, StoreError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(store: &Store) -> Result<Vec<User>, StoreError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM users ORDER BY login"))
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(|r| from_row(r).map(|(u, _)| u)).collect()
}

pub async fn set_password(conn: &mut AnyConnection, id: i64, hash: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn disable(
    conn: &mut AnyConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done =
        sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2 AND disabled_at IS NULL")
            .bind(ms(now))
            .bind(id)
            .execute(&mut *conn)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// A new secret to enrol, not yet confirmed; the old recovery codes go with the old secret.
pub async fn set_totp(conn: &mut AnyConnection, id: i64, secret: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE users SET totp_secret = $1, totp_enrolled = 0, totp_last_step = NULL WHERE id = $2",
    )
    .bind(secret)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM user_recovery_codes WHERE user_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Spends a TOTP step: true only if it is later than the last one spent (checked and set
/// in one statement, so two requests racing with one code cannot both pass).
pub async fn spend_totp_step(
    conn: &mut AnyConnection,
    id: i64,
    step: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE users SET totp_last_step = $1, totp_enrolled = 1 \
         WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
    )
    .bind(step)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn add_recovery_codes(
    conn: &mut AnyConnection,
    id: i64,
    hashes: &[String],
) -> Result<(), StoreError> {
    for h in hashes {
        sqlx::query("INSERT INTO user_recovery_codes (user_id, code_hash) VALUES ($1, $2)")
            .bind(id)
            .bind(h)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Spends a recovery code: true if it was the user's and unused.
pub async fn spend_recovery_code(
    conn: &mut AnyConnection,
    id: i64,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE user_recovery_codes SET used_at = $1 \
         WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
    )
    .bind(ms(now))
    .bind(id)
    .bind(hash)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn unused_recovery_codes(store: &Store, id: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM user_recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(id)
    .fetch_one(store.pool())
    .await?)
}

pub async fn failures(store: &Store, key: &str) -> Result<Option<Failures>, StoreError> {
    let row = sqlx::query("SELECT count, since, locked_until FROM login_failures WHERE key = $1")
        .bind(key)
        .fetch_optional(store.pool())
        .await?;
    row.map(|r| -> Result<Failures, StoreError> {
        Ok(Failures {
            count: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(u32::MAX),
            since: from_ms(r.try_get(1)?),
            locked_until: opt_from_ms(r.try_get(2)?),
        })
    })
    .transpose()
}

/// The failures of `key`, locked for this transaction (the row is made if missing), so that
/// failures arriving at once are all counted: `BEGIN IMMEDIATE` serialises them on SQLite,
/// `FOR UPDATE` on PostgreSQL.
pub async fn lock_failures(
    conn: &mut AnyConnection,
    backend: super::Backend,
    key: &str,
) -> Result<Failures, StoreError> {
    sqlx::query(
        "INSERT INTO login_failures (key, count, since) VALUES ($1, 0, 0) ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .execute(&mut *conn)
    .await?;
    let lock = match backend {
        super::Backend::Postgres => " FOR UPDATE",
        super::Backend::Sqlite => "",
    };
    let r = sqlx::query(&format!(
        "SELECT count, since, locked_until FROM login_failures WHERE key = $1{lock}"
    ))
    .bind(key)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Failures {
        count: u32::try_from(r.try_get::<i64, _>(0)?).unwrap_or(u32::MAX),
        since: from_ms(r.try_get(1)?),
        locked_until: opt_from_ms(r.try_get(2)?),
    })
}

pub async fn put_failures(
    conn: &mut AnyConnection,
    key: &str,
    f: &Failures,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO login_failures (key, count, since, locked_until) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (key) DO UPDATE SET count = $2, since = $3, locked_until = $4",
    )
    .bind(key)
    .bind(i64::from(f.count))
    .bind(ms(f.since))
    .bind(f.locked_until.map(ms))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn clear_failures(conn: &mut AnyConnection, key: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM login_failures WHERE key = $1")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
