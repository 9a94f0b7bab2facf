//! The resource's status as the operator writes it: conditions and the server-side-apply patch of the status
//! subresource (shared with the API server: `pyexec_crds::status`), written only when something changed
//! ([`write_status_if_changed`]) except for the final status, which is written once.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use pyexec_crds::contract::OPERATOR;
use pyexec_crds::{PythonExecution, PythonExecutionStatus};

use crate::context::{Context, Error};

// How conditions are set and the status patched is the API server's too (it writes the records of session calls).
pub use pyexec_crds::status::{set_condition, status_patch};

/// The condition that records whether a terminal execution's children (Pod, NetworkPolicy, ConfigMap) were
/// deleted: `False` from the final status until they are, so that a lost delete is retried by a later
/// reconciliation.
pub const CHILDREN_DELETED: &str = "ChildrenDeleted";

/// The resource's status as last written (empty when none was).
pub fn current_status(cr: &PythonExecution) -> PythonExecutionStatus {
    cr.status.clone().unwrap_or_default()
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
