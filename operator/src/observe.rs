//! What the observed Pod of an execution means: still starting (and what it waits for from the operator), running,
//! finished (and how), or lost. Pure: it reads the Pod's status only, so every case is unit-tested with Pods as
//! the kubelet reports them.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff;

use pyexec_core::pod::protocol::{FLAG_ON, GATE_ENV, INSTALL_CONTAINER, MAIN_CONTAINER, RECEIVE_CONTAINER};

/// The state of an execution's Pod.
#[derive(Debug, Clone, PartialEq)]
pub enum PodState {
    /// Scheduled or not, containers not all started. `needs` says what the Pod waits for from the operator.
    Starting {
        /// The `receive` container runs and waits for the archive on its stdin.
        archive_wanted: bool,
        /// Why it is not running yet, when the kubelet says (image pulls, scheduling).
        waiting: Option<String>,
    },
    /// The program's container runs. `gate_wanted`: it still waits for the go-ahead (every Pod does until it came).
    Running {
        /// When the main container started.
        started_at: Option<Time>,
        /// The runner waits on its stdin for the operator to close the network and say go.
        gate_wanted: bool,
    },
    /// The main container ended (or never will).
    Finished(Finish),
    /// The Pod cannot start: a fatal container error (a missing Secret, an invalid image name).
    Stuck(String),
}

/// How a Pod finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// Which step ended it.
    pub kind: FinishKind,
    /// The main container's exit code, when it ran.
    pub exit_code: Option<i32>,
    /// The main container was OOM-killed.
    pub oom_killed: bool,
    /// The Pod's `activeDeadlineSeconds` passed.
    pub deadline_exceeded: bool,
    /// The kubelet evicted the Pod for using more ephemeral storage than its limit (`diskMB`: the workspace volume's
    /// `sizeLimit` or the containers' `ephemeral-storage` limit).
    pub disk_exceeded: bool,
    /// When the program started and ended, as far as the kubelet says.
    pub started_at: Option<Time>,
    /// When it ended.
    pub finished_at: Option<Time>,
}

impl Finish {
    /// A Pod stopped before it finished by itself (killed): `kind` says how far it got.
    pub fn unfinished(kind: FinishKind, started_at: Option<Time>) -> Finish {
        Finish {
            kind,
            exit_code: None,
            oom_killed: false,
            deadline_exceeded: false,
            disk_exceeded: false,
            started_at,
            finished_at: None,
        }
    }
}

/// Which step of the Pod finished it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishKind {
    /// The program's container ran (its log has the runner's frames).
    Program,
    /// An init container failed: its name and exit code.
    InitFailed {
        /// `receive` or `install`.
        container: String,
        /// Its exit code.
        exit_code: i32,
    },
    /// The deadline passed before the program started.
    NeverStarted,
}

/// Whether an object is controlled by the resource with uid `owner_uid`: its *controller* owner reference names
/// that uid. Only such objects are the execution's children; one that merely has the same name (created by
/// someone else, before or after) is never read as the execution's, patched or deleted.
pub fn controlled_by(meta: &ObjectMeta, owner_uid: Option<&str>) -> bool {
    let Some(uid) = owner_uid.filter(|u| !u.is_empty()) else { return false };
    meta.owner_references.iter().flatten().any(|r| r.controller == Some(true) && r.uid == uid)
}

