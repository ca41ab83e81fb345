//! API bearer tokens: who holds one, and how a secret is made and kept. Only a SHA-256 of
//! each secret is stored, so a copy of the database does not let anyone call the API; the
//! secret itself is shown once, when it is made.

use super::role::Role;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// A token's holder, as the API sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: i64,
    /// Who holds it; the audit log's actor.
    pub name: String,
    pub role: Role,
    /// For operators: their extension (field 8 of the forms they make).
    pub operator: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// 256 random bits in hex, from the OS's secure source: the body of every secret we hand
/// out (API tokens, console sessions, CSRF tokens).
pub fn random_hex() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    hex::encode(raw)
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A fresh API token: `hl_` and [`random_hex`].
pub fn new_secret() -> String {
    format!("hl_{}", random_hex())
}

/// What is stored of a secret.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_only_their_hash_is_kept() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("hl_") && a.len() == 3 + 64, "{a}");
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a[3..]));
    }
}
