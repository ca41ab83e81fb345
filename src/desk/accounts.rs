//! The console's people through the desk: users (made by the CLI or an admin), logins with
//! the lock-out, the second factor, and server-side sessions. Every login, logout, failure
//! and lock-out is written to the audit log (entity `user`).
//!
//! # Why these choices
//! * A session is a random secret in an HttpOnly cookie, and the database keeps only its
//!   SHA-256: a restart or another node keeps it, and logout ends it wherever it is used.
//! * A session opened by the password alone, for a role that needs a second factor, opens
//!   nothing but the code page; the code ends it and opens a new one (a fresh secret, so a
//!   session id seen before the code is worth nothing after).
//! * A refusal never says whether the login exists: an unknown login spends the time of a
//!   password check, counts failures and locks as a real one does.

use super::{DeskError, Records};
use crate::records::account::guard::{Failures, Limit};
use crate::records::account::{password, totp, validate_password, NewUser, User};
use crate::records::role::Role;
use crate::records::token::{random_hex, same_secret};
use crate::records::RecordError;
use crate::store::{self, audit};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Settings of the console's accounts (`[console]` in hotline.toml).
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// A session unused this long is over.
    pub idle: Duration,
    /// A session is over this long after the login, however busy.
    pub lifetime: Duration,
    /// The roles that must give a TOTP code after the password.
    pub totp_roles: Vec<Role>,
    /// Failed logins of one login before it is locked.
    pub login_limit: Limit,
    /// Failed logins from one address before it is locked.
    pub address_limit: Limit,
    /// The issuer an authenticator app shows beside the code.
    pub issuer: String,
    /// The configured operators' extensions (an operator user must have one).
    pub extensions: Vec<String>,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            idle: Duration::from_secs(30 * 60),
            lifetime: Duration::from_secs(12 * 3600),
            totp_roles: vec![Role::Supervisor, Role::Security, Role::Admin],
            login_limit: Limit {
                max_failures: 5,
                window: Duration::from_secs(15 * 60),
                lock_for: Duration::from_secs(15 * 60),
            },
            address_limit: Limit {
                max_failures: 20,
                window: Duration::from_secs(15 * 60),
                lock_for: Duration::from_secs(15 * 60),
            },
            issuer: "Hotline".into(),
            extensions: Vec::new(),
        }
    }
}

/// The accounts façade. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    records: Records,
    settings: Arc<AccountSettings>,
}

/// What a login attempt came to.
#[derive(Debug)]
pub enum LoginOutcome {
    /// Wrong login or password (which, is not said).
    Refused,
    /// Too many failures for this login or from this address: refused whatever is typed.
    Locked,
    /// The password is right: a session, which may still need the second factor.
    Opened(Opened),
}

#[derive(Debug)]
pub struct Opened {
    /// The cookie's value (shown once; only its hash is kept).
    pub secret: String,
    pub user: User,
    pub factor_due: bool,
}

/// What a second-factor attempt came to.
#[derive(Debug)]
pub enum FactorOutcome {
    Refused,
    Locked,
    /// The code is right: the new session's secret, and the recovery codes made at
    /// enrolment (shown once), if this code was the first.
    Passed {
        secret: String,
        recovery_codes: Vec<String>,
    },
}

/// An open session, as a page sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf: String,
    /// The password is given, the code not yet.
    pub factor_due: bool,
    id_hash: String,
}

impl Session {
    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub fn csrf_ok(&self, token: &str) -> bool {
        same_secret(&self.csrf, token)
    }
}

fn sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn no_such_user(login: &str) -> DeskError {
    RecordError::invalid("login", format!("no user {login}")).into()
}

impl Accounts {
    pub fn new(records: Records, settings: AccountSettings) -> Accounts {
        Accounts {
            records,
            settings: Arc::new(settings),
        }
    }

    pub fn settings(&self) -> &AccountSettings {
        &self.settings
    }

    /// Whether `role` must give a TOTP code.
    pub fn needs_totp(&self, role: Role) -> bool {
        self.settings.totp_roles.contains(&role)
    }

    fn store(&self) -> &store::Store {
        &self.records.store
    }