/// Reads a Pod.
pub fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.as_deref().unwrap_or("Pending");
    let inits = status.init_container_statuses.unwrap_or_default();
    let mains = status.container_statuses.unwrap_or_default();
    let main = mains.iter().find(|c| c.name == MAIN_CONTAINER);
    let deadline_exceeded = status.reason.as_deref() == Some("DeadlineExceeded");
    let disk_exceeded = evicted_for_storage(status.reason.as_deref(), status.message.as_deref());

    for init in &inits {
        if init.name != RECEIVE_CONTAINER && init.name != INSTALL_CONTAINER {
            continue;
        }
        if let Some(t) = init.state.as_ref().and_then(|s| s.terminated.as_ref())
            && t.exit_code != 0
        {
            return PodState::Finished(Finish {
                kind: FinishKind::InitFailed { container: init.name.clone(), exit_code: t.exit_code },
                exit_code: None,
                oom_killed: t.reason.as_deref() == Some("OOMKilled"),
                deadline_exceeded,
                disk_exceeded,
                started_at: None,
                finished_at: t.finished_at.clone(),
            });
        }
    }
    if let Some(fatal) = mains.iter().chain(&inits).find_map(fatal_waiting) {
        return PodState::Stuck(fatal);
    }
    if let Some(main) = main {
        let state = main.state.clone().unwrap_or_default();
        if let Some(t) = state.terminated {
            return PodState::Finished(Finish {
                kind: FinishKind::Program,
                exit_code: Some(t.exit_code),
                oom_killed: t.reason.as_deref() == Some("OOMKilled"),
                deadline_exceeded,
                disk_exceeded,
                started_at: t.started_at,
                finished_at: t.finished_at,
            });
        }
        if let Some(r) = state.running {
            if phase == "Failed" || phase == "Succeeded" {
                // The kubelet killed the Pod (deadline) and has not updated the container yet.
                return PodState::Finished(Finish {
                    kind: FinishKind::Program,
                    exit_code: None,
                    oom_killed: false,
                    deadline_exceeded,
                    disk_exceeded,
                    started_at: r.started_at,
                    finished_at: None,
                });
            }
            let gate_wanted = main_waits_for_gate(pod) && !gate_opened(pod);
            return PodState::Running { started_at: r.started_at, gate_wanted };
        }
    }
    if phase == "Failed" || phase == "Succeeded" {
        return PodState::Finished(Finish {
            kind: FinishKind::NeverStarted,
            exit_code: None,
            oom_killed: false,
            deadline_exceeded,
            disk_exceeded,
            started_at: None,
            finished_at: None,
        });
    }
    let receiving =
        inits.iter().any(|c| c.name == RECEIVE_CONTAINER && c.state.as_ref().is_some_and(|s| s.running.is_some()));
    let waiting = mains
        .iter()
        .chain(&inits)
        .find_map(|c| {
            c.state
                .as_ref()?
                .waiting
                .as_ref()?
                .reason
                .clone()
                .filter(|r| r != "PodInitializing" && r != "ContainerCreating")
        })
        .or_else(|| {
            let scheduled = status.conditions.as_ref()?.iter().find(|c| c.type_ == "PodScheduled")?;
            (scheduled.status == "False").then(|| scheduled.message.clone().unwrap_or_else(|| "not scheduled".into()))
        });
    PodState::Starting { archive_wanted: receiving, waiting }
}

/// Whether a Pod's status says the kubelet evicted it for ephemeral storage: `reason: Evicted` with a message such
/// as "Pod ephemeral local storage usage exceeds the total limit of containers 50Mi." or "Usage of EmptyDir volume
/// \"work\" exceeds the limit \"50Mi\"." (the workspace is the `work` emptyDir).
fn evicted_for_storage(reason: Option<&str>, message: Option<&str>) -> bool {
    let message = message.unwrap_or_default().to_ascii_lowercase();
    // Node pressure ("The node was low on resource: ephemeral-storage") is not the program's limit: only "exceeds" (or "exceeded").
    reason == Some("Evicted")
        && message.contains("exceed")
        && (message.contains("ephemeral") || message.contains("emptydir"))
}

/// Container errors that never go away by waiting.
fn fatal_waiting(c: &ContainerStatus) -> Option<String> {
    let waiting = c.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    matches!(reason, "CreateContainerConfigError" | "InvalidImageName" | "CreateContainerError")
        .then(|| format!("{reason}: {}", waiting.message.clone().unwrap_or_default()).trim_end_matches(": ").to_owned())
}

