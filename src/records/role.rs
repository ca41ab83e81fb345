//! Who is acting: the roles of the regulation's people (operators, supervisors, the card
//! department, the security service) and the administrator. A domain type because the
//! ticket lifecycle's rules name them; the API's tokens carry one.

use serde::Serialize;
use utoipa::ToSchema;

/// What a user or a token is allowed to do (README, "Roles"; `records::access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Supervisor,
    CardDepartment,
    Security,
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Operator,
        Role::Supervisor,
        Role::CardDepartment,
        Role::Security,
        Role::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supervisor => "supervisor",
            Role::CardDepartment => "card_department",
            Role::Security => "security",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}
