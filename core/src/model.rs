//! Wire types of the python-executor API.
//!
//! Field names, order and presence follow the original Go service (see `docs/api.md`): keys whose value is the
//! zero value are omitted, except `execution_id`, `status` and `exit_code`. Additive fields of ours
//! (`error_message`, `stdout_truncated`, `stderr_truncated`, `oom_killed`) are omitted when empty or false, so an
//! answer of ours is byte-compatible with the original's wherever the original answered correctly.

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Lifecycle of an execution: `pending → running → completed | failed`, and `pending | running → killed`.
/// `completed`, `failed` and `killed` are terminal and never overwritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Accepted, waiting for a free slot.
    Pending,
    /// The program (or its set-up) is running.
    Running,
    /// The program ran to an exit code, whatever the code (137 after an out-of-memory kill).
    Completed,
    /// The program could not run to completion for a reason outside it (timeout, install failure, internal error).
    Failed,
    /// Stopped by a kill request.
    Killed,
}

impl ExecutionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [ExecutionStatus; 5] = [
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
        ExecutionStatus::Completed,
        ExecutionStatus::Failed,
        ExecutionStatus::Killed,
    ];

    /// True for `completed`, `failed` and `killed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Killed)
    }

    /// The wire spelling (`"pending"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Killed => "killed",
        }
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ExecutionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}; expected one of pending, running, completed, failed, killed"))
    }
}

/// The `config` object of every endpoint. Absent, `null` and `0` all mean "the server's default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionConfig {
    /// Wall-clock limit of the whole execution, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// `true` (and absent: our default) runs the program without any network. `false` gives egress to the
    /// public internet only: never the host, its loopback, private ranges or cloud metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_disabled: Option<bool>,
    /// Memory limit in MiB. The program's files in `/work` and `/tmp` count towards it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    /// Size limit of the writable workspace `/work`, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<i64>,
    /// CPU weight; 1024 is one full CPU (see `docs/security.md` for how it maps to a quota).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
}

/// The `metadata` part of `/api/v1/exec/sync` and `/api/v1/exec/async`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Metadata {
    /// File to run, relative to `/work`. Absent: `python /work` (runs `__main__.py`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Container image; on the embedded backend only `python:3.X[-variant]` naming an available interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    /// Additive: pick the interpreter by version (`"3.12"`) instead of by image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// `requirements.txt` content installed before the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements_txt: Option<String>,
    /// Shell commands run before the entrypoint, as the unprivileged sandbox user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_commands: Option<Vec<String>>,
    /// Text fed to the program's standard input, then end-of-file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// `KEY=value` entries added to the program's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<Vec<String>>,
    /// Arguments: the program's `sys.argv[1:]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_args: Option<Vec<String>>,
    /// Limits; absent fields take the server's defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ExecutionConfig>,
    /// Additive: an `https` URL that receives the final result as JSON, signed with the server's webhook secret,
    /// when the execution ends, whatever its status (docs/webhooks.md). Refused with 400 when the server has no
    /// webhook secret, and for private or internal addresses unless the server allows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub callback_url: Option<String>,
}

/// One file of an `/api/v1/eval` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CodeFile {
    /// Path relative to `/work`, e.g. `main.py` or `pkg/util.py`.
    pub name: String,
    /// The file's text.
    pub content: String,
}

/// The JSON body of `/api/v1/eval`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvalRequest {
    /// Source of `main.py`; ignored when `files` is non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Several files; the first one is the default entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<CodeFile>>,
    /// File to run; default `files[0].name`, or `main.py`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Text fed to standard input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ExecutionConfig>,
    /// `"3.10"` to `"3.13"`; absent: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// REPL mode: report the value of a trailing expression in `result`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_last_expr: Option<bool>,
    /// Extra requirements; `"-"` turns off import auto-detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements_txt: Option<String>,
    /// Additive: an `https` URL that receives the final result as JSON, signed with the server's webhook secret,
    /// when the execution ends, whatever its status (docs/webhooks.md). Refused with 400 when the server has no
    /// webhook secret, and for private or internal addresses unless the server allows them. Not taken by session
    /// calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub callback_url: Option<String>,
}

/// `202` answer of `/api/v1/exec/async`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AsyncResponse {
    /// The new execution's id.
    pub execution_id: String,
}

/// Answer of `DELETE /api/v1/executions/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KillResponse {
    /// The execution's status after the request.
    pub status: ExecutionStatus,
}

