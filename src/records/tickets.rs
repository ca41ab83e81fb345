//! ATM incident tickets (SPEC §3.3, regulation §6.7): what a ticket is, its lifecycle as a
//! plain state machine with the roles allowed on each transition, where it is routed, the
//! operator's script hints, and the `[tickets]` settings (deadlines, alert thresholds, the
//! ATM registry).
//!
//! The lifecycle is the regulation's, step by step:
//!
//! ```text
//! fault:     registered → routed → restored → operator_notified → closed
//! security:  registered → routed → inspection → not_confirmed ───────────────→ restored
//!                                             → confirmed → police_contacted
//!                                                         → devices_removed → restored
//!            restored → operator_notified → closed
//! ```
//!
//! A security ticket suspends its ATM the moment it is registered (§6.7.5: "the ATM is
//! suspended immediately"); `restored` puts it back in service. Nothing here does I/O:
//! [`check_transition`] is the whole rule, the store applies it in one transaction.

use super::atm::{AtmCategory, TicketKind};
use super::role::Role;
use super::{check_len, RecordError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where a ticket is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    Registered,
    Routed,
    Inspection,
    NotConfirmed,
    Confirmed,
    PoliceContacted,
    DevicesRemoved,
    Restored,
    OperatorNotified,
    Closed,
}

impl TicketState {
    pub const ALL: [TicketState; 10] = [
        TicketState::Registered,
        TicketState::Routed,
        TicketState::Inspection,
        TicketState::NotConfirmed,
        TicketState::Confirmed,
        TicketState::PoliceContacted,
        TicketState::DevicesRemoved,
        TicketState::Restored,
        TicketState::OperatorNotified,
        TicketState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        use TicketState::*;
        match self {
            Registered => "registered",
            Routed => "routed",
            Inspection => "inspection",
            NotConfirmed => "not_confirmed",
            Confirmed => "confirmed",
            PoliceContacted => "police_contacted",
            DevicesRemoved => "devices_removed",
            Restored => "restored",
            OperatorNotified => "operator_notified",
            Closed => "closed",
        }
    }

    pub fn russian(self) -> &'static str {
        use TicketState::*;
        match self {
            Registered => "зарегистрирована",
            Routed => "направлена в подразделения",
            Inspection => "выезд технического специалиста",
            NotConfirmed => "нарушение не подтверждено",
            Confirmed => "нарушение подтверждено",
            PoliceContacted => "сообщено в полицию",
            DevicesRemoved => "устройства изъяты полицией",
            Restored => "банкомат восстановлен",
            OperatorNotified => "оператор уведомлён",
            Closed => "закрыта",
        }
    }

    pub fn parse(s: &str) -> Option<TicketState> {
        TicketState::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The ATM works again (or the ticket is past that): no longer counted against a
    /// deadline.
    pub fn is_resolved(self) -> bool {
        matches!(
            self,
            TicketState::Restored | TicketState::OperatorNotified | TicketState::Closed
        )
    }
}

/// Who may take a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The operator who registered the ticket (not any operator).
    Author,
    /// Anyone with this role.
    Role(Role),
}

/// One allowed step of the lifecycle.
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    pub kind: Option<TicketKind>,
    pub from: TicketState,
    pub to: TicketState,
    pub by: &'static [Actor],
}

const OPERATOR_OR_SUPERVISOR: &[Actor] = &[Actor::Author, Actor::Role(Role::Supervisor)];
const CARD: &[Actor] = &[Actor::Role(Role::CardDepartment)];
const SECURITY: &[Actor] = &[Actor::Role(Role::Security)];

