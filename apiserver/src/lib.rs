//! The python-executor API server.
//!
//! Handlers (`routes`) are thin: they parse and validate requests with `pyexec_core`, then call a [`Backend`]
//! (`backend`): the embedded sandbox today, Kubernetes alike. `upload` streams multipart archives to disk,
//! `auth` checks API keys, `metrics` exposes Prometheus metrics, `config` reads `PYEXEC_*` settings.

pub mod auth;
pub mod backend;
pub mod config;
pub mod error;
pub mod mcp;
pub mod metrics;
pub mod origin;
pub mod routes;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod upload;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pyexec_core::workspace::IngestLimits;
use pyexec_embedded::{Discovery, InstallerConfig, Runner, RunnerSettings};
use pyexec_sandbox::SandboxConfig;

pub use backend::Backend;
use backend::embedded::{EmbeddedBackend, EmbeddedConfig};
use backend::kubernetes::{KubernetesBackend, KubernetesConfig};
use config::{BackendKind, Config};
use metrics::Metrics;
use state::{AppState, Shared};

/// Starts the server and serves until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    for warning in Config::retired_settings().into_iter().chain(Config::secrets_on_command_line()) {
        tracing::warn!("{warning}");
    }
    let policy = config.policy()?;
    let default_python = config.default_python()?;
    let api_keys = config.keys()?;
    let browser = origin::BrowserPolicy::new(&config, !api_keys.is_empty())?;
    let metrics = Metrics::new();

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {} (PYEXEC_DATA_DIR)", config.data_dir.display()))?;
    let (backend, internal): (Arc<dyn Backend>, Option<axum::Router>) = match config.backend {
        BackendKind::Embedded => (Arc::new(start_embedded(&config, default_python, metrics.clone()).await?), None),
        BackendKind::Kubernetes => {
            let backend = start_kubernetes(&config, default_python).await?;
            let archives = backend.archive_router();
            (Arc::new(backend), Some(archives))
        }
    };

    let state = AppState::new(Shared {
        backend: backend.clone(),
        policy,
        ingest: IngestLimits { max_bytes: config.max_unpacked_mb << 20, max_entries: config.max_archive_entries },
        upload_limit_mb: config.max_upload_mb,
        api_keys,
        metrics,
        browser,
    });
    if state.api_keys.is_empty() {
        tracing::warn!(
            "no API keys configured: anyone who can reach this port can run code (set PYEXEC_API_KEYS_FILE); \
             against DNS rebinding, only requests for localhost, IP addresses and the names in \
             PYEXEC_ALLOWED_HOSTS are answered"
        );
    }
    let mut app = routes::router(state);
    if let Some(internal) = internal {
        app = app.merge(internal);
    }
    let addr = config.addr();
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (PYEXEC_HOST/PYEXEC_PORT or PYEXEC_LISTEN)"))?;
    tracing::info!(address = %listener.local_addr()?, concurrency = config.concurrency(), queue = config.max_queue, "python-executor listening");

    let grace = config.grace();
    let shutdown = {
        let backend = backend.clone();
        async move {
            stop_signal().await;
            tracing::info!("shutting down: no new work; running executions get {grace:?}");
            // Stopping the backend ends the runs that synchronous requests wait for, so the server can drain.
            tokio::spawn(async move { backend.shutdown(grace).await });
        }
    };
    serve::serve(listener, app, config.connection_limits(), shutdown).await;
    backend.shutdown(grace).await;
    tracing::info!("stopped");
    Ok(())
}

/// The embedded backend: the sandbox, the interpreters, the environment cache, the store.
async fn start_embedded(
    config: &Config,
    default_python: pyexec_core::PythonVersion,
    metrics: Metrics,
) -> anyhow::Result<EmbeddedBackend> {
    let sandbox = SandboxConfig {
        host_uid_base: config.sandbox_uid_base,
        host_uid_count: config.sandbox_uid_count,
        favor_dynmods: config.cgroup_favor_dynmods,
        ..SandboxConfig::new(config.data_dir.join("sandbox"))
    };
    let discovery = Discovery { explicit: config.pythons.0.clone(), search_path: true, pyenv_root: None };
    let settings = RunnerSettings {
        pids_max: config.pids_max,
        tmp_mb: config.tmp_mb,
        output_limit_bytes: config.max_output_bytes,
        default_python: Some(default_python),
    };
    let installer = InstallerConfig {
        uv: config.uv.clone(),
        index_url: config.index_url.clone(),
        extra_hosts: config.index_hosts.clone(),
        allow_sdist: config.allow_sdist,
        max_bytes: config.env_cache_mb.saturating_mul(1 << 20),
        timeout: Duration::from_secs(config.install_timeout),
        memory_bytes: config.install_memory_mb.saturating_mul(1 << 20),
        ..InstallerConfig::new(config.data_dir.join("environments"))
    };
    let runner =
        Runner::new(sandbox, &discovery, settings, installer).await.context("starting the embedded sandbox")?;
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
    EmbeddedBackend::start(
        runner,
        EmbeddedConfig {
            data_dir: config.data_dir.clone(),
            max_concurrent: config.concurrency(),
            max_queue: config.max_queue,
            ttl: Duration::from_secs(config.cleanup_ttl),
        },
        metrics,
    )
    .await
    .context("opening the execution store")
}

/// The Kubernetes backend: PythonExecution resources for the operator.
async fn start_kubernetes(
    config: &Config,
    default_python: pyexec_core::PythonVersion,
) -> anyhow::Result<KubernetesBackend> {
    let read_token = |path: &Option<std::path::PathBuf>| -> anyhow::Result<Option<String>> {
        path.as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.trim().to_owned())
                    .with_context(|| format!("reading {}", p.display()))
            })
            .transpose()
    };
    let python_versions = config
        .k8s_python_versions
        .iter()
        .map(|v| {
            pyexec_core::PythonVersion::parse_supported(v)
                .map_err(|e| anyhow::anyhow!("PYEXEC_K8S_PYTHON_VERSIONS: {}", e.message))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let namespace = config.k8s_namespace.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "default".into())
    });
    let client =
        kube::Client::try_default().await.context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let k8s = KubernetesConfig {
        namespace: namespace.clone(),
        python_versions,
        default_python,
        ttl_seconds: u32::try_from(config.cleanup_ttl).unwrap_or(u32::MAX),
        runtime_class: config.k8s_runtime_class.clone(),
        data_dir: config.data_dir.clone(),
        archive_token: read_token(&config.archive_token_file)?,
        logs_token: read_token(&config.logs_token_file)?,
        max_output_bytes: config.max_output_bytes,
        kill_wait: Duration::from_secs(10),
    };
    if k8s.archive_token.is_none() {
        tracing::warn!("PYEXEC_ARCHIVE_TOKEN_FILE is not set: uploaded projects cannot be fetched by the operator");
    }
    tracing::info!(%namespace, "Kubernetes backend: executions are PythonExecution resources");
    KubernetesBackend::start(client, k8s).await.map_err(|e| anyhow::anyhow!("starting the Kubernetes backend: {e}"))
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending::<()>().await,
    }
}
