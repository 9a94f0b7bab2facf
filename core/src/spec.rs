//! What to run, validated: the backend-neutral description every backend executes.
//!
//! Requests arrive as [`Metadata`] (multipart endpoints) or [`EvalRequest`] (JSON endpoint); [`Policy`] turns
//! them into an [`ExecutionSpec`] with the server's defaults applied, or a [`ValidationError`] whose message is the
//! original's where the original has one (docs/compatibility.md: C32, C33, C54; ours: C23, C24, C31, C59, C61).

use serde::{Deserialize, Serialize};

use crate::callback::CallbackRules;
use crate::model::{CodeFile, EvalRequest, ExecutionConfig, Metadata};
use crate::paths::{RelativePathError, normalize_relative_path};

/// How a request was rejected: maps to HTTP 400 or 413.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Malformed or contradictory input (400).
    BadRequest,
    /// Input larger than allowed (413).
    TooLarge,
}

/// A request that cannot be run, with the message the client sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// The HTTP class of the rejection.
    pub kind: Rejection,
    /// Text for the `{"error": ...}` body.
    pub message: String,
}

impl ValidationError {
    /// A 400 rejection.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { kind: Rejection::BadRequest, message: message.into() }
    }

    /// A 413 rejection.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self { kind: Rejection::TooLarge, message: message.into() }
    }
}

/// A CPython minor version of the 3.x line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PythonVersion {
    /// The `X` of `3.X`.
    pub minor: u8,
}

impl PythonVersion {
    /// The versions the API accepts, as the original: 3.10 to 3.13.
    pub const SUPPORTED: [PythonVersion; 4] = [
        PythonVersion { minor: 10 },
        PythonVersion { minor: 11 },
        PythonVersion { minor: 12 },
        PythonVersion { minor: 13 },
    ];

    /// The default when a request names none and the server has it.
    pub const DEFAULT: PythonVersion = PythonVersion { minor: 12 };

    /// Parses the exact strings `"3.10"` .. `"3.13"` (no patch level, no spaces), as the original.
    pub fn parse_supported(s: &str) -> Result<Self, ValidationError> {
        Self::SUPPORTED.into_iter().find(|v| v.to_string() == s).ok_or_else(|| {
            ValidationError::bad_request(format!(
                "unsupported python_version {}; supported versions: {}",
                go_quote(s),
                Self::supported_list()
            ))
        })
    }

    /// `"3.10, 3.11, 3.12, 3.13"`.
    pub fn supported_list() -> String {
        Self::SUPPORTED.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    }

    /// The version an official `python` image tag names: `python:3.12-slim`, `docker.io/library/python:3.11`.
    pub fn of_image(image: &str) -> Option<Self> {
        let (repo, tag) = image.rsplit_once(':')?;
        let repo = repo.trim_start_matches("docker.io/").trim_start_matches("library/");
        if repo != "python" {
            return None;
        }
        let version = tag.split('-').next()?;
        let mut parts = version.split('.');
        if parts.next()? != "3" {
            return None;
        }
        let minor: u8 = parts.next()?.parse().ok()?;
        if parts.next().is_some_and(|patch| patch.parse::<u16>().is_err()) {
            return None;
        }
        Some(Self { minor })
    }
}

impl std::fmt::Display for PythonVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "3.{}", self.minor)
    }
}

impl TryFrom<String> for PythonVersion {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.strip_prefix("3.")
            .and_then(|m| m.parse().ok())
            .map(|minor| Self { minor })
            .ok_or_else(|| format!("invalid python version {s:?}"))
    }
}

impl From<PythonVersion> for String {
    fn from(v: PythonVersion) -> Self {
        v.to_string()
    }
}

/// Quotes like Go's `%q`, which the original's messages use.
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Resource limits of one execution, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock limit, seconds.
    pub timeout_seconds: u64,
    /// Memory limit, MiB (the sandbox's files in `/work` and `/tmp` count towards it).
    pub memory_mb: u64,
    /// Size of the writable workspace, MiB.
    pub disk_mb: u64,
    /// CPU weight; 1024 = one CPU.
    pub cpu_shares: u64,
}

