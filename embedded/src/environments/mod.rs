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

//!
//! Layout: `cache` keeps environments on disk (keys, completion markers, leases, one build per key, eviction by
//! size); `installer` is the uv run that builds one, in its sandbox; `uv_log` turns uv's output into the one line
//! a failure reports. This module ties them together behind [`Environments::get`].

mod cache;
mod installer;
mod uv_log;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyexec_core::SkippedPackage;
use pyexec_core::imports::{Detected, normalize_name};
use pyexec_core::requirements::{NOT_FOUND, NOT_INSTALLABLE};
use pyexec_core::text::tail;
use pyexec_sandbox::{Bind, Sandbox};
use serde::{Deserialize, Serialize};

use crate::interpreters::Interpreter;
use cache::{Cache, Claim};
use installer::Install;

pub use cache::normalize;
pub use installer::{InstallerConfig, PYPI_INDEX};

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
        /// The installer's last output (what tells the names it could not install).
        log_tail: String,
        /// The installer's last output without the lines `message` says, for `stderr`: the reason is read once.
        rest: String,
    },
}

impl InstallError {
    /// A failed install: `message` says why, `log` is what the installer printed (its tail is kept).
    fn failed(message: String, log: &str) -> Self {
        let log_tail = tail(log, 8 << 10);
        InstallError::Failed {
            message: pyexec_core::outcome::install_failure_message(message),
            rest: log_tail.clone(),
            log_tail,
        }
    }

    /// A failed install that uv's log explains: the lines its summary says are left out of `rest`.
    fn explained(summary: uv_log::Summary, log: &str) -> Self {
        let rest = tail(&uv_log::without(log, &summary.quoted), 8 << 10);
        InstallError::Failed {
            message: pyexec_core::outcome::install_failure_message(summary.reason),
            log_tail: tail(log, 8 << 10),
            rest,
        }
    }
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
    /// A hash of the interpreter, the requirements and the installer settings that built it.
    pub key: String,
    /// The environment's directory on the host (mounted at [`ENV_MOUNT`] in the installer and in runs).
    pub dir: PathBuf,
    /// Installed distributions, `name==version`.
    pub packages: Vec<String>,
    /// The requirements it was built from (the detected names it skipped left out).
    pub requirements: String,
    /// Detected distributions left out because the package index does not have them (or, for optional ones,
    /// nothing of them installs here).
    #[serde(default)]
    pub skipped: Vec<SkippedPackage>,
    /// Bytes on disk (shared files counted once).
    pub size_bytes: u64,
}

/// Where environments are mounted in sandboxes (installer and runs alike: the paths compiled into `.pyc` files and
/// written into scripts stay true).
pub const ENV_MOUNT: &str = "/opt/pyexec/venv";

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

/// An environment in use by a run; it cannot be evicted until dropped.
pub struct EnvLease {
    pub info: EnvInfo,
    /// Whether this request built it (false: it came from the cache).
    pub built: bool,
    /// Whether this request waited for it to be built, by itself or by a request for the same environment that
    /// came first (false: it was ready in the cache).
    pub waited: bool,
    owner: Arc<Inner>,
}

impl std::fmt::Debug for EnvLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvLease")
            .field("info", &self.info)
            .field("built", &self.built)
            .field("waited", &self.waited)
            .finish_non_exhaustive()
    }
}

impl EnvLease {
    /// A second lease on the same environment (a warm pool keeps one while it holds sandboxes that mount it).
    pub fn share(&self) -> EnvLease {
        self.owner.cache.add_lease(&self.info.key);
        EnvLease { info: self.info.clone(), built: false, waited: false, owner: self.owner.clone() }
    }
}

impl Drop for EnvLease {
    fn drop(&mut self) {
        self.owner.cache.release(&self.info.key);
    }
}

struct Inner {
    sandbox: Sandbox,
    config: InstallerConfig,
    uv: Result<PathBuf, String>,
    cache: Cache,
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

impl Environments {
    /// Prepares the cache directory (owned by the sandbox's service uid) and removes half-built environments.
    pub fn new(sandbox: Sandbox, config: InstallerConfig) -> std::io::Result<Environments> {
        let cache = Cache::open(&config.dir, sandbox.service_uid())?;
        let uv = installer::find_uv(&config.uv);
        Ok(Environments { inner: Arc::new(Inner { sandbox, uv, cache, config }) })
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
        self.get_with(interpreter, requirements, &[]).await
    }