    /// Makes a user. For a role that needs a second factor, a TOTP secret is made too and
    /// its `otpauth://` URI returned (the user may enrol from it, or by the QR code at the
    /// first login).
    pub async fn create_user(
        &self,
        new: &NewUser,
        password: &str,
        actor: &str,
    ) -> Result<(User, Option<String>), DeskError> {
        new.validate(&self.settings.extensions)?;
        validate_password(&new.login, password)?;
        let hash = password::hash(password);
        let secret = self.needs_totp(new.role).then(totp::new_secret);
        let secret_text = secret.as_deref().map(totp::secret_text);
        let now = Utc::now();
        let mut tx = self.store().begin_write().await?;
        let id = store::users::insert(&mut tx, new, &hash, secret_text.as_deref(), now).await?;
        audit::record(
            &mut tx,
            now,
            actor,
            "user",
            id,
            "create",
            Some("role"),
            None,
            Some(new.role.as_str()),
        )
        .await?;
        tx.commit().await?;
        let (user, _) = store::users::by_id(self.store(), id)
            .await?
            .ok_or_else(|| no_such_user(&new.login))?;
        let uri = secret.map(|s| totp::uri(&s, &self.settings.issuer, &new.login));
        Ok((user, uri))
    }

    pub async fn users(&self) -> Result<Vec<User>, DeskError> {
        Ok(store::users::list(self.store()).await?)
    }

    pub async fn user(&self, login: &str) -> Result<User, DeskError> {
        Ok(store::users::by_login(self.store(), login)
            .await?
            .ok_or_else(|| no_such_user(login))?
            .0)
    }

