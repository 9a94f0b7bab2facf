//! The class of Pods a pool keeps (image, CPU, memory, disk, network mode, RuntimeClass) and whether an execution
//! fits it. Pure.
//!
//! A pool's class is admitted as an execution of that class would be ([`crate::admission::admit`] on the pool's
//! template execution, [`template`]), so a pool can never hold Pods that no execution could have had (an image off
//! the allow-list, a RuntimeClass the operator does not allow, limits above its maximum).

use pyexec_crds::{PythonExecution, PythonExecutionPool};

use crate::admission::{Admitted, Refusal, admit};
use crate::config::OperatorConfig;
use crate::desired::{PodClass, class_execution};

/// The Pods of one pool: what an execution must have asked for to claim one.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolClass {
    /// The pool's template execution, admitted: image, CPU in millicores.
    pub admitted: Admitted,
    /// The template execution (the pool's name, namespace and uid; its class in the spec).
    pub template: PythonExecution,
}

/// The execution a pool's Pods are built for: the pool's class as a PythonExecution spec, with no source and the
/// pool's name, namespace and uid (the builders name and label a Pod after it; the pool renames them).
pub fn template(pool: &PythonExecutionPool, config: &OperatorConfig) -> PythonExecution {
    let spec = &pool.spec;
    let class = PodClass {
        python_version: spec.python_version.as_ref(),
        image: spec.image.as_ref(),
        limits: &spec.limits,
        network: spec.network,
        runtime_class_name: spec.runtime_class_name.as_ref(),
    };
    // An idle Pod has no deadline; a claimed one gets its execution's.
    class_execution(pool, &class, config)
}

impl PoolClass {
    /// The pool's class, or why the operator refuses it (the same refusals as an execution's).
    pub fn of(pool: &PythonExecutionPool, config: &OperatorConfig) -> Result<PoolClass, Refusal> {
        let template = template(pool, config);
        let admitted = admit(&template, config, None)?;
        Ok(PoolClass { admitted, template })
    }

    /// Whether the admitted execution `cr` fits this class: the same image, CPU, memory, disk, network mode and
    /// RuntimeClass, and nothing a warm Pod cannot do ([`warmable`]).
    pub fn fits(&self, cr: &PythonExecution, admitted: &Admitted) -> bool {
        let (mine, theirs) = (&self.template.spec, &cr.spec);
        warmable(cr, admitted)
            && admitted.image == self.admitted.image
            && admitted.cpu_millis == self.admitted.cpu_millis
            && theirs.limits.memory_mb == mine.limits.memory_mb
            && theirs.limits.disk_mb == mine.limits.disk_mb
            && theirs.network == mine.network
            && theirs.runtime_class_name == mine.runtime_class_name
    }
}

/// Whether an execution can run in a warm Pod at all: everything it needs must come through the claim, so no
/// install stage (its own init container and network), no Docker sidecar, no source but inline files (a ConfigMap
/// is a volume and an archive needs the receive container, both fixed when the Pod is created), and no variable
/// from a Secret (resolved by the kubelet when the container starts).
pub fn warmable(cr: &PythonExecution, admitted: &Admitted) -> bool {
    let spec = &cr.spec;
    !admitted.installs()
        && !spec.docker
        && spec.source.config_map.is_none()
        && spec.source.archive.is_none()
        && spec.env.iter().all(|v| v.value_from.is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::simple;

    fn pool(spec: serde_json::Value) -> PythonExecutionPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecutionPool",
            "metadata": {"name": "small", "namespace": "team-a", "uid": "pool-uid"}, "spec": spec,
        }))
        .unwrap()
    }

    fn fits(pool_spec: serde_json::Value, execution: serde_json::Value, config: &OperatorConfig) -> bool {
        let class = PoolClass::of(&pool(pool_spec), config).unwrap();
        let cr = simple(execution);
        let admitted = admit(&cr, config, None).unwrap();
        class.fits(&cr, &admitted)
    }

    #[test]
    fn the_same_class_fits_and_any_difference_does_not() {
        let config = OperatorConfig { allowed_runtime_classes: vec!["gvisor".into()], ..OperatorConfig::default() };
        let shape =
            serde_json::json!({"pythonVersion": "3.12", "limits": {"memoryMB": 256, "cpu": "500m", "diskMB": 100}});
        let same = serde_json::json!({"limits": {"timeoutSeconds": 7, "memoryMB": 256, "cpu": "0.5", "diskMB": 100}});
        assert!(fits(shape.clone(), same.clone(), &config), "same image (default version), CPU in another notation");
        let mut image = shape.clone();
        image.as_object_mut().unwrap().remove("pythonVersion");
        image["image"] = serde_json::json!("python:3.12-slim");
        assert!(fits(image, same.clone(), &config), "the image of the version");
        for (field, value) in [
            ("pythonVersion", serde_json::json!("3.11")),
            ("limits", serde_json::json!({"memoryMB": 512, "cpu": "500m", "diskMB": 100})),
            ("limits", serde_json::json!({"memoryMB": 256, "cpu": "1", "diskMB": 100})),
            ("limits", serde_json::json!({"memoryMB": 256, "cpu": "500m", "diskMB": 101})),
            ("network", serde_json::json!("egress")),
            ("runtimeClassName", serde_json::json!("gvisor")),
        ] {
            let mut other = shape.clone();
            other[field] = value.clone();
            assert!(!fits(other, same.clone(), &config), "{field}: {value}");
        }
    }

    #[test]
    fn what_a_warm_pod_cannot_do_runs_cold() {
        let config = OperatorConfig {
            allow_secret_env: true,
            archives: Some(crate::config::ArchiveStore { url: "http://a".into(), token_file: None }),
            ..OperatorConfig::default()
        };
        let shape = serde_json::json!({});
        assert!(fits(shape.clone(), serde_json::json!({"env": [{"name": "A", "value": "1"}], "stdin": "x"}), &config));
        for cold in [
            serde_json::json!({"env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
            serde_json::json!({"source": {"configMap": {"name": "code"}}}),
            serde_json::json!({"source": {"archive": {"id": "a1", "sha256": "0".repeat(64), "sizeBytes": 1}}}),
        ] {
            assert!(!fits(shape.clone(), cold.clone(), &config), "{cold}");
        }
        let cr = simple(serde_json::json!({}));
        let installs = Admitted { requirements: Some("six".into()), ..admit(&cr, &config, None).unwrap() };
        assert!(!warmable(&cr, &installs), "an install stage needs its own init container");
        let docker = simple(serde_json::json!({"docker": true, "network": "egress"}));
        assert!(!warmable(&docker, &admit(&cr, &config, None).unwrap()));
    }

    #[test]
    fn a_pool_the_operator_would_refuse_as_an_execution_is_refused() {
        let config = OperatorConfig::default();
        let refusal = PoolClass::of(&pool(serde_json::json!({"image": "attacker/miner"})), &config).unwrap_err();
        assert_eq!(refusal.reason, "ImageNotAllowed");
        let refusal = PoolClass::of(&pool(serde_json::json!({"runtimeClassName": "kata"})), &config).unwrap_err();
        assert_eq!(refusal.reason, "RuntimeClassNotAllowed");
        let refusal = PoolClass::of(&pool(serde_json::json!({"limits": {"memoryMB": 99999}})), &config).unwrap_err();
        assert_eq!(refusal.reason, "LimitTooHigh");
    }
}
