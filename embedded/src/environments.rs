//! Python environments for requirements: built once per (interpreter, requirements) with uv, cached, mounted
//! read-only into every run that needs them.
//!
//! - **Built in a sandbox.** The installer may run package code (build scripts with `allow_sdist`), so it runs in
//!   its own sandbox: no host files but the interpreter, the package cache and the environment being built;
//!   network to the package index's hosts only (their addresses pinned, everything else refused); the stable
//!   service uid, so that the cache stays writable. The user's program never gets this network.
//! - **Binary wheels only** unless `allow_sdist`: an sdist-only package fails with a message saying how to allow it.
//! - **No package code at install time** (wheels only): bytecode is compiled by the base interpreter without
//!   `site`, so no `.pth` file runs, and the package list is read from `.dist-info` names, not by asking the
//!   environment's interpreter.
//! - **Fast runs.** Bytecode is compiled at install time (the environment is read-only to runs, which could not
//!   write `.pyc` files), and the environment is mounted at one fixed path ([`ENV_MOUNT`]) in the installer and in
//!   runs alike, so the paths compiled into `.pyc` files and scripts hold.
//! - **Read-only to runs, independent of each other.** Files are copied from the cache, not hardlinked: a hardlinked
//!   environment shares its files with the cache and with every other environment (`docs/security.md`).
//! - **Once.** Concurrent requests for the same environment wait for one build. A size cap evicts the environments
//!   used least recently (never one in use), then the package cache.

use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pyexec_core::text::tail;
use pyexec_sandbox::{Bind, GeneratedFile, HostEntry, Identity, Network, RunLimits, RunSpec, Sandbox};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::interpreters::Interpreter;

const MIB: u64 = 1 << 20;

/// Settings of the installer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerConfig {
    /// The uv binary; `None` looks for `uv` on `PATH`.
    pub uv: Option<PathBuf>,
    /// Where environments and the package cache live.
    pub dir: PathBuf,
    /// The package index (`PYEXEC_INDEX_URL`).
    pub index_url: String,
    /// More hosts the installer may reach (PyPI serves files from `files.pythonhosted.org`).
    pub extra_hosts: Vec<String>,
    /// Allow building packages from source distributions (runs their build code in the installer sandbox).
    pub allow_sdist: bool,
    /// Cap on environments plus package cache, bytes.
    pub max_bytes: u64,
    /// Time one install may take.
    pub timeout: Duration,
    /// Memory of one install.
    pub memory_bytes: u64,
}

/// PyPI's index, whose files live on [`PYPI_FILES_HOST`].
pub const PYPI_INDEX: &str = "https://pypi.org/simple";
const PYPI_FILES_HOST: &str = "files.pythonhosted.org";

impl InstallerConfig {
    /// PyPI, binary wheels only, 5 GiB of cache, 10 minutes per install.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            uv: None,
            dir: dir.into(),
            index_url: PYPI_INDEX.into(),
            extra_hosts: Vec::new(),
            allow_sdist: false,
            max_bytes: 5 << 30,
            timeout: Duration::from_secs(600),
            memory_bytes: 4 << 30,
        }
    }

    /// The hosts the installer may reach besides the index's: `extra_hosts`, plus PyPI's file host for PyPI.
    fn file_hosts(&self, index_host: &str) -> Vec<String> {
        let mut hosts = self.extra_hosts.clone();
        if index_host == "pypi.org" && !hosts.iter().any(|h| h == PYPI_FILES_HOST) {
            hosts.push(PYPI_FILES_HOST.into());
        }
        hosts
    }
}

/// Why an environment could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// This server cannot install packages at all.
    #[error("dependency installation is not available on this server: {0}")]
    Unavailable(String),
    /// The install ran and failed.
    #[error("{message}")]
    Failed {
        /// One line for `error`.
        message: String,
        /// The installer's last output, for `stderr`.
        log_tail: String,
    },
}

/// The installer's state, for `/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallerReport {
    /// Requirements can be installed.
    pub available: bool,
    /// Why not, when they cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable_reason: Option<String>,
    /// The package index (without credentials).
    pub index_url: String,
    /// Packages without binary wheels may be built from source.
    pub allow_sdist: bool,
    /// Cap on cached environments plus the package cache, MiB.
    pub cache_max_mb: u64,
}