/// One page of `GET /api/v1/executions`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionPage {
    /// The executions.
    pub executions: Vec<ExecutionResult>,
    /// Cursor of the next (older) page, absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Error body of every non-2xx JSON answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorResponse {
    /// What went wrong, for a person.
    pub error: String,
    /// On `404 execution not found`: how long finished executions are kept (seconds, counted from their end), so
    /// that a client can tell an expired id from a wrong one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_seconds: Option<u64>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Absent or empty text: such a key is left out, as every empty value is (`docs/api.md`, "The result").
fn is_empty_text(text: &Option<String>) -> bool {
    text.as_deref().is_none_or(str::is_empty)
}

/// The state and outcome of one execution, as every endpoint reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionResult {
    /// `exe_` followed by a UUIDv4.
    pub execution_id: String,
    /// Lifecycle state.
    pub status: ExecutionStatus,
    /// Standard output (capped; see `stdout_truncated`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    /// Standard error (capped; see `stderr_truncated`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// The program's exit code; 124 on timeout, 137 when killed or out of memory, 0 only on success.
    #[serde(default)]
    pub exit_code: i32,
    /// Why the execution failed (only with status `failed`, and `killed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Class name of the uncaught exception, e.g. `NameError`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Line in the user's file where the uncaught exception was raised (outermost frame).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_line: Option<u32>,
    /// When the execution started running (RFC 3339, UTC, microseconds): on the embedded backend when it left the
    /// queue (its dependencies are installed after), on Kubernetes when its container started. Set once and never
    /// changed; absent while `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub started_at: Option<Timestamp>,
    /// When the execution reached a terminal status (RFC 3339, UTC, microseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub finished_at: Option<Timestamp>,
    /// Milliseconds the run took: from the start of the program's sandbox (on Kubernetes, of its container) to the
    /// program's end, `pre_commands` included; not the time in the queue, nor installing dependencies
    /// (`install_ms`). Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub duration_ms: i64,
    /// `repr()` of the trailing expression in eval mode, when it is not `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Additive: the uncaught exception's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// Additive: standard output went over the cap and was cut.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stdout_truncated: bool,
    /// Additive: standard error went over the cap and was cut.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stderr_truncated: bool,
    /// Additive: the memory limit was hit and a process was killed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub oom_killed: bool,
    /// Additive: the packages of the environment the program ran in (`name==version`), when it needed any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installed_packages: Vec<String>,
    /// Additive: what the `pre_commands` printed (kept apart from the program's output); absent when they printed
    /// nothing.
    #[serde(default, skip_serializing_if = "is_empty_text")]
    pub pre_commands_output: Option<String>,
    /// Additive: rich display items (figures, `display(obj)`, a rich last expression), in the order shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<DisplayOutput>,
    /// Additive: the files the run created or changed under `/work` (metadata only; the bytes are fetched apart).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<OutputFile>,
    /// Additive: some changed files were left out of `files` (over the size or count cap).
    #[serde(default, skip_serializing_if = "is_false")]
    pub files_truncated: bool,
    /// Additive: the session the run was a call of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Additive: the session's sandbox was replaced during this call, and its earlier state lost.
    #[serde(default, skip_serializing_if = "is_false")]
    pub session_restarted: bool,
    /// Additive: the tenant the execution belongs to (docs/tenants.md); absent on a server without API keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Additive: packages that import detection found but that were not installed, each with why (the package
    /// index does not have it, or it is not on the server's auto-install allow-list); the run went on without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_packages: Vec<SkippedPackage>,
    /// Additive: milliseconds the execution spent getting its dependencies installed (`requirements_txt`, a
    /// project's `requirements.txt`, detected imports) before its program started: building their environment, or
    /// waiting for the build of the same one. Absent when nothing was installed for it (no dependencies, or their
    /// environment was ready in the cache), and on the Kubernetes backend.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub install_ms: i64,
}

/// A package that import detection found and that was not installed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkippedPackage {
    /// The distribution name, as detection mapped the import.
    pub name: String,
    /// Why it was not installed, e.g. `not found in the package index`.
    pub reason: String,
}

/// One rich display item of a run: a MIME type and its data (base64 for binary types such as `image/png`, the
/// text itself for `image/svg+xml`, `text/html` and `text/plain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DisplayOutput {
    /// The MIME type, e.g. `image/png`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The content: base64 for binary types, text otherwise.
    pub data: String,
}

/// One file a run created or changed under `/work`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OutputFile {
    /// Path relative to `/work`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

impl ExecutionResult {
    /// A fresh record in `pending` state.
    pub fn pending(execution_id: impl Into<String>) -> Self {
        Self {
            execution_id: execution_id.into(),
            status: ExecutionStatus::Pending,
            stdout: String::new(),
            stderr: String::new(),
            exit_code: 0,
            error: None,
            error_type: None,
            error_line: None,
            started_at: None,
            finished_at: None,
            duration_ms: 0,
            result: None,
            error_message: None,
            stdout_truncated: false,
            stderr_truncated: false,
            oom_killed: false,
            installed_packages: Vec::new(),
            pre_commands_output: None,
            outputs: Vec::new(),
            files: Vec::new(),
            files_truncated: false,
            session_id: None,
            session_restarted: false,
            tenant: None,
            skipped_packages: Vec::new(),
            install_ms: 0,
        }
    }
}

