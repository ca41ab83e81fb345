//! The supervisors' alerts (the regulation's `004_…` duty to watch the line): thresholds on
//! what the hotline sees now, checked every few seconds. An alert is an *episode*: it
//! starts when a threshold is crossed and ends when it no longer is, and each episode is
//! shown, kept and e-mailed once, however many checks see it. Deciding which alerts hold
//! is here, pure; the episodes are rows (`store::alerts`), so a restart or a second node
//! does not start one twice.

use serde::Deserialize;

/// `[alerts]`: the thresholds. A threshold of 0 (or `false`) turns its alert off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Today's abandon rate over this (percent of the calls offered to operators)...
    #[serde(default = "default_abandon_rate_percent")]
    pub abandon_rate_percent: u32,
    /// ...once at least this many calls were offered (a morning's first lost call is no
    /// rate).
    #[serde(default = "default_abandon_min_calls")]
    pub abandon_min_calls: u32,
    /// More than this many callers waiting.
    #[serde(default = "default_waiting_max")]
    pub waiting_max: u32,
    /// More than this many voicemail messages not yet processed.
    #[serde(default = "default_voicemail_backlog_max")]
    pub voicemail_backlog_max: u32,
    /// Voicemail or callbacks past their deadline.
    #[serde(default = "yes")]
    pub overdue: bool,
    /// An operator signed in whose phone is not registered, during working hours.
    #[serde(default = "yes")]
    pub unregistered_operators: bool,
    /// How often the thresholds are checked (seconds).
    #[serde(default = "default_check_every_s")]
    pub check_every_s: u64,
}

fn default_abandon_rate_percent() -> u32 {
    20
}
fn default_abandon_min_calls() -> u32 {
    10
}
fn default_waiting_max() -> u32 {
    5
}
fn default_voicemail_backlog_max() -> u32 {
    20
}
fn yes() -> bool {
    true
}
fn default_check_every_s() -> u64 {
    5
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            abandon_rate_percent: default_abandon_rate_percent(),
            abandon_min_calls: default_abandon_min_calls(),
            waiting_max: default_waiting_max(),
            voicemail_backlog_max: default_voicemail_backlog_max(),
            overdue: true,
            unregistered_operators: true,
            check_every_s: default_check_every_s(),
        }
    }
}

/// What the checks read.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    /// Today: calls offered to operators (answered, abandoned, in-hours voicemail) and
    /// how many of them were abandoned.
    pub offered: i64,
    pub abandoned: i64,
    pub waiting: usize,
    pub voicemail_backlog: i64,
    pub voicemail_overdue: i64,
    pub callbacks_overdue: i64,
    /// Extensions signed in (not offline) whose phone is not registered.
    pub unregistered: Vec<String>,
    /// Whether the hotline is in working hours now.
    pub open: bool,
    /// ATM tickets past their deadline: (number, ATM).
    pub overdue_tickets: Vec<(String, String)>,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    AbandonRate,
    Waiting,
    VoicemailBacklog,
    Overdue,
    OperatorUnregistered,
    /// An ATM ticket past its deadline, the ATM not restored; one episode per ticket.
    TicketOverdue,
    /// Several security events (or many faults) on one ATM within the configured hours:
    /// an event, kept as an episode that starts and ends at the ticket that made it.
    AtmSecurityRepeat,
    AtmFaultRepeat,
}

impl AlertKind {
    pub const ALL: [AlertKind; 8] = [
        AlertKind::AbandonRate,
        AlertKind::Waiting,
        AlertKind::VoicemailBacklog,
        AlertKind::Overdue,
        AlertKind::OperatorUnregistered,
        AlertKind::TicketOverdue,
        AlertKind::AtmSecurityRepeat,
        AlertKind::AtmFaultRepeat,
    ];

