//! The tools an agent gets: their parameters (with descriptions written for models), how a result is presented to
//! a model, and the same definitions in the OpenAI and Anthropic tool formats.

use std::borrow::Cow;

use pyexec_core::session::{NewSession, SessionConfig};
use pyexec_core::{CodeFile, EvalRequest, ExecutionConfig, ExecutionResult, ExecutionStatus, Metadata};
use rmcp::handler::server::tool::schema_for_input;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::budget::{OUTPUT_TEXT_MAX, OutputBudget, Shares, head_and_tail, whole_output_hint};

/// What `run_python` tells a model about the sandbox.
pub const RUN_PYTHON_DESCRIPTION: &str = "Run Python 3 code in an isolated sandbox and return its output. \
Each call starts fresh: no state is kept between calls (a session keeps it: create_session, session_run_python). \
Files the code writes under /work are kept with the run: the result lists them in `files`, and get_file reads one \
by the run's execution_id. The value of the last expression is returned in `result`, like a REPL (so end with an \
expression to see a value); matplotlib figures and display(obj) of rich objects come back as images. Third-party \
imports (numpy, pandas, requests, ...) are installed automatically before the run; add version pins or packages \
that cannot be detected in `requirements`. There is no network access unless `network` is true and the server \
allows it. The run is stopped after `timeout_seconds` (exit code 124) and is limited in memory (an out-of-memory \
kill gives exit code 137). Long output is cut to its start and its end, and the result says how much was left out. An uncaught exception is \
reported in `error_type`, `error_line` and `error_message`; `exit_code` 0 means success.";

/// Parameters of `run_python` (and of `submit_python`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RunPython {
    /// Python source to run (as main.py). Give either `code` or `files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Several files to place in the working directory /work; the first one runs unless `entrypoint` names
    /// another. Give either `code` or `files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ToolFile>>,
    /// Which of `files` to run (a relative path such as "main.py" or "app/cli.py").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Text given to the program on standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Extra packages in requirements.txt format (one per line, e.g. "pandas==2.2.3"), installed before the run in
    /// addition to the imports detected automatically. "-" turns installing off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    /// CPython version: "3.10", "3.11", "3.12" or "3.13". Default: the server's (usually 3.12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// Seconds before the run is stopped. Default: the server's (300). Keep it short for quick checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u64>,
    /// Memory limit in MiB. Default: the server's (1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16))]
    pub memory_mb: Option<u64>,
    /// Allow access to the public internet (never private networks). Off by default; a server that cannot give
    /// it safely refuses the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<bool>,
}

/// One file of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolFile {
    /// Relative path, e.g. "main.py" or "pkg/util.py".
    pub name: String,
    /// The file's text.
    pub content: String,
}

/// Parameters of `get_execution` and `kill_execution`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExecutionRef {
    /// The id returned by `submit_python` (`exe_...`).
    pub execution_id: String,
}

/// What `create_session` tells a model.
pub const CREATE_SESSION_DESCRIPTION: &str = "Start a persistent Python session: an interpreter that keeps its \
state between calls (variables, imports, loaded data, files in /work), like a notebook kernel. Run code in it with \
session_run_python, and end it with close_session when done (it also ends by itself after `idle_timeout_seconds` \
without a call). Imports are not installed automatically in a session: list the packages it needs in \
`requirements` now. Returns the session_id.";

/// What `session_run_python` tells a model.
pub const SESSION_RUN_PYTHON_DESCRIPTION: &str = "Run Python code in a session started with create_session, as the \
next cell of a notebook: what earlier calls defined (variables, imports, functions, files in /work) is still there, \
and what this call defines stays for the next. The value of the last expression is returned in `result`; \
matplotlib figures (plt.show(), or still open at the end) and display(obj) of rich objects come back as images. \
`files` are written into /work before the code runs (data to analyse). One call at a time per session. At \
`timeout_seconds` the code is interrupted (KeyboardInterrupt) and the session keeps its state; when the code does \
not stop, or it kills the interpreter (os._exit, out of memory), the session restarts empty and the result says \
`session_restarted`.";

