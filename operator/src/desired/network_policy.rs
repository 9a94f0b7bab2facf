//! The NetworkPolicy of an execution, selecting exactly its Pod. Ingress is always denied. Egress:
//! - [`PolicyStage::Install`]: DNS and the package index only, while the install container runs;
//! - [`PolicyStage::Run`]: nothing for `network: none`; for `network: egress` DNS and the public internet, never
//!   the ranges of `pyexec_core::egress` (private, loopback, link-local/cloud metadata, CGNAT, multicast,
//!   reserved; the same as the embedded sandbox's), nor the configured cluster ranges.
//!
//! The Docker path's daemon shares the Pod's network and so this policy: it gets no allowance of its own, and
//! pulls images through the egress the request chose (admission refuses Docker with `network: none`).
//!
//! NetworkPolicies add up: any other policy selecting these Pods could open them again. The operator owns this one;
//! the cluster's administrators must not select execution Pods (label `pyexec.io/execution`) with others, except
//! with a namespace-wide default-deny policy (no rules, both policy types; see [`find_default_deny`]), which the
//! Helm chart creates so that an execution Pod is fenced even before its own policy exists.

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use pyexec_core::egress::{BLOCKED_V4, BLOCKED_V6};
use pyexec_crds::{NetworkMode, PythonExecution};

use super::{EXECUTION_LABEL, NAME_LABEL, child_meta};
use crate::config::OperatorConfig;

/// Which egress the policy gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyStage {
    /// Open to the package index for the install container.
    Install,
    /// What the program gets.
    Run,
}

impl PolicyStage {
    /// The annotation value recording the stage on the policy.
    pub fn name(self) -> &'static str {
        match self {
            PolicyStage::Install => "install",
            PolicyStage::Run => "run",
        }
    }
}

/// Annotation on the policy saying which stage it is in.
pub const STAGE_ANNOTATION: &str = "pyexec.io/network-stage";

/// The execution's NetworkPolicy at `stage`.
pub fn network_policy(cr: &PythonExecution, config: &OperatorConfig, stage: PolicyStage) -> NetworkPolicy {
    let mut meta = child_meta(cr);
    meta.annotations = Some([(STAGE_ANNOTATION.to_string(), stage.name().to_string())].into());
    let dns = || NetworkPolicyEgressRule {
        to: Some(config.egress.dns.clone()),
        ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
    };
    let egress = match (stage, cr.spec.network) {
        (PolicyStage::Install, _) => match &config.package_index {
            Some(index) => {
                let ports =
                    if index.ports.is_empty() { vec![port("TCP", 443), port("TCP", 80)] } else { index.ports.clone() };
                vec![dns(), NetworkPolicyEgressRule { to: Some(index.egress_to.clone()), ports: Some(ports) }]
            }
            None => Vec::new(),
        },
        (PolicyStage::Run, NetworkMode::None) => Vec::new(),
        (PolicyStage::Run, NetworkMode::Egress) => vec![dns(), internet(config)],
    };
    NetworkPolicy {
        metadata: meta,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some([(EXECUTION_LABEL.to_string(), cr.uid().unwrap_or_default())].into()),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(Vec::new()),
            egress: Some(egress),
        }),
    }
}

fn internet(config: &OperatorConfig) -> NetworkPolicyEgressRule {
    let extra_v4: Vec<String> = config.egress.blocked_cidrs.iter().filter(|c| !c.contains(':')).cloned().collect();
    let extra_v6: Vec<String> = config.egress.blocked_cidrs.iter().filter(|c| c.contains(':')).cloned().collect();
    let block = |cidr: &str, fixed: &[&str], extra: Vec<String>| NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.into(),
            except: Some(fixed.iter().map(|s| s.to_string()).chain(extra).collect()),
        }),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicyEgressRule {
        to: Some(vec![block("0.0.0.0/0", BLOCKED_V4, extra_v4), block("::/0", BLOCKED_V6, extra_v6)]),
        ports: None,
    }
}

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort { protocol: Some(protocol.into()), port: Some(IntOrString::Int(number)), end_port: None }
}