impl Limits {
    /// The original's defaults: 300 s, 1024 MiB, 2048 MiB, 1024 shares.
    pub const ORIGINAL_DEFAULTS: Limits =
        Limits { timeout_seconds: 300, memory_mb: 1024, disk_mb: 2048, cpu_shares: 1024 };

    /// Smallest values accepted (below these CPython cannot start or the value is meaningless).
    pub const MINIMUM: Limits = Limits { timeout_seconds: 1, memory_mb: 16, disk_mb: 1, cpu_shares: 2 };
}

/// Server-side rules for turning requests into specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Used for absent or zero fields.
    pub defaults: Limits,
    /// Largest values a request may ask for.
    pub max: Limits,
    /// Cap on the size of `/eval` code (`code`, or with `files` the entrypoint file), bytes (the original: 102400).
    pub max_eval_code_bytes: usize,
    /// Cap on the summed size of `/eval` `files`, bytes: data sent with the code is limited apart from it.
    pub max_eval_files_bytes: usize,
    /// Whether `/eval` detects imports to install when the request does not say `requirements_txt: "-"`.
    pub auto_detect_imports: bool,
    /// Which detected distributions `/eval` may install (`PYEXEC_AUTO_INSTALL_ALLOW`).
    pub auto_install: crate::requirements::AutoInstall,
    /// Which `callback_url`s requests may name (docs/webhooks.md); the default refuses them all.
    pub callbacks: CallbackRules,
    /// Network for a request that does not say `network_disabled` (`PYEXEC_NETWORK_WHEN_UNSPECIFIED`): off by
    /// default; on restores the original's default, which its Go client and CLI rely on (they omit
    /// `network_disabled: false`, docs/compatibility.md C51).
    pub network_when_unspecified: bool,
}

/// Default of [`Policy::max_eval_files_bytes`]: 10 MiB.
pub const DEFAULT_EVAL_FILES_BYTES: usize = 10 << 20;

impl Default for Policy {
    fn default() -> Self {
        Self {
            defaults: Limits::ORIGINAL_DEFAULTS,
            max: Limits { timeout_seconds: 3600, memory_mb: 16384, disk_mb: 16384, cpu_shares: 16384 },
            max_eval_code_bytes: 102_400,
            max_eval_files_bytes: DEFAULT_EVAL_FILES_BYTES,
            auto_detect_imports: true,
            auto_install: crate::requirements::AutoInstall::Any,
            callbacks: CallbackRules::default(),
            network_when_unspecified: false,
        }
    }
}

impl Policy {
    /// Whether a run with this `config` has network: what it says, else the server's default.
    pub fn network(&self, config: &ExecutionConfig) -> bool {
        config.network_disabled.map_or(self.network_when_unspecified, |disabled| !disabled)
    }
}

/// What an execution installs before its program runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirements {
    /// The request named none: the project's own `requirements.txt`, when it has one.
    #[default]
    FromProject,
    /// `requirements_txt` text.
    Listed(String),
    /// `requirements_txt: "-"`: nothing, not even the project's file.
    Nothing,
}

impl Requirements {
    /// From a request's `requirements_txt`: absent or blank, `"-"`, or requirement lines.
    pub fn from_request(text: Option<String>) -> Self {
        match text {
            Some(t) if t.trim() == "-" => Requirements::Nothing,
            Some(t) if !t.trim().is_empty() => Requirements::Listed(t),
            _ => Requirements::FromProject,
        }
    }

    /// The listed text, when the request gave one.
    pub fn listed(&self) -> Option<&str> {
        match self {
            Requirements::Listed(t) => Some(t),
            _ => None,
        }
    }
}

