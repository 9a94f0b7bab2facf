//! The operator's configuration: a YAML file (the Helm chart renders it into a ConfigMap), every field optional
//! with a safe default. It decides which images may run, where packages may come from, and what the cluster's
//! private ranges are.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort};
use pyexec_core::pod::FilesCaps;
use serde::{Deserialize, Serialize};

/// The largest `outputLimitBytes`: stdout and stderr, base64-framed (4/3), must fit into the part of the main
/// container's log the operator reads back (12 MiB).
pub const MAX_OUTPUT_LIMIT_BYTES: u64 = 4 << 20;

/// Everything the operator can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorConfig {
    /// Image per `pythonVersion`.
    pub images: BTreeMap<String, String>,
    /// The version used when a resource names neither `pythonVersion` nor `image`.
    pub default_python_version: String,
    /// More images a resource may name in `image` (the values of `images` are always allowed).
    pub allowed_images: Vec<String>,
    /// RuntimeClasses a resource may ask for (gVisor, Kata).
    pub allowed_runtime_classes: Vec<String>,
    /// Run Pods in a user namespace (`hostUsers: false`; Kubernetes 1.33+ with a supporting runtime).
    pub host_users: bool,
    /// Where requirements are installed from; without it, executions that need packages fail clearly.
    pub package_index: Option<PackageIndex>,
    /// Egress of `network: egress` executions.
    pub egress: EgressConfig,
    /// The opt-in Docker path.
    pub docker: DockerConfig,
    /// Upper bounds of a resource's limits (a resource asking for more fails with a clear status).
    pub max_limits: MaxLimits,
    /// Size of each Pod's `/tmp`, MiB.
    #[serde(rename = "tmpMB")]
    pub tmp_mb: u64,
    /// Bytes of stdout and of stderr the runner keeps (the status keeps 64 KiB of them; the log store all).
    pub output_limit_bytes: u64,
    /// Seconds a Pod gets beyond the program's timeout to receive its files and start (its
    /// `activeDeadlineSeconds` is the timeout plus this, plus the install timeout when it installs packages).
    pub startup_seconds: u64,
    /// Seconds an execution waits for what it references to appear (GitOps tools apply objects in any order):
    /// a missing `source.configMap`, or a Pod whose container cannot be configured yet
    /// (`CreateContainerConfigError`: a Secret or ConfigMap it names does not exist), counted from the resource's
    /// or the Pod's creation. Then the execution fails.
    pub missing_reference_grace_seconds: u64,
    /// Delete finished executions after this many seconds unless they say otherwise (`None`: keep them).
    pub default_ttl_seconds_after_finished: Option<u32>,
    /// Where full outputs are kept (see `status.logsRef`).
    pub logs: LogsConfig,
    /// The files executions create or change under `/work`, kept in the log store (only where there is one).
    pub files: FilesConfig,
    /// Where uploaded archives are fetched from (the API server).
    pub archives: Option<ArchiveStore>,
    /// Image pull policy of execution Pods.
    pub image_pull_policy: Option<String>,
    /// Most reconciliations run at once (at least 1).
    pub concurrency: u16,
    /// Refuse to start when a namespace the operator runs executions in has no default-deny NetworkPolicy for
    /// execution Pods (otherwise a missing one is only a loud warning). The Helm chart creates that policy and
    /// sets this.
    pub require_default_deny: bool,
    /// Let resources take environment variables from Secrets of their namespace (`env[].valueFrom.secretKeyRef`).
    /// Off: whoever may create a PythonExecution could otherwise read any Secret of the namespace through the
    /// operator, so such resources are refused.
    pub allow_secret_env: bool,
    /// How fast a warm pool (`PythonExecutionPool`) refills: at most `pods` Pod creations per pool every
    /// `intervalSeconds`, so that a burst of claims does not turn into a burst of creates that slows the API server
    /// for the executions waiting on it.
    pub pool_refill: PoolRefill,
}

