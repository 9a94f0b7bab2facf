//! Reading, listing, following and killing executions.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use pyexec_core::model::is_execution_id;
use pyexec_core::{ErrorResponse, ExecutionResult, ExecutionStatus, KillResponse};
use serde::{Deserialize, Serialize};

use crate::backend::{ExecutionEvent, ExecutionPage, KillReason, ListQuery};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::Caller;

fn known_id(state: &AppState, id: &str) -> Result<(), ApiError> {
    if is_execution_id(id) { Ok(()) } else { Err(state.execution_not_found()) }
}

/// The execution `id` when the caller may see it: another tenant's answers as an unknown one (docs/tenants.md).
pub(crate) async fn visible(state: &AppState, caller: &Caller, id: &str) -> Result<ExecutionResult, ApiError> {
    known_id(state, id)?;
    match state.backend.get(id).await? {
        Some(result) if caller.0.may_see(result.tenant.as_deref()) => Ok(result),
        _ => Err(state.execution_not_found()),
    }
}

/// The state of one execution.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}",
    operation_id = "get_execution",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id (`exe_...`)")),
    responses(
        (status = 200, description = "Current state", body = ExecutionResult),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown or expired", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionResult>, ApiError> {
    visible(&state, &caller, &id).await.map(Json)
}

/// Kills a pending (it never runs) or running execution (its whole process tree). Finished executions are left
/// as they are and their status is returned.
#[utoipa::path(
    delete,
    path = "/api/v1/executions/{id}",
    operation_id = "kill_execution",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id (`exe_...`)")),
    responses(
        (status = 200, description = "Status after the request", body = KillResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown or expired", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn kill(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<KillResponse>, ApiError> {
    visible(&state, &caller, &id).await?;
    let status = state.backend.kill(&id, KillReason::Request).await?.ok_or_else(|| state.execution_not_found())?;
    Ok(Json(KillResponse { status }))
}

/// Query of the execution list.
///
/// The fields are read as text so that a bad value gets this API's own 400 message; the document declares the
/// types the values must have. utoipa places `IntoParams` fields in the path unless told otherwise.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only executions in this status (`pending`, `running`, `completed`, `failed`, `killed`).
    #[param(value_type = ExecutionStatus, required = false)]
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 500, default = 50)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Only this tenant's executions (for admin tenants; every other caller sees only its own).
    #[param(required = false)]
    tenant: Option<String>,
    /// Only the calls of this session (`ses_...`).
    #[param(required = false)]
    session_id: Option<String>,
}

/// Executions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/executions",
    operation_id = "list_executions",
    tag = "executions",
    params(ListParams),
    responses(
        (status = 200, description = "One page", body = ExecutionPage),
        (status = 400, description = "Invalid filter", body = ErrorResponse),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ExecutionPage>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let status = params
        .status
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<ExecutionStatus>())
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let limit = match params.limit.as_deref() {
        None | Some("") => 50,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=500) => n,
            _ => return Err(ApiError::BadRequest(format!("limit must be a number from 1 to 500, got {l:?}"))),
        },
    };
    // A tenant lists its own; an admin every tenant's, or one it names.
    let tenant = caller.0.list_filter().or_else(|| params.tenant.filter(|t| !t.is_empty()));
    let before = params.cursor.filter(|c| !c.is_empty());
    let session_id = params.session_id.filter(|s| !s.is_empty());
    let query = ListQuery { status, limit, before, tenant, session_id };
    Ok(Json(state.backend.list(query).await?))
}

/// Follows an execution: Server-Sent Events. The first is `status` with the current status (`pending` or
/// `running`); a pending execution then sends `status` `running` when it starts; a running one the output produced
/// so far, then `output` (`{"stream": "stdout", "data": "..."}`) as it is produced; finally `result` (the whole
/// result), after which the stream ends. A finished execution sends only `result`.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}/events",
    operation_id = "execution_events",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id (`exe_...`)")),
    responses(
        (status = 200, description = "text/event-stream of output, status and result events", content_type = "text/event-stream", body = String),
        (status = 401, description = "Missing or invalid API key", body = ErrorResponse),
        (status = 404, description = "Unknown or expired", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    visible(&state, &caller, &id).await?;
    let stream = state.backend.events(&id).await?.ok_or_else(|| state.execution_not_found())?;
    Ok(Sse::new(stream.map(|event| Ok(sse_event(event)))).keep_alive(KeepAlive::default()))
}

#[derive(Serialize)]
struct OutputData<'a> {
    stream: &'a str,
    data: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct StatusData {
    status: ExecutionStatus,
}

fn sse_event(event: ExecutionEvent) -> Event {
    let built = match &event {
        ExecutionEvent::Output { stream, data } => {
            Event::default().event("output").json_data(OutputData { stream, data: String::from_utf8_lossy(data) })
        }
        ExecutionEvent::Status(status) => Event::default().event("status").json_data(StatusData { status: *status }),
        ExecutionEvent::Result(result) => Event::default().event("result").json_data(result),
    };
    // Serialising these types cannot fail; an empty comment keeps the stream well-formed if it ever did.
    built.unwrap_or_else(|_| Event::default().comment(""))
}