/// What `close_session` tells a model.
pub const CLOSE_SESSION_DESCRIPTION: &str = "End a session started with create_session and free its resources; \
its variables and files are gone.";

/// What `list_files` tells a model.
pub const LIST_FILES_DESCRIPTION: &str = "List files (path, size, sha256): those an execution created or changed \
under /work (give `execution_id`, from run_python, session_run_python or submit_python), or those in a session's \
/work now (give `session_id`). Read one with get_file.";

/// What `get_file` tells a model.
pub const GET_FILE_DESCRIPTION: &str = "Read one file, by `path` relative to /work, of an execution (give \
`execution_id`) or of a session's /work now (give `session_id`). Text files come back as text, images (PNG, JPEG, \
GIF, WebP) as images you can see, other files as a base64 resource. Files over 10 MiB are refused: work on big \
files in the sandbox instead.";

/// Parameters of `create_session`: every one optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CreateSession {
    /// CPython version: "3.10", "3.11", "3.12" or "3.13". Default: the server's (usually 3.12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// Packages in requirements.txt format (one per line, e.g. "pandas\nmatplotlib"), installed once when the
    /// session starts. Imports are not detected in sessions: name everything the session will import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements: Option<String>,
    /// Environment variables of the session's interpreter, as "NAME=value".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Memory limit of the whole session in MiB. Default: the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 16))]
    pub memory_mb: Option<u64>,
    /// Size limit of the session's /work in MiB. Default: the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub disk_mb: Option<u64>,
    /// Allow access to the public internet (never private networks). Off by default; a server that cannot give
    /// it safely refuses the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<bool>,
    /// Seconds without a call after which the session ends by itself. Default: the server's (600; the server
    /// also caps it, at 3600 unless configured otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub idle_timeout_seconds: Option<u64>,
}

impl CreateSession {
    /// The `POST /api/v1/sessions` body of the call.
    pub fn to_new_session(&self) -> NewSession {
        let set = self.memory_mb.is_some()
            || self.disk_mb.is_some()
            || self.network.is_some()
            || self.idle_timeout_seconds.is_some();
        NewSession {
            python_version: self.python_version.clone(),
            requirements_txt: self.requirements.clone(),
            env_vars: self.env.clone().filter(|e| !e.is_empty()),
            config: set.then(|| SessionConfig {
                memory_mb: self.memory_mb.map(saturate),
                disk_mb: self.disk_mb.map(saturate),
                network_disabled: self.network.map(|n| !n),
                idle_timeout_seconds: self.idle_timeout_seconds.map(saturate),
                ..SessionConfig::default()
            }),
        }
    }
}

fn saturate(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Parameters of `session_run_python`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionRunPython {
    /// The id returned by `create_session` (`ses_...`).
    pub session_id: String,
    /// Python code to run as the session's next cell.
    pub code: String,
    /// Files to write into /work before the code runs (e.g. data to analyse); they stay in the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<ToolFile>>,
    /// Seconds before the call is interrupted. Default: the server's default timeout (300 unless configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: Option<u64>,
}

impl SessionRunPython {
    /// The `POST /api/v1/sessions/{id}/eval` body of the call (the last expression's value is returned).
    pub fn to_eval(&self) -> EvalRequest {
        EvalRequest {
            code: Some(self.code.clone()),
            files: self.files.as_ref().map(|files| {
                files.iter().map(|f| CodeFile { name: f.name.clone(), content: f.content.clone() }).collect()
            }),
            eval_last_expr: Some(true),
            config: self
                .timeout_seconds
                .map(|t| ExecutionConfig { timeout_seconds: Some(saturate(t)), ..Default::default() }),
            ..EvalRequest::default()
        }
    }
}

/// Parameters of `close_session`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionRef {
    /// The id returned by `create_session` (`ses_...`).
    pub session_id: String,
}

/// Parameters of `list_files`: give exactly one of the two ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListFiles {
    /// An execution's id (`exe_...`, in every run's result): the files it created or changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// A session's id (`ses_...`): the files in its /work now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
}

