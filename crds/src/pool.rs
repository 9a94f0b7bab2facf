//! The `PythonExecutionPool` resource (`pyexec.io/v1alpha1`): a warm pool of idle execution Pods of one class (image,
//! limits, network mode, RuntimeClass) that the operator keeps ready, so that an execution of that class claims a
//! running Pod instead of waiting for a new one. Its scale subresource lets `kubectl scale` and a
//! HorizontalPodAutoscaler size it.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::types::NetworkMode;

/// Which executions the pool serves, and how many idle Pods it keeps for them. An execution fits the pool when its
/// image (or Python version), limits (`memoryMB`, `cpu`, `diskMB`), network mode and RuntimeClass are the pool's,
/// and it needs no install stage, no Docker, no source other than inline files and no variable from a Secret.
// The printer columns repeat `type_ = ...`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "pyexec.io",
    version = "v1alpha1",
    kind = "PythonExecutionPool",
    namespaced,
    shortname = "pyexecpool",
    category = "pyexec",
    status = "PythonExecutionPoolStatus",
    derive = "PartialEq",
    derive = "Default",
    cel,
    doc = "A warm pool of idle execution Pods of one class, claimed by the PythonExecutions that fit it.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Idle", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.ready"),
    printcolumn(name = "Claimed", type_ = "integer", json_path = ".status.claimed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("!(has(self.image) && has(self.pythonVersion))")
    .message("set at most one of image, pythonVersion"))]
#[serde(rename_all = "camelCase")]
pub struct PythonExecutionPoolSpec {
    /// How many idle Pods to keep ready. Claimed Pods do not count: the pool refills behind each claim.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// CPython version (`3.10` to `3.13`) of the executions served. Default: the operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^3\.(10|11|12|13)$"))]
    pub python_version: Option<String>,
    /// Container image instead of `pythonVersion`; must be on the operator's allow-list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    pub image: Option<String>,
    /// The limits of the executions served (their `timeoutSeconds` may be anything: it counts from the hand-over).
    #[serde(default)]
    pub limits: PoolLimits,
    /// The network mode of the executions served: the idle Pods are fenced by it before they start.
    #[serde(default)]
    pub network: NetworkMode,
    /// The RuntimeClass of the executions served, when the operator allows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub runtime_class_name: Option<String>,
}

/// The resource shape of a pool's Pods: `PythonExecution`'s limits without the timeout, with the same defaults.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolLimits {
    /// Memory, MiB.
    #[serde(rename = "memoryMB", default = "default_memory")]
    #[schemars(range(min = 16, max = 262144))]
    pub memory_mb: u64,
    /// CPU (a quantity: `500m`, `1`, `2`, `0.5`).
    #[serde(default = "default_cpu", deserialize_with = "cpu_or_default")]
    #[schemars(extend("pattern" = r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$"))]
    pub cpu: Quantity,
    /// Size of `/work` (and the ephemeral storage of the Pod), MiB.
    #[serde(rename = "diskMB", default = "default_disk")]
    #[schemars(range(min = 1, max = 1048576))]
    pub disk_mb: u64,
}

impl Default for PoolLimits {
    fn default() -> Self {
        let limits = crate::types::Limits::default();
        PoolLimits { memory_mb: limits.memory_mb, cpu: limits.cpu, disk_mb: limits.disk_mb }
    }
}

fn default_memory() -> u64 {
    PoolLimits::default().memory_mb
}
fn default_cpu() -> Quantity {
    PoolLimits::default().cpu
}
fn default_disk() -> u64 {
    PoolLimits::default().disk_mb
}
/// The schema lets `cpu` be null (it has a default): null reads as absent.
fn cpu_or_default<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Quantity, D::Error> {
    Ok(Option::<Quantity>::deserialize(deserializer)?.unwrap_or_else(default_cpu))
}

/// What the pool has, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PythonExecutionPoolStatus {
    /// Idle Pods that exist (starting or ready): the scale subresource's replicas.
    #[serde(default)]
    pub replicas: i32,
    /// Idle Pods ready to be claimed (the runner started and waits for its claim).
    #[serde(default)]
    pub ready: i32,
    /// Pods claimed from this pool that still exist (they belong to their executions now).
    #[serde(default)]
    pub claimed: i32,
    /// The label selector of the idle Pods (the scale subresource's, for a HorizontalPodAutoscaler).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub selector: String,
    /// `Ready` (every idle Pod asked for is ready), with reasons such as `Filling`, `RateLimited`, `Invalid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_scale_subresource_points_at_replicas_and_the_selector() {
        let crd = serde_json::to_value(PythonExecutionPool::crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        assert_eq!(
            version["subresources"]["scale"],
            json!({"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                   "labelSelectorPath": ".status.selector"})
        );
        assert_eq!(version["subresources"]["status"], json!({}));
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
        assert_eq!(status["conditions"]["x-kubernetes-list-map-keys"], json!(["type"]));
        assert_eq!(crd["spec"]["scope"], "Namespaced");
    }

    #[test]
    fn limits_default_like_an_executions() {
        let pool: PythonExecutionPoolSpec = serde_json::from_value(json!({"limits": {"cpu": null}})).unwrap();
        assert_eq!((pool.replicas, pool.limits), (0, PoolLimits::default()));
        let defaults = crate::types::Limits::default();
        assert_eq!(
            (pool_limits().memory_mb, pool_limits().cpu, pool_limits().disk_mb),
            (defaults.memory_mb, defaults.cpu, defaults.disk_mb)
        );
    }

    fn pool_limits() -> PoolLimits {
        PoolLimits::default()
    }
}