/// A validated execution: what to run and under which limits, independent of where the files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionSpec {
    /// File to run, relative to `/work` and normalised; `None` runs the workspace itself (`python /work`).
    pub entrypoint: Option<String>,
    /// `sys.argv[1:]`.
    pub args: Vec<String>,
    /// Extra environment variables, in request order.
    pub env: Vec<(String, String)>,
    /// Standard input, then end-of-file; `None` reads as empty.
    pub stdin: Option<String>,
    /// Limits with defaults applied.
    pub limits: Limits,
    /// Egress to the public internet (never the host or private ranges). Off unless asked for.
    pub network: bool,
    /// Interpreter version asked for (by `python_version` or a `python:3.X` image); `None`: server default.
    pub python: Option<PythonVersion>,
    /// Image asked for, verbatim (backends decide which they accept).
    pub image: Option<String>,
    /// Report the trailing expression's value (eval REPL mode).
    pub eval_last_expr: bool,
    /// What to install before the program runs.
    pub requirements: Requirements,
    /// Detect third-party imports and install them (eval only).
    pub auto_detect_imports: bool,
    /// Which detected distributions may be installed (the server's `PYEXEC_AUTO_INSTALL_ALLOW`, kept with the spec
    /// so that a queued execution keeps the rule it was accepted under); never restricts `requirements`.
    #[serde(default)]
    pub auto_install: crate::requirements::AutoInstall,
    /// Shell commands run before the program.
    pub pre_commands: Vec<String>,
    /// The tenant the execution belongs to (docs/tenants.md): only it (and admins) see it. `None`: the server has
    /// no API keys, so there is one anonymous tenant.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Where the final result is sent when the execution ends (docs/webhooks.md), validated; `None`: nowhere.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The request's `Idempotency-Key`, kept with the execution so that a retry finds it (docs/api.md).
    #[serde(default)]
    pub idempotency: Option<IdempotencyRecord>,
}

/// What an execution keeps of the `Idempotency-Key` it was created with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The key's hash with its tenant (hex; the key itself is not kept): what a retry looks up.
    pub key_hash: String,
    /// The hash of what the request asked for: a retry that asks for something else is refused.
    pub fingerprint: String,
}

impl Policy {
    /// The size rules of `/eval` (docs/sessions.md, "Data in"): the code (the `code` field, or with `files` the
    /// entrypoint, by default the first file) is limited as the original limits it; the files together are
    /// limited apart, so data sent along does not count as code. `files` holds `(name, size)`; a lone `code` is
    /// passed as one file named `main.py`.
    pub fn check_eval_sizes(&self, files: &[(&str, u64)], entrypoint: Option<&str>) -> Result<(), ValidationError> {
        let entry = entrypoint.filter(|e| !e.is_empty()).map(|e| e.trim_start_matches("./"));
        let code = match entry {
            Some(e) => files.iter().find(|(name, _)| name.trim_start_matches("./") == e),
            None => files.first(),
        };
        let code_size = code.map_or(0, |(_, size)| *size);
        if code_size > self.max_eval_code_bytes as u64 {
            return Err(ValidationError::too_large(format!(
                "total code size {code_size} bytes exceeds limit of {} bytes",
                self.max_eval_code_bytes
            )));
        }
        let total: u64 = files.iter().map(|(_, size)| size).sum();
        if files.len() > 1 && total > self.max_eval_files_bytes as u64 {
            return Err(ValidationError::too_large(format!(
                "files total {total} bytes, over the limit of {} bytes for files sent with the code \
                 (PYEXEC_EVAL_FILES_MAX_BYTES); upload an archive to /api/v1/exec/* for more",
                self.max_eval_files_bytes
            )));
        }
        Ok(())
    }

    /// Validates the multipart `metadata` of `/exec/sync` and `/exec/async`.
    pub fn spec_from_metadata(&self, meta: Metadata) -> Result<ExecutionSpec, ValidationError> {
        let entrypoint = match meta.entrypoint.as_deref() {
            None | Some("") => None,
            Some(e) => Some(entrypoint_path(e)?),
        };
        let image = meta.docker_image.filter(|i| !i.is_empty());
        let mut python = match meta.python_version.as_deref() {
            None | Some("") => None,
            Some(v) => Some(PythonVersion::parse_supported(v)?),
        };
        if let Some(image) = &image {
            check_no_control_chars("docker_image", image)?;
            if let Some(from_image) = PythonVersion::of_image(image) {
                if python.is_some_and(|p| p != from_image) {
                    return Err(ValidationError::bad_request(format!(
                        "python_version {} contradicts docker_image {image:?}",
                        python.map(|p| p.to_string()).unwrap_or_default()
                    )));
                }
                python = Some(from_image);
            }
        }
        let env_vars = meta.env_vars.unwrap_or_default();
        let args = meta.script_args.unwrap_or_default();
        let pre_commands = meta.pre_commands.unwrap_or_default();
        check_exec_size(&[("env_vars", &env_vars), ("script_args", &args), ("pre_commands", &pre_commands)])?;
        let env = env_vars.iter().map(|e| parse_env_var(e)).collect::<Result<_, _>>()?;
        for arg in &args {
            check_no_nul("script_args", arg)?;
        }
        for cmd in &pre_commands {
            check_no_nul("pre_commands", cmd)?;
        }
        let stdin = meta.stdin.filter(|s| !s.is_empty());
        let config = meta.config.unwrap_or_default();
        let limits = self.limits(&config)?;
        let callback_url = self.callbacks.check_url(meta.callback_url.as_deref())?;
        Ok(ExecutionSpec {
            entrypoint,
            args,
            env,
            stdin,
            limits,
            network: self.network(&config),
            python,
            image,
            eval_last_expr: false,
            requirements: Requirements::from_request(meta.requirements_txt),
            auto_detect_imports: false,
            auto_install: crate::requirements::AutoInstall::Any,
            pre_commands,
            tenant: None,
            callback_url,
            idempotency: None,
        })
    }