/// The stage a policy was built for.
pub fn stage_of(policy: &NetworkPolicy) -> Option<PolicyStage> {
    match policy.annotations().get(STAGE_ANNOTATION).map(String::as_str) {
        Some("install") => Some(PolicyStage::Install),
        Some("run") => Some(PolicyStage::Run),
        _ => None,
    }
}

/// Labels every execution Pod carries with the same value (see [`super::labels`]).
const FIXED_LABELS: [(&str, &str); 3] = [
    ("app.kubernetes.io/name", "python-executor"),
    ("app.kubernetes.io/component", "execution"),
    (pyexec_crds::contract::MANAGED_BY_LABEL, pyexec_crds::contract::OPERATOR),
];

/// Whether `selector` selects every execution Pod: its labels ask only for the labels all of them carry.
fn selects_every_execution(selector: &LabelSelector) -> bool {
    let fixed = |key: &str| FIXED_LABELS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let labels_ok =
        selector.match_labels.iter().flatten().all(|(key, value)| fixed(key).is_some_and(|v| v == value.as_str()));
    let expressions_ok = selector.match_expressions.iter().flatten().all(|e| match e.operator.as_str() {
        "Exists" => fixed(&e.key).is_some() || e.key == EXECUTION_LABEL || e.key == NAME_LABEL,
        "In" => fixed(&e.key).is_some_and(|v| e.values.iter().flatten().any(|x| x == v)),
        _ => false,
    });
    labels_ok && expressions_ok
}

/// Whether `policy` denies all ingress and egress of every execution Pod of its namespace: it selects them all
/// (an empty selector, or only labels every execution Pod carries, such as `pyexec.io/execution` Exists), names
/// both policy types and allows nothing.
pub fn is_default_deny(policy: &NetworkPolicy) -> bool {
    let Some(spec) = &policy.spec else { return false };
    let types = spec.policy_types.as_deref().unwrap_or_default();
    let has = |t: &str| types.iter().any(|x| x == t);
    has("Ingress")
        && has("Egress")
        && spec.ingress.as_ref().is_none_or(Vec::is_empty)
        && spec.egress.as_ref().is_none_or(Vec::is_empty)
        && spec.pod_selector.as_ref().is_none_or(selects_every_execution)
}

