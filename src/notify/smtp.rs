//! E-mail through the bank's SMTP relay with `lettre`: STARTTLS by default (refusing to
//! send in clear if the relay does not offer it), implicit TLS, or plain for a relay on the
//! same host. Each message's Message-ID is derived from its outbox row, so that a resend
//! after a crash can be recognised by the receiving side.

use super::{NotifyError, SmtpConfig, SmtpTls};
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// A configured SMTP client. Cheap to share.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
}

impl Mailer {
    pub fn new(cfg: &SmtpConfig, from: &str) -> Result<Mailer, NotifyError> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| NotifyError::Config(format!("notify.from {from:?}: {e}")))?;
        let smtp_error = |e: lettre::transport::smtp::Error| {
            NotifyError::Config(format!("notify.smtp.host {:?}: {e}", cfg.host))
        };
        let builder = match cfg.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)
                .map_err(smtp_error)?,
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host).map_err(smtp_error)?
            }
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
        };
        let mut builder = builder
            .port(cfg.port)
            .timeout(Some(Duration::from_secs(cfg.timeout_s.max(1))));
        if let Some(user) = &cfg.username {
            let password = cfg
                .password_env
                .as_ref()
                .and_then(|var| std::env::var(var).ok())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            host: cfg.host.clone(),
        })
    }

    /// Sends one plain-text UTF-8 message; `id` is the outbox row's.
    pub async fn send(
        &self,
        id: i64,
        to: &str,
        subject: &str,
        text: &str,
    ) -> Result<(), NotifyError> {
        let to: Mailbox = to
            .parse()
            .map_err(|e| NotifyError::Permanent(format!("recipient {to:?}: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!(
                "<notification-{id}@{}>",
                self.sender_domain()
            )))
            // Base64: Cyrillic text passes any relay unchanged, 8BITMIME or not.
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .header(ContentTransferEncoding::Base64)
                    .body(text.to_string()),
            )
            .map_err(|e| NotifyError::Permanent(format!("message: {e}")))?;
        self.transport.send(message).await.map_err(|e| {
            if e.is_permanent() {
                NotifyError::Permanent(format!("SMTP {}: {e}", self.host))
            } else {
                NotifyError::Transient(format!("SMTP {}: {e}", self.host))
            }
        })?;
        Ok(())
    }

    fn sender_domain(&self) -> &str {
        self.from.email.domain()
    }
}