    /// Whether an episode's start is e-mailed by the alert itself. The ATM alerts are not:
    /// the ticket's own notice (`desk::notices::tickets`) already tells the supervisors and
    /// the department, and a second mail of the same event would teach people to skim.
    pub fn mailed_with_the_episode(self) -> bool {
        !matches!(
            self,
            AlertKind::TicketOverdue | AlertKind::AtmSecurityRepeat | AlertKind::AtmFaultRepeat
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::AbandonRate => "abandon_rate",
            AlertKind::Waiting => "waiting",
            AlertKind::VoicemailBacklog => "voicemail_backlog",
            AlertKind::Overdue => "overdue",
            AlertKind::OperatorUnregistered => "operator_unregistered",
            AlertKind::TicketOverdue => "ticket_overdue",
            AlertKind::AtmSecurityRepeat => "atm_security_repeat",
            AlertKind::AtmFaultRepeat => "atm_fault_repeat",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        AlertKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// An alert that holds now: its kind, what it is about within the kind (an operator's
/// extension; empty for the line as a whole) and the words the supervisor reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    pub kind: AlertKind,
    pub subject: String,
    pub text: String,
}

impl Raised {
    fn line(kind: AlertKind, text: String) -> Raised {
        Raised {
            kind,
            subject: String::new(),
            text,
        }
    }
}

/// The alerts that hold for `r` under `c`.
pub fn evaluate(c: &AlertsConfig, r: &Readings) -> Vec<Raised> {
    let mut out = Vec::new();
    if c.abandon_rate_percent > 0
        && r.offered >= i64::from(c.abandon_min_calls.max(1))
        && r.abandoned * 100 > i64::from(c.abandon_rate_percent) * r.offered
    {
        out.push(Raised::line(
            AlertKind::AbandonRate,
            format!(
                "Доля потерянных звонков сегодня {:.0} % (порог {} %): {} из {}",
                r.abandoned as f64 * 100.0 / r.offered as f64,
                c.abandon_rate_percent,
                r.abandoned,
                r.offered
            ),
        ));
    }
    if r.waiting > c.waiting_max as usize {
        out.push(Raised::line(
            AlertKind::Waiting,
            format!("В очереди {} (порог {})", callers(r.waiting), c.waiting_max),
        ));
    }
    if c.voicemail_backlog_max > 0 && r.voicemail_backlog > i64::from(c.voicemail_backlog_max) {
        out.push(Raised::line(
            AlertKind::VoicemailBacklog,
            format!(
                "Необработанных голосовых сообщений: {} (порог {})",
                r.voicemail_backlog, c.voicemail_backlog_max
            ),
        ));
    }
    if c.overdue && (r.voicemail_overdue > 0 || r.callbacks_overdue > 0) {
        out.push(Raised::line(
            AlertKind::Overdue,
            format!(
                "Просрочено: голосовых сообщений {}, обратных звонков {}",
                r.voicemail_overdue, r.callbacks_overdue
            ),
        ));
    }
    if c.overdue {
        for (number, atm) in &r.overdue_tickets {
            out.push(Raised {
                kind: AlertKind::TicketOverdue,
                subject: number.clone(),
                text: format!("Заявка {number} по банкомату {atm} просрочена"),
            });
        }
    }
    if c.unregistered_operators && r.open {
        for ext in &r.unregistered {
            out.push(Raised {
                kind: AlertKind::OperatorUnregistered,
                subject: ext.clone(),
                text: format!("Оператор {ext} в очереди, но его телефон не зарегистрирован"),
            });
        }
    }
    out
}

/// "1 звонящий", "3 звонящих".
fn callers(n: usize) -> String {
    if n % 10 == 1 && n % 100 != 11 {
        format!("{n} звонящий")
    } else {
        format!("{n} звонящих")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(v: &[Raised]) -> Vec<AlertKind> {
        v.iter().map(|r| r.kind).collect()
    }

    #[test]
    fn each_threshold_fires_above_it_and_not_at_it() {
        let c = AlertsConfig {
            waiting_max: 2,
            voicemail_backlog_max: 3,
            ..Default::default()
        };
        let calm = Readings {
            offered: 10,
            abandoned: 2, // exactly 20 %
            waiting: 2,
            voicemail_backlog: 3,
            open: true,
            ..Default::default()
        };
        assert!(evaluate(&c, &calm).is_empty(), "{:?}", evaluate(&c, &calm));
        let busy = Readings {
            abandoned: 3,
            waiting: 3,
            voicemail_backlog: 4,
            callbacks_overdue: 1,
            unregistered: vec!["1001".into()],
            ..calm
        };
        let raised = evaluate(&c, &busy);
        assert_eq!(
            kinds(&raised),
            [
                AlertKind::AbandonRate,
                AlertKind::Waiting,
                AlertKind::VoicemailBacklog,
                AlertKind::Overdue,
                AlertKind::OperatorUnregistered
            ]
        );
        assert_eq!(raised[1].text, "В очереди 3 звонящих (порог 2)");
        assert_eq!(raised[4].subject, "1001");
        let late = Readings {
            overdue_tickets: vec![("АТМ-2026-0003".into(), "ATM-7".into())],
            ..Default::default()
        };
        let raised = evaluate(&c, &late);
        assert_eq!(kinds(&raised), [AlertKind::TicketOverdue]);
        assert_eq!(raised[0].subject, "АТМ-2026-0003");
        assert!(!raised[0].kind.mailed_with_the_episode());
        let off = AlertsConfig {
            overdue: false,
            ..c.clone()
        };
        assert!(evaluate(&off, &late).is_empty());
    }

    #[test]
    fn few_calls_make_no_rate_and_closed_hours_no_phone_alert() {
        let c = AlertsConfig::default();
        let r = Readings {
            offered: 3,
            abandoned: 3,
            unregistered: vec!["1001".into()],
            open: false,
            ..Default::default()
        };
        assert!(evaluate(&c, &r).is_empty());
        let off = AlertsConfig {
            overdue: false,
            ..Default::default()
        };
        let late = Readings {
            voicemail_overdue: 5,
            ..Default::default()
        };
        assert!(evaluate(&off, &late).is_empty());
        assert_eq!(kinds(&evaluate(&c, &late)), [AlertKind::Overdue]);
    }

    #[test]
    fn kinds_round_trip() {
        for k in AlertKind::ALL {
            assert_eq!(AlertKind::parse(k.as_str()), Some(k));
        }
    }
}
