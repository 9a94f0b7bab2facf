//! Finding the CPython interpreters a server can offer (3.10 to 3.13).
//!
//! Sources, first match wins per version: an explicit map from the configuration, `python3.X` on `PATH`, and
//! pyenv's versions folder (`$PYENV_ROOT`, else `~/.pyenv`). pyenv's shims are skipped: they are shell scripts
//! that cost about 100 ms per start. Every candidate is started once to learn its exact version and prefix, and
//! is afterwards always called by its real absolute path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use pyexec_core::PythonVersion;
use serde::Serialize;

/// A usable interpreter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interpreter {
    /// `3.X`.
    pub version: PythonVersion,
    /// `3.X.Y`.
    pub full_version: String,
    /// Real path of the executable (no symbolic links, no shims).
    pub executable: PathBuf,
    /// Directories outside `/usr` the interpreter needs (its prefix), made visible read-only at the same path.
    pub binds: Vec<PathBuf>,
    /// Where it was found: `config`, `PATH` or `pyenv`.
    pub source: &'static str,
    /// Its `sys.stdlib_module_names`: never installed as dependencies.
    #[serde(skip)]
    pub stdlib: Arc<BTreeSet<String>>,
}

/// Where to look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// Explicit `version → executable` entries; they win over everything found.
    pub explicit: Vec<(PythonVersion, PathBuf)>,
    /// Whether to look on `PATH`.
    pub search_path: bool,
    /// pyenv's root; `None` uses `$PYENV_ROOT` or `~/.pyenv`.
    pub pyenv_root: Option<PathBuf>,
}

impl Discovery {
    /// Looks everywhere, with no explicit entries.
    pub fn everywhere() -> Self {
        Self { explicit: Vec::new(), search_path: true, pyenv_root: None }
    }
}

/// The interpreters of this server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interpreters {
    by_version: BTreeMap<PythonVersion, Interpreter>,
    preferred: Option<PythonVersion>,
}

impl Interpreters {
    /// Finds and checks interpreters. Candidates that fail to start or report another version are skipped with a
    /// warning.
    pub async fn discover(discovery: &Discovery) -> Interpreters {
        let mut by_version = BTreeMap::new();
        for version in PythonVersion::SUPPORTED {
            for (candidate, source) in candidates(discovery, version) {
                match probe(&candidate, version, source).await {
                    Ok(found) => {
                        tracing::info!(
                            version = %found.full_version,
                            executable = %found.executable.display(),
                            source,
                            "python interpreter found"
                        );
                        by_version.insert(version, found);
                        break;
                    }
                    Err(why) => tracing::warn!(candidate = %candidate.display(), "skipping interpreter: {why}"),
                }
            }
        }
        Interpreters { by_version, preferred: None }
    }

    /// Makes `version` the default when it is available.
    pub fn prefer(&mut self, version: Option<PythonVersion>) {
        self.preferred = version;
    }

    /// Builds a set from known interpreters (tests, fixed deployments).
    pub fn from_list(list: impl IntoIterator<Item = Interpreter>) -> Self {
        Self { by_version: list.into_iter().map(|i| (i.version, i)).collect(), preferred: None }
    }

    /// Versions available, ascending.
    pub fn versions(&self) -> Vec<PythonVersion> {
        self.by_version.keys().copied().collect()
    }

    /// All interpreters, by ascending version.
    pub fn all(&self) -> impl Iterator<Item = &Interpreter> {
        self.by_version.values()
    }

    /// The default: the preferred version where present, else 3.12 where present, else the newest.
    pub fn default_version(&self) -> Option<PythonVersion> {
        if let Some(v) = self.preferred.filter(|v| self.by_version.contains_key(v)) {
            return Some(v);
        }
        if self.by_version.contains_key(&PythonVersion::DEFAULT) {
            return Some(PythonVersion::DEFAULT);
        }
        self.by_version.keys().next_back().copied()
    }

    /// The interpreter for a request (`None`: the default), or a message naming what is available.
    pub fn get(&self, version: Option<PythonVersion>) -> Result<&Interpreter, String> {
        let wanted = version.or_else(|| self.default_version());
        wanted.and_then(|v| self.by_version.get(&v)).ok_or_else(|| match version {
            Some(v) => format!("python {v} is not available on this server; available: {}", self.list()),
            None => "no python interpreter is available on this server".to_string(),
        })
    }

    /// `"3.11, 3.12"` (or `"none"`).
    pub fn list(&self) -> String {
        let list: Vec<String> = self.by_version.keys().map(ToString::to_string).collect();
        if list.is_empty() { "none".into() } else { list.join(", ") }
    }
}

