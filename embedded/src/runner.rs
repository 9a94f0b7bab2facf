//! Runs one execution on this machine: picks the interpreter, turns the [`ExecutionSpec`] into a sandbox run, and
//! the sandbox's outcome into the [`ExecutionResult`] (through `pyexec_core::finalize`, shared with Kubernetes).

use std::path::{Path, PathBuf};
use std::time::Duration;

use pyexec_core::eval::{EVAL_RUNNER_PATH, EVAL_RUNNER_SOURCE, RESULT_FD_ENV};
use pyexec_core::outcome::{Interruption, RunOutcome, Termination, failed};
use pyexec_core::paths::WORKSPACE_DIR;
use pyexec_core::{ExecutionResult, ExecutionSpec, PythonVersion, Timestamp, ValidationError, finalize};
use pyexec_sandbox::{
    Bind, ExitStatus, GeneratedFile, IsolationReport, OutputChunk, RunLimits, RunSpec, Sandbox, SandboxConfig,
    SandboxError,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::interpreters::{Discovery, Interpreter, Interpreters};

const MIB: u64 = 1 << 20;

/// Per-run settings that are the server's, not the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerSettings {
    /// Most processes and threads of one run.
    pub pids_max: u64,
    /// Size of `/tmp` (and `/dev/shm`), MiB.
    pub tmp_mb: u64,
    /// Bytes of standard output and of standard error kept per run; the rest is dropped and flagged.
    pub output_limit_bytes: usize,
    /// The interpreter used when a request names none (when available; else 3.12, else the newest).
    pub default_python: Option<PythonVersion>,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self { pids_max: 256, tmp_mb: 100, output_limit_bytes: MIB as usize, default_python: None }
    }
}

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The sandbox does not work on this host.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// No interpreter was found.
    #[error("no CPython 3.10-3.13 interpreter found (looked at the configured map, PATH and pyenv)")]
    NoInterpreter,
}

/// The embedded backend's executor.
#[derive(Debug, Clone)]
pub struct Runner {
    sandbox: Sandbox,
    interpreters: Interpreters,
    settings: RunnerSettings,
}

impl Runner {
    /// Probes the sandbox and discovers interpreters.
    pub async fn new(
        sandbox: SandboxConfig,
        discovery: &Discovery,
        settings: RunnerSettings,
    ) -> Result<Runner, RunnerError> {
        let sandbox = Sandbox::new(sandbox).await?;
        let mut interpreters = Interpreters::discover(discovery).await;
        interpreters.prefer(settings.default_python);
        if interpreters.versions().is_empty() {
            return Err(RunnerError::NoInterpreter);
        }
        Ok(Runner { sandbox, interpreters, settings })
    }

    /// The interpreters offered.
    pub fn interpreters(&self) -> &Interpreters {
        &self.interpreters
    }

    /// What isolation runs get on this host.
    pub fn isolation(&self) -> &IsolationReport {
        self.sandbox.report()
    }

    /// Checks what only this backend knows, so that a request it cannot honour is refused with a 400 before it is
    /// accepted: the interpreter version, the image, network availability, and features not offered here.
    pub fn check(&self, spec: &ExecutionSpec) -> Result<(), ValidationError> {
        if let Some(image) = &spec.image {
            if PythonVersion::of_image(image).is_none() {
                return Err(ValidationError::bad_request(format!(
                    "docker_image {image:?} cannot be used by the embedded backend, which runs local interpreters: \
                     name an official python:3.X image (available here: {}) or use python_version",
                    self.interpreters.list()
                )));
            }
        }
        self.interpreters.get(spec.python).map_err(ValidationError::bad_request)?;
        if spec.network {
            self.sandbox.network_available().map_err(|reason| {
                ValidationError::bad_request(format!(
                    "network access was requested (network_disabled: false) but this server cannot give it safely: \
                     {reason}"
                ))
            })?;
        }
        if spec.requirements.is_some() {
            return Err(ValidationError::bad_request(
                "requirements_txt is not supported by this server yet; send requirements_txt \"-\" or none",
            ));
        }
        if !spec.pre_commands.is_empty() {
            return Err(ValidationError::bad_request("pre_commands are not supported by this server yet"));
        }
        Ok(())
    }

