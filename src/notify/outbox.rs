//! What goes into the outbox: a [`Notice`] (the event, its subject, its text for people and
//! its JSON for machines) and the [`Sink`]s it goes to. The rows themselves are written by
//! [`crate::store::outbox`] inside the transaction of the record they announce.

use serde::Serialize;

/// Where a notice is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sink {
    /// An e-mail address.
    Email(String),
    /// A webhook URL (its signing key is looked up in the config when sending, so that no
    /// secret is ever stored in the database).
    Webhook(String),
}

impl Sink {
    pub fn channel(&self) -> &'static str {
        match self {
            Sink::Email(_) => "email",
            Sink::Webhook(_) => "webhook",
        }
    }

    pub fn recipient(&self) -> &str {
        match self {
            Sink::Email(a) | Sink::Webhook(a) => a,
        }
    }

    /// The inverse of [`Sink::channel`] and [`Sink::recipient`], as stored.
    pub fn from_row(channel: &str, recipient: &str) -> Option<Sink> {
        match channel {
            "email" => Some(Sink::Email(recipient.to_string())),
            "webhook" => Some(Sink::Webhook(recipient.to_string())),
            _ => None,
        }
    }
}

/// Who is told what, resolved from `[notify]` at start-up.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// The hotline's web address as people reach it (no trailing `/`).
    pub public_url: String,
    /// The head of the call centre (§6.1: every new voicemail, with the link).
    pub head_email: Option<String>,
    /// Webhooks that get every notice.
    pub webhooks: Vec<String>,
}

impl Targets {
    pub fn from_config(c: &super::NotifyConfig) -> Targets {
        Targets {
            public_url: c.public_url.trim_end_matches('/').to_string(),
            head_email: c.head_email.clone(),
            webhooks: c.webhooks.iter().map(|w| w.url.clone()).collect(),
        }
    }

    /// The sinks of voicemail notices: the head of the call centre and every webhook.
    pub fn voicemail_sinks(&self) -> Vec<Sink> {
        let mut sinks: Vec<Sink> = self.head_email.iter().cloned().map(Sink::Email).collect();
        sinks.extend(self.webhooks.iter().cloned().map(Sink::Webhook));
        sinks
    }

    /// The link to a voicemail's audio, for people (the API route with range support).
    pub fn voicemail_audio_url(&self, id: i64) -> String {
        format!("{}/api/v1/voicemail/{id}/audio", self.public_url)
    }
}

/// One notice, before it is fanned out to its sinks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// `voicemail_new`, `voicemail_transcript`, `voicemail_overdue`.
    pub event: &'static str,
    /// The record it is about, e.g. `voicemail` 17.
    pub entity: &'static str,
    pub entity_id: i64,
    pub subject: String,
    /// The e-mail's plain text.
    pub text: String,
    /// What a webhook gets under `data`.
    pub payload: serde_json::Value,
}

impl Notice {
    /// The row's unique key: the same event about the same record for the same sink is
    /// enqueued once, however often the write that makes it is replayed.
    pub fn dedupe_key(&self, sink: &Sink) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.event,
            self.entity,
            self.entity_id,
            sink.channel(),
            sink.recipient()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voicemail_sinks_are_the_head_and_every_webhook() {
        let t = Targets {
            public_url: "https://hotline.bank".into(),
            head_email: Some("head@bank".into()),
            webhooks: vec!["https://hooks/a".into()],
        };
        assert_eq!(
            t.voicemail_sinks(),
            vec![
                Sink::Email("head@bank".into()),
                Sink::Webhook("https://hooks/a".into())
            ]
        );
        assert_eq!(
            t.voicemail_audio_url(7),
            "https://hotline.bank/api/v1/voicemail/7/audio"
        );
        assert!(Targets::default().voicemail_sinks().is_empty());
    }

    #[test]
    fn dedupe_keys_differ_by_event_record_and_sink() {
        let n = |event, id| Notice {
            event,
            entity: "voicemail",
            entity_id: id,
            subject: String::new(),
            text: String::new(),
            payload: serde_json::Value::Null,
        };
        let mail = Sink::Email("a@b".into());
        let hook = Sink::Webhook("http://h".into());
        let keys = [
            n("voicemail_new", 1).dedupe_key(&mail),
            n("voicemail_new", 1).dedupe_key(&hook),
            n("voicemail_new", 2).dedupe_key(&mail),
            n("voicemail_overdue", 1).dedupe_key(&mail),
        ];
        let unique: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len());
        assert_eq!(Sink::from_row("webhook", "http://h"), Some(hook));
        assert_eq!(Sink::from_row("fax", "1"), None);
    }
}
