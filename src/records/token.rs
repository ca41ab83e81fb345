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

/// Why a new token's holder is refused (the API and the console say it in their words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HolderError {
    #[error("`name`: 1 to 200 characters")]
    Name,
    #[error("`operator`: {0} is not a configured operator")]
    UnknownExtension(String),
    #[error("`operator`: an operator's token names their extension")]
    MissingExtension,
    #[error("`operator`: only operator tokens name an extension")]
    ExtensionForOtherRole,
}

impl HolderError {
    /// The field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            HolderError::Name => "name",
            _ => "operator",
        }
    }
}

/// Who may hold a new token: a name of 1 to 200 characters; an operator's token names a
/// configured extension (`configured`), and no other role's names one.
pub fn check_holder(
    name: &str,
    role: Role,
    operator: Option<&str>,
    configured: impl Fn(&str) -> bool,
) -> Result<(), HolderError> {
    if name.trim().is_empty() || name.trim().chars().count() > 200 {
        return Err(HolderError::Name);
    }
    match (role, operator) {
        (Role::Operator, Some(ext)) if configured(ext) => Ok(()),
        (Role::Operator, Some(ext)) => Err(HolderError::UnknownExtension(ext.to_string())),
        (Role::Operator, None) => Err(HolderError::MissingExtension),
        (_, Some(_)) => Err(HolderError::ExtensionForOtherRole),
        (_, None) => Ok(()),
    }
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

#[cfg(test)]
mod holder_tests {
    use super::*;

    #[test]
    fn a_token_holder_is_named_and_only_an_operator_names_a_configured_extension() {
        let configured = |ext: &str| ext == "1001";
        assert_eq!(
            check_holder("ok", Role::Operator, Some("1001"), configured),
            Ok(())
        );
        assert_eq!(
            check_holder("ok", Role::Supervisor, None, configured),
            Ok(())
        );
        let cases = [
            (" ", Role::Supervisor, None, HolderError::Name),
            (
                "ok",
                Role::Operator,
                Some("2002"),
                HolderError::UnknownExtension("2002".into()),
            ),
            ("ok", Role::Operator, None, HolderError::MissingExtension),
            (
                "ok",
                Role::Admin,
                Some("1001"),
                HolderError::ExtensionForOtherRole,
            ),
        ];
        for (name, role, ext, want) in cases {
            let e = check_holder(name, role, ext, configured).unwrap_err();
            assert_eq!(e, want);
            assert!(e.to_string().contains(&format!("`{}`", e.field())), "{e}");
        }
        let long = "я".repeat(201);
        assert_eq!(
            check_holder(&long, Role::Admin, None, configured),
            Err(HolderError::Name)
        );
    }
}
