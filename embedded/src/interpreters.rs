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
use pyexec_sandbox::{Bind, RunSpec};
use serde::Serialize;

/// Where an interpreter installed outside `/usr` (pyenv's `~/.pyenv/versions/3.X.Y`, a custom `--prefix`) appears
/// inside sandboxes: the official Python images' prefix, so that tracebacks read `/usr/local/lib/python3.X/...`
/// as with the original, and programs learn nothing of the host's layout. The host's own `/usr/local` is hidden
/// in those runs.
pub const NEUTRAL_PREFIX: &str = "/usr/local";

/// The dynamic loader's search path variable.
pub const LIBRARY_PATH_VAR: &str = "LD_LIBRARY_PATH";

/// A usable interpreter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Interpreter {
    /// `3.X`.
    pub version: PythonVersion,
    /// `3.X.Y`.
    pub full_version: String,
    /// Real path of the executable on the host (no symbolic links, no shims).
    pub executable: PathBuf,
    /// Its path inside sandboxes: under [`NEUTRAL_PREFIX`] when its prefix is relocated there.
    pub sandbox_executable: PathBuf,
    /// Read-only mounts that make it work inside sandboxes (its prefix, when outside `/usr`).
    #[serde(skip)]
    pub mounts: Vec<Bind>,
    /// Environment variables it needs inside sandboxes (the library path of a relocated shared build).
    #[serde(skip)]
    pub sandbox_env: Vec<(String, String)>,
    /// Where it was found: `config`, `PATH` or `pyenv`.
    pub source: &'static str,
    /// Its `sys.stdlib_module_names`: never installed as dependencies.
    #[serde(skip)]
    pub stdlib: Arc<BTreeSet<String>>,
    /// The eval and session runners compiled by it, when that worked (see [`CompiledRunners`]).
    #[serde(skip)]
    pub runners: Option<Arc<CompiledRunners>>,
}

/// The runners as bytecode of one interpreter. A sandbox gets them as sourceless `.pyc` files: CPython runs and
/// imports those without compiling, which a run would otherwise do on every start (milliseconds for the eval runner,
/// the largest part of a trivial run's overhead over bare CPython).
#[derive(Debug, PartialEq, Eq)]
pub struct CompiledRunners {
    /// `core/python/eval_runner.py`.
    pub eval: Vec<u8>,
    /// `core/python/session_runner.py`.
    pub session: Vec<u8>,
}

/// Compiles the sources on stdin (`{"name": [path, source]}`) into `.pyc` images (16-byte header, then the code),
/// base64 on stdout. The code keeps the source's path as its file name, so tracebacks read the same.
const COMPILE: &str = r#"
import base64, json, sys
from importlib import _bootstrap_external as b
out = {}
for name, (path, text) in json.load(sys.stdin).items():
    code = compile(text, path, "exec", dont_inherit=True)
    out[name] = base64.b64encode(b._code_to_timestamp_pyc(code, 0, 0)).decode()
json.dump(out, sys.stdout)
"#;

/// The runners compiled by `executable`.
async fn compile_runners(executable: &Path) -> Result<CompiledRunners, String> {
    use base64::Engine;
    use tokio::io::AsyncWriteExt;
    let sources = serde_json::json!({
        "eval": [pyexec_core::eval::EVAL_RUNNER_PATH, pyexec_core::eval::EVAL_RUNNER_SOURCE],
        "session": [pyexec_core::session::SESSION_RUNNER_PATH, pyexec_core::session::SESSION_RUNNER_SOURCE],
    });
    let mut child = tokio::process::Command::new(executable)
        .args(["-I", "-S", "-c", COMPILE])
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let input = sources.to_string();
    let writing = async move { stdin.write_all(input.as_bytes()).await };
    let (written, output) =
        tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(writing, child.wait_with_output()) })
            .await
            .map_err(|_| "did not answer within 30 s".to_string())?;
    written.map_err(|e| e.to_string())?;
    let output = output.map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
    }
    let answer: BTreeMap<String, String> = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let decode = |name: &str| -> Result<Vec<u8>, String> {
        let text = answer.get(name).ok_or_else(|| format!("no {name} runner"))?;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| e.to_string())
    };
    Ok(CompiledRunners { eval: decode("eval")?, session: decode("session")? })
}

