//! What a session runs with, and the objects it owns, computed from the resource and the configuration alone (pure):
//!
//! - its admission: the session's class (image or Python version, limits, network, RuntimeClass) is admitted as an
//!   execution of that class would be ([`crate::admission::admit`] on the session's template execution), so a
//!   session can never run what no execution could; a name too long for a label and `requirementsTxt` are refused;
//! - one ConfigMap, `pyexec-session-<name>`: the session runner and the eval runner it imports, mounted read-only
//!   at their paths' directory ([`RUN_DIR`]);
//! - one NetworkPolicy of the same name: an execution's of the session's network mode (built by
//!   [`crate::desired::network_policy`]), selecting the session's Pods by its uid;
//! - its Pod: the execution Pod's hardening (the same Pod security context, locked-down container, requests =
//!   limits, size-capped `emptyDir`s, no service account token, no service links, `restartPolicy: Never`) with one
//!   container, [`SESSION_CONTAINER`], running the session runner with its stdin kept open for the API server.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Container, Pod, PodSpec, Volume};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};
use pyexec_core::eval::{EVAL_RUNNER_PATH, EVAL_RUNNER_SOURCE};
use pyexec_core::pod::protocol::{RUN_DIR, TMP_DIR, WORK_DIR};
use pyexec_core::session::{SESSION_RUNNER_PATH, SESSION_RUNNER_SOURCE};
use pyexec_crds::contract::{MANAGED_BY_LABEL, OPERATOR};
use pyexec_crds::session::{
    MAX_SESSION_NAME, RESTARTS_ANNOTATION, SESSION_CONTAINER, SESSION_LABEL, SESSION_UID_LABEL,
};
use pyexec_crds::{PythonExecution, PythonSession};

use crate::admission::{Admitted, Refusal, admit as admit_execution};
use crate::config::OperatorConfig;
use crate::desired::pod::{empty_dir, env, locked_down, mount, pod_security_context, resources};
use crate::desired::{self, EXECUTION_LABEL, PodClass, PolicyStage, class_execution};

/// The reason of a session refused for its `requirementsTxt`.
pub const REQUIREMENTS_NOT_SUPPORTED: &str = "RequirementsNotSupported";
/// The reason of a session refused for its name.
pub const NAME_TOO_LONG: &str = "NameTooLong";
/// The argument that runs the session runner multiplexed over its standard streams (the API server attaches to them).
pub const MUX_FLAG: &str = "--mux";
/// Variables of the session's interpreter that the operator sets (a session's `env` may replace them).
const BASE_ENV: [(&str, &str); 3] = [("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1"), ("HOME", TMP_DIR)];
/// The prefix of the runner's own variables: a session's `env` cannot set them.
const RUNNER_ENV_PREFIX: &str = "PYEXEC_";

/// The name of the session's ConfigMap and NetworkPolicy.
pub fn owned_name(session: &PythonSession) -> String {
    format!("pyexec-session-{}", session.name_any())
}

/// The execution a session's Pod is built like: the session's class as a PythonExecution spec, with its name,
/// namespace and uid (what the execution builders and admission read).
pub fn template(session: &PythonSession, config: &OperatorConfig) -> PythonExecution {
    let spec = &session.spec;
    let class = PodClass {
        python_version: spec.python_version.as_ref(),
        image: spec.image.as_ref(),
        limits: &spec.limits,
        network: spec.network,
        runtime_class_name: spec.runtime_class_name.as_ref(),
    };
    // A session has no single run (each call's timeout is the API server's); its lifetime is its spec's.
    class_execution(session, &class, config)
}

/// Whether the operator runs the session, and with what image and CPU, or why not.
pub fn admit(session: &PythonSession, config: &OperatorConfig) -> Result<Admitted, Refusal> {
    if session.name_any().len() > MAX_SESSION_NAME {
        return Err(Refusal {
            reason: NAME_TOO_LONG,
            message: format!("a PythonSession's name is at most {MAX_SESSION_NAME} characters (it labels its Pod)"),
        });
    }
    let wants_packages = session
        .spec
        .requirements_txt
        .as_deref()
        .is_some_and(|text| text.lines().map(str::trim).any(|line| !line.is_empty() && !line.starts_with('#')));
    if wants_packages {
        // Executions install in an init container while their program waits for the operator's go-ahead; the
        // session runner has no such gate, so its Pod would run with the package index reachable.
        return Err(Refusal {
            reason: REQUIREMENTS_NOT_SUPPORTED,
            message: "requirementsTxt is not supported for sessions on Kubernetes: a session's Pod has no install \
                      stage; use an image that has the packages (spec.image, on the operator's allow-list)"
                .into(),
        });
    }
    admit_execution(&template(session, config), config, None)
}

