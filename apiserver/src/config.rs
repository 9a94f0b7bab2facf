//! Server configuration: every setting is a flag and an environment variable (the original's `PYEXEC_*` names,
//! plus ours with the same prefix). A bad value stops start-up with a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};
use pyexec_core::callback::{CallbackRules, Cidr};
use pyexec_core::{Limits, Policy, PythonVersion};

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (default).
    Info,
    /// Problems only.
    Warn,
    /// Failures only.
    Error,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Where executions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// This machine, in sandboxes (namespaces, cgroups, seccomp, Landlock).
    Embedded,
    /// PythonExecution resources in the cluster, run by the operator.
    Kubernetes,
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("expected true/false (or 1/0, yes/no), got {s:?}")),
    }
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
}

fn parse_preimport(s: &str) -> Result<pyexec_embedded::Preimport, String> {
    pyexec_embedded::Preimport::parse(s)
}

/// `PYEXEC_PYTHONS`: explicit interpreters by version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PythonMap(pub Vec<(PythonVersion, PathBuf)>);

fn parse_pythons(s: &str) -> Result<PythonMap, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            let (version, path) =
                entry.split_once('=').ok_or_else(|| format!("expected VERSION=PATH entries, got {entry:?}"))?;
            let version = PythonVersion::parse_supported(version.trim()).map_err(|e| e.message)?;
            let path = PathBuf::from(path.trim());
            if !path.is_absolute() {
                return Err(format!("{} is not an absolute path", path.display()));
            }
            Ok((version, path))
        })
        .collect::<Result<_, _>>()
        .map(PythonMap)
}