    /// Validates an `/eval` body, in the original's order: code/files present, python_version, total size.
    /// Returns the spec and the files to place in the workspace.
    pub fn spec_from_eval(&self, req: EvalRequest) -> Result<(ExecutionSpec, Vec<CodeFile>), ValidationError> {
        let files = match (req.files.filter(|f| !f.is_empty()), req.code.filter(|c| !c.is_empty())) {
            (Some(files), _) => files,
            (None, Some(code)) => vec![CodeFile { name: "main.py".into(), content: code }],
            (None, None) => return Err(ValidationError::bad_request("either 'code' or 'files' must be provided")),
        };
        let python = match req.python_version.as_deref() {
            None | Some("") => None,
            Some(v) => Some(PythonVersion::parse_supported(v)?),
        };
        let sizes: Vec<(&str, u64)> = files.iter().map(|f| (f.name.as_str(), f.content.len() as u64)).collect();
        self.check_eval_sizes(&sizes, req.entrypoint.as_deref())?;
        let mut files = files;
        let mut seen = std::collections::HashSet::new();
        for file in &mut files {
            file.name = check_file_name(&file.name)?;
            if !seen.insert(file.name.clone()) {
                return Err(ValidationError::bad_request(format!("duplicate file name {:?}", file.name)));
            }
        }
        let entrypoint = match req.entrypoint.as_deref() {
            None | Some("") => files[0].name.clone(),
            Some(e) => entrypoint_path(e)?,
        };
        if !seen.contains(&entrypoint) {
            return Err(ValidationError::bad_request(format!(
                "entrypoint {entrypoint:?} is not one of the submitted files"
            )));
        }
        let requirements = Requirements::from_request(req.requirements_txt);
        let auto_detect_imports = self.auto_detect_imports && requirements != Requirements::Nothing;
        let config = req.config.unwrap_or_default();
        let limits = self.limits(&config)?;
        let callback_url = self.callbacks.check_url(req.callback_url.as_deref())?;
        let spec = ExecutionSpec {
            entrypoint: Some(entrypoint),
            args: Vec::new(),
            env: Vec::new(),
            stdin: req.stdin.filter(|s| !s.is_empty()),
            limits,
            network: self.network(&config),
            python,
            image: None,
            eval_last_expr: req.eval_last_expr.unwrap_or(false),
            requirements,
            // Only a spec that detects carries the list (it is stored with queued executions).
            auto_install: if auto_detect_imports { self.auto_install.clone() } else { Default::default() },
            auto_detect_imports,
            pre_commands: Vec::new(),
            tenant: None,
            callback_url,
            idempotency: None,
        };
        Ok((spec, files))
    }

