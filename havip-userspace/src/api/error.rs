//! The API's errors and their HTTP statuses. The validation core's
//! [`OpError`] carries a code and a message only; the status is chosen here
//! from the code's category.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::OpError;

/// Error body of every refused request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable error code, e.g. `InvalidParameter.Body` or
    /// `QuotaExceeded.HaVipsPerVpc` (what clients match on).
    pub code: String,
    /// What was refused and why, for people.
    pub message: String,
}

/// A refused request: the core's refusal, or a request the server could
/// not turn into an operation.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ApiError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    #[error("{path} does not take {method}")]
    MethodNotAllowed { method: String, path: String },
    #[error("request body too large")]
    BodyTooLarge,
}

impl ApiError {
    /// The stable error code (`InvalidParameter.Body`, `NotFound.Path`,
    /// `MethodNotAllowed`, or the core's code).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Op(e) => e.code(),
            ApiError::InvalidBody(_) => "InvalidParameter.Body",
            ApiError::NoRoute { .. } => "NotFound.Path",
            ApiError::MethodNotAllowed { .. } => "MethodNotAllowed",
            ApiError::BodyTooLarge => "InvalidParameter.BodyTooLarge",
        }
    }

    /// The HTTP status of the code's category.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            _ => status_of(self.code()),
        }
    }
}

/// HTTP status for an error code: 400 invalid, 404 not found, 409 conflict,
/// capacity and dependency, 403 limit/quota, 500 otherwise.
pub fn status_of(code: &str) -> StatusCode {
    let category = code.split('.').next().unwrap_or_default();
    match category {
        "InvalidParameter" => StatusCode::BAD_REQUEST,
        "NotFound" => StatusCode::NOT_FOUND,
        "Conflict" | "InsufficientCapacity" | "DependencyViolation" => StatusCode::CONFLICT,
        "LimitExceeded" | "QuotaExceeded" => StatusCode::FORBIDDEN,
        "AuthFailure" => StatusCode::UNAUTHORIZED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceKind;

    #[test]
    fn categories_map_to_statuses() {
        let nf = ApiError::Op(OpError::NotFound {
            kind: ResourceKind::HaVip,
            id: "x".into(),
        });
        assert_eq!(nf.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of("DependencyViolation.VSwitch"),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of("QuotaExceeded.HaVipsPerVpc"),
            StatusCode::FORBIDDEN
        );
        assert_eq!(status_of("InvalidParameter.Id"), StatusCode::BAD_REQUEST);
        assert_eq!(status_of("Internal"), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            ApiError::InvalidBody("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