/// The first default-deny policy among a namespace's NetworkPolicies (see [`is_default_deny`]).
pub fn find_default_deny(policies: &[NetworkPolicy]) -> Option<&NetworkPolicy> {
    policies.iter().find(|p| is_default_deny(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures::simple;

    #[test]
    fn network_none_denies_everything() {
        let np = network_policy(&simple(serde_json::json!({})), &OperatorConfig::default(), PolicyStage::Run);
        let spec = np.spec.unwrap();
        assert_eq!(spec.policy_types.unwrap(), ["Ingress", "Egress"]);
        assert!(spec.ingress.unwrap().is_empty() && spec.egress.unwrap().is_empty());
        assert_eq!(
            spec.pod_selector.unwrap().match_labels.unwrap()[EXECUTION_LABEL],
            "0b7c6f0e-1f1e-4c43-9d3b-6f6a0f0e0001"
        );
    }

    #[test]
    fn egress_is_the_public_internet_only() {
        let config = OperatorConfig {
            egress: crate::config::EgressConfig { blocked_cidrs: vec!["34.118.224.0/20".into()], ..Default::default() },
            ..OperatorConfig::default()
        };
        let np = network_policy(&simple(serde_json::json!({"network": "egress"})), &config, PolicyStage::Run);
        let egress = np.spec.clone().unwrap().egress.unwrap();
        let internet = egress[1].to.as_ref().unwrap();
        let v4 = internet[0].ip_block.as_ref().unwrap();
        assert_eq!(v4.cidr, "0.0.0.0/0");
        for range in
            ["10.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "34.118.224.0/20"]
        {
            assert!(v4.except.as_ref().unwrap().iter().any(|e| e == range), "{range}");
        }
        assert!(internet[1].ip_block.as_ref().unwrap().except.as_ref().unwrap().iter().any(|e| e == "fc00::/7"));
        assert_eq!(egress[0].ports.as_ref().unwrap()[0].port, Some(IntOrString::Int(53)));
        assert_eq!(stage_of(&np), Some(PolicyStage::Run));
    }

    #[test]
    fn the_install_stage_reaches_the_index_only() {
        let config = OperatorConfig {
            package_index: Some(
                serde_json::from_value(serde_json::json!({"url": "https://pypi.internal/simple", "egressTo": [{"ipBlock": {"cidr": "10.9.8.7/32"}}]}))
                    .unwrap(),
            ),
            ..OperatorConfig::default()
        };
        let np = network_policy(&simple(serde_json::json!({})), &config, PolicyStage::Install);
        let egress = np.spec.unwrap().egress.unwrap();
        assert_eq!(egress.len(), 2);
        assert_eq!(egress[1].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap().cidr, "10.9.8.7/32");
        assert_eq!(egress[1].ports.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn the_docker_daemon_gets_no_network_of_its_own() {
        // It pulls through the Pod's policy, the one the request chose: the same as without Docker, at every stage.
        let config = OperatorConfig::with_docker_in(&["team-a"]);
        for network in ["none", "egress"] {
            let with = simple(serde_json::json!({"docker": true, "network": network}));
            let without = simple(serde_json::json!({"network": network}));
            for stage in [PolicyStage::Install, PolicyStage::Run] {
                assert_eq!(network_policy(&with, &config, stage), network_policy(&without, &config, stage));
            }
        }
    }

    fn policy(value: serde_json::Value) -> NetworkPolicy {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": "team-a"}, "spec": value}))
            .unwrap()
    }

    #[test]
    fn default_deny_policies_are_recognised() {
        let chart = policy(serde_json::json!({
            "podSelector": {"matchExpressions": [{"key": "pyexec.io/execution", "operator": "Exists"}]},
            "policyTypes": ["Ingress", "Egress"]}));
        let everything = policy(serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}));
        let by_label = policy(serde_json::json!({
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "execution"}},
            "policyTypes": ["Egress", "Ingress"], "ingress": [], "egress": []}));
        for ok in [&chart, &everything, &by_label] {
            assert!(is_default_deny(ok), "{ok:?}");
        }
        let not = [
            // Ingress only (policyTypes defaults to Ingress): egress stays open.
            serde_json::json!({"podSelector": {}}),
            serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
            // Allows something.
            serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "egress": [{}]}),
            serde_json::json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                               "ingress": [{"from": [{"podSelector": {}}]}]}),
            // Selects only some execution Pods, or none.
            serde_json::json!({"podSelector": {"matchLabels": {"pyexec.io/execution": "0b7c"}},
                               "policyTypes": ["Ingress", "Egress"]}),
            serde_json::json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress", "Egress"]}),
            serde_json::json!({"podSelector": {"matchExpressions": [{"key": "pyexec.io/execution",
                               "operator": "DoesNotExist"}]}, "policyTypes": ["Ingress", "Egress"]}),
        ];
        for value in not {
            assert!(!is_default_deny(&policy(value.clone())), "{value}");
        }
        // The operator's own per-execution policy selects one Pod: never the namespace's default.
        let own = network_policy(&simple(serde_json::json!({})), &OperatorConfig::default(), PolicyStage::Run);
        assert!(!is_default_deny(&own));
        assert!(find_default_deny(std::slice::from_ref(&own)).is_none() && find_default_deny(&[]).is_none());
        assert_eq!(find_default_deny(&[own, chart.clone()]), Some(&chart));
    }
}