    /// Applies defaults and bounds to a `config` object.
    pub fn limits(&self, config: &ExecutionConfig) -> Result<Limits, ValidationError> {
        let field = |name: &str, value: Option<i64>, default: u64, min: u64, max: u64| match value {
            None | Some(0) => Ok(default),
            Some(v) if v < 0 => {
                Err(ValidationError::bad_request(format!("config.{name} must not be negative, got {v}")))
            }
            Some(v) if (v as u64) < min => {
                Err(ValidationError::bad_request(format!("config.{name} must be at least {min}, got {v}")))
            }
            Some(v) if (v as u64) > max => {
                Err(ValidationError::bad_request(format!("config.{name} {v} exceeds this server's maximum of {max}")))
            }
            Some(v) => Ok(v as u64),
        };
        let (d, min, max) = (&self.defaults, &Limits::MINIMUM, &self.max);
        Ok(Limits {
            timeout_seconds: field(
                "timeout_seconds",
                config.timeout_seconds,
                d.timeout_seconds,
                min.timeout_seconds,
                max.timeout_seconds,
            )?,
            memory_mb: field("memory_mb", config.memory_mb, d.memory_mb, min.memory_mb, max.memory_mb)?,
            disk_mb: field("disk_mb", config.disk_mb, d.disk_mb, min.disk_mb, max.disk_mb)?,
            cpu_shares: field("cpu_shares", config.cpu_shares, d.cpu_shares, min.cpu_shares, max.cpu_shares)?,
        })
    }
}

fn entrypoint_path(path: &str) -> Result<String, ValidationError> {
    normalize_relative_path(path).map_err(|e| path_error("entrypoint", path, e))
}

/// A submitted file's name, normalized, or the 400 the original gives for it.
pub fn check_file_name(path: &str) -> Result<String, ValidationError> {
    normalize_relative_path(path).map_err(|e| path_error("file name", path, e))
}

fn path_error(what: &str, path: &str, e: RelativePathError) -> ValidationError {
    ValidationError::bad_request(format!("invalid {what} {path:?}: {e}"))
}

/// Splits `KEY=value`; the value may contain `=`.
pub fn parse_env_var(entry: &str) -> Result<(String, String), ValidationError> {
    check_no_nul("env_vars", entry)?;
    match entry.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(ValidationError::bad_request(format!("invalid env_vars entry {entry:?}: expected KEY=value"))),
    }
}

/// Longest single argument or environment entry `execve` takes (Linux `MAX_ARG_STRLEN`, 32 pages, less the NUL).
pub const MAX_EXEC_STRING_BYTES: usize = 128 * 1024 - 1;
/// Most bytes of `env_vars`, `script_args` and `pre_commands` together. `execve` takes a quarter of the stack
/// limit (2 MiB with the usual 8 MiB) for arguments, environment and pointers; this leaves room for the
/// interpreter's own arguments and the base environment.
pub const MAX_EXEC_TOTAL_BYTES: usize = 1024 * 1024;
/// Most entries of those lists together (each costs a pointer besides its text).
pub const MAX_EXEC_ENTRIES: usize = 10_000;

/// Refuses argument and environment lists that `execve` would reject ("Argument list too long"), naming the
/// limit, before anything is staged or run.
fn check_exec_size(lists: &[(&str, &[String])]) -> Result<(), ValidationError> {
    let (mut total, mut entries) = (0usize, 0usize);
    for (field, list) in lists {
        for value in list.iter() {
            if value.len() > MAX_EXEC_STRING_BYTES {
                return Err(ValidationError::bad_request(format!(
                    "an entry of {field} is {} bytes; each may have at most {MAX_EXEC_STRING_BYTES} bytes",
                    value.len()
                )));
            }
            total += value.len() + 1;
        }
        entries += list.len();
    }
    if entries > MAX_EXEC_ENTRIES {
        return Err(ValidationError::bad_request(format!(
            "env_vars, script_args and pre_commands have {entries} entries together; at most {MAX_EXEC_ENTRIES} \
             are allowed"
        )));
    }
    if total > MAX_EXEC_TOTAL_BYTES {
        return Err(ValidationError::bad_request(format!(
            "env_vars, script_args and pre_commands take {total} bytes together; at most {MAX_EXEC_TOTAL_BYTES} \
             bytes are allowed"
        )));
    }
    Ok(())
}

fn check_no_nul(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        return Err(ValidationError::bad_request(format!("{field} must not contain NUL characters")));
    }
    Ok(())
}

