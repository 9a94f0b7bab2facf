//! What a session runs with, and the objects it owns, computed from the resource and the configuration alone (pure):
//!
//! - its admission: the session's class (image or Python version, limits, network, RuntimeClass) and its
//!   `requirementsTxt` are admitted as an execution of that class with those requirements would be
//!   ([`crate::admission::admit`] on the session's template execution), so a session can never run or install what
//!   no execution could; a name too long for a label is refused;
//! - one ConfigMap, `pyexec-session-<name>`: the session runner, the eval runner it imports, the Pod runner (the
//!   install container's role, and the network fence probe the session runner imports), the fence to check
//!   ([`SESSION_FENCE_FILE`]) and the requirements, mounted read-only at their paths' directory ([`RUN_DIR`]);
//! - one NetworkPolicy of the same name: an execution's of the session's network mode (built by
//!   [`crate::desired::network_policy`]), selecting the session's Pods by its uid;
//! - while a Pod installs, a second one, `pyexec-session-<name>-install`: an execution's install stage (DNS and the
//!   package index), selecting that one Pod by its number ([`POD_NUMBER_LABEL`]). Policies add up, so the Pod
//!   reaches the index while it exists, and the operator deletes it before the go-ahead; a Pod that is going away
//!   never gets the index back when the next one installs;
//! - its Pod: the execution Pod's hardening (the same Pod security context, locked-down containers, requests =
//!   limits, size-capped `emptyDir`s, no service account token, no service links, `restartPolicy: Never`), the
//!   execution's `install` init container when there are requirements, and one container, [`SESSION_CONTAINER`],
//!   running the session runner isolated (`-I`) with its stdin kept open for the API server and the gate on: it
//!   waits for the operator's go-ahead, checks the fence, then starts the session's interpreter.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, Container, Pod, PodSpec, Volume};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};
use pyexec_core::eval::{EVAL_RUNNER_PATH, EVAL_RUNNER_SOURCE};
use pyexec_core::pod::RUNNER_SOURCE;
use pyexec_core::pod::protocol::{FLAG_ON, GATE_ENV, REQUIREMENTS_FILE, RUN_DIR, RUNNER_FILE, TMP_DIR, WORK_DIR};
use pyexec_core::session::{RunnerReady, SESSION_FENCE_FILE, SESSION_RUNNER_PATH, SESSION_RUNNER_SOURCE};
use pyexec_crds::contract::{MANAGED_BY_LABEL, OPERATOR};
use pyexec_crds::session::{
    MAX_INSTALLED_PACKAGE_CHARS, MAX_INSTALLED_PACKAGES, MAX_SESSION_NAME, RESTARTS_ANNOTATION, SESSION_CONTAINER,
    SESSION_LABEL, SESSION_UID_LABEL,
};
use pyexec_crds::{PythonExecution, PythonSession};

use crate::admission::{Admitted, Refusal, admit as admit_execution};
use crate::config::OperatorConfig;
use crate::desired::pod::{
    deps_mount, deps_volume, empty_dir, env, install_container, locked_down, mount, pod_security_context, resources,
};
use crate::desired::{self, EXECUTION_LABEL, PodClass, PolicyStage, class_execution};

/// The reason of a session refused for its name.
pub const NAME_TOO_LONG: &str = "NameTooLong";
/// The argument that runs the session runner multiplexed over its standard streams (the API server attaches to them).
pub const MUX_FLAG: &str = "--mux";
/// Label on a session's Pod: its number (the value of [`RESTARTS_ANNOTATION`]), by which the install stage's
/// NetworkPolicy selects that Pod alone.
pub const POD_NUMBER_LABEL: &str = "pyexec.io/session-pod";
/// Annotation the operator puts on a session's Pod once it read the runner's report from its log (the runner took
/// the go-ahead and found the network fenced): the report ([`RunnerReady`]) as JSON. The Pod is ready for calls
/// only with it.
pub const RUNNER_READY_ANNOTATION: &str = "pyexec.io/runner-ready";
/// Variables of the session's interpreter that the operator sets (a session's `env` may replace them).
const BASE_ENV: [(&str, &str); 3] = [("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1"), ("HOME", TMP_DIR)];
/// The prefix of the runner's own variables: a session's `env` cannot set them.
const RUNNER_ENV_PREFIX: &str = "PYEXEC_";