impl Interpreter {
    /// A sandbox run of this interpreter with `args`, wired as every run of it is: its path, mounts and
    /// environment inside the sandbox.
    pub fn run_spec(&self, args: Vec<String>) -> RunSpec {
        let mut spec = RunSpec::new(&self.sandbox_executable);
        spec.args = args;
        spec.binds = self.mounts.clone();
        spec.env = self.sandbox_env.clone();
        spec
    }
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

const PROBE: &str = "import json, sys, sysconfig; print(json.dumps({'version': list(sys.version_info[:3]), \
                     'prefix': sys.prefix, 'base_prefix': sys.base_prefix, \
                     'shared': bool(sysconfig.get_config_var('Py_ENABLE_SHARED')), \
                     'stdlib': sorted(getattr(sys, 'stdlib_module_names', ()))}))";

#[derive(serde::Deserialize)]
struct ProbeAnswer {
    version: Vec<u32>,
    prefix: PathBuf,
    base_prefix: PathBuf,
    /// Built with `--enable-shared`: the executable loads `libpython` from its prefix's `lib`.
    shared: bool,
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
    let canonical = |dir: PathBuf| std::fs::canonicalize(&dir).unwrap_or(dir);
    let (sandbox_executable, mounts) = placement(&executable, canonical(answer.prefix), canonical(answer.base_prefix));
    // A shared build finds libpython through the absolute run path it was linked with (pyenv's, say), which
    // does not exist at the neutral prefix: point the loader at the relocated `lib`.
    let relocated = mounts.iter().any(|m| m.target == Path::new(NEUTRAL_PREFIX));
    let sandbox_env = if relocated && answer.shared {
        vec![(LIBRARY_PATH_VAR.to_owned(), format!("{NEUTRAL_PREFIX}/lib"))]
    } else {
        Vec::new()
    };
    let full_version = answer.version.iter().map(ToString::to_string).collect::<Vec<_>>().join(".");
    let runners = match compile_runners(&executable).await {
        Ok(runners) => Some(Arc::new(runners)),
        Err(e) => {
            tracing::warn!(executable = %executable.display(), error = %e, "runs compile the runner on every start");
            None
        }
    };
    Ok(Interpreter {
        version,
        full_version,
        executable,
        sandbox_executable,
        mounts,
        sandbox_env,
        source,
        stdlib: Arc::new(answer.stdlib),
        runners,
    })
}

/// Where the interpreter lives inside sandboxes, and the mounts that put it there. A self-contained installation
/// outside `/usr` (its executable under its own prefix, not a virtual environment) moves to [`NEUTRAL_PREFIX`]:
/// CPython finds its standard library relative to the executable, so it runs unchanged. Anything else (a virtual
/// environment as the configured interpreter, an executable outside its prefix) keeps its host paths.
fn placement(executable: &Path, prefix: PathBuf, base_prefix: PathBuf) -> (PathBuf, Vec<Bind>) {
    if prefix == base_prefix
        && !prefix.starts_with("/usr")
        && let Ok(relative) = executable.strip_prefix(&prefix)
    {
        return (Path::new(NEUTRAL_PREFIX).join(relative), vec![Bind::at(prefix, NEUTRAL_PREFIX)]);
    }
    let mut mounts: Vec<Bind> = Vec::new();
    for dir in [prefix, base_prefix] {
        if !dir.starts_with("/usr") && !mounts.iter().any(|m| m.source == dir) {
            mounts.push(Bind::same(dir));
        }
    }
    (executable.to_owned(), mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interp(minor: u8) -> Interpreter {
        Interpreter {
            version: PythonVersion { minor },
            full_version: format!("3.{minor}.0"),
            executable: PathBuf::from(format!("/usr/bin/python3.{minor}")),
            sandbox_executable: PathBuf::from(format!("/usr/bin/python3.{minor}")),
            mounts: Vec::new(),
            sandbox_env: Vec::new(),
            source: "config",
            stdlib: Arc::default(),
            runners: None,
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

    #[test]
    fn installations_outside_usr_move_to_the_neutral_prefix() {
        let (exe, mounts) = placement(
            Path::new("/home/u/.pyenv/versions/3.12.4/bin/python3.12"),
            PathBuf::from("/home/u/.pyenv/versions/3.12.4"),
            PathBuf::from("/home/u/.pyenv/versions/3.12.4"),
        );
        assert_eq!(exe, Path::new("/usr/local/bin/python3.12"));
        assert_eq!(mounts, vec![Bind::at("/home/u/.pyenv/versions/3.12.4", "/usr/local")]);

        let (exe, mounts) = placement(Path::new("/usr/bin/python3.11"), "/usr".into(), "/usr".into());
        assert_eq!((exe.as_path(), mounts.len()), (Path::new("/usr/bin/python3.11"), 0));

        // A virtual environment keeps its paths: its configuration names the base interpreter's.
        let (exe, mounts) = placement(Path::new("/srv/venv/bin/python3"), "/srv/venv".into(), "/opt/py".into());
        assert_eq!(exe, Path::new("/srv/venv/bin/python3"));
        assert_eq!(mounts, vec![Bind::same("/srv/venv"), Bind::same("/opt/py")]);
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