/// The rate limit of a warm pool's Pod creations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolRefill {
    /// Most Pods one pool creates per interval (at least 1).
    pub pods: u32,
    /// The interval, seconds (at least 1).
    pub interval_seconds: u64,
}

impl Default for PoolRefill {
    fn default() -> Self {
        PoolRefill { pods: 5, interval_seconds: 1 }
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig {
            images: ["3.10", "3.11", "3.12", "3.13"]
                .iter()
                .map(|v| (v.to_string(), format!("python:{v}-slim")))
                .collect(),
            default_python_version: "3.12".into(),
            allowed_images: Vec::new(),
            allowed_runtime_classes: Vec::new(),
            host_users: false,
            package_index: None,
            egress: EgressConfig::default(),
            docker: DockerConfig::default(),
            max_limits: MaxLimits::default(),
            tmp_mb: 100,
            output_limit_bytes: 1 << 20,
            startup_seconds: 120,
            missing_reference_grace_seconds: 60,
            default_ttl_seconds_after_finished: None,
            logs: LogsConfig::default(),
            archives: None,
            image_pull_policy: None,
            concurrency: 8,
            require_default_deny: false,
            allow_secret_env: false,
            pool_refill: PoolRefill::default(),
            files: FilesConfig::default(),
        }
    }
}

/// The caps of the files an execution leaves in `/work` that are kept (docs/kubernetes.md, "Files and display outputs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct FilesConfig {
    /// Most bytes of file content kept per execution; 0: no files are kept. Lower than the embedded backend's
    /// 64 MiB because the files travel base64-encoded through the container log (4/3 of their size), which the
    /// operator follows and reads back, and which the kubelet rotates.
    pub max_bytes: u64,
    /// Most files kept per execution; 0: none are.
    pub max_count: u64,
}

/// Default of `files.maxBytes`.
pub const DEFAULT_FILES_MAX_BYTES: u64 = 8 << 20;
/// The largest `files.maxBytes`: the tar crosses the container log, which is read back whole.
pub const MAX_FILES_MAX_BYTES: u64 = 64 << 20;
/// The largest `files.maxCount` (each file may add up to 8 KiB of tar headers to what crosses the log).
pub const MAX_FILES_MAX_COUNT: u64 = 10_000;

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig { max_bytes: DEFAULT_FILES_MAX_BYTES, max_count: 1000 }
    }
}

/// A package index or proxy that install containers may reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageIndex {
    /// The simple-API URL (`PIP_INDEX_URL`), for example an in-cluster devpi or Artifactory.
    pub url: String,
    /// Where it is, for the NetworkPolicy: namespace/pod selectors of an in-cluster proxy, or ipBlocks.
    pub egress_to: Vec<NetworkPolicyPeer>,
    /// Its ports (default: TCP 443 and 80).
    #[serde(default)]
    pub ports: Vec<NetworkPolicyPort>,
    /// Let pip build packages that have no wheel (runs their build code in the install container).
    #[serde(default)]
    pub allow_sdist: bool,
    /// Seconds an install may take.
    #[serde(default = "default_install_timeout")]
    pub timeout_seconds: u64,
    /// Memory of the install container, MiB.
    #[serde(rename = "memoryMB", default = "default_install_memory")]
    pub memory_mb: u64,
    /// Size of the dependencies directory, MiB.
    #[serde(rename = "sizeMB", default = "default_deps_size")]
    pub size_mb: u64,
}

fn default_install_timeout() -> u64 {
    300
}
fn default_install_memory() -> u64 {
    1024
}
fn default_deps_size() -> u64 {
    2048
}

/// Egress of executions that ask for network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressConfig {
    /// Ranges never reachable, besides the private, loopback, link-local (cloud metadata), CGNAT, multicast and
    /// reserved ones that are always refused: put the cluster's Pod and Service CIDRs here when they are public.
    pub blocked_cidrs: Vec<String>,
    /// DNS servers executions with network (and install containers) may query; default: kube-dns.
    pub dns: Vec<NetworkPolicyPeer>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        let kube_dns: NetworkPolicyPeer = serde_json::from_value(serde_json::json!({
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}
        }))
        .unwrap_or_default();
        EgressConfig { blocked_cidrs: Vec::new(), dns: vec![kube_dns] }
    }
}

