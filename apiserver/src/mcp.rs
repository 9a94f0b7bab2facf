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
use crate::routes::executions::visible;
use crate::routes::files::work_path;
use crate::routes::sessions::{check_session_quota, visible_session};
use crate::routes::sync;
use crate::state::AppState;
use crate::tenants::Caller;

/// Tools run against the server's own backend, with the same validation as the REST endpoints, for one caller:
/// what its tenant may see and do, as over REST (docs/tenants.md).
struct InProcess {
    state: AppState,
    /// `None` only for the service's shared executor, which serves no call itself: every call gets the executor
    /// of its request's caller ([`Executor::for_request`]).
    caller: Option<Caller>,
}

/// A failure as the agent reads it: refusals keep their message, internal failures are logged and stay generic.
fn refused(e: ApiError) -> ExecutorError {
    if let ApiError::Internal(detail) = &e {
        tracing::error!(error = %detail, "tool call failed");
    }
    ExecutorError(e.client_message())
}

/// An answer that the thing asked for does not exist for this caller: `Ok(None)`; other failures stay errors.
fn unknown_as_none<T>(found: Result<T, ApiError>) -> Result<Option<T>, ExecutorError> {
    match found {
        Ok(found) => Ok(Some(found)),
        Err(ApiError::NotFound(_) | ApiError::ExecutionNotFound { .. }) => Ok(None),
        Err(e) => Err(refused(e)),
    }
}

impl InProcess {
    fn caller(&self) -> Result<&Caller, ExecutorError> {
        // Authentication puts a caller on every /mcp request; a call without one is refused, never served as anyone.
        self.caller.as_ref().ok_or_else(|| ExecutorError("the tool call carries no authenticated caller".into()))
    }
}

#[async_trait::async_trait]
impl Executor for InProcess {
    async fn run(&self, request: EvalRequest) -> Result<ExecutionResult, ExecutorError> {
        let (state, caller) = (&self.state, self.caller()?);
        let (mut spec, files) = state.policy.spec_from_eval(request).map_err(|e| refused(e.into()))?;
        spec.tenant = caller.0.name.clone();
        state.backend.check(&spec).map_err(|e| refused(e.into()))?;
        sync::run(state, spec, Source::Files(files)).await.map(|Json(r)| r).map_err(refused)
    }

    async fn submit(&self, files: Vec<CodeFile>, metadata: Metadata) -> Result<String, ExecutorError> {
        let (state, caller) = (&self.state, self.caller()?);
        let mut spec = state.policy.spec_from_metadata(metadata).map_err(|e| refused(e.into()))?;
        spec.tenant = caller.0.name.clone();
        for file in &files {
            pyexec_core::spec::check_file_name(&file.name).map_err(|e| refused(e.into()))?;
        }
        state.backend.check(&spec).map_err(|e| refused(e.into()))?;
        let record = sync::submit(state, spec, Source::Files(files)).await.map_err(refused)?;
        Ok(record.execution_id)
    }

    async fn get(&self, id: &str) -> Result<Option<ExecutionResult>, ExecutorError> {
        unknown_as_none(visible(&self.state, self.caller()?, id).await)
    }

    async fn kill(&self, id: &str) -> Result<Option<ExecutionStatus>, ExecutorError> {
        if unknown_as_none(visible(&self.state, self.caller()?, id).await)?.is_none() {
            return Ok(None);
        }
        self.state.backend.kill(id, KillReason::Request).await.map_err(|e| refused(e.into()))
    }

    async fn create_session(&self, request: NewSession) -> Result<SessionInfo, ExecutorError> {
        let (state, caller) = (&self.state, self.caller()?);
        let (mut spec, idle) =
            state.policy.session_spec(request, state.session_timeouts).map_err(|e| refused(e.into()))?;
        check_session_quota(state, caller).await.map_err(refused)?;
        spec.tenant = caller.0.name.clone();
        state.backend.create_session(spec, idle).await.map_err(|e| refused(e.into()))
    }

