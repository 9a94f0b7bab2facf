//! The MCP server: its tools over an [`Executor`], which the API server implements in-process (for `/mcp`) and the
//! CLI implements over HTTP (for `python-executor mcp` on stdio). Program failures are tool results with `isError`
//! (the model reads what went wrong and can fix its code); only calls that cannot be made at all are protocol errors.
//!
//! Tools: `run_python`, `submit_python`, `get_execution`, `kill_execution`; sessions (`create_session`,
//! `session_run_python`, `close_session`); files (`list_files`, `get_file`). Display outputs of a run that are
//! images (matplotlib figures, `display(obj)`) come back as MCP image content next to the text, so that a model
//! sees its plots.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pyexec_core::session::{FileList, NewSession, SessionInfo};
use pyexec_core::{CodeFile, EvalRequest, ExecutionResult, ExecutionStatus, Metadata};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ResourceContents, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};

use crate::budget::{OutputBudget, Shares};
use crate::tools::{
    CreateSession, ExecutionRef, FileOwner, GetFile, ListFiles, RunPython, SessionRef, SessionRunPython,
    capped_message, is_image, succeeded, summarize,
};

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

    /// Starts a session (`POST /api/v1/sessions`), its requirements installed; the new session. A full server is
    /// an error whose message says so.
    async fn create_session(&self, request: NewSession) -> Result<SessionInfo, ExecutorError> {
        let _ = request;
        Err(unsupported())
    }

    /// Runs a call in a session (`POST /api/v1/sessions/{id}/eval`) and waits for its result; `None` when the
    /// session is unknown (or ended). A session busy with another call is an error whose message says so.
    async fn session_run(
        &self,
        session_id: &str,
        request: EvalRequest,
    ) -> Result<Option<ExecutionResult>, ExecutorError> {
        let _ = (session_id, request);
        Err(unsupported())
    }

    /// Ends a session (`DELETE /api/v1/sessions/{id}`); the session as it ended, `None` when unknown.
    async fn close_session(&self, session_id: &str) -> Result<Option<SessionInfo>, ExecutorError> {
        let _ = session_id;
        Err(unsupported())
    }

    /// The files of an execution or of a session's `/work` (`GET .../files`); `None` when the execution or the
    /// session is unknown.
    async fn list_files(&self, owner: &FileOwner) -> Result<Option<FileList>, ExecutorError> {
        let _ = owner;
        Err(unsupported())
    }

    /// One file's bytes (`GET .../files/{path}`); `None` when the file (or its execution or session) is unknown.
    /// A file over `max_bytes` is an error (implementations should refuse it without reading it whole).
    /// `path` is as the model gave it: implementations check it as the REST endpoints do.
    async fn read_file(&self, owner: &FileOwner, path: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, ExecutorError> {
        let _ = (owner, path, max_bytes);
        Err(unsupported())
    }

    /// The executor of one tool call, from what the transport attached to the call's request (over streamable
    /// HTTP: the request's `http::request::Parts`, where the server's authentication put the caller). `None`: this
    /// executor serves every call alike (the default, and the CLI's, whose server knows the caller by its key).
    fn for_request(&self, request: &rmcp::model::Extensions) -> Option<Arc<dyn Executor>> {
        let _ = request;
        None
    }
}

/// What the methods an executor does not implement answer.
fn unsupported() -> ExecutorError {
    ExecutorError("sessions and files are not supported by this server".into())
}

/// The python-executor MCP server.
#[derive(Clone)]
pub struct PythonTools {
    executor: Arc<dyn Executor>,
    budget: OutputBudget,
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
    /// The answer about `result`, its output within `budget` in `content` (`execution` keeps it all).
    fn of(result: ExecutionResult, budget: OutputBudget) -> ToolAnswer {
        ToolAnswer { content: summarize(&result, budget), is_error: !succeeded(&result), execution: Some(result) }
    }

    fn refused(e: ExecutorError) -> ToolAnswer {
        ToolAnswer { content: e.0, is_error: true, execution: None }
    }

    /// The MCP answer: the summary, then each image output as an image; the structured result carries the other
    /// fields, but not what the summary or the images already carry (each piece of output is sent once: clients
    /// hold the whole answer in memory, and models read only the text).
    fn into_mcp(self, budget: OutputBudget) -> CallToolResult {
        let mut content = text(self.content);
        if let Some(result) = &self.execution {
            content.extend(
                result
                    .outputs
                    .iter()
                    .filter(|o| is_image(&o.kind))
                    .map(|o| ContentBlock::image(o.data.trim(), o.kind.as_str())),
            );
        }
        let mut answer = if self.is_error { CallToolResult::error(content) } else { CallToolResult::success(content) };
        answer.structured_content = self.execution.as_ref().and_then(|r| structured(r, budget));
        answer
    }
}