/// The Docker path: a privileged Docker-in-Docker daemon beside the program, the one exception to Pod Security
/// "restricted". Opt-in twice: `enabled`, and the namespaces it may be used in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct DockerConfig {
    /// Allow `docker: true` (a privileged Docker-in-Docker sidecar: the namespace must allow privileged Pods).
    pub enabled: bool,
    /// The namespaces whose executions may ask for Docker (their Pod Security level must be "privileged"). Empty:
    /// none, even when `enabled`.
    pub namespaces: Vec<String>,
    /// The sidecar's image.
    pub image: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig { enabled: false, namespaces: Vec::new(), image: "docker:27-dind".into() }
    }
}

#[cfg(test)]
impl OperatorConfig {
    /// The default configuration with the Docker path enabled in `namespaces` (for tests of several modules).
    pub(crate) fn with_docker_in(namespaces: &[&str]) -> OperatorConfig {
        let namespaces = namespaces.iter().map(|n| n.to_string()).collect();
        OperatorConfig {
            docker: DockerConfig { enabled: true, namespaces, ..Default::default() },
            ..Default::default()
        }
    }
}

impl DockerConfig {
    /// Whether executions of `namespace` may use the Docker path.
    pub fn allowed_in(&self, namespace: Option<&str>) -> bool {
        self.enabled && namespace.is_some_and(|ns| self.namespaces.iter().any(|n| n == ns))
    }
}

/// Upper bounds of a resource's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct MaxLimits {
    /// Longest timeout a resource may ask for, in seconds.
    pub timeout_seconds: u64,
    /// Most memory, in MiB.
    #[serde(rename = "memoryMB")]
    pub memory_mb: u64,
    /// Most CPU, in millicores.
    pub cpu_millis: u64,
    /// Largest `/work`, in MiB.
    #[serde(rename = "diskMB")]
    pub disk_mb: u64,
}

impl Default for MaxLimits {
    fn default() -> Self {
        MaxLimits { timeout_seconds: 3600, memory_mb: 16384, cpu_millis: 16000, disk_mb: 16384 }
    }
}

/// The log store.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct LogsConfig {
    /// Directory for full outputs (a volume); none: only the status's 64 KiB are kept.
    pub dir: Option<PathBuf>,
    /// The URL this operator's HTTP server is reached at (for `status.logsRef`), e.g.
    /// `http://pyexec-operator.pyexec-system.svc:8081`.
    pub url: Option<String>,
    /// Directory of per-namespace tokens (a mounted Secret, one key per namespace): the file named after a
    /// namespace holds the bearer token that reads the outputs of that namespace's executions, and no others.
    pub tokens_dir: Option<PathBuf>,
    /// File holding one bearer token that reads the outputs of every namespace without a token of its own in
    /// `tokensDir`: the fallback for configurations that predate per-namespace tokens.
    pub token_file: Option<PathBuf>,
}

/// Where uploaded archives are fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchiveStore {
    /// Base URL; the archive `id` is appended (`<url>/<id>`).
    pub url: String,
    /// File holding the bearer token to send.
    pub token_file: Option<PathBuf>,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable or not YAML of this shape.
    #[error("the configuration {path} cannot be read: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Readable but inconsistent.
    #[error("configuration error: {0}")]
    Invalid(String),
}