/// A ready environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvInfo {
    /// Cache key.
    pub key: String,
    /// The environment's root (mounted at the same path in runs).
    pub dir: PathBuf,
    /// Installed distributions, `name==version`.
    pub packages: Vec<String>,
    /// The requirements it was built from.
    pub requirements: String,
    /// Bytes on disk (shared files counted once).
    pub size_bytes: u64,
}

/// Where environments are mounted in sandboxes (installer and runs alike: the paths compiled into `.pyc` files and
/// written into scripts stay true).
pub const ENV_MOUNT: &str = "/opt/pyexec/venv";
/// Where the installer sees the package cache.
const CACHE_MOUNT: &str = "/opt/pyexec/uv-cache";
/// Where the installer finds uv.
const UV_MOUNT_DIR: &str = "/opt/pyexec/bin";

impl EnvInfo {
    /// The environment's interpreter, inside the sandbox.
    pub fn python() -> PathBuf {
        Path::new(ENV_MOUNT).join("bin").join("python")
    }

    /// The environment mounted read-only where runs expect it. Read-only also because a writable environment
    /// shared by runs would let one run plant code for the next.
    pub fn bind(&self) -> Bind {
        Bind::at(&self.dir, ENV_MOUNT)
    }
}

/// `name==version` of the distributions in an environment, from the names of their `.dist-info` directories
/// (names only: the environment's files were written by untrusted code and are not read).
fn installed_distributions(env: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for lib in std::fs::read_dir(env.join("lib")).into_iter().flatten().flatten() {
        let site = lib.path().join("site-packages");
        for entry in std::fs::read_dir(site).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((dist, version)) = name.strip_suffix(".dist-info").and_then(|s| s.split_once('-')) {
                out.push(format!("{}=={version}", dist.replace('_', "-")));
            }
        }
    }
    out.sort_by_key(|p| p.to_ascii_lowercase());
    out
}

/// An environment in use by a run; it cannot be evicted until dropped.
pub struct EnvLease {
    /// The environment.
    pub info: EnvInfo,
    /// Whether this request built it (false: it came from the cache).
    pub built: bool,
    owner: Arc<Inner>,
}

impl std::fmt::Debug for EnvLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvLease").field("info", &self.info).field("built", &self.built).finish_non_exhaustive()
    }
}

impl Drop for EnvLease {
    fn drop(&mut self) {
        let mut state = self.owner.lock();
        if let Some(n) = state.in_use.get_mut(&self.info.key) {
            *n -= 1;
            if *n == 0 {
                state.in_use.remove(&self.info.key);
            }
        }
    }
}

type BuildResult = Option<Result<EnvInfo, InstallError>>;

#[derive(Default)]
struct State {
    building: HashMap<String, watch::Receiver<BuildResult>>,
    in_use: HashMap<String, usize>,
}

struct Inner {
    sandbox: Sandbox,
    config: InstallerConfig,
    uv: Result<PathBuf, String>,
    envs: PathBuf,
    cache: PathBuf,
    state: Mutex<State>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The environment cache. Cheap to clone.
#[derive(Clone)]
pub struct Environments {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Environments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environments").field("dir", &self.inner.config.dir).finish_non_exhaustive()
    }
}

fn find_uv(configured: &Option<PathBuf>) -> Result<PathBuf, String> {
    let path = match configured {
        Some(p) => p.clone(),
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("uv"))
            .find(|p| p.is_file())
            .ok_or("uv is not installed (scripts/setup.sh installs the pinned version; or set PYEXEC_UV)")?,
    };
    std::fs::canonicalize(&path).map_err(|e| format!("uv at {}: {e}", path.display()))
}

