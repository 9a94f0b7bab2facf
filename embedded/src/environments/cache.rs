//! The environment cache: where environments live, when one is complete, who uses it, and what goes when the
//! cache is over its size cap.
//!
//! On disk, under the installer's directory:
//! - `envs/<key>/`: an environment, and `envs/<key>.json` its [`EnvInfo`], written last: an environment is
//!   complete only with it (a directory without one is a build that did not finish, removed at start-up);
//! - `envs/<key>.used`: touched on every lease, its modification time orders eviction;
//! - `uv-cache/`: uv's package cache, shared by the installs.
//!
//! In memory, under one lock: the builds in progress (so that concurrent requests for one environment wait for
//! one build) and the leases (so that eviction never removes an environment a run has mounted).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::{EnvInfo, InstallError, InstallerConfig};
use crate::interpreters::Interpreter;

/// What a build sends to those waiting for it; `None` until it is done.
pub(super) type BuildResult = Option<Result<EnvInfo, InstallError>>;

#[derive(Default)]
struct State {
    /// Builds in progress, by key.
    building: HashMap<String, watch::Receiver<BuildResult>>,
    /// Leases held, by key.
    in_use: HashMap<String, usize>,
}

/// The environments and uv's package cache of one installer directory.
pub(super) struct Cache {
    envs: PathBuf,
    packages: PathBuf,
    state: Mutex<State>,
}

/// What [`Cache::lease_or_claim`] found.
pub(super) enum Claim {
    /// The environment is complete, and now leased.
    Leased(EnvInfo),
    /// Another request is building it: wait for its result.
    Building(watch::Receiver<BuildResult>),
    /// No one is building it: the caller must, and send the result on the sender.
    Claimed(watch::Sender<BuildResult>, watch::Receiver<BuildResult>),
}

