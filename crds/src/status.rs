//! How a `PythonExecution`'s status is written, by the operator and by the API server (which writes the status of
//! the records of session calls, `spec.sessionRef`): conditions ([`set_condition`], with the clock passed in so
//! that transition times are testable) and the server-side-apply patch of the status subresource
//! ([`status_patch`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use pyexec_core::text::tail;

use crate::{PythonExecution, PythonExecutionStatus};

/// Longest condition message kept (its end: where the reason usually is).
const MAX_MESSAGE_BYTES: usize = 32 << 10;

/// Sets a condition at `now`; its transition time changes only when its status does.
pub fn set_condition(
    status: &mut PythonExecutionStatus,
    cr: &PythonExecution,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let value = if ok { "True" } else { "False" };
    let generation = cr.meta().generation;
    let message = if message.len() > MAX_MESSAGE_BYTES { tail(message, MAX_MESSAGE_BYTES) } else { message.to_owned() };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = now.clone();
            }
            c.status = value.into();
            c.reason = reason.into();
            c.message = message;
            c.observed_generation = generation;
        }
        None => status.conditions.push(Condition {
            type_: type_.into(),
            status: value.into(),
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// The server-side-apply patch that sets `status`, marked with the generation it describes.
pub fn status_patch(cr: &PythonExecution, mut status: PythonExecutionStatus) -> serde_json::Value {
    status.observed_generation = cr.meta().generation;
    serde_json::json!({
        "apiVersion": PythonExecution::api_version(&()),
        "kind": PythonExecution::kind(&()),
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff;

    use super::*;
    use crate::Phase;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap())
    }

    fn started(
        status: &mut PythonExecutionStatus,
        cr: &PythonExecution,
        ok: bool,
        reason: &str,
        message: &str,
        now: i64,
    ) {
        set_condition(status, cr, "Started", ok, reason, message, &at(now));
    }

    #[test]
    fn conditions_keep_their_transition_time_until_their_status_changes() {
        let cr = PythonExecution::new("x", Default::default());
        let mut status = PythonExecutionStatus::default();
        started(&mut status, &cr, false, "Waiting", "image", 100);
        started(&mut status, &cr, false, "Waiting", "still", 200);
        assert_eq!(
            (status.conditions[0].last_transition_time.clone(), status.conditions[0].message.as_str()),
            (at(100), "still")
        );
        started(&mut status, &cr, true, "Running", "go", 300);
        assert_eq!(status.conditions[0].last_transition_time, at(300));
        assert_eq!((status.conditions.len(), status.conditions[0].reason.as_str()), (1, "Running"));
    }

    #[test]
    fn long_messages_keep_their_end() {
        let cr = PythonExecution::new("x", Default::default());
        let mut status = PythonExecutionStatus::default();
        let long = format!("{}the reason", "x".repeat(100 << 10));
        started(&mut status, &cr, false, "Failed", &long, 1);
        assert!(status.conditions[0].message.len() <= MAX_MESSAGE_BYTES);
        assert!(status.conditions[0].message.ends_with("the reason"));
    }

    #[test]
    fn the_patch_names_the_resource_type_and_generation() {
        let mut cr = PythonExecution::new("x", Default::default());
        cr.metadata.generation = Some(3);
        let patch = status_patch(&cr, PythonExecutionStatus { phase: Some(Phase::Running), ..Default::default() });
        assert_eq!(
            (patch["apiVersion"].as_str(), patch["kind"].as_str()),
            (Some("pyexec.io/v1alpha1"), Some("PythonExecution"))
        );
        assert_eq!(
            (patch["status"]["phase"].as_str(), patch["status"]["observedGeneration"].as_i64()),
            (Some("Running"), Some(3))
        );
    }
}