/// A result as structured content: every field but the output, which the text (stdout, stderr, text display
/// outputs) and the image content (images) carry: `stdout` and `stderr` give way to their sizes, display outputs
/// keep their type and size, a value (`result`) cut in the text gives way to its size, and the exception message
/// is cut like the text's.
fn structured(result: &ExecutionResult, budget: OutputBudget) -> Option<serde_json::Value> {
    let mut value = serde_json::to_value(result).ok()?;
    let fields = value.as_object_mut()?;
    fields.remove("stdout");
    fields.remove("stderr");
    fields.insert("stdout_bytes".into(), result.stdout.len().into());
    fields.insert("stderr_bytes".into(), result.stderr.len().into());
    // A value cut in the text (its start and its end are there) is not here: only a whole value is given twice.
    let shares = Shares::of(result, budget);
    if let Some(value) = &result.result
        && value.len() > shares.value
    {
        fields.remove("result");
        fields.insert("result_bytes".into(), value.len().into());
        fields.insert("result_truncated".into(), true.into());
    }
    if let Some(message) = &result.error_message {
        fields.insert("error_message".into(), capped_message(message, shares).into_owned().into());
    }
    if let Some(outputs) = fields.get_mut("outputs").and_then(|o| o.as_array_mut()) {
        for output in outputs {
            let image = output.get("type").and_then(|t| t.as_str()).is_some_and(is_image);
            if let Some(item) = output.as_object_mut() {
                let size = item.remove("data").and_then(|d| {
                    d.as_str().map(|d| if image { BASE64.decode(d.trim()).map_or(0, |b| b.len()) } else { d.len() })
                });
                item.insert("bytes".into(), size.unwrap_or_default().into());
            }
        }
    }
    Some(value)
}

/// Runs a `run_python` call: the REPL-mode run and the answer a model should read, its output within `budget`.
pub async fn run_python(executor: &dyn Executor, call: RunPython, budget: OutputBudget) -> ToolAnswer {
    match executor.run(call.to_eval()).await {
        Ok(result) => ToolAnswer::of(result, budget),
        Err(e) => ToolAnswer::refused(e),
    }
}

fn refused(e: ExecutorError) -> CallToolResult {
    // A refusal carries no output: any budget will do.
    ToolAnswer::refused(e).into_mcp(OutputBudget::default())
}

fn refuse(message: impl Into<String>) -> CallToolResult {
    refused(ExecutorError(message.into()))
}

/// The most `get_file` returns.
pub const GET_FILE_MAX_BYTES: u64 = 10 << 20;

/// Text files up to this size come back as text content; larger ones as an embedded text resource.
const GET_FILE_TEXT_MAX: usize = 128 << 10;

/// A session as text for a model.
fn describe_session(session: &SessionInfo) -> String {
    format!(
        "session_id {} ({}), Python {}, {} MiB memory, {} MiB disk, network {}, ends after {} s without a call \
         (expires at {})",
        session.session_id,
        serde_json::to_value(session.state).ok().and_then(|s| s.as_str().map(str::to_owned)).unwrap_or_default(),
        session.python_version,
        session.memory_mb,
        session.disk_mb,
        if session.network_disabled { "off" } else { "on" },
        session.idle_timeout_seconds,
        session.expires_at,
    )
}

fn session_answer(message: String, session: &SessionInfo) -> CallToolResult {
    let mut answer = CallToolResult::success(text(message));
    answer.structured_content = serde_json::to_value(session).ok();
    answer
}

/// What a file is, from its first bytes (images) or its name.
fn mime_of(path: &str, bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return "image/png";
    }
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        return "image/jpeg";
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return "image/gif";
    }
    if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return "image/webp";
    }
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "txt" | "log" | "py" | "md" | "rst" | "ini" | "cfg" | "toml" | "yaml" | "yml" => "text/plain",
        "csv" => "text/csv",
        "tsv" => "text/tab-separated-values",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "svg" => "image/svg+xml",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "parquet" => "application/vnd.apache.parquet",
        "npy" | "pkl" | "pickle" => "application/octet-stream",
        _ if std::str::from_utf8(bytes).is_ok() => "text/plain",
        _ => "application/octet-stream",
    }
}

/// The resource URI a file is embedded under.
fn file_uri(owner: &FileOwner, path: &str) -> String {
    match owner {
        FileOwner::Execution(id) => format!("pyexec://executions/{id}/files/{path}"),
        FileOwner::Session(id) => format!("pyexec://sessions/{id}/files/{path}"),
    }
}

