//! Runs one execution on this machine: picks the interpreter, turns the [`ExecutionSpec`] into a sandbox run (in a
//! warm sandbox from the pools when one fits, else a sandbox built now), and the sandbox's outcome into the
//! [`ExecutionResult`] (through `pyexec_core::finalize`, shared with Kubernetes).

use std::path::Path;
use std::time::Duration;

use pyexec_core::eval::RESULT_FD_ENV;
use pyexec_core::files_out::{self, FilesOut};
use pyexec_core::outcome::{
    Interruption, RunOutcome, Termination, failed, install_failed, killed_before_start, pre_command_failed,
};
use pyexec_core::{
    ExecutionResult, ExecutionSpec, PythonVersion, SkippedPackage, Timestamp, ValidationError, finalize,
};
use pyexec_sandbox::{
    ExitStatus, Handover, Interactive, IsolationReport, Network, Outcome, OutputChunk, RunLimits, RunSpec, Sandbox,
    SandboxConfig, SandboxError,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::environments::{ENV_MOUNT, EnvInfo, EnvLease, Environments, InstallError, InstallerConfig};
use crate::interpreters::{Discovery, Interpreter, Interpreters, LIBRARY_PATH_VAR};
use crate::program::{Invocation, invocation, pre_command_failure};
use crate::warm::{self, ClassSpec, Warm, WarmPool, WarmSettings};

const MIB: u64 = 1 << 20;
/// What the eval runner's result (a repr of up to a million characters and display outputs of up to 8 MiB) may
/// take on its descriptor.
const RESULT_CHANNEL_BYTES: u64 = 16 * MIB;

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
    /// Bytes of files a run leaves in `/work` that are kept with its execution (0: none are kept).
    pub files_max_bytes: u64,
    /// Most files kept with one execution.
    pub files_max_count: usize,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            pids_max: 256,
            tmp_mb: 100,
            output_limit_bytes: MIB as usize,
            default_python: None,
            files_max_bytes: 64 * MIB,
            files_max_count: 1000,
        }
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
    /// The environment cache directory cannot be used.
    #[error("cannot prepare the environment cache {dir}: {source}")]
    EnvironmentCache {
        /// The directory.
        dir: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// The embedded backend's executor.
#[derive(Debug, Clone)]
pub struct Runner {
    sandbox: Sandbox,
    interpreters: Interpreters,
    environments: Environments,
    settings: RunnerSettings,
    warm: Option<WarmPool>,
}

/// A session's running sandbox, from [`Runner::start_session`].
#[derive(Debug)]
pub struct StartedSession {
    /// The sandbox, its session runner ready for requests.
    pub sandbox: Interactive,
    /// The environment it uses, held as long as the session lives.
    pub env: Option<EnvLease>,
    /// Packages of that environment.
    pub installed: Vec<String>,
    /// The interpreter's version (`3.12`).
    pub python_version: String,
}

/// A finished run and how it started.
#[derive(Debug)]
pub struct Ran {
    /// The execution's result.
    pub result: ExecutionResult,
    /// Whether a sandbox was started at all (not when the run ended before: a failed install, a kill while
    /// waiting for its environment).
    pub started: bool,
    /// Whether it ran in a warm sandbox from the pools.
    pub warm: bool,
    /// The files it wrote under `/work` (listed in the result), when it reported any.
    pub files: Option<FilesOut>,
}

impl Runner {
    /// Probes the sandbox, discovers interpreters and opens the environment cache.
    pub async fn new(
        sandbox: SandboxConfig,
        discovery: &Discovery,
        settings: RunnerSettings,
        installer: InstallerConfig,
    ) -> Result<Runner, RunnerError> {
        let sandbox = Sandbox::new(sandbox).await?;
        let mut interpreters = Interpreters::discover(discovery).await;
        interpreters.prefer(settings.default_python);
        if interpreters.versions().is_empty() {
            return Err(RunnerError::NoInterpreter);
        }
        let dir = installer.dir.clone();
        let environments = Environments::new(sandbox.clone(), installer)
            .map_err(|source| RunnerError::EnvironmentCache { dir, source })?;
        if let Err(reason) = environments.available() {
            tracing::warn!(%reason, "requests with requirements will be refused");
        }
        Ok(Runner { sandbox, interpreters, environments, settings, warm: None })
    }

    /// Starts the warm pools (when `settings.enabled`), with the default kind of request always kept warm: the
    /// default interpreter, no packages, no network and the default limits.
    pub fn with_warm_pool(mut self, settings: WarmSettings) -> Runner {
        if !settings.enabled {
            return self;
        }
        let pool = match WarmPool::start(self.sandbox.clone(), settings) {
            Ok(pool) => pool,
            Err(e) => {
                tracing::warn!(error = %e, "warm pools could not start; every run starts cold");
                return self;
            }
        };
        self.warm = Some(pool.clone());
        let request =
            pyexec_core::EvalRequest { code: Some("None".into()), eval_last_expr: Some(true), ..Default::default() };
        match (pyexec_core::Policy::default().spec_from_eval(request), self.interpreters.get(None)) {
            (Ok((spec, _)), Ok(interpreter)) => {
                let invocation = invocation(&spec, interpreter, &interpreter.sandbox_executable, self.collects_files());
                let cold = self.run_spec(&spec, interpreter, None, Path::new("/"), &invocation, Vec::new());
                let (key, class) = self.warm_class(&pool, &spec, interpreter, None, &cold);
                pool.pin(key, class());
            }
            (Err(e), _) => tracing::warn!(error = %e, "no default warm pool"),
            (_, Err(e)) => tracing::warn!(error = %e, "no default warm pool"),
        }
        self
    }

    /// Whether runs report the files they write (the server keeps some).
    fn collects_files(&self) -> bool {
        self.settings.files_max_bytes > 0 && self.settings.files_max_count > 0
    }

    /// Whether a run of `spec` over `workspace` reports the files it writes: the eval runner does, and hosts the
    /// program when its entrypoint is a file of the workspace.
    fn collect_files(&self, spec: &ExecutionSpec, workspace: &Path) -> bool {
        self.collects_files() && (spec.eval_last_expr || entrypoint_is_file(workspace, spec))
    }

    /// Waits until finished runs are torn down (see [`Sandbox::settle`]).
    pub async fn settle(&self) {
        self.sandbox.settle().await;
    }

    /// The warm pools, when on.
    pub fn warm_pool(&self) -> Option<&WarmPool> {
        self.warm.as_ref()
    }

    /// The class key of a request's cold run, and how to create the class.
    fn warm_class<'a>(
        &'a self,
        pool: &WarmPool,
        spec: &ExecutionSpec,
        interpreter: &'a Interpreter,
        env: Option<&'a EnvLease>,
        cold: &RunSpec,
    ) -> (String, impl FnOnce() -> ClassSpec + 'a) {
        let preimport = pool.settings().preimport.runner_value(env.is_some());
        let base_env = environment(&[], interpreter, env, None);
        let template = warm::template(cold, base_env, preimport, crate::program::runners(interpreter, false));
        let key = warm::key(&template, !self.sandbox.has_cgroups());
        let label = match env {
            // Which packages stays out of `/health`, which anyone may read: a count and the environment's key.
            Some(env) => format!(
                "python {} + {} packages (environment {})",
                interpreter.version,
                env.info.packages.len(),
                env.info.key.get(..12).unwrap_or(&env.info.key)
            ),
            None => format!("python {}", interpreter.version),
        };
        let network = if spec.network { ", network" } else { "" };
        let label = format!("{label}{network}, disk {} MB", spec.limits.disk_mb);
        (key, move || ClassSpec { label, template, environment: env.map(EnvLease::share) })
    }

    /// Waits until the pool serving `spec` over `workspace` has an idle sandbox (creating that pool if needed);
    /// false when pools are off, the request fits no pool, or none became ready within `timeout`. For tests and
    /// benchmarks.
    pub async fn prewarm(&self, spec: &ExecutionSpec, workspace: &Path, timeout: Duration) -> bool {
        let Some(pool) = &self.warm else { return false };
        let Ok(interpreter) = self.interpreters.get(spec.python) else { return false };
        let env = match self.environment(spec, workspace, interpreter, &CancellationToken::new()).await {
            Ok((env, _)) => env,
            Err(_) => return false,
        };
        let preimport = !pool.settings().preimport.runner_value(env.is_some()).is_empty();
        if warm::cold_reason(spec, preimport).is_some() || !entrypoint_is_file(workspace, spec) {
            return false;
        }
        let invocation =
            invocation(spec, interpreter, &python_of(interpreter, env.as_ref()), self.collect_files(spec, workspace));
        let cold = self.run_spec(spec, interpreter, env.as_ref(), workspace, &invocation, Vec::new());
        let (key, class) = self.warm_class(pool, spec, interpreter, env.as_ref(), &cold);
        pool.register(&key, class);
        pool.wait_idle(&key, cold.limits.memory_bytes, timeout).await
    }

    /// The interpreters offered.
    pub fn interpreters(&self) -> &Interpreters {
        &self.interpreters
    }

    /// The environment cache.
    pub fn environments(&self) -> &Environments {
        &self.environments
    }

    /// What isolation runs get on this host.
    pub fn isolation(&self) -> &IsolationReport {
        self.sandbox.report()
    }

    /// Checks what only this backend knows, so that a request it cannot honour is refused with a 400 before it is
    /// accepted: the interpreter version, the image, network availability, and whether packages can be installed.
    pub fn check(&self, spec: &ExecutionSpec) -> Result<(), ValidationError> {
        if let Some(image) = &spec.image
            && PythonVersion::of_image(image).is_none()
        {
            return Err(ValidationError::bad_request(format!(
                "docker_image {image:?} cannot be used by the embedded backend, which runs local interpreters: \
                     name an official python:3.X image (available here: {}) or use python_version",
                self.interpreters.list()
            )));
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
        if spec.requirements.listed().is_some_and(|r| !crate::environments::normalize(r).is_empty()) {
            self.environments.available().map_err(|reason| {
                ValidationError::bad_request(format!(
                    "requirements_txt was given but this server cannot install packages: {reason}"
                ))
            })?;
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
        self.run_with_stdin_file(execution_id, spec, None, workspace, events, cancel).await
    }

    /// [`Runner::run`], feeding the program the file `stdin_file` instead of the spec's `stdin`. The file is read
    /// only when the sandbox starts, so a large input is not held in memory while the execution waits for its
    /// environment.
    pub async fn run_with_stdin_file(
        &self,
        execution_id: &str,
        spec: &ExecutionSpec,
        stdin_file: Option<&Path>,
        workspace: &Path,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> ExecutionResult {
        self.run_reporting(execution_id, spec, stdin_file, workspace, events, cancel).await.result
    }

    /// [`Runner::run_with_stdin_file`], also saying whether the run started warm.
    pub async fn run_reporting(
        &self,
        execution_id: &str,
        spec: &ExecutionSpec,
        stdin_file: Option<&Path>,
        workspace: &Path,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Ran {
        let cold = |result| Ran { result, started: false, warm: false, files: None };
        let accepted_at = Timestamp::now();
        let interpreter = match self.interpreters.get(spec.python) {
            Ok(i) => i,
            Err(message) => return cold(failed(execution_id, message, None, "")),
        };
        // `skipped`: the detected packages left out before installing (allow-list); the environment adds those
        // the package index did not have.
        let prepared = self.environment(spec, workspace, interpreter, &cancel).await;
        // What the install took (`install_ms`): none when the environment was ready in the cache. An execution whose
        // program never ran has no run time (`duration_ms`), only this.
        let install_ms = Timestamp::now().millis_since(accepted_at);
        let (env, mut skipped) = match prepared {
            Ok(prepared) => prepared,
            Err(EnvFailure::Cancelled) => {
                let mut result = killed_before_start(execution_id, accepted_at);
                (result.duration_ms, result.install_ms) = (0, install_ms);
                return cold(result);
            }
            Err(EnvFailure::Install(InstallError::Failed { message, rest, .. }, skipped)) => {
                // `stderr` has what the installer said beyond the reason, which `error` holds.
                let mut result = failed(execution_id, message, Some(accepted_at), rest);
                (result.duration_ms, result.install_ms) = (0, install_ms);
                result.skipped_packages = skipped;
                return cold(result);
            }
            Err(EnvFailure::Install(e @ InstallError::Unavailable(_), skipped)) => {
                let mut result = install_failed(execution_id, e, Some(accepted_at), "");
                result.duration_ms = 0;
                result.skipped_packages = skipped;
                return cold(result);
            }
        };
        let install_ms = if env.as_ref().is_some_and(|lease| lease.waited) { install_ms } else { 0 };
        let invocation =
            invocation(spec, interpreter, &python_of(interpreter, env.as_ref()), self.collect_files(spec, workspace));
        let stdin = match stdin_file {
            None => spec.stdin.clone().unwrap_or_default().into_bytes(),
            Some(path) => match tokio::fs::read(path).await {
                Ok(bytes) => bytes,
                Err(e) => {
                    let message = format!("reading the execution's standard input failed: {e}");
                    return cold(failed(execution_id, message, Some(accepted_at), ""));
                }
            },
        };
        let run = self.run_spec(spec, interpreter, env.as_ref(), workspace, &invocation, stdin);
        let started_at = Timestamp::now();
        let (outcome, warm) =
            self.start(spec, interpreter, env.as_ref(), workspace, &invocation, run, events, cancel).await;
        let finished_at = Timestamp::now();
        let mut files = None;
        let mut result = match outcome {
            Ok(mut outcome) => {
                files = invocation
                    .files_out
                    .and_then(|i| outcome.extras.get_mut(i).map(std::mem::take))
                    .and_then(|tar| self.files_of(execution_id, &tar));
                result_of(execution_id, spec, &invocation, outcome, started_at, finished_at)
            }
            Err(SandboxError::WorkspaceTooLarge) => failed(
                execution_id,
                format!("the uploaded files do not fit into /work (disk_mb {})", spec.limits.disk_mb),
                Some(started_at),
                "",
            ),
            Err(e) => {
                tracing::error!(execution_id, error = %e, "sandbox error");
                let message = format!("sandbox error: {} (the server log has the details)", e.client_message());
                failed(execution_id, message, Some(started_at), "")
            }
        };
        if let Some(env) = env {
            result.installed_packages = env.info.packages.clone();
            skipped.extend(env.info.skipped.iter().cloned());
        }
        result.install_ms = install_ms;
        result.skipped_packages = skipped;
        if let Some(files) = &files {
            result.files = files.files.iter().map(|(f, _)| f.clone()).collect();
            result.files_truncated = files.truncated;
        }
        Ran { result, started: true, warm, files }
    }

    /// The files of a run, from the tar its runner wrote (empty when it wrote none: killed, or nothing changed).
    fn files_of(&self, execution_id: &str, tar: &[u8]) -> Option<FilesOut> {
        if tar.is_empty() {
            return None;
        }
        match files_out::read_tar(tar, self.settings.files_max_bytes, self.settings.files_max_count) {
            Ok(files) if files.files.is_empty() && !files.truncated => None,
            Ok(files) => Some(files),
            Err(e) => {
                tracing::warn!(execution_id, error = %e, "the files a run wrote could not be read");
                None
            }
        }
    }

    /// Builds a session's sandbox (docs/sessions.md): the interpreter and environment of `spec` (its listed
    /// requirements only: later calls' imports are not installed), its limits and network for the whole session,
    /// an empty `/work`, and the session runner waiting for requests. Fails with a message a client may see.
    pub async fn start_session(&self, spec: &ExecutionSpec) -> Result<StartedSession, String> {
        let interpreter = self.interpreters.get(spec.python)?;
        let env = match spec.requirements.listed() {
            None => None,
            Some(_) => {
                let requirements = pyexec_core::requirements::resolve(spec, Path::new("/nonexistent"), |m| {
                    interpreter.stdlib.contains(m)
                });
                match requirements {
                    None => None,
                    Some(r) => Some(self.environments.get(interpreter, &r).await.map_err(|e| match e {
                        InstallError::Failed { message, rest, .. } if !rest.is_empty() => format!("{message}\n{rest}"),
                        other => other.to_string(),
                    })?),
                }
            }
        };
        let python = python_of(interpreter, env.as_ref());
        let runners = crate::program::runners(interpreter, true);
        let invocation = Invocation {
            program: python.display().to_string(),
            args: vec![runners.session],
            files: runners.files,
            extra_outputs: 1,
            result: None,
            pre_log: None,
            files_out: None,
        };
        let mut run = self.run_spec(spec, interpreter, env.as_ref(), Path::new("/"), &invocation, Vec::new());
        run.workspace = None;
        run.env.push(("PYEXEC_CONTROL_FD".into(), "3".into()));
        let building = async {
            let mut prepared = self.sandbox.prepare(run).await?;
            prepared.wait_ready(0, b"ready\n", Duration::from_secs(60)).await?;
            prepared.into_interactive()
        };
        let sandbox = building.await.map_err(|e| {
            tracing::error!(error = %e, "a session's sandbox could not be built");
            format!("sandbox error: {} (the server log has the details)", e.client_message())
        })?;
        let installed = env.as_ref().map(|e| e.info.packages.clone()).unwrap_or_default();
        Ok(StartedSession { sandbox, env, installed, python_version: interpreter.version.to_string() })
    }

    /// Runs `run` in a warm sandbox when one fits, else in a sandbox built now. True when it ran warm.
    #[allow(clippy::too_many_arguments)]
    async fn start(
        &self,
        spec: &ExecutionSpec,
        interpreter: &Interpreter,
        env: Option<&EnvLease>,
        workspace: &Path,
        invocation: &Invocation,
        run: RunSpec,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> (Result<Outcome, SandboxError>, bool) {
        if let Some(warm) = self.claim_warm(spec, interpreter, env, workspace, invocation, &run).await {
            let (sandbox, preamble) = warm;
            let handover = Handover { preamble, stdin: run.stdin, limits: run.limits };
            let outcome = sandbox.prepared.run(handover, events, cancel).await;
            return (outcome.and_then(|o| warm_outcome(o, invocation)), true);
        }
        (self.sandbox.run(run, events, cancel).await, false)
    }

    /// A warm sandbox for `run` and the work to hand it, when pools are on, the request fits and one is idle.
    async fn claim_warm(
        &self,
        spec: &ExecutionSpec,
        interpreter: &Interpreter,
        env: Option<&EnvLease>,
        workspace: &Path,
        invocation: &Invocation,
        run: &RunSpec,
    ) -> Option<(Warm, Vec<u8>)> {
        let pool = self.warm.as_ref()?;
        let preimport = !pool.settings().preimport.runner_value(env.is_some()).is_empty();
        if let Some(reason) = warm::cold_reason(spec, preimport) {
            tracing::debug!(reason, "runs cold");
            return None;
        }
        // The work is encoded before a sandbox is claimed, so a workspace that cannot be handed over never
        // takes one from the pool.
        let evaluate = invocation.result.is_some();
        // The warm interpreter is the runner already: the program's own arguments only.
        let runner_args = invocation.args.iter().take_while(|a| crate::program::is_runner_arg(a)).count();
        let argv: Vec<String> = invocation.args.iter().skip(runner_args).cloned().collect();
        let mut vars = run.env.clone();
        if invocation.files_out.is_some() {
            // The warm sandbox's descriptor for the files, not the cold invocation's.
            for (key, value) in &mut vars {
                if key == files_out::FILES_FD_ENV {
                    *value = (3 + warm::FILES_INDEX).to_string();
                }
            }
        }
        let (dir, max) = (workspace.to_owned(), pool.settings().max_workspace_bytes);
        let spec_copy = spec.clone();
        let message = tokio::task::spawn_blocking(move || {
            if !entrypoint_is_file(&dir, &spec_copy) {
                return Err(warm::HandoverError::Entrypoint);
            }
            warm::message(&dir, &vars, &argv, evaluate, max)
        })
        .await;
        let message = match message {
            Ok(Ok(message)) => message,
            Ok(Err(e @ (warm::HandoverError::TooLarge | warm::HandoverError::Entrypoint))) => {
                tracing::debug!(reason = %e, "runs cold");
                return None;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "runs cold");
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "runs cold");
                return None;
            }
        };
        let (key, class) = self.warm_class(pool, spec, interpreter, env, run);
        let sandbox = pool.claim(&key, run.limits.memory_bytes, class)?;
        Some((sandbox, message))
    }

    /// The environment with the execution's requirements, when it has any, and the detected packages left out
    /// before installing (`PYEXEC_AUTO_INSTALL_ALLOW`, invalid names).
    async fn environment(
        &self,
        spec: &ExecutionSpec,
        workspace: &Path,
        interpreter: &Interpreter,
        cancel: &CancellationToken,
    ) -> Result<(Option<EnvLease>, Vec<SkippedPackage>), EnvFailure> {
        let plan = pyexec_core::requirements::plan(spec, workspace, |m| interpreter.stdlib.contains(m));
        if !plan.installs_anything() {
            return Ok((None, plan.skipped));
        }
        tokio::select! {
            lease = self.environments.get_with(interpreter, &plan.required, &plan.detected) => match lease {
                Ok(lease) => Ok((Some(lease), plan.skipped)),
                Err(e) => Err(EnvFailure::Install(e, plan.skipped)),
            },
            () = cancel.cancelled() => Err(EnvFailure::Cancelled),
        }
    }

    /// The sandbox run for an execution.
    fn run_spec(
        &self,
        spec: &ExecutionSpec,
        interpreter: &Interpreter,
        env: Option<&EnvLease>,
        workspace: &Path,
        invocation: &Invocation,
        stdin: Vec<u8>,
    ) -> RunSpec {
        let mut run = RunSpec::new(&invocation.program);
        run.args = invocation.args.clone();
        run.files = invocation.files.clone();
        run.extra_outputs = invocation.extra_outputs;
        run.env = environment(&spec.env, interpreter, env, invocation.result);
        if let Some(index) = invocation.files_out {
            run.env.retain(|(k, _)| !k.starts_with("PYEXEC_FILES_"));
            run.env.push((files_out::FILES_FD_ENV.into(), (3 + index).to_string()));
            run.env.push((files_out::FILES_MAX_BYTES_ENV.into(), self.settings.files_max_bytes.to_string()));
            run.env.push((files_out::FILES_MAX_COUNT_ENV.into(), self.settings.files_max_count.to_string()));
        }
        run.stdin = stdin;
        run.workspace = Some(workspace.to_owned());
        run.binds = interpreter.mounts.clone();
        if let Some(env) = env {
            run.binds.push(env.info.bind());
        }
        run.network = if spec.network { Network::Internet } else { Network::None };
        run.limits = RunLimits {
            timeout: Duration::from_secs(spec.limits.timeout_seconds),
            memory_bytes: spec.limits.memory_mb * MIB,
            pids: self.settings.pids_max,
            cpu_shares: spec.limits.cpu_shares,
            workspace_bytes: spec.limits.disk_mb * MIB,
            tmp_bytes: self.settings.tmp_mb * MIB,
            stdout_bytes: self.settings.output_limit_bytes,
            stderr_bytes: self.settings.output_limit_bytes,
            // The eval result carries display outputs (up to 8 MiB of them); the files tar its own caps.
            extra_bytes: usize::try_from(
                files_out::max_archive_bytes(self.settings.files_max_bytes, self.settings.files_max_count)
                    .max(RESULT_CHANNEL_BYTES),
            )
            .unwrap_or(usize::MAX),
            background: false,
        };
        run
    }
}

/// Whether the entrypoint is a regular file of the workspace. A missing (or odd) one gets the interpreter's own
/// message and exit code, which only a cold start gives exactly.
fn entrypoint_is_file(workspace: &Path, spec: &ExecutionSpec) -> bool {
    spec.entrypoint.as_ref().is_some_and(|e| std::fs::symlink_metadata(workspace.join(e)).is_ok_and(|m| m.is_file()))
}

/// The interpreter a run executes: the environment's when it has one.
fn python_of(interpreter: &Interpreter, env: Option<&EnvLease>) -> std::path::PathBuf {
    if env.is_some() { EnvInfo::python() } else { interpreter.sandbox_executable.clone() }
}

/// A warm run's outcome, with what its interpreter reported on the control descriptor before the program: a
/// full `/work` while writing the files reads as the cold path's.
fn warm_outcome(mut outcome: Outcome, invocation: &Invocation) -> Result<Outcome, SandboxError> {
    let mut take = |i: usize| outcome.extras.get_mut(i).map(std::mem::take).unwrap_or_default();
    let (result, control, files) = (take(0), take(warm::CONTROL_INDEX), take(warm::FILES_INDEX));
    if control.starts_with(warm::NO_SPACE) {
        return Err(SandboxError::WorkspaceTooLarge);
    }
    if !control.is_empty() {
        let text = String::from_utf8_lossy(&control).trim().to_owned();
        return Err(SandboxError::Setup(format!("handing the work to a warm sandbox: {text}")));
    }
    // The outputs as the cold run's invocation numbers them.
    let mut extras = vec![Vec::new(); invocation.extra_outputs];
    for (index, bytes) in [(invocation.result, result), (invocation.files_out, files)] {
        if let Some(slot) = index.and_then(|i| extras.get_mut(i)) {
            *slot = bytes;
        }
    }
    outcome.extras = extras;
    Ok(outcome)
}

/// Why an execution got no environment.
enum EnvFailure {
    /// The install failed; the detected packages left out before it.
    Install(InstallError, Vec<SkippedPackage>),
    Cancelled,
}

/// The result of a finished sandbox run: the program's, or the failed pre-command's.
fn result_of(
    execution_id: &str,
    spec: &ExecutionSpec,
    invocation: &Invocation,
    mut outcome: Outcome,
    started_at: Timestamp,
    finished_at: Timestamp,
) -> ExecutionResult {
    let mut take = |index: Option<usize>| index.and_then(|i| outcome.extras.get_mut(i).map(std::mem::take));
    let result_channel = take(invocation.result);
    let pre_log = take(invocation.pre_log).map(|b| String::from_utf8_lossy(&b).into_owned());
    let interrupted = outcome.cancelled || outcome.timed_out;
    if let (Some(log), false, ExitStatus::Exited(crate::program::PRE_FAILED_EXIT)) =
        (&pre_log, interrupted, outcome.status)
        && let Some((index, code, log)) = pre_command_failure(log)
    {
        return pre_command_failed(execution_id, spec, index.saturating_sub(1), code, log, started_at, finished_at);
    }
    let termination = match outcome.status {
        ExitStatus::Exited(code) => Termination::Exited(code),
        ExitStatus::Signaled(signal) => Termination::Signaled(signal),
    };
    let interruption = Interruption::of(outcome.cancelled, outcome.timed_out);
    let raw = RunOutcome {
        termination,
        interruption,
        oom_killed: outcome.oom_killed,
        stdout: outcome.stdout.bytes,
        stderr: outcome.stderr.bytes,
        stdout_truncated: outcome.stdout.truncated,
        stderr_truncated: outcome.stderr.truncated,
        result_channel,
        started_at,
        finished_at,
    };
    let mut result = finalize(execution_id, spec, raw);
    // Commands that printed nothing leave the key out, as every empty value (docs/api.md, "The result").
    result.pre_commands_output = pre_log.filter(|log| !log.is_empty());
    result
}

/// The program's environment: a clean base (nothing of the server's leaks in), then the request's variables,
/// which may override the base.
fn environment(
    request: &[(String, String)],
    interpreter: &Interpreter,
    env: Option<&EnvLease>,
    result: Option<usize>,
) -> Vec<(String, String)> {
    let bin = interpreter.sandbox_executable.parent().map(|p| p.display().to_string()).unwrap_or_default();
    let path = match env {
        Some(_) => format!("{ENV_MOUNT}/bin:{bin}:/usr/local/bin:/usr/bin:/bin"),
        None => format!("{bin}:/usr/local/bin:/usr/bin:/bin"),
    };
    let mut vars: Vec<(String, String)> = vec![
        ("PATH".into(), path),
        ("HOME".into(), "/tmp".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("TMPDIR".into(), "/tmp".into()),
        // Output reaches the result (and live followers) even when the program is killed at its timeout.
        ("PYTHONUNBUFFERED".into(), "1".into()),
        // No `__pycache__` in `/work`: it would be reported as files the run wrote.
        ("PYTHONDONTWRITEBYTECODE".into(), "1".into()),
    ];
    if env.is_some() {
        vars.push(("VIRTUAL_ENV".into(), ENV_MOUNT.into()));
    }
    if let Some(index) = result {
        vars.push((RESULT_FD_ENV.into(), (3 + index).to_string()));
    }
    vars.extend(interpreter.sandbox_env.iter().cloned());
    for (key, value) in request {
        // The request's variables win, except that the interpreter's own library path stays first: without it
        // the interpreter cannot start at all.
        let value = match vars.iter().find(|(k, _)| k == key && k == LIBRARY_PATH_VAR) {
            Some((_, needed)) if !value.is_empty() => format!("{needed}:{value}"),
            Some((_, needed)) => needed.clone(),
            None => value.clone(),
        };
        vars.retain(|(k, _)| k != key);
        vars.push((key.clone(), value));
    }
    vars
}
