//! What goes into the outbox: a [`Notice`] (the event, its subject, its text for people and
//! its JSON for machines) and the [`Sink`]s it goes to. Domain data, because a notice is
//! written in the same transaction as the record that causes it ("nothing lost"); the
//! store inserts it, the notifier delivers it.

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