    /// The environment for `requirements` (they must install) and the `detected` distributions (installed when the
    /// package index has them: one it lacks is left out and listed in [`EnvInfo::skipped`]; an optional one also
    /// when nothing of it installs here), built if needed.
    pub async fn get_with(
        &self,
        interpreter: &Interpreter,
        requirements: &str,
        detected: &[Detected],
    ) -> Result<EnvLease, InstallError> {
        self.available().map_err(InstallError::Unavailable)?;
        let wanted = Wanted::new(requirements, detected);
        let key = cache::key(interpreter, &wanted.key_text(), &self.inner.config);
        let (mut built, mut waited) = (false, false);
        loop {
            let mut rx = match self.inner.cache.lease_or_claim(&key) {
                Claim::Leased(info) => {
                    let lease = EnvLease { info, built, waited, owner: self.inner.clone() };
                    self.inner.cache.touch_used(&key);
                    if built {
                        self.inner.cache.evict(self.inner.config.max_bytes).await;
                    }
                    return Ok(lease);
                }
                Claim::Building(rx) => {
                    waited = true;
                    rx
                }
                Claim::Claimed(tx, rx) => {
                    (built, waited) = (true, true);
                    // The build runs on its own task: a requester that gives up (its execution killed) must not
                    // abort a build that others wait for.
                    let this = self.clone();
                    let (interpreter, wanted, key) = (interpreter.clone(), wanted.clone(), key.clone());
                    tokio::spawn(async move {
                        let result = this.build(&interpreter, &wanted, &key).await;
                        this.inner.cache.build_finished(&key);
                        let _ = tx.send(Some(result));
                    });
                    rx
                }
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

    /// Builds the environment `key` in the installer sandbox and makes it complete.
    async fn build(&self, interpreter: &Interpreter, wanted: &Wanted, key: &str) -> Result<EnvInfo, InstallError> {
        let inner = &self.inner;
        let uv = inner.uv.clone().map_err(InstallError::Unavailable)?;
        let hosts = installer::index_hosts(&inner.config).await?;
        let dir = inner.cache.build_dir(key, inner.sandbox.service_uid()).await?;
        let started = std::time::Instant::now();
        tracing::info!(env = key, requirements = %wanted.text().replace('\n', ", "), "building a Python environment");

        // The required and the detected names resolve together, in one uv run; uv fails the whole run for one
        // name it cannot install, so a detected name it blames is left out and the run repeated (each repetition
        // leaves out at least one name: they end). Nothing is installed by a run whose resolution failed.
        let mut wanted = wanted.clone();
        let mut skipped = Vec::new();
        loop {
            let requirements = wanted.text();
            let install = Install {
                config: &inner.config,
                interpreter,
                requirements: &requirements,
                uv: &uv,
                packages: inner.cache.packages(),
                env: &dir,
                hosts: hosts.clone(),
            };
            let Err(e) = install.run(&inner.sandbox, key).await else { break };
            let left_out = match &e {
                InstallError::Failed { log_tail, .. } => wanted.leave_out(log_tail),
                InstallError::Unavailable(_) => Vec::new(),
            };
            if left_out.is_empty() {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(e);
            }
            for skip in &left_out {
                tracing::info!(env = key, package = %skip.name, reason = %skip.reason, "a detected package is skipped");
            }
            skipped.extend(left_out);
        }
        let packages = installer::installed_distributions(&dir);
        let size_bytes = cache::disk_usage(std::slice::from_ref(&dir)).await;
        let info = EnvInfo { key: key.to_owned(), dir, packages, requirements: wanted.text(), skipped, size_bytes };
        inner.cache.mark_complete(&info).await?;
        tracing::info!(
            env = key,
            seconds = started.elapsed().as_secs_f64(),
            packages = info.packages.len(),
            "environment ready"
        );
        Ok(info)
    }

    /// Bytes used by environments and the package cache (files linked in several places counted once).
    pub async fn usage(&self) -> u64 {
        self.inner.cache.usage().await
    }
}

/// What an environment is built from: requirements that must install, and detected distributions that are left
/// out when the package index cannot give them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wanted {
    /// Normalised ([`normalize`]).
    required: String,
    /// Sorted, none of them named by `required`.
    detected: Vec<Detected>,
}

impl Wanted {
    fn new(requirements: &str, detected: &[Detected]) -> Self {
        let mut detected = detected.to_vec();
        detected.sort();
        detected.dedup_by(|a, b| normalize_name(&a.name) == normalize_name(&b.name));
        Wanted { required: normalize(requirements), detected }
    }

    /// What the cache key hashes: the requirements alone when nothing was detected (as before detected names were
    /// told apart), else also each detected name and whether it is optional.
    fn key_text(&self) -> String {
        if self.detected.is_empty() {
            return self.required.clone();
        }
        let detected: Vec<String> = self
            .detected
            .iter()
            .map(|d| format!("{} {}", d.name, if d.optional { "optional" } else { "detected" }))
            .collect();
        format!("{}\n\0{}", self.required, detected.join("\n"))
    }

    /// The requirements file uv installs.
    fn text(&self) -> String {
        let mut lines: Vec<&str> = self.required.lines().collect();
        lines.extend(self.detected.iter().map(|d| d.name.as_str()));
        lines.join("\n")
    }

    /// Takes out the detected names that uv's failure blames and that may be skipped (any the index lacks; an
    /// optional one also when no wheel of it installs), with why. Empty when the failure is anything else: then the
    /// install fails as it is.
    fn leave_out(&mut self, log: &str) -> Vec<SkippedPackage> {
        let blamed = uv_log::unavailable(log);
        let mut decided = Vec::new();
        for (name, why) in &blamed {
            let wanted = normalize_name(name);
            let Some(index) = self.detected.iter().position(|d| normalize_name(&d.name) == wanted) else {
                // A required name, or a dependency: not ours to leave out.
                return Vec::new();
            };
            let reason = match why {
                uv_log::Unavailable::NotFound => NOT_FOUND,
                uv_log::Unavailable::NoWheel if self.detected[index].optional => NOT_INSTALLABLE,
                uv_log::Unavailable::NoWheel => return Vec::new(),
            };
            decided.push((index, reason));
        }
        // From the last, so that the indices stay right.
        decided.sort_by_key(|d| std::cmp::Reverse(d.0));
        decided.dedup_by_key(|d| d.0);
        decided
            .into_iter()
            .map(|(index, reason)| SkippedPackage { name: self.detected.remove(index).name, reason: reason.to_owned() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_keep_the_tail_of_the_log() {
        let log = format!("{}the end", "x".repeat(10 << 10));
        let InstallError::Failed { message, log_tail, rest } = InstallError::failed("uv failed".into(), &log) else {
            panic!("a failure")
        };
        assert_eq!(message, "installing dependencies failed: uv failed");
        assert_eq!(log_tail.len(), 8 << 10);
        assert!(log_tail.ends_with("the end"));
        assert_eq!(rest, log_tail, "a reason that is not from the log leaves it whole");
        let log = "Resolved 1 package\nerror: Failed to fetch: `six`\n  cause: Request failed after 3 retries\n";
        let explained = InstallError::explained(uv_log::summarize(log, false), log);
        let InstallError::Failed { message, log_tail, rest } = explained else { panic!("a failure") };
        assert_eq!(message, "installing dependencies failed: Failed to fetch: `six`: Request failed after 3 retries");
        assert_eq!((log_tail.as_str(), rest.as_str()), (log, "Resolved 1 package\n"), "the reason is said once");
        assert_eq!(tail("abcdef", 3), "def");
    }

    #[test]
    fn detected_names_uv_cannot_install_are_left_out_and_listed_ones_never() {
        let d = |name: &str, optional| Detected { name: name.into(), optional };
        let skip = |name: &str, reason: &str| SkippedPackage { name: name.into(), reason: reason.into() };
        let detected = [d("surely_not", true), d("docopt", true), d("numpy", false), d("sdist_only", false)];
        let mut wanted = Wanted::new("six==1.17.0\n# pinned", &detected);
        assert_eq!(wanted.text(), "six==1.17.0\ndocopt\nnumpy\nsdist_only\nsurely_not");
        assert_eq!(Wanted::new("six\n# pinned", &[]).key_text(), "six", "listed-only keys are as before");
        assert_ne!(
            wanted.key_text(),
            Wanted::new("six==1.17.0\ndocopt\nnumpy\nsdist_only\nsurely_not", &[]).key_text()
        );
        let optional_too = Wanted::new(
            "six==1.17.0",
            &[d("surely_not", false), d("docopt", true), d("numpy", false), d("sdist_only", false)],
        );
        assert_ne!(wanted.key_text(), optional_too.key_text(), "whether a name is optional changes what is built");

        let not_found = "cause: Because surely-not was not found in the package registry and you require surely-not";
        assert_eq!(wanted.leave_out(not_found), [skip("surely_not", NOT_FOUND)]);
        let no_wheel = "cause: Because all versions of docopt have no usable wheels and you require docopt";
        assert_eq!(wanted.leave_out(no_wheel), [skip("docopt", NOT_INSTALLABLE)]);
        let required = "cause: Because all versions of sdist-only have no usable wheels and you require sdist-only";
        assert!(wanted.leave_out(required).is_empty(), "a detected name that is not optional fails as before");
        let listed = "cause: Because six was not found in the package registry and you require six";
        assert!(wanted.leave_out(listed).is_empty(), "a listed requirement is never left out");
        assert!(wanted.leave_out("error: Failed to download `numpy`").is_empty());
        assert_eq!(wanted.text(), "six==1.17.0\nnumpy\nsdist_only");
    }

    #[test]
    fn environments_are_mounted_read_only_at_one_path() {
        let info = EnvInfo {
            key: "k".into(),
            dir: "/var/lib/envs/k".into(),
            packages: Vec::new(),
            requirements: String::new(),
            skipped: Vec::new(),
            size_bytes: 0,
        };
        assert_eq!(info.bind(), Bind::at("/var/lib/envs/k", ENV_MOUNT));
        assert!(!info.bind().writable);
        assert_eq!(EnvInfo::python(), Path::new("/opt/pyexec/venv/bin/python"));
    }
}