    /// Runs `spec` over the files in `workspace` and returns its final result. Never fails: problems outside the
    /// program become a `failed` result with a clear `error`.
    pub async fn run(
        &self,
        execution_id: &str,
        spec: &ExecutionSpec,
        workspace: &Path,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> ExecutionResult {
        let interpreter = match self.interpreters.get(spec.python) {
            Ok(i) => i,
            Err(message) => return failed(execution_id, message, None, ""),
        };
        let run = self.run_spec(spec, interpreter, workspace);
        let started_at = Timestamp::now();
        let outcome = self.sandbox.run(run, events, cancel).await;
        let finished_at = Timestamp::now();
        match outcome {
            Ok(outcome) => {
                let termination = match outcome.status {
                    ExitStatus::Exited(code) => Termination::Exited(code),
                    ExitStatus::Signaled(signal) => Termination::Signaled(signal),
                };
                let interruption = if outcome.cancelled {
                    Some(Interruption::Killed)
                } else if outcome.timed_out {
                    Some(Interruption::TimedOut)
                } else {
                    None
                };
                let raw = RunOutcome {
                    termination,
                    interruption,
                    oom_killed: outcome.oom_killed,
                    stdout: outcome.stdout.bytes,
                    stderr: outcome.stderr.bytes,
                    stdout_truncated: outcome.stdout.truncated,
                    stderr_truncated: outcome.stderr.truncated,
                    result_channel: outcome.extra,
                    started_at,
                    finished_at,
                };
                finalize(execution_id, spec, raw)
            }
            Err(SandboxError::WorkspaceTooLarge) => failed(
                execution_id,
                format!("the uploaded files do not fit into /work (disk_mb {})", spec.limits.disk_mb),
                Some(started_at),
                "",
            ),
            Err(e) => {
                tracing::error!(execution_id, error = %e, "sandbox error");
                failed(execution_id, format!("sandbox error: {e}"), Some(started_at), "")
            }
        }
    }

    /// The sandbox run for an execution.
    fn run_spec(&self, spec: &ExecutionSpec, interpreter: &Interpreter, workspace: &Path) -> RunSpec {
        let mut run = RunSpec::new(&interpreter.executable);
        let target = match &spec.entrypoint {
            Some(entry) => format!("{WORKSPACE_DIR}/{entry}"),
            None => WORKSPACE_DIR.to_string(),
        };
        if spec.eval_last_expr {
            run.args.push(EVAL_RUNNER_PATH.into());
            run.files.push(GeneratedFile {
                path: PathBuf::from(EVAL_RUNNER_PATH),
                content: EVAL_RUNNER_SOURCE.as_bytes().to_vec(),
                mode: 0o644,
            });
            run.extra_output_fd = true;
        }
        run.args.push(target);
        run.args.extend(spec.args.iter().cloned());
        run.env = environment(spec, interpreter);
        run.stdin = spec.stdin.clone().unwrap_or_default().into_bytes();
        run.workspace = Some(workspace.to_owned());
        run.binds = interpreter.binds.iter().map(|dir| Bind::same(dir.clone())).collect();
        run.network = spec.network;
        run.limits = RunLimits {
            timeout: Duration::from_secs(spec.limits.timeout_seconds),
            memory_bytes: spec.limits.memory_mb * MIB,
            pids: self.settings.pids_max,
            cpu_shares: spec.limits.cpu_shares,
            workspace_bytes: spec.limits.disk_mb * MIB,
            tmp_bytes: self.settings.tmp_mb * MIB,
            stdout_bytes: self.settings.output_limit_bytes,
            stderr_bytes: self.settings.output_limit_bytes,
        };
        run
    }
}

/// The program's environment: a clean base (nothing of the server's leaks in), then the request's variables,
/// which may override the base.
fn environment(spec: &ExecutionSpec, interpreter: &Interpreter) -> Vec<(String, String)> {
    let bin = interpreter.executable.parent().map(|p| p.display().to_string()).unwrap_or_default();
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), format!("{bin}:/usr/local/bin:/usr/bin:/bin")),
        ("HOME".into(), "/tmp".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TMPDIR".into(), "/tmp".into()),
        // Output reaches the result (and live followers) even when the program is killed at its timeout.
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ];
    if spec.eval_last_expr {
        env.push((RESULT_FD_ENV.into(), "3".into()));
    }
    for (key, value) in &spec.env {
        env.retain(|(k, _)| k != key);
        env.push((key.clone(), value.clone()));
    }
    env
}
