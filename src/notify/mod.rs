//! Notifications (SPEC §2.6, §3.2): every notice is written to an outbox in the same
//! transaction as the record it announces (by [`crate::desk`]), and the worker here
//! delivers it by e-mail ([`smtp`], through `lettre`) or webhook ([`webhook`], JSON signed
//! with HMAC-SHA256), retrying with backoff. A notice is therefore never lost to a crash or
//! an SMTP outage: it waits in the outbox until delivered. This module only delivers: it
//! reads and marks the outbox through the [`worker::Outbox`] trait, and knows nothing of
//! the records or the database.

pub mod smtp;
pub mod webhook;
pub mod worker;

use serde::Deserialize;

/// Why a notice was not delivered (or the notifier could not start).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The configuration cannot work (bad sender address, relay name).
    #[error("notification config: {0}")]
    Config(String),
    /// Worth retrying: the relay or the hook is down, slow or busy.
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help: a bad address, a refusal.
    #[error("{0}")]
    Permanent(String),
    /// The outbox could not be read or marked (the database is away).
    #[error("{0}")]
    Outbox(String),
    /// A `[notify]` setting that cannot work, naming its key.
    #[error("`{key}`: {problem}")]
    Invalid { key: String, problem: String },
}

impl NotifyError {
    fn invalid(key: impl Into<String>, problem: impl Into<String>) -> NotifyError {
        NotifyError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// `[notify]` in `hotline.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The hotline's web address as people reach it: links in e-mails start with it.
    #[serde(default = "default_public_url")]
    pub public_url: String,
    /// The head of the call centre, who gets every new voicemail (§6.1).
    #[serde(default)]
    pub head_email: Option<String>,
    /// Sender of the hotline's e-mail.
    #[serde(default = "default_from")]
    pub from: String,
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Where ATM tickets are routed (SPEC §3.3): `[notify.departments.card]` and
    /// `[notify.departments.security]`.
    #[serde(default)]
    pub departments: DepartmentsConfig,
    /// Supervisors told of ticket alerts (repeated events on an ATM, overdue tickets);
    /// `head_email` when empty.
    #[serde(default)]
    pub supervisor_emails: Vec<String>,
    /// First retry after this many seconds, doubling up to `retry_max_s`.
    #[serde(default = "default_retry_base_s")]
    pub retry_base_s: u64,
    #[serde(default = "default_retry_max_s")]
    pub retry_max_s: u64,
    /// After this many failed attempts a notice is marked failed (kept, listed, retried
    /// on request) instead of being tried forever.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// How often the worker looks for notices due (it is also woken by new ones), ms.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// How often overdue voicemail is looked for, to remind the head of the call centre.
    #[serde(default = "default_overdue_check_s")]
    pub overdue_check_s: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            public_url: default_public_url(),
            head_email: None,
            from: default_from(),
            smtp: None,
            webhooks: Vec::new(),
            departments: DepartmentsConfig::default(),
            supervisor_emails: Vec::new(),
            retry_base_s: default_retry_base_s(),
            retry_max_s: default_retry_max_s(),
            max_attempts: default_max_attempts(),
            poll_ms: default_poll_ms(),
            overdue_check_s: default_overdue_check_s(),
        }
    }
}

impl NotifyConfig {
    pub fn validate(&self) -> Result<(), NotifyError> {
        if !is_http_url(&self.public_url) {
            return Err(NotifyError::invalid(
                "notify.public_url",
                "must be an http:// or https:// address",
            ));
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(NotifyError::invalid(
                "notify.from",
                "must be an e-mail address",
            ));
        }
        if let Some(head) = &self.head_email {
            if head.parse::<lettre::Address>().is_err() {
                return Err(NotifyError::invalid(
                    "notify.head_email",
                    "must be an e-mail address",
                ));
            }
            if self.smtp.is_none() {
                return Err(NotifyError::invalid(
                    "notify.smtp",
                    "is needed to e-mail notify.head_email",
                ));
            }
        }
        if let Some(smtp) = &self.smtp {
            if smtp.host.is_empty() {
                return Err(NotifyError::invalid(
                    "notify.smtp.host",
                    "must not be empty",
                ));
            }
            if smtp.username.is_some() && smtp.password_env.is_none() {
                return Err(NotifyError::invalid(
                    "notify.smtp.password_env",
                    "name the environment variable holding the password of notify.smtp.username",
                ));
            }
        }
        for (i, hook) in self.webhooks.iter().enumerate() {
            hook.validate(&format!("notify.webhooks[{i}]"))?;
        }
        let mut emails: Vec<(String, &String)> = self
            .supervisor_emails
            .iter()
            .map(|e| ("notify.supervisor_emails".to_string(), e))
            .collect();
        let deps = [
            ("card", &self.departments.card),
            ("security", &self.departments.security),
        ];
        for (name, dep) in deps {
            let Some(dep) = dep else { continue };
            if let Some(hook) = &dep.webhook {
                hook.validate(&format!("notify.departments.{name}.webhook"))?;
            }
            if let Some(e) = &dep.email {
                if self.smtp.is_none() {
                    return Err(NotifyError::invalid(
                        "notify.smtp",
                        format!("is needed to e-mail notify.departments.{name}.email"),
                    ));
                }
                emails.push((format!("notify.departments.{name}.email"), e));
            }
        }
        for (field, e) in emails {
            if e.parse::<lettre::Address>().is_err() {
                return Err(NotifyError::invalid(
                    field,
                    format!("{e} is not an e-mail address"),
                ));
            }
        }
        if self.retry_base_s == 0 || self.max_attempts == 0 || self.poll_ms == 0 {
            return Err(NotifyError::invalid(
                "notify",
                "retry_base_s, max_attempts and poll_ms must be greater than 0",
            ));
        }
        Ok(())
    }
}

