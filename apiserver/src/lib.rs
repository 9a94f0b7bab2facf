//! The python-executor API server: HTTP only.
//!
//! Handlers (`routes`) are thin: they parse and validate requests with `pyexec_core`, then call a [`Backend`]
//! (the trait is `pyexec_backend`'s, re-exported in `backend`). `upload` streams multipart archives to disk,
//! `auth` checks API keys, `metrics` exposes Prometheus metrics, `config` reads `PYEXEC_*` settings, `webhooks`
//! sends completion webhooks.
//!
//! The backends: the embedded one is `pyexec_embedded::EmbeddedBackend` (queue, workers, store and sandbox, all in
//! that crate), started here from plain settings so that this crate knows nothing of the sandbox; the Kubernetes
//! one (`backend::kubernetes`) turns executions into `PythonExecution` resources for the operator.

pub mod auth;
pub mod backend;
pub mod config;
pub mod error;
pub mod idempotency;
pub mod mcp;
pub mod metrics;
pub mod origin;
pub mod routes;
pub mod serve;
pub mod state;
pub mod telemetry;
pub mod tenants;
pub mod upload;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pyexec_core::workspace::IngestLimits;
use pyexec_embedded::{EmbeddedBackend, EmbeddedSettings};

pub use backend::Backend;
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
    let tenants = Arc::new(config.tenants()?);
    let browser = origin::BrowserPolicy::new(&config, !tenants.is_open())?;
    let metrics = Metrics::new();
    let webhooks = match config.webhook_secret()? {
        Some(secret) => {
            let rules = policy.callbacks.clone();
            tracing::info!(
                allow_private = rules.allow_private,
                allow_http = rules.allow_http,
                "completion webhooks are on (callback_url)"
            );
            Some(webhooks::Webhooks::new(secret, rules, metrics.clone())?)
        }
        None => None,
    };

    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {} (PYEXEC_DATA_DIR)", config.data_dir.display()))?;
    let (backend, internal): (Arc<dyn Backend>, Option<axum::Router>) = match config.backend {
        BackendKind::Embedded => {
            (Arc::new(start_embedded(&config, default_python, tenants.quotas(), metrics.clone()).await?), None)
        }
        BackendKind::Kubernetes => {
            let backend = start_kubernetes(&config, default_python, tenants.quotas(), metrics.clone()).await?;
            let archives = backend.archive_router();
            (Arc::new(backend), Some(archives))
        }
    };

    let state = AppState::new(Shared {
        backend: backend.clone(),
        policy,
        ingest: IngestLimits { max_bytes: config.max_unpacked_mb << 20, max_entries: config.max_archive_entries },
        upload_limit_mb: config.max_upload_mb,
        tenants,
        metrics,
        browser,
        session_timeouts: pyexec_core::session::SessionTimeouts {
            idle_default: config.session_idle_seconds,
            idle_max: config.session_max_idle_seconds,
        },
        session_upload_max_bytes: config.session_upload_max_bytes,
        mcp_output: pyexec_mcp::OutputBudget {
            stdout_bytes: config.mcp_max_stdout_bytes,
            stderr_bytes: config.mcp_max_stderr_bytes,
        },
        retention: Duration::from_secs(config.cleanup_ttl),
        idempotency: Default::default(),
        webhooks,
    });
    if state.tenants.is_open() {
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
    quotas: pyexec_backend::tenancy::Quotas,
    metrics: Metrics,
) -> anyhow::Result<EmbeddedBackend> {
    let settings = EmbeddedSettings {
        data_dir: config.data_dir.clone(),
        max_concurrent: config.concurrency(),
        max_queue: config.max_queue,
        quotas,
        ttl: Duration::from_secs(config.cleanup_ttl),
        sandbox_uid_base: config.sandbox_uid_base,
        sandbox_uid_count: config.sandbox_uid_count,
        cgroup_favor_dynmods: config.cgroup_favor_dynmods,
        pythons: config.pythons.0.clone(),
        default_python: Some(default_python),
        pids_max: config.pids_max,
        tmp_mb: config.tmp_mb,
        max_output_bytes: config.max_output_bytes,
        uv: config.uv.clone(),
        index_url: config.index_url.clone(),
        index_hosts: config.index_hosts.clone(),
        allow_sdist: config.allow_sdist,
        env_cache_mb: config.env_cache_mb,
        install_timeout: Duration::from_secs(config.install_timeout),
        install_memory_mb: config.install_memory_mb,
        warm: pyexec_embedded::WarmSettings {
            enabled: config.warm_pool,
            min_idle: config.warm_min,
            max_idle: config.warm_max,
            max_total: config.warm_max_total,
            build_parallelism: config.warm_build_parallelism,
            preimport: config.warm_preimport.clone(),
            class_idle: Duration::from_secs(config.warm_idle_seconds),
            ..pyexec_embedded::WarmSettings::default()
        },
        sessions: pyexec_embedded::SessionSettings {
            max_sessions: config.max_sessions,
            max_lifetime: Duration::from_secs(config.session_max_lifetime_seconds),
            file_max_bytes: config.session_upload_max_bytes,
            files_max_bytes: config.files_max_bytes,
            files_max_count: config.files_max_count,
            output_limit_bytes: config.max_output_bytes,
        },
    };
    Ok(EmbeddedBackend::start(settings, Arc::new(metrics)).await?)
}

/// The sessions' settings of the Kubernetes backend.
fn kubernetes_sessions(config: &Config) -> crate::backend::kubernetes::SessionSettings {
    crate::backend::kubernetes::SessionSettings {
        max_sessions: config.max_sessions,
        max_lifetime: Duration::from_secs(config.session_max_lifetime_seconds),
        file_max_bytes: config.session_upload_max_bytes,
        caps: pyexec_backend::session::CallCaps {
            output_bytes: config.max_output_bytes,
            files_bytes: config.files_max_bytes,
            files_count: config.files_max_count,
        },
    }
}

/// The Kubernetes backend: PythonExecution resources for the operator.
async fn start_kubernetes(
    config: &Config,
    default_python: pyexec_core::PythonVersion,
    quotas: pyexec_backend::tenancy::Quotas,
    metrics: Metrics,
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
        logs_url: config.logs_url.clone(),
        max_output_bytes: config.max_output_bytes,
        kill_wait: Duration::from_secs(10),
        max_in_flight: usize::try_from(config.k8s_max_in_flight).unwrap_or(usize::MAX),
        max_queue: config.k8s_max_queue,
        quotas,
        sessions: kubernetes_sessions(config),
    };
    if k8s.archive_token.is_none() {
        tracing::warn!("PYEXEC_ARCHIVE_TOKEN_FILE is not set: uploaded projects cannot be fetched by the operator");
    }
    tracing::info!(
        %namespace,
        max_in_flight = k8s.max_in_flight,
        max_queue = k8s.max_queue,
        "Kubernetes backend: executions are PythonExecution resources"
    );
    KubernetesBackend::start(client, k8s, Arc::new(metrics))
        .await
        .map_err(|e| anyhow::anyhow!("starting the Kubernetes backend: {e}"))
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