impl Cache {
    /// Creates the directories (owned by `service_uid`, the installer sandbox's host uid, when given) and removes
    /// the environments whose build did not finish.
    pub(super) fn open(dir: &Path, service_uid: Option<u32>) -> std::io::Result<Cache> {
        let envs = dir.join("envs");
        let packages = dir.join("uv-cache");
        for dir in [dir, &envs, &packages] {
            std::fs::create_dir_all(dir)?;
        }
        if let Some(uid) = service_uid {
            for dir in [&envs, &packages] {
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
        Ok(Cache { envs, packages, state: Mutex::default() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// uv's package cache.
    pub(super) fn packages(&self) -> &Path {
        &self.packages
    }

    /// Leases the complete environment `key`, or says who builds it. Finding a complete environment and leasing
    /// it happen under one lock, which eviction also takes: an environment is never evicted between the two.
    pub(super) fn lease_or_claim(&self, key: &str) -> Claim {
        let mut state = self.lock();
        if let Some(info) = self.complete(key) {
            *state.in_use.entry(key.to_owned()).or_default() += 1;
            Claim::Leased(info)
        } else if let Some(rx) = state.building.get(key) {
            Claim::Building(rx.clone())
        } else {
            let (tx, rx) = watch::channel(None);
            state.building.insert(key.to_owned(), rx.clone());
            Claim::Claimed(tx, rx)
        }
    }

    /// Ends the build of `key` that [`Claim::Claimed`] gave to the caller.
    pub(super) fn build_finished(&self, key: &str) {
        self.lock().building.remove(key);
    }

    /// One more lease on `key`, which the caller already leases (so it cannot be evicted in between).
    pub(super) fn add_lease(&self, key: &str) {
        *self.lock().in_use.entry(key.to_owned()).or_default() += 1;
    }

    /// Returns a lease taken by [`Cache::lease_or_claim`].
    pub(super) fn release(&self, key: &str) {
        let mut state = self.lock();
        if let Some(n) = state.in_use.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                state.in_use.remove(key);
            }
        }
    }

    /// Records a use of `key`, for eviction.
    pub(super) fn touch_used(&self, key: &str) {
        touch(&self.envs.join(format!("{key}.used")));
    }

    /// The info of `key` when it is complete.
    fn complete(&self, key: &str) -> Option<EnvInfo> {
        let text = std::fs::read_to_string(self.envs.join(format!("{key}.json"))).ok()?;
        let info: EnvInfo = serde_json::from_str(&text).ok()?;
        info.dir.is_dir().then_some(info)
    }

    /// An empty directory for building `key` (whatever an earlier attempt left is removed), owned by
    /// `service_uid` when given.
    pub(super) async fn build_dir(&self, key: &str, service_uid: Option<u32>) -> Result<PathBuf, InstallError> {
        let dir = self.envs.join(key);
        let _ = tokio::fs::remove_dir_all(&dir).await;
        tokio::fs::create_dir(&dir).await.map_err(|e| {
            tracing::error!(dir = %dir.display(), "creating an environment's directory: {e}");
            InstallError::failed(format!("the environment's directory could not be created: {e}"), "")
        })?;
        if let Some(uid) = service_uid {
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid))
                .map_err(|e| InstallError::failed(e.to_string(), ""))?;
        }
        Ok(dir)
    }

    /// Makes a built environment complete: from now on it can be leased.
    pub(super) async fn mark_complete(&self, info: &EnvInfo) -> Result<(), InstallError> {
        let json = serde_json::to_vec_pretty(info).map_err(|e| InstallError::failed(e.to_string(), ""))?;
        tokio::fs::write(self.envs.join(format!("{}.json", info.key)), json)
            .await
            .map_err(|e| InstallError::failed(e.to_string(), ""))
    }

    /// Keeps environments plus package cache under `cap` bytes: least recently used environments first (never
    /// one in use or being built), then the package cache.
    pub(super) async fn evict(&self, cap: u64) {
        let mut total = self.usage().await;
        if total <= cap {
            return;
        }
        let mut candidates: Vec<(SystemTime, String)> = std::fs::read_dir(&self.envs)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = name.strip_suffix(".json")?.to_owned();
                // Never used (its requester gave up): as old as its build.
                let used = std::fs::metadata(self.envs.join(format!("{key}.used")))
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
                let state = self.lock();
                if state.in_use.contains_key(&key) || state.building.contains_key(&key) {
                    continue;
                }
                // Without its metadata the environment is no longer complete: no one can lease it from now on.
                let _ = std::fs::remove_file(self.envs.join(format!("{key}.json")));
            }
            tracing::info!(env = %key, "evicting a cached environment (cache over PYEXEC_ENV_CACHE_MB)");
            let _ = tokio::fs::remove_file(self.envs.join(format!("{key}.used"))).await;
            let _ = tokio::fs::remove_dir_all(self.envs.join(&key)).await;
            total = self.usage().await;
        }
        if total > cap {
            tracing::info!("clearing the package cache (environments in use keep their files)");
            if let Ok(entries) = std::fs::read_dir(&self.packages) {
                for entry in entries.flatten() {
                    let _ = tokio::fs::remove_dir_all(entry.path()).await;
                    let _ = tokio::fs::remove_file(entry.path()).await;
                }
            }
        }
    }

    /// Bytes used by environments and the package cache (files linked in several places counted once).
    pub(super) async fn usage(&self) -> u64 {
        disk_usage(&[self.envs.clone(), self.packages.clone()]).await
    }
}

