//! The installer sandbox: one uv run that builds one environment.
//!
//! It is a sandbox like a program's run, with what installing needs and nothing more: the interpreter, uv (at a
//! path of its own), the package cache and the environment being built (the only writable mounts), the
//! requirements as a generated file, network to the package index's hosts only (their addresses resolved here and
//! pinned, since the sandbox gets no DNS), and the stable service uid so that the cache stays writable for the
//! next install. Its limits are the installer's settings, not a program's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pyexec_sandbox::{Bind, ExitStatus, GeneratedFile, HostEntry, Identity, Network, RunLimits, RunSpec, Sandbox};

use super::{ENV_MOUNT, InstallError, uv_log};
use crate::interpreters::Interpreter;

const MIB: u64 = 1 << 20;

/// Where the installer sees the package cache.
const CACHE_MOUNT: &str = "/opt/pyexec/uv-cache";
/// Where the installer finds uv.
const UV_MOUNT_DIR: &str = "/opt/pyexec/bin";
/// Where the installer finds the requirements.
const REQUIREMENTS_FILE: &str = "/opt/pyexec/requirements.txt";

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

/// PyPI's index, whose files live on `files.pythonhosted.org`.
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

/// The real path of uv: the configured one, or the first on `PATH`.
pub(super) fn find_uv(configured: &Option<PathBuf>) -> Result<PathBuf, String> {
    let path = match configured {
        Some(p) => p.clone(),
        None => std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("uv"))
            .find(|p| p.is_file())
            .ok_or("uv is not installed (scripts/setup.sh installs the pinned version; or set PYEXEC_UV)")?,
    };
    std::fs::canonicalize(&path).map_err(|e| format!("uv at {}: {e}", path.display()))
}

/// The addresses of the index's hosts, pinned for the installer.
pub(super) async fn index_hosts(config: &InstallerConfig) -> Result<Vec<HostEntry>, InstallError> {
    let bad = |why: String| InstallError::Unavailable(format!("PYEXEC_INDEX_URL {:?}: {why}", config.index_url));
    let url = url::Url::parse(config.index_url.trim()).map_err(|e| bad(e.to_string()))?;
    let host = url.host_str().ok_or_else(|| bad("no host".into()))?.trim_matches(['[', ']']).to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let mut out = Vec::new();
    let others = config.file_hosts(&host);
    for name in std::iter::once(host).chain(others) {
        let addrs: BTreeSet<std::net::IpAddr> = tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| InstallError::failed(format!("cannot resolve the package index host {name}: {e}"), ""))?
            .map(|a| a.ip())
            .collect();
        out.push(HostEntry { name, addrs: addrs.into_iter().collect() });
    }
    Ok(out)
}

/// One install: what the installer sandbox is made of.
pub(super) struct Install<'a> {
    pub config: &'a InstallerConfig,
    pub interpreter: &'a Interpreter,
    /// Normalized requirements.
    pub requirements: &'a str,
    /// uv on the host.
    pub uv: &'a Path,
    /// The package cache on the host.
    pub packages: &'a Path,
    /// The environment's directory on the host, empty.
    pub env: &'a Path,
    /// The index's hosts and their addresses.
    pub hosts: Vec<HostEntry>,
}