/// A new execution id: `exe_` + lowercase hyphenated UUIDv4 (40 characters), as the original.
pub fn new_execution_id() -> String {
    format!("exe_{}", uuid::Uuid::new_v4())
}

/// True when `id` has the shape of an execution id (used to answer malformed ids with 404 early and to keep
/// ids safe to use in file names).
pub fn is_execution_id(id: &str) -> bool {
    id.strip_prefix("exe_").and_then(|rest| uuid::Uuid::try_parse(rest).ok()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_result_has_only_the_always_present_keys() {
        let json = serde_json::to_string(&ExecutionResult::pending("exe_x")).unwrap();
        assert_eq!(json, r#"{"execution_id":"exe_x","status":"pending","exit_code":0}"#);
    }

    #[test]
    fn result_keys_keep_the_original_order() {
        let mut r = ExecutionResult::pending("exe_x");
        r.status = ExecutionStatus::Completed;
        r.stdout = "hi\n".into();
        r.stderr = "warn\n".into();
        r.exit_code = 1;
        r.error_type = Some("NameError".into());
        r.error_line = Some(3);
        r.duration_ms = 12;
        r.result = Some("4".into());
        r.error_message = Some("boom".into());
        r.stdout_truncated = true;
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"execution_id":"exe_x","status":"completed","stdout":"hi\n","stderr":"warn\n","exit_code":1,"error_type":"NameError","error_line":3,"duration_ms":12,"result":"4","error_message":"boom","stdout_truncated":true}"#
        );
    }

    #[test]
    fn session_and_output_fields_appear_only_when_set() {
        let mut r = ExecutionResult::pending("exe_x");
        r.outputs = vec![DisplayOutput { kind: "image/png".into(), data: "iVBO".into() }];
        r.files = vec![OutputFile { path: "out/a.txt".into(), size: 5, sha256: "2cf2".into() }];
        r.files_truncated = true;
        r.session_id = Some("ses_1".into());
        r.session_restarted = true;
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"execution_id":"exe_x","status":"pending","exit_code":0,"outputs":[{"type":"image/png","data":"iVBO"}],"files":[{"path":"out/a.txt","size":5,"sha256":"2cf2"}],"files_truncated":true,"session_id":"ses_1","session_restarted":true}"#
        );
        assert_eq!(serde_json::from_str::<ExecutionResult>(&json).unwrap(), r);
    }

    #[test]
    fn empty_pre_commands_output_and_zero_install_time_are_left_out() {
        let mut r = ExecutionResult::pending("exe_x");
        r.pre_commands_output = Some(String::new());
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"execution_id":"exe_x","status":"pending","exit_code":0}"#);
        r.pre_commands_output = Some("ready\n".into());
        r.install_ms = 1500;
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"execution_id":"exe_x","status":"pending","exit_code":0,"pre_commands_output":"ready\n","install_ms":1500}"#
        );
    }

    #[test]
    fn result_round_trips_and_tolerates_missing_keys() {
        let r: ExecutionResult =
            serde_json::from_str(r#"{"execution_id":"exe_1","status":"failed","error":"x"}"#).unwrap();
        assert_eq!(r.status, ExecutionStatus::Failed);
        assert_eq!(r.exit_code, 0);
        assert_eq!(r.error.as_deref(), Some("x"));
    }

    #[test]
    fn ids_have_the_original_shape() {
        let id = new_execution_id();
        assert_eq!(id.len(), 40);
        assert!(is_execution_id(&id));
        assert!(!is_execution_id("exe_nope"));
        assert!(!is_execution_id("../etc/passwd"));
    }

    #[test]
    fn status_parses_and_knows_terminal_states() {
        assert_eq!("killed".parse::<ExecutionStatus>().unwrap(), ExecutionStatus::Killed);
        assert!("done".parse::<ExecutionStatus>().is_err());
        assert!(ExecutionStatus::Killed.is_terminal());
        assert!(!ExecutionStatus::Running.is_terminal());
    }

    #[test]
    fn config_zero_and_null_are_accepted() {
        let c: ExecutionConfig = serde_json::from_str(r#"{"timeout_seconds":null,"memory_mb":0,"unknown":1}"#).unwrap();
        assert_eq!(c.timeout_seconds, None);
        assert_eq!(c.memory_mb, Some(0));
    }
}
