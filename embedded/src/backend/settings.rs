//! The embedded backend's settings as plain values (paths, numbers, strings), and how they become the sandbox's,
//! the interpreter discovery's, the installer's and the runner's own settings.
//!
//! The API server reads its configuration and fills [`EmbeddedSettings`]; everything that knows the sandbox's types
//! stays in this crate.

use std::path::PathBuf;
use std::time::Duration;

use pyexec_backend::tenancy::Quotas;
use pyexec_core::PythonVersion;
use pyexec_sandbox::SandboxConfig;

use super::store::StoreError;
use crate::{Discovery, InstallerConfig, Runner, RunnerError, RunnerSettings, SessionSettings, WarmSettings};

/// Settings of the embedded backend.
#[derive(Debug, Clone)]
pub struct EmbeddedSettings {
    /// Root of the store, workspaces, uploads, the sandbox's state (`sandbox/`) and the environment cache
    /// (`environments/`).
    pub data_dir: PathBuf,
    /// Executions running at once.
    pub max_concurrent: usize,
    /// Executions waiting at most, every tenant's together.
    pub max_queue: usize,
    /// The tenants' caps on running and queued executions and their shares of the slots (docs/tenants.md);
    /// `Quotas::default()`: no cap per tenant, every tenant served in turn with the same weight.
    pub quotas: Quotas,
    /// How long finished executions are kept.
    pub ttl: Duration,
    /// First host uid given to sandboxes when the server runs as root; must belong to no real user.
    pub sandbox_uid_base: u32,
    /// How many consecutive host uids sandboxes may use.
    pub sandbox_uid_count: u32,
    /// On hosts with v1 cgroup controllers, remount the v2 hierarchy with `favordynmods` (faster sandbox start).
    pub cgroup_favor_dynmods: bool,
    /// Explicit `version → executable` interpreters; they win over those found on `PATH` and in pyenv.
    pub pythons: Vec<(PythonVersion, PathBuf)>,
    /// The interpreter used when a request names none (when available; else 3.12, else the newest).
    pub default_python: Option<PythonVersion>,
    /// Most processes and threads of one run.
    pub pids_max: u64,
    /// Size of `/tmp` (and `/dev/shm`) of a run, MiB.
    pub tmp_mb: u64,
    /// Bytes of standard output and of standard error kept per run.
    pub max_output_bytes: usize,
    /// The uv binary that installs requirements; `None` looks for it.
    pub uv: Option<PathBuf>,
    /// The package index requirements are installed from.
    pub index_url: String,
    /// More hosts the installer may reach besides the index's (where the index serves files from).
    pub index_hosts: Vec<String>,
    /// Whether packages may be built from source distributions.
    pub allow_sdist: bool,
    /// Cap on cached environments plus the package cache, MiB.
    pub env_cache_mb: u64,
    /// How long one installation may take.
    pub install_timeout: Duration,
    /// Memory of one installation, MiB.
    pub install_memory_mb: u64,
    /// The warm pools.
    pub warm: WarmSettings,
    /// Sessions, and the files kept with executions (docs/sessions.md).
    pub sessions: SessionSettings,
}

/// The settings of the queue in front of the runner.
#[derive(Debug, Clone)]
pub(super) struct QueueConfig {
    pub data_dir: PathBuf,
    pub max_concurrent: usize,
    pub max_queue: usize,
    pub quotas: Quotas,
    pub ttl: Duration,
    pub sessions: SessionSettings,
}

/// Why the embedded backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The sandbox does not work here, no interpreter was found, or the environment cache cannot be used.
    #[error("starting the embedded sandbox")]
    Runner(#[source] RunnerError),
    /// The data directory cannot be prepared.
    #[error("opening the execution store")]
    DataDir(#[source] std::io::Error),
    /// The database cannot be opened or recovered.
    #[error("opening the execution store")]
    Store(#[source] StoreError),
}

impl EmbeddedSettings {
    /// Probes the sandbox, discovers the interpreters and opens the environment cache, logging what runs get.
    pub(super) async fn runner(&self) -> Result<Runner, StartError> {
        let sandbox = SandboxConfig {
            host_uid_base: self.sandbox_uid_base,
            host_uid_count: self.sandbox_uid_count,
            favor_dynmods: self.cgroup_favor_dynmods,
            ..SandboxConfig::new(self.data_dir.join("sandbox"))
        };
        let discovery = Discovery { explicit: self.pythons.clone(), search_path: true, pyenv_root: None };
        let settings = RunnerSettings {
            pids_max: self.pids_max,
            tmp_mb: self.tmp_mb,
            output_limit_bytes: self.max_output_bytes,
            default_python: self.default_python,
            files_max_bytes: self.sessions.files_max_bytes,
            files_max_count: self.sessions.files_max_count,
        };
        let installer = InstallerConfig {
            uv: self.uv.clone(),
            index_url: self.index_url.clone(),
            extra_hosts: self.index_hosts.clone(),
            allow_sdist: self.allow_sdist,
            max_bytes: self.env_cache_mb.saturating_mul(1 << 20),
            timeout: self.install_timeout,
            memory_bytes: self.install_memory_mb.saturating_mul(1 << 20),
            ..InstallerConfig::new(self.data_dir.join("environments"))
        };
        let runner = Runner::new(sandbox, &discovery, settings, installer)
            .await
            .map_err(StartError::Runner)?
            .with_warm_pool(self.warm.clone());
        let report = runner.isolation();
        tracing::info!(
            level = ?report.level,
            user = %report.user,
            cgroups = %report.cgroups,
            landlock_abi = ?report.landlock_abi,
            network = %report.network_egress,
            "sandbox ready"
        );
        for warning in &report.warnings {
            tracing::warn!("isolation: {warning}");
        }
        tracing::info!(
            versions = %runner.interpreters().list(),
            default = ?runner.interpreters().default_version().map(|v| v.to_string()),
            "python interpreters"
        );
        Ok(runner)
    }

    /// The queue's part of the settings.
    pub(super) fn queue(&self) -> QueueConfig {
        QueueConfig {
            data_dir: self.data_dir.clone(),
            max_concurrent: self.max_concurrent,
            max_queue: self.max_queue,
            quotas: self.quotas.clone(),
            ttl: self.ttl,
            sessions: self.sessions,
        }
    }
}
