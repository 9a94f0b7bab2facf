//! Whether this operator will run a PythonExecution, and with what: the image, the requirements to install, the
//! limits. A refusal becomes a `Failed` status with an `Accepted=False` condition and says why. Pure.

use pyexec_core::ExecutionSpec;
use pyexec_core::outcome::install_failure_message;
use pyexec_crds::convert::{NO_REQUIREMENTS, cpu_millis, execution_spec};
use pyexec_crds::{NetworkMode, PythonExecution};

use crate::config::OperatorConfig;

/// Largest total of the generated ConfigMap (the API server refuses ConfigMaps over 1 MiB).
pub const MAX_CONFIG_MAP_BYTES: usize = 1000 * 1024;

/// What an accepted execution runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The container image.
    pub image: String,
    /// Requirements to install first (an install init container), if any.
    pub requirements: Option<String>,
    /// The spec in the model shared with the embedded backend.
    pub execution: ExecutionSpec,
    /// CPU limit, millicores.
    pub cpu_millis: u64,
}

impl Admitted {
    /// Whether the Pod installs packages (and so starts with its network open to the package index, and its
    /// program waits for the operator's go-ahead once the network is closed again).
    pub fn installs(&self) -> bool {
        self.requirements.is_some()
    }
}

/// Why an execution is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Condition reason (CamelCase).
    pub reason: &'static str,
    /// For `status.error`.
    pub message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { reason, message: message.into() }
}

