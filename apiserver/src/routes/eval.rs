//! `POST /api/v1/eval`: JSON in, result out.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use bytes::Bytes;
use pyexec_core::{ErrorResponse, EvalRequest, ExecutionResult};

use super::sync;
use crate::backend::Source;
use crate::error::ApiError;
use crate::state::AppState;

/// Runs code (or a few files) and waits for the result. With `eval_last_expr`, the value of a trailing
/// expression is returned in `result`.
#[utoipa::path(
    post,
    path = "/api/v1/eval",
    tag = "executions",
    request_body(content = EvalRequest, description = "Code to run. The Content-Type header is not checked."),
    responses(
        (status = 200, description = "The execution ended (any status: a timeout is `failed`)", body = ExecutionResult),
        (status = 400, description = "Invalid JSON or request", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 413, description = "More than 102400 bytes of code, or body over the upload limit", body = ErrorResponse),
        (status = 429, description = "Queue full; see Retry-After", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn eval(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ExecutionResult>, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!(
                "the request body exceeds the upload limit of {} MiB (PYEXEC_MAX_UPLOAD_MB)",
                state.upload_limit_mb
            ))
        } else {
            ApiError::BadRequest(format!("reading the request body: {}", e.body_text()))
        }
    })?;
    let request = parse(&body)?;
    let (spec, files) = state.policy.spec_from_eval(request)?;
    state.backend.check(&spec)?;
    sync::run(&state, spec, Source::Files(files)).await
}

/// The body as the original read it: any Content-Type, `null` meaning `{}`, errors prefixed `invalid JSON:`.
fn parse(body: &[u8]) -> Result<EvalRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest("invalid JSON: EOF".into()));
    }
    serde_json::from_slice::<Option<EvalRequest>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> String {
        match parse(body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn json_errors_say_invalid_json() {
        assert_eq!(message(""), "invalid JSON: EOF");
        assert!(message("not json").starts_with("invalid JSON: "));
        assert!(message(r#"{"code": 5}"#).starts_with("invalid JSON: invalid type: integer `5`, expected a string"));
        assert_eq!(parse(b"null").unwrap(), EvalRequest::default());
    }
}
