//! The objects a pool owns: one ConfigMap (the runners, no program), one NetworkPolicy (its class's network,
//! selecting its Pods by the pool's uid) and the idle Pods. They are built by the execution's own builders
//! ([`crate::desired`]) from the pool's template execution ([`super::fit::template`]), so that an idle Pod is
//! exactly as locked down as an execution's Pod of that class (Pod Security "restricted", read-only root, no token,
//! requests = limits, ...), and then made the pool's: its name, labels and owner, its runner in claim mode
//! ([`CLAIM_ENV`]), and no deadline until it is claimed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::{Resource, ResourceExt};
use pyexec_core::eval::EVAL_RUNNER_SOURCE;
use pyexec_core::pod::RUNNER_SOURCE;
use pyexec_core::pod::protocol::{CLAIM_ENV, EVAL_RUNNER_FILE, FLAG_ON, MAIN_CONTAINER, RUNNER_FILE};
use pyexec_crds::PythonExecutionPool;
use pyexec_crds::contract::{MANAGED_BY_LABEL, OPERATOR};

use super::fit::PoolClass;
use super::{CLAIMED_LABEL, POOL_LABEL, POOL_UID_LABEL};
use crate::config::OperatorConfig;
use crate::desired::{self, EXECUTION_LABEL, PolicyStage};

/// The name of the pool's ConfigMap and NetworkPolicy.
pub fn owned_name(pool: &PythonExecutionPool) -> String {
    format!("pyexec-pool-{}", pool.name_any())
}

/// The labels of a pool's idle Pod. `pyexec.io/execution` is there, empty, so that the namespace's default-deny
/// policy (which selects every Pod with that label) fences idle Pods as it fences execution Pods.
pub fn idle_labels(pool: &PythonExecutionPool) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "python-executor".into()),
        ("app.kubernetes.io/component".into(), "execution".into()),
        (MANAGED_BY_LABEL.into(), OPERATOR.into()),
        (EXECUTION_LABEL.into(), String::new()),
        (POOL_LABEL.into(), pool.name_any()),
        (POOL_UID_LABEL.into(), pool.uid().unwrap_or_default()),
        (CLAIMED_LABEL.into(), "false".into()),
    ])
}

/// The selector of a pool's idle Pods (the scale subresource's `status.selector`).
pub fn idle_selector(pool: &PythonExecutionPool) -> String {
    format!("{POOL_LABEL}={},{CLAIMED_LABEL}=false", pool.name_any())
}