/// Labels of every object the session owns.
pub fn labels(session: &PythonSession) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "python-executor".into()),
        ("app.kubernetes.io/component".into(), "session".into()),
        (MANAGED_BY_LABEL.into(), OPERATOR.into()),
        (SESSION_LABEL.into(), session.name_any()),
        (SESSION_UID_LABEL.into(), session.uid().unwrap_or_default()),
    ])
}

/// Labels of the session's Pod. `pyexec.io/execution` is there, empty, so that the namespace's default-deny policy
/// (which selects every Pod with that label) fences the Pod as it fences execution Pods, before the session's own
/// policy applies.
pub fn pod_labels(session: &PythonSession) -> BTreeMap<String, String> {
    let mut labels = labels(session);
    labels.insert(EXECUTION_LABEL.into(), String::new());
    labels
}

/// The selector of the session's Pods.
pub fn pod_selector(session: &PythonSession) -> String {
    format!("{SESSION_UID_LABEL}={}", session.uid().unwrap_or_default())
}

fn owned_meta(session: &PythonSession) -> ObjectMeta {
    ObjectMeta {
        name: Some(owned_name(session)),
        namespace: session.namespace(),
        labels: Some(labels(session)),
        owner_references: session.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The file name of a runner path.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The session's ConfigMap: the session runner and the eval runner (which it imports, from the same directory).
pub fn config_map(session: &PythonSession) -> ConfigMap {
    let data = BTreeMap::from([
        (file_name(SESSION_RUNNER_PATH).to_string(), SESSION_RUNNER_SOURCE.to_string()),
        (file_name(EVAL_RUNNER_PATH).to_string(), EVAL_RUNNER_SOURCE.to_string()),
    ]);
    ConfigMap { metadata: owned_meta(session), data: Some(data), immutable: Some(true), ..ConfigMap::default() }
}

/// The session's NetworkPolicy: an execution's of the session's network mode, selecting the session's Pods (by its
/// uid). It exists before any of them does.
pub fn network_policy(session: &PythonSession, config: &OperatorConfig) -> NetworkPolicy {
    let mut policy = desired::network_policy(&template(session, config), config, PolicyStage::Run);
    let annotations = policy.metadata.annotations.take();
    policy.metadata = ObjectMeta { annotations, ..owned_meta(session) };
    if let Some(spec) = policy.spec.as_mut() {
        spec.pod_selector = Some(LabelSelector {
            match_labels: Some([(SESSION_UID_LABEL.to_string(), session.uid().unwrap_or_default())].into()),
            ..LabelSelector::default()
        });
    }
    policy
}

/// The session's Pod number `restarts` (0 for the first), named by the API server from `<session>-`. It ends by
/// itself `deadline_seconds` after it started (the rest of the session's lifetime and the start-up allowance), in
/// case the operator is not there to end it.
pub fn pod(
    session: &PythonSession,
    admitted: &Admitted,
    config: &OperatorConfig,
    restarts: i32,
    deadline_seconds: i64,
) -> Pod {
    let spec = &session.spec;
    let mut vars: Vec<_> = BASE_ENV.iter().map(|(name, value)| env(name, value)).collect();
    for var in spec.env.iter().filter(|v| !v.name.starts_with(RUNNER_ENV_PREFIX)) {
        // The session's value wins over the defaults (as an execution's does).
        vars.retain(|v| v.name != var.name);
        vars.push(env(&var.name, &var.value));
    }
    let run_dir = |path: &str| path.rsplit_once('/').map_or(RUN_DIR, |(dir, _)| dir).to_owned();
    let main = Container {
        name: SESSION_CONTAINER.into(),
        image: Some(admitted.image.clone()),
        // Not `-I`: the runner imports the eval runner from its own directory (the script's, on `sys.path`).
        command: Some(vec!["python".into(), SESSION_RUNNER_PATH.into(), MUX_FLAG.into()]),
        working_dir: Some(WORK_DIR.into()),
        // The API server attaches to the runner's stdin for every call: it stays open between attaches.
        stdin: Some(true),
        stdin_once: Some(false),
        tty: Some(false),
        env: Some(vars),
        volume_mounts: Some(vec![
            mount("work", WORK_DIR, false),
            mount("tmp", TMP_DIR, false),
            mount("run", &run_dir(SESSION_RUNNER_PATH), true),
        ]),
        resources: Some(resources(admitted.cpu_millis, spec.limits.memory_mb, spec.limits.disk_mb + config.tmp_mb)),
        security_context: Some(locked_down()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    let run = Volume {
        name: "run".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: owned_name(session),
            default_mode: Some(0o444),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", session.name_any())),
            namespace: session.namespace(),
            labels: Some(pod_labels(session)),
            annotations: Some(BTreeMap::from([(RESTARTS_ANNOTATION.to_string(), restarts.to_string())])),
            owner_references: session.controller_owner_ref(&()).map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(deadline_seconds.max(1)),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            host_users: config.host_users.then_some(false),
            runtime_class_name: spec.runtime_class_name.clone(),
            termination_grace_period_seconds: Some(1),
            security_context: Some(pod_security_context()),
            containers: vec![main],
            volumes: Some(vec![empty_dir("work", spec.limits.disk_mb), empty_dir("tmp", config.tmp_mb), run]),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The number of the session's Pod (its [`RESTARTS_ANNOTATION`]); 0 when it has none.
pub fn pod_number(pod: &Pod) -> i32 {
    pod.annotations().get(RESTARTS_ANNOTATION).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pyexec_crds::NetworkMode;

    /// A session as the API server would have stored it (uid, namespace, creation time set).
    pub fn session(spec: serde_json::Value) -> PythonSession {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonSession",
            "metadata": {"name": "ses-1", "namespace": "team-a", "uid": "5e55-0001", "generation": 1,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn build(spec: serde_json::Value, config: &OperatorConfig) -> Pod {
        let session = session(spec);
        pod(&session, &admit(&session, config).unwrap(), config, 2, 3600)
    }

    #[test]
    fn the_runners_are_where_the_runner_imports_them_from() {
        assert_eq!(SESSION_RUNNER_PATH.rsplit_once('/').unwrap().0, RUN_DIR);
        assert_eq!(EVAL_RUNNER_PATH.rsplit_once('/').unwrap().0, RUN_DIR);
        let data = config_map(&session(serde_json::json!({}))).data.unwrap();
        assert_eq!(data["session_runner.py"], SESSION_RUNNER_SOURCE);
        assert_eq!(data["eval_runner.py"], EVAL_RUNNER_SOURCE);
        assert_eq!(data.len(), 2);
    }

    #[test]
    fn a_session_pod_is_one_locked_down_container_waiting_on_its_stdin() {
        let config = OperatorConfig::default();
        let pod = build(serde_json::json!({"limits": {"memoryMB": 256, "cpu": "500m", "diskMB": 100}}), &config);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers.len(), 1);
        assert!(spec.init_containers.is_none());
        let main = &spec.containers[0];
        assert_eq!(main.name, "python");
        assert_eq!(main.command.as_deref().unwrap(), ["python", "/opt/pyexec/session_runner.py", "--mux"]);
        assert_eq!((main.stdin, main.stdin_once, main.tty), (Some(true), Some(false), Some(false)));
        assert_eq!(main.working_dir.as_deref(), Some("/work"));
        assert_eq!(main.image.as_deref(), Some("python:3.12-slim"));
        assert_eq!(main.security_context, Some(locked_down()));
        assert_eq!(spec.security_context, Some(pod_security_context()));
        let limits = main.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!((limits["cpu"].0.as_str(), limits["memory"].0.as_str()), ("500m", "256Mi"));
        assert_eq!(limits["ephemeral-storage"].0, "200Mi", "/work and /tmp");
        assert_eq!(main.resources.as_ref().unwrap().requests.as_ref(), Some(limits));
        assert_eq!((spec.automount_service_account_token, spec.enable_service_links), (Some(false), Some(false)));
        assert_eq!((spec.restart_policy.as_deref(), spec.active_deadline_seconds), (Some("Never"), Some(3600)));
        let volumes = spec.volumes.as_ref().unwrap();
        let work = volumes.iter().find(|v| v.name == "work").unwrap();
        assert_eq!(work.empty_dir.as_ref().unwrap().size_limit.as_ref().unwrap().0, "100Mi");
        let run = volumes.iter().find(|v| v.name == "run").unwrap();
        assert_eq!(run.config_map.as_ref().unwrap().name, "pyexec-session-ses-1");
        let mounts = main.volume_mounts.as_ref().unwrap();
        assert!(mounts.iter().any(|m| m.mount_path == "/opt/pyexec" && m.read_only == Some(true)));
        let meta = &pod.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("ses-1-"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!((labels[SESSION_LABEL].as_str(), labels[SESSION_UID_LABEL].as_str()), ("ses-1", "5e55-0001"));
        assert_eq!(labels[EXECUTION_LABEL], "", "the namespace's default-deny covers it");
        assert_eq!(labels[MANAGED_BY_LABEL], OPERATOR);
        assert_eq!(pod_number(&pod), 2);
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("PythonSession", "5e55-0001", Some(true))
        );
    }

    #[test]
    fn env_has_the_defaults_the_sessions_values_win_and_the_runners_stay_its_own() {
        let config = OperatorConfig::default();
        let pod = build(
            serde_json::json!({"env": [{"name": "MODE", "value": "test"}, {"name": "HOME", "value": "/work"},
                                       {"name": "PYEXEC_CONTROL_FD", "value": "9"}]}),
            &config,
        );
        let vars = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let get = |n: &str| vars.iter().filter(|v| v.name == n).map(|v| v.value.clone().unwrap()).collect::<Vec<_>>();
        assert_eq!(get("PYTHONUNBUFFERED"), ["1"]);
        assert_eq!(get("PYTHONDONTWRITEBYTECODE"), ["1"]);
        assert_eq!(get("HOME"), ["/work"]);
        assert_eq!(get("MODE"), ["test"]);
        assert!(get("PYEXEC_CONTROL_FD").is_empty());
        let plain = build(serde_json::json!({}), &config);
        let vars = plain.spec.unwrap().containers[0].env.clone().unwrap();
        assert!(vars.iter().any(|v| v.name == "HOME" && v.value.as_deref() == Some("/tmp")));
    }

    #[test]
    fn admission_is_an_executions_and_refuses_requirements_and_long_names() {
        let config = OperatorConfig { allowed_runtime_classes: vec!["gvisor".into()], ..OperatorConfig::default() };
        let ok = admit(&session(serde_json::json!({"pythonVersion": "3.11", "runtimeClassName": "gvisor"})), &config);
        assert_eq!(ok.unwrap().image, "python:3.11-slim");
        for (spec, reason) in [
            (serde_json::json!({"image": "attacker/miner"}), "ImageNotAllowed"),
            (serde_json::json!({"runtimeClassName": "kata"}), "RuntimeClassNotAllowed"),
            (serde_json::json!({"limits": {"memoryMB": 99999}}), "LimitTooHigh"),
            (serde_json::json!({"requirementsTxt": "pandas\n"}), REQUIREMENTS_NOT_SUPPORTED),
        ] {
            assert_eq!(admit(&session(spec.clone()), &config).unwrap_err().reason, reason, "{spec}");
        }
        let comments_only = session(serde_json::json!({"requirementsTxt": "# nothing\n\n"}));
        assert!(admit(&comments_only, &config).is_ok(), "nothing to install is not an install");
        let mut long = session(serde_json::json!({}));
        long.metadata.name = Some("s".repeat(64));
        assert_eq!(admit(&long, &config).unwrap_err().reason, NAME_TOO_LONG);
    }

    #[test]
    fn the_policy_is_an_executions_of_the_network_mode_and_selects_the_sessions_pods() {
        let config = OperatorConfig::default();
        for network in [NetworkMode::None, NetworkMode::Egress] {
            let mut s = session(serde_json::json!({}));
            s.spec.network = network;
            let policy = network_policy(&s, &config);
            let reference = desired::network_policy(&template(&s, &config), &config, PolicyStage::Run);
            let (spec, expected) = (policy.spec.as_ref().unwrap(), reference.spec.as_ref().unwrap());
            assert_eq!(
                (&spec.egress, &spec.ingress, &spec.policy_types),
                (&expected.egress, &expected.ingress, &expected.policy_types)
            );
            assert_eq!(
                spec.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()[SESSION_UID_LABEL],
                "5e55-0001"
            );
            assert_eq!(policy.metadata.name.as_deref(), Some("pyexec-session-ses-1"));
            assert_eq!(policy.metadata.owner_references.as_ref().unwrap()[0].kind, "PythonSession");
        }
        let none = network_policy(&session(serde_json::json!({})), &config);
        assert_eq!(none.spec.unwrap().egress, Some(Vec::new()), "network none: deny all");
    }
}
