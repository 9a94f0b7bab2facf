//! The `PythonSession` resource (`pyexec.io/v1alpha1`): one Python interpreter that keeps its state between calls
//! (docs/sessions.md), run by the operator in a locked-down Pod of its own. The API server creates the resource,
//! waits for `Ready`, attaches to the Pod named by `status.podName` (container [`SESSION_CONTAINER`]) and speaks
//! the session runner's protocol over its stdin and stdout; after each call it records `status.lastActivityAt`
//! (a merge patch of the status), which the operator reads to end idle sessions.
//!
//! What the two sides agree on besides the schema is defined here once: the Pod's labels and container, the
//! annotation counting restarts, and how a restart is asked for (delete the Pod; the operator creates the next one).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::pool::PoolLimits;
use crate::types::NetworkMode;

/// The container of a session's Pod that runs the session runner: the one to attach to.
pub const SESSION_CONTAINER: &str = pyexec_core::pod::protocol::MAIN_CONTAINER;
/// Label naming the session on its Pod, ConfigMap and NetworkPolicy (session names are at most
/// [`MAX_SESSION_NAME`] characters so that they fit a label value).
pub const SESSION_LABEL: &str = "pyexec.io/session";
/// Label carrying the session's uid on its Pods: the operator finds them, and the session's NetworkPolicy selects
/// them, by it, so that a session deleted and created again under the same name never adopts the old one's Pods.
pub const SESSION_UID_LABEL: &str = "pyexec.io/session-uid";
/// Annotation on a session's Pod: how many Pods the session had before this one (0 for the first). The status's
/// `restarts` is the current Pod's.
pub const RESTARTS_ANNOTATION: &str = "pyexec.io/session-restarts";
/// The longest session name: it is a label value on the session's Pod.
pub const MAX_SESSION_NAME: usize = 63;
/// The most entries of `status.installedPackages` (the schema's bound; the operator keeps the first ones).
pub const MAX_INSTALLED_PACKAGES: usize = 1024;
/// The longest entry of `status.installedPackages` (the schema's bound; the operator leaves longer ones out).
pub const MAX_INSTALLED_PACKAGE_CHARS: usize = 256;
/// The seconds after which an `Ended` or `Failed` session is deleted by the operator, if nobody deleted it before.
pub const ENDED_GRACE_SECONDS: u64 = 600;

/// The name of the resource of session `id` (`ses_<uuid>` → `ses-<uuid>`: resource names take no `_`), `None` for
/// anything that is not a session id.
pub fn session_resource_name(id: &str) -> Option<String> {
    pyexec_core::session::is_session_id(id).then(|| id.replacen('_', "-", 1))
}

/// The session id of the resource `name` (the inverse of [`session_resource_name`]).
pub fn session_id_of(name: &str) -> String {
    name.replacen('-', "_", 1)
}

/// The limits of a session's Pod: `PythonExecution`'s limits without the timeout (a session has no single run;
/// each call's timeout is the API server's), with the same defaults.
pub type SessionLimits = PoolLimits;

/// One interpreter that keeps its state between calls. Immutable after creation.
// The printer columns repeat `type_ = ...`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pyexec.io",
    version = "v1alpha1",
    kind = "PythonSession",
    namespaced,
    shortname = "pyexecsession",
    category = "pyexec",
    status = "PythonSessionStatus",
    derive = "PartialEq",
    derive = "Default",
    cel,
    doc = "A Python interpreter that keeps its state between calls, in a locked-down Pod.",
    validation = Rule::new("self.metadata.name.size() <= 63")
        .message("a PythonSession's name is at most 63 characters (it labels the session's Pod)"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Pod", type_ = "string", json_path = ".status.podName"),
    printcolumn(name = "Restarts", type_ = "integer", json_path = ".status.restarts", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    selectable = ".status.phase"
)]
// Every string and list is bounded, also to keep the CEL cost of `self == oldSelf` within the API server's budget.
#[x_kube(
    validation = Rule::new("self == oldSelf").message("spec is immutable: create a new PythonSession"),
    validation = Rule::new("!(has(self.image) && has(self.pythonVersion))")
        .message("set at most one of image, pythonVersion")
)]
#[serde(rename_all = "camelCase")]
pub struct PythonSessionSpec {
    /// CPython version (`3.10` to `3.13`); the operator maps it to an allowed image. Default: the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^3\.(10|11|12|13)$"))]
    pub python_version: Option<String>,
    /// Container image instead of `pythonVersion`; must be on the operator's allow-list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// Environment variables of the interpreter (names starting with `PYEXEC_` are the runner's and are ignored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub env: Vec<SessionEnvVar>,
    /// Resource limits of the whole session (every call shares them).
    #[serde(default)]
    pub limits: SessionLimits,
    /// `none` (the default): no network at all. `egress`: the public internet only (never private ranges, the
    /// cluster, link-local or cloud metadata).
    #[serde(default)]
    pub network: NetworkMode,
    /// A RuntimeClass for stronger isolation (gVisor, Kata), when the operator allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub runtime_class_name: Option<String>,
    /// The session ends this many seconds after its last call or its becoming ready, whichever is later
    /// (`status.lastActivityAt`, `status.readyAt`).
    #[serde(default = "default_idle_timeout")]
    #[schemars(range(min = 1, max = 86400))]
    pub idle_timeout_seconds: u32,
    /// The session ends this many seconds after it was created, calls or not.
    #[serde(default = "default_max_lifetime")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_lifetime_seconds: u32,
    /// requirements.txt text to install when the session starts, and again in every Pod that replaces one: an
    /// `install` init container pip-installs it (binary wheels only, unless the operator allows source builds) from
    /// the operator's package index, the only network it has, into a directory on the interpreter's `PYTHONPATH`.
    /// The interpreter starts once the network is closed again; `status.installedPackages` lists what was
    /// installed. A failed install fails the session (`Ready=False`, reason `InstallFailed`, pip's reason in
    /// `status.message`); an operator without a package index refuses it (`InstallUnavailable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub requirements_txt: Option<String>,
}

