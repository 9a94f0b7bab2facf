//! Sessions: wire types of `/api/v1/sessions` and the session runner that keeps an interpreter's state between
//! calls (docs/sessions.md).
//!
//! The runner, [`SESSION_RUNNER_SOURCE`], is placed next to the eval runner (it imports it for running cells,
//! display outputs and the files a call wrote) and talks to its backend over standard input (requests) and a
//! control descriptor (replies), both as frames: a line with the byte length of a JSON header, the header, then
//! as many raw bytes as the header's `n` says.

use serde::{Deserialize, Serialize};

use crate::model::{CodeFile, EvalRequest, ExecutionConfig, OutputFile};
use crate::spec::{
    ExecutionSpec, Policy, PythonVersion, Requirements, ValidationError, check_file_name, parse_env_var,
};
use crate::time::Timestamp;

/// The session runner's source.
pub const SESSION_RUNNER_SOURCE: &str = include_str!("../python/session_runner.py");

/// Where the session runner is placed in a session's sandbox (next to the eval runner, which it imports).
pub const SESSION_RUNNER_PATH: &str = "/opt/pyexec/session_runner.py";

/// The file next to the session runner (in a Pod, a key of the session's ConfigMap) that holds the network fence
/// the runner checks after the operator's go-ahead: a [`crate::pod::protocol::Fence`] as JSON, the same check an
/// execution's runner makes (the runner imports the Pod runner's probe for it).
pub const SESSION_FENCE_FILE: &str = "fence.json";

/// The start of the line the session runner writes to its standard error once it took the operator's go-ahead and
/// found the network fenced, followed by a [`RunnerReady`] as JSON. Standard error, because the container log has
/// it while the mux stream on standard output (which the API server reads) never does. The operator reads it from
/// the log and only then calls the session `Ready`; nothing untrusted runs before it is written, so the first such
/// line of a Pod's log is always the runner's.
pub const READY_MARKER: &str = "\x1fpyexec-session-ready ";

/// What the session runner reports after the go-ahead ([`READY_MARKER`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerReady {
    /// What the Pod's install container installed (`name==version`, sorted); empty without requirements.
    #[serde(default)]
    pub installed: Vec<String>,
}

/// The runner's report in a session container's log: the first line that starts with [`READY_MARKER`] (later ones
/// may be a cell's output, so only the first counts); `None` while there is none, or when it does not parse.
pub fn ready_report(log: &str) -> Option<RunnerReady> {
    let line = log.lines().find_map(|line| line.strip_prefix(READY_MARKER))?;
    serde_json::from_str(line).ok()
}

/// Prefix of every session id.
pub const SESSION_ID_PREFIX: &str = "ses_";

/// Limits and settings of a new session (`config` of `POST /api/v1/sessions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionConfig {
    /// Memory of the whole session, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<i64>,
    /// Size of the session's `/work`, MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mb: Option<i64>,
    /// CPU weight, as in `/eval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_shares: Option<i64>,
    /// Whether the session has no network (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_disabled: Option<bool>,
    /// Seconds without a call after which the session ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i64>,
}

/// Body of `POST /api/v1/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewSession {
    /// Python version, e.g. `3.12` (the server's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    /// Packages installed when the session starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements_txt: Option<String>,
    /// `NAME=value` environment variables of the session's interpreter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_vars: Option<Vec<String>>,
    /// Limits and timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<SessionConfig>,
}

/// What state a session is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Ready for a call.
    Idle,
    /// A call is running.
    Busy,
    /// Deleted or expired (only in the answer to `DELETE`).
    Ended,
}

/// A session as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// `ses_<uuid>`.
    pub session_id: String,
    /// See [`SessionState`].
    pub state: SessionState,
    /// The interpreter's version.
    pub python_version: String,
    /// When it was created.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// When the last call ended (or creation).
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_used_at: Timestamp,
    /// When the session ends unless a call comes first.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub expires_at: Timestamp,
    /// Calls made so far.
    pub calls: u64,
    /// Times the interpreter was replaced (after a call that would not stop or that killed it).
    pub restarts: u64,
    /// Memory limit of the whole session, MiB.
    pub memory_mb: i64,
    /// Size of `/work`, MiB.
    pub disk_mb: i64,
    /// Whether the session has no network.
    pub network_disabled: bool,
    /// Seconds without a call after which it ends.
    pub idle_timeout_seconds: i64,
    /// The tenant the session belongs to (docs/tenants.md); absent on a server without API keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Memory the session holds now (its interpreter, what it defined, its files in `/work` and `/tmp`), when
    /// the server measures it (cgroups) and no call is running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_used_bytes: Option<u64>,
}