    async fn session_run(
        &self,
        session_id: &str,
        request: EvalRequest,
    ) -> Result<Option<ExecutionResult>, ExecutorError> {
        let state = &self.state;
        if unknown_as_none(visible_session(state, self.caller()?, session_id).await)?.is_none() {
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
        if unknown_as_none(visible_session(&self.state, self.caller()?, session_id).await)?.is_none() {
            return Ok(None);
        }
        self.state.backend.delete_session(session_id).await.map_err(|e| refused(e.into()))
    }

    async fn list_files(&self, owner: &FileOwner) -> Result<Option<FileList>, ExecutorError> {
        if !self.owns(owner).await? {
            return Ok(None);
        }
        let backend = &self.state.backend;
        match owner {
            FileOwner::Execution(id) => backend.execution_files(id).await.map_err(|e| refused(e.into())),
            FileOwner::Session(id) => match backend.session_files(id).await {
                Ok(list) => Ok(Some(list)),
                Err(BackendError::NotFound(_)) => Ok(None),
                Err(e) => Err(refused(e.into())),
            },
        }
    }

    async fn read_file(&self, owner: &FileOwner, path: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, ExecutorError> {
        let path = work_path(path).map_err(refused)?;
        // The listing says the size without reading the file; it also checks that the caller may see the owner.
        let Some(list) = self.list_files(owner).await? else { return Ok(None) };
        let backend = &self.state.backend;
        match list.files.iter().find(|f| f.path == path) {
            None => Ok(None),
            Some(f) if f.size > max_bytes => {
                Err(ExecutorError(format!("{path} has {} bytes, over the {max_bytes} a tool reads", f.size)))
            }
            Some(_) => match owner {
                FileOwner::Execution(id) => backend.execution_file(id, &path).await.map_err(|e| refused(e.into())),
                FileOwner::Session(id) => match backend.session_file(id, &path).await {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(BackendError::NotFound(_)) => Ok(None),
                    Err(e) => Err(refused(e.into())),
                },
            },
        }
    }

    fn for_request(&self, request: &rmcp::model::Extensions) -> Option<Arc<dyn Executor>> {
        let caller = request.get::<axum::http::request::Parts>().and_then(|parts| parts.extensions.get::<Caller>());
        Some(Arc::new(InProcess { state: self.state.clone(), caller: caller.cloned() }))
    }
}

impl InProcess {
    /// Whether the files' owner exists for this caller (a malformed id does not).
    async fn owns(&self, owner: &FileOwner) -> Result<bool, ExecutorError> {
        let caller = self.caller()?;
        Ok(match owner {
            FileOwner::Execution(id) if is_execution_id(id) => {
                unknown_as_none(visible(&self.state, caller, id).await)?.is_some()
            }
            FileOwner::Session(id) if is_session_id(id) => {
                unknown_as_none(visible_session(&self.state, caller, id).await)?.is_some()
            }
            _ => false,
        })
    }
}

/// The `/mcp` service. Its `Host` and `Origin` checks (DNS rebinding, cross-site requests) are the server's own,
/// in [`crate::origin`], applied before the request gets here, so rmcp's are off.
pub fn service(state: AppState) -> StreamableHttpService<PythonTools, LocalSessionManager> {
    let budget = state.mcp_output;
    let executor: Arc<dyn Executor> = Arc::new(InProcess { state, caller: None });
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts().disable_allowed_origins();
    StreamableHttpService::new(
        move || Ok(PythonTools::new(executor.clone()).with_output_budget(budget)),
        Arc::default(),
        config,
    )
}

/// Runs a `run_python` tool call as a model produced it (its `arguments` / `input` object) and answers what the
/// model should read: `{"content": "...", "is_error": false, "execution": {...}}`, `content` within the MCP output
/// budget (`PYEXEC_MCP_MAX_STDOUT_BYTES`, `PYEXEC_MCP_MAX_STDERR_BYTES`) and `execution` whole.
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
    axum::extract::Extension(caller): axum::extract::Extension<Caller>,
    body: axum::body::Bytes,
) -> Result<Json<pyexec_mcp::ToolAnswer>, ApiError> {
    let call: pyexec_mcp::RunPython = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid run_python arguments: {e}")))?;
    let budget = state.mcp_output;
    Ok(Json(pyexec_mcp::run_python(&InProcess { state, caller: Some(caller) }, call, budget).await))
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