/// The whole lifecycle (`kind: None` = both kinds).
pub const TRANSITIONS: &[Transition] = {
    use TicketKind::*;
    use TicketState::*;
    &[
        // After the call the operator (or the supervisor) sends it on (§6.7.4–6.7.5).
        Transition {
            kind: None,
            from: Registered,
            to: Routed,
            by: OPERATOR_OR_SUPERVISOR,
        },
        // Fault: the card department restores the ATM.
        Transition {
            kind: Some(AtmFault),
            from: Routed,
            to: Restored,
            by: CARD,
        },
        // Security: a technical specialist inspects on site, arranged by either department.
        Transition {
            kind: Some(AtmSecurity),
            from: Routed,
            to: Inspection,
            by: &[
                Actor::Role(Role::Security),
                Actor::Role(Role::CardDepartment),
            ],
        },
        // §6.7.5.1 / §6.7.5.2: the security service (ОИБ) records the finding.
        Transition {
            kind: Some(AtmSecurity),
            from: Inspection,
            to: NotConfirmed,
            by: SECURITY,
        },
        Transition {
            kind: Some(AtmSecurity),
            from: Inspection,
            to: Confirmed,
            by: SECURITY,
        },
        // The head of security contacts the police; the police remove the devices.
        Transition {
            kind: Some(AtmSecurity),
            from: Confirmed,
            to: PoliceContacted,
            by: SECURITY,
        },
        Transition {
            kind: Some(AtmSecurity),
            from: PoliceContacted,
            to: DevicesRemoved,
            by: SECURITY,
        },
        // Either way the card department restores the ATM…
        Transition {
            kind: Some(AtmSecurity),
            from: NotConfirmed,
            to: Restored,
            by: CARD,
        },
        Transition {
            kind: Some(AtmSecurity),
            from: DevicesRemoved,
            to: Restored,
            by: CARD,
        },
        // …and notifies the operator, who closes the ticket.
        Transition {
            kind: None,
            from: Restored,
            to: OperatorNotified,
            by: CARD,
        },
        Transition {
            kind: None,
            from: OperatorNotified,
            to: Closed,
            by: OPERATOR_OR_SUPERVISOR,
        },
    ]
};

/// Why a transition is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransitionError {
    /// No such step from the current state (HTTP 409).
    #[error("a {kind} ticket in state {from} cannot become {to}")]
    NotAllowed {
        kind: &'static str,
        from: &'static str,
        to: &'static str,
        /// What it may become from here, and who may do it.
        allowed: Vec<AllowedTransition>,
    },
    /// The step exists but not for this caller (HTTP 403).
    #[error("{to} is for {who}")]
    Forbidden { to: &'static str, who: String },
}

/// A step the API offers from a ticket's current state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AllowedTransition {
    pub to: TicketState,
    /// Roles, and `author` for the operator who registered the ticket.
    pub by: Vec<String>,
}

fn actor_name(a: &Actor) -> String {
    match a {
        Actor::Author => "author".into(),
        Actor::Role(r) => r.as_str().into(),
    }
}

/// The steps from `from` for a ticket of `kind`.
pub fn next_states(kind: TicketKind, from: TicketState) -> Vec<AllowedTransition> {
    TRANSITIONS
        .iter()
        .filter(|t| t.from == from && t.kind.is_none_or(|k| k == kind))
        .map(|t| AllowedTransition {
            to: t.to,
            by: t.by.iter().map(actor_name).collect(),
        })
        .collect()
}