impl OperatorConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &std::path::Path) -> Result<OperatorConfig, ConfigError> {
        let read = |reason: String| ConfigError::Read { path: path.to_owned(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| read(e.to_string()))?;
        let config: OperatorConfig = serde_yaml_ng::from_str(&text).map_err(|e| read(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    /// Checks that the configuration makes sense.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !self.images.contains_key(&self.default_python_version) {
            return Err(ConfigError::Invalid(format!(
                "defaultPythonVersion {:?} has no entry in images",
                self.default_python_version
            )));
        }
        if let Some(index) = &self.package_index {
            if index.egress_to.is_empty() {
                return Err(ConfigError::Invalid(
                    "packageIndex.egressTo is empty: say where the index is, so that only it is reachable".into(),
                ));
            }
            if !(index.url.starts_with("http://") || index.url.starts_with("https://")) {
                return Err(ConfigError::Invalid(format!("packageIndex.url {:?} is not an http(s) URL", index.url)));
            }
        }
        if self.pool_refill.pods == 0 || self.pool_refill.interval_seconds == 0 {
            return Err(ConfigError::Invalid(
                "poolRefill.pods and poolRefill.intervalSeconds must be at least 1 (a pool that never refills is \
                 replicas: 0)"
                    .into(),
            ));
        }
        if self.concurrency == 0 {
            return Err(ConfigError::Invalid("concurrency must be at least 1 (reconciliations run at once)".into()));
        }
        if self.output_limit_bytes == 0 || self.output_limit_bytes > MAX_OUTPUT_LIMIT_BYTES {
            return Err(ConfigError::Invalid(format!(
                "outputLimitBytes {} is outside 1..={MAX_OUTPUT_LIMIT_BYTES} (the Pod's log, which carries the output, \
                 is read back up to a fixed size)",
                self.output_limit_bytes
            )));
        }
        if let Some(ns) = self.docker.namespaces.iter().find(|n| n.is_empty() || n.as_str() == "*") {
            return Err(ConfigError::Invalid(format!(
                "docker.namespaces lists {ns:?}: name each namespace that may use the Docker path"
            )));
        }
        if self.logs.dir.is_some() != self.logs.url.is_some() {
            return Err(ConfigError::Invalid("logs.dir and logs.url go together".into()));
        }
        if self.files.max_bytes > MAX_FILES_MAX_BYTES || self.files.max_count > MAX_FILES_MAX_COUNT {
            return Err(ConfigError::Invalid(format!(
                "files.maxBytes {} or files.maxCount {} is over its maximum ({MAX_FILES_MAX_BYTES} bytes, \
                 {MAX_FILES_MAX_COUNT} files): the files cross the Pod's log, which is read back whole",
                self.files.max_bytes, self.files.max_count
            )));
        }
        Ok(())
    }

    /// The caps under which executions report the files they write, `None` when none are kept: without a log
    /// store there is nowhere to keep them, and a cap of 0 turns them off.
    pub fn files_caps(&self) -> Option<FilesCaps> {
        let max_count = usize::try_from(self.files.max_count).ok()?;
        (self.logs.dir.is_some() && self.files.max_bytes > 0 && max_count > 0)
            .then_some(FilesCaps { max_bytes: self.files.max_bytes, max_count })
    }

    /// The most bytes of tar an execution's runner sends for its files (0 when none are kept): what the log carrying
    /// them may hold beyond the output.
    pub fn files_archive_bytes(&self) -> u64 {
        self.files_caps().map_or(0, |c| pyexec_core::files_out::max_archive_bytes(c.max_bytes, c.max_count))
    }

    /// Whether `image` may run.
    pub fn image_allowed(&self, image: &str) -> bool {
        self.images.values().any(|i| i == image) || self.allowed_images.iter().any(|i| i == image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_files_are_strict() {
        let config = OperatorConfig::default();
        config.check().unwrap();
        assert!(config.package_index.is_none() && !config.docker.enabled && !config.host_users);
        assert!(!config.require_default_deny && !config.allow_secret_env);
        assert!(config.image_allowed("python:3.12-slim") && !config.image_allowed("evil:latest"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "images: {\"3.12\": \"python:3.12-slim\"}\nunknownKey: 1\n").unwrap();
        assert!(OperatorConfig::load(&path).unwrap_err().to_string().contains("unknownKey"));
        std::fs::write(&path, "packageIndex: {url: \"https://pypi.internal/simple\", egressTo: []}\n").unwrap();
        assert!(OperatorConfig::load(&path).unwrap_err().to_string().contains("egressTo"));
        std::fs::write(
            &path,
            "packageIndex:\n  url: https://pypi.internal/simple\n  egressTo:\n  - ipBlock: {cidr: 10.1.2.3/32}\n",
        )
        .unwrap();
        let loaded = OperatorConfig::load(&path).unwrap();
        assert_eq!(loaded.package_index.unwrap().timeout_seconds, 300);
        assert_eq!(loaded.concurrency, 8, "bounded by default");
        std::fs::write(&path, "concurrency: 0\n").unwrap();
        assert!(OperatorConfig::load(&path).unwrap_err().to_string().contains("concurrency"));
        std::fs::write(&path, "concurrency: 2\n").unwrap();
        assert_eq!(OperatorConfig::load(&path).unwrap().concurrency, 2);
    }

    #[test]
    fn the_output_limit_has_a_maximum() {
        let mut config = OperatorConfig { output_limit_bytes: MAX_OUTPUT_LIMIT_BYTES, ..OperatorConfig::default() };
        config.check().unwrap();
        config.output_limit_bytes = MAX_OUTPUT_LIMIT_BYTES + 1;
        assert!(config.check().unwrap_err().to_string().contains("outputLimitBytes"));
        config.output_limit_bytes = 0;
        assert!(config.check().is_err());
        assert_eq!(OperatorConfig::default().missing_reference_grace_seconds, 60);
    }

    #[test]
    fn files_are_kept_only_with_a_log_store_and_within_bounds() {
        let mut config = OperatorConfig::default();
        assert_eq!((config.files.max_bytes, config.files.max_count), (8 << 20, 1000));
        assert_eq!(config.files_caps(), None, "no log store: nowhere to keep them");
        assert_eq!(config.files_archive_bytes(), 0);
        config.logs =
            LogsConfig { dir: Some("/logs".into()), url: Some("http://op:8081".into()), ..Default::default() };
        assert_eq!(config.files_caps(), Some(FilesCaps { max_bytes: 8 << 20, max_count: 1000 }));
        assert!(config.files_archive_bytes() > 8 << 20);
        config.files.max_bytes = 0;
        assert_eq!(config.files_caps(), None, "0 bytes turns them off");
        config.files = FilesConfig { max_bytes: MAX_FILES_MAX_BYTES + 1, ..FilesConfig::default() };
        assert!(config.check().unwrap_err().to_string().contains("files.maxBytes"));
        config.files = FilesConfig { max_bytes: 1, max_count: MAX_FILES_MAX_COUNT + 1 };
        assert!(config.check().is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "files: {maxBytes: 1048576, maxCount: 10}\n").unwrap();
        assert_eq!(OperatorConfig::load(&path).unwrap().files, FilesConfig { max_bytes: 1 << 20, max_count: 10 });
    }

    #[test]
    fn docker_is_opted_into_per_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "docker: {enabled: true}\n").unwrap();
        let enabled_nowhere = OperatorConfig::load(&path).unwrap().docker;
        assert!(!enabled_nowhere.allowed_in(Some("team-a")), "no namespaces listed: nowhere");
        std::fs::write(&path, "docker: {enabled: true, namespaces: [team-a]}\n").unwrap();
        let docker = OperatorConfig::load(&path).unwrap().docker;
        assert!(docker.allowed_in(Some("team-a")));
        assert!(!docker.allowed_in(Some("team-b")) && !docker.allowed_in(None));
        let disabled = DockerConfig { enabled: false, ..docker };
        assert!(!disabled.allowed_in(Some("team-a")), "enabled is still needed");
        std::fs::write(&path, "docker: {enabled: true, namespaces: [\"*\"]}\n").unwrap();
        assert!(OperatorConfig::load(&path).unwrap_err().to_string().contains("docker.namespaces"));
    }
}