impl Environments {
    /// Prepares the cache directory (owned by the sandbox's service uid) and removes half-built environments.
    pub fn new(sandbox: Sandbox, config: InstallerConfig) -> std::io::Result<Environments> {
        let service_uid = sandbox.service_uid();
        let envs = config.dir.join("envs");
        let cache = config.dir.join("uv-cache");
        for dir in [&config.dir, &envs, &cache] {
            std::fs::create_dir_all(dir)?;
        }
        if let Some(uid) = service_uid {
            for dir in [&envs, &cache] {
                std::os::unix::fs::chown(dir, Some(uid), Some(uid))?;
            }
        }
        for entry in std::fs::read_dir(&envs)?.flatten() {
            let path = entry.path();
            let complete = path.with_extension("json").exists();
            if path.is_dir() && !complete {
                tracing::info!(env = %path.display(), "removing an environment whose build did not finish");
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        let uv = find_uv(&config.uv);
        Ok(Environments { inner: Arc::new(Inner { sandbox, uv, envs, cache, config, state: Mutex::default() }) })
    }

    /// What `/health` says about installs.
    pub fn report(&self) -> InstallerReport {
        let config = &self.inner.config;
        let index_url = match url::Url::parse(&config.index_url) {
            Ok(mut url) => {
                // Mirrors are often reached with credentials in the URL: never show them.
                let _ = url.set_username("");
                let _ = url.set_password(None);
                url.to_string()
            }
            Err(e) => format!("invalid URL ({e})"),
        };
        let available = self.available();
        InstallerReport {
            available: available.is_ok(),
            unavailable_reason: available.err(),
            index_url,
            allow_sdist: config.allow_sdist,
            cache_max_mb: config.max_bytes >> 20,
        }
    }

    /// Whether installs can happen here (uv present, network egress available).
    pub fn available(&self) -> Result<(), String> {
        self.inner.uv.as_ref().map_err(Clone::clone)?;
        self.inner.sandbox.network_available()
    }

    /// The environment for `requirements` on `interpreter`, built if needed.
    pub async fn get(&self, interpreter: &Interpreter, requirements: &str) -> Result<EnvLease, InstallError> {
        self.available().map_err(InstallError::Unavailable)?;
        let requirements = normalize(requirements);
        let key = self.key(interpreter, &requirements);
        let mut built = false;
        loop {
            // Finding a complete environment and leasing it happen under one lock, which eviction also takes:
            // an environment is never evicted between the two.
            enum Found {
                Ready(EnvLease),
                Wait(watch::Receiver<BuildResult>),
            }
            let found = {
                let mut state = self.inner.lock();
                if let Some(info) = self.complete(&key) {
                    *state.in_use.entry(key.clone()).or_default() += 1;
                    Found::Ready(EnvLease { info, built, owner: self.inner.clone() })
                } else if let Some(rx) = state.building.get(&key) {
                    Found::Wait(rx.clone())
                } else {
                    let (tx, rx) = watch::channel(None);
                    state.building.insert(key.clone(), rx.clone());
                    built = true;
                    // The build runs on its own task: a requester that gives up (its execution killed) must not
                    // abort a build that others wait for.
                    let this = self.clone();
                    let (interpreter, requirements, key) = (interpreter.clone(), requirements.clone(), key.clone());
                    tokio::spawn(async move {
                        let result = this.build(&interpreter, &requirements, &key).await;
                        this.inner.lock().building.remove(&key);
                        let _ = tx.send(Some(result));
                    });
                    Found::Wait(rx)
                }
            };
            let mut rx = match found {
                Found::Ready(lease) => {
                    touch(&self.inner.envs.join(format!("{key}.used")));
                    if built {
                        self.evict().await;
                    }
                    return Ok(lease);
                }
                Found::Wait(rx) => rx,
            };
            let result = loop {
                if let Some(r) = rx.borrow_and_update().clone() {
                    break Some(r);
                }
                if rx.changed().await.is_err() {
                    break None;
                }
            };
            // Success (or a build task that ended without a result, at shutdown): look again, which leases it.
            if let Some(Err(e)) = result {
                return Err(e);
            }
        }
    }

    fn key(&self, interpreter: &Interpreter, requirements: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            // Environments record the interpreter's path inside sandboxes (`pyvenv.cfg`, script headers).
            interpreter.sandbox_executable.to_string_lossy().as_ref(),
            interpreter.executable.to_string_lossy().as_ref(),
            interpreter.full_version.as_str(),
            requirements,
            if self.inner.config.allow_sdist { "sdist" } else { "wheels" },
            self.inner.config.index_url.as_str(),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        let digest = h.finalize();
        digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
    }

    fn complete(&self, key: &str) -> Option<EnvInfo> {
        let text = std::fs::read_to_string(self.inner.envs.join(format!("{key}.json"))).ok()?;
        let info: EnvInfo = serde_json::from_str(&text).ok()?;
        info.dir.is_dir().then_some(info)
    }

    /// The addresses of the index's hosts, pinned for the installer.
    async fn index_hosts(&self) -> Result<Vec<HostEntry>, InstallError> {
        let config = &self.inner.config;
        let bad = |why: String| InstallError::Unavailable(format!("PYEXEC_INDEX_URL {:?}: {why}", config.index_url));
        let url = url::Url::parse(config.index_url.trim()).map_err(|e| bad(e.to_string()))?;
        let host = url.host_str().ok_or_else(|| bad("no host".into()))?.trim_matches(['[', ']']).to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        let mut out = Vec::new();
        let others = config.file_hosts(&host);
        for name in std::iter::once(host).chain(others) {
            let addrs: BTreeSet<std::net::IpAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(|e| InstallError::Failed {
                    message: format!(
                        "installing dependencies failed: cannot resolve the package index host {name}: {e}"
                    ),
                    log_tail: String::new(),
                })?
                .map(|a| a.ip())
                .collect();
            out.push(HostEntry { name, addrs: addrs.into_iter().collect() });
        }
        Ok(out)
    }

    async fn build(&self, interpreter: &Interpreter, requirements: &str, key: &str) -> Result<EnvInfo, InstallError> {
        let inner = &self.inner;
        let config = &inner.config;
        let uv = inner.uv.clone().map_err(InstallError::Unavailable)?;
        let hosts = self.index_hosts().await?;
        let dir = inner.envs.join(key);
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::create_dir(&dir).await.map_err(|e| {
            tracing::error!(dir = %dir.display(), "creating an environment's directory: {e}");
            failed(format!("the environment's directory could not be created: {e}"), "")
        })?;
        if let Some(uid) = inner.sandbox.service_uid() {
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).map_err(|e| failed(e.to_string(), ""))?;
        }
        let started = std::time::Instant::now();
        tracing::info!(env = key, requirements = %requirements.replace('\n', ", "), "building a Python environment");

        let binary = if config.allow_sdist { "" } else { "--only-binary :all:" };
        // Bytecode is compiled by the base interpreter without `site`, so that no `.pth` file of a package runs at
        // install time; nothing asks the environment's own interpreter anything once packages are in it.
        let script = format!(
            "set -eu\n\
             uv venv --quiet --allow-existing --python \"$PYEXEC_PYTHON\" {ENV_MOUNT}\n\
             uv pip install --quiet --python {ENV_MOUNT}/bin/python --default-index \"$PYEXEC_INDEX\" {binary} \
             -r /opt/pyexec/requirements.txt\n\
             \"$PYEXEC_PYTHON\" -I -S -m compileall -q -j 0 {ENV_MOUNT}/lib >/dev/null || true\n"
        );
        let mut run = RunSpec::new("/bin/sh");
        run.args = vec!["-c".into(), script];
        run.cwd = PathBuf::from("/tmp");
        run.env = vec![
            ("PATH".into(), format!("{UV_MOUNT_DIR}:/usr/local/bin:/usr/bin:/bin")),
            ("HOME".into(), "/tmp".into()),
            ("UV_CACHE_DIR".into(), CACHE_MOUNT.into()),
            // The cache and the environment are separate mounts (no hardlinks across them); copies also keep
            // environments independent of each other and of the cache.
            ("UV_LINK_MODE".into(), "copy".into()),
            ("UV_NO_PROGRESS".into(), "1".into()),
            ("UV_PYTHON_DOWNLOADS".into(), "never".into()),
            ("UV_SYSTEM_CERTS".into(), "1".into()),
            ("PYEXEC_PYTHON".into(), interpreter.sandbox_executable.display().to_string()),
            ("PYEXEC_INDEX".into(), config.index_url.clone()),
        ];
        run.env.extend(interpreter.sandbox_env.iter().cloned());
        if Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
            run.env.push(("SSL_CERT_FILE".into(), "/etc/ssl/certs/ca-certificates.crt".into()));
        }
        run.files.push(GeneratedFile {
            path: PathBuf::from("/opt/pyexec/requirements.txt"),
            content: format!("{requirements}\n").into_bytes(),
            mode: 0o644,
        });
        run.binds = interpreter.mounts.clone();
        // uv at a path of its own: the interpreter may cover the host's /usr/local, where uv usually lives.
        run.binds.push(Bind::at(&uv, Path::new(UV_MOUNT_DIR).join("uv")));
        run.binds.push(Bind { writable: true, ..Bind::at(&inner.cache, CACHE_MOUNT) });
        run.binds.push(Bind { writable: true, ..Bind::at(&dir, ENV_MOUNT) });
        run.network = Network::Hosts(hosts);
        run.identity = Identity::Service;
        run.limits = RunLimits {
            timeout: config.timeout,
            memory_bytes: config.memory_bytes,
            pids: 1024,
            cpu_shares: 2048,
            workspace_bytes: 16 * MIB,
            tmp_bytes: 2048 * MIB,
            stdout_bytes: 256 << 10,
            stderr_bytes: 256 << 10,
        };
        let outcome = inner.sandbox.run(run, None, Default::default()).await;
        let cleanup = || async {
            let _ = tokio::fs::remove_dir_all(&dir).await;
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                cleanup().await;
                tracing::error!(env = key, error = %e, "the installer sandbox failed");
                return Err(failed(format!("the installer sandbox failed: {}", e.client_message()), ""));
            }
        };
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&outcome.stdout.bytes),
            String::from_utf8_lossy(&outcome.stderr.bytes)
        );
        if outcome.timed_out || outcome.status != pyexec_sandbox::ExitStatus::Exited(0) {
            cleanup().await;
            let why = if outcome.timed_out {
                format!("the install took longer than {}s", config.timeout.as_secs())
            } else if outcome.oom_killed {
                "the installer ran out of memory".to_string()
            } else {
                summarize(&log, config.allow_sdist)
            };
            return Err(failed(why, &log));
        }
        let packages = installed_distributions(&dir);
        let size_bytes = disk_usage(std::slice::from_ref(&dir)).await;
        let info = EnvInfo { key: key.to_owned(), dir, packages, requirements: requirements.to_owned(), size_bytes };
        let json = serde_json::to_vec_pretty(&info).map_err(|e| failed(e.to_string(), ""))?;
        tokio::fs::write(inner.envs.join(format!("{key}.json")), json).await.map_err(|e| failed(e.to_string(), ""))?;
        tracing::info!(
            env = key,
            seconds = started.elapsed().as_secs_f64(),
            packages = info.packages.len(),
            "environment ready"
        );
        Ok(info)
    }

    /// Keeps environments plus package cache under the cap: least recently used environments first (never one in
    /// use), then the package cache.
    async fn evict(&self) {
        let inner = &self.inner;
        let cap = inner.config.max_bytes;
        let mut total = disk_usage(&[inner.envs.clone(), inner.cache.clone()]).await;
        if total <= cap {
            return;
        }
        let mut candidates: Vec<(SystemTime, String)> = std::fs::read_dir(&inner.envs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(".json")?.to_owned();
                // Never used (its requester gave up): as old as its build.
                let used = std::fs::metadata(inner.envs.join(format!("{key}.used")))
                    .or_else(|_| e.metadata())
                    .and_then(|m| m.modified())
                    .ok()?;
                Some((used, key))
            })
            .collect();
        candidates.sort();
        for (_, key) in candidates {
            if total <= cap {
                return;
            }
            {
                let state = inner.lock();
                if state.in_use.contains_key(&key) || state.building.contains_key(&key) {
                    continue;
                }
                // Without its metadata the environment is no longer complete: no one can lease it from now on.
                let _ = std::fs::remove_file(inner.envs.join(format!("{key}.json")));
            }
            tracing::info!(env = %key, "evicting a cached environment (cache over PYEXEC_ENV_CACHE_MB)");
            let _ = tokio::fs::remove_file(inner.envs.join(format!("{key}.used"))).await;
            let _ = tokio::fs::remove_dir_all(inner.envs.join(&key)).await;
            total = disk_usage(&[inner.envs.clone(), inner.cache.clone()]).await;
        }
        if total > cap {
            tracing::info!("clearing the package cache (environments in use keep their files)");
            if let Ok(entries) = std::fs::read_dir(&inner.cache) {
                for entry in entries.flatten() {
                    let _ = tokio::fs::remove_dir_all(entry.path()).await;
                    let _ = tokio::fs::remove_file(entry.path()).await;
                }
            }
        }
    }

    /// Bytes used by environments and the package cache (files linked in several places counted once).
    pub async fn usage(&self) -> u64 {
        disk_usage(&[self.inner.envs.clone(), self.inner.cache.clone()]).await
    }
}

