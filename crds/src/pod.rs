//! What readers of an execution's Pod rely on: the operator, which finishes the execution from the main
//! container's log, and the API server, which follows that log for live output.

use k8s_openapi::api::core::v1::Pod;

/// The program's container, whose log carries the runner's frames.
pub const MAIN_CONTAINER: &str = "python";
/// The variable carrying the frame nonce to the runner.
pub const NONCE_ENV: &str = "PYEXEC_FRAME_NONCE";

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