/// Parameters of `get_file`: give exactly one of the two ids.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GetFile {
    /// An execution's id (`exe_...`): read a file it wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// A session's id (`ses_...`): read a file in its /work now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The file's path relative to /work, e.g. "plot.png" or "out/summary.csv".
    pub path: String,
}

/// Whose files a `list_files` or `get_file` call means.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileOwner {
    /// The files an execution created or changed under `/work`, kept with it.
    Execution(String),
    /// The files in a session's `/work` now.
    Session(String),
}

impl FileOwner {
    /// From the two optional ids of a call: exactly one must be given.
    pub fn of(execution_id: Option<&str>, session_id: Option<&str>) -> Result<FileOwner, String> {
        match (execution_id.filter(|s| !s.is_empty()), session_id.filter(|s| !s.is_empty())) {
            (Some(e), None) => Ok(FileOwner::Execution(e.to_owned())),
            (None, Some(s)) => Ok(FileOwner::Session(s.to_owned())),
            (Some(_), Some(_)) => Err("give either execution_id or session_id, not both".into()),
            (None, None) => Err("give execution_id (an execution's files) or session_id (a session's /work)".into()),
        }
    }

    /// The id, `exe_...` or `ses_...`.
    pub fn id(&self) -> &str {
        match self {
            FileOwner::Execution(id) | FileOwner::Session(id) => id,
        }
    }
}

impl std::fmt::Display for FileOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileOwner::Execution(id) => write!(f, "execution {id}"),
            FileOwner::Session(id) => write!(f, "session {id}"),
        }
    }
}

impl RunPython {
    fn files(&self) -> Option<Vec<CodeFile>> {
        self.files
            .as_ref()
            .map(|files| files.iter().map(|f| CodeFile { name: f.name.clone(), content: f.content.clone() }).collect())
    }

    fn config(&self) -> Option<ExecutionConfig> {
        let set = self.timeout_seconds.is_some() || self.memory_mb.is_some() || self.network.is_some();
        set.then(|| ExecutionConfig {
            timeout_seconds: self.timeout_seconds.map(|t| t as i64),
            memory_mb: self.memory_mb.map(|m| m as i64),
            network_disabled: self.network.map(|n| !n),
            ..ExecutionConfig::default()
        })
    }

    /// The `/eval` request of a `run_python` call (REPL mode: the last expression's value is returned).
    pub fn to_eval(&self) -> EvalRequest {
        EvalRequest {
            code: self.code.clone(),
            files: self.files(),
            entrypoint: self.entrypoint.clone(),
            stdin: self.stdin.clone(),
            config: self.config(),
            python_version: self.python_version.clone(),
            eval_last_expr: Some(true),
            requirements_txt: self.requirements.clone(),
            // Fields tools do not set (webhooks, ...) keep their defaults.
            ..EvalRequest::default()
        }
    }

    /// The files and metadata of a `submit_python` call (an asynchronous project run).
    pub fn to_project(&self) -> (Vec<CodeFile>, Metadata) {
        let files = self.files().unwrap_or_else(|| {
            vec![CodeFile { name: "main.py".into(), content: self.code.clone().unwrap_or_default() }]
        });
        let entrypoint = self.entrypoint.clone().or_else(|| files.first().map(|f| f.name.clone()));
        let metadata = Metadata {
            entrypoint,
            stdin: self.stdin.clone(),
            requirements_txt: self.requirements.clone(),
            python_version: self.python_version.clone(),
            config: self.config(),
            ..Metadata::default()
        };
        (files, metadata)
    }
}

/// Whether a result means the program ran and succeeded (anything else is reported to the model as an error).
pub fn succeeded(result: &ExecutionResult) -> bool {
    result.status == ExecutionStatus::Completed && result.exit_code == 0
}

