//! The resource's status as the operator writes it: conditions ([`set_condition`], with the clock passed in so that
//! transition times are testable), and the server-side-apply patch of the status subresource, written only when
//! something changed ([`write_status_if_changed`]) except for the final status, which is written once.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use pyexec_core::text::tail;
use pyexec_crds::contract::OPERATOR;
use pyexec_crds::{PythonExecution, PythonExecutionStatus};

use crate::context::{Context, Error};

/// The condition that records whether a terminal execution's children (Pod, NetworkPolicy, ConfigMap) were
/// deleted: `False` from the final status until they are, so that a lost delete is retried by a later
/// reconciliation.
pub const CHILDREN_DELETED: &str = "ChildrenDeleted";

/// Longest condition message kept (its end: where the reason usually is).
const MAX_MESSAGE_BYTES: usize = 32 << 10;

/// The resource's status as last written (empty when none was).
pub fn current_status(cr: &PythonExecution) -> PythonExecutionStatus {
    cr.status.clone().unwrap_or_default()
}

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

/// Writes `status` (server-side apply, the operator owning every field it sets).
pub async fn write_status(cr: &PythonExecution, ctx: &Context, status: PythonExecutionStatus) -> Result<(), Error> {
    let api: Api<PythonExecution> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let patch = status_patch(cr, status);
    api.patch_status(&cr.name_any(), &PatchParams::apply(OPERATOR).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Writes `status` unless it says what the resource's status says already (transition times aside).
pub async fn write_status_if_changed(
    cr: &PythonExecution,
    ctx: &Context,
    status: PythonExecutionStatus,
) -> Result<(), Error> {
    if unchanged(cr, &status) {
        return Ok(());
    }
    write_status(cr, ctx, status).await
}

/// Whether writing `status` would change nothing but transition times.
fn unchanged(cr: &PythonExecution, status: &PythonExecutionStatus) -> bool {
    let strip = |s: &mut PythonExecutionStatus| {
        s.conditions.iter_mut().for_each(|c| c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH))
    };
    let mut comparable = status.clone();
    comparable.observed_generation = cr.meta().generation;
    let mut before = current_status(cr);
    strip(&mut before);
    strip(&mut comparable);
    before == comparable
}

#[cfg(test)]
mod tests {
    use pyexec_crds::Phase;

    use super::*;

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

    #[test]
    fn only_real_changes_are_written() {
        let mut cr = PythonExecution::new("x", Default::default());
        cr.metadata.generation = Some(1);
        let mut written =
            PythonExecutionStatus { phase: Some(Phase::Pending), observed_generation: Some(1), ..Default::default() };
        started(&mut written, &cr, false, "Waiting", "image", 100);
        cr.status = Some(written.clone());
        let mut again = written.clone();
        started(&mut again, &cr, false, "Waiting", "image", 200);
        again.conditions[0].last_transition_time = at(150);
        assert!(unchanged(&cr, &again), "transition times alone are no change");
        started(&mut again, &cr, false, "Waiting", "ImagePullBackOff", 200);
        assert!(!unchanged(&cr, &again));
    }
}