fn failed(message: String, log: &str) -> InstallError {
    let tail = tail(log, 8 << 10);
    InstallError::Failed { message: format!("installing dependencies failed: {message}"), log_tail: tail }
}

/// One line saying why uv failed.
fn summarize(log: &str, allow_sdist: bool) -> String {
    let lines: Vec<&str> = log.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if !allow_sdist && let Some(line) = lines.iter().find(|l| l.contains("building from source is disabled")) {
        let package = line.split('`').nth(1).map(|p| format!("{p} has")).unwrap_or("a package has".into());
        return format!(
            "{package} no binary wheel for this interpreter and building from source is disabled \
                 (set PYEXEC_ALLOW_SDIST=true on the server to allow it)"
        );
    }
    let Some(at) = lines.iter().position(|l| l.starts_with("error:") || l.starts_with('×')) else {
        return lines.last().copied().unwrap_or("the installer failed").to_owned();
    };
    let error = lines[at].trim_start_matches("error:").trim_start_matches('×').trim();
    // uv explains on the following `cause:` lines; the first is the most specific useful one.
    match lines[at + 1..].iter().find_map(|l| l.strip_prefix("cause:").or_else(|| l.strip_prefix("╰─▶"))) {
        Some(cause) => format!("{error}: {}", cause.trim().trim_start_matches("Because ")),
        None => error.to_owned(),
    }
}

