//! The API's callers. Every route names the [`Action`] it performs; the matrix
//! ([`allowed`], in the domain: the console checks the same one) decides, and a token whose
//! role lacks the action gets 403. Tokens are bearer tokens made by `hotline token create`
//! or `POST /api/v1/tokens`.

use super::error::ApiError;
use super::AppState;
pub use crate::records::access::{allowed, can, Action, Permission};
use crate::records::role::Role;
use crate::records::token::TokenInfo;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::marker::PhantomData;

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
}
