//! The Pod of an execution. It passes Pod Security "restricted" and goes further: uid 1000 and never root, no
//! privilege escalation, every capability dropped, the runtime's seccomp profile, a read-only root file system
//! with size-capped `emptyDir`s for `/work`, `/tmp` and the dependencies, no service account token, no service
//! links, requests = limits (CPU, memory, ephemeral storage), `activeDeadlineSeconds`, `restartPolicy: Never`,
//! optional user namespaces (`hostUsers: false`) and RuntimeClass.
//!
//! Containers, in order:
//! - `receive` (init, archive sources): reads the archive the operator streams to its stdin through the attach
//!   API, checks its SHA-256, unpacks it into `/work`. No network needed.
//! - `install` (init, when there are requirements): pip-installs them into `/deps`; the Pod's NetworkPolicy lets
//!   it reach the package index (and DNS) only.
//! - `docker` (native sidecar, only on the opt-in Docker path): a privileged Docker-in-Docker daemon running as
//!   root, its data root a size-capped `emptyDir` (the request's `diskMB`); the one exception to the above.
//! - `python`: the runner, which waits for the operator's go-ahead on stdin (every Pod: the operator sends it once
//!   the program's NetworkPolicy exists, after an install once it replaced the install stage's), checks that the
//!   network fence holds, then runs the pre-commands and the program.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, Pod,
    PodSecurityContext, PodSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::ResourceExt;
use pyexec_core::pod::protocol::{
    ALLOW_SDIST_ENV, ARCHIVE_SHA256_ENV, DEPS_DIR, DISK_FREE_ENV, DOCKER_CONTAINER, FLAG_ON, GATE_ENV,
    INSTALL_CONTAINER, MAIN_CONTAINER, NONCE_ENV, OOM_EVENTS_ENV, RECEIVE_CONTAINER, ROLE_INSTALL, ROLE_RECEIVE,
    ROLE_RUN, RUN_DIR, RUNNER_FILE, SOURCE_DIR, TMP_DIR, WORK_DIR,
};
use pyexec_crds::PythonExecution;

use super::child_meta;
use crate::admission::Admitted;
use crate::config::{OperatorConfig, PackageIndex};

/// The uid and gid of every container.
pub(crate) const UID: i64 = 1000;