fn owned_meta(pool: &PythonExecutionPool) -> ObjectMeta {
    let mut labels = idle_labels(pool);
    labels.retain(|k, _| k != EXECUTION_LABEL && k != CLAIMED_LABEL);
    ObjectMeta {
        name: Some(owned_name(pool)),
        namespace: pool.namespace(),
        labels: Some(labels),
        owner_references: pool.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

/// The pool's ConfigMap: the runner and the eval runner (mounted as every Pod's run directory); no `run.json` and no
/// source: those come with the claim.
pub fn config_map(pool: &PythonExecutionPool) -> ConfigMap {
    let data = BTreeMap::from([
        (RUNNER_FILE.to_string(), RUNNER_SOURCE.to_string()),
        (EVAL_RUNNER_FILE.to_string(), EVAL_RUNNER_SOURCE.to_string()),
    ]);
    ConfigMap { metadata: owned_meta(pool), data: Some(data), immutable: Some(true), ..ConfigMap::default() }
}

/// The pool's NetworkPolicy: an execution's of the pool's class at the program's stage, selecting the pool's Pods
/// (by its uid). It exists before any of them does.
pub fn network_policy(pool: &PythonExecutionPool, class: &PoolClass, config: &OperatorConfig) -> NetworkPolicy {
    let mut policy = desired::network_policy(&class.template, config, PolicyStage::Run);
    let annotations = policy.metadata.annotations.take();
    policy.metadata = ObjectMeta { annotations, ..owned_meta(pool) };
    if let Some(spec) = policy.spec.as_mut() {
        spec.pod_selector = Some(LabelSelector {
            match_labels: Some([(POOL_UID_LABEL.to_string(), pool.uid().unwrap_or_default())].into()),
            ..LabelSelector::default()
        });
    }
    policy
}

/// An idle Pod of the pool (named by the API server from `<pool>-`). `nonce` marks its runner's frames.
pub fn idle_pod(pool: &PythonExecutionPool, class: &PoolClass, config: &OperatorConfig, nonce: &str) -> Pod {
    let mut template = class.template.clone();
    // The builders mount the ConfigMap named after the execution as the run directory: the pool's.
    template.metadata.name = Some(owned_name(pool));
    let mut pod = desired::pod(&template, &class.admitted, config, nonce);
    pod.metadata = ObjectMeta {
        generate_name: Some(format!("{}-", pool.name_any())),
        namespace: pool.namespace(),
        labels: Some(idle_labels(pool)),
        owner_references: pool.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    };
    if let Some(spec) = pod.spec.as_mut() {
        // Idle for as long as it takes; the claim sets the deadline of the execution it runs.
        spec.active_deadline_seconds = None;
        if let Some(main) = spec.containers.iter_mut().find(|c| c.name == MAIN_CONTAINER) {
            main.env.get_or_insert_with(Vec::new).push(EnvVar {
                name: CLAIM_ENV.into(),
                value: Some(FLAG_ON.into()),
                value_from: None,
            });
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::pod::protocol::{GATE_ENV, NONCE_ENV};

    fn pool() -> PythonExecutionPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecutionPool",
            "metadata": {"name": "small", "namespace": "team-a", "uid": "pool-uid"},
            "spec": {"replicas": 2, "network": "egress", "limits": {"memoryMB": 256, "cpu": "500m", "diskMB": 100}},
        }))
        .unwrap()
    }

    #[test]
    fn an_idle_pod_is_an_execution_pod_of_the_class_waiting_for_its_claim() {
        let config = OperatorConfig::default();
        let pool = pool();
        let class = PoolClass::of(&pool, &config).unwrap();
        let pod = idle_pod(&pool, &class, &config, "n0nce");
        let reference = desired::pod(&class.template, &class.admitted, &config, "n0nce");
        let (spec, expected) = (pod.spec.as_ref().unwrap(), reference.spec.as_ref().unwrap());
        assert_eq!(spec.security_context, expected.security_context);
        assert_eq!(spec.containers[0].security_context, expected.containers[0].security_context);
        assert_eq!(spec.containers[0].resources, expected.containers[0].resources);
        assert_eq!(spec.active_deadline_seconds, None, "idle Pods wait as long as it takes");
        let env = spec.containers[0].env.as_ref().unwrap();
        for (name, value) in [(CLAIM_ENV, FLAG_ON), (GATE_ENV, FLAG_ON), (NONCE_ENV, "n0nce")] {
            assert!(env.iter().any(|e| e.name == name && e.value.as_deref() == Some(value)), "{name}");
        }
        let run = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == "run").unwrap();
        assert_eq!(run.config_map.as_ref().unwrap().name, "pyexec-pool-small");
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!((labels[POOL_LABEL].as_str(), labels[CLAIMED_LABEL].as_str()), ("small", "false"));
        assert_eq!(labels[EXECUTION_LABEL], "", "covered by the namespace's default-deny");
        let owner = &pod.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("PythonExecutionPool", "pool-uid", Some(true))
        );
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("small-"));
        assert!(super::super::is_warm(&pod));
    }

    #[test]
    fn the_pools_policy_is_its_classes_and_selects_its_pods_by_uid() {
        let config = OperatorConfig::default();
        let pool = pool();
        let class = PoolClass::of(&pool, &config).unwrap();
        let policy = network_policy(&pool, &class, &config);
        let expected = desired::network_policy(&class.template, &config, PolicyStage::Run);
        let (spec, reference) = (policy.spec.as_ref().unwrap(), expected.spec.as_ref().unwrap());
        assert_eq!((&spec.egress, &spec.ingress), (&reference.egress, &reference.ingress));
        assert_eq!(spec.pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()[POOL_UID_LABEL], "pool-uid");
        assert_eq!(policy.metadata.name.as_deref(), Some("pyexec-pool-small"));
        assert_eq!(config_map(&pool).data.unwrap().len(), 2, "the runners only");
    }
}
