//! What readers of an execution's Pod rely on: the operator, which finishes the execution from the main
//! container's log, and the API server, which follows that log for live output. The names are the Pod protocol's
//! (`pyexec_core::pod::protocol`); this module reads them off a Kubernetes Pod.

use k8s_openapi::api::core::v1::Pod;
use pyexec_core::pod::protocol::{MAIN_CONTAINER, NONCE_ENV};

/// The nonce a Pod's runner marks its frames with.
pub fn pod_nonce(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == MAIN_CONTAINER)?
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == NONCE_ENV)?
        .value
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nonce_is_the_main_containers() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {"containers": [
            {"name": "sidecar", "env": [{"name": NONCE_ENV, "value": "wrong"}]},
            {"name": MAIN_CONTAINER, "env": [{"name": "A", "value": "1"}, {"name": NONCE_ENV, "value": "n0nce"}]},
        ]}}))
        .unwrap();
        assert_eq!(pod_nonce(&pod).as_deref(), Some("n0nce"));
        assert_eq!(pod_nonce(&Pod::default()), None);
    }
}