/// A file as MCP content: an image as an image, small UTF-8 text as text, larger text as an embedded text
/// resource, anything else as an embedded base64 blob.
fn file_content(owner: &FileOwner, path: &str, bytes: Vec<u8>) -> CallToolResult {
    let size = bytes.len();
    let mime = mime_of(path, &bytes);
    let uri = file_uri(owner, path);
    let (kind, content) = if is_image(mime) {
        let note = format!("{path}: {mime}, {size} bytes (shown as an image)");
        ("image", vec![ContentBlock::text(note), ContentBlock::image(BASE64.encode(&bytes), mime)])
    } else {
        match String::from_utf8(bytes) {
            Ok(text) if text.len() <= GET_FILE_TEXT_MAX => ("text", vec![ContentBlock::text(text)]),
            Ok(text) => {
                let note = format!("{path}: {mime}, {size} bytes of text (attached as a resource)");
                let resource =
                    ResourceContents::TextResourceContents { uri, mime_type: Some(mime.into()), text, meta: None };
                ("resource", vec![ContentBlock::text(note), ContentBlock::resource(resource)])
            }
            Err(e) => {
                let note = format!("{path}: {mime}, {size} bytes of binary data (attached as a base64 resource)");
                let blob = ResourceContents::blob(BASE64.encode(e.into_bytes()), uri).with_mime_type(mime);
                ("resource", vec![ContentBlock::text(note), ContentBlock::resource(blob)])
            }
        }
    };
    let mut answer = CallToolResult::success(content);
    answer.structured_content =
        Some(serde_json::json!({"path": path, "size": size, "mime_type": mime, "content": kind}));
    answer
}

fn listing(owner: &FileOwner, list: &FileList) -> CallToolResult {
    let mut out = if list.files.is_empty() {
        format!("no files in {owner}\n")
    } else {
        format!("{} file(s) of {owner} (path, size in bytes, sha256):\n", list.files.len())
    };
    for file in &list.files {
        out.push_str(&format!("{}\t{}\t{}\n", file.path, file.size, file.sha256));
    }
    if list.truncated {
        out.push_str("(the list is truncated: files over the server's caps were not kept)\n");
    }
    let mut answer = CallToolResult::success(text(out));
    answer.structured_content = serde_json::to_value(list).ok();
    answer
}

#[tool_router(vis = "pub(crate)")]
impl PythonTools {
    /// A server over `executor`, with the default output budget.
    pub fn new(executor: Arc<dyn Executor>) -> PythonTools {
        PythonTools { executor, budget: OutputBudget::default(), tool_router: Self::tool_router() }
    }

    /// How much output its tool results carry.
    pub fn with_output_budget(mut self, budget: OutputBudget) -> PythonTools {
        self.budget = budget;
        self
    }

    /// The answer about a finished execution.
    fn result_of(&self, result: ExecutionResult) -> CallToolResult {
        ToolAnswer::of(result, self.budget).into_mcp(self.budget)
    }

    /// The tools as `tools/list` answers them, sorted by name.
    pub fn tool_list() -> Vec<Tool> {
        Self::tool_router().list_all()
    }

    #[tool(name = "run_python", description = crate::tools::RUN_PYTHON_DESCRIPTION)]
    async fn run_python(&self, Parameters(call): Parameters<RunPython>) -> CallToolResult {
        run_python(self.executor.as_ref(), call, self.budget).await.into_mcp(self.budget)
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
                answer.structured_content = structured(&result, self.budget);
                answer
            }
            Ok(Some(result)) => self.result_of(result),
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

    #[tool(name = "create_session", description = crate::tools::CREATE_SESSION_DESCRIPTION)]
    async fn create_session(&self, Parameters(call): Parameters<CreateSession>) -> CallToolResult {
        match self.executor.create_session(call.to_new_session()).await {
            Ok(session) => {
                let message = format!(
                    "started {}\nrun code in it with session_run_python; end it with close_session",
                    describe_session(&session)
                );
                session_answer(message, &session)
            }
            Err(e) => refused(e),
        }
    }

    #[tool(name = "session_run_python", description = crate::tools::SESSION_RUN_PYTHON_DESCRIPTION)]
    async fn session_run_python(&self, Parameters(call): Parameters<SessionRunPython>) -> CallToolResult {
        match self.executor.session_run(&call.session_id, call.to_eval()).await {
            Ok(Some(result)) => self.result_of(result),
            Ok(None) => refuse(format!(
                "no session {} (unknown, closed or expired): start one with create_session",
                call.session_id
            )),
            Err(e) => refused(e),
        }
    }

    #[tool(name = "close_session", description = crate::tools::CLOSE_SESSION_DESCRIPTION)]
    async fn close_session(&self, Parameters(SessionRef { session_id }): Parameters<SessionRef>) -> CallToolResult {
        match self.executor.close_session(&session_id).await {
            Ok(Some(session)) => session_answer(format!("closed session {session_id}"), &session),
            Ok(None) => refuse(format!("no session {session_id} (unknown, already closed, or expired)")),
            Err(e) => refused(e),
        }
    }

    #[tool(name = "list_files", description = crate::tools::LIST_FILES_DESCRIPTION)]
    async fn list_files(&self, Parameters(call): Parameters<ListFiles>) -> CallToolResult {
        let owner = match FileOwner::of(call.execution_id.as_deref(), call.session_id.as_deref()) {
            Ok(owner) => owner,
            Err(message) => return refuse(message),
        };
        match self.executor.list_files(&owner).await {
            Ok(Some(list)) => listing(&owner, &list),
            Ok(None) => refuse(format!("no {owner} (unknown, or expired)")),
            Err(e) => refused(e),
        }
    }

