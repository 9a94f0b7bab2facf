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
    /// 403: refused whoever asks (a browser request from another site, a host name not allowed).
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 404 for an execution id: the original's body, with how long finished executions are kept.
    #[error("execution not found")]
    ExecutionNotFound {
        /// Seconds finished executions are kept.
        retention_seconds: u64,
    },
    /// 409: the resource is busy (a session running another call).
    #[error("{0}")]
    Conflict(String),
    /// 413.
    #[error("{0}")]
    TooLarge(String),
    /// 422: the request is well formed but contradicts an earlier one (an `Idempotency-Key` reused for another
    /// request).
    #[error("{0}")]
    Unprocessable(String),
    /// 429 with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        /// Body text.
        message: String,
        /// Suggested wait.
        retry_after: Duration,
    },
    /// 501: this backend does not offer the operation.
    #[error("{0}")]
    NotImplemented(String),
    /// 503 (shutting down).
    #[error("{0}")]
    Unavailable(String),
    /// 507: the server's disk is full; the request may succeed later and nothing of it was kept.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 500; the detail (which may name host paths or internal state) is only logged, clients get
    /// [`INTERNAL_MESSAGE`].
    #[error("{0}")]
    Internal(String),
}

/// What a client reads for any internal failure: nothing about the host, its paths or the server's internals.
pub const INTERNAL_MESSAGE: &str =
    "internal server error: the server's log has the details (look for this response's X-Request-Id)";

impl ApiError {
    /// The original's answer for unknown executions (docs/compatibility.md, C35-C36), saying how long finished
    /// ones are kept (`PYEXEC_CLEANUP_TTL`).
    pub fn execution_not_found(retention: Duration) -> Self {
        ApiError::ExecutionNotFound { retention_seconds: retention.as_secs() }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::ExecutionNotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text a client may read: the message of a refusal, a generic one for internal failures.
    pub fn client_message(&self) -> String {
        match self {
            ApiError::Internal(_) => INTERNAL_MESSAGE.to_owned(),
            other => other.to_string(),
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
            BackendError::NotFound(m) => ApiError::NotFound(m),
            BackendError::Conflict(m) => ApiError::Conflict(m),
            BackendError::Exhausted { message, retry_after } => ApiError::TooManyRequests { message, retry_after },
            BackendError::TooLarge(m) => ApiError::TooLarge(m),
            BackendError::Unsupported(m) => ApiError::NotImplemented(m),
            BackendError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            // Inside the request's span, so the line carries its request id.
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        }
        let retention_seconds = match &self {
            ApiError::ExecutionNotFound { retention_seconds } => Some(*retention_seconds),
            _ => None,
        };
        let body = ErrorResponse { error: self.client_message(), retention_seconds };
        let mut response = (status, Json(body)).into_response();
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

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, String) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn internal_details_stay_in_the_log() {
        let detail = "creating /var/lib/python-executor/uploads/upload-1: Permission denied";
        let (status, body) = body_of(ApiError::Internal(detail.into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.contains("/var/lib") && !body.contains("Permission"), "{body}");
        assert_eq!(serde_json::from_str::<ErrorResponse>(&body).unwrap().error, INTERNAL_MESSAGE);
        let from_backend = ApiError::from(BackendError::Internal(detail.into()));
        assert!(!body_of(from_backend).await.1.contains("/var/lib"));
    }

    #[tokio::test]
    async fn refusals_keep_their_message() {
        let (status, body) = body_of(ApiError::Forbidden("cross-site request refused".into())).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("cross-site request refused"), "{body}");
        let (status, body) = body_of(ApiError::BadRequest("missing metadata".into())).await;
        assert_eq!((status, body.contains("missing metadata")), (StatusCode::BAD_REQUEST, true));
    }
}