/// The name of the session's ConfigMap and NetworkPolicy.
pub fn owned_name(session: &PythonSession) -> String {
    format!("pyexec-session-{}", session.name_any())
}

/// The name of the install stage's NetworkPolicy of the session (it exists while one of its Pods installs).
pub fn install_policy_name(session: &PythonSession) -> String {
    format!("{}-install", owned_name(session))
}

/// The execution a session's Pod is built like: the session's class and requirements as a PythonExecution spec,
/// with its name, namespace and uid (what the execution builders and admission read).
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
    let mut cr = class_execution(session, &class, config);
    // Admission then decides the install as an execution's: comments and blank lines are nothing to install, and an
    // operator without a package index refuses it.
    cr.spec.requirements = spec.requirements_txt.clone();
    cr
}

/// Whether the operator runs the session, and with what image, CPU and requirements, or why not.
pub fn admit(session: &PythonSession, config: &OperatorConfig) -> Result<Admitted, Refusal> {
    if session.name_any().len() > MAX_SESSION_NAME {
        return Err(Refusal {
            reason: NAME_TOO_LONG,
            message: format!("a PythonSession's name is at most {MAX_SESSION_NAME} characters (it labels its Pod)"),
        });
    }
    admit_execution(&template(session, config), config, None)
}

/// How long a Pod of the session may take to be ready: the operator's `startupSeconds`, and the package index's
/// install timeout when it installs.
pub fn startup_seconds(admitted: Option<&Admitted>, config: &OperatorConfig) -> u64 {
    let install = match (admitted, &config.package_index) {
        (Some(admitted), Some(index)) if admitted.installs() => index.timeout_seconds,
        _ => 0,
    };
    config.startup_seconds.saturating_add(install)
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

/// Labels of the session's Pod number `number`. `pyexec.io/execution` is there, empty, so that the namespace's
/// default-deny policy (which selects every Pod with that label) fences the Pod as it fences execution Pods, before
/// the session's own policy applies.
pub fn pod_labels(session: &PythonSession, number: i32) -> BTreeMap<String, String> {
    let mut labels = labels(session);
    labels.insert(EXECUTION_LABEL.into(), String::new());
    labels.insert(POD_NUMBER_LABEL.into(), number.to_string());
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

/// The session's ConfigMap: the session runner, the eval runner it imports, the Pod runner (the install container
/// runs it; the session runner imports its fence probe), the fence, and the requirements when there are some.
pub fn config_map(session: &PythonSession, admitted: &Admitted, config: &OperatorConfig) -> ConfigMap {
    let fence = desired::runner_fence(&template(session, config));
    let mut data = BTreeMap::from([
        (file_name(SESSION_RUNNER_PATH).to_string(), SESSION_RUNNER_SOURCE.to_string()),
        (file_name(EVAL_RUNNER_PATH).to_string(), EVAL_RUNNER_SOURCE.to_string()),
        (RUNNER_FILE.to_string(), RUNNER_SOURCE.to_string()),
        (SESSION_FENCE_FILE.to_string(), serde_json::to_string(&fence).unwrap_or_default()),
    ]);
    if let Some(requirements) = &admitted.requirements {
        data.insert(REQUIREMENTS_FILE.into(), requirements.clone());
    }
    ConfigMap { metadata: owned_meta(session), data: Some(data), immutable: Some(true), ..ConfigMap::default() }
}

/// An execution's NetworkPolicy at `stage` for the session's class, named `name` and selecting the session's Pods
/// that have `labels` besides its uid.
fn session_policy(
    session: &PythonSession,
    config: &OperatorConfig,
    stage: PolicyStage,
    name: String,
    labels: BTreeMap<String, String>,
) -> NetworkPolicy {
    let mut policy = desired::network_policy(&template(session, config), config, stage);
    let annotations = policy.metadata.annotations.take();
    policy.metadata = ObjectMeta { name: Some(name), annotations, ..owned_meta(session) };
    if let Some(spec) = policy.spec.as_mut() {
        let mut match_labels = labels;
        match_labels.insert(SESSION_UID_LABEL.to_string(), session.uid().unwrap_or_default());
        spec.pod_selector = Some(LabelSelector { match_labels: Some(match_labels), ..LabelSelector::default() });
    }
    policy
}

/// The session's NetworkPolicy: an execution's of the session's network mode, selecting the session's Pods (by its
/// uid). It exists before any of them does.
pub fn network_policy(session: &PythonSession, config: &OperatorConfig) -> NetworkPolicy {
    session_policy(session, config, PolicyStage::Run, owned_name(session), BTreeMap::new())
}

/// The install stage's NetworkPolicy for the session's Pod number `number`: an execution's install stage (DNS and
/// the package index), selecting that Pod alone. It adds to [`network_policy`] while the Pod installs.
pub fn install_policy(session: &PythonSession, config: &OperatorConfig, number: i32) -> NetworkPolicy {
    let only = BTreeMap::from([(POD_NUMBER_LABEL.to_string(), number.to_string())]);
    session_policy(session, config, PolicyStage::Install, install_policy_name(session), only)
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
    // As an execution's runner, the session runner waits for the go-ahead: the Pod may start before its
    // NetworkPolicy is enforced, and after an install the network reaches the package index until the operator
    // closed it. A session's `env` cannot turn it off (PYEXEC_* are left out above).
    vars.push(env(GATE_ENV, FLAG_ON));
    let run_dir = path_dir(SESSION_RUNNER_PATH);
    let index = config.package_index.as_ref().filter(|_| admitted.installs());
    let mut mounts = vec![mount("work", WORK_DIR, false), mount("tmp", TMP_DIR, false), mount("run", &run_dir, true)];
    if index.is_some() {
        mounts.push(deps_mount());
    }
    let main = Container {
        name: SESSION_CONTAINER.into(),
        image: Some(admitted.image.clone()),
        // Isolated until the gate: neither the session's PYTHON* variables nor its installed packages play a part
        // before the network is closed; the runner then starts the session's interpreter plainly (it imports the
        // eval runner and the Pod runner from its own directory).
        command: Some(vec!["python".into(), "-I".into(), SESSION_RUNNER_PATH.into(), MUX_FLAG.into()]),
        working_dir: Some(WORK_DIR.into()),
        // The API server attaches to the runner's stdin for every call: it stays open between attaches.
        stdin: Some(true),
        stdin_once: Some(false),
        tty: Some(false),
        env: Some(vars),
        volume_mounts: Some(mounts),
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
    let mut volumes = vec![empty_dir("work", spec.limits.disk_mb), empty_dir("tmp", config.tmp_mb), run];
    // The execution's install container: the requirements of the ConfigMap into the dependencies volume. It needs
    // no workspace (a session has no project to install from).
    let init = index.map(|index| {
        volumes.push(deps_volume(index));
        vec![install_container(
            &admitted.image,
            index,
            vec![mount("tmp", TMP_DIR, false), mount("run", &run_dir, true)],
        )]
    });
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", session.name_any())),
            namespace: session.namespace(),
            labels: Some(pod_labels(session, restarts)),
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
            init_containers: init,
            containers: vec![main],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The directory of a runner path.
fn path_dir(path: &str) -> String {
    path.rsplit_once('/').map_or(RUN_DIR, |(dir, _)| dir).to_owned()
}

/// The number of the session's Pod (its [`RESTARTS_ANNOTATION`]); 0 when it has none.
pub fn pod_number(pod: &Pod) -> i32 {
    pod.annotations().get(RESTARTS_ANNOTATION).and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// What the Pod's runner reported after the go-ahead, once the operator recorded it ([`RUNNER_READY_ANNOTATION`]).
pub fn runner_ready(pod: &Pod) -> Option<RunnerReady> {
    serde_json::from_str(pod.annotations().get(RUNNER_READY_ANNOTATION)?).ok()
}

/// The runner's report as the operator records it: within the bounds of `status.installedPackages` (the first
/// [`MAX_INSTALLED_PACKAGES`] entries of at most [`MAX_INSTALLED_PACKAGE_CHARS`]), since what the install
/// container left in the dependencies volume is the session's to write.
pub fn bounded_report(report: RunnerReady) -> RunnerReady {
    let installed = report
        .installed
        .into_iter()
        .filter(|name| name.len() <= MAX_INSTALLED_PACKAGE_CHARS)
        .take(MAX_INSTALLED_PACKAGES)
        .collect();
    RunnerReady { installed }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pyexec_core::pod::protocol::{ALLOW_SDIST_ENV, DEPS_DIR, Fence, INSTALL_CONTAINER};
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

    /// An operator with a package index.
    pub fn index_config() -> OperatorConfig {
        OperatorConfig {
            package_index: Some(
                serde_json::from_value(serde_json::json!({"url": "https://pypi.internal/simple",
                    "egressTo": [{"ipBlock": {"cidr": "10.9.8.7/32"}}]}))
                .unwrap(),
            ),
            ..OperatorConfig::default()
        }
    }

    fn build(spec: serde_json::Value, config: &OperatorConfig) -> Pod {
        let session = session(spec);
        pod(&session, &admit(&session, config).unwrap(), config, 2, 3600)
    }

    #[test]
    fn the_runners_the_fence_and_the_requirements_are_where_the_runners_read_them() {
        assert_eq!(SESSION_RUNNER_PATH.rsplit_once('/').unwrap().0, RUN_DIR);
        assert_eq!(EVAL_RUNNER_PATH.rsplit_once('/').unwrap().0, RUN_DIR);
        let config = index_config();
        let plain = session(serde_json::json!({}));
        let data = config_map(&plain, &admit(&plain, &config).unwrap(), &config).data.unwrap();
        assert_eq!(data["session_runner.py"], SESSION_RUNNER_SOURCE);
        assert_eq!(data["eval_runner.py"], EVAL_RUNNER_SOURCE);
        assert_eq!(data[RUNNER_FILE], RUNNER_SOURCE, "the install role and the fence probe");
        let fence: Fence = serde_json::from_str(&data[SESSION_FENCE_FILE]).unwrap();
        assert_eq!(fence, desired::runner_fence(&template(&plain, &config)), "an execution's of the same class");
        assert_eq!(fence.resolv_conf.as_deref(), Some("/etc/resolv.conf"), "network none: DNS must not answer");
        assert_eq!(data.len(), 4);
        let installs = session(serde_json::json!({"requirementsTxt": "six\n# a comment\n"}));
        let data = config_map(&installs, &admit(&installs, &config).unwrap(), &config).data.unwrap();
        assert_eq!(data[REQUIREMENTS_FILE], "six\n# a comment\n");
    }

    #[test]
    fn a_session_pod_is_one_locked_down_container_waiting_for_the_go_ahead_on_its_stdin() {
        let config = OperatorConfig::default();
        let pod = build(serde_json::json!({"limits": {"memoryMB": 256, "cpu": "500m", "diskMB": 100}}), &config);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.containers.len(), 1);
        assert!(spec.init_containers.is_none(), "nothing to install");
        let main = &spec.containers[0];
        assert_eq!(main.name, "python");
        assert_eq!(main.command.as_deref().unwrap(), ["python", "-I", "/opt/pyexec/session_runner.py", "--mux"]);
        assert_eq!((main.stdin, main.stdin_once, main.tty), (Some(true), Some(false), Some(false)));
        let vars = main.env.as_ref().unwrap();
        assert!(vars.iter().any(|e| e.name == GATE_ENV && e.value.as_deref() == Some(FLAG_ON)), "{vars:?}");
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
        assert!(!volumes.iter().any(|v| v.name == "deps"));
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
        assert_eq!(labels[POD_NUMBER_LABEL], "2");
        assert_eq!(pod_number(&pod), 2);
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("PythonSession", "5e55-0001", Some(true))
        );
    }

    #[test]
    fn requirements_are_installed_by_the_executions_install_container_onto_the_runners_deps() {
        let config = index_config();
        let s = session(serde_json::json!({"requirementsTxt": "six\n", "network": "egress"}));
        let admitted = admit(&s, &config).unwrap();
        assert!(admitted.installs());
        let pod = pod(&s, &admitted, &config, 0, 3600);
        let spec = pod.spec.as_ref().unwrap();
        let init = spec.init_containers.as_ref().unwrap();
        assert_eq!(init.len(), 1);
        let install = &init[0];
        // The execution's, but for the workspace, which it does not need.
        let expected = install_container(
            &admitted.image,
            config.package_index.as_ref().unwrap(),
            vec![mount("tmp", TMP_DIR, false), mount("run", RUN_DIR, true)],
        );
        assert_eq!(install, &expected);
        assert_eq!(install.name, INSTALL_CONTAINER);
        assert_eq!(install.command.as_ref().unwrap()[1..3], ["-I".to_string(), format!("{RUN_DIR}/{RUNNER_FILE}")]);
        assert!(!install.env.as_ref().unwrap().iter().any(|e| e.name == ALLOW_SDIST_ENV), "wheels only by default");
        assert!(!install.volume_mounts.as_ref().unwrap().iter().any(|m| m.mount_path == WORK_DIR));
        let main = &spec.containers[0];
        let deps = main.volume_mounts.as_ref().unwrap().iter().find(|m| m.mount_path == DEPS_DIR).unwrap();
        assert_eq!(deps.read_only, Some(true), "the session reads what was installed, never changes it");
        assert!(
            !main.env.as_ref().unwrap().iter().any(|e| e.name == "PYTHONPATH"),
            "the runner puts the packages on the path after the gate, never before"
        );
        let deps = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == "deps").unwrap();
        assert_eq!(deps.empty_dir.as_ref().unwrap().size_limit.as_ref().unwrap().0, "2048Mi");
        assert_eq!(startup_seconds(Some(&admitted), &config), 120 + 300, "the install's time on top");
        let plain = admit(&session(serde_json::json!({})), &config).unwrap();
        assert_eq!(startup_seconds(Some(&plain), &config), 120);
    }

    #[test]
    fn env_has_the_defaults_the_sessions_values_win_and_the_runners_stay_its_own() {
        let config = OperatorConfig::default();
        let pod = build(
            serde_json::json!({"env": [{"name": "MODE", "value": "test"}, {"name": "HOME", "value": "/work"},
                                       {"name": "PYEXEC_CONTROL_FD", "value": "9"},
                                       {"name": "PYEXEC_GATE", "value": "0"}]}),
            &config,
        );
        let vars = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let get = |n: &str| vars.iter().filter(|v| v.name == n).map(|v| v.value.clone().unwrap()).collect::<Vec<_>>();
        assert_eq!(get("PYTHONUNBUFFERED"), ["1"]);
        assert_eq!(get("PYTHONDONTWRITEBYTECODE"), ["1"]);
        assert_eq!(get("HOME"), ["/work"]);
        assert_eq!(get("MODE"), ["test"]);
        assert!(get("PYEXEC_CONTROL_FD").is_empty());
        assert_eq!(get(GATE_ENV), [FLAG_ON], "the gate cannot be turned off");
        let plain = build(serde_json::json!({}), &config);
        let vars = plain.spec.unwrap().containers[0].env.clone().unwrap();
        assert!(vars.iter().any(|v| v.name == "HOME" && v.value.as_deref() == Some("/tmp")));
    }

    #[test]
    fn admission_is_an_executions_requirements_included_and_refuses_long_names() {
        let config = OperatorConfig { allowed_runtime_classes: vec!["gvisor".into()], ..OperatorConfig::default() };
        let ok = admit(&session(serde_json::json!({"pythonVersion": "3.11", "runtimeClassName": "gvisor"})), &config);
        assert_eq!(ok.unwrap().image, "python:3.11-slim");
        for (spec, reason) in [
            (serde_json::json!({"image": "attacker/miner"}), "ImageNotAllowed"),
            (serde_json::json!({"runtimeClassName": "kata"}), "RuntimeClassNotAllowed"),
            (serde_json::json!({"limits": {"memoryMB": 99999}}), "LimitTooHigh"),
            (serde_json::json!({"requirementsTxt": "pandas\n"}), "InstallUnavailable"),
        ] {
            assert_eq!(admit(&session(spec.clone()), &config).unwrap_err().reason, reason, "{spec}");
        }
        let comments_only = session(serde_json::json!({"requirementsTxt": "# nothing\n\n"}));
        assert!(!admit(&comments_only, &config).unwrap().installs(), "nothing to install is not an install");
        let pandas = admit(&session(serde_json::json!({"requirementsTxt": "pandas\n"})), &index_config()).unwrap();
        assert_eq!(pandas.requirements.as_deref(), Some("pandas\n"));
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
                spec.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap(),
                &BTreeMap::from([(SESSION_UID_LABEL.to_string(), "5e55-0001".to_string())])
            );
            assert_eq!(policy.metadata.name.as_deref(), Some("pyexec-session-ses-1"));
            assert_eq!(policy.metadata.owner_references.as_ref().unwrap()[0].kind, "PythonSession");
        }
        let none = network_policy(&session(serde_json::json!({})), &config);
        assert_eq!(none.spec.unwrap().egress, Some(Vec::new()), "network none: deny all");
    }

    #[test]
    fn the_install_stage_is_an_executions_and_selects_the_installing_pod_alone() {
        let config = index_config();
        let s = session(serde_json::json!({"requirementsTxt": "six"}));
        let policy = install_policy(&s, &config, 3);
        let reference = desired::network_policy(&template(&s, &config), &config, PolicyStage::Install);
        assert_eq!(policy.spec.as_ref().unwrap().egress, reference.spec.as_ref().unwrap().egress);
        assert_eq!(desired::stage_of(&policy), Some(PolicyStage::Install));
        assert_eq!(policy.metadata.name.as_deref(), Some("pyexec-session-ses-1-install"));
        let selected = policy.spec.unwrap().pod_selector.unwrap().match_labels.unwrap();
        assert_eq!(
            selected,
            BTreeMap::from([
                (SESSION_UID_LABEL.to_string(), "5e55-0001".to_string()),
                (POD_NUMBER_LABEL.to_string(), "3".to_string()),
            ])
        );
        let pod = pod(&s, &admit(&s, &config).unwrap(), &config, 3, 3600);
        let labels = pod.metadata.labels.unwrap();
        assert!(selected.iter().all(|(k, v)| labels.get(k) == Some(v)), "Pod 3 is selected");
    }

    #[test]
    fn the_runners_report_is_read_back_within_the_status_bounds() {
        let mut pod = build(serde_json::json!({}), &OperatorConfig::default());
        assert_eq!(runner_ready(&pod), None);
        pod.metadata
            .annotations
            .get_or_insert_default()
            .insert(RUNNER_READY_ANNOTATION.into(), serde_json::json!({"installed": ["six==1.17.0"]}).to_string());
        assert_eq!(runner_ready(&pod).unwrap().installed, ["six==1.17.0"]);
        let mut many: Vec<String> = (0..2000).map(|i| format!("p{i}==1")).collect();
        many.insert(0, "x".repeat(300));
        let bounded = bounded_report(RunnerReady { installed: many });
        assert_eq!((bounded.installed.len(), bounded.installed[0].as_str()), (MAX_INSTALLED_PACKAGES, "p0==1"));
    }
}