fn is_http_url(s: &str) -> bool {
    s.parse::<reqwest::Url>()
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// `[notify.smtp]`: the bank's mail relay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// `starttls` (default: upgrade, refuse to send in clear), `tls` (implicit, port 465)
    /// or `none` (a relay on the same host or a test listener).
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the SMTP password (no secrets in files).
    #[serde(default)]
    pub password_env: Option<String>,
    #[serde(default = "default_smtp_timeout_s")]
    pub timeout_s: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    Starttls,
    Tls,
    None,
}

/// `[[notify.webhooks]]`: a URL that gets every notice as JSON, signed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The environment variable holding the HMAC key of the `X-Hotline-Signature` header.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The key inline (tests and labs only).
    #[serde(default)]
    pub secret: Option<String>,
}

impl WebhookConfig {
    fn validate(&self, field: &str) -> Result<(), NotifyError> {
        if !is_http_url(&self.url) {
            return Err(NotifyError::invalid(
                format!("{field}.url"),
                "must be an http:// or https:// address",
            ));
        }
        if self.secret.is_some() && self.secret_env.is_some() {
            return Err(NotifyError::invalid(
                field.to_string(),
                "give at most one of `secret` and `secret_env`",
            ));
        }
        Ok(())
    }

    pub fn resolve_secret(&self) -> Option<String> {
        if let Some(s) = &self.secret {
            return Some(s.clone());
        }
        self.secret_env
            .as_ref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|s| !s.is_empty())
    }
}

/// `[notify.departments]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepartmentsConfig {
    /// The card business department: every ATM ticket.
    #[serde(default)]
    pub card: Option<DepartmentConfig>,
    /// The security service (ОИБ): security events.
    #[serde(default)]
    pub security: Option<DepartmentConfig>,
}

/// A department's contacts: its head's e-mail gets the ticket with the Table 6.1 form,
/// the phone is printed for the operator who calls it (§6.7.4), the webhook is an
/// alternative sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepartmentConfig {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

impl NotifyConfig {
    /// The notices this configuration cannot deliver anywhere, in words for the people who
    /// run the hotline (start-up log, `check-config`, `/healthz`). They are still kept in
    /// the outbox, so nothing is lost; nobody is told either.
    pub fn undeliverable(&self) -> Vec<String> {
        let mut out = Vec::new();
        let has_webhook = !self.webhooks.is_empty();
        if self.head_email.is_none() && !has_webhook {
            out.push(
                "new voicemail and overdue reminders (§6.1): no notify.head_email and no \
                 [[notify.webhooks]]; the head of the call centre is not told"
                    .to_string(),
            );
        }
        if self.supervisor_emails.is_empty() && self.head_email.is_none() && !has_webhook {
            out.push(
                "ticket alerts (repeated ATM events, overdue tickets): no \
                 notify.supervisor_emails or notify.head_email"
                    .to_string(),
            );
        }
        for (key, dept, what) in [
            (
                "card",
                &self.departments.card,
                "ATM tickets for the card department",
            ),
            (
                "security",
                &self.departments.security,
                "ATM security tickets for the security service",
            ),
        ] {
            let reachable = dept
                .as_ref()
                .is_some_and(|d| d.email.is_some() || d.webhook.is_some())
                || has_webhook;
            if !reachable {
                out.push(format!(
                    "{what}: [notify.departments.{key}] has no email or webhook"
                ));
            }
        }
        out
    }

    /// Every webhook notices may go to: the general ones and the departments'.
    pub fn all_webhooks(&self) -> Vec<WebhookConfig> {
        let deps = [&self.departments.card, &self.departments.security];
        self.webhooks
            .iter()
            .cloned()
            .chain(deps.into_iter().flatten().filter_map(|d| d.webhook.clone()))
            .collect()
    }
}

fn default_public_url() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_from() -> String {
    "hotline@localhost".into()
}
fn default_retry_base_s() -> u64 {
    30
}
fn default_retry_max_s() -> u64 {
    3600
}
fn default_max_attempts() -> u32 {
    50
}
fn default_poll_ms() -> u64 {
    1000
}
fn default_overdue_check_s() -> u64 {
    300
}
fn default_smtp_port() -> u16 {
    25
}
fn default_smtp_timeout_s() -> u64 {
    30
}