/// The cache key of an environment: everything that makes two builds differ.
pub(super) fn key(interpreter: &Interpreter, requirements: &str, config: &InstallerConfig) -> String {
    let mut h = Sha256::new();
    for part in [
        // Environments record the interpreter's path inside sandboxes (`pyvenv.cfg`, script headers).
        interpreter.sandbox_executable.to_string_lossy().as_ref(),
        interpreter.executable.to_string_lossy().as_ref(),
        interpreter.full_version.as_str(),
        requirements,
        if config.allow_sdist { "sdist" } else { "wheels" },
        config.index_url.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
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
pub(super) async fn disk_usage(roots: &[PathBuf]) -> u64 {
    let roots = roots.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut seen = HashSet::new();
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
    use std::sync::Arc;

    use super::*;

    fn interpreter(executable: &str) -> Interpreter {
        Interpreter {
            version: pyexec_core::spec::PythonVersion { minor: 12 },
            full_version: "3.12.7".into(),
            executable: executable.into(),
            sandbox_executable: executable.into(),
            mounts: Vec::new(),
            sandbox_env: Vec::new(),
            source: "PATH",
            stdlib: Arc::default(),
            runners: None,
        }
    }

    fn info(cache: &Cache, key: &str) -> EnvInfo {
        EnvInfo {
            key: key.into(),
            dir: cache.envs.join(key),
            packages: vec!["six==1.17.0".into()],
            requirements: "six".into(),
            skipped: Vec::new(),
            size_bytes: 0,
        }
    }

    /// A complete environment holding `bytes` of files.
    async fn built(cache: &Cache, key: &str, bytes: usize) -> EnvInfo {
        let dir = cache.build_dir(key, None).await.unwrap();
        std::fs::write(dir.join("payload"), vec![1u8; bytes]).unwrap();
        let info = info(cache, key);
        cache.mark_complete(&info).await.unwrap();
        info
    }

    #[test]
    fn requirements_normalize_for_the_cache_key() {
        assert_eq!(normalize("numpy\n\n# comment\nrequests>=2  # why\nnumpy\n"), "numpy\nrequests>=2");
    }

    #[test]
    fn keys_change_with_everything_that_changes_a_build() {
        let config = InstallerConfig::new("/nonexistent");
        let python = interpreter("/usr/bin/python3.12");
        let base = key(&python, "six", &config);
        assert_eq!(base.len(), 24);
        assert!(base.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(base, key(&python, "six", &config), "stable");
        assert_ne!(base, key(&python, "six\nnumpy", &config));
        assert_ne!(base, key(&interpreter("/opt/python/bin/python3.12"), "six", &config));
        assert_ne!(base, key(&python, "six", &InstallerConfig { allow_sdist: true, ..config.clone() }));
        let mirror = InstallerConfig { index_url: "https://mirror.example/simple".into(), ..config };
        assert_ne!(base, key(&python, "six", &mirror));
    }

    #[tokio::test]
    async fn opening_removes_unfinished_builds_and_keeps_complete_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), None).unwrap();
        built(&cache, "done", 10).await;
        cache.build_dir("unfinished", None).await.unwrap();
        drop(cache);
        let cache = Cache::open(dir.path(), None).unwrap();
        assert!(cache.envs.join("done").is_dir());
        assert!(!cache.envs.join("unfinished").exists());
        assert!(cache.packages().is_dir());
    }

    #[tokio::test]
    async fn one_build_per_key_then_leases() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), None).unwrap();
        let Claim::Claimed(tx, _) = cache.lease_or_claim("k") else { panic!("the first request builds") };
        assert!(matches!(cache.lease_or_claim("k"), Claim::Building(_)), "the second one waits");
        let info = built(&cache, "k", 10).await;
        cache.build_finished("k");
        let _ = tx.send(Some(Ok(info.clone())));
        let Claim::Leased(leased) = cache.lease_or_claim("k") else { panic!("complete environments are leased") };
        assert_eq!(leased, info);
        assert!(matches!(cache.lease_or_claim("k"), Claim::Leased(_)));
        assert_eq!(cache.lock().in_use.get("k"), Some(&2));
        cache.release("k");
        cache.release("k");
        assert!(cache.lock().in_use.is_empty());
    }

    #[tokio::test]
    async fn eviction_spares_leased_environments_and_then_clears_the_package_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path(), None).unwrap();
        built(&cache, "leased", 64 << 10).await;
        built(&cache, "idle", 64 << 10).await;
        std::fs::write(cache.packages().join("wheel"), vec![1u8; 64 << 10]).unwrap();
        assert!(matches!(cache.lease_or_claim("leased"), Claim::Leased(_)));

        let before = cache.usage().await;
        cache.evict(before).await;
        assert!(cache.envs.join("idle").is_dir(), "under the cap nothing goes");

        cache.evict(0).await;
        assert!(!cache.envs.join("idle").exists() && !cache.envs.join("idle.json").exists());
        assert!(cache.envs.join("leased").is_dir() && cache.envs.join("leased.json").exists());
        assert!(!cache.packages().join("wheel").exists());
        assert!(matches!(cache.lease_or_claim("idle"), Claim::Claimed(..)), "an evicted environment is rebuilt");
    }
}