fn default_idle_timeout() -> u32 {
    600
}
fn default_max_lifetime() -> u32 {
    3600
}

impl Default for PythonSessionSpec {
    fn default() -> Self {
        PythonSessionSpec {
            python_version: None,
            image: None,
            env: Vec::new(),
            limits: SessionLimits::default(),
            network: NetworkMode::None,
            runtime_class_name: None,
            idle_timeout_seconds: default_idle_timeout(),
            max_lifetime_seconds: default_max_lifetime(),
            requirements_txt: None,
        }
    }
}

/// One environment variable of a session: a plain value (a session takes nothing from Secrets).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SessionEnvVar {
    /// Variable name.
    #[schemars(length(min = 1, max = 256), pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// Its value.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub value: String,
}

/// What the session is doing, written by the operator (except `lastActivityAt`, the API server's).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PythonSessionStatus {
    /// The phase (see [`SessionPhase`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SessionPhase>,
    /// The session's current Pod (attach to its container `python` while the phase is `Ready`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// `Ready`, with reasons `Starting`, `Restarting`, `PodNotReady`, `QuotaExceeded` (Pending), `PodReady` (Ready), `IdleTimeout`,
    /// `LifetimeExceeded` (Ended), `PodFailed`, `InstallFailed`, `StartupTimeout`, `PodRefused`, `NameConflict`, or
    /// admission's (`ImageNotAllowed`, `LimitTooHigh`, `InstallUnavailable`, ...) (Failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// When the operator created the session's first Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the session last became ready (its current Pod's runner up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Time>,
    /// When it ended or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Time>,
    /// When the last call ended: written by the API server after each call (the operator only reads it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_at: Option<Time>,
    /// Memory the session's container used after the last call (its cgroup's count, as the session runner read
    /// it): written by the API server after each call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub memory_used_bytes: Option<u64>,
    /// What `requirementsTxt` installed (`name==version`, sorted), as the runner of the session's latest ready Pod
    /// reported it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // The bounds are MAX_INSTALLED_PACKAGES and MAX_INSTALLED_PACKAGE_CHARS (an attribute takes literals only).
    #[schemars(length(max = 1024), inner(length(max = 256)))]
    pub installed_packages: Vec<String>,
    /// How many times the session's Pod was replaced (lost, failed, or deleted to restart the interpreter).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub restarts: i32,
    /// Why the session is in its phase, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub message: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The phase of a session: `Pending` (its Pod is starting, also again after a restart) → `Ready` → `Ended` (idle or
/// past its lifetime); `Failed` when it cannot run. `Ended` and `Failed` never change.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionPhase {
    /// Accepted; its Pod is not ready yet (or is being replaced).
    Pending,
    /// Its Pod's runner is up: calls can be made.
    Ready,
    /// Idle for too long, or past its lifetime: its Pod was deleted.
    Ended,
    /// It cannot run: refused, or its Pod ended before it was ready.
    Failed,
}

impl SessionPhase {
    /// Ended and Failed never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, SessionPhase::Ended | SessionPhase::Failed)
    }
}

impl PythonSession {
    /// The phase, `Pending` when no status was written yet.
    pub fn phase(&self) -> SessionPhase {
        self.status.as_ref().and_then(|s| s.phase).unwrap_or(SessionPhase::Pending)
    }
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_and_the_crds_shape() {
        let spec: PythonSessionSpec = serde_json::from_value(json!({})).unwrap();
        assert_eq!(spec, PythonSessionSpec::default());
        assert_eq!((spec.idle_timeout_seconds, spec.max_lifetime_seconds), (600, 3600));
        assert_eq!(spec.network, NetworkMode::None);
        let crd = serde_json::to_value(PythonSession::crd()).unwrap();
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["pyexecsession"]));
        assert_eq!(crd["spec"]["names"]["categories"], json!(["pyexec"]));
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["subresources"]["status"], json!({}));
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["Phase", "Pod", "Restarts", "Age"]);
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
        assert_eq!(status["phase"]["enum"], json!(["Pending", "Ready", "Ended", "Failed"]));
        assert_eq!(SESSION_CONTAINER, "python");
        let installed = &status["installedPackages"];
        assert_eq!(installed["maxItems"], MAX_INSTALLED_PACKAGES);
        assert_eq!(installed["items"]["maxLength"], MAX_INSTALLED_PACKAGE_CHARS);
    }

    #[test]
    fn the_api_servers_activity_patch_reads_back() {
        let status: PythonSessionStatus =
            serde_json::from_value(json!({"phase": "Ready", "lastActivityAt": "2026-01-01T00:00:01Z"})).unwrap();
        assert_eq!(status.last_activity_at.unwrap().0.as_second(), 1_767_225_601);
        assert_eq!(status.restarts, 0);
        assert!(SessionPhase::Ended.is_terminal() && !SessionPhase::Ready.is_terminal());
    }
}
