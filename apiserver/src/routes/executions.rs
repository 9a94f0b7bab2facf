//! Reading, listing, following and killing executions.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use pyexec_core::model::is_execution_id;
use pyexec_core::{ErrorResponse, ExecutionResult, ExecutionStatus, KillResponse};
use serde::{Deserialize, Serialize};

use crate::backend::{ExecutionEvent, ExecutionPage, KillReason, ListQuery};
use crate::error::ApiError;
use crate::state::AppState;

fn known_id(id: &str) -> Result<(), ApiError> {
    if is_execution_id(id) { Ok(()) } else { Err(ApiError::execution_not_found()) }
}

/// The state of one execution.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id (`exe_...`)")),
    responses(
        (status = 200, description = "Current state", body = ExecutionResult),
        (status = 404, description = "Unknown or expired", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<ExecutionResult>, ApiError> {
    known_id(&id)?;
    state.backend.get(&id).await?.map(Json).ok_or_else(ApiError::execution_not_found)
}

/// Kills a pending (it never runs) or running execution (its whole process tree). Finished executions are left
/// as they are and their status is returned.
#[utoipa::path(
    delete,
    path = "/api/v1/executions/{id}",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id (`exe_...`)")),
    responses(
        (status = 200, description = "Status after the request", body = KillResponse),
        (status = 404, description = "Unknown or expired", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn kill(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<KillResponse>, ApiError> {
    known_id(&id)?;
    let status = state.backend.kill(&id, KillReason::Request).await?.ok_or_else(ApiError::execution_not_found)?;
    Ok(Json(KillResponse { status }))
}

/// Query of the execution list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// Only executions in this status (`pending`, `running`, `completed`, `failed`, `killed`).
    status: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Executions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/executions",
    tag = "executions",
    params(ListParams),
    responses(
        (status = 200, description = "One page", body = ExecutionPage),
        (status = 400, description = "Invalid filter", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
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
    let query = ListQuery { status, limit, before: params.cursor.filter(|c| !c.is_empty()) };
    Ok(Json(state.backend.list(query).await?))
}

/// Follows an execution: Server-Sent Events `output` (`{"stream": "stdout", "data": "..."}`) as output is
/// produced, `status` when it starts running, and finally `result` (the whole result), after which the stream
/// ends. A finished execution sends only `result`.
#[utoipa::path(
    get,
    path = "/api/v1/executions/{id}/events",
    tag = "executions",
    params(("id" = String, Path, description = "Execution id (`exe_...`)")),
    responses(
        (status = 200, description = "text/event-stream of output, status and result events", content_type = "text/event-stream", body = String),
        (status = 404, description = "Unknown or expired", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    known_id(&id)?;
    let stream = state.backend.events(&id).await?.ok_or_else(ApiError::execution_not_found)?;
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
