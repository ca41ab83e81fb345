//! Who may do what. Every API route names the [`Action`] it performs; [`allowed`] is the
//! whole matrix (the README prints it), and a token whose role lacks the action gets 403.
//! Tokens are bearer tokens made by `hotline token create` or `POST /api/v1/tokens`.

use super::error::ApiError;
use super::AppState;
use crate::records::role::Role;
use crate::records::token::TokenInfo;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::marker::PhantomData;

/// What a route needs, as a type: handlers take [`Allowed<can::X>`](Allowed), so the action
/// of every route is in its signature and is checked before its path or body is parsed (a
/// role that may not use a route gets 403 whatever it sends).
pub trait Permission {
    const ACTION: Action;
}

/// Defines [`Action`], its list and wording, and one marker type per action in [`can`],
/// from one table.
macro_rules! actions {
    ($($name:ident => $text:literal),* $(,)?) => {
        /// Everything the API lets someone do.
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
);

/// The allowed-actions matrix.
///
/// - operators work calls: the journal, callback forms, voicemail;
/// - supervisors (the head of the call centre) see and do everything operators do, plus
///   export, statistics and the audit log;
/// - the card department and the security service call customers back on the forms sent
///   to them and work the ATM tickets routed to them (which step is whose is the
///   lifecycle's table, `records::tickets::TRANSITIONS`);
/// - admins run the system (tokens, retention) and see aggregate statistics, but not the
///   customers' personal data in the journal.
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
        ),
        Role::Supervisor => !matches!(action, TokensManage | RetentionRun),
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
            // The card department owns the ATMs: it keeps the registry.
            || (role == Role::CardDepartment && action == AtmManage)
        }
        Role::Admin => matches!(
            action,
            TokensManage | RetentionRun | OperatorsRead | StatsRead
        ),
    }
}

/// The caller of a route, authenticated and allowed to do `P`.
pub struct Allowed<P> {
    pub token: TokenInfo,
    _permission: PhantomData<P>,
}

impl<P> Allowed<P> {
    /// The name the audit log records.
    pub fn actor(&self) -> &str {
        &self.token.name
    }
}

/// 403 unless `role` may do `action`.
pub fn require(role: Role, action: Action) -> Result<(), ApiError> {
    if allowed(role, action) {
        Ok(())
    } else {
        Err(ApiError::Forbidden {
            role: role.as_str(),
            action: action.as_str(),
        })
    }
}

/// The token of `Authorization: Bearer <token>` (RFC 6750 §2.1): the scheme in any case,
/// one space, then a b64token and nothing else. `Bearer  tok` and `Bearer tok x` are
/// refused rather than guessed at.
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let b64 = |c: u8| c.is_ascii_alphanumeric() || b"-._~+/".contains(&c);
    let body = token.trim_end_matches('=');
    (scheme.eq_ignore_ascii_case("Bearer") && !body.is_empty() && body.bytes().all(b64))
        .then_some(token)
}

impl<P: Permission + Send + Sync> FromRequestParts<AppState> for Allowed<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let secret = bearer_token(value).ok_or(ApiError::Unauthorized)?;
        let token = state
            .records
            .authenticate_token(secret)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        require(token.role, P::ACTION)?;
        Ok(Allowed {
            token,
            _permission: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_strictly() {
        assert_eq!(
            bearer_token("Bearer hl_abc-1.2~3+4/5=="),
            Some("hl_abc-1.2~3+4/5==")
        );
        assert_eq!(bearer_token("bearer hl_abc"), Some("hl_abc"));
        for bad in [
            "Bearer  hl_abc",
            "Bearer hl_abc ",
            "Bearer hl abc",
            "Bearer ",
            "Basic hl_abc",
            "Bearerhl_abc",
            "Bearer ===",
        ] {
            assert_eq!(bearer_token(bad), None, "{bad:?}");
        }
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
    fn only_admins_manage_tokens_and_retention() {
        for role in Role::ALL {
            assert_eq!(allowed(role, Action::TokensManage), role == Role::Admin);
            assert_eq!(allowed(role, Action::RetentionRun), role == Role::Admin);
        }
    }

    #[test]
    fn every_action_has_someone() {
        for &a in Action::ALL {
            assert!(Role::ALL.into_iter().any(|r| allowed(r, a)), "{a:?}");
        }
    }
}
