//! The API's one error type: every failure is a JSON body `{"error": "...", "field": ...}`
//! with a 4xx status for the client's mistakes and 500 only for ours (logged, without
//! details in the body).

use crate::desk::DeskError;
use crate::records::tickets::TransitionError;
use crate::records::RecordError;
use crate::store::StoreError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Bad input; `field` names the offending field when there is one.
    #[error("{message}")]
    BadRequest {
        field: Option<String>,
        message: String,
    },
    #[error("authentication required")]
    Unauthorized,
    #[error("the role {role} may not {action}")]
    Forbidden {
        role: &'static str,
        action: &'static str,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 403 with its own reason (a record the role may not see, a step that is not theirs).
    #[error("{0}")]
    Refused(String),
    /// 409: the lifecycle has no such step; `allowed` lists the steps it has.
    #[error("{message}")]
    NotAllowed {
        message: String,
        allowed: Vec<crate::records::tickets::AllowedTransition>,
    },
    /// 413: a body over the API's limit (the message states it).
    #[error("{0}")]
    TooLarge(String),
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// The request field the error is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With a refused ticket transition: the steps there are from the ticket's state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<crate::records::tickets::AllowedTransition>>,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Invalid { field, message } => ApiError::BadRequest {
                field: Some(field.to_string()),
                message: format!("`{field}`: {message}"),
            },
        }
    }
}

impl From<DeskError> for ApiError {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::Invalid(r) => r.into(),
            DeskError::Store(s) => s.into(),
            e @ DeskError::Refused { .. } => ApiError::Refused(e.to_string()),
            DeskError::Transition(t @ TransitionError::Forbidden { .. }) => {
                ApiError::Refused(t.to_string())
            }
            DeskError::Transition(t @ TransitionError::NotAllowed { .. }) => {
                let message = t.to_string();
                let TransitionError::NotAllowed { allowed, .. } = t else {
                    unreachable!()
                };
                ApiError::NotAllowed { message, allowed }
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } | ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::NotAllowed { .. } => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "API request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let field = match &self {
            ApiError::BadRequest { field, .. } => field.clone(),
            _ => None,
        };
        let allowed = match &self {
            ApiError::NotAllowed { allowed, .. } => Some(allowed.clone()),
            _ => None,
        };
        let body = Json(ErrorBody {
            error: self.to_string(),
            field,
            allowed,
        });
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