impl Install<'_> {
    /// The installer's sandbox run.
    pub(super) fn run_spec(&self) -> RunSpec {
        let config = self.config;
        let binary = if config.allow_sdist { "" } else { "--only-binary :all:" };
        // Bytecode is compiled by the base interpreter without `site`, so that no `.pth` file of a package runs at
        // install time; nothing asks the environment's own interpreter anything once packages are in it.
        // Every detected name may have been left out (the index had none of them): then the environment is the
        // bare interpreter, and uv is not asked to install an empty list, which it refuses.
        let pip = if self.requirements.trim().is_empty() {
            String::new()
        } else {
            format!(
                "uv pip install --quiet --python {ENV_MOUNT}/bin/python --default-index \"$PYEXEC_INDEX\" {binary} \
                 -r {REQUIREMENTS_FILE}\n"
            )
        };
        let script = format!(
            "set -eu\n\
             uv venv --quiet --allow-existing --python \"$PYEXEC_PYTHON\" {ENV_MOUNT}\n\
             {pip}\
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
            ("PYEXEC_PYTHON".into(), self.interpreter.sandbox_executable.display().to_string()),
            ("PYEXEC_INDEX".into(), config.index_url.clone()),
        ];
        run.env.extend(self.interpreter.sandbox_env.iter().cloned());
        if Path::new("/etc/ssl/certs/ca-certificates.crt").exists() {
            run.env.push(("SSL_CERT_FILE".into(), "/etc/ssl/certs/ca-certificates.crt".into()));
        }
        run.files.push(GeneratedFile {
            path: PathBuf::from(REQUIREMENTS_FILE),
            content: format!("{}\n", self.requirements).into_bytes(),
            mode: 0o644,
        });
        run.binds = self.interpreter.mounts.clone();
        // uv at a path of its own: the interpreter may cover the host's /usr/local, where uv usually lives.
        run.binds.push(Bind::at(self.uv, Path::new(UV_MOUNT_DIR).join("uv")));
        run.binds.push(Bind { writable: true, ..Bind::at(self.packages, CACHE_MOUNT) });
        run.binds.push(Bind { writable: true, ..Bind::at(self.env, ENV_MOUNT) });
        run.network = Network::Hosts(self.hosts.clone());
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
            extra_bytes: 1 << 20,
            background: false,
        };
        run
    }

    /// Runs the installer; a failure says why in one line, with uv's log for `stderr`. `key` names the
    /// environment in the log.
    pub(super) async fn run(&self, sandbox: &Sandbox, key: &str) -> Result<(), InstallError> {
        let outcome = match sandbox.run(self.run_spec(), None, Default::default()).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(env = key, error = %e, "the installer sandbox failed");
                return Err(InstallError::failed(format!("the installer sandbox failed: {}", e.client_message()), ""));
            }
        };
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&outcome.stdout.bytes),
            String::from_utf8_lossy(&outcome.stderr.bytes)
        );
        if outcome.timed_out || outcome.status != ExitStatus::Exited(0) {
            return Err(if outcome.timed_out {
                InstallError::failed(format!("the install took longer than {}s", self.config.timeout.as_secs()), &log)
            } else if outcome.oom_killed {
                InstallError::failed("the installer ran out of memory".to_string(), &log)
            } else {
                InstallError::explained(uv_log::summarize(&log, self.config.allow_sdist), &log)
            });
        }
        Ok(())
    }
}

