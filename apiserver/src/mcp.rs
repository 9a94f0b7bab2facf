//! For agents: the MCP server at `/mcp` (streamable HTTP, behind the same API keys as `/api`), running tools
//! in-process against this server's backend, and `GET /api/v1/tools`, the `run_python` tool in the OpenAI and
//! Anthropic formats (from the same schema as the MCP tool).

use std::sync::Arc;

use axum::Json;
use pyexec_core::ErrorResponse;
use pyexec_core::model::is_execution_id;
use pyexec_core::session::{FileList, NewSession, SessionInfo, is_session_id};
use pyexec_core::{CodeFile, EvalRequest, ExecutionResult, ExecutionStatus, Metadata};
use pyexec_mcp::{Executor, ExecutorError, FileOwner, PythonTools};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::backend::{BackendError, KillReason, Source};
use crate::error::ApiError;
use crate::routes::files::work_path;
use crate::routes::sync;
use crate::state::AppState;

/// Tools run against the server's own backend, with the same validation as the REST endpoints.
struct InProcess {
    state: AppState,
}

/// A failure as the agent reads it: refusals keep their message, internal failures are logged and stay generic.
fn refused(e: ApiError) -> ExecutorError {
    if let ApiError::Internal(detail) = &e {
        tracing::error!(error = %detail, "tool call failed");
    }
    ExecutorError(e.client_message())
}

#[async_trait::async_trait]
impl Executor for InProcess {
    async fn run(&self, request: EvalRequest) -> Result<ExecutionResult, ExecutorError> {
        let state = &self.state;
        let (spec, files) = state.policy.spec_from_eval(request).map_err(|e| refused(e.into()))?;
        state.backend.check(&spec).map_err(|e| refused(e.into()))?;
        sync::run(state, spec, Source::Files(files)).await.map(|Json(r)| r).map_err(refused)
    }

    async fn submit(&self, files: Vec<CodeFile>, metadata: Metadata) -> Result<String, ExecutorError> {
        let state = &self.state;
        let spec = state.policy.spec_from_metadata(metadata).map_err(|e| refused(e.into()))?;
        for file in &files {
            pyexec_core::spec::check_file_name(&file.name).map_err(|e| refused(e.into()))?;
        }
        state.backend.check(&spec).map_err(|e| refused(e.into()))?;
        let record = sync::submit(state, spec, Source::Files(files)).await.map_err(refused)?;
        Ok(record.execution_id)
    }

    async fn get(&self, id: &str) -> Result<Option<ExecutionResult>, ExecutorError> {
        self.state.backend.get(id).await.map_err(|e| refused(e.into()))
    }

    async fn kill(&self, id: &str) -> Result<Option<ExecutionStatus>, ExecutorError> {
        self.state.backend.kill(id, KillReason::Request).await.map_err(|e| refused(e.into()))
    }

    async fn create_session(&self, request: NewSession) -> Result<SessionInfo, ExecutorError> {
        let state = &self.state;
        let (spec, idle) = state.policy.session_spec(request, state.session_timeouts).map_err(|e| refused(e.into()))?;
        state.backend.create_session(spec, idle).await.map_err(|e| refused(e.into()))
    }

    async fn session_run(
        &self,
        session_id: &str,
        request: EvalRequest,
    ) -> Result<Option<ExecutionResult>, ExecutorError> {
        let state = &self.state;
        if !is_session_id(session_id) {
            return Ok(None);
        }
        let call = state.policy.session_call(request).map_err(|e| refused(e.into()))?;
        match state.backend.session_eval(session_id, call).await {
            Ok(result) => Ok(Some(result)),
            Err(BackendError::NotFound(_)) => Ok(None),
            Err(e) => Err(refused(e.into())),
        }
    }

    async fn close_session(&self, session_id: &str) -> Result<Option<SessionInfo>, ExecutorError> {
        if !is_session_id(session_id) {
            return Ok(None);
        }
        self.state.backend.delete_session(session_id).await.map_err(|e| refused(e.into()))
    }