fn default_data_dir() -> PathBuf {
    if running_as_root() {
        return PathBuf::from("/var/lib/python-executor");
    }
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("python-executor")
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The python-executor API server.
#[derive(Debug, Clone, Parser)]
#[command(name = "pyexec-apiserver", version, about = "python-executor REST API server", max_term_width = 110)]
pub struct Config {
    /// Address to listen on, `host:port`; when set, wins over --host and --port.
    #[arg(long, env = "PYEXEC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Interface to listen on.
    #[arg(long, env = "PYEXEC_HOST", default_value = "0.0.0.0")]
    pub host: std::net::IpAddr,
    /// Port to listen on.
    #[arg(long, env = "PYEXEC_PORT", default_value_t = 8080)]
    pub port: u16,
    /// Log level.
    #[arg(long, env = "PYEXEC_LOG_LEVEL", value_enum, ignore_case = true, default_value = "info")]
    pub log_level: LogLevel,
    /// Log format.
    #[arg(long, env = "PYEXEC_LOG_FORMAT", value_enum, ignore_case = true, default_value = "text")]
    pub log_format: LogFormat,
    /// Where executions run.
    #[arg(long, env = "PYEXEC_BACKEND", value_enum, ignore_case = true, default_value = "embedded")]
    pub backend: BackendKind,
    /// Directory of the execution store, workspaces and uploads (kept private to the server).
    #[arg(long, env = "PYEXEC_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,

    /// Default wall-clock limit of an execution, seconds.
    #[arg(long, env = "PYEXEC_DEFAULT_TIMEOUT", default_value_t = 300)]
    pub default_timeout: u64,
    /// Default memory limit, MiB.
    #[arg(long, env = "PYEXEC_DEFAULT_MEMORY_MB", default_value_t = 1024)]
    pub default_memory_mb: u64,
    /// Default size of the writable workspace, MiB.
    #[arg(long, env = "PYEXEC_DEFAULT_DISK_MB", default_value_t = 2048)]
    pub default_disk_mb: u64,
    /// Default CPU weight (1024 = one CPU).
    #[arg(long, env = "PYEXEC_DEFAULT_CPU_SHARES", default_value_t = 1024)]
    pub default_cpu_shares: u64,
    /// Default interpreter, as an official image name (`python:3.12-slim` → 3.12).
    #[arg(long, env = "PYEXEC_DEFAULT_IMAGE", default_value = "python:3.12-slim")]
    pub default_image: String,
    /// Largest timeout a request may ask for, seconds.
    #[arg(long, env = "PYEXEC_MAX_TIMEOUT", default_value_t = 3600)]
    pub max_timeout: u64,
    /// Largest memory limit a request may ask for, MiB.
    #[arg(long, env = "PYEXEC_MAX_MEMORY_MB", default_value_t = 16384)]
    pub max_memory_mb: u64,
    /// Largest workspace a request may ask for, MiB.
    #[arg(long, env = "PYEXEC_MAX_DISK_MB", default_value_t = 16384)]
    pub max_disk_mb: u64,
    /// Largest CPU weight a request may ask for.
    #[arg(long, env = "PYEXEC_MAX_CPU_SHARES", default_value_t = 16384)]
    pub max_cpu_shares: u64,

    /// Executions running at once (0: the number of CPUs).
    #[arg(long, env = "PYEXEC_MAX_CONCURRENT", default_value_t = 0)]
    pub max_concurrent: usize,
    /// Executions that may wait for a slot; beyond that requests get 429.
    #[arg(long, env = "PYEXEC_MAX_QUEUE", default_value_t = 100)]
    pub max_queue: usize,
    /// Largest request body (upload), MiB; beyond it requests get 413.
    #[arg(long, env = "PYEXEC_MAX_UPLOAD_MB", default_value_t = 100)]
    pub max_upload_mb: u64,
    /// Largest unpacked size of an uploaded archive, MiB.
    #[arg(long, env = "PYEXEC_MAX_UNPACKED_MB", default_value_t = 1024)]
    pub max_unpacked_mb: u64,
    /// Most entries in an uploaded archive.
    #[arg(long, env = "PYEXEC_MAX_ARCHIVE_ENTRIES", default_value_t = 100_000)]
    pub max_archive_entries: u64,
    /// Bytes of stdout and of stderr kept per execution; the rest is dropped and flagged.
    #[arg(long, env = "PYEXEC_MAX_OUTPUT_BYTES", default_value_t = 1 << 20)]
    pub max_output_bytes: usize,
    /// Seconds a finished execution stays queryable, counted from its end (a day by default; the original kept
    /// them 5 minutes, which lost results that clients fetched late).
    #[arg(long, env = "PYEXEC_CLEANUP_TTL", default_value_t = 86_400)]
    pub cleanup_ttl: u64,
    /// Largest total of `files` sent with /eval code or a session call, bytes (the code alone keeps the original's
    /// 102400-byte limit).
    #[arg(long, env = "PYEXEC_EVAL_FILES_MAX_BYTES", default_value_t = pyexec_core::spec::DEFAULT_EVAL_FILES_BYTES)]
    pub eval_files_max_bytes: usize,
    /// Bytes of files a run leaves in /work that are kept with its execution (docs/sessions.md); 0 keeps none.
    #[arg(long, env = "PYEXEC_FILES_MAX_BYTES", default_value_t = 64 << 20)]
    pub files_max_bytes: u64,
    /// Most files kept with one execution.
    #[arg(long, env = "PYEXEC_FILES_MAX_COUNT", default_value_t = 1000)]
    pub files_max_count: usize,
    /// Most live sessions; one more answers 429.
    #[arg(long, env = "PYEXEC_MAX_SESSIONS", default_value_t = 16)]
    pub max_sessions: usize,
    /// Seconds without a call after which a session ends, unless it asks for another value.
    #[arg(long, env = "PYEXEC_SESSION_IDLE_SECONDS", default_value_t = 600)]
    pub session_idle_seconds: u64,
    /// Largest idle timeout a session may ask for, seconds.
    #[arg(long, env = "PYEXEC_SESSION_MAX_IDLE_SECONDS", default_value_t = 3600)]
    pub session_max_idle_seconds: u64,
    /// Seconds after its creation at which every session ends.
    #[arg(long, env = "PYEXEC_SESSION_MAX_LIFETIME_SECONDS", default_value_t = 3600)]
    pub session_max_lifetime_seconds: u64,
    /// Largest file uploaded into a session, bytes.
    #[arg(long, env = "PYEXEC_SESSION_UPLOAD_MAX_BYTES", default_value_t = 100 << 20)]
    pub session_upload_max_bytes: u64,
    /// Give network to runs whose request does not say `network_disabled` (true/false). Off: a run has network
    /// only when it asks (`network_disabled: false`). On: the original's default, which its Go client and CLI rely
    /// on, since they omit `network_disabled: false` (docs/compatibility.md C51).
    #[arg(long, env = "PYEXEC_NETWORK_WHEN_UNSPECIFIED", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub network_when_unspecified: bool,
    /// Detect imports in /eval code and install them (true/false).
    #[arg(long, env = "PYEXEC_AUTO_DETECT_IMPORTS", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub auto_detect_imports: bool,
    /// Which detected imports may be installed automatically: `any`, `builtin` (the distributions of the built-in
    /// import map, the most used packages), or a file of distribution names, one per line. Never restricts
    /// `requirements_txt`.
    #[arg(long, env = "PYEXEC_AUTO_INSTALL_ALLOW", default_value = "any")]
    pub auto_install_allow: String,

    /// API keys (comma-separated, each `key` or `tenant:key`); when set, /api requires `Authorization: Bearer
    /// <key>`, and each key's tenant sees only its own work (docs/tenants.md).
    #[arg(long, env = "PYEXEC_API_KEYS", hide_env_values = true, value_delimiter = ',')]
    pub api_keys: Vec<String>,
    /// File of API keys, added to --api-keys: one `key` or `tenant:key` per line (`#` comments allowed), or, for
    /// a name ending in `.toml`, tenants with their keys, quotas and roles (docs/tenants.md).
    #[arg(long, env = "PYEXEC_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Tenants that see (and may kill or delete) every tenant's executions and sessions (comma-separated).
    #[arg(long, env = "PYEXEC_ADMIN_TENANTS", value_delimiter = ',')]
    pub admin_tenants: Vec<String>,
    /// Executions of one tenant running at once (0: no cap beyond the server's).
    #[arg(long, env = "PYEXEC_TENANT_MAX_RUNNING", default_value_t = 0)]
    pub tenant_max_running: usize,
    /// Executions of one tenant waiting for a slot (0: no cap beyond the server's); beyond it, 429.
    #[arg(long, env = "PYEXEC_TENANT_MAX_QUEUED", default_value_t = 0)]
    pub tenant_max_queued: usize,
    /// Live sessions of one tenant (0: no cap beyond PYEXEC_MAX_SESSIONS); beyond it, 429.
    #[arg(long, env = "PYEXEC_TENANT_MAX_SESSIONS", default_value_t = 0)]
    pub tenant_max_sessions: usize,
    /// Requests of one tenant per minute, every endpoint (0: unlimited); beyond it, 429 with Retry-After.
    #[arg(long, env = "PYEXEC_TENANT_REQUESTS_PER_MINUTE", default_value_t = 0)]
    pub tenant_requests_per_minute: u32,

    /// Interpreters to use instead of discovered ones: `3.12=/opt/python3.12/bin/python3.12,...`.
    #[arg(long, env = "PYEXEC_PYTHONS", value_parser = parse_pythons, default_value = "")]
    pub pythons: PythonMap,
    /// First host uid given to sandboxes (needs an unused range of --sandbox-uid-count uids).
    #[arg(long, env = "PYEXEC_SANDBOX_UID_BASE", default_value_t = 2_000_000_000)]
    pub sandbox_uid_base: u32,
    /// Number of host uids sandboxes may use.
    #[arg(long, env = "PYEXEC_SANDBOX_UID_COUNT", default_value_t = 65_536)]
    pub sandbox_uid_count: u32,
    /// Most processes and threads of one execution.
    #[arg(long, env = "PYEXEC_PIDS_MAX", default_value_t = 256)]
    pub pids_max: u64,
    /// Size of /tmp (and /dev/shm) in the sandbox, MiB.
    #[arg(long, env = "PYEXEC_TMP_MB", default_value_t = 100)]
    pub tmp_mb: u64,
    /// Keep sandboxes built ahead of demand (warm pools), so executions start in milliseconds.
    #[arg(long, env = "PYEXEC_WARM_POOL", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub warm_pool: bool,
    /// Idle warm sandboxes always kept for the default kind of request.
    #[arg(long, env = "PYEXEC_WARM_MIN", default_value_t = 2)]
    pub warm_min: usize,
    /// Most idle warm sandboxes of one kind of request (pools grow with demand up to this).
    #[arg(long, env = "PYEXEC_WARM_MAX", default_value_t = 8)]
    pub warm_max: usize,
    /// Most warm sandboxes in all (idle or being built).
    #[arg(long, env = "PYEXEC_WARM_MAX_TOTAL", default_value_t = 16)]
    pub warm_max_total: usize,
    /// Warm sandboxes built at the same time.
    #[arg(long, env = "PYEXEC_WARM_BUILD_PARALLELISM", default_value_t = 1)]
    pub warm_build_parallelism: usize,
    /// What warm interpreters import ahead of time: auto (the modules of an environment's packages), off, or a
    /// comma-separated list of modules.
    #[arg(long, env = "PYEXEC_WARM_PREIMPORT", default_value = "auto", value_parser = parse_preimport)]
    pub warm_preimport: pyexec_embedded::Preimport,
    /// Seconds without a request after which a kind of request loses its pool.
    #[arg(long, env = "PYEXEC_WARM_IDLE_SECONDS", default_value_t = 600)]
    pub warm_idle_seconds: u64,
    /// On hosts with v1 cgroup controllers, remount the v2 hierarchy with favordynmods (faster sandbox start).
    #[arg(long, env = "PYEXEC_CGROUP_FAVOR_DYNMODS", default_value = "true", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub cgroup_favor_dynmods: bool,
    /// Package index that requirements are installed from (an internal mirror's simple API, for example).
    #[arg(long, env = "PYEXEC_INDEX_URL", default_value = "https://pypi.org/simple")]
    pub index_url: String,
    /// More hosts the installer may reach besides the index's (where the index serves files from; PyPI's
    /// files.pythonhosted.org is added for pypi.org by itself).
    #[arg(long, env = "PYEXEC_INDEX_HOSTS", value_delimiter = ',')]
    pub index_hosts: Vec<String>,
    /// Build packages that have no binary wheel from source (runs their build code in the installer sandbox).
    #[arg(long, env = "PYEXEC_ALLOW_SDIST", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub allow_sdist: bool,
    /// Cap on cached environments plus the package cache, MiB; least recently used environments go first.
    #[arg(long, env = "PYEXEC_ENV_CACHE_MB", default_value_t = 5120)]
    pub env_cache_mb: u64,
    /// Seconds one dependency install may take.
    #[arg(long, env = "PYEXEC_INSTALL_TIMEOUT", default_value_t = 600)]
    pub install_timeout: u64,
    /// Memory of one dependency install, MiB.
    #[arg(long, env = "PYEXEC_INSTALL_MEMORY_MB", default_value_t = 4096)]
    pub install_memory_mb: u64,
    /// The uv binary (default: `uv` on PATH).
    #[arg(long, env = "PYEXEC_UV")]
    pub uv: Option<PathBuf>,
    /// Kubernetes backend: namespace of the PythonExecution resources (default: the server's own namespace).
    #[arg(long, env = "PYEXEC_K8S_NAMESPACE")]
    pub k8s_namespace: Option<String>,
    /// Kubernetes backend: the Python versions the operator offers.
    #[arg(long, env = "PYEXEC_K8S_PYTHON_VERSIONS", value_delimiter = ',', default_value = "3.10,3.11,3.12,3.13")]
    pub k8s_python_versions: Vec<String>,
    /// Kubernetes backend: RuntimeClass of every execution (gVisor, Kata), if any.
    #[arg(long, env = "PYEXEC_K8S_RUNTIME_CLASS")]
    pub k8s_runtime_class: Option<String>,
    /// Kubernetes backend: file with the token the operator sends to fetch uploaded archives.
    #[arg(long, env = "PYEXEC_ARCHIVE_TOKEN_FILE")]
    pub archive_token_file: Option<PathBuf>,
    /// Kubernetes backend: file with the token that reads full outputs from the operator.
    #[arg(long, env = "PYEXEC_LOGS_TOKEN_FILE")]
    pub logs_token_file: Option<PathBuf>,
    /// Kubernetes backend: the operator's address (`http://host:port`), where the full output, files and display
    /// outputs of session calls are stored (their records' `logsRef`). Unset: a call's record keeps only what its
    /// status holds.
    #[arg(long, env = "PYEXEC_LOGS_URL")]
    pub logs_url: Option<String>,
    /// Kubernetes backend: most executions this server created that are not finished yet; further submissions
    /// wait in the server's queue (PYEXEC_MAX_CONCURRENT is the embedded backend's).
    #[arg(long, env = "PYEXEC_K8S_MAX_IN_FLIGHT", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub k8s_max_in_flight: u64,
    /// Kubernetes backend: most executions that may wait for a slot (in this server's memory); beyond that
    /// requests get 429 (PYEXEC_MAX_QUEUE is the embedded backend's).
    #[arg(long, env = "PYEXEC_K8S_MAX_QUEUE", default_value_t = 1000)]
    pub k8s_max_queue: usize,
    /// Host names (or host:port, `*.example.com`) clients may use to reach this server, besides loopback names
    /// and IP addresses: without API keys every other name is refused (DNS-rebinding protection); `/mcp` always
    /// checks. `*` accepts any.
    #[arg(long, env = "PYEXEC_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Host names `/mcp` answers to; added to --allowed-hosts (kept for compatibility; `*` accepts any).
    #[arg(long, env = "PYEXEC_MCP_ALLOWED_HOSTS", value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    pub mcp_allowed_hosts: Vec<String>,
    /// Bytes of a run's stdout that an MCP tool result carries (and the `content` of
    /// `POST /api/v1/tools/run_python`): its start and its end, with a note saying how much was left out; also the
    /// cap of the last expression's value and of the text display outputs together.
    #[arg(long, env = "PYEXEC_MCP_MAX_STDOUT_BYTES", default_value_t = pyexec_mcp::DEFAULT_STDOUT_BYTES)]
    pub mcp_max_stdout_bytes: usize,
    /// Bytes of a run's stderr that an MCP tool result carries, likewise (also the cap of the exception message).
    #[arg(long, env = "PYEXEC_MCP_MAX_STDERR_BYTES", default_value_t = pyexec_mcp::DEFAULT_STDERR_BYTES)]
    pub mcp_max_stderr_bytes: usize,
    /// Browser origins (`https://app.example.com`, `http://localhost:3000`, `null`) whose pages may send requests
    /// that run code or change state, besides this server's own pages; `*` allows any site (not recommended).
    #[arg(long, env = "PYEXEC_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Seconds a client has to send a whole request head, counted from when the server starts waiting for it (on
    /// a new connection, and after each response on a kept-alive connection).
    #[arg(long, env = "PYEXEC_HEADER_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub header_timeout: u64,
    /// Seconds a connection may stay without a byte moving while the server waits on the client (no request in
    /// progress, a request body that stopped arriving, a response the client does not read); never while a
    /// request is being worked on.
    #[arg(long, env = "PYEXEC_IDLE_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub idle_timeout: u64,
    /// Most open client connections (lowered to fit the open-files limit); beyond it, new connections wait to be
    /// accepted.
    #[arg(long, env = "PYEXEC_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// On SIGTERM, seconds running executions get to finish before they are stopped (and recorded as failed).
    #[arg(long, env = "PYEXEC_SHUTDOWN_GRACE", default_value_t = 10)]
    pub shutdown_grace: u64,

    /// File with the secret that signs completion webhooks (HMAC-SHA256, at least 32 bytes; docs/webhooks.md).
    /// Unset: requests that name a `callback_url` are refused with 400.
    #[arg(long, env = "PYEXEC_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Let webhooks reach private addresses: loopback, RFC 1918, CGNAT, IPv6 unique local (internal receivers,
    /// tests). Link-local (cloud metadata), multicast and unspecified addresses stay refused.
    #[arg(long, env = "PYEXEC_WEBHOOK_ALLOW_PRIVATE", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    /// Accept `http://` callback URLs besides `https://` (results then travel unencrypted).
    #[arg(long, env = "PYEXEC_WEBHOOK_ALLOW_HTTP", default_value = "false", value_parser = parse_bool, action = clap::ArgAction::Set)]
    pub webhook_allow_http: bool,
    /// More address ranges (CIDR, comma-separated) webhooks never reach, even with --webhook-allow-private: a
    /// cluster's pod and service ranges where they are not private ones, other internal networks.
    #[arg(long, env = "PYEXEC_WEBHOOK_DENY_CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub webhook_deny_cidrs: Vec<Cidr>,
}

/// Variables of the original service that mean nothing here, and what replaces them.
const RETIRED: &[(&str, &str)] = &[
    ("PYEXEC_DOCKER_SOCKET", "no Docker is used: executions run in the embedded sandbox"),
    ("PYEXEC_NETWORK_MODE", "network is off by default; egress is limited to the public internet"),
    ("PYEXEC_DNS_SERVERS", "sandboxes with network resolve through the host's resolver"),
    ("PYEXEC_CONSUL_ADDR", "results are stored in PYEXEC_DATA_DIR"),
    ("PYEXEC_CONSUL_TOKEN", "results are stored in PYEXEC_DATA_DIR"),
    ("PYEXEC_CONSUL_PREFIX", "results are stored in PYEXEC_DATA_DIR"),
];

impl Config {
    /// Parses flags and environment; on a bad value, exits with a message naming the variable and the flag.
    pub fn load() -> Config {
        match Config::try_parse() {
            Ok(config) => config,
            Err(e) => {
                use clap::error::{ContextKind, ContextValue, ErrorKind};
                if matches!(e.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation)
                    && let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
                {
                    let flag = arg.split_whitespace().next().unwrap_or(arg).trim_start_matches('-');
                    let env = Config::command()
                        .get_arguments()
                        .find(|a| a.get_long() == Some(flag))
                        .and_then(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()));
                    if let Some(env) = env {
                        eprintln!("configuration error in {env} (or --{flag}):");
                    }
                }
                e.exit()
            }
        }
    }

    /// Warnings about settings of the original that have no effect here.
    pub fn retired_settings() -> Vec<String> {
        RETIRED
            .iter()
            .filter(|(name, _)| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
            .map(|(name, why)| format!("{name} has no effect in this implementation: {why}"))
            .collect()
    }

    /// The address to bind.
    pub fn addr(&self) -> SocketAddr {
        self.listen.unwrap_or(SocketAddr::new(self.host, self.port))
    }

    /// Validation rules for requests.
    pub fn policy(&self) -> anyhow::Result<Policy> {
        let defaults = Limits {
            timeout_seconds: self.default_timeout,
            memory_mb: self.default_memory_mb,
            disk_mb: self.default_disk_mb,
            cpu_shares: self.default_cpu_shares,
        };
        let max = Limits {
            timeout_seconds: self.max_timeout,
            memory_mb: self.max_memory_mb,
            disk_mb: self.max_disk_mb,
            cpu_shares: self.max_cpu_shares,
        };
        let check = |name: &str, default: u64, min: u64, max: u64| -> anyhow::Result<()> {
            anyhow::ensure!(
                (min..=max).contains(&default),
                "configuration error: the default {name} {default} must lie between {min} and the maximum {max}"
            );
            Ok(())
        };
        let min = Limits::MINIMUM;
        check("timeout (PYEXEC_DEFAULT_TIMEOUT)", defaults.timeout_seconds, min.timeout_seconds, max.timeout_seconds)?;
        check("memory (PYEXEC_DEFAULT_MEMORY_MB)", defaults.memory_mb, min.memory_mb, max.memory_mb)?;
        check("disk (PYEXEC_DEFAULT_DISK_MB)", defaults.disk_mb, min.disk_mb, max.disk_mb)?;
        check("CPU shares (PYEXEC_DEFAULT_CPU_SHARES)", defaults.cpu_shares, min.cpu_shares, max.cpu_shares)?;
        Ok(Policy {
            defaults,
            max,
            max_eval_code_bytes: 102_400,
            max_eval_files_bytes: self.eval_files_max_bytes,
            auto_detect_imports: self.auto_detect_imports,
            auto_install: pyexec_core::requirements::AutoInstall::load(&self.auto_install_allow)
                .map_err(|e| anyhow::anyhow!("configuration error in PYEXEC_AUTO_INSTALL_ALLOW: {e}"))?,
            callbacks: self.callback_rules(),
            network_when_unspecified: self.network_when_unspecified,
        })
    }

    /// The default interpreter version named by `PYEXEC_DEFAULT_IMAGE`.
    pub fn default_python(&self) -> anyhow::Result<PythonVersion> {
        PythonVersion::of_image(&self.default_image).ok_or_else(|| {
            anyhow::anyhow!(
                "configuration error in PYEXEC_DEFAULT_IMAGE: {:?} does not name an official python:3.X image",
                self.default_image
            )
        })
    }

    /// Slots: the configured number, or one per CPU.
    pub fn concurrency(&self) -> usize {
        if self.max_concurrent > 0 {
            return self.max_concurrent;
        }
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    }

    /// The tenants of the keys from the flag, the variable and the file.
    pub fn tenants(&self) -> anyhow::Result<crate::tenants::Tenants> {
        let defaults = crate::tenants::Defaults {
            max_running: self.tenant_max_running,
            max_queued: self.tenant_max_queued,
            max_sessions: self.tenant_max_sessions,
            requests_per_minute: self.tenant_requests_per_minute,
        };
        crate::tenants::Tenants::load(&self.api_keys, self.api_keys_file.as_deref(), defaults, &self.admin_tenants)
            .map_err(|e| anyhow::anyhow!("configuration error in PYEXEC_API_KEYS_FILE / PYEXEC_API_KEYS: {e}"))
    }

    /// Time to finish on shutdown.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace)
    }

    /// Which callback URLs requests may name and where webhooks may go. Callbacks are on when a secret file is
    /// named ([`Config::webhook_secret`] reads it, and start-up fails when it cannot).
    pub fn callback_rules(&self) -> CallbackRules {
        CallbackRules {
            enabled: self.webhook_secret_file.is_some(),
            allow_http: self.webhook_allow_http,
            allow_private: self.webhook_allow_private,
            denied: self.webhook_deny_cidrs.clone(),
        }
    }

    /// The webhook secret: the file's content less surrounding whitespace (so a trailing newline is not part of
    /// the key), at least [`crate::webhooks::MIN_SECRET_BYTES`] bytes. `None` without a file.
    pub fn webhook_secret(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(path) = &self.webhook_secret_file else { return Ok(None) };
        let bytes = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!("configuration error in PYEXEC_WEBHOOK_SECRET_FILE: cannot read {}: {e}", path.display())
        })?;
        let secret = bytes.trim_ascii().to_vec();
        let min = crate::webhooks::MIN_SECRET_BYTES;
        anyhow::ensure!(
            secret.len() >= min,
            "configuration error in PYEXEC_WEBHOOK_SECRET_FILE: the secret in {} has {} bytes, fewer than {min} \
             (make one with `openssl rand -hex 32`)",
            path.display(),
            secret.len()
        );
        Ok(Some(secret))
    }

    /// Limits of client connections.
    pub fn connection_limits(&self) -> crate::serve::ConnectionLimits {
        crate::serve::ConnectionLimits {
            header_timeout: Duration::from_secs(self.header_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            max_connections: usize::try_from(self.max_connections).unwrap_or(usize::MAX),
        }
    }

    /// Warnings about secrets given as command-line flags of this process, which every local user can read (in
    /// `ps` or `/proc/<pid>/cmdline`), unlike its environment or a file.
    pub fn secrets_on_command_line() -> Vec<String> {
        secret_flag_warnings(std::env::args_os().skip(1))
    }
}