/// Decides whether `role` (`is_author`: the operator who registered it) may move a ticket
/// of `kind` from `from` to `to`.
pub fn check_transition(
    kind: TicketKind,
    from: TicketState,
    to: TicketState,
    role: Role,
    is_author: bool,
) -> Result<(), TransitionError> {
    let Some(t) = TRANSITIONS
        .iter()
        .find(|t| t.from == from && t.to == to && t.kind.is_none_or(|k| k == kind))
    else {
        return Err(TransitionError::NotAllowed {
            kind: kind.code(),
            from: from.as_str(),
            to: to.as_str(),
            allowed: next_states(kind, from),
        });
    };
    let may = t.by.iter().any(|a| match a {
        Actor::Author => role == Role::Operator && is_author,
        Actor::Role(r) => *r == role,
    });
    if may {
        Ok(())
    } else {
        Err(TransitionError::Forbidden {
            to: to.as_str(),
            who: t
                .by
                .iter()
                .map(|a| match a {
                    Actor::Author => "the operator who registered the ticket".to_string(),
                    Actor::Role(r) => format!("role {}", r.as_str()),
                })
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }
}

/// Which departments a ticket of `kind` goes to (§6.7.4: faults to the card department;
/// §6.7.5: security events to the security service and the card department at once).
pub fn departments(kind: TicketKind) -> &'static [Department] {
    match kind {
        TicketKind::AtmFault => &[Department::Card],
        TicketKind::AtmSecurity => &[Department::Security, Department::Card],
    }
}

/// The departments tickets are routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Department {
    /// Департамент (управление) карточного бизнеса.
    Card,
    /// Служба безопасности / отдел информационной безопасности (ОИБ).
    Security,
}

impl Department {
    pub fn as_str(self) -> &'static str {
        match self {
            Department::Card => "card",
            Department::Security => "security",
        }
    }
}

/// Why the supervisors are alerted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// Several security events on one ATM within the configured hours.
    SecurityRepeat,
    /// Many faults on one ATM within the configured hours.
    FaultRepeat,
    /// Past its deadline and the ATM not restored.
    Overdue,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::SecurityRepeat => "security_repeat",
            AlertKind::FaultRepeat => "fault_repeat",
            AlertKind::Overdue => "overdue",
        }
    }
}

/// What the operator tells the caller (SPEC §3.3, §6.7.4): wrong cash or a captured card
/// need a written claim or a card-return request at the nearest branch.
pub fn script_hint(category: AtmCategory) -> Option<&'static str> {
    use AtmCategory::*;
    match category {
        FaultWrongAmount => Some(
            "Предложите клиенту обратиться в ближайшее отделение Банка с письменным \
             заявлением держателя карты (претензией) о неверно выданной сумме.",
        ),
        FaultCardCapturedWithMessage => Some(
            "Предложите клиенту обратиться в ближайшее отделение Банка с заявлением на \
             возврат изъятой банкоматом карты.",
        ),
        SecurityCashNotDispensedTakeMessage => Some(
            "Предложите клиенту обратиться в ближайшее отделение Банка с письменным \
             заявлением держателя карты (претензией) о невыданных денежных средствах.",
        ),
        SecurityCardCapturedWithoutMessage => Some(
            "Предложите клиенту обратиться в ближайшее отделение Банка с заявлением на \
             возврат изъятой банкоматом карты.",
        ),
        _ => None,
    }
}

/// §6.8: a complaint by phone is not registered as a ticket; the caller is advised.
pub const COMPLAINT_HINT: &str = "Предложите клиенту подать жалобу лично в любом отделении \
     Банка или через форму обращения на официальном сайте Банка.";

/// A ticket as the operator registers it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicket {
    /// `atm_fault` or `atm_security`.
    #[schema(value_type = String, example = "atm_fault")]
    pub kind: TicketKind,
    /// A category of `kind` (SPEC §3.3), by code.
    #[schema(value_type = String, example = "fault_wrong_amount")]
    pub category: AtmCategory,
    /// An ATM of the registry.
    pub atm_id: String,
    /// The call's journal entry (the caller's number and name are taken from it).
    #[serde(default)]
    pub journal_id: Option<i64>,
    /// The caller's number, when there is no journal entry.
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub caller_name: Option<String>,
    /// What the caller said.
    #[serde(default)]
    pub description: String,
}