/// A result as text for a model: status first, then the value, the output, and what went wrong. Output beyond
/// `budget` is cut to its start and its end, with a note saying how much was left out and where the whole is.
pub fn summarize(result: &ExecutionResult, budget: OutputBudget) -> String {
    let mut out = format!(
        "status: {} (exit code {}), {} ms, execution_id {}\n",
        result.status, result.exit_code, result.duration_ms, result.execution_id
    );
    let hint = || whole_output_hint(&result.execution_id);
    let shares = Shares::of(result, budget);
    if let Some(value) = &result.result {
        let value = head_and_tail(value, shares.value, |n| format!("{n} bytes of the value left out; {}", hint()));
        out.push_str(&format!("result: {}\n", value.text.trim_end_matches('\n')));
    }
    if let Some(error) = &result.error {
        out.push_str(&format!("error: {error}\n"));
    }
    if let Some(kind) = &result.error_type {
        let line = result.error_line.map(|l| format!(" at line {l}")).unwrap_or_default();
        let message = result
            .error_message
            .as_deref()
            .map(|m| format!(": {}", capped_message(m, shares).trim_end_matches('\n')))
            .unwrap_or_default();
        out.push_str(&format!("exception: {kind}{line}{message}\n"));
    }
    if result.oom_killed {
        out.push_str("note: the memory limit was hit\n");
    }
    if !result.installed_packages.is_empty() {
        out.push_str(&format!("installed: {}\n", result.installed_packages.join(", ")));
    }
    if result.session_restarted {
        out.push_str("note: the session was restarted during this call: what earlier calls defined is gone\n");
    }
    if !result.files.is_empty() {
        let files: Vec<String> = result.files.iter().map(|f| format!("{} ({} bytes)", f.path, f.size)).collect();
        let more = if result.files_truncated { ", and more not kept (over the server's cap)" } else { "" };
        out.push_str(&format!("files written: {}{more} (read one with get_file)\n", files.join(", ")));
    } else if result.files_truncated {
        out.push_str("files written: too many or too large to keep\n");
    }
    for (name, text, cut_by_server, max) in [
        ("stdout", &result.stdout, result.stdout_truncated, shares.stdout),
        ("stderr", &result.stderr, result.stderr_truncated, shares.stderr),
    ] {
        if text.is_empty() {
            continue;
        }
        let capped = head_and_tail(text, max, |n| format!("{n} bytes of {name} left out here; {}", hint()));
        let server = if cut_by_server { ", cut at the server's output cap" } else { "" };
        let header = if capped.left_out > 0 {
            format!(
                "--- {name} ({} bytes{server}; the first {} and the last {} shown) ---\n",
                text.len(),
                capped.kept.0,
                capped.kept.1
            )
        } else if cut_by_server {
            format!("--- {name} (truncated at the server's output cap) ---\n")
        } else {
            format!("--- {name} ---\n")
        };
        out.push_str(&header);
        out.push_str(&capped.text);
        if !capped.text.ends_with('\n') {
            out.push('\n');
        }
    }
    // Text display outputs share their part of stdout's budget (each one also within OUTPUT_TEXT_MAX): a run that
    // displays many tables must not outgrow the result either.
    let mut left = shares.outputs;
    for (n, output) in result.outputs.iter().enumerate() {
        let n = n + 1;
        if is_image(&output.kind) {
            let size = base64_size(&output.data);
            out.push_str(&format!("--- output {n}: {}, {size} bytes (an image) ---\n", output.kind));
            continue;
        }
        if left == 0 {
            out.push_str(&format!(
                "--- output {n}: {}, {} bytes (left out: over the tool result's budget; {}) ---\n",
                output.kind,
                output.data.len(),
                hint()
            ));
            continue;
        }
        let max = left.min(OUTPUT_TEXT_MAX);
        let text = head_and_tail(&output.data, max, |n| format!("{n} bytes of this output left out; {}", hint()));
        left -= text.kept.0 + text.kept.1;
        out.push_str(&format!("--- output {n}: {} ---\n{}", output.kind, text.text));
        if !text.text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// An exception message within its share of stderr's budget.
pub(crate) fn capped_message(message: &str, shares: Shares) -> Cow<'_, str> {
    head_and_tail(message, shares.message, |n| format!("{n} bytes of the message left out")).text
}

/// Display items a model sees as images (the MCP image content types).
pub fn is_image(kind: &str) -> bool {
    matches!(kind, "image/png" | "image/jpeg" | "image/gif" | "image/webp")
}

/// Decoded size of base64 text.
fn base64_size(data: &str) -> usize {
    let data = data.trim_end();
    let pad = data.bytes().rev().take_while(|b| *b == b'=').count();
    (data.len() / 4 * 3).saturating_sub(pad)
}

/// The JSON Schema of `run_python`'s parameters, exactly as the MCP server lists it.
pub fn run_python_schema() -> serde_json::Value {
    // The schema of a plain struct always converts; an empty object would only hide a bug the tests catch.
    let schema = schema_for_input::<RunPython>().map(|s| (*s).clone()).unwrap_or_default();
    serde_json::Value::Object(schema)
}

/// `run_python` for the OpenAI (function calling) and Anthropic (tool use) APIs, from the same schema as the MCP
/// tool: `{"openai": [...], "anthropic": [...]}`.
pub fn tool_definitions() -> serde_json::Value {
    definitions(mcp_tools().into_iter().filter(|t| t.name == "run_python"))
}

/// Every MCP tool (sessions and files included) for the OpenAI and Anthropic APIs, from the very list the MCP
/// server answers `tools/list` with (same names, descriptions and schemas), in the same shape as
/// [`tool_definitions`]. For tool-calling loops that run the other tools themselves (over the REST API).
pub fn all_tool_definitions() -> serde_json::Value {
    definitions(mcp_tools())
}

/// The tools as the MCP server lists them, sorted by name.
pub fn mcp_tools() -> Vec<rmcp::model::Tool> {
    crate::server::PythonTools::tool_list()
}

fn definitions(tools: impl IntoIterator<Item = rmcp::model::Tool>) -> serde_json::Value {
    let (mut openai, mut anthropic) = (Vec::new(), Vec::new());
    for tool in tools {
        let schema = serde_json::Value::Object((*tool.input_schema).clone());
        let description = tool.description.as_deref().unwrap_or_default();
        openai.push(serde_json::json!({
            "type": "function",
            "function": {"name": tool.name, "description": description, "parameters": schema},
        }));
        anthropic.push(serde_json::json!({"name": tool.name, "description": description, "input_schema": schema}));
    }
    serde_json::json!({"openai": openai, "anthropic": anthropic})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_become_requests() {
        let call: RunPython =
            serde_json::from_value(serde_json::json!({"code": "1 + 1", "timeout_seconds": 5, "network": false}))
                .unwrap();
        let eval = call.to_eval();
        assert_eq!((eval.code.as_deref(), eval.eval_last_expr), (Some("1 + 1"), Some(true)));
        let config = eval.config.unwrap();
        assert_eq!((config.timeout_seconds, config.network_disabled, config.memory_mb), (Some(5), Some(true), None));
        let (files, meta) = call.to_project();
        assert_eq!((files[0].name.as_str(), meta.entrypoint.as_deref()), ("main.py", Some("main.py")));
    }

    #[test]
    fn results_read_well() {
        let mut r = ExecutionResult::pending("exe_1");
        r.status = ExecutionStatus::Completed;
        r.exit_code = 1;
        r.stderr = "Traceback ...\nZeroDivisionError: division by zero\n".into();
        r.error_type = Some("ZeroDivisionError".into());
        r.error_line = Some(3);
        r.error_message = Some("division by zero".into());
        let text = summarize(&r, OutputBudget::default());
        assert!(text.starts_with("status: completed (exit code 1)"), "{text}");
        assert!(text.contains("exception: ZeroDivisionError at line 3: division by zero"), "{text}");
        assert!(!succeeded(&r));
    }

    #[test]
    fn the_definitions_share_one_schema() {
        let defs = tool_definitions();
        let openai = &defs["openai"][0]["function"]["parameters"];
        assert_eq!(openai, &defs["anthropic"][0]["input_schema"]);
        assert_eq!(openai["type"], "object");
        assert!(openai["properties"]["code"].is_object() && openai["properties"]["files"].is_object());
        assert!(openai["properties"]["timeout_seconds"]["description"].as_str().unwrap().contains("Seconds"));
    }
}
