//! Who may do what: the one matrix of roles and actions that the API's routes and the
//! console's pages and buttons both check on the server (and the README prints). It is a
//! rule of the domain, not of HTTP, so it lives here, below both.

use super::atm::TicketKind;
use super::role::Role;

/// What a route or page needs, as a type: the API's handlers take `Allowed<can::X>` and the
/// console's take `Signed<can::X>`, so the action of every route is in its signature and is
/// checked before its path or body is parsed (a role that may not use a route gets 403
/// whatever it sends).
pub trait Permission {
    const ACTION: Action;
}

/// Defines [`Action`], its list and wording, and one marker type per action in [`can`],
/// from one table.
macro_rules! actions {
    ($($name:ident => $text:literal),* $(,)?) => {
        /// Everything the API and the console let someone do.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Action {
            $($name),*
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$name),*];

            /// What the action is, for 403 messages.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$name => $text),*
                }
            }
        }

        /// One marker type per [`Action`].
        pub mod can {
            $(
                pub struct $name;
                impl super::Permission for $name {
                    const ACTION: super::Action = super::Action::$name;
                }
            )*
        }
    };
}

actions!(
    JournalRead => "read the journal",
    JournalEdit => "edit journal entries",
    JournalExport => "export the journal",
    AuditRead => "read the audit log",
    CallbackCreate => "create callback forms",
    CallbackRead => "read callback forms",
    CallbackSend => "send callback forms",
    CallbackComplete => "complete callback forms",
    VoicemailRead => "listen to voicemail",
    RecordingListen => "listen to call recordings",
    VoicemailProcess => "process voicemail",
    OperatorsRead => "list operators",
    StatsRead => "read statistics",
    TokensManage => "manage API tokens",
    RetentionRun => "run the retention purge",
    LiveRead => "watch the live queue and calls",
    OperatorPresence => "sign operators in and out",
    OutboxManage => "see notifications and retry failed deliveries and transcriptions",
    TicketCreate => "register ATM tickets",
    TicketRead => "read ATM tickets",
    TicketTransition => "move ATM tickets through their lifecycle",
    TicketStats => "read ATM ticket statistics",
    AtmRead => "see the ATM registry and the ATMs' state",
    AtmManage => "add ATMs to the registry and change their addresses",
    UsersManage => "manage the console's users",
    SystemRead => "see the system's health and running configuration",
    QuickAnswersRead => "read the quick answers",
    QuickAnswersEdit => "edit the quick answers",
);

/// The allowed-actions matrix.
///
/// - operators work calls: the journal, callback forms, voicemail;
/// - supervisors (the head of the call centre) see and do everything operators do, plus
///   export, statistics and the audit log;
/// - the card department and the security service call customers back on the forms sent
///   to them and work the ATM tickets routed to them (which step is whose is the
///   lifecycle's table, `records::tickets::TRANSITIONS`);
/// - admins run the system (users, tokens, retention, health, the running configuration) and
///   see aggregate statistics, but not the customers' personal data in the journal.
pub fn allowed(role: Role, action: Action) -> bool {
    use Action::*;
    match role {
        Role::Operator => matches!(
            action,
            JournalRead
                | JournalEdit
                | CallbackCreate
                | CallbackRead
                | CallbackSend
                | CallbackComplete
                | VoicemailRead
                | VoicemailProcess
                | OperatorsRead
                | OperatorPresence
                | TicketCreate
                | TicketRead
                | TicketTransition
                | AtmRead
                | QuickAnswersRead
        ),
        Role::Supervisor => !matches!(
            action,
            TokensManage | RetentionRun | UsersManage | SystemRead
        ),
        Role::CardDepartment | Role::Security => {
            matches!(
                action,
                CallbackRead
                    | CallbackComplete
                    | OperatorsRead
                    | TicketRead
                    | TicketTransition
                    | TicketStats
                    | AtmRead
            )
            // The security service hears the calls of its own tickets (see
            // [`may_hear_recording`]).
            || (role == Role::Security && action == RecordingListen)
            // The card department owns the ATMs: it keeps the registry.
            || (role == Role::CardDepartment && action == AtmManage)
        }
        Role::Admin => matches!(
            action,
            TokensManage | RetentionRun | UsersManage | OperatorsRead | StatsRead | SystemRead
        ),
    }
}

/// Whether `role`, which may [`Action::RecordingListen`], hears this call's recording: a
/// supervisor any (quality control, complaint reviews), the security service only a call on
/// which an ATM security ticket was registered.
pub fn may_hear_recording(role: Role, tickets_on_call: &[TicketKind]) -> bool {
    match role {
        Role::Supervisor => true,
        Role::Security => tickets_on_call.contains(&TicketKind::AtmSecurity),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_are_heard_by_supervisors_and_by_security_for_its_tickets() {
        use TicketKind::*;
        assert!(may_hear_recording(Role::Supervisor, &[]));
        assert!(may_hear_recording(Role::Security, &[AtmFault, AtmSecurity]));
        assert!(!may_hear_recording(Role::Security, &[AtmFault]));
        assert!(!may_hear_recording(Role::CardDepartment, &[AtmFault]));
        for r in [Role::Operator, Role::CardDepartment, Role::Admin] {
            assert!(!allowed(r, Action::RecordingListen), "{r:?}");
        }
        assert!(allowed(Role::Security, Action::RecordingListen));
    }

    #[test]
    fn admins_do_not_read_personal_data() {
        for a in [
            Action::JournalRead,
            Action::JournalExport,
            Action::VoicemailRead,
            Action::CallbackRead,
        ] {
            assert!(!allowed(Role::Admin, a), "{a:?}");
        }
    }

    #[test]
    fn only_admins_manage_users_tokens_and_retention() {
        for role in Role::ALL {
            for a in [
                Action::TokensManage,
                Action::RetentionRun,
                Action::UsersManage,
                Action::SystemRead,
            ] {
                assert_eq!(allowed(role, a), role == Role::Admin, "{role:?} {a:?}");
            }
        }
    }

    #[test]
    fn every_action_has_someone() {
        for &a in Action::ALL {
            assert!(Role::ALL.into_iter().any(|r| allowed(r, a)), "{a:?}");
        }
    }
}