/// The execution's Pod. `nonce` marks the runner's frames (see `pyexec_core::pod`).
pub fn pod(cr: &PythonExecution, admitted: &Admitted, config: &OperatorConfig, nonce: &str) -> Pod {
    let spec = &cr.spec;
    let installs = admitted.installs();
    let archive = spec.source.archive.as_ref();
    let mut volumes = vec![
        empty_dir("work", spec.limits.disk_mb),
        empty_dir("tmp", config.tmp_mb),
        Volume {
            name: "run".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cr.name_any(),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![mount("work", WORK_DIR, false), mount("tmp", TMP_DIR, false), mount("run", RUN_DIR, true)];
    if let Some(source) = &spec.source.config_map {
        volumes.push(Volume {
            name: "source".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: source.name.clone(),
                default_mode: Some(0o444),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(mount("source", SOURCE_DIR, true));
    }
    let index = config.package_index.as_ref().filter(|_| installs);
    if let Some(index) = index {
        volumes.push(deps_volume(index));
    }

    let base_env = base_env();
    let mut init = Vec::new();
    if let Some(archive) = archive {
        let mut c = container(RECEIVE_CONTAINER, &admitted.image, ROLE_RECEIVE, mounts.clone(), small_resources());
        c.env = Some([base_env.clone(), vec![env(ARCHIVE_SHA256_ENV, &archive.sha256)]].concat());
        c.stdin = Some(true);
        c.stdin_once = Some(true);
        init.push(c);
    }
    if let Some(index) = index {
        init.push(install_container(&admitted.image, index, mounts.clone()));
    }
    if spec.docker {
        // The daemon's images, containers and layers: its own size-capped volume, never the program's.
        volumes.push(empty_dir(DOCKER_DATA_VOLUME, spec.limits.disk_mb));
        init.push(docker_sidecar(config, spec.limits.disk_mb));
    }

    let mut main_mounts = mounts;
    if index.is_some() {
        main_mounts.push(deps_mount());
    }
    let resources = resources(admitted.cpu_millis, spec.limits.memory_mb, spec.limits.disk_mb + config.tmp_mb);
    let mut main = container(MAIN_CONTAINER, &admitted.image, ROLE_RUN, main_mounts, resources);
    let mut vars = base_env;
    vars.push(env(NONCE_ENV, nonce));
    // Every program waits for the go-ahead: the Pod may start before its NetworkPolicy is enforced.
    vars.push(env(GATE_ENV, FLAG_ON));
    main.stdin = Some(true);
    main.stdin_once = Some(true);
    if spec.docker {
        vars.push(env("DOCKER_HOST", "tcp://127.0.0.1:2375"));
    }
    for var in &spec.env {
        let value_from = var.value_from.as_ref().map(|from| EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: from.secret_key_ref.name.clone(),
                key: from.secret_key_ref.key.clone(),
                optional: from.secret_key_ref.optional.then_some(true),
            }),
            ..EnvVarSource::default()
        });
        // The runner's own variables are the operator's alone: a user's cannot replace them, skip the gate, or
        // point the out-of-memory or full-disk checks at a file of their choosing.
        let runner_only = [NONCE_ENV, GATE_ENV, OOM_EVENTS_ENV, DISK_FREE_ENV].contains(&var.name.as_str());
        vars.retain(|v| v.name != var.name || runner_only);
        if !runner_only {
            vars.push(EnvVar { name: var.name.clone(), value: var.value.clone(), value_from });
        }
    }
    main.env = Some(vars);

    let deadline = spec.limits.timeout_seconds + config.startup_seconds + index.map_or(0, |i| i.timeout_seconds);
    let mut meta = child_meta(cr);
    meta.annotations = Some(BTreeMap::from([(
        "pyexec.io/deadline".to_string(),
        format!("timeout {}s + start-up {}s + install", spec.limits.timeout_seconds, config.startup_seconds),
    )]));
    Pod {
        metadata: meta,
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            active_deadline_seconds: Some(deadline as i64),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            host_users: config.host_users.then_some(false),
            runtime_class_name: spec.runtime_class_name.clone(),
            termination_grace_period_seconds: Some(1),
            security_context: Some(pod_security_context()),
            init_containers: (!init.is_empty()).then_some(init),
            containers: vec![main],
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The variables every container of an execution Pod starts with (a session's install container too).
pub(crate) fn base_env() -> Vec<EnvVar> {
    vec![
        env("HOME", TMP_DIR),
        env("TMPDIR", TMP_DIR),
        env("PYTHONUNBUFFERED", "1"),
        env("PYTHONDONTWRITEBYTECODE", "1"),
    ]
}

/// The volume the requirements are installed into ([`DEPS_DIR`]), sized by the package index's `sizeMB`.
pub(crate) fn deps_volume(index: &PackageIndex) -> Volume {
    empty_dir(DEPS_VOLUME, index.size_mb)
}

/// The read-only mount of the installed requirements in the container that uses them.
pub(crate) fn deps_mount() -> VolumeMount {
    mount(DEPS_VOLUME, DEPS_DIR, true)
}

/// The `install` init container of every Pod that installs requirements (an execution's, a session's): the runner
/// in role [`ROLE_INSTALL`] pip-installs `requirements.txt` of its ConfigMap (`mounts` has it at [`RUN_DIR`]) into
/// the dependencies volume from the package index (binary wheels only unless `allowSdist`), reachable through the
/// install stage's NetworkPolicy only while this container runs.
pub(crate) fn install_container(image: &str, index: &PackageIndex, mut mounts: Vec<VolumeMount>) -> Container {
    mounts.push(mount(DEPS_VOLUME, DEPS_DIR, false));
    let resources = resources(1000, index.memory_mb, index.size_mb + 256);
    let mut c = container(INSTALL_CONTAINER, image, ROLE_INSTALL, mounts, resources);
    let mut vars = base_env();
    vars.push(env("PIP_INDEX_URL", &index.url));
    if let Some(host) = plain_http_authority(&index.url) {
        // pip refuses plain-HTTP indexes it is not told to trust (an in-cluster proxy usually is one).
        vars.push(env("PIP_TRUSTED_HOST", host));
    }
    if index.allow_sdist {
        vars.push(env(ALLOW_SDIST_ENV, FLAG_ON));
    }
    c.env = Some(vars);
    c
}

/// The dependencies volume's name.
const DEPS_VOLUME: &str = "deps";

/// The `host[:port]` of a plain `http://` URL (without credentials).
fn plain_http_authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    Some(authority.rsplit_once('@').map_or(authority, |(_, host)| host)).filter(|h| !h.is_empty())
}

fn container(
    name: &str,
    image: &str,
    role: &str,
    mounts: Vec<VolumeMount>,
    resources: ResourceRequirements,
) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        // Isolated: neither the working directory nor the script's, nor PYTHON* variables (a user's PYTHONPATH),
        // decide what the runner imports; the program it starts gets the environment as given.
        command: Some(vec!["python".into(), "-I".into(), format!("{RUN_DIR}/{RUNNER_FILE}"), role.into()]),
        // The installer starts from a neutral directory, never the workspace that holds uploaded files.
        working_dir: Some(if role == ROLE_INSTALL { "/".into() } else { WORK_DIR.into() }),
        volume_mounts: Some(mounts),
        resources: Some(resources),
        security_context: Some(locked_down()),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

/// The Docker daemon's data root volume.
const DOCKER_DATA_VOLUME: &str = "docker-data";
/// Where the daemon keeps images, containers and layers.
const DOCKER_DATA_ROOT: &str = "/var/lib/docker";

/// The Docker-in-Docker daemon: the one privileged container, and root (the dind image needs both). Every
/// Pod-level default that would apply to it (uid and gid 1000, `runAsNonRoot`) is overridden here, so that the
/// program's container alone keeps them. It has no network of its own: it pulls through the Pod's NetworkPolicy.
fn docker_sidecar(config: &OperatorConfig, disk_mb: u64) -> Container {
    Container {
        name: DOCKER_CONTAINER.into(),
        image: Some(config.docker.image.clone()),
        // A native sidecar: it runs beside the program and stops when the program's container ends.
        restart_policy: Some("Always".into()),
        env: Some(vec![env("DOCKER_TLS_CERTDIR", "")]),
        args: Some(vec!["--host=tcp://127.0.0.1:2375".into(), format!("--data-root={DOCKER_DATA_ROOT}")]),
        volume_mounts: Some(vec![mount(DOCKER_DATA_VOLUME, DOCKER_DATA_ROOT, false)]),
        security_context: Some(SecurityContext {
            privileged: Some(true),
            run_as_user: Some(0),
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            read_only_root_filesystem: Some(false),
            ..SecurityContext::default()
        }),
        // Its data root is an emptyDir, which counts against the Pod's ephemeral storage: room for it and the
        // daemon's own files.
        resources: Some(resources(1000, 2048, disk_mb + 256)),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    }
}

/// The Pod-level security context of every Pod the operator runs code in (executions, idle pool Pods, sessions):
/// uid and gid 1000 and never root, files of the volumes owned by that group, the runtime's seccomp profile.
pub(crate) fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(UID),
        run_as_group: Some(UID),
        fs_group: Some(UID),
        seccomp_profile: Some(runtime_default()),
        ..PodSecurityContext::default()
    }
}

/// The security context of every container that runs user code: Pod Security "restricted" and a read-only root.
pub(crate) fn locked_down() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(UID),
        run_as_group: Some(UID),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), add: None }),
        seccomp_profile: Some(runtime_default()),
        ..SecurityContext::default()
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }
}

