//! The console's people: users with a login, a password, a role and (for the roles that
//! read every customer's data) a second factor. Pure rules here; the SQL is in
//! `store::users` and `store::sessions`, the login flow in `desk::accounts`.

pub mod guard;
pub mod password;
pub mod totp;

use super::role::Role;
use super::RecordError;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A user as the console and the CLI show them (never the password hash or the TOTP secret).
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub name: String,
    pub role: Role,
    /// For an operator: their extension.
    pub operator: Option<String>,
    /// Whether a TOTP secret has been confirmed with a first code.
    pub totp_enrolled: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub login: String,
    pub name: String,
    pub role: Role,
    pub operator: Option<String>,
}

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// The longest (argon2 would take any, but a megabyte "password" is an attack).
pub const MAX_PASSWORD: usize = 256;

impl NewUser {
    /// Checks the fields, naming the one that is wrong. `extensions` are the configured
    /// operators' extensions: an operator must be one of them, and no one else has one.
    pub fn validate(&self, extensions: &[String]) -> Result<(), RecordError> {
        validate_login(&self.login)?;
        let name = self.name.trim();
        if name.is_empty() {
            return Err(RecordError::invalid("name", "is empty"));
        }
        super::check_len("name", name, 200)?;
        match (&self.operator, self.role) {
            (None, Role::Operator) => Err(RecordError::invalid(
                "operator",
                "an operator needs their extension",
            )),
            (Some(ext), Role::Operator) if !extensions.contains(ext) => Err(RecordError::invalid(
                "operator",
                format!("extension {ext} is not a configured operator"),
            )),
            (Some(_), r) if r != Role::Operator => Err(RecordError::invalid(
                "operator",
                "only an operator has an extension",
            )),
            _ => Ok(()),
        }
    }
}

/// A login: 2 to 64 characters of Latin letters, digits, `.`, `_` and `-`, starting with a
/// letter. Kept to ASCII so that look-alike Cyrillic letters cannot make a second «ivanov».
pub fn validate_login(login: &str) -> Result<(), RecordError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !(2..=64).contains(&login.len()) {
        return Err(RecordError::invalid("login", "must be 2 to 64 characters"));
    }
    if !login.starts_with(|c: char| c.is_ascii_alphabetic()) || !login.chars().all(ok_char) {
        return Err(RecordError::invalid(
            "login",
            "must start with a Latin letter and hold only Latin letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(())
}

/// The password policy: length, and not the login itself.
pub fn validate_password(login: &str, password: &str) -> Result<(), RecordError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(RecordError::invalid(
            "password",
            format!("must be at least {MIN_PASSWORD} characters"),
        ));
    }
    if n > MAX_PASSWORD {
        return Err(RecordError::invalid(
            "password",
            format!("must be at most {MAX_PASSWORD} characters"),
        ));
    }
    if password.to_lowercase().contains(&login.to_lowercase()) {
        return Err(RecordError::invalid(
            "password",
            "must not contain the login",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(login: &str, role: Role, operator: Option<&str>) -> NewUser {
        NewUser {
            login: login.into(),
            name: "Иванова Мария".into(),
            role,
            operator: operator.map(Into::into),
        }
    }

    #[test]
    fn logins_are_plain_latin() {
        let ext = vec!["1001".to_string()];
        assert!(user("m.ivanova", Role::Supervisor, None)
            .validate(&ext)
            .is_ok());
        for bad in ["", "x", "1abc", "иванова", "a b", "a;drop", &"a".repeat(65)] {
            let e = user(bad, Role::Supervisor, None)
                .validate(&ext)
                .unwrap_err();
            assert!(e.to_string().contains("`login`"), "{bad}: {e}");
        }
    }

    #[test]
    fn operators_and_only_operators_have_a_configured_extension() {
        let ext = vec!["1001".to_string()];
        assert!(user("op", Role::Operator, Some("1001"))
            .validate(&ext)
            .is_ok());
        for (role, op) in [
            (Role::Operator, None),
            (Role::Operator, Some("9999")),
            (Role::Security, Some("1001")),
        ] {
            let e = user("op", role, op).validate(&ext).unwrap_err();
            assert!(e.to_string().contains("`operator`"), "{role:?} {op:?}: {e}");
        }
    }

    #[test]
    fn passwords_follow_the_policy() {
        assert!(validate_password("ivanova", "correct horse battery").is_ok());
        for bad in ["short", "xxIvanova123", &"x".repeat(257)] {
            let e = validate_password("ivanova", bad).unwrap_err();
            assert!(e.to_string().contains("`password`"), "{bad}: {e}");
        }
    }
}
