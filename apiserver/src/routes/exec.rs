//! `POST /api/v1/exec/sync` and `/exec/async`: a multipart body with a `tar` file part (plain or gzip) and a
//! `metadata` JSON field.

use axum::Json;
use axum::extract::{Extension, FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use pyexec_core::{AsyncResponse, ErrorResponse, ExecutionResult, ExecutionSpec};

use crate::backend::{Source, StdinFile};
use crate::error::ApiError;
use crate::idempotency;
use crate::state::AppState;
use crate::tenants::Caller;
use crate::upload;

/// The multipart form of the exec endpoints (for the OpenAPI document).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ExecForm {
    /// A tar archive of the project (plain or gzip-compressed), sent as a file part. The example metadata runs
    /// its `main.py`.
    #[schema(value_type = String, format = Binary)]
    tar: Vec<u8>,
    /// JSON: `{"entrypoint": "main.py", "script_args": [...], "env_vars": ["K=V"], "stdin": "...",
    /// "config": {"timeout_seconds": 30, "memory_mb": 512, "network_disabled": true}}` (see `Metadata`).
    // Swagger's "Try it out" pre-fills the field with this; without it the field would hold `string`, which is
    // not JSON and answers 400.
    #[schema(
        example = r#"{"entrypoint": "main.py", "script_args": ["--verbose"], "env_vars": ["GREETING=hello"], "config": {"timeout_seconds": 30}}"#
    )]
    metadata: String,
}

/// Runs a project and waits for the result.
#[utoipa::path(
    post,
    path = "/api/v1/exec/sync",
    tag = "executions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key (1 to 255 printable ASCII characters) with the same request returns the first request's execution instead of running again; with another request, 422 (docs/api.md, Retries)")),
    request_body(content = ExecForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The execution ended (any status)", body = ExecutionResult),
        (status = 400, description = "Malformed form, archive or metadata", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 413, description = "Upload or unpacked archive too large", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorResponse),
        (status = 429, description = "Queue full; see Retry-After", body = ErrorResponse),
        (status = 507, description = "The server's disk is full; nothing was kept, retry later", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn exec_sync(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Json<ExecutionResult>, ApiError> {
    let key = idempotency::key_of(request.headers(), caller.0.name.as_deref())?;
    let (mut spec, workspace, stdin) = receive(&state, request).await?;
    spec.tenant = caller.0.name.clone();
    idempotency::run(&state, key, spec, Source::Directory(workspace), stdin).await
}

/// Queues a project and returns its id at once; poll `GET /api/v1/executions/{id}` or follow its events.
#[utoipa::path(
    post,
    path = "/api/v1/exec/async",
    tag = "executions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key (1 to 255 printable ASCII characters) with the same request returns the first request's execution instead of running again; with another request, 422 (docs/api.md, Retries)")),
    request_body(content = ExecForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Accepted", body = AsyncResponse),
        (status = 400, description = "Malformed form, archive or metadata", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 413, description = "Upload or unpacked archive too large", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorResponse),
        (status = 429, description = "Queue full; see Retry-After", body = ErrorResponse),
        (status = 507, description = "The server's disk is full; nothing was kept, retry later", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn exec_async(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<(StatusCode, Json<AsyncResponse>), ApiError> {
    let key = idempotency::key_of(request.headers(), caller.0.name.as_deref())?;
    let (mut spec, workspace, stdin) = receive(&state, request).await?;
    spec.tenant = caller.0.name.clone();
    let execution_id = idempotency::submit(&state, key, spec, Source::Directory(workspace), stdin).await?;
    Ok((StatusCode::ACCEPTED, Json(AsyncResponse { execution_id })))
}

/// Receives the form and validates the metadata; the staged archive and stdin are removed again on any error.
async fn receive(
    state: &AppState,
    request: Request,
) -> Result<(ExecutionSpec, std::path::PathBuf, Option<StdinFile>), ApiError> {
    upload::check_content_type(request.headers())?;
    let multipart = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::BadRequest(format!("parsing form: {}", e.body_text())))?;
    let upload = upload::receive(multipart, state.backend.staging_dir(), state.ingest, state.upload_limit_mb).await?;
    let checked = state
        .policy
        .spec_from_metadata(upload.metadata)
        .map_err(ApiError::from)
        .and_then(|spec| state.backend.check(&spec).map(|()| spec).map_err(ApiError::from));
    match checked {
        Ok(spec) => Ok((spec, upload.workspace, upload.stdin)),
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&upload.workspace).await;
            Err(e)
        }
    }
}
