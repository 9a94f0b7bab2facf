//! Warm pools: `PythonExecutionPool` resources, each keeping `replicas` idle Pods of one class ready, and the claim
//! of one of them by an execution that fits the class instead of creating a Pod (which takes seconds: the Pod
//! sandbox, the network, the container).
//!
//! - [`fit`]: the class a pool serves and whether an execution fits it (pure);
//! - [`desired`]: the pool's ConfigMap (the runners), NetworkPolicy and idle Pods, built with the execution's own
//!   builders ([`crate::desired`]) so that an idle Pod is locked down exactly as an execution's (pure);
//! - [`refill`]: the per-pool rate limit of Pod creations;
//! - [`reconcile`]: keeps the idle Pods (replaces dead ones, creates missing ones, deletes surplus ones) and writes
//!   the pool's status; [`controller`] drives it;
//! - [`claim`]: an execution's claim of an idle Ready Pod (an optimistic-concurrency patch that moves the controller
//!   owner reference from the pool to the execution), and the hand-over of its run configuration and files through
//!   attach.
//!
//! A claimed Pod belongs to its execution from then on, as a cold one does: it is never returned nor reused, and it
//! is deleted when the execution finished. Its labels keep the pool's name ([`POOL_LABEL`]) so that the pool
//! counts it and refills, and [`CLAIMED_LABEL`] tells idle from claimed.

pub mod claim;
pub mod controller;
pub mod desired;
pub mod fit;
pub mod reconcile;
pub mod refill;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;
use pyexec_core::pod::protocol::{CLAIM_ENV, FLAG_ON, MAIN_CONTAINER};

use crate::observe::PodState;

/// Label naming the pool on its Pods, idle and claimed (pool names are at most 63 characters: [`reconcile`]).
pub const POOL_LABEL: &str = "pyexec.io/pool";
/// Label carrying the pool's uid on its Pods: its NetworkPolicy selects by it, so that a pool deleted and created
/// again under the same name never selects the Pods of the old one.
pub const POOL_UID_LABEL: &str = "pyexec.io/pool-uid";
/// Label saying whether a pool's Pod was claimed (`"true"`) or is idle (`"false"`).
pub const CLAIMED_LABEL: &str = "pyexec.io/claimed";
/// Annotation on a claimed Pod: when it was claimed (RFC 3339). The execution's start time and duration count from
/// it, not from the container's start, which was long before.
pub const CLAIMED_AT_ANNOTATION: &str = "pyexec.io/claimed-at";
/// The reason of the `Accepted` condition of an execution that claimed a warm Pod.
pub const WARM_REASON: &str = "WarmPod";

/// Whether the Pod is a warm pool's (its runner waits for a claim rather than for the go-ahead).
pub fn is_warm(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.iter().find(|c| c.name == MAIN_CONTAINER))
        .and_then(|c| c.env.as_ref())
        .is_some_and(|env| env.iter().any(|e| e.name == CLAIM_ENV && e.value.as_deref() == Some(FLAG_ON)))
}

/// When a warm Pod was claimed: the start of its execution. `None` for a cold Pod (or one not claimed yet).
pub fn claimed_at(pod: &Pod) -> Option<Time> {
    if !is_warm(pod) {
        return None;
    }
    let text = pod.metadata.annotations.as_ref()?.get(CLAIMED_AT_ANNOTATION)?;
    text.parse::<jiff::Timestamp>().ok().map(Time)
}

/// What the Pod means for its execution ([`crate::observe::pod_state`]), with a warm Pod's program starting at its
/// claim rather than at its container's start (which was while it idled): the execution's start time, duration and
/// time to start count from the claim.
pub fn pod_state(pod: &Pod) -> PodState {
    let state = crate::observe::pod_state(pod);
    let Some(claimed) = claimed_at(pod) else { return state };
    match state {
        PodState::Running { gate_wanted, .. } => PodState::Running { started_at: Some(claimed), gate_wanted },
        PodState::Finished(mut f) => {
            f.started_at = Some(claimed);
            PodState::Finished(f)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_warm_pods_claim_time_counts() {
        let pod = |claim: bool, at: &str| -> Pod {
            let env =
                if claim { serde_json::json!([{"name": CLAIM_ENV, "value": FLAG_ON}]) } else { serde_json::json!([]) };
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "annotations": {CLAIMED_AT_ANNOTATION: at}},
                "spec": {"containers": [{"name": MAIN_CONTAINER, "env": env}]},
            }))
            .unwrap()
        };
        let warm = pod(true, "2026-01-01T00:00:01.250Z");
        assert!(is_warm(&warm));
        assert_eq!(claimed_at(&warm).unwrap().0.as_millisecond(), 1_767_225_601_250);
        assert_eq!(claimed_at(&pod(false, "2026-01-01T00:00:01Z")), None, "a cold Pod starts with its container");
        assert_eq!(claimed_at(&pod(true, "yesterday")), None);
    }
}
