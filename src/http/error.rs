//! What a handler can fail with, and the JSON error each one is answered with.

use hyper::StatusCode;

use super::respond::{Reply, error};
use crate::store::StoreError;

pub enum ApiError {
    BadRequest(String),
    NotFound(String),
    /// Well-formed, but it cannot be done (422).
    Unprocessable(String),
    /// The resource is not in a state that allows it (409).
    Conflict(String),
    Store(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(e)
    }
}

pub type ApiResult = Result<Reply, ApiError>;

impl ApiError {
    /// The reply; store failures are logged (with the path) and answered
    /// without their detail.
    pub fn into_reply(self, path: &str) -> Reply {
        match self {
            ApiError::BadRequest(m) => error(StatusCode::BAD_REQUEST, "bad_request", m),
            ApiError::NotFound(m) => error(StatusCode::NOT_FOUND, "not_found", m),
            ApiError::Unprocessable(m) => {
                error(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", m)
            }
            ApiError::Conflict(m) => error(StatusCode::CONFLICT, "conflict", m),
            ApiError::Store(StoreError::Closed) => error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the gateway is shutting down; try again",
            ),
            ApiError::Store(e) => {
                tracing::error!(error = %e, path = %path, "api read failed");
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the store could not be read; see the server log",
                )
            }
        }
    }
}