    #[tool(name = "get_file", description = crate::tools::GET_FILE_DESCRIPTION)]
    async fn get_file(&self, Parameters(call): Parameters<GetFile>) -> CallToolResult {
        let owner = match FileOwner::of(call.execution_id.as_deref(), call.session_id.as_deref()) {
            Ok(owner) => owner,
            Err(message) => return refuse(message),
        };
        match self.executor.read_file(&owner, &call.path, GET_FILE_MAX_BYTES).await {
            Ok(Some(bytes)) => file_content(&owner, &call.path, bytes),
            Ok(None) => refuse(format!("no file {:?} in {owner} (see list_files)", call.path)),
            Err(e) => refused(e),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PythonTools {
    /// Each call runs with the executor of its request (its caller, over HTTP: [`Executor::for_request`]).
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let scoped = match self.executor.for_request(&context.extensions) {
            Some(executor) => PythonTools { executor, ..self.clone() },
            None => self.clone(),
        };
        let call = rmcp::handler::server::tool::ToolCallContext::new(&scoped, request, context);
        scoped.tool_router.call(call).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("python-executor", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Runs Python in isolated sandboxes. Use run_python for anything that finishes within its timeout; \
                 submit_python, get_execution and kill_execution for long runs; create_session, \
                 session_run_python and close_session for work that builds on earlier steps (data analysis: load \
                 once, then explore); list_files and get_file to read what runs wrote under /work. Plots come back \
                 as images.",
            )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use pyexec_core::model::{DisplayOutput, OutputFile};
    use pyexec_core::session::SessionState;
    use serde_json::json;

    use super::*;

    /// 1x1 PNG.
    const PNG: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

    /// An executor that answers from memory and records what it was asked.
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
        sessions: Mutex<Vec<NewSession>>,
        evals: Mutex<Vec<EvalRequest>>,
    }

    fn result_with_outputs(id: &str) -> ExecutionResult {
        let mut r = ExecutionResult::pending(id);
        r.status = ExecutionStatus::Completed;
        r.stdout = "plotting\n".into();
        r.result = Some("42".into());
        r.outputs = vec![
            DisplayOutput { kind: "image/png".into(), data: PNG.into() },
            DisplayOutput { kind: "image/svg+xml".into(), data: "<svg></svg>".into() },
            DisplayOutput { kind: "text/html".into(), data: "<table><tr><td>1</td></tr></table>".into() },
        ];
        r.files = vec![OutputFile { path: "plot.png".into(), size: 70, sha256: "ab".into() }];
        r
    }

    fn session(id: &str, state: SessionState) -> SessionInfo {
        let at: pyexec_core::Timestamp = serde_json::from_value(json!("2026-12-06T22:50:01.120Z")).unwrap();
        SessionInfo {
            session_id: id.into(),
            state,
            python_version: "3.12".into(),
            created_at: at,
            last_used_at: at,
            expires_at: at,
            calls: 0,
            restarts: 0,
            memory_mb: 512,
            disk_mb: 1024,
            network_disabled: true,
            idle_timeout_seconds: 600,
            tenant: None,
            memory_used_bytes: None,
        }
    }

    #[async_trait::async_trait]
    impl Executor for Fake {
        async fn run(&self, request: EvalRequest) -> Result<ExecutionResult, ExecutorError> {
            self.evals.lock().unwrap().push(request);
            Ok(result_with_outputs("exe_1"))
        }
        async fn submit(&self, _: Vec<CodeFile>, _: Metadata) -> Result<String, ExecutorError> {
            Ok("exe_2".into())
        }
        async fn get(&self, _: &str) -> Result<Option<ExecutionResult>, ExecutorError> {
            Ok(None)
        }
        async fn kill(&self, _: &str) -> Result<Option<ExecutionStatus>, ExecutorError> {
            Ok(None)
        }
        async fn create_session(&self, request: NewSession) -> Result<SessionInfo, ExecutorError> {
            self.sessions.lock().unwrap().push(request);
            Ok(session("ses_1", SessionState::Idle))
        }
        async fn session_run(
            &self,
            session_id: &str,
            request: EvalRequest,
        ) -> Result<Option<ExecutionResult>, ExecutorError> {
            self.calls.lock().unwrap().push(format!("session_run {session_id}"));
            self.evals.lock().unwrap().push(request);
            match session_id {
                "ses_1" => {
                    let mut r = result_with_outputs("exe_3");
                    r.session_id = Some("ses_1".into());
                    Ok(Some(r))
                }
                "ses_busy" => Err(ExecutorError("session ses_busy is busy with another call".into())),
                _ => Ok(None),
            }
        }
        async fn close_session(&self, session_id: &str) -> Result<Option<SessionInfo>, ExecutorError> {
            Ok((session_id == "ses_1").then(|| session("ses_1", SessionState::Ended)))
        }
        async fn list_files(&self, owner: &FileOwner) -> Result<Option<FileList>, ExecutorError> {
            self.calls.lock().unwrap().push(format!("list_files {owner}"));
            Ok((owner.id() != "exe_gone").then(|| FileList {
                files: vec![
                    OutputFile { path: "plot.png".into(), size: 70, sha256: "9f2c".into() },
                    OutputFile { path: "out/summary.csv".into(), size: 12, sha256: "77aa".into() },
                ],
                truncated: true,
            }))
        }
        async fn read_file(
            &self,
            owner: &FileOwner,
            path: &str,
            max_bytes: u64,
        ) -> Result<Option<Vec<u8>>, ExecutorError> {
            self.calls.lock().unwrap().push(format!("read_file {owner} {path} {max_bytes}"));
            Ok(match path {
                "plot.png" => Some(BASE64.decode(PNG).unwrap()),
                "summary.csv" => Some(b"a,b\n1,2\n".to_vec()),
                "big.txt" => Some(vec![b'x'; GET_FILE_TEXT_MAX + 1]),
                "model.bin" => Some(vec![0, 159, 146, 150, 255]),
                _ => None,
            })
        }
    }

    fn tools() -> (PythonTools, Arc<Fake>) {
        let fake = Arc::new(Fake::default());
        (PythonTools::new(fake.clone()), fake)
    }

    fn texts(answer: &CallToolResult) -> String {
        answer.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("\n")
    }

    fn images(answer: &CallToolResult) -> Vec<(String, String)> {
        answer.content.iter().filter_map(|c| c.as_image().map(|i| (i.data.clone(), i.mime_type.clone()))).collect()
    }

    fn assert_shows_its_plot(answer: &CallToolResult) {
        assert_eq!(answer.is_error, Some(false));
        assert_eq!(images(answer), vec![(PNG.to_owned(), "image/png".to_owned())], "the plot is an image");
        let wire = serde_json::to_value(answer).unwrap();
        let image = wire["content"].as_array().unwrap().iter().find(|c| c["type"] == "image").unwrap();
        assert_eq!(image, &json!({"type": "image", "data": PNG, "mimeType": "image/png"}));
        let text = texts(answer);
        assert!(text.contains("output 1: image/png, 70 bytes"), "{text}");
        assert!(text.contains("--- output 2: image/svg+xml ---\n<svg></svg>\n"), "svg as text: {text}");
        assert!(text.contains("<table><tr><td>1</td></tr></table>"), "html as text: {text}");
        assert!(text.contains("files written: plot.png (70 bytes)"), "{text}");
        let structured = answer.structured_content.as_ref().unwrap();
        assert_eq!(structured["outputs"][0], json!({"type": "image/png", "bytes": 70}), "base64 given once");
        assert_eq!(structured["outputs"][1], json!({"type": "image/svg+xml", "bytes": 11}), "text given once");
        assert_eq!(structured["result"], "42");
        assert_eq!((structured.get("stdout"), &structured["stdout_bytes"]), (None, &json!(9)), "stdout given once");
        assert!(text.contains("--- stdout ---\nplotting\n"), "{text}");
    }

    #[tokio::test]
    async fn image_outputs_are_image_content() {
        let (tools, _) = tools();
        let call = RunPython { code: Some("plt.plot([1, 2])".into()), ..Default::default() };
        assert_shows_its_plot(&tools.run_python(Parameters(call)).await);

        let call =
            SessionRunPython { session_id: "ses_1".into(), code: "plt.plot([1, 2])".into(), ..Default::default() };
        let answer = tools.session_run_python(Parameters(call)).await;
        assert_shows_its_plot(&answer);
        assert_eq!(answer.structured_content.unwrap()["session_id"], "ses_1");

        // The plain tool-calling answer (`/api/v1/tools/run_python`) keeps the data in `execution`.
        let fake = Fake::default();
        let answer =
            run_python(&fake, RunPython { code: Some("1".into()), ..Default::default() }, OutputBudget::default())
                .await;
        assert_eq!(answer.execution.unwrap().outputs[0].data, PNG);
        assert!(answer.content.contains("output 1: image/png"));
    }

    #[tokio::test]
    async fn sessions_are_created_called_and_closed() {
        let (tools, fake) = tools();
        let call: CreateSession = serde_json::from_value(json!({
            "python_version": "3.12", "requirements": "pandas\nmatplotlib", "env": ["MODE=test"],
            "memory_mb": 512, "network": false, "idle_timeout_seconds": 120
        }))
        .unwrap();
        let answer = tools.create_session(Parameters(call)).await;
        assert_eq!(answer.is_error, Some(false));
        assert!(texts(&answer).starts_with("started session_id ses_1 (idle), Python 3.12"), "{}", texts(&answer));
        assert_eq!(answer.structured_content.unwrap()["session_id"], "ses_1");
        let sent = serde_json::to_value(&fake.sessions.lock().unwrap()[0]).unwrap();
        assert_eq!(
            sent,
            json!({"python_version": "3.12", "requirements_txt": "pandas\nmatplotlib", "env_vars": ["MODE=test"],
                   "config": {"memory_mb": 512, "network_disabled": true, "idle_timeout_seconds": 120}})
        );
        let empty = tools.create_session(Parameters(CreateSession::default())).await;
        assert_eq!(empty.is_error, Some(false));
        assert_eq!(serde_json::to_value(&fake.sessions.lock().unwrap()[1]).unwrap(), json!({}));

        let call = SessionRunPython {
            session_id: "ses_1".into(),
            code: "df.describe()".into(),
            files: Some(vec![crate::tools::ToolFile { name: "data.csv".into(), content: "a\n1\n".into() }]),
            timeout_seconds: Some(10),
        };
        tools.session_run_python(Parameters(call)).await;
        let eval = serde_json::to_value(fake.evals.lock().unwrap().last().unwrap()).unwrap();
        assert_eq!(
            eval,
            json!({"code": "df.describe()", "files": [{"name": "data.csv", "content": "a\n1\n"}],
                   "config": {"timeout_seconds": 10}, "eval_last_expr": true})
        );

        let busy = SessionRunPython { session_id: "ses_busy".into(), code: "1".into(), ..Default::default() };
        let answer = tools.session_run_python(Parameters(busy)).await;
        assert_eq!((answer.is_error, texts(&answer).contains("busy")), (Some(true), true));
        let gone = SessionRunPython { session_id: "ses_gone".into(), code: "1".into(), ..Default::default() };
        let answer = tools.session_run_python(Parameters(gone)).await;
        assert_eq!(answer.is_error, Some(true));
        assert!(texts(&answer).contains("no session ses_gone"), "{}", texts(&answer));

        let closed = tools.close_session(Parameters(SessionRef { session_id: "ses_1".into() })).await;
        assert_eq!(closed.is_error, Some(false));
        assert_eq!(closed.structured_content.unwrap()["state"], "ended");
        let unknown = tools.close_session(Parameters(SessionRef { session_id: "ses_x".into() })).await;
        assert_eq!(unknown.is_error, Some(true));
    }

    #[tokio::test]
    async fn files_are_listed_and_read_by_kind() {
        let (tools, fake) = tools();
        let list =
            tools.list_files(Parameters(ListFiles { execution_id: Some("exe_1".into()), session_id: None })).await;
        assert_eq!(list.is_error, Some(false));
        let text = texts(&list);
        assert!(text.contains("2 file(s) of execution exe_1") && text.contains("plot.png\t70\t9f2c\n"), "{text}");
        assert!(text.contains("truncated"), "{text}");
        assert_eq!(
            list.structured_content.unwrap(),
            json!({"files": [{"path": "plot.png", "size": 70, "sha256": "9f2c"},
                             {"path": "out/summary.csv", "size": 12, "sha256": "77aa"}], "truncated": true})
        );
        let list =
            tools.list_files(Parameters(ListFiles { execution_id: None, session_id: Some("ses_1".into()) })).await;
        assert!(texts(&list).contains("of session ses_1"));
        let gone =
            tools.list_files(Parameters(ListFiles { execution_id: Some("exe_gone".into()), session_id: None })).await;
        assert_eq!(gone.is_error, Some(true));
        for (e, s) in [(None, None), (Some("exe_1"), Some("ses_1"))] {
            let bad = ListFiles { execution_id: e.map(Into::into), session_id: s.map(Into::into) };
            assert_eq!(tools.list_files(Parameters(bad)).await.is_error, Some(true));
        }

        let get = |path: &str| GetFile { execution_id: Some("exe_1".into()), session_id: None, path: path.into() };
        let png = tools.get_file(Parameters(get("plot.png"))).await;
        assert_eq!(images(&png), vec![(PNG.to_owned(), "image/png".to_owned())]);
        assert_eq!(png.structured_content.unwrap()["content"], "image");
        assert!(
            fake.calls.lock().unwrap().contains(&format!("read_file execution exe_1 plot.png {GET_FILE_MAX_BYTES}"))
        );

        let csv = tools
            .get_file(Parameters(GetFile {
                execution_id: None,
                session_id: Some("ses_1".into()),
                path: "summary.csv".into(),
            }))
            .await;
        assert_eq!(texts(&csv), "a,b\n1,2\n", "small text is text");
        assert_eq!(
            csv.structured_content.unwrap(),
            json!({"path": "summary.csv", "size": 8, "mime_type": "text/csv", "content": "text"})
        );

        let big = tools.get_file(Parameters(get("big.txt"))).await;
        let resource = big.content.iter().find_map(|c| c.as_resource()).unwrap();
        assert!(matches!(&resource.resource, ResourceContents::TextResourceContents { uri, text, .. }
                if uri == "pyexec://executions/exe_1/files/big.txt" && text.len() == GET_FILE_TEXT_MAX + 1));

        let bin = tools.get_file(Parameters(get("model.bin"))).await;
        let wire = serde_json::to_value(&bin).unwrap();
        let blob = wire["content"].as_array().unwrap().iter().find(|c| c["type"] == "resource").unwrap();
        assert_eq!(
            blob["resource"],
            json!({"uri": "pyexec://executions/exe_1/files/model.bin", "mimeType": "application/octet-stream",
                   "blob": BASE64.encode([0, 159, 146, 150, 255])})
        );

        let missing = tools.get_file(Parameters(get("nope.txt"))).await;
        assert_eq!(missing.is_error, Some(true));
        assert!(texts(&missing).contains("list_files"));
        let neither = tools.get_file(Parameters(GetFile { path: "x".into(), ..Default::default() })).await;
        assert_eq!(neither.is_error, Some(true));
    }

    /// An executor whose runs answer `result`.
    struct Answers(ExecutionResult);

    #[async_trait::async_trait]
    impl Executor for Answers {
        async fn run(&self, _: EvalRequest) -> Result<ExecutionResult, ExecutorError> {
            Ok(self.0.clone())
        }
        async fn submit(&self, _: Vec<CodeFile>, _: Metadata) -> Result<String, ExecutorError> {
            Err(ExecutorError("no".into()))
        }
        async fn get(&self, _: &str) -> Result<Option<ExecutionResult>, ExecutorError> {
            Ok(None)
        }
        async fn kill(&self, _: &str) -> Result<Option<ExecutionStatus>, ExecutorError> {
            Ok(None)
        }
    }

    /// 1.1 MB of numbered lines.
    fn long_stdout() -> String {
        (0..100_000).map(|n| format!("row {n:06}\n")).collect()
    }

    fn printed(stdout: String) -> ExecutionResult {
        let mut r = ExecutionResult::pending("exe_loud");
        r.status = ExecutionStatus::Completed;
        r.stdout = stdout;
        r
    }

    #[tokio::test]
    async fn long_stdout_is_sent_once_cut_with_a_note() {
        let stdout = long_stdout();
        let tools = PythonTools::new(Arc::new(Answers(printed(stdout.clone()))));
        let answer = tools.run_python(Parameters(RunPython { code: Some("x".into()), ..Default::default() })).await;
        let wire = serde_json::to_string(&answer).unwrap();
        // 64 KiB of text, each line end escaped in JSON.
        assert!(wire.len() < 75 << 10, "within the budget: {} bytes", wire.len());
        assert_eq!(wire.matches("row 000000").count(), 1, "stdout is sent once");

        let text = texts(&answer);
        // Whole lines of 11 bytes, about 32 KiB from each end.
        let header = "--- stdout (1100000 bytes; the first 32758 and the last 32758 shown) ---\nrow 000000\n";
        assert!(text.contains(header), "{}", &text[..300]);
        assert!(text.ends_with("row 099999\n"), "the end is kept");
        let left_out = 1_100_000 - 2 * 32_758;
        let note = format!(
            "row 002977\n[... {left_out} bytes of stdout left out here; the whole output is in GET \
             /api/v1/executions/exe_loud on the python-executor server"
        );
        assert!(text.contains(&note), "{}", &text[32_700..33_200]);
        let structured = answer.structured_content.unwrap();
        assert_eq!((structured.get("stdout"), &structured["stdout_bytes"]), (None, &json!(1_100_000)));

        // A budget of its own (PYEXEC_MCP_MAX_STDOUT_BYTES); the REST tool answer keeps the whole result apart.
        let small = OutputBudget { stdout_bytes: 1000, stderr_bytes: 100 };
        let answer = run_python(&Answers(printed(stdout.clone())), RunPython::default(), small).await;
        assert!(answer.content.len() < 1600, "{}", answer.content);
        assert!(answer.content.contains("bytes of stdout left out"), "{}", answer.content);
        assert_eq!(answer.execution.unwrap().stdout, stdout);
        let short = PythonTools::new(Arc::new(Answers(printed("short\n".into())))).with_output_budget(small);
        let answer = short.run_python(Parameters(RunPython::default())).await;
        assert!(texts(&answer).ends_with("--- stdout ---\nshort\n"), "{}", texts(&answer));
    }

    #[tokio::test]
    async fn every_kind_of_output_shares_the_budget() {
        let mut r = printed(long_stdout());
        r.exit_code = 1;
        r.stderr = format!("Traceback (most recent call last):\n{}ValueError: boom\n", "  frame\n".repeat(10_000));
        r.error_type = Some("ValueError".into());
        r.error_message = Some("boom".into());
        r.result = Some("'".to_owned() + &"v".repeat(200_000) + "'");
        let table = DisplayOutput { kind: "text/html".into(), data: "<td>1</td>".repeat(10_000) };
        r.outputs = vec![DisplayOutput { kind: "image/png".into(), data: PNG.into() }];
        r.outputs.extend(std::iter::repeat_n(table, 4));
        r.outputs.push(DisplayOutput { kind: "text/html".into(), data: "<p>last</p>".into() });
        let tools = PythonTools::new(Arc::new(Answers(r)));
        let answer = tools.run_python(Parameters(RunPython::default())).await;
        let wire = serde_json::to_string(&answer).unwrap();
        assert!(wire.len() < 90 << 10, "within the two budgets: {} bytes", wire.len());
        assert_eq!(images(&answer).len(), 1, "images stay image content");

        let text = texts(&answer);
        assert!(text.contains("exception: ValueError: boom\n"), "{}", &text[..500]);
        assert!(text.contains("ValueError: boom\n--- output") && text.contains("bytes of stderr left out"));
        assert!(text.contains("bytes of the value left out"), "the value is cut too");
        assert!(text.contains("row 000000\n") && text.contains("row 099999\n"), "stdout gets its share");
        assert!(text.contains("--- output 2: text/html ---\n<td>1</td>"), "the first table gets the rest");
        assert!(text.contains("--- output 6: text/html, 11 bytes (left out: over the tool result's budget"), "{text}");

        let structured = answer.structured_content.unwrap();
        assert!(structured.get("stdout").is_none() && structured.get("stderr").is_none());
        assert_eq!((&structured["result_truncated"], &structured["result_bytes"]), (&json!(true), &json!(200_002)));
        assert!(structured.get("result").is_none(), "a value that is cut is in the text only");
        assert_eq!(structured["outputs"][1], json!({"type": "text/html", "bytes": 100_000}));
        assert_eq!(structured["error_message"], "boom");
    }

    #[tokio::test]
    async fn executors_without_sessions_say_so() {
        struct Old;
        #[async_trait::async_trait]
        impl Executor for Old {
            async fn run(&self, _: EvalRequest) -> Result<ExecutionResult, ExecutorError> {
                Err(ExecutorError("no".into()))
            }
            async fn submit(&self, _: Vec<CodeFile>, _: Metadata) -> Result<String, ExecutorError> {
                Err(ExecutorError("no".into()))
            }
            async fn get(&self, _: &str) -> Result<Option<ExecutionResult>, ExecutorError> {
                Ok(None)
            }
            async fn kill(&self, _: &str) -> Result<Option<ExecutionStatus>, ExecutorError> {
                Ok(None)
            }
        }
        let tools = PythonTools::new(Arc::new(Old));
        let answer = tools.create_session(Parameters(CreateSession::default())).await;
        assert_eq!(answer.is_error, Some(true));
        assert!(texts(&answer).contains("not supported"), "{}", texts(&answer));
    }

    #[test]
    fn every_tool_has_a_valid_schema_and_the_definitions_follow() {
        let tools = PythonTools::tool_list();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "close_session",
                "create_session",
                "get_execution",
                "get_file",
                "kill_execution",
                "list_files",
                "run_python",
                "session_run_python",
                "submit_python"
            ]
        );
        let required = |name: &str| -> Vec<String> {
            let tool = tools.iter().find(|t| t.name == name).unwrap();
            let mut r: Vec<String> = tool
                .input_schema
                .get("required")
                .and_then(|r| r.as_array())
                .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            r.sort();
            r
        };
        for tool in &tools {
            let schema = serde_json::Value::Object((*tool.input_schema).clone());
            assert_eq!(schema["type"], "object", "{}", tool.name);
            let properties = schema["properties"].as_object().unwrap();
            for (name, property) in properties {
                let described = property["description"].as_str().is_some_and(|d| !d.is_empty());
                assert!(described, "{}.{name} has a description for models", tool.name);
            }
            for name in required(&tool.name) {
                assert!(properties.contains_key(&name), "{}: required {name} is a property", tool.name);
            }
            assert!(tool.description.as_deref().is_some_and(|d| d.len() > 40), "{}", tool.name);
        }
        assert_eq!(required("session_run_python"), ["code", "session_id"]);
        assert_eq!(required("get_file"), ["path"]);
        assert_eq!(required("list_files"), Vec::<String>::new());
        assert_eq!(required("create_session"), Vec::<String>::new());
        assert_eq!(required("close_session"), ["session_id"]);

        let all = crate::tools::all_tool_definitions();
        assert_eq!(all["openai"].as_array().unwrap().len(), tools.len());
        for (n, tool) in tools.iter().enumerate() {
            let schema = serde_json::Value::Object((*tool.input_schema).clone());
            assert_eq!(all["openai"][n]["function"]["name"], tool.name.as_ref());
            assert_eq!(all["openai"][n]["function"]["parameters"], schema);
            assert_eq!(all["anthropic"][n]["input_schema"], schema);
            assert_eq!(all["anthropic"][n]["description"], tool.description.as_deref().unwrap());
        }
        let run = crate::tools::tool_definitions();
        assert_eq!(run["openai"].as_array().unwrap().len(), 1, "/api/v1/tools serves run_python (what it runs)");
        assert_eq!(run["anthropic"][0]["input_schema"], crate::tools::run_python_schema());
    }
}