impl NewTicket {
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.category.kind() != self.kind {
            return Err(RecordError::invalid(
                "category",
                format!(
                    "{} is not a category of {}; those are: {}",
                    self.category.code(),
                    self.kind.code(),
                    self.kind
                        .categories()
                        .map(|c| c.code())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if self.atm_id.trim().is_empty() {
            return Err(RecordError::invalid("atm_id", "is required"));
        }
        check_len("atm_id", &self.atm_id, 64)?;
        check_len("description", &self.description, 4000)?;
        if let Some(n) = &self.caller_name {
            check_len("caller_name", n, 300)?;
        }
        if let Some(p) = &self.phone {
            super::journal::validate_phone("phone", p)?;
        }
        if self.journal_id.is_none() && self.phone.is_none() {
            return Err(RecordError::invalid(
                "phone",
                "is required when no journal_id links the call",
            ));
        }
        Ok(())
    }
}

/// A ticket as stored and shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ticket {
    pub id: i64,
    /// Registration number: `АТМ-<year>-<seq>` (sequence restarting each year).
    pub number: String,
    #[schema(value_type = String)]
    pub kind: TicketKind,
    #[schema(value_type = String)]
    pub category: AtmCategory,
    /// The category's wording in the regulation.
    pub category_name: String,
    pub atm_id: String,
    pub atm_address: String,
    pub phone: Option<String>,
    pub caller_name: Option<String>,
    pub journal_id: Option<i64>,
    pub description: String,
    pub state: TicketState,
    /// The operator (extension) who registered it: told when the ATM works again.
    pub operator: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// The departments' deadline, in working days from registration.
    pub deadline_at: DateTime<Utc>,
    /// Past the deadline and the ATM not restored.
    pub overdue: bool,
    pub restored_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    /// What the operator tells the caller (§6.7.4).
    pub script_hint: Option<String>,
    /// Where it may go from here, and who may take it there.
    pub next: Vec<AllowedTransition>,
}

/// One recorded transition.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TicketEvent {
    pub from: Option<TicketState>,
    pub to: TicketState,
    pub actor: String,
    pub role: String,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

/// A request to move a ticket on.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub to: TicketState,
    #[serde(default)]
    pub note: Option<String>,
}

/// Who asks for a transition.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub role: Role,
    /// The operator's extension (operator tokens).
    pub operator: Option<&'a str>,
    /// The name the records show.
    pub actor: &'a str,
}

impl Caller<'_> {
    /// Whether `t` was registered by this caller.
    pub fn is_author(&self, t: &Ticket) -> bool {
        self.role == Role::Operator
            && self.operator.is_some()
            && t.operator.as_deref() == self.operator
    }
}

/// What a transition did.
#[derive(Debug, Clone)]
pub struct Moved {
    pub ticket: Ticket,
    pub from: TicketState,
    /// The ATM went back into service.
    pub atm_in_service: bool,
}

/// An alert that a write raised (also enqueued for the supervisors).
#[derive(Debug, Clone)]
pub struct Alert {
    pub kind: AlertKind,
    pub ticket_id: i64,
    pub atm_id: String,
    pub count: u32,
    pub hours: u32,
}

/// What registering a ticket did.
#[derive(Debug, Clone)]
pub struct Registered {
    pub ticket: Ticket,
    /// The ATM was put out of service by it (security events).
    pub suspended: bool,
    pub alerts: Vec<Alert>,
}

/// One ATM of the registry.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AtmConfig {
    /// The bank's identifier of the ATM (e.g. the terminal id on its sticker).
    pub id: String,
    pub address: String,
}

/// `[tickets]` in `hotline.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketsConfig {
    /// Working days the card department has to restore a faulty ATM.
    #[serde(default = "default_fault_days")]
    pub fault_deadline_days: u32,
    /// Working days for a security event, from registration to restoration.
    #[serde(default = "default_security_days")]
    pub security_deadline_days: u32,
    /// This many security tickets on one ATM within `security_repeat_hours` alert the
    /// supervisors.
    #[serde(default = "default_security_repeat")]
    pub security_repeat_count: u32,
    #[serde(default = "default_day")]
    pub security_repeat_hours: u32,
    /// This many fault tickets on one ATM within `fault_repeat_hours` alert them too.
    #[serde(default = "default_fault_repeat")]
    pub fault_repeat_count: u32,
    #[serde(default = "default_fault_hours")]
    pub fault_repeat_hours: u32,
    /// The ATM registry (more can be added through the API).
    #[serde(default)]
    pub atms: Vec<AtmConfig>,
}