/// Requirements as a cache key: lines trimmed, comments and blanks dropped, sorted, unique.
pub fn normalize(requirements: &str) -> String {
    let lines: BTreeSet<&str> = requirements
        .lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    lines.into_iter().collect::<Vec<_>>().join("\n")
}

fn touch(path: &Path) {
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
}

/// `du` of some trees, each inode once.
async fn disk_usage(roots: &[PathBuf]) -> u64 {
    let roots = roots.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut seen = std::collections::HashSet::new();
        let mut total = 0u64;
        let mut stack = roots;
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let Ok(meta) = entry.path().symlink_metadata() else { continue };
                if meta.is_dir() {
                    stack.push(entry.path());
                }
                if seen.insert((meta.dev(), meta.ino())) {
                    total += meta.blocks() * 512;
                }
            }
        }
        total
    })
    .await
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_normalize_for_the_cache_key() {
        assert_eq!(normalize("numpy\n\n# comment\nrequests>=2  # why\nnumpy\n"), "numpy\nrequests>=2");
    }

    #[test]
    fn failures_are_summarized() {
        let log = "Resolved 1 package\n  × Failed to download `x`\n  ╰─▶ error sending request\n";
        assert_eq!(summarize(log, false), "Failed to download `x`: error sending request");
        // Verbatim from uv 0.13.9.
        let log = "error: No solution found when resolving dependencies\n  cause: Because all versions of docopt have no \
                   usable wheels and you require docopt, we can conclude that your requirements are unsatisfiable.\n\n\
                   hint: Wheels are required for `docopt` because building from source is disabled for all packages \
                   (i.e., with `--no-build`)\n";
        assert_eq!(
            summarize(log, false),
            "docopt has no binary wheel for this interpreter and building from source is disabled \
             (set PYEXEC_ALLOW_SDIST=true on the server to allow it)"
        );
        let log = "error: No solution found when resolving dependencies\n  cause: Because nonexistent-pkg was not found \
                   in the package registry and you require nonexistent-pkg, we can conclude that your requirements \
                   are unsatisfiable.\n";
        assert!(summarize(log, false).starts_with(
            "No solution found when resolving dependencies: nonexistent-pkg was not found in the package registry"
        ));
        assert_eq!(tail("abcdef", 3), "def");
    }
}