fn check_no_control_chars(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ValidationError::bad_request(format!("invalid {field} {value:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(json: &str) -> Result<(ExecutionSpec, Vec<CodeFile>), ValidationError> {
        Policy::default().spec_from_eval(serde_json::from_str(json).unwrap())
    }

    #[test]
    fn eval_needs_code_or_files() {
        for body in ["{}", r#"{"code":""}"#, r#"{"files":[]}"#, r#"{"code":null}"#] {
            let err = eval(body).unwrap_err();
            assert_eq!(err.kind, Rejection::BadRequest);
            assert_eq!(err.message, "either 'code' or 'files' must be provided");
        }
    }

    #[test]
    fn eval_rejects_unsupported_versions_with_the_original_message() {
        for v in ["2.7", "3.9", "3.12.1", " 3.12", "3.14"] {
            let err = eval(&format!(r#"{{"code":"1","python_version":"{v}"}}"#)).unwrap_err();
            assert_eq!(
                err.message,
                format!("unsupported python_version \"{v}\"; supported versions: 3.10, 3.11, 3.12, 3.13")
            );
        }
        let (spec, _) = eval(r#"{"code":"1","python_version":"3.11"}"#).unwrap();
        assert_eq!(spec.python, Some(PythonVersion { minor: 11 }));
    }

    #[test]
    fn eval_size_limit_is_413_and_checked_after_the_version() {
        let big = "x".repeat(102_401);
        let err = eval(&format!(r#"{{"code":"{big}"}}"#)).unwrap_err();
        assert_eq!(err.kind, Rejection::TooLarge);
        assert_eq!(err.message, "total code size 102401 bytes exceeds limit of 102400 bytes");
        let err = eval(&format!(r#"{{"code":"{big}","python_version":"2.7"}}"#)).unwrap_err();
        assert_eq!(err.kind, Rejection::BadRequest);
        let exact = "x".repeat(102_400);
        assert!(eval(&format!(r#"{{"code":"{exact}"}}"#)).is_ok());
    }

    #[test]
    fn data_files_are_limited_apart_from_the_code() {
        // A 220 KB CSV next to a small program: data, not code.
        let csv = "1,2\n".repeat(55_000);
        let body = format!(
            r#"{{"files":[{{"name":"main.py","content":"print(1)"}},{{"name":"data.csv","content":"{}"}}]}}"#,
            csv.replace('\n', "\\n")
        );
        let (spec, files) = eval(&body).unwrap();
        assert_eq!(spec.entrypoint.as_deref(), Some("main.py"));
        assert_eq!(files[1].content.len(), 220_000);
        // The entrypoint is the code, wherever it is in the list.
        let big = "x".repeat(102_401);
        let body = format!(
            r#"{{"entrypoint":"run.py","files":[{{"name":"data.csv","content":"1"}},{{"name":"run.py","content":"{big}"}}]}}"#
        );
        let err = eval(&body).unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (Rejection::TooLarge, "total code size 102401 bytes exceeds limit of 102400 bytes")
        );
        // The files together stay within their own limit.
        let policy = Policy { max_eval_files_bytes: 1000, ..Policy::default() };
        let err = policy.check_eval_sizes(&[("main.py", 10), ("data.csv", 991)], None).unwrap_err();
        assert_eq!(err.kind, Rejection::TooLarge);
        assert!(err.message.contains("PYEXEC_EVAL_FILES_MAX_BYTES"), "{}", err.message);
        assert!(policy.check_eval_sizes(&[("main.py", 10), ("data.csv", 990)], None).is_ok());
    }

    #[test]
    fn eval_defaults() {
        let (spec, files) = eval(r#"{"code":"print(1)"}"#).unwrap();
        assert_eq!(files, vec![CodeFile { name: "main.py".into(), content: "print(1)".into() }]);
        assert_eq!(spec.entrypoint.as_deref(), Some("main.py"));
        assert!(!spec.eval_last_expr);
        assert!(!spec.network, "network is off unless asked for");
        assert_eq!(spec.limits, Limits::ORIGINAL_DEFAULTS);
        assert!(spec.auto_detect_imports);
    }

    #[test]
    fn files_take_precedence_and_the_first_is_the_entrypoint() {
        let (spec, files) = eval(
            r#"{"code":"ignored","files":[{"name":"./app.py","content":"import helper"},{"name":"helper.py","content":""}]}"#,
        )
        .unwrap();
        assert_eq!(spec.entrypoint.as_deref(), Some("app.py"));
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].name, "app.py");
    }

    #[test]
    fn bad_file_names_and_entrypoints_are_rejected() {
        for name in ["../x.py", "/etc/passwd", "", "a/../../b"] {
            let err = eval(&format!(r#"{{"files":[{{"name":"{name}","content":"1"}}]}}"#)).unwrap_err();
            assert!(err.message.starts_with("invalid file name"), "{name}: {}", err.message);
        }
        let err = eval(r#"{"files":[{"name":"a.py","content":"1"},{"name":"a.py","content":"2"}]}"#).unwrap_err();
        assert_eq!(err.message, "duplicate file name \"a.py\"");
        let err = eval(r#"{"code":"1","entrypoint":"other.py"}"#).unwrap_err();
        assert!(err.message.contains("not one of the submitted files"));
    }

    #[test]
    fn requirements_dash_turns_detection_off() {
        let (spec, _) = eval(r#"{"code":"1","requirements_txt":"-"}"#).unwrap();
        assert!(!spec.auto_detect_imports);
        assert_eq!(spec.requirements, Requirements::Nothing);
        let (spec, _) = eval(r#"{"code":"1","requirements_txt":"numpy\n"}"#).unwrap();
        assert!(spec.auto_detect_imports);
        assert_eq!(spec.requirements.listed(), Some("numpy\n"));
        let (spec, _) = eval(r#"{"code":"1","requirements_txt":"  "}"#).unwrap();
        assert_eq!((spec.requirements, spec.auto_detect_imports), (Requirements::FromProject, true));
    }

    #[test]
    fn limits_apply_defaults_and_bounds() {
        let p = Policy::default();
        let l = p
            .limits(&ExecutionConfig {
                timeout_seconds: Some(0),
                memory_mb: Some(64),
                disk_mb: None,
                cpu_shares: Some(512),
                network_disabled: None,
            })
            .unwrap();
        assert_eq!(l, Limits { timeout_seconds: 300, memory_mb: 64, disk_mb: 2048, cpu_shares: 512 });
        let err = p.limits(&ExecutionConfig { timeout_seconds: Some(-1), ..Default::default() }).unwrap_err();
        assert_eq!(err.message, "config.timeout_seconds must not be negative, got -1");
        let err = p.limits(&ExecutionConfig { memory_mb: Some(4), ..Default::default() }).unwrap_err();
        assert_eq!(err.message, "config.memory_mb must be at least 16, got 4");
        let err = p.limits(&ExecutionConfig { timeout_seconds: Some(100_000), ..Default::default() }).unwrap_err();
        assert_eq!(err.message, "config.timeout_seconds 100000 exceeds this server's maximum of 3600");
    }

    #[test]
    fn metadata_is_validated() {
        let p = Policy::default();
        let meta: Metadata = serde_json::from_str(
            r#"{"entrypoint":"./main.py","env_vars":["A=1","B=x=y"],"script_args":["--v","a b"],
                "config":{"network_disabled":false},"docker_image":"python:3.11-slim"}"#,
        )
        .unwrap();
        let spec = p.spec_from_metadata(meta).unwrap();
        assert_eq!(spec.entrypoint.as_deref(), Some("main.py"));
        assert_eq!(spec.env, vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]);
        assert_eq!(spec.args, vec!["--v", "a b"]);
        assert!(spec.network);
        assert_eq!(spec.python, Some(PythonVersion { minor: 11 }));

        let spec = p.spec_from_metadata(Metadata::default()).unwrap();
        assert_eq!(spec.entrypoint, None);
        assert!(!spec.network);

        let bad_env = Metadata { env_vars: Some(vec!["NOVALUE".into()]), ..Default::default() };
        assert_eq!(
            p.spec_from_metadata(bad_env).unwrap_err().message,
            "invalid env_vars entry \"NOVALUE\": expected KEY=value"
        );
        let huge_arg =
            Metadata { script_args: Some(vec!["a".repeat(MAX_EXEC_STRING_BYTES + 1)]), ..Default::default() };
        let message = p.spec_from_metadata(huge_arg).unwrap_err().message;
        assert!(message.contains(&format!("at most {MAX_EXEC_STRING_BYTES} bytes")), "{message}");
        let fits = vec![format!("A={}", "x".repeat(100_000))];
        assert!(p.spec_from_metadata(Metadata { env_vars: Some(fits.clone()), ..Default::default() }).is_ok());
        let too_much = Metadata { env_vars: Some(vec![fits[0].clone(); 11]), ..Default::default() };
        let message = p.spec_from_metadata(too_much).unwrap_err().message;
        assert!(message.contains(&format!("at most {MAX_EXEC_TOTAL_BYTES} bytes")), "{message}");
        let many = Metadata { script_args: Some(vec![String::new(); MAX_EXEC_ENTRIES + 1]), ..Default::default() };
        assert!(p.spec_from_metadata(many).unwrap_err().message.contains("entries together"));
        let bad_entry = Metadata { entrypoint: Some("../x.py".into()), ..Default::default() };
        assert!(p.spec_from_metadata(bad_entry).unwrap_err().message.starts_with("invalid entrypoint"));
        let clash = Metadata {
            docker_image: Some("python:3.11".into()),
            python_version: Some("3.12".into()),
            ..Default::default()
        };
        assert!(p.spec_from_metadata(clash).unwrap_err().message.contains("contradicts"));
    }

    #[test]
    fn network_follows_the_request_else_the_servers_default() {
        let eval = |policy: &Policy, json: &str| policy.spec_from_eval(serde_json::from_str(json).unwrap()).unwrap().0;
        let strict = Policy::default();
        assert!(!eval(&strict, r#"{"code": "1"}"#).network, "off unless asked for");
        assert!(eval(&strict, r#"{"code": "1", "config": {"network_disabled": false}}"#).network);
        let original = Policy { network_when_unspecified: true, ..Policy::default() };
        assert!(eval(&original, r#"{"code": "1"}"#).network, "the original's default: on when unspecified");
        assert!(!eval(&original, r#"{"code": "1", "config": {"network_disabled": true}}"#).network);
        let meta: crate::Metadata = serde_json::from_str(r#"{"entrypoint": "main.py"}"#).unwrap();
        assert!(original.spec_from_metadata(meta).unwrap().network);
    }

    #[test]
    fn callback_urls_are_validated_into_the_spec() {
        let off = Policy::default();
        let err = eval(r#"{"code":"1","callback_url":"https://hooks.example.com/x"}"#).unwrap_err();
        assert_eq!(err.kind, Rejection::BadRequest);
        assert!(err.message.contains("no webhook secret"), "{}", err.message);
        let (spec, _) = eval(r#"{"code":"1","callback_url":""}"#).unwrap();
        assert_eq!(spec.callback_url, None);
        assert_eq!(off.spec_from_metadata(Metadata::default()).unwrap().callback_url, None);

        let on = Policy { callbacks: CallbackRules { enabled: true, ..Default::default() }, ..Policy::default() };
        let req =
            |url: &str| EvalRequest { code: Some("1".into()), callback_url: Some(url.into()), ..Default::default() };
        let (spec, _) = on.spec_from_eval(req("https://Hooks.example.com/done?k=1")).unwrap();
        assert_eq!(spec.callback_url.as_deref(), Some("https://hooks.example.com/done?k=1"));
        assert!(on.spec_from_eval(req("http://hooks.example.com/")).unwrap_err().message.contains("https"));
        assert!(on.spec_from_eval(req("https://127.0.0.1/")).unwrap_err().message.contains("private"));
        let meta = |url: &str| Metadata { callback_url: Some(url.into()), ..Default::default() };
        let spec = on.spec_from_metadata(meta("https://hooks.example.com/")).unwrap();
        assert_eq!(spec.callback_url.as_deref(), Some("https://hooks.example.com/"));
        let err = on.spec_from_metadata(meta("https://a:b@hooks.example.com/")).unwrap_err();
        assert_eq!(err.kind, Rejection::BadRequest);
        assert!(err.message.contains("credentials"), "{}", err.message);
    }

    #[test]
    fn image_tags_name_python_versions() {
        let v = |s| PythonVersion::of_image(s).map(|v| v.minor);
        assert_eq!(v("python:3.12-slim"), Some(12));
        assert_eq!(v("python:3.10"), Some(10));
        assert_eq!(v("docker.io/library/python:3.13.1-bookworm"), Some(13));
        assert_eq!(v("python:latest"), None);
        assert_eq!(v("ubuntu:24.04"), None);
        assert_eq!(v("evil/python:3.12"), None);
        assert_eq!(v("python"), None);
    }
}