impl Default for TicketsConfig {
    fn default() -> Self {
        TicketsConfig {
            fault_deadline_days: default_fault_days(),
            security_deadline_days: default_security_days(),
            security_repeat_count: default_security_repeat(),
            security_repeat_hours: default_day(),
            fault_repeat_count: default_fault_repeat(),
            fault_repeat_hours: default_fault_hours(),
            atms: Vec::new(),
        }
    }
}

impl TicketsConfig {
    pub fn deadline_days(&self, kind: TicketKind) -> u32 {
        match kind {
            TicketKind::AtmFault => self.fault_deadline_days,
            TicketKind::AtmSecurity => self.security_deadline_days,
        }
    }

    /// Checks the ranges serde cannot; the error names the `tickets.…` key.
    pub fn validate(&self) -> Result<(), RecordError> {
        for (field, v) in [
            ("tickets.fault_deadline_days", self.fault_deadline_days),
            (
                "tickets.security_deadline_days",
                self.security_deadline_days,
            ),
        ] {
            if !(1..=60).contains(&v) {
                return Err(RecordError::invalid(field, "must be 1..60 working days"));
            }
        }
        for (field, v) in [
            ("tickets.security_repeat_count", self.security_repeat_count),
            ("tickets.fault_repeat_count", self.fault_repeat_count),
        ] {
            if v < 2 {
                return Err(RecordError::invalid(field, "must be at least 2"));
            }
        }
        for (field, v) in [
            ("tickets.security_repeat_hours", self.security_repeat_hours),
            ("tickets.fault_repeat_hours", self.fault_repeat_hours),
        ] {
            if !(1..=24 * 90).contains(&v) {
                return Err(RecordError::invalid(field, "must be 1..2160 hours"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for a in &self.atms {
            if a.id.trim().is_empty() || a.id.len() > 64 {
                return Err(RecordError::invalid(
                    "tickets.atms.id",
                    "must be 1..64 characters",
                ));
            }
            if !seen.insert(a.id.as_str()) {
                return Err(RecordError::invalid(
                    "tickets.atms.id",
                    format!("{} is listed twice", a.id),
                ));
            }
            if a.address.trim().is_empty() {
                return Err(RecordError::invalid(
                    "tickets.atms.address",
                    format!("is empty for {}", a.id),
                ));
            }
        }
        Ok(())
    }
}

fn default_fault_days() -> u32 {
    3
}
fn default_security_days() -> u32 {
    1
}
fn default_security_repeat() -> u32 {
    2
}
fn default_day() -> u32 {
    24
}
fn default_fault_repeat() -> u32 {
    3
}
fn default_fault_hours() -> u32 {
    72
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;
    use TicketKind::*;
    use TicketState::*;

    /// Walks a path, each step by the given role (author = the registering operator).
    fn walk(kind: TicketKind, path: &[(TicketState, Role, bool)]) {
        let mut at = Registered;
        for &(to, role, author) in path {
            check_transition(kind, at, to, role, author)
                .unwrap_or_else(|e| panic!("{kind:?} {at:?} → {to:?} by {role:?}: {e}"));
            at = to;
        }
        assert_eq!(at, Closed);
        assert!(next_states(kind, Closed).is_empty());
    }

    #[test]
    fn the_fault_lifecycle() {
        walk(
            AtmFault,
            &[
                (Routed, Operator, true),
                (Restored, CardDepartment, false),
                (OperatorNotified, CardDepartment, false),
                (Closed, Operator, true),
            ],
        );
    }

    #[test]
    fn the_security_lifecycle_both_ways() {
        walk(
            AtmSecurity,
            &[
                (Routed, Supervisor, false),
                (Inspection, Security, false),
                (NotConfirmed, Security, false),
                (Restored, CardDepartment, false),
                (OperatorNotified, CardDepartment, false),
                (Closed, Supervisor, false),
            ],
        );
        walk(
            AtmSecurity,
            &[
                (Routed, Operator, true),
                (Inspection, CardDepartment, false),
                (Confirmed, Security, false),
                (PoliceContacted, Security, false),
                (DevicesRemoved, Security, false),
                (Restored, CardDepartment, false),
                (OperatorNotified, CardDepartment, false),
                (Closed, Operator, true),
            ],
        );
    }

    #[test]
    fn a_fault_has_no_inspection_and_steps_cannot_be_skipped() {
        let e = check_transition(AtmFault, Routed, Inspection, Security, false).unwrap_err();
        let TransitionError::NotAllowed { allowed, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(allowed.len(), 1);
        assert_eq!(allowed[0].to, Restored);
        assert_eq!(allowed[0].by, ["card_department"]);
        assert!(matches!(
            check_transition(AtmSecurity, Routed, Restored, CardDepartment, false),
            Err(TransitionError::NotAllowed { .. })
        ));
        assert!(matches!(
            check_transition(AtmSecurity, Confirmed, Restored, CardDepartment, false),
            Err(TransitionError::NotAllowed { .. })
        ));
        assert!(matches!(
            check_transition(AtmFault, Closed, Registered, Supervisor, false),
            Err(TransitionError::NotAllowed { .. })
        ));
    }

    #[test]
    fn only_the_registering_operator_routes_and_closes() {
        assert!(matches!(
            check_transition(AtmFault, Registered, Routed, Operator, false),
            Err(TransitionError::Forbidden { .. })
        ));
        let e = check_transition(AtmFault, Routed, Restored, Operator, true).unwrap_err();
        assert_eq!(e.to_string(), "restored is for role card_department");
        assert!(
            check_transition(AtmSecurity, Inspection, Confirmed, CardDepartment, false).is_err()
        );
        assert!(check_transition(AtmFault, Registered, Routed, Admin, false).is_err());
    }

    #[test]
    fn every_state_is_reachable_and_every_path_ends_closed() {
        for kind in TicketKind::ALL {
            let mut seen = vec![Registered];
            let mut todo = vec![Registered];
            while let Some(s) = todo.pop() {
                let next = next_states(kind, s);
                assert!(s == Closed || !next.is_empty(), "{kind:?} stuck in {s:?}");
                for n in next {
                    if !seen.contains(&n.to) {
                        seen.push(n.to);
                        todo.push(n.to);
                    }
                }
            }
            let want = match kind {
                AtmFault => 5,
                AtmSecurity => 10,
            };
            assert_eq!(seen.len(), want, "{kind:?}: {seen:?}");
        }
    }

    #[test]
    fn routing_and_hints_follow_the_regulation() {
        assert_eq!(departments(AtmFault), [Department::Card]);
        assert_eq!(
            departments(AtmSecurity),
            [Department::Security, Department::Card]
        );
        assert!(script_hint(AtmCategory::FaultWrongAmount)
            .unwrap()
            .contains("письменным заявлением"));
        assert!(script_hint(AtmCategory::FaultCardCapturedWithMessage)
            .unwrap()
            .contains("возврат"));
        assert_eq!(script_hint(AtmCategory::FaultBlinking), None);
        assert!(COMPLAINT_HINT.contains("сайт"));
    }

    #[test]
    fn a_category_of_the_other_kind_is_refused_naming_the_right_ones() {
        let t = NewTicket {
            kind: AtmFault,
            category: AtmCategory::SecuritySkimmer,
            atm_id: "ATM-1".into(),
            journal_id: None,
            phone: Some("+79780000001".into()),
            caller_name: None,
            description: String::new(),
        };
        let e = t.validate().unwrap_err().to_string();
        assert!(
            e.contains("`category`") && e.contains("fault_wrong_amount"),
            "{e}"
        );
    }
}