    async fn list_files(&self, owner: &FileOwner) -> Result<Option<FileList>, ExecutorError> {
        let backend = &self.state.backend;
        match owner {
            FileOwner::Execution(id) if is_execution_id(id) => {
                backend.execution_files(id).await.map_err(|e| refused(e.into()))
            }
            FileOwner::Session(id) if is_session_id(id) => match backend.session_files(id).await {
                Ok(list) => Ok(Some(list)),
                Err(BackendError::NotFound(_)) => Ok(None),
                Err(e) => Err(refused(e.into())),
            },
            _ => Ok(None),
        }
    }

    async fn read_file(&self, owner: &FileOwner, path: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, ExecutorError> {
        let path = work_path(path).map_err(refused)?;
        let backend = &self.state.backend;
        let too_large =
            |size: u64| ExecutorError(format!("{path} has {size} bytes, over the {max_bytes} a tool reads"));
        match owner {
            FileOwner::Execution(id) if is_execution_id(id) => {
                let Some(list) = backend.execution_files(id).await.map_err(|e| refused(e.into()))? else {
                    return Ok(None);
                };
                match list.files.iter().find(|f| f.path == path) {
                    None => Ok(None),
                    Some(f) if f.size > max_bytes => Err(too_large(f.size)),
                    Some(_) => backend.execution_file(id, &path).await.map_err(|e| refused(e.into())),
                }
            }
            FileOwner::Session(id) if is_session_id(id) => {
                // The listing says the size without reading the file.
                let list = match backend.session_files(id).await {
                    Ok(list) => list,
                    Err(BackendError::NotFound(_)) => return Ok(None),
                    Err(e) => return Err(refused(e.into())),
                };
                match list.files.iter().find(|f| f.path == path) {
                    None => Ok(None),
                    Some(f) if f.size > max_bytes => Err(too_large(f.size)),
                    Some(_) => match backend.session_file(id, &path).await {
                        Ok(bytes) => Ok(Some(bytes)),
                        Err(BackendError::NotFound(_)) => Ok(None),
                        Err(e) => Err(refused(e.into())),
                    },
                }
            }
            _ => Ok(None),
        }
    }
}

/// The `/mcp` service. Its `Host` and `Origin` checks (DNS rebinding, cross-site requests) are the server's own,
/// in [`crate::origin`], applied before the request gets here, so rmcp's are off.
pub fn service(state: AppState) -> StreamableHttpService<PythonTools, LocalSessionManager> {
    let executor: Arc<dyn Executor> = Arc::new(InProcess { state });
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts().disable_allowed_origins();
    StreamableHttpService::new(move || Ok(PythonTools::new(executor.clone())), Arc::default(), config)
}

/// Runs a `run_python` tool call as a model produced it (its `arguments` / `input` object) and answers what the
/// model should read: `{"content": "...", "is_error": false, "execution": {...}}`.
#[utoipa::path(
    post,
    path = "/api/v1/tools/run_python",
    tag = "agents",
    request_body(content = Object, description = "The tool call's arguments, as in the run_python schema"),
    responses(
        (status = 200, description = "The answer for the model (a failing program is `is_error: true`)", body = Object),
        (status = 400, description = "The arguments are not JSON of the run_python shape", body = ErrorResponse),
    ),
    security((), ("bearer" = []))
)]
pub async fn call_run_python(
    axum::extract::State(state): axum::extract::State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<pyexec_mcp::ToolAnswer>, ApiError> {
    let call: pyexec_mcp::RunPython = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid run_python arguments: {e}")))?;
    Ok(Json(pyexec_mcp::run_python(&InProcess { state }, call).await))
}

/// `run_python` for the OpenAI and Anthropic tool-calling APIs.
#[utoipa::path(
    get,
    path = "/api/v1/tools",
    tag = "agents",
    responses((status = 200, description = "`{\"openai\": [...], \"anthropic\": [...]}` with the run_python tool", body = Object)),
    security((), ("bearer" = []))
)]
pub async fn tools() -> Json<serde_json::Value> {
    Json(pyexec_mcp::tool_definitions())
}
