//! The tools an agent gets: their parameters (with descriptions written for models), how a result is presented to
//! a model, and the same `run_python` definition in the OpenAI and Anthropic tool formats.

use pyexec_core::{CodeFile, EvalRequest, ExecutionConfig, ExecutionResult, ExecutionStatus, Metadata};
use rmcp::handler::server::tool::schema_for_input;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What `run_python` tells a model about the sandbox.
pub const RUN_PYTHON_DESCRIPTION: &str = "Run Python 3 code in an isolated sandbox and return its output. \
Each call starts fresh: no state is kept between calls, and files written (under /work or /tmp) exist only for that \
run. The value of the last expression is returned in `result`, like a REPL (so end with an expression to see a \
value). Third-party imports (numpy, pandas, requests, ...) are installed automatically before the run; add version \
pins or packages that cannot be detected in `requirements`. There is no network access unless `network` is true \
and the server allows it. The run is stopped after `timeout_seconds` (exit code 124) and is limited in memory (an \
out-of-memory kill gives exit code 137). Output beyond the server's cap is cut, and the result says so. An uncaught \
exception is reported in `error_type`, `error_line` and `error_message`; `exit_code` 0 means success.";

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

/// A result as text for a model: status first, then the value, the output, and what went wrong.
pub fn summarize(result: &ExecutionResult) -> String {
    let mut out = format!(
        "status: {} (exit code {}), {} ms, execution_id {}\n",
        result.status, result.exit_code, result.duration_ms, result.execution_id
    );
    if let Some(value) = &result.result {
        out.push_str(&format!("result: {value}\n"));
    }
    if let Some(error) = &result.error {
        out.push_str(&format!("error: {error}\n"));
    }
    if let Some(kind) = &result.error_type {
        let line = result.error_line.map(|l| format!(" at line {l}")).unwrap_or_default();
        let message = result.error_message.as_deref().map(|m| format!(": {m}")).unwrap_or_default();
        out.push_str(&format!("exception: {kind}{line}{message}\n"));
    }
    if result.oom_killed {
        out.push_str("note: the memory limit was hit\n");
    }
    if !result.installed_packages.is_empty() {
        out.push_str(&format!("installed: {}\n", result.installed_packages.join(", ")));
    }
    for (name, text, cut) in
        [("stdout", &result.stdout, result.stdout_truncated), ("stderr", &result.stderr, result.stderr_truncated)]
    {
        if !text.is_empty() {
            out.push_str(&format!("--- {name}{} ---\n{text}", if cut { " (truncated)" } else { "" }));
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
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
    let schema = run_python_schema();
    serde_json::json!({
        "openai": [{
            "type": "function",
            "function": {"name": "run_python", "description": RUN_PYTHON_DESCRIPTION, "parameters": schema},
        }],
        "anthropic": [{
            "name": "run_python",
            "description": RUN_PYTHON_DESCRIPTION,
            "input_schema": schema,
        }],
    })
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
        let text = summarize(&r);
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
