//! Every failure of a request is an [`ApiError`]: a status and a `{"error": "..."}` body, never a crash.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pyexec_core::{ErrorResponse, Rejection, ValidationError};

use crate::backend::BackendError;

/// A request that failed, with what the client sees.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 401, with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 429 with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// Body text.
        message: String,
        /// Suggested wait.
        retry_after: Duration,
    },
    /// 503 (shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// 507: the server's disk is full; the request may succeed later and nothing of it was kept.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 500; the detail is logged.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The contract's answer for unknown executions.
    pub fn execution_not_found() -> Self {
        ApiError::NotFound("execution not found".into())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        match e.kind {
            Rejection::BadRequest => ApiError::BadRequest(e.message),
            Rejection::TooLarge => ApiError::TooLarge(e.message),
        }
    }
}

impl From<BackendError> for ApiError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Invalid(v) => v.into(),
            BackendError::QueueFull { retry_after, .. } => {
                ApiError::TooManyRequests { message: e.to_string(), retry_after }
            }
            BackendError::ShuttingDown => ApiError::Unavailable(e.to_string()),
            BackendError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (status, Json(ErrorResponse { error: self.to_string() })).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::TooManyRequests { retry_after, .. } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                    headers.insert(header::RETRY_AFTER, v);
                }
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"python-executor\""));
            }
            _ => {}
        }
        response
    }
}
