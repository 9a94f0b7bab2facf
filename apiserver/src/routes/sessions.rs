//! Sessions (docs/sessions.md): interpreters that keep their state between calls.

use axum::Json;
use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use pyexec_core::placement;
use pyexec_core::session::{NewSession, SessionInfo, SessionList, is_session_id};
use pyexec_core::{ErrorResponse, EvalRequest, ExecutionResult};

use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::Caller;
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

/// The live session `id` when the caller may see it: another tenant's answers as an unknown one.
pub(crate) async fn visible_session(state: &AppState, caller: &Caller, id: &str) -> Result<SessionInfo, ApiError> {
    known_session(id)?;
    match state.backend.get_session(id).await? {
        Some(info) if caller.0.may_see(info.tenant.as_deref()) => Ok(info),
        _ => Err(session_not_found(id)),
    }
}

/// Refuses a new session of a tenant at its `max_sessions` (429 with `Retry-After`).
pub(crate) async fn check_session_quota(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let Some(max) = caller.0.quota.max_sessions else { return Ok(()) };
    let tenant = caller.0.name.as_deref();
    let live = state.backend.list_sessions().await?.iter().filter(|s| s.tenant.as_deref() == tenant).count();
    if live < max {
        return Ok(());
    }
    Err(ApiError::TooManyRequests {
        message: format!(
            "this tenant has {live} live sessions, its quota (PYEXEC_TENANT_MAX_SESSIONS); delete one or retry later"
        ),
        retry_after: std::time::Duration::from_secs(10),
    })
}

/// Parses a JSON body into `T`, with the errors `/eval` gives; a setting at the wrong level is refused.
async fn json_body<T: serde::de::DeserializeOwned + Default>(
    request: Request,
    limit_mb: u64,
    kind: placement::Body,
) -> Result<T, ApiError> {
    let body = upload::read_body(request, limit_mb).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let parsed = serde_json::from_slice::<Option<T>>(&body)
        .map(Option::unwrap_or_default)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    placement::check(&body, kind)?;
    Ok(parsed)
}

/// Starts a session: one interpreter whose variables, imports and files in `/work` persist between calls.
/// `requirements_txt` is installed now; limits hold for the whole session.
#[utoipa::path(
    post,
    path = "/api/v1/sessions",
    operation_id = "create_session",
    tag = "sessions",
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key with the same settings answers the session the first request started, while it lives, instead of starting another; with other settings, 422 (docs/api.md, Retries)")),
    // An explicit example: the one Swagger would make up from the schema names a `python_version` "string".
    request_body(
        content = NewSession,
        description = "Every field is optional.",
        example = json!({"env_vars": ["GREETING=hello"], "config": {"idle_timeout_seconds": 600}})
    ),
    responses(
        (status = 201, description = "The session is ready for calls", body = SessionInfo),
        (status = 400, description = "Invalid settings, or the session could not start (a requirement that does not install)", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 409, description = "The session started under this Idempotency-Key has ended", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another request", body = ErrorResponse),
        (status = 429, description = "As many sessions are live as the server runs (PYEXEC_MAX_SESSIONS); see Retry-After", body = ErrorResponse),
        (status = 501, description = "The backend has no sessions", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<(StatusCode, Json<SessionInfo>), ApiError> {
    let key = crate::idempotency::key_of(request.headers(), caller.0.name.as_deref())?;
    let req: NewSession = json_body(request, 1, placement::Body::NewSession).await?;
    let (mut spec, idle) = state.policy.session_spec(req, state.session_timeouts)?;
    spec.tenant = caller.0.name.clone();
    let quota = check_session_quota(&state, &caller);
    let info = crate::idempotency::session_start(&state, key, spec, idle, quota).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Live sessions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    operation_id = "list_sessions",
    tag = "sessions",
    responses(
        (status = 200, description = "Live sessions", body = SessionList),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<SessionList>, ApiError> {
    let mut sessions = state.backend.list_sessions().await?;
    sessions.retain(|s| caller.0.may_see(s.tenant.as_deref()));
    Ok(Json(SessionList { sessions }))
}

/// One session.
#[utoipa::path(
    get,
    path = "/api/v1/sessions/{id}",
    operation_id = "get_session",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (`ses_...`)")),
    responses(
        (status = 200, description = "The session", body = SessionInfo),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown or ended", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    visible_session(&state, &caller, &id).await.map(Json)
}

/// Ends a session: a running call stops and every process of the session is gone when this answers.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}",
    operation_id = "delete_session",
    tag = "sessions",
    params(("id" = String, Path, description = "Session id (`ses_...`)")),
    responses(
        (status = 200, description = "The session, `state: ended`", body = SessionInfo),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown or already ended", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SessionInfo>, ApiError> {
    visible_session(&state, &caller, &id).await?;
    state.backend.delete_session(&id).await?.map(Json).ok_or_else(|| session_not_found(&id))
}

/// Runs code as a cell of the session: what earlier calls defined is there, what this one defines stays. The
/// answer is the call's result, also kept as an execution (with `session_id`). One call at a time: a call while
/// another runs answers 409 at once.
#[utoipa::path(
    post,
    path = "/api/v1/sessions/{id}/eval",
    operation_id = "session_eval",
    tag = "sessions",
    params(
        ("id" = String, Path, description = "Session id (`ses_...`)"),
        ("Idempotency-Key" = Option<String>, Header, description = "Retry safely: the same key with the same call returns the first call's result instead of running the cell again; with another call, 422 (docs/api.md, Retries)"),
    ),
    // Only the fields a call may carry: the made-up example would name the session's own fields, which answer 400.
    request_body(
        content = EvalRequest,
        description = "`code`, `files`, `stdin`, `eval_last_expr` (default true) and `config.timeout_seconds`; other fields belong to the session and answer 400.",
        example = json!({
            "code": "import os\ncalls = globals().get('calls', 0) + 1\nf\"{os.environ.get('GREETING', 'hi')} from call {calls}\"",
            "config": {"timeout_seconds": 30}
        })
    ),
    responses(
        (status = 200, description = "The call ended (a timeout is `failed`; `session_restarted` says whether state was lost)", body = ExecutionResult),
        (status = 400, description = "Invalid request, or a field that belongs to the session", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown or ended session", body = ErrorResponse),
        (status = 409, description = "Another call of the session is running", body = ErrorResponse),
        (status = 413, description = "More than 102400 bytes of code, or files over their limit", body = ErrorResponse),
        (status = 422, description = "The Idempotency-Key was used for another call", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn eval(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    request: Request,
) -> Result<Json<ExecutionResult>, ApiError> {
    visible_session(&state, &caller, &id).await?;
    let key = crate::idempotency::key_of(request.headers(), caller.0.name.as_deref())?;
    let req: EvalRequest = json_body(request, state.upload_limit_mb, placement::Body::Eval).await?;
    let call = state.policy.session_call(req)?;
    Ok(Json(crate::idempotency::session_call(&state, key, &id, call).await?))
}
