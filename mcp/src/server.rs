//! The MCP server: four tools over an [`Executor`], which the API server implements in-process (for `/mcp`) and the
//! CLI implements over HTTP (for `python-executor mcp` on stdio). Program failures are tool results with `isError`
//! (the model reads what went wrong and can fix its code); only calls that cannot be made at all are protocol errors.

use std::sync::Arc;

use pyexec_core::{CodeFile, EvalRequest, ExecutionResult, ExecutionStatus, Metadata};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};

use crate::tools::{ExecutionRef, RunPython, succeeded, summarize};

/// Why a call could not be made (refused input, unknown id, server unreachable): shown to the model as the tool's
/// error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExecutorError(pub String);

/// Where executions run.
#[async_trait::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs an `/eval` request and waits for its result.
    async fn run(&self, request: EvalRequest) -> Result<ExecutionResult, ExecutorError>;
    /// Starts a project run; returns its id at once.
    async fn submit(&self, files: Vec<CodeFile>, metadata: Metadata) -> Result<String, ExecutorError>;
    /// An execution's current state; `None` when unknown.
    async fn get(&self, id: &str) -> Result<Option<ExecutionResult>, ExecutorError>;
    /// Stops an execution; its status after the request, `None` when unknown.
    async fn kill(&self, id: &str) -> Result<Option<ExecutionStatus>, ExecutorError>;
}

/// The python-executor MCP server.
#[derive(Clone)]
pub struct PythonTools {
    executor: Arc<dyn Executor>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for PythonTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonTools").finish_non_exhaustive()
    }
}

fn text(message: impl Into<String>) -> Vec<ContentBlock> {
    vec![ContentBlock::text(message.into())]
}

/// What a tool call gives back to a model, the same for MCP and for plain tool-calling loops
/// (`POST /api/v1/tools/run_python`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ToolAnswer {
    /// The text the model reads.
    pub content: String,
    /// The program failed (or the call was refused): the model should look at `content`.
    pub is_error: bool,
    /// The execution's full result, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionResult>,
}

impl ToolAnswer {
    fn of(result: ExecutionResult) -> ToolAnswer {
        ToolAnswer { content: summarize(&result), is_error: !succeeded(&result), execution: Some(result) }
    }

    fn refused(e: ExecutorError) -> ToolAnswer {
        ToolAnswer { content: e.0, is_error: true, execution: None }
    }

    fn into_mcp(self) -> CallToolResult {
        let mut answer = if self.is_error {
            CallToolResult::error(text(self.content))
        } else {
            CallToolResult::success(text(self.content))
        };
        answer.structured_content = self.execution.and_then(|r| serde_json::to_value(r).ok());
        answer
    }
}

/// Runs a `run_python` call: the REPL-mode run and the answer a model should read.
pub async fn run_python(executor: &dyn Executor, call: RunPython) -> ToolAnswer {
    match executor.run(call.to_eval()).await {
        Ok(result) => ToolAnswer::of(result),
        Err(e) => ToolAnswer::refused(e),
    }
}

fn result_of(result: &ExecutionResult) -> CallToolResult {
    ToolAnswer::of(result.clone()).into_mcp()
}

fn refused(e: ExecutorError) -> CallToolResult {
    ToolAnswer::refused(e).into_mcp()
}

#[tool_router]
impl PythonTools {
    /// A server over `executor`.
    pub fn new(executor: Arc<dyn Executor>) -> PythonTools {
        PythonTools { executor, tool_router: Self::tool_router() }
    }

    #[tool(name = "run_python", description = crate::tools::RUN_PYTHON_DESCRIPTION)]
    async fn run_python(&self, Parameters(call): Parameters<RunPython>) -> CallToolResult {
        run_python(self.executor.as_ref(), call).await.into_mcp()
    }

    #[tool(
        name = "submit_python",
        description = "Start a long Python run in the sandbox and return its execution_id at once, without \
                       waiting. Same parameters and sandbox as run_python, but the program runs as a project (no \
                       REPL value, no automatic import detection: list packages in `requirements`). Poll it with \
                       get_execution; stop it with kill_execution."
    )]
    async fn submit_python(&self, Parameters(call): Parameters<RunPython>) -> CallToolResult {
        let (files, metadata) = call.to_project();
        match self.executor.submit(files, metadata).await {
            Ok(id) => {
                let value = serde_json::json!({"execution_id": id, "status": "pending"});
                let mut answer =
                    CallToolResult::success(text(format!("submitted: execution_id {id}; poll it with get_execution")));
                answer.structured_content = Some(value);
                answer
            }
            Err(e) => refused(e),
        }
    }

    #[tool(
        name = "get_execution",
        description = "The current state of an execution started with submit_python: status (pending, running, \
                       completed, failed, killed), and once it ended its exit code, output and error."
    )]
    async fn get_execution(
        &self,
        Parameters(ExecutionRef { execution_id }): Parameters<ExecutionRef>,
    ) -> CallToolResult {
        match self.executor.get(&execution_id).await {
            Ok(Some(result)) if !result.status.is_terminal() => {
                let mut answer = CallToolResult::success(text(format!("status: {} (not finished yet)", result.status)));
                answer.structured_content = serde_json::to_value(&result).ok();
                answer
            }
            Ok(Some(result)) => result_of(&result),
            Ok(None) => refused(ExecutorError(format!("no execution {execution_id} (unknown, or expired)"))),
            Err(e) => refused(e),
        }
    }

    #[tool(
        name = "kill_execution",
        description = "Stop an execution started with submit_python (its whole process tree). Finished executions \
                       are left as they are."
    )]
    async fn kill_execution(
        &self,
        Parameters(ExecutionRef { execution_id }): Parameters<ExecutionRef>,
    ) -> CallToolResult {
        match self.executor.kill(&execution_id).await {
            Ok(Some(status)) => {
                let mut answer = CallToolResult::success(text(format!("status: {status}")));
                answer.structured_content = Some(serde_json::json!({"execution_id": execution_id, "status": status}));
                answer
            }
            Ok(None) => refused(ExecutorError(format!("no execution {execution_id} (unknown, or expired)"))),
            Err(e) => refused(e),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PythonTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("python-executor", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Runs Python in isolated sandboxes. Use run_python for anything that finishes within its timeout; \
                 submit_python, get_execution and kill_execution for long runs.",
            )
    }
}