/// Whether a [`PodState::Stuck`] message may still resolve by itself: a container that cannot be configured
/// because a Secret or ConfigMap it names does not exist yet (it may be applied a little later). The operator
/// waits for it a bounded time.
pub fn may_resolve(stuck: &str) -> bool {
    stuck.starts_with("CreateContainerConfigError")
}

/// Whether the Pod's main container was made to wait for the go-ahead.
pub fn main_waits_for_gate(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == MAIN_CONTAINER))
        .and_then(|c| c.env.as_ref())
        .is_some_and(|env| env.iter().any(|e| e.name == GATE_ENV && e.value.as_deref() == Some(FLAG_ON)))
}

/// Annotation the operator puts on a Pod once it sent the go-ahead.
pub const GATE_ANNOTATION: &str = "pyexec.io/gate-opened";

/// Whether the go-ahead was sent.
pub fn gate_opened(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(GATE_ANNOTATION))
}

/// Seconds since `t`, by the clock `now`.
pub fn age_seconds(t: &Time, now: jiff::Timestamp) -> i64 {
    now.as_second() - t.0.as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_controller_reference_with_the_resources_uid_makes_an_object_ours() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        let reference = |uid: &str, controller: Option<bool>| OwnerReference {
            api_version: "pyexec.io/v1alpha1".into(),
            kind: "PythonExecution".into(),
            name: "job".into(),
            uid: uid.into(),
            controller,
            block_owner_deletion: None,
        };
        let meta = |refs: Vec<OwnerReference>| ObjectMeta { owner_references: Some(refs), ..ObjectMeta::default() };
        assert!(controlled_by(&meta(vec![reference("u1", Some(true))]), Some("u1")));
        assert!(!controlled_by(&meta(vec![reference("u2", Some(true))]), Some("u1")), "another resource's");
        assert!(!controlled_by(&meta(vec![reference("u1", None)]), Some("u1")), "an owner, not the controller");
        assert!(!controlled_by(&meta(vec![reference("u1", Some(false))]), Some("u1")));
        assert!(!controlled_by(&ObjectMeta::default(), Some("u1")), "no owner at all");
        assert!(!controlled_by(&meta(vec![reference("", Some(true))]), Some("")), "no uid matches nothing");
        assert!(!controlled_by(&meta(vec![reference("u1", Some(true))]), None));
    }

    fn pod(status: serde_json::Value, gate: bool) -> Pod {
        let env = if gate { serde_json::json!([{"name": GATE_ENV, "value": FLAG_ON}]) } else { serde_json::json!([]) };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "python", "env": env}]},
            "status": status,
        }))
        .unwrap()
    }

    fn terminated(name: &str, code: i32, reason: &str) -> serde_json::Value {
        serde_json::json!({"name": name, "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"terminated": {"exitCode": code, "reason": reason,
                "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:02Z"}}})
    }

    fn running(name: &str) -> serde_json::Value {
        serde_json::json!({"name": name, "ready": true, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}})
    }

    fn waiting(name: &str, reason: &str) -> serde_json::Value {
        serde_json::json!({"name": name, "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": "details"}}})
    }

    #[test]
    fn starting_pods_say_what_they_wait_for() {
        let p = pod(
            serde_json::json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}]}),
            false,
        );
        assert_eq!(
            pod_state(&p),
            PodState::Starting { archive_wanted: false, waiting: Some("0/3 nodes are available".into()) }
        );
        let p = pod(
            serde_json::json!({"phase": "Pending", "initContainerStatuses": [running("receive")], "containerStatuses": [waiting("python", "PodInitializing")]}),
            false,
        );
        assert_eq!(pod_state(&p), PodState::Starting { archive_wanted: true, waiting: None });
        let p = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [waiting("python", "ImagePullBackOff")]}),
            false,
        );
        assert_eq!(
            pod_state(&p),
            PodState::Starting { archive_wanted: false, waiting: Some("ImagePullBackOff".into()) }
        );
        let p = pod(
            serde_json::json!({"phase": "Pending", "containerStatuses": [waiting("python", "CreateContainerConfigError")]}),
            false,
        );
        assert_eq!(pod_state(&p), PodState::Stuck("CreateContainerConfigError: details".into()));
        assert!(may_resolve("CreateContainerConfigError: secret \"db\" not found"));
        assert!(!may_resolve("InvalidImageName: details"));
    }

    #[test]
    fn running_pods_with_and_without_a_gate() {
        let p = pod(serde_json::json!({"phase": "Running", "containerStatuses": [running("python")]}), false);
        assert!(matches!(pod_state(&p), PodState::Running { gate_wanted: false, started_at: Some(_) }));
        let mut p = pod(
            serde_json::json!({"phase": "Running", "initContainerStatuses": [terminated("install", 0, "Completed")], "containerStatuses": [running("python")]}),
            true,
        );
        assert!(matches!(pod_state(&p), PodState::Running { gate_wanted: true, .. }));
        p.metadata.annotations = Some([(GATE_ANNOTATION.to_string(), "true".to_string())].into());
        assert!(matches!(pod_state(&p), PodState::Running { gate_wanted: false, .. }), "sent once");
    }

    #[test]
    fn finished_pods_say_how() {
        let p = pod(
            serde_json::json!({"phase": "Succeeded", "containerStatuses": [terminated("python", 0, "Completed")]}),
            false,
        );
        let PodState::Finished(f) = pod_state(&p) else { panic!() };
        assert_eq!((f.kind, f.exit_code, f.oom_killed), (FinishKind::Program, Some(0), false));
        let p = pod(
            serde_json::json!({"phase": "Failed", "containerStatuses": [terminated("python", 137, "OOMKilled")]}),
            false,
        );
        let PodState::Finished(f) = pod_state(&p) else { panic!() };
        assert_eq!((f.exit_code, f.oom_killed), (Some(137), true));
        let p = pod(
            serde_json::json!({"phase": "Failed", "initContainerStatuses": [terminated("install", 1, "Error")]}),
            true,
        );
        let PodState::Finished(f) = pod_state(&p) else { panic!() };
        assert_eq!(f.kind, FinishKind::InitFailed { container: "install".into(), exit_code: 1 });
        let p = pod(
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded", "containerStatuses": [running("python")]}),
            false,
        );
        let PodState::Finished(f) = pod_state(&p) else { panic!() };
        assert!(f.deadline_exceeded && f.kind == FinishKind::Program);
        let p = pod(
            serde_json::json!({"phase": "Failed", "reason": "DeadlineExceeded", "containerStatuses": [waiting("python", "PodInitializing")]}),
            false,
        );
        let PodState::Finished(f) = pod_state(&p) else { panic!() };
        assert_eq!(f.kind, FinishKind::NeverStarted);
    }

    #[test]
    fn an_eviction_for_ephemeral_storage_is_the_disk_limit() {
        for message in [
            "Pod ephemeral local storage usage exceeds the total limit of containers 50Mi. ",
            "Usage of EmptyDir volume \"work\" exceeds the limit \"50Mi\". ",
            "Container python exceeded its local ephemeral storage limit \"50Mi\". ",
        ] {
            let p = pod(
                serde_json::json!({"phase": "Failed", "reason": "Evicted", "message": message,
                    "containerStatuses": [terminated("python", 137, "Error")]}),
                false,
            );
            let PodState::Finished(f) = pod_state(&p) else { panic!() };
            assert!(f.disk_exceeded && f.kind == FinishKind::Program, "{message}");
        }
        let p = pod(
            serde_json::json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: ephemeral-storage. ",
                "containerStatuses": [terminated("python", 137, "Error")]}),
            false,
        );
        let PodState::Finished(f) = pod_state(&p) else { panic!() };
        assert!(!f.disk_exceeded, "node pressure is not the program's limit");
    }
}
