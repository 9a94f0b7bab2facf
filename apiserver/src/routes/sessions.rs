//! Sessions (docs/sessions.md): interpreters that keep their state between calls.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use pyexec_core::session::{NewSession, SessionInfo, SessionList, is_session_id};
use pyexec_core::{ErrorResponse, EvalRequest, ExecutionResult};

use crate::error::ApiError;
use crate::state::AppState;
use crate::upload;

pub(super) fn session_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "session {id} not found (it may have ended: deleted, idle too long, past its lifetime, or the server restarted)"
    ))
}

/// Refuses what cannot be a session id before any lookup.
pub(super) fn known_session(id: &str) -> Result<(), ApiError> {
    if is_session_id(id) { Ok(()) } else { Err(session_not_found(id)) }
}

/// Parses a JSON body into `T`, with the errors `/eval` gives.
async fn json_body<T: serde::de::DeserializeOwned + Default>(request: Request, limit_mb: u64) -> Result<T, ApiError> {
    let body = upload::read_body(request, limit_mb).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(&body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))
}

/// Starts a session: one interpreter whose variables, imports and files in `/work` persist between calls.
/// `requirements_txt` is installed now; limits hold for the whole session.
#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    tag = "sessions",
    request_body(content = NewSession, description = "Every field is optional."),
    responses(
        (status = 201, description = "The session is ready for calls", body = SessionInfo),
        (status = 400, description = "Invalid settings, or the session could not start (a requirement that does not install)", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 429, description = "As many sessions are live as the server runs (PYEXEC_MAX_SESSIONS); see Retry-After", body = ErrorResponse),
        (status = 501, description = "The backend has no sessions", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<SessionInfo>), ApiError> {
    let req: NewSession = json_body(request, 1).await?;
    let (spec, idle) = state.policy.session_spec(req, state.session_timeouts)?;
    let info = state.backend.create_session(spec, idle).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Live sessions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    tag = "sessions",
    responses(
        (status = 200, description = "Live sessions", body = SessionList),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<SessionList>, ApiError> {
    Ok(Json(SessionList { sessions: state.backend.list_sessions().await? }))
}

/// One session.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (`ses_...`)")),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 404, description = "Unknown or ended", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<SessionInfo>, ApiError> {
    known_session(&id)?;
    state.backend.get_session(&id).await?.map(Json).ok_or_else(|| session_not_found(&id))
}

/// Ends a session: a running call stops and every process of the session is gone when this answers.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (`ses_...`)")),
    responses(
        (status = 200, description = "The session, `state: ended`", body = SessionInfo),
        (status = 404, description = "Unknown or already ended", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<SessionInfo>, ApiError> {
    known_session(&id)?;
    state.backend.delete_session(&id).await?.map(Json).ok_or_else(|| session_not_found(&id))
}

/// Runs code as a cell of the session: what earlier calls defined is there, what this one defines stays. The
/// answer is the call's result, also kept as an execution (with `session_id`). One call at a time: a call while
/// another runs answers 409 at once.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/eval",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (`ses_...`)")),
    request_body(content = EvalRequest, description = "`code`, `files`, `stdin`, `eval_last_expr` (default true) and `config.timeout_seconds`; other fields belong to the session and answer 400."),
    responses(
        (status = 200, description = "The call ended (a timeout is `failed`; `session_restarted` says whether state was lost)", body = ExecutionResult),
        (status = 400, description = "Invalid request, or a field that belongs to the session", body = ErrorResponse),
        (status = 404, description = "Unknown or ended session", body = ErrorResponse),
        (status = 409, description = "Another call of the session is running", body = ErrorResponse),
        (status = 413, description = "More than 102400 bytes of code, or files over their limit", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn eval(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<ExecutionResult>, ApiError> {
    known_session(&id)?;
    let req: EvalRequest = json_body(request, state.upload_limit_mb).await?;
    let call = state.policy.session_call(req)?;
    Ok(Json(state.backend.session_eval(&id, call).await?))
}