/// Decides. `project_requirements` is the `requirements.txt` of the source when the operator could read one (inline
/// files or the user's ConfigMap).
pub fn admit(
    cr: &PythonExecution,
    config: &OperatorConfig,
    project_requirements: Option<String>,
) -> Result<Admitted, Refusal> {
    let spec = &cr.spec;
    let image = match (&spec.image, &spec.python_version) {
        (Some(image), _) if config.image_allowed(image) => image.clone(),
        (Some(image), _) => {
            return Err(refuse(
                "ImageNotAllowed",
                format!(
                    "image {image:?} is not allowed by this operator (allowed: the images of its pythonVersions and allowedImages)"
                ),
            ));
        }
        (None, version) => {
            let version = version.as_deref().unwrap_or(&config.default_python_version);
            config.images.get(version).cloned().ok_or_else(|| {
                let known: Vec<&str> = config.images.keys().map(String::as_str).collect();
                refuse(
                    "UnsupportedPythonVersion",
                    format!("pythonVersion {version} is not offered here (offered: {})", known.join(", ")),
                )
            })?
        }
    };
    if let Some(class) = &spec.runtime_class_name
        && !config.allowed_runtime_classes.contains(class)
    {
        return Err(refuse(
            "RuntimeClassNotAllowed",
            format!("runtimeClassName {class:?} is not allowed by this operator"),
        ));
    }
    if spec.docker {
        if !config.docker.enabled {
            return Err(refuse("DockerDisabled", "the Docker path is disabled on this operator (docker.enabled)"));
        }
        let namespace = cr.metadata.namespace.as_deref();
        if !config.docker.allowed_in(namespace) {
            return Err(refuse(
                "DockerNotAllowed",
                format!(
                    "the Docker path is not allowed in namespace {:?} (docker.namespaces lists where it is)",
                    namespace.unwrap_or_default()
                ),
            ));
        }
        if spec.network == NetworkMode::None {
            // The daemon pulls through the Pod's own egress policy; with none, its empty data root has no image.
            return Err(refuse(
                "DockerNeedsNetwork",
                "docker: true needs network: egress: the Docker daemon pulls images through the execution's \
                 network, and without one it has no image to run",
            ));
        }
    }
    if !config.allow_secret_env
        && let Some(var) = spec.env.iter().find(|v| v.value_from.is_some())
    {
        return Err(refuse(
            "SecretEnvNotAllowed",
            format!(
                "env {:?} takes its value from a Secret, which this operator does not allow (allowSecretEnv): pass \
                 the value itself",
                var.name
            ),
        ));
    }
    let max = &config.max_limits;
    let limits = &spec.limits;
    let cpu = cpu_millis(&limits.cpu)
        .ok_or_else(|| refuse("InvalidLimits", format!("limits.cpu {:?} is not a CPU quantity", limits.cpu.0)))?;
    for (name, value, bound) in [
        ("timeoutSeconds", limits.timeout_seconds, max.timeout_seconds),
        ("memoryMB", limits.memory_mb, max.memory_mb),
        ("diskMB", limits.disk_mb, max.disk_mb),
        ("cpu (millicores)", cpu, max.cpu_millis),
    ] {
        if value > bound {
            return Err(refuse(
                "LimitTooHigh",
                format!("limits.{name} {value} is above this operator's maximum {bound}"),
            ));
        }
    }
    if cpu == 0 {
        return Err(refuse("InvalidLimits", "limits.cpu must be above zero"));
    }
    let requirements = match spec.requirements.as_deref() {
        Some(NO_REQUIREMENTS) => None,
        Some(text) => Some(text.to_owned()),
        None => project_requirements,
    }
    .filter(|r| r.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')));
    if requirements.is_some() && config.package_index.is_none() {
        return Err(refuse(
            "InstallUnavailable",
            install_failure_message(
                "this operator has no package index configured (packageIndex), so executions cannot install packages",
            ),
        ));
    }
    if spec.source.archive.is_some() && config.archives.is_none() {
        return Err(refuse("ArchivesUnavailable", "this operator has no archive store configured (archives)"));
    }
    let inline: usize = spec.source.files.iter().map(|f| f.content.len() + f.name.len()).sum::<usize>()
        + spec.stdin.as_deref().map_or(0, str::len)
        + requirements.as_deref().map_or(0, str::len);
    if inline + pyexec_core::pod::RUNNER_SOURCE.len() + pyexec_core::eval::EVAL_RUNNER_SOURCE.len()
        > MAX_CONFIG_MAP_BYTES
    {
        return Err(refuse(
            "SourcesTooLarge",
            "the inline files, stdin and requirements do not fit into a ConfigMap (1 MiB): use a ConfigMap source or \
             an uploaded archive",
        ));
    }
    Ok(Admitted { image, requirements, execution: execution_spec(spec), cpu_millis: cpu })
}

/// The `requirements.txt` among inline files.
pub fn inline_requirements(cr: &PythonExecution) -> Option<String> {
    cr.spec.source.files.iter().find(|f| f.name == "requirements.txt").map(|f| f.content.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_crds::{PythonExecutionSpec, Source, SourceFile};

    fn cr(spec: PythonExecutionSpec) -> PythonExecution {
        PythonExecution::new("x", spec)
    }

    fn files(files: &[(&str, &str)]) -> Source {
        Source {
            files: files.iter().map(|(n, c)| SourceFile { name: n.to_string(), content: c.to_string() }).collect(),
            ..Source::default()
        }
    }

    fn with_index() -> OperatorConfig {
        OperatorConfig {
            package_index: Some(
                serde_json::from_value(serde_json::json!({"url": "https://pypi.internal/simple", "egressTo": [{"ipBlock": {"cidr": "10.0.0.5/32"}}]}))
                    .unwrap(),
            ),
            ..OperatorConfig::default()
        }
    }

    #[test]
    fn images_versions_and_classes() {
        let config = OperatorConfig::default();
        let ok =
            admit(&cr(PythonExecutionSpec { source: files(&[("main.py", "1")]), ..Default::default() }), &config, None)
                .unwrap();
        assert_eq!((ok.image.as_str(), ok.cpu_millis, ok.installs()), ("python:3.12-slim", 1000, false));
        let v = PythonExecutionSpec { python_version: Some("3.10".into()), ..Default::default() };
        assert_eq!(admit(&cr(v), &config, None).unwrap().image, "python:3.10-slim");
        let bad = PythonExecutionSpec { image: Some("attacker/miner".into()), ..Default::default() };
        assert_eq!(admit(&cr(bad), &config, None).unwrap_err().reason, "ImageNotAllowed");
        let gvisor = PythonExecutionSpec { runtime_class_name: Some("gvisor".into()), ..Default::default() };
        assert_eq!(admit(&cr(gvisor.clone()), &config, None).unwrap_err().reason, "RuntimeClassNotAllowed");
        let allowing = OperatorConfig { allowed_runtime_classes: vec!["gvisor".into()], ..OperatorConfig::default() };
        assert!(admit(&cr(gvisor), &allowing, None).is_ok());
        let docker = PythonExecutionSpec { docker: true, ..Default::default() };
        assert_eq!(admit(&cr(docker), &config, None).unwrap_err().reason, "DockerDisabled");
    }

    #[test]
    fn docker_needs_an_opted_in_namespace_and_network() {
        let in_ns = |ns: &str, spec: PythonExecutionSpec| {
            let mut cr = cr(spec);
            cr.metadata.namespace = Some(ns.into());
            cr
        };
        let with_network = PythonExecutionSpec { docker: true, network: NetworkMode::Egress, ..Default::default() };
        let enabled_nowhere = OperatorConfig::with_docker_in(&[]);
        let err = admit(&in_ns("team-a", with_network.clone()), &enabled_nowhere, None).unwrap_err();
        assert_eq!(err.reason, "DockerNotAllowed");
        assert!(err.message.contains("\"team-a\"") && err.message.contains("docker.namespaces"), "{}", err.message);
        let config = OperatorConfig::with_docker_in(&["team-a"]);
        assert!(admit(&in_ns("team-a", with_network.clone()), &config, None).is_ok());
        let elsewhere = admit(&in_ns("team-b", with_network.clone()), &config, None).unwrap_err();
        assert_eq!(elsewhere.reason, "DockerNotAllowed");
        assert_eq!(admit(&cr(with_network.clone()), &config, None).unwrap_err().reason, "DockerNotAllowed");
        let offline = PythonExecutionSpec { network: NetworkMode::None, ..with_network };
        let err = admit(&in_ns("team-a", offline), &config, None).unwrap_err();
        assert_eq!(err.reason, "DockerNeedsNetwork");
        assert!(err.message.contains("network: egress") && err.message.contains("pulls"), "{}", err.message);
        let plain = PythonExecutionSpec::default();
        assert!(admit(&in_ns("team-b", plain), &config, None).is_ok(), "only Docker is per namespace");
    }

    #[test]
    fn secret_env_needs_the_configuration() {
        let spec: PythonExecutionSpec = serde_json::from_value(serde_json::json!({"source": {}, "env": [
            {"name": "A", "value": "1"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}))
        .unwrap();
        let err = admit(&cr(spec.clone()), &OperatorConfig::default(), None).unwrap_err();
        assert_eq!(err.reason, "SecretEnvNotAllowed");
        assert!(err.message.contains("\"TOKEN\"") && err.message.contains("allowSecretEnv"), "{}", err.message);
        let allowing = OperatorConfig { allow_secret_env: true, ..OperatorConfig::default() };
        assert!(admit(&cr(spec), &allowing, None).is_ok());
        let plain: PythonExecutionSpec =
            serde_json::from_value(serde_json::json!({"source": {}, "env": [{"name": "A", "value": "1"}]})).unwrap();
        assert!(admit(&cr(plain), &OperatorConfig::default(), None).is_ok());
    }

    #[test]
    fn limits_are_bounded() {
        let mut spec = PythonExecutionSpec::default();
        spec.limits.timeout_seconds = 7200;
        let err = admit(&cr(spec), &OperatorConfig::default(), None).unwrap_err();
        assert_eq!(err.reason, "LimitTooHigh");
        assert!(err.message.contains("timeoutSeconds 7200"), "{}", err.message);
        let mut spec = PythonExecutionSpec::default();
        spec.limits.cpu = k8s_openapi::apimachinery::pkg::api::resource::Quantity("a lot".into());
        assert_eq!(admit(&cr(spec), &OperatorConfig::default(), None).unwrap_err().reason, "InvalidLimits");
    }

    #[test]
    fn requirements_come_from_the_spec_or_the_project_and_need_an_index() {
        let project = PythonExecutionSpec {
            source: files(&[("main.py", "import six"), ("requirements.txt", "six\n")]),
            ..Default::default()
        };
        let found = inline_requirements(&cr(project.clone()));
        assert_eq!(found.as_deref(), Some("six\n"));
        let err = admit(&cr(project.clone()), &OperatorConfig::default(), found.clone()).unwrap_err();
        assert_eq!(err.reason, "InstallUnavailable");
        assert!(err.message.starts_with("installing dependencies failed: "));
        assert_eq!(
            admit(&cr(project.clone()), &with_index(), found.clone()).unwrap().requirements.as_deref(),
            Some("six\n")
        );
        let listed = PythonExecutionSpec { requirements: Some("numpy\n".into()), ..project.clone() };
        assert_eq!(admit(&cr(listed), &with_index(), found.clone()).unwrap().requirements.as_deref(), Some("numpy\n"));
        let nothing = PythonExecutionSpec { requirements: Some("-".into()), ..project };
        assert!(!admit(&cr(nothing), &OperatorConfig::default(), found).unwrap().installs());
        let comments = PythonExecutionSpec { requirements: Some("# nothing\n\n".into()), ..Default::default() };
        assert!(!admit(&cr(comments), &OperatorConfig::default(), None).unwrap().installs());
    }

    #[test]
    fn archives_need_a_store_and_big_inline_sources_are_refused() {
        let archive = PythonExecutionSpec {
            source: Source { archive: Some(Default::default()), ..Source::default() },
            ..Default::default()
        };
        assert_eq!(admit(&cr(archive), &OperatorConfig::default(), None).unwrap_err().reason, "ArchivesUnavailable");
        let big = "x".repeat(200 << 10);
        let many: Vec<(String, String)> = (0..6).map(|i| (format!("f{i}.py"), big.clone())).collect();
        let refs: Vec<(&str, &str)> = many.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        let spec = PythonExecutionSpec { source: files(&refs), ..Default::default() };
        assert_eq!(admit(&cr(spec), &OperatorConfig::default(), None).unwrap_err().reason, "SourcesTooLarge");
    }
}