/// `name==version` of the distributions in an environment, from the names of their `.dist-info` directories
/// (names only: the environment's files were written by untrusted code and are not read).
pub(super) fn installed_distributions(env: &Path) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn interpreter() -> Interpreter {
        Interpreter {
            version: pyexec_core::spec::PythonVersion { minor: 12 },
            full_version: "3.12.7".into(),
            executable: "/opt/python/bin/python3.12".into(),
            sandbox_executable: "/usr/local/bin/python3.12".into(),
            mounts: vec![Bind::at("/opt/python", "/usr/local")],
            sandbox_env: vec![("LD_LIBRARY_PATH".into(), "/usr/local/lib".into())],
            source: "config",
            stdlib: Arc::default(),
            runners: None,
        }
    }

    fn spec(config: &InstallerConfig) -> RunSpec {
        let interpreter = interpreter();
        let hosts = vec![HostEntry { name: "pypi.org".into(), addrs: vec!["203.0.113.5".parse().unwrap()] }];
        let install = Install {
            config,
            interpreter: &interpreter,
            requirements: "numpy\nsix",
            uv: Path::new("/host/bin/uv"),
            packages: Path::new("/host/cache"),
            env: Path::new("/host/envs/abc"),
            hosts,
        };
        install.run_spec()
    }

    fn env<'a>(spec: &'a RunSpec, name: &str) -> Option<&'a str> {
        spec.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn only_the_cache_and_the_environment_are_writable() {
        let spec = spec(&InstallerConfig::new("/host"));
        assert_eq!(
            spec.binds,
            [
                Bind::at("/opt/python", "/usr/local"),
                Bind::at("/host/bin/uv", "/opt/pyexec/bin/uv"),
                Bind { writable: true, ..Bind::at("/host/cache", CACHE_MOUNT) },
                Bind { writable: true, ..Bind::at("/host/envs/abc", ENV_MOUNT) },
            ]
        );
        assert_eq!(spec.files.len(), 1);
        assert_eq!(spec.files[0].path, Path::new(REQUIREMENTS_FILE));
        assert_eq!(spec.files[0].content, b"numpy\nsix\n");
        assert!(spec.workspace.is_none());
    }

    #[test]
    fn the_index_hosts_are_the_only_network_and_the_service_uid_runs_it() {
        let config = InstallerConfig {
            timeout: Duration::from_secs(30),
            memory_bytes: 512 * MIB,
            ..InstallerConfig::new("/host")
        };
        let spec = spec(&config);
        let Network::Hosts(hosts) = &spec.network else { panic!("{:?}", spec.network) };
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].name, "pypi.org");
        assert_eq!(spec.identity, Identity::Service);
        assert_eq!((spec.limits.timeout, spec.limits.memory_bytes), (Duration::from_secs(30), 512 * MIB));
    }

    #[test]
    fn the_script_refuses_sdists_unless_allowed() {
        let wheels = spec(&InstallerConfig::new("/host"));
        assert_eq!(wheels.program, Path::new("/bin/sh"));
        assert!(wheels.args[1].contains("--only-binary :all:"), "{}", wheels.args[1]);
        assert!(wheels.args[1].contains("-I -S -m compileall"), "bytecode compiled without site");
        let sdists = spec(&InstallerConfig { allow_sdist: true, ..InstallerConfig::new("/host") });
        assert!(!sdists.args[1].contains("--only-binary"));
    }

    #[test]
    fn uv_gets_its_settings_and_the_interpreter_its_environment() {
        let config =
            InstallerConfig { index_url: "https://mirror.example/simple".into(), ..InstallerConfig::new("/h") };
        let spec = spec(&config);
        assert_eq!(env(&spec, "PYEXEC_INDEX"), Some("https://mirror.example/simple"));
        assert_eq!(env(&spec, "PYEXEC_PYTHON"), Some("/usr/local/bin/python3.12"));
        assert_eq!(env(&spec, "UV_CACHE_DIR"), Some(CACHE_MOUNT));
        assert_eq!(env(&spec, "UV_LINK_MODE"), Some("copy"), "environments never share files with the cache");
        assert_eq!(env(&spec, "UV_PYTHON_DOWNLOADS"), Some("never"));
        assert_eq!(env(&spec, "LD_LIBRARY_PATH"), Some("/usr/local/lib"));
        assert!(env(&spec, "PATH").is_some_and(|p| p.starts_with(UV_MOUNT_DIR)));
    }

    #[test]
    fn pypi_brings_its_file_host() {
        let config = InstallerConfig::new("/host");
        assert_eq!(config.file_hosts("pypi.org"), [PYPI_FILES_HOST]);
        assert!(config.file_hosts("mirror.example").is_empty());
        let config = InstallerConfig { extra_hosts: vec![PYPI_FILES_HOST.into()], ..config };
        assert_eq!(config.file_hosts("pypi.org"), [PYPI_FILES_HOST], "not twice");
    }

    #[test]
    fn installed_packages_are_read_from_dist_info_names() {
        let env = tempfile::tempdir().unwrap();
        let site = env.path().join("lib/python3.12/site-packages");
        for name in ["six-1.17.0.dist-info", "typing_extensions-4.12.2.dist-info", "Babel-2.16.0.dist-info", "six.py"] {
            std::fs::create_dir_all(site.join(name)).unwrap();
        }
        assert_eq!(installed_distributions(env.path()), ["Babel==2.16.0", "six==1.17.0", "typing-extensions==4.12.2"]);
        assert!(installed_distributions(Path::new("/nonexistent")).is_empty());
    }
}