/// Answer of `GET /api/v1/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionList {
    /// Live sessions, newest first.
    pub sessions: Vec<SessionInfo>,
}

/// Answer of the files endpoints (`GET .../files`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FileList {
    /// Regular files under `/work`, paths relative to it, sorted.
    pub files: Vec<OutputFile>,
    /// Whether some files were left out (the caps of docs/sessions.md).
    pub truncated: bool,
}

/// One call of a session, validated (what `POST /api/v1/sessions/{id}/eval` asks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCall {
    /// The cell's code.
    pub code: String,
    /// Files written into `/work` before the code runs.
    pub files: Vec<CodeFile>,
    /// Standard input of the call.
    pub stdin: Option<String>,
    /// Whether the last expression's value is the result.
    pub eval_last_expr: bool,
    /// The call's timeout.
    pub timeout: std::time::Duration,
    /// The request's `Idempotency-Key`, kept with the call's execution record so that a retry finds it.
    pub idempotency: Option<crate::spec::IdempotencyRecord>,
}

impl SessionCall {
    /// What the call asks for, as the bytes a fingerprint hashes (its key aside).
    pub fn asked(&self) -> Vec<u8> {
        let files: Vec<(&str, &str)> = self.files.iter().map(|f| (f.name.as_str(), f.content.as_str())).collect();
        let asked = (&self.code, files, &self.stdin, self.eval_last_expr, self.timeout.as_secs());
        serde_json::to_vec(&asked).unwrap_or_default()
    }
}

/// The server's bounds on sessions' timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimeouts {
    /// Idle timeout of a session that asks for none, seconds.
    pub idle_default: u64,
    /// Largest idle timeout a session may ask for, seconds.
    pub idle_max: u64,
}

impl Policy {
    /// Validates `POST /api/v1/sessions` into the spec of the session's sandbox and its idle timeout (seconds).
    pub fn session_spec(
        &self,
        req: NewSession,
        timeouts: SessionTimeouts,
    ) -> Result<(ExecutionSpec, u64), ValidationError> {
        let python = match req.python_version.as_deref() {
            None | Some("") => None,
            Some(v) => Some(PythonVersion::parse_supported(v)?),
        };
        let env = req.env_vars.unwrap_or_default().iter().map(|e| parse_env_var(e)).collect::<Result<_, _>>()?;
        let config = req.config.unwrap_or_default();
        let idle = match config.idle_timeout_seconds {
            None | Some(0) => timeouts.idle_default,
            Some(v) if v < 0 => {
                return Err(ValidationError::bad_request(format!(
                    "config.idle_timeout_seconds must not be negative, got {v}"
                )));
            }
            Some(v) if v as u64 > timeouts.idle_max => {
                return Err(ValidationError::bad_request(format!(
                    "config.idle_timeout_seconds {v} exceeds this server's maximum of {}",
                    timeouts.idle_max
                )));
            }
            Some(v) => v as u64,
        };
        let limits = self.limits(&ExecutionConfig {
            timeout_seconds: None,
            network_disabled: None,
            memory_mb: config.memory_mb,
            disk_mb: config.disk_mb,
            cpu_shares: config.cpu_shares,
        })?;
        let requirements = match Requirements::from_request(req.requirements_txt) {
            Requirements::FromProject => Requirements::Nothing,
            other => other,
        };
        let spec = ExecutionSpec {
            entrypoint: None,
            args: Vec::new(),
            env,
            stdin: None,
            limits,
            network: config.network_disabled.map_or(self.network_when_unspecified, |disabled| !disabled),
            python,
            image: None,
            eval_last_expr: true,
            requirements,
            auto_detect_imports: false,
            auto_install: crate::requirements::AutoInstall::Any,
            pre_commands: Vec::new(),
            tenant: None,
            callback_url: None,
            idempotency: None,
        };
        Ok((spec, idle))
    }