    /// A new password; every session of the user ends.
    pub async fn set_password(
        &self,
        login: &str,
        password: &str,
        actor: &str,
    ) -> Result<(), DeskError> {
        let user = self.user(login).await?;
        validate_password(login, password)?;
        let hash = password::hash(password);
        let now = Utc::now();
        let mut tx = self.store().begin_write().await?;
        store::users::set_password(&mut tx, user.id, &hash).await?;
        store::sessions::end_all(&mut tx, user.id, now).await?;
        audit::record(
            &mut tx, now, actor, "user", user.id, "password", None, None, None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Disables a user for good (their records keep their name); every session ends.
    pub async fn disable(&self, login: &str, actor: &str) -> Result<(), DeskError> {
        let user = self.user(login).await?;
        let now = Utc::now();
        let mut tx = self.store().begin_write().await?;
        if store::users::disable(&mut tx, user.id, now).await? {
            store::sessions::end_all(&mut tx, user.id, now).await?;
            audit::record(
                &mut tx, now, actor, "user", user.id, "disable", None, None, None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A new TOTP secret to enrol (a lost phone); the old one and its recovery codes stop
    /// working. Returns the `otpauth://` URI.
    pub async fn reset_totp(&self, login: &str, actor: &str) -> Result<String, DeskError> {
        let user = self.user(login).await?;
        let secret = totp::new_secret();
        let now = Utc::now();
        let mut tx = self.store().begin_write().await?;
        store::users::set_totp(&mut tx, user.id, &totp::secret_text(&secret)).await?;
        audit::record(
            &mut tx,
            now,
            actor,
            "user",
            user.id,
            "totp_reset",
            None,
            None,
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(totp::uri(&secret, &self.settings.issuer, login))
    }

    /// The enrolment a user who has not confirmed a code yet is shown: the URI and the
    /// secret as text. A user without a secret (their role gained the factor later) gets one.
    pub async fn enrolment(&self, user: &User) -> Result<Option<(String, String)>, DeskError> {
        if user.totp_enrolled || !self.needs_totp(user.role) {
            return Ok(None);
        }
        let (_, cred) = store::users::by_id(self.store(), user.id)
            .await?
            .ok_or_else(|| no_such_user(&user.login))?;
        let secret = match cred.totp_secret.as_deref().and_then(decode_secret) {
            Some(s) => s,
            None => {
                let s = totp::new_secret();
                let mut tx = self.store().begin_write().await?;
                store::users::set_totp(&mut tx, user.id, &totp::secret_text(&s)).await?;
                tx.commit().await?;
                s
            }
        };
        Ok(Some((
            totp::uri(&secret, &self.settings.issuer, &user.login),
            totp::secret_text(&secret),
        )))
    }

    /// Checks a login and password from `address`, and opens a session if they are right.
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<LoginOutcome, DeskError> {
        let login = login.trim();
        let login_key = format!("login:{}", login.to_lowercase());
        let addr_key = format!("addr:{address}");
        // The actor of an attempt is what was typed, bounded (it may be anything).
        let typed: String = login.chars().take(64).collect();
        for key in [&login_key, &addr_key] {
            if store::users::failures(self.store(), key)
                .await?
                .is_some_and(|f| f.locked(now))
            {
                self.audit_attempt(&typed, 0, "login_locked", address, now)
                    .await?;
                return Ok(LoginOutcome::Locked);
            }
        }
        let found = store::users::by_login(self.store(), login).await?;
        let user = match found {
            Some((user, cred))
                if !user.disabled && password::verify(password, &cred.password_hash) =>
            {
                user
            }
            found => {
                if found.is_none() {
                    password::verify_nothing(password);
                }
                let id = found.map_or(0, |(u, _)| u.id);
                self.audit_attempt(&typed, id, "login_failed", address, now)
                    .await?;
                let locked = self
                    .fail(&login_key, self.settings.login_limit, now)
                    .await?
                    | self
                        .fail(&addr_key, self.settings.address_limit, now)
                        .await?;
                if locked {
                    self.audit_attempt(&typed, id, "locked", address, now)
                        .await?;
                }
                return Ok(LoginOutcome::Refused);
            }
        };
        let factor_due = self.needs_totp(user.role);
        let secret = random_hex();
        let mut tx = self.store().begin_write().await?;
        store::users::clear_failures(&mut tx, &login_key).await?;
        store::sessions::insert(
            &mut tx,
            &sha256(&secret),
            user.id,
            &random_hex(),
            factor_due,
            Some(address),
            now,
        )
        .await?;
        let action = if factor_due { "password_ok" } else { "login" };
        audit::record(
            &mut tx,
            now,
            &user.login,
            "user",
            user.id,
            action,
            Some("address"),
            None,
            Some(address),
        )
        .await?;
        tx.commit().await?;
        Ok(LoginOutcome::Opened(Opened {
            secret,
            user,
            factor_due,
        }))
    }

    /// Counts a failure for `key` (read and written in one locked transaction: guesses sent
    /// at once are all counted); true if it now locks.
    async fn fail(&self, key: &str, limit: Limit, now: DateTime<Utc>) -> Result<bool, DeskError> {
        let mut tx = self.store().begin_write().await?;
        let prev = store::users::lock_failures(&mut tx, self.store().backend(), key).await?;
        let next = Failures::after_failure(Some(&prev), now, limit);
        store::users::put_failures(&mut tx, key, &next).await?;
        tx.commit().await?;
        Ok(next.locked(now))
    }

    async fn audit_attempt(
        &self,
        actor: &str,
        user_id: i64,
        action: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<(), DeskError> {
        let mut tx = self.store().begin_write().await?;
        audit::record(
            &mut tx,
            now,
            actor,
            "user",
            user_id,
            action,
            Some("address"),
            None,
            Some(address),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The second step: a TOTP code, or a recovery code, for a session whose password is
    /// given. A wrong code counts as a failed login.
    pub async fn second_factor(
        &self,
        session: &Session,
        code: &str,
        address: &str,
        now: DateTime<Utc>,
    ) -> Result<FactorOutcome, DeskError> {
        let user = &session.user;
        let login_key = format!("login:{}", user.login.to_lowercase());
        if store::users::failures(self.store(), &login_key)
            .await?
            .is_some_and(|f| f.locked(now))
        {
            self.audit_attempt(&user.login, user.id, "login_locked", address, now)
                .await?;
            return Ok(FactorOutcome::Locked);
        }
        let (_, cred) = store::users::by_id(self.store(), user.id)
            .await?
            .ok_or_else(|| no_such_user(&user.login))?;
        let secret = cred.totp_secret.as_deref().and_then(decode_secret);
        let mut tx = self.store().begin_write().await?;
        let code = code.trim();
        let looks_recovery = code.chars().any(|c| c.is_ascii_alphabetic() || c == '-');
        let passed = if looks_recovery {
            user.totp_enrolled
                && store::users::spend_recovery_code(
                    &mut tx,
                    user.id,
                    &totp::recovery_hash(code),
                    now,
                )
                .await?
        } else {
            match secret
                .as_deref()
                .and_then(|s| totp::verify(s, code, now.timestamp(), cred.totp_last_step))
            {
                Some(step) => store::users::spend_totp_step(&mut tx, user.id, step).await?,
                None => false,
            }
        };
        if !passed {
            tx.rollback().await?;
            self.audit_attempt(&user.login, user.id, "code_failed", address, now)
                .await?;
            if self
                .fail(&login_key, self.settings.login_limit, now)
                .await?
            {
                self.audit_attempt(&user.login, user.id, "locked", address, now)
                    .await?;
            }
            return Ok(FactorOutcome::Refused);
        }
        let mut recovery_codes = Vec::new();
        if !user.totp_enrolled {
            recovery_codes = totp::new_recovery_codes();
            let hashes: Vec<String> = recovery_codes
                .iter()
                .map(|c| totp::recovery_hash(c))
                .collect();
            store::users::add_recovery_codes(&mut tx, user.id, &hashes).await?;
        }
        let fresh = random_hex();
        store::sessions::end(&mut tx, &session.id_hash, now).await?;
        store::sessions::insert(
            &mut tx,
            &sha256(&fresh),
            user.id,
            &random_hex(),
            false,
            Some(address),
            now,
        )
        .await?;
        store::users::clear_failures(&mut tx, &login_key).await?;
        let how = if looks_recovery {
            "recovery_code"
        } else {
            "totp"
        };
        audit::record(
            &mut tx,
            now,
            &user.login,
            "user",
            user.id,
            "login",
            Some("factor"),
            None,
            Some(how),
        )
        .await?;
        tx.commit().await?;
        Ok(FactorOutcome::Passed {
            secret: fresh,
            recovery_codes,
        })
    }

    /// The open session of a cookie's secret, if it has not ended, idled out or outlived
    /// its lifetime, and its user is not disabled.
    pub async fn session(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, DeskError> {
        let id_hash = sha256(secret);
        let Some(row) = store::sessions::get(self.store(), &id_hash).await? else {
            return Ok(None);
        };
        let idle = chrono::Duration::from_std(self.settings.idle).unwrap_or(chrono::Duration::MAX);
        let life =
            chrono::Duration::from_std(self.settings.lifetime).unwrap_or(chrono::Duration::MAX);
        if row.ended_at.is_some() || now - row.last_seen_at > idle || now - row.created_at > life {
            return Ok(None);
        }
        let Some((user, _)) = store::users::by_id(self.store(), row.user_id).await? else {
            return Ok(None);
        };
        if user.disabled {
            return Ok(None);
        }
        // A minute's precision, or a quarter of the idle time if that is shorter.
        let every = self.settings.idle.div_f64(4.0).min(Duration::from_secs(60));
        store::sessions::touch(self.store(), &id_hash, now, every).await?;
        Ok(Some(Session {
            user,
            csrf: row.csrf,
            factor_due: row.factor_due,
            id_hash,
        }))
    }

    /// Ends the session (logout): its cookie opens nothing any more, anywhere.
    pub async fn logout(&self, session: &Session, now: DateTime<Utc>) -> Result<(), DeskError> {
        let mut tx = self.store().begin_write().await?;
        if store::sessions::end(&mut tx, &session.id_hash, now).await? {
            let u = &session.user;
            audit::record(
                &mut tx, now, &u.login, "user", u.id, "logout", None, None, None,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

fn decode_secret(text: &str) -> Option<Vec<u8>> {
    data_encoding::BASE32_NOPAD.decode(text.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    //! The accounts on a real SQLite file, with `now` passed in: lifetimes and lock times
    //! without sleeping.

    use super::*;

    const PW: &str = "длинный-пароль-1";

    async fn accounts(dir: &std::path::Path) -> Accounts {
        let records = crate::desk::sqlite_records(&dir.join("t.db")).await;
        Accounts::new(
            records,
            AccountSettings {
                extensions: vec!["1001".into()],
                ..Default::default()
            },
        )
    }

    async fn user(a: &Accounts, login: &str, role: Role) -> Option<Vec<u8>> {
        let new = NewUser {
            login: login.into(),
            name: "Тест".into(),
            role,
            operator: (role == Role::Operator).then(|| "1001".to_string()),
        };
        a.create_user(&new, PW, "test").await.unwrap().1.map(|uri| {
            let s = uri
                .split("secret=")
                .nth(1)
                .unwrap()
                .split('&')
                .next()
                .unwrap();
            data_encoding::BASE32_NOPAD.decode(s.as_bytes()).unwrap()
        })
    }

    async fn open(a: &Accounts, login: &str, now: DateTime<Utc>) -> Opened {
        match a.login(login, PW, "10.0.0.1", now).await.unwrap() {
            LoginOutcome::Opened(o) => o,
            other => panic!("{login}: {other:?}"),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[tokio::test]
    async fn sessions_end_when_idle_past_their_lifetime_or_at_a_new_password() {
        let dir = tempfile::tempdir().unwrap();
        let a = accounts(dir.path()).await;
        user(&a, "op", Role::Operator).await;
        let o = open(&a, "op", at(0)).await;
        assert!(!o.factor_due);
        // Used every 20 minutes: alive for its 12 hours, not one second more.
        let mut t = 0;
        while t + 1200 < 12 * 3600 {
            t += 1200;
            assert!(
                a.session(&o.secret, at(t)).await.unwrap().is_some(),
                "at {t}"
            );
        }
        assert!(a
            .session(&o.secret, at(12 * 3600 + 1))
            .await
            .unwrap()
            .is_none());
        // Idle 31 minutes: over.
        let o = open(&a, "op", at(100_000)).await;
        assert!(a
            .session(&o.secret, at(100_000 + 31 * 60))
            .await
            .unwrap()
            .is_none());
        // A new password ends every session; so does disabling, which also refuses logins.
        let o = open(&a, "op", at(200_000)).await;
        a.set_password("op", "другой-пароль-2", "test")
            .await
            .unwrap();
        assert!(a.session(&o.secret, at(200_001)).await.unwrap().is_none());
        let o = match a
            .login("op", "другой-пароль-2", "10.0.0.1", at(200_002))
            .await
            .unwrap()
        {
            LoginOutcome::Opened(o) => o,
            other => panic!("{other:?}"),
        };
        a.disable("op", "test").await.unwrap();
        assert!(a.session(&o.secret, at(200_003)).await.unwrap().is_none());
        assert!(matches!(
            a.login("op", "другой-пароль-2", "10.0.0.1", at(200_004))
                .await
                .unwrap(),
            LoginOutcome::Refused
        ));
    }

    #[tokio::test]
    async fn the_code_opens_a_new_session_and_recovery_codes_work_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = accounts(dir.path()).await;
        let secret = user(&a, "head", Role::Supervisor).await.unwrap();
        let now = Utc::now();
        let o = open(&a, "head", now).await;
        assert!(o.factor_due);
        let s = a.session(&o.secret, now).await.unwrap().unwrap();
        let code = format!(
            "{:06}",
            totp::code_at(&secret, totp::step_of(now.timestamp()))
        );
        let FactorOutcome::Passed {
            secret: fresh,
            recovery_codes,
        } = a.second_factor(&s, &code, "10.0.0.1", now).await.unwrap()
        else {
            panic!("the code is right");
        };
        assert_ne!(fresh, o.secret);
        assert!(
            a.session(&o.secret, now).await.unwrap().is_none(),
            "the old id is dead"
        );
        let s2 = a.session(&fresh, now).await.unwrap().unwrap();
        assert!(!s2.factor_due);
        assert_eq!(recovery_codes.len(), totp::RECOVERY_CODES);

        // Next login: a recovery code instead of the phone, once.
        for (i, expect_pass) in [(0, true), (1, false)] {
            let o = open(&a, "head", now).await;
            let s = a.session(&o.secret, now).await.unwrap().unwrap();
            let typed = recovery_codes[0].to_lowercase();
            let r = a.second_factor(&s, &typed, "10.0.0.1", now).await.unwrap();
            assert_eq!(
                matches!(r, FactorOutcome::Passed { .. }),
                expect_pass,
                "try {i}: {r:?}"
            );
        }
        assert_eq!(
            store::users::unused_recovery_codes(a.store(), s2.user.id)
                .await
                .unwrap(),
            9
        );
    }

    #[tokio::test]
    async fn an_address_locks_across_logins_and_the_lock_runs_out() {
        let dir = tempfile::tempdir().unwrap();
        let a = accounts(dir.path()).await;
        user(&a, "op", Role::Operator).await;
        // 20 failures from one address over different logins lock the address...
        for i in 0..20 {
            let r = a
                .login(&format!("guess{i}"), "x", "10.9.9.9", at(i))
                .await
                .unwrap();
            assert!(matches!(r, LoginOutcome::Refused), "{i}: {r:?}");
        }
        let r = a.login("op", PW, "10.9.9.9", at(30)).await.unwrap();
        assert!(matches!(r, LoginOutcome::Locked), "{r:?}");
        // ...not the login from elsewhere, and not after the lock time.
        open(&a, "op", at(31)).await;
        let r = a
            .login("op", PW, "10.9.9.9", at(19 + 15 * 60))
            .await
            .unwrap();
        assert!(matches!(r, LoginOutcome::Opened(_)), "{r:?}");
    }
}