/// Requests = limits: CPU (millicores), memory and ephemeral storage (MiB).
pub(crate) fn resources(cpu_millis: u64, memory_mb: u64, storage_mb: u64) -> ResourceRequirements {
    let amounts = BTreeMap::from([
        ("cpu".to_string(), Quantity(format!("{cpu_millis}m"))),
        ("memory".to_string(), Quantity(format!("{memory_mb}Mi"))),
        ("ephemeral-storage".to_string(), Quantity(format!("{storage_mb}Mi"))),
    ]);
    ResourceRequirements { limits: Some(amounts.clone()), requests: Some(amounts), ..ResourceRequirements::default() }
}

fn small_resources() -> ResourceRequirements {
    resources(250, 128, 64)
}

/// A size-capped `emptyDir` volume (MiB).
pub(crate) fn empty_dir(name: &str, size_mb: u64) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource { medium: None, size_limit: Some(Quantity(format!("{size_mb}Mi"))) }),
        ..Volume::default()
    }
}

/// A mount of `volume` at `path`.
pub(crate) fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// A plain environment variable.
pub(crate) fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::admit;
    use crate::desired::fixtures::simple;
    use pyexec_crds::pod::pod_nonce;

    fn build(extra: serde_json::Value, config: &OperatorConfig) -> Pod {
        let cr = simple(extra);
        let project = crate::admission::inline_requirements(&cr);
        pod(&cr, &admit(&cr, config, project).unwrap(), config, "n0nce")
    }

    fn index_config() -> OperatorConfig {
        OperatorConfig {
            package_index: Some(
                serde_json::from_value(serde_json::json!({"url": "https://pypi.internal/simple", "egressTo": [{"ipBlock": {"cidr": "10.9.8.7/32"}}]}))
                    .unwrap(),
            ),
            archives: Some(crate::config::ArchiveStore { url: "http://api/internal/archives".into(), token_file: None }),
            ..OperatorConfig::default()
        }
    }

    #[test]
    fn a_plain_execution_is_one_locked_down_container() {
        let pod = build(
            serde_json::json!({"limits": {"timeoutSeconds": 30, "memoryMB": 256, "cpu": "500m", "diskMB": 100}}),
            &OperatorConfig::default(),
        );
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.init_containers.is_none());
        assert_eq!(spec.active_deadline_seconds, Some(30 + 120));
        assert_eq!((spec.automount_service_account_token, spec.enable_service_links), (Some(false), Some(false)));
        let main = &spec.containers[0];
        let sc = main.security_context.as_ref().unwrap();
        assert_eq!((sc.allow_privilege_escalation, sc.read_only_root_filesystem), (Some(false), Some(true)));
        let limits = main.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!((limits["cpu"].0.as_str(), limits["memory"].0.as_str()), ("500m", "256Mi"));
        assert_eq!(limits["ephemeral-storage"].0, "200Mi");
        assert_eq!((main.stdin, main.stdin_once), (Some(true), Some(true)), "every program waits for the go-ahead");
        assert!(main.env.as_ref().unwrap().iter().any(|e| e.name == GATE_ENV && e.value.as_deref() == Some(FLAG_ON)));
        assert_eq!(pod_nonce(&pod).as_deref(), Some("n0nce"));
        let work = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == "work").unwrap();
        assert_eq!(work.empty_dir.as_ref().unwrap().size_limit.as_ref().unwrap().0, "100Mi");
    }

    #[test]
    fn installs_and_archives_add_init_containers_and_a_gate() {
        let config = index_config();
        let archive = serde_json::json!({"source": {"archive": {"id": "a1", "sha256": "0".repeat(64), "sizeBytes": 10}}, "requirements": "six"});
        let pod = build(archive, &config);
        let spec = pod.spec.as_ref().unwrap();
        let init: Vec<&str> = spec.init_containers.as_ref().unwrap().iter().map(|c| c.name.as_str()).collect();
        assert_eq!(init, [RECEIVE_CONTAINER, INSTALL_CONTAINER]);
        let receive = &spec.init_containers.as_ref().unwrap()[0];
        assert_eq!((receive.stdin, receive.stdin_once), (Some(true), Some(true)));
        assert_eq!(
            receive.command.as_ref().unwrap()[1..],
            ["-I".into(), format!("{RUN_DIR}/{RUNNER_FILE}"), ROLE_RECEIVE.into()]
        );
        let install = &spec.init_containers.as_ref().unwrap()[1];
        assert_eq!(
            install.command.as_deref().unwrap(),
            ["python".to_string(), "-I".into(), format!("{RUN_DIR}/{RUNNER_FILE}"), ROLE_INSTALL.into()],
            "isolated: uploaded files cannot shadow pip"
        );
        assert_eq!((install.args.as_ref(), install.working_dir.as_deref()), (None, Some("/")), "not the workspace");
        assert_eq!(spec.containers[0].working_dir.as_deref(), Some(WORK_DIR));
        assert_eq!(spec.containers[0].command.as_ref().unwrap()[1], "-I");
        assert!(!install.env.as_ref().unwrap().iter().any(|e| e.name == ALLOW_SDIST_ENV), "wheels only by default");
        let main = &spec.containers[0];
        assert_eq!(main.stdin, Some(true), "the program waits for the network to close");
        assert!(main.env.as_ref().unwrap().iter().any(|e| e.name == GATE_ENV && e.value.as_deref() == Some(FLAG_ON)));
        assert!(
            main.volume_mounts.as_ref().unwrap().iter().any(|m| m.mount_path == DEPS_DIR && m.read_only == Some(true))
        );
        assert_eq!(spec.active_deadline_seconds, Some(300 + 120 + 300));
    }

    #[test]
    fn plain_http_indexes_are_trusted_explicitly() {
        assert_eq!(plain_http_authority("http://proxy.ns.svc:5000/index/"), Some("proxy.ns.svc:5000"));
        assert_eq!(plain_http_authority("http://u:p@mirror/simple"), Some("mirror"));
        assert_eq!(plain_http_authority("https://pypi.internal/simple"), None);
        let mut config = index_config();
        config.package_index.as_mut().unwrap().url = "http://proxy.ns.svc:5000/index/".into();
        let pod = build(serde_json::json!({"requirements": "six"}), &config);
        let install = &pod.spec.unwrap().init_containers.unwrap()[0];
        let vars = install.env.as_ref().unwrap();
        assert!(vars.iter().any(|v| v.name == "PIP_TRUSTED_HOST" && v.value.as_deref() == Some("proxy.ns.svc:5000")));
    }

    #[test]
    fn user_env_secrets_and_the_nonce_cannot_be_overridden() {
        let extra = serde_json::json!({"env": [
            {"name": "A", "value": "1"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            {"name": NONCE_ENV, "value": "attacker"},
            {"name": GATE_ENV, "value": "0"},
            {"name": OOM_EVENTS_ENV, "value": "/work/fake-events"},
            {"name": DISK_FREE_ENV, "value": "/work/fake-free"},
            {"name": "HOME", "value": "/work"}]});
        let pod = build(extra, &OperatorConfig { allow_secret_env: true, ..OperatorConfig::default() });
        let vars = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let get = |n: &str| vars.iter().filter(|v| v.name == n).collect::<Vec<_>>();
        assert_eq!(get(NONCE_ENV).len(), 1);
        assert_eq!(get(NONCE_ENV)[0].value.as_deref(), Some("n0nce"));
        assert_eq!(get(GATE_ENV).len(), 1, "the gate cannot be turned off");
        assert_eq!(get(GATE_ENV)[0].value.as_deref(), Some(FLAG_ON));
        assert!(get(OOM_EVENTS_ENV).is_empty(), "the out-of-memory check reads the real cgroup");
        assert!(get(DISK_FREE_ENV).is_empty(), "the full-disk check reads the real /work");
        assert_eq!(get("HOME")[0].value.as_deref(), Some("/work"), "the user's value wins over the defaults");
        assert_eq!(get("TOKEN")[0].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap().key, "k");
    }

    fn docker_config() -> OperatorConfig {
        OperatorConfig::with_docker_in(&["team-a"])
    }

    #[test]
    fn docker_is_a_privileged_root_sidecar_with_its_own_data_root() {
        let pod = build(
            serde_json::json!({"docker": true, "network": "egress", "limits": {"diskMB": 3000}}),
            &docker_config(),
        );
        let spec = pod.spec.unwrap();
        let init = spec.init_containers.as_ref().unwrap();
        assert_eq!(init.len(), 1);
        let sidecar = &init[0];
        assert_eq!((sidecar.name.as_str(), sidecar.restart_policy.as_deref()), (DOCKER_CONTAINER, Some("Always")));
        let sc = sidecar.security_context.as_ref().unwrap();
        assert_eq!(sc.privileged, Some(true), "the one documented exception");
        assert_eq!((sc.run_as_user, sc.run_as_group, sc.run_as_non_root), (Some(0), Some(0), Some(false)));
        assert_eq!(sc.allow_privilege_escalation, None, "implied by privileged; false would be invalid");
        let pod_sc = spec.security_context.as_ref().unwrap();
        assert_eq!((pod_sc.run_as_user, pod_sc.run_as_non_root), (Some(UID), Some(true)), "the Pod's defaults stay");

        let mounts = sidecar.volume_mounts.as_ref().unwrap();
        assert_eq!(mounts.len(), 1, "the daemon sees its data root only");
        assert_eq!((mounts[0].name.as_str(), mounts[0].mount_path.as_str()), (DOCKER_DATA_VOLUME, "/var/lib/docker"));
        assert_eq!(mounts[0].read_only, None);
        let data = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == DOCKER_DATA_VOLUME).unwrap();
        assert_eq!(data.empty_dir.as_ref().unwrap().size_limit.as_ref().unwrap().0, "3000Mi", "the request's diskMB");
        let storage = &sidecar.resources.as_ref().unwrap().limits.as_ref().unwrap()["ephemeral-storage"];
        assert_eq!(storage.0, "3256Mi", "room for the data root");

        let main = &spec.containers[0];
        assert_eq!(main.security_context, Some(locked_down()), "the program stays unprivileged");
        let msc = main.security_context.as_ref().unwrap();
        assert_eq!((msc.run_as_user, msc.run_as_non_root, msc.privileged), (Some(UID), Some(true), Some(false)));
        assert_eq!((msc.allow_privilege_escalation, msc.read_only_root_filesystem), (Some(false), Some(true)));
        assert_eq!(msc.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert!(!main.volume_mounts.as_ref().unwrap().iter().any(|m| m.name == DOCKER_DATA_VOLUME));
        let host = main.env.as_ref().unwrap().iter().find(|e| e.name == "DOCKER_HOST").unwrap();
        assert_eq!(host.value.as_deref(), Some("tcp://127.0.0.1:2375"));
    }

    #[test]
    fn without_docker_there_is_no_daemon_nor_its_volume() {
        let pod = build(serde_json::json!({"network": "egress"}), &docker_config());
        let spec = pod.spec.unwrap();
        assert!(spec.init_containers.is_none());
        assert!(!spec.volumes.unwrap().iter().any(|v| v.name == DOCKER_DATA_VOLUME));
        assert!(!spec.containers[0].env.as_ref().unwrap().iter().any(|e| e.name == "DOCKER_HOST"));
    }
}
