//! The SQL of API bearer tokens ([`crate::records::token`]): only the secret's hash is
//! stored.

use super::{from_ms, ms, Store, StoreError};
use crate::records::role::Role;
use crate::records::token::{hash, new_secret, TokenInfo};
use chrono::Utc;
use sqlx::Row;

/// Makes a token; returns its id and the secret (shown once).
pub async fn create(
    store: &Store,
    name: &str,
    role: Role,
    operator: Option<&str>,
) -> Result<(i64, String), StoreError> {
    let secret = new_secret();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO api_tokens (name, role, operator, token_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(operator)
    .bind(hash(&secret))
    .bind(ms(Utc::now()))
    .fetch_one(store.pool())
    .await?;
    Ok((id, secret))
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<TokenInfo, StoreError> {
    let role: String = r.try_get(2)?;
    Ok(TokenInfo {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Conflict(format!("unknown role {role} in api_tokens")))?,
        operator: r.try_get(3)?,
        created_at: from_ms(r.try_get(4)?),
        revoked_at: r.try_get::<Option<i64>, _>(5)?.map(from_ms),
    })
}

/// The holder of a valid (not revoked) token.
pub async fn authenticate(store: &Store, token: &str) -> Result<Option<TokenInfo>, StoreError> {
    let row = sqlx::query(
        "SELECT id, name, role, operator, created_at, revoked_at FROM api_tokens \
         WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash(token))
    .fetch_optional(store.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(store: &Store) -> Result<Vec<TokenInfo>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, name, role, operator, created_at, revoked_at FROM api_tokens ORDER BY id",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

pub async fn revoke(store: &Store, id: i64) -> Result<(), StoreError> {
    let done =
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(ms(Utc::now()))
            .bind(id)
            .execute(store.pool())
            .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            entity: "token",
            id,
        });
    }
    Ok(())
}