    /// Validates the body of `POST /api/v1/sessions/{id}/eval`: the `/eval` body, less what belongs to the
    /// session, which is refused rather than ignored.
    pub fn session_call(&self, req: EvalRequest) -> Result<SessionCall, ValidationError> {
        let session_field = |name: &str| {
            ValidationError::bad_request(format!(
                "{name} belongs to the session (set it in POST /api/v1/sessions), not to a call"
            ))
        };
        if req.python_version.as_deref().is_some_and(|v| !v.is_empty()) {
            return Err(session_field("python_version"));
        }
        if req.requirements_txt.as_deref().is_some_and(|v| !v.trim().is_empty()) {
            return Err(session_field("requirements_txt"));
        }
        if req.entrypoint.as_deref().is_some_and(|v| !v.is_empty()) {
            return Err(ValidationError::bad_request(
                "a session call runs its code as a cell; to run a file, put `exec(open('name').read())` in code",
            ));
        }
        // Webhooks are for executions one waits for apart from the request; a call's answer is the result.
        if req.callback_url.as_deref().is_some_and(|v| !v.is_empty()) {
            return Err(ValidationError::bad_request(
                "callback_url is not taken by session calls: their answer is the result (docs/webhooks.md)",
            ));
        }
        let config = req.config.unwrap_or_default();
        for (name, set) in [
            ("config.memory_mb", config.memory_mb.is_some()),
            ("config.disk_mb", config.disk_mb.is_some()),
            ("config.cpu_shares", config.cpu_shares.is_some()),
            ("config.network_disabled", config.network_disabled.is_some()),
        ] {
            if set {
                return Err(session_field(name));
            }
        }
        let code = req.code.unwrap_or_default();
        let files = req.files.unwrap_or_default();
        if code.is_empty() && files.is_empty() {
            return Err(ValidationError::bad_request("either 'code' or 'files' must be provided"));
        }
        let mut sizes = vec![("<code>", code.len() as u64)];
        sizes.extend(files.iter().map(|f| (f.name.as_str(), f.content.len() as u64)));
        self.check_eval_sizes(&sizes, None)?;
        let mut seen = std::collections::HashSet::new();
        let mut checked = Vec::with_capacity(files.len());
        for mut file in files {
            file.name = check_file_name(&file.name)?;
            if !seen.insert(file.name.clone()) {
                return Err(ValidationError::bad_request(format!("duplicate file name {:?}", file.name)));
            }
            checked.push(file);
        }
        let timeout_seconds = self
            .limits(&ExecutionConfig { timeout_seconds: config.timeout_seconds, ..Default::default() })?
            .timeout_seconds;
        Ok(SessionCall {
            code,
            files: checked,
            stdin: req.stdin.filter(|s| !s.is_empty()),
            eval_last_expr: req.eval_last_expr.unwrap_or(true),
            timeout: std::time::Duration::from_secs(timeout_seconds),
            idempotency: None,
        })
    }
}

/// A new session id.
pub fn new_session_id() -> String {
    format!("{SESSION_ID_PREFIX}{}", uuid::Uuid::new_v4())
}