fn pyenv_root(discovery: &Discovery) -> Option<PathBuf> {
    discovery
        .pyenv_root
        .clone()
        .or_else(|| std::env::var_os("PYENV_ROOT").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pyenv")))
}

/// Candidate executables for `version`, in priority order.
fn candidates(discovery: &Discovery, version: PythonVersion) -> Vec<(PathBuf, &'static str)> {
    let mut out: Vec<(PathBuf, &'static str)> =
        discovery.explicit.iter().filter(|(v, _)| *v == version).map(|(_, p)| (p.clone(), "config")).collect();
    let name = format!("python{version}");
    let pyenv = pyenv_root(discovery);
    if discovery.search_path
        && let Some(path) = std::env::var_os("PATH")
    {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(&name);
            if candidate.is_file() && !is_shim(&candidate, pyenv.as_deref()) {
                out.push((candidate, "PATH"));
            }
        }
    }
    if let Some(root) = pyenv {
        let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(root.join("versions"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let dir_name = entry.file_name().to_string_lossy().into_owned();
                let rest = dir_name.strip_prefix(&format!("{version}."))?;
                let patch: u32 = rest.parse().ok()?;
                Some((vec![patch], entry.path().join("bin").join(&name)))
            })
            .filter(|(_, exe)| exe.is_file())
            .collect();
        // Newest patch release first.
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        out.extend(versions.into_iter().map(|(_, exe)| (exe, "pyenv")));
    }
    out
}

/// pyenv's shims (and any other wrapper script) would add a shell start to every run.
fn is_shim(path: &Path, pyenv_root: Option<&Path>) -> bool {
    if pyenv_root.is_some_and(|root| path.starts_with(root.join("shims"))) {
        return true;
    }
    let mut head = [0u8; 2];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head)).is_ok() && &head == b"#!"
}

const PROBE: &str = "import json, sys; print(json.dumps({'version': list(sys.version_info[:3]), \
                     'prefix': sys.prefix, 'base_prefix': sys.base_prefix, \
                     'stdlib': sorted(getattr(sys, 'stdlib_module_names', ()))}))";

#[derive(serde::Deserialize)]
struct ProbeAnswer {
    version: Vec<u32>,
    prefix: PathBuf,
    base_prefix: PathBuf,
    stdlib: BTreeSet<String>,
}

async fn probe(candidate: &Path, version: PythonVersion, source: &'static str) -> Result<Interpreter, String> {
    let executable = std::fs::canonicalize(candidate).map_err(|e| e.to_string())?;
    let run = tokio::process::Command::new(&executable)
        .args(["-I", "-S", "-c", PROBE])
        .env_clear()
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .map_err(|_| "did not answer within 20 s".to_string())?
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("exited with {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()));
    }
    let answer: ProbeAnswer = serde_json::from_slice(&output.stdout).map_err(|e| format!("unexpected answer: {e}"))?;
    if answer.version.get(..2) != Some(&[3, u32::from(version.minor)]) {
        return Err(format!("reports version {:?}, not {version}", answer.version));
    }
    let mut binds: Vec<PathBuf> = Vec::new();
    for dir in [answer.prefix, answer.base_prefix] {
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        if !dir.starts_with("/usr") && !binds.contains(&dir) {
            binds.push(dir);
        }
    }
    let full_version = answer.version.iter().map(ToString::to_string).collect::<Vec<_>>().join(".");
    Ok(Interpreter { version, full_version, executable, binds, source, stdlib: Arc::new(answer.stdlib) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interp(minor: u8) -> Interpreter {
        Interpreter {
            version: PythonVersion { minor },
            full_version: format!("3.{minor}.0"),
            executable: PathBuf::from(format!("/usr/bin/python3.{minor}")),
            binds: Vec::new(),
            source: "config",
            stdlib: Arc::default(),
        }
    }

    #[test]
    fn default_is_3_12_else_the_newest() {
        let set = Interpreters::from_list([interp(11), interp(12), interp(13)]);
        assert_eq!(set.default_version(), Some(PythonVersion { minor: 12 }));
        let mut set = Interpreters::from_list([interp(10), interp(11)]);
        assert_eq!(set.default_version(), Some(PythonVersion { minor: 11 }));
        set.prefer(Some(PythonVersion { minor: 10 }));
        assert_eq!(set.default_version(), Some(PythonVersion { minor: 10 }));
        set.prefer(Some(PythonVersion { minor: 13 }));
        assert_eq!(set.default_version(), Some(PythonVersion { minor: 11 }), "unavailable preference is ignored");
        assert_eq!(Interpreters::default().default_version(), None);
    }

    #[test]
    fn missing_versions_name_the_available_ones() {
        let set = Interpreters::from_list([interp(11), interp(12)]);
        assert_eq!(set.get(None).unwrap().version.minor, 12);
        assert_eq!(
            set.get(Some(PythonVersion { minor: 10 })).unwrap_err(),
            "python 3.10 is not available on this server; available: 3.11, 3.12"
        );
    }

    #[test]
    fn scripts_are_shims() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("python3.12");
        std::fs::write(&script, "#!/usr/bin/env bash\nexec pyenv exec python3.12 \"$@\"\n").unwrap();
        assert!(is_shim(&script, None));
        assert!(is_shim(Path::new("/x/.pyenv/shims/python3.12"), Some(Path::new("/x/.pyenv"))));
    }

    #[tokio::test]
    async fn discovers_real_interpreters() {
        let found = Interpreters::discover(&Discovery::everywhere()).await;
        assert!(!found.versions().is_empty(), "this machine has at least one CPython 3.10-3.13");
        for i in found.all() {
            assert!(i.executable.is_absolute());
            assert!(!is_shim(&i.executable, None));
            assert!(i.full_version.starts_with(&i.version.to_string()));
            assert!(i.stdlib.contains("os") && i.stdlib.contains("cProfile") && !i.stdlib.contains("numpy"));
        }
    }
}
