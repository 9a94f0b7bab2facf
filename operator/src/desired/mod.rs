//! The objects an accepted PythonExecution owns, computed from the resource, the admission decision and the
//! configuration alone (pure functions, unit-tested and validated against the upstream schemas and Pod Security
//! "restricted"): the ConfigMap with the runner and inline sources, the NetworkPolicy, the Pod.
//!
//! Every child has the resource's name, its namespace, a controller owner reference (so Kubernetes deletes them
//! with it), the label [`EXECUTION_LABEL`] = the resource's uid (the NetworkPolicy selects exactly that Pod), and
//! the managed-by label the operator's watches select. The names the Pod and its runner share (containers, paths,
//! variables, `run.json`) are `pyexec_core::pod::protocol`'s.

mod config_map;
mod network_policy;
pub(crate) mod pod;

pub use config_map::{config_map, runner_fence};
pub use network_policy::{PolicyStage, STAGE_ANNOTATION, find_default_deny, is_default_deny, network_policy, stage_of};
pub use pod::pod;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::{MANAGED_BY_LABEL, OPERATOR};

/// Label carrying the owning resource's uid on every child.
pub const EXECUTION_LABEL: &str = "pyexec.io/execution";
/// Label naming the owning resource (informational; names can exceed label length, so it is cut).
pub const NAME_LABEL: &str = "pyexec.io/name";

/// The class of a long-lived Pod, as a pool's or a session's spec gives it.
pub struct PodClass<'a> {
    /// CPython version, when no image is named.
    pub python_version: Option<&'a String>,
    /// Image, from the allow-list.
    pub image: Option<&'a String>,
    /// Memory, CPU and disk.
    pub limits: &'a pyexec_crds::PoolLimits,
    /// Network mode.
    pub network: pyexec_crds::NetworkMode,
    /// RuntimeClass.
    pub runtime_class_name: Option<&'a String>,
}

/// What a long-lived Pod of a class is built like (a warm pool's idle Pod, a session's Pod): an execution of that
/// class, named after and owned like `owner` (the execution builders and admission read its name, namespace and
/// uid), with no source and a timeout the operator allows (the Pod's real deadline is set by its own controller).
pub fn class_execution<K: Resource>(
    owner: &K,
    class: &PodClass<'_>,
    config: &crate::config::OperatorConfig,
) -> PythonExecution {
    let limits = pyexec_crds::Limits {
        timeout_seconds: pyexec_crds::Limits::default().timeout_seconds.min(config.max_limits.timeout_seconds).max(1),
        memory_mb: class.limits.memory_mb,
        cpu: class.limits.cpu.clone(),
        disk_mb: class.limits.disk_mb,
    };
    let mut cr = PythonExecution::new(
        &owner.meta().name.clone().unwrap_or_default(),
        pyexec_crds::PythonExecutionSpec {
            python_version: class.python_version.cloned(),
            image: class.image.cloned(),
            limits,
            network: class.network,
            runtime_class_name: class.runtime_class_name.cloned(),
            ..pyexec_crds::PythonExecutionSpec::default()
        },
    );
    cr.metadata.namespace = owner.meta().namespace.clone();
    cr.metadata.uid = owner.meta().uid.clone();
    cr
}

/// Labels of every child of `cr`.
pub fn labels(cr: &PythonExecution) -> BTreeMap<String, String> {
    let mut name = cr.name_any();
    name.truncate(63);
    let name = name.trim_end_matches(['-', '.', '_']).to_owned();
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "python-executor".into()),
        ("app.kubernetes.io/component".into(), "execution".into()),
        (MANAGED_BY_LABEL.into(), OPERATOR.into()),
        (EXECUTION_LABEL.into(), cr.uid().unwrap_or_default()),
        (NAME_LABEL.into(), name),
    ])
}

/// Metadata of a child of `cr`: same name and namespace, labels, controller owner reference.
pub fn child_meta(cr: &PythonExecution) -> ObjectMeta {
    ObjectMeta {
        name: Some(cr.name_any()),
        namespace: cr.namespace(),
        labels: Some(labels(cr)),
        owner_references: cr.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Resources and configurations shared by the tests of the builders.

    use pyexec_crds::{PythonExecution, PythonExecutionSpec};

    /// A resource as the API server would have stored it (uid, namespace set).
    pub fn execution(spec: serde_json::Value) -> PythonExecution {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution",
            "metadata": {"name": "job-1", "namespace": "team-a", "uid": "0b7c6f0e-1f1e-4c43-9d3b-6f6a0f0e0001", "generation": 1},
            "spec": spec,
        }))
        .unwrap()
    }

    /// Inline `main.py` = `print(1)` and the given extra spec fields.
    pub fn simple(extra: serde_json::Value) -> PythonExecution {
        let mut spec = serde_json::json!({"source": {"files": [{"name": "main.py", "content": "print(1)"}]}, "entrypoint": "main.py"});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let _: PythonExecutionSpec = serde_json::from_value(spec.clone()).unwrap();
        execution(spec)
    }
}