/// See [`Config::secrets_on_command_line`]: `args` without the program name.
pub fn secret_flag_warnings(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<String> {
    let args: Vec<String> = args.into_iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut warnings = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if arg == "--" {
            break;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg, None),
        };
        let value = || inline.clone().or_else(|| args.get(i + 1).cloned()).unwrap_or_default();
        match flag {
            "--api-keys" => warnings.push(
                "API keys were given with --api-keys, which any local user can read in the process list: put them \
                 in a file named by PYEXEC_API_KEYS_FILE (or in the PYEXEC_API_KEYS environment variable) instead"
                    .to_owned(),
            ),
            "--index-url" if url_has_credentials(&value()) => warnings.push(
                "--index-url carries credentials (user:password@), which any local user can read in the process \
                 list: set PYEXEC_INDEX_URL in the environment instead"
                    .to_owned(),
            ),
            _ => {}
        }
        i += 1;
    }
    warnings
}

/// Whether a URL has a user-info part (`scheme://user:password@host/...`).
fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.contains('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_original_variables() {
        let c = Config::try_parse_from([
            "x",
            "--port",
            "9999",
            "--auto-detect-imports",
            "NO",
            "--pythons",
            "3.12=/opt/py/bin/python3.12",
        ])
        .unwrap();
        assert_eq!(c.port, 9999);
        assert!(!c.auto_detect_imports);
        assert_eq!(c.pythons.0, vec![(PythonVersion { minor: 12 }, PathBuf::from("/opt/py/bin/python3.12"))]);
        assert_eq!(c.default_python().unwrap(), PythonVersion { minor: 12 });
        assert!(Config::try_parse_from(["x", "--port", "eighty"]).is_err());
        assert!(Config::try_parse_from(["x", "--pythons", "2.7=/usr/bin/python2"]).is_err());
        assert!(Config::try_parse_from(["x", "--auto-detect-imports", "maybe"]).is_err());
    }

    #[test]
    fn the_auto_install_allow_list_is_any_builtin_or_a_file() {
        use pyexec_core::requirements::AutoInstall;
        let policy = |args: &[&str]| Config::try_parse_from(args).unwrap().policy();
        assert_eq!(policy(&["x"]).unwrap().auto_install, AutoInstall::Any, "any name, as the original");
        let builtin = policy(&["x", "--auto-install-allow", "builtin"]).unwrap().auto_install;
        assert!(builtin.allows("numpy") && builtin.allows("scikit-learn") && !builtin.allows("reqeusts"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("allow.txt");
        std::fs::write(&file, "# ours\nsix\n@builtin\n").unwrap();
        let listed = policy(&["x", "--auto-install-allow", file.to_str().unwrap()]).unwrap().auto_install;
        assert!(listed.allows("six") && listed.allows("numpy") && !listed.allows("reqeusts"));
        std::fs::write(&file, "not a name\n").unwrap();
        let e = policy(&["x", "--auto-install-allow", file.to_str().unwrap()]).unwrap_err().to_string();
        assert!(e.contains("PYEXEC_AUTO_INSTALL_ALLOW") && e.contains("line 1"), "{e}");
        let e = policy(&["x", "--auto-install-allow", "/nonexistent/allow.txt"]).unwrap_err().to_string();
        assert!(e.contains("PYEXEC_AUTO_INSTALL_ALLOW") && e.contains("/nonexistent/allow.txt"), "{e}");
    }

    /// Every setting must be in docs/configuration.md, with its flag.
    #[test]
    fn every_setting_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md")).unwrap();
        let mut missing = Vec::new();
        for arg in Config::command().get_arguments() {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                let env = env.to_string_lossy();
                if !doc.contains(&format!("`{env}`")) || !doc.contains(&format!("`--{long}`")) {
                    missing.push(format!("{env} (--{long})"));
                }
            }
        }
        for (name, _) in RETIRED {
            if !doc.contains(name) {
                missing.push((*name).to_owned());
            }
        }
        assert!(missing.is_empty(), "undocumented in docs/configuration.md: {missing:?}");
    }

    #[test]
    fn secrets_in_flags_are_warned_about() {
        let warn = |args: &[&str]| secret_flag_warnings(args.iter().map(std::ffi::OsString::from));
        assert_eq!(warn(&["--api-keys", "k1,k2"]).len(), 1);
        assert_eq!(warn(&["--api-keys=k1"]).len(), 1);
        assert!(warn(&["--api-keys=k1"])[0].contains("PYEXEC_API_KEYS_FILE"));
        assert_eq!(warn(&["--index-url", "https://me:s3cret@mirror.example/simple"]).len(), 1);
        assert_eq!(warn(&["--index-url=https://token@mirror.example/simple"]).len(), 1);
        assert!(warn(&["--index-url=https://token@mirror.example/simple"])[0].contains("PYEXEC_INDEX_URL"));
        assert!(warn(&["--index-url", "https://mirror.example/simple?x=a@b"]).is_empty(), "@ after the host");
        assert!(warn(&["--index-url", "https://mirror.example/simple", "--port", "80"]).is_empty());
        assert!(warn(&["--api-keys-file", "/etc/keys"]).is_empty());
        assert!(warn(&[]).is_empty());
    }

    #[test]
    fn connection_settings_have_bounds() {
        let c = Config::try_parse_from(["x"]).unwrap();
        let limits = c.connection_limits();
        assert_eq!(limits.header_timeout, Duration::from_secs(30));
        assert_eq!(limits.idle_timeout, Duration::from_secs(60));
        assert_eq!(limits.max_connections, 4096);
        assert!(Config::try_parse_from(["x", "--header-timeout", "0"]).is_err());
        assert!(Config::try_parse_from(["x", "--idle-timeout", "0"]).is_err());
        assert!(Config::try_parse_from(["x", "--max-connections", "0"]).is_err());
    }

    #[test]
    fn webhook_settings_make_the_callback_rules() {
        let c = Config::try_parse_from(["x"]).unwrap();
        assert_eq!(c.callback_rules(), CallbackRules::default(), "off without a secret");
        assert_eq!(c.webhook_secret().unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, format!("{}\n", "k".repeat(32))).unwrap();
        let c = Config::try_parse_from([
            "x",
            "--webhook-secret-file",
            file.to_str().unwrap(),
            "--webhook-allow-private",
            "true",
            "--webhook-deny-cidrs",
            "10.96.0.0/12, fd00:10::/64",
        ])
        .unwrap();
        let rules = c.callback_rules();
        assert!(rules.enabled && rules.allow_private && !rules.allow_http);
        assert_eq!(rules.denied.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.96.0.0/12", "fd00:10::/64"]);
        assert_eq!(c.policy().unwrap().callbacks, rules);
        assert_eq!(c.webhook_secret().unwrap().unwrap(), "k".repeat(32).into_bytes(), "the newline is no part of it");
        std::fs::write(&file, "short\n").unwrap();
        assert!(c.webhook_secret().unwrap_err().to_string().contains("fewer than 32"));
        std::fs::remove_file(&file).unwrap();
        assert!(c.webhook_secret().unwrap_err().to_string().contains("PYEXEC_WEBHOOK_SECRET_FILE"));
        assert!(Config::try_parse_from(["x", "--webhook-deny-cidrs", "10.0.0.0/40"]).is_err());
    }

    #[test]
    fn defaults_must_fit_the_maxima() {
        let c = Config::try_parse_from(["x", "--default-timeout", "7200"]).unwrap();
        assert!(c.policy().unwrap_err().to_string().contains("PYEXEC_DEFAULT_TIMEOUT"));
        let c = Config::try_parse_from(["x"]).unwrap();
        assert_eq!(c.policy().unwrap().defaults, Limits::ORIGINAL_DEFAULTS);
    }
}
