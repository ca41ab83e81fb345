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

/// A fresh secret: `hl_` and 256 random bits in hex, from the OS's secure source.
pub fn new_secret() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    format!("hl_{}", hex::encode(raw))
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
