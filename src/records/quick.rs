//! Quick answers (regulation §6.3, footnote 2): the reference texts an operator reads out
//! without looking elsewhere — currency rates, the addresses and hours of the head office
//! and the branches, holiday hours. Supervisors keep them current in the console; every
//! change is in the audit log, since a wrong rate read to a customer is a complaint.

use super::{check_len, RecordError};
use chrono::{DateTime, Utc};

/// What an answer is about; the operator's page groups them so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Rates,
    Offices,
    Holidays,
    Other,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::Rates, Topic::Offices, Topic::Holidays, Topic::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Rates => "rates",
            Topic::Offices => "offices",
            Topic::Holidays => "holidays",
            Topic::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.as_str() == s)
    }

    pub fn russian(self) -> &'static str {
        match self {
            Topic::Rates => "Курсы валют",
            Topic::Offices => "Офисы: адреса и часы работы",
            Topic::Holidays => "Режим работы в праздники",
            Topic::Other => "Прочее",
        }
    }
}

#[derive(Debug, Clone)]
pub struct QuickAnswer {
    pub id: i64,
    pub topic: Topic,
    pub title: String,
    pub body: String,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// A new answer, or an answer's new text.
#[derive(Debug, Clone)]
pub struct QuickAnswerText {
    pub topic: Topic,
    pub title: String,
    pub body: String,
}

impl QuickAnswerText {
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.title.trim().is_empty() {
            return Err(RecordError::invalid("title", "must not be empty"));
        }
        check_len("title", &self.title, 200)?;
        if self.body.trim().is_empty() {
            return Err(RecordError::invalid("body", "must not be empty"));
        }
        check_len("body", &self.body, 5_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_needs_a_title_and_a_text() {
        let ok = QuickAnswerText {
            topic: Topic::Rates,
            title: "Доллар США".into(),
            body: "Покупка 90,10; продажа 92,40".into(),
        };
        assert!(ok.validate().is_ok());
        let e = QuickAnswerText {
            title: " ".into(),
            ..ok.clone()
        };
        assert!(e.validate().unwrap_err().to_string().starts_with("`title`"));
        let e = QuickAnswerText {
            body: "x".repeat(5_001),
            ..ok
        };
        assert!(e.validate().unwrap_err().to_string().starts_with("`body`"));
        for t in Topic::ALL {
            assert_eq!(Topic::parse(t.as_str()), Some(t));
        }
    }
}