/// Whether `id` has the shape of a session id (anything else is unknown without a lookup).
pub fn is_session_id(id: &str) -> bool {
    id.strip_prefix(SESSION_ID_PREFIX).is_some_and(|u| uuid::Uuid::parse_str(u).is_ok() && u.len() == 36)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUTS: SessionTimeouts = SessionTimeouts { idle_default: 600, idle_max: 3600 };

    #[test]
    fn the_runner_reports_readiness_as_the_operator_reads_it() {
        // The runner spells the names in Python: the same values.
        use crate::pod::protocol::{FLAG_ON, GATE_ENV, GO_AHEAD};
        let lines = [
            r#"READY_MARKER = "\x1fpyexec-session-ready ""#.to_owned(),
            format!("FENCE_FILE = {SESSION_FENCE_FILE:?}"),
            format!("GATE_ENV = {GATE_ENV:?}"),
            format!("FLAG_ON = {FLAG_ON:?}"),
            format!("GO_AHEAD = {GO_AHEAD:?}"),
        ];
        for line in lines {
            assert!(SESSION_RUNNER_SOURCE.lines().any(|l| l == line), "{line}");
        }
        assert_eq!((READY_MARKER, SESSION_FENCE_FILE), ("\u{1f}pyexec-session-ready ", "fence.json"));
        let log = format!(
            "a warning\n{READY_MARKER}{{\"installed\": [\"six==1.17.0\"]}}\n{READY_MARKER}{{\"installed\": []}}\n"
        );
        assert_eq!(ready_report(&log), Some(RunnerReady { installed: vec!["six==1.17.0".into()] }), "the first");
        assert_eq!(ready_report(&format!("{READY_MARKER}{{}}")), Some(RunnerReady::default()));
        assert_eq!(ready_report("nothing yet\n"), None);
        assert_eq!(ready_report(&format!("{READY_MARKER}not json\n{READY_MARKER}{{}}\n")), None);
    }

    fn call(json: &str) -> Result<SessionCall, ValidationError> {
        Policy::default().session_call(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn session_settings_are_validated() {
        let (spec, idle) = Policy::default().session_spec(NewSession::default(), TIMEOUTS).unwrap();
        assert_eq!(idle, 600);
        assert!(!spec.network && spec.eval_last_expr && spec.requirements == Requirements::Nothing);
        let req: NewSession = serde_json::from_str(
            r#"{"python_version":"3.11","requirements_txt":"pandas","env_vars":["A=1"],
                "config":{"memory_mb":256,"network_disabled":false,"idle_timeout_seconds":60}}"#,
        )
        .unwrap();
        let (spec, idle) = Policy::default().session_spec(req, TIMEOUTS).unwrap();
        assert_eq!((idle, spec.limits.memory_mb, spec.network), (60, 256, true));
        assert_eq!(spec.requirements, Requirements::Listed("pandas".into()));
        assert_eq!(spec.env, vec![("A".to_string(), "1".to_string())]);
        for (body, says) in [
            (r#"{"config":{"idle_timeout_seconds":7200}}"#, "maximum of 3600"),
            (r#"{"config":{"idle_timeout_seconds":-1}}"#, "negative"),
            (r#"{"python_version":"2.7"}"#, "unsupported python_version"),
            (r#"{"env_vars":["NOEQUALS"]}"#, "NOEQUALS"),
            (r#"{"config":{"memory_mb":1}}"#, "memory_mb"),
        ] {
            let err = Policy::default().session_spec(serde_json::from_str(body).unwrap(), TIMEOUTS).unwrap_err();
            assert!(err.message.contains(says), "{body}: {}", err.message);
        }
    }

    #[test]
    fn calls_refuse_what_belongs_to_the_session() {
        let ok = call(r#"{"code":"x + 1","config":{"timeout_seconds":5}}"#).unwrap();
        assert_eq!((ok.code.as_str(), ok.eval_last_expr, ok.timeout.as_secs()), ("x + 1", true, 5));
        for (body, says) in [
            (r#"{"code":"1","python_version":"3.12"}"#, "python_version belongs to the session"),
            (r#"{"code":"1","requirements_txt":"numpy"}"#, "requirements_txt belongs to the session"),
            (r#"{"code":"1","config":{"memory_mb":512}}"#, "config.memory_mb belongs to the session"),
            (r#"{"code":"1","entrypoint":"main.py"}"#, "cell"),
            (r#"{"code":"1","callback_url":"https://hooks.example.com/"}"#, "not taken by session calls"),
            (r#"{}"#, "either 'code' or 'files'"),
            (r#"{"code":"1","files":[{"name":"../x","content":""}]}"#, "../x"),
            (r#"{"code":"1","files":[{"name":"a","content":""},{"name":"a","content":""}]}"#, "duplicate"),
        ] {
            let err = call(body).unwrap_err();
            assert!(err.message.contains(says), "{body}: {}", err.message);
        }
        // Data files count apart from the code.
        let csv = "1,2\n".repeat(60_000);
        let body =
            serde_json::json!({"code": "len(open('d.csv').read())", "files": [{"name": "d.csv", "content": csv}]});
        assert!(Policy::default().session_call(serde_json::from_value(body).unwrap()).is_ok());
    }

    #[test]
    fn session_ids_have_one_shape() {
        let id = new_session_id();
        assert!(is_session_id(&id), "{id}");
        for bad in ["ses_", "exe_1", "ses_../../x", "ses_0000"] {
            assert!(!is_session_id(bad), "{bad}");
        }
    }
}
