//! Who is told what ([`Targets`], from `[notify]`): the sinks of each kind of notice.

use crate::records::notice::Sink;
use crate::records::tickets::Department;
use std::collections::HashMap;

/// Who is told what, resolved from `[notify]` at start-up.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// The hotline's web address as people reach it (no trailing `/`).
    pub public_url: String,
    /// The head of the call centre (§6.1: every new voicemail, with the link).
    pub head_email: Option<String>,
    /// Webhooks that get every notice.
    pub webhooks: Vec<String>,
    /// Where ATM tickets go.
    pub departments: HashMap<Department, DepartmentTarget>,
    /// Who gets ticket alerts.
    pub supervisors: Vec<String>,
    /// Operators' e-mail by extension (restoration notices of their tickets).
    pub operator_emails: HashMap<String, String>,
}

/// A department as notices name and reach it.
#[derive(Debug, Clone, Default)]
pub struct DepartmentTarget {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub webhook: Option<String>,
}

impl Targets {
    /// From `[notify]` and the operators' e-mail addresses (extension, address).
    pub fn from_config<'a>(
        c: &crate::notify::NotifyConfig,
        operator_emails: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Targets {
        let mut departments = HashMap::new();
        for (dep, cfg) in [
            (Department::Card, &c.departments.card),
            (Department::Security, &c.departments.security),
        ] {
            if let Some(d) = cfg {
                departments.insert(
                    dep,
                    DepartmentTarget {
                        name: d.name.clone(),
                        email: d.email.clone(),
                        phone: d.phone.clone(),
                        webhook: d.webhook.as_ref().map(|w| w.url.clone()),
                    },
                );
            }
        }
        let supervisors = if c.supervisor_emails.is_empty() {
            c.head_email.iter().cloned().collect()
        } else {
            c.supervisor_emails.clone()
        };
        Targets {
            public_url: c.public_url.trim_end_matches('/').to_string(),
            head_email: c.head_email.clone(),
            webhooks: c.webhooks.iter().map(|w| w.url.clone()).collect(),
            departments,
            supervisors,
            operator_emails: operator_emails
                .into_iter()
                .map(|(ext, e)| (ext.to_string(), e.to_string()))
                .collect(),
        }
    }

    /// A department's name as notices print it (its config name, or the regulation's).
    pub fn department_name(&self, dep: Department) -> String {
        self.departments
            .get(&dep)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| match dep {
                Department::Card => "Департамент карточного бизнеса".into(),
                Department::Security => "Служба безопасности (ОИБ)".into(),
            })
    }

    /// The sinks of a notice to `deps`: their e-mail and webhooks, then every general
    /// webhook.
    pub fn department_sinks(&self, deps: &[Department]) -> Vec<Sink> {
        let mut sinks = Vec::new();
        for d in deps.iter().filter_map(|d| self.departments.get(d)) {
            sinks.extend(d.email.iter().cloned().map(Sink::Email));
            sinks.extend(d.webhook.iter().cloned().map(Sink::Webhook));
        }
        self.with_webhooks(sinks)
    }

    /// Alerts: the supervisors and every webhook.
    pub fn supervisor_sinks(&self) -> Vec<Sink> {
        self.with_webhooks(self.supervisors.iter().cloned().map(Sink::Email).collect())
    }

    /// A ticket's restoration: the operator who registered it (when their e-mail is
    /// known) and every webhook.
    pub fn operator_sinks(&self, extension: Option<&str>) -> Vec<Sink> {
        let email = extension.and_then(|e| self.operator_emails.get(e));
        self.with_webhooks(email.cloned().map(Sink::Email).into_iter().collect())
    }

    fn with_webhooks(&self, mut sinks: Vec<Sink>) -> Vec<Sink> {
        for w in &self.webhooks {
            let s = Sink::Webhook(w.clone());
            if !sinks.contains(&s) {
                sinks.push(s);
            }
        }
        sinks
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_sinks_reach_the_departments_supervisors_and_operators() {
        let mut t = Targets {
            head_email: Some("head@bank".into()),
            webhooks: vec!["https://hooks/a".into()],
            ..Targets::default()
        };
        t.departments.insert(
            Department::Card,
            DepartmentTarget {
                name: "Карты".into(),
                email: Some("cards@bank".into()),
                webhook: Some("https://hooks/cards".into()),
                ..DepartmentTarget::default()
            },
        );
        t.departments.insert(
            Department::Security,
            DepartmentTarget {
                name: "ОИБ".into(),
                email: Some("oib@bank".into()),
                ..DepartmentTarget::default()
            },
        );
        t.operator_emails
            .insert("1001".into(), "ivanova@bank".into());
        assert_eq!(
            t.department_sinks(&[Department::Security, Department::Card]),
            vec![
                Sink::Email("oib@bank".into()),
                Sink::Email("cards@bank".into()),
                Sink::Webhook("https://hooks/cards".into()),
                Sink::Webhook("https://hooks/a".into()),
            ]
        );
        assert_eq!(
            t.operator_sinks(Some("1001")),
            vec![
                Sink::Email("ivanova@bank".into()),
                Sink::Webhook("https://hooks/a".into())
            ]
        );
        assert_eq!(
            t.operator_sinks(Some("1002")),
            vec![Sink::Webhook("https://hooks/a".into())]
        );
        assert_eq!(t.department_name(Department::Security), "ОИБ");
        t.departments.clear();
        assert_eq!(
            t.department_name(Department::Card),
            "Департамент карточного бизнеса"
        );
    }

    #[test]
    fn voicemail_sinks_are_the_head_and_every_webhook() {
        let t = Targets {
            public_url: "https://hotline.bank".into(),
            head_email: Some("head@bank".into()),
            webhooks: vec!["https://hooks/a".into()],
            ..Targets::default()
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
}
