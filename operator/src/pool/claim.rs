//! An execution's claim of a warm Pod, and the hand-over of what it runs.
//!
//! The claim is one merge patch of the Pod carrying the `resourceVersion` it was read at: it moves the controller
//! owner reference from the pool to the execution, labels the Pod claimed (and with the execution's uid, which its
//! own NetworkPolicy selects), records the time and sets the Pod's deadline (the execution's timeout from now, plus
//! the start-up allowance). The API server applies it only to that version of the Pod, so of two executions that
//! read the same idle Pod exactly one wins; the other gets 409 `Conflict` and tries the next idle Pod, and when none
//! is left it runs cold. A claimed Pod is never returned to the pool.
//!
//! The hand-over writes a [`Claim`] (the run configuration, sources, stdin and variables that a cold Pod's
//! ConfigMap and spec would hold) as one line to the runner's stdin through attach; the runner waits for nothing
//! else, and runs exactly as a cold one from there.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use pyexec_core::pod::PodLog;
use pyexec_core::pod::protocol::{
    Claim, DISK_FREE_ENV, GATE_ENV, MAIN_CONTAINER, NONCE_ENV, OOM_EVENTS_ENV, RUN_CONFIG_FILE, RunConfig, STDIN_FILE,
};
use pyexec_crds::{PythonExecution, PythonExecutionPool};

use super::fit::PoolClass;
use super::{CLAIMED_AT_ANNOTATION, CLAIMED_LABEL, POOL_LABEL};
use crate::admission::Admitted;
use crate::attach::{AttachError, AttachedStdin};
use crate::context::{Context, Error};
use crate::desired::{EXECUTION_LABEL, NAME_LABEL};
use crate::observe::{self, controlled_by, gate_opened};

/// How a claim attempt ended, as the claims metric counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A warm Pod was claimed.
    Warm,
    /// No pool serves the execution's class (or it cannot run warm at all): it runs cold.
    ColdNoPool,
    /// A pool fits, but none of its Pods was idle and ready (or every one was claimed by another first).
    ColdNoIdle,
    /// One claim lost a race for a Pod (409): counted once per lost race, the execution then tries the next one.
    Conflict,
}

impl Outcome {
    /// The metric's label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Warm => "warm",
            Outcome::ColdNoPool => "cold-no-pool",
            Outcome::ColdNoIdle => "cold-no-idle",
            Outcome::Conflict => "conflict",
        }
    }
}

/// A Pod the execution claimed (now, or before a restart of the operator), and its pool.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The Pod as the claim left it.
    pub pod: Pod,
    /// The pool's name.
    pub pool: String,
}

/// Claims an idle Ready Pod of a pool that fits the admitted execution, or `None` (run cold). A Pod this execution
/// claimed before (the operator stopped between the claim and the status) is found and returned again, even if its
/// pool is gone or no longer fits; that adoption is not counted. A new claim's outcome is counted.
pub async fn try_claim(cr: &PythonExecution, ctx: &Context, admitted: &Admitted) -> Result<Option<Claimed>, Error> {
    if !super::fit::warmable(cr, admitted) {
        ctx.metrics.claim(Outcome::ColdNoPool.label());
        return Ok(None);
    }
    let namespace = cr.namespace().unwrap_or_default();
    let pools: Api<PythonExecutionPool> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut candidates = match pools.list(&ListParams::default()).await {
        Ok(list) => list.items,
        // Without the pool CRD (an older installation) every execution runs cold, as before pools existed.
        Err(kube::Error::Api(e)) if e.code == 404 => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let uid = cr.uid();
    // A Pod this execution claimed before the operator stopped (before its status said so) is its Pod, whether or
    // not its pool still exists or still fits: looked up before any pool is chosen, so that the execution neither
    // claims a second Pod nor creates a cold one beside it.
    let mine = format!("{POOL_LABEL},{EXECUTION_LABEL}={}", uid.clone().unwrap_or_default());
    let claimed_before = pods.list(&ListParams::default().labels(&mine)).await?.items;
    if let Some(mine) = claimed_before.into_iter().find(|p| controlled_by(p.meta(), uid.as_deref())) {
        let pool = mine.labels().get(POOL_LABEL).cloned().unwrap_or_default();
        return Ok(Some(Claimed { pod: mine, pool }));
    }
    candidates.retain(|p| p.meta().deletion_timestamp.is_none());
    candidates.sort_by_key(ResourceExt::name_any);
    let pool =
        candidates.into_iter().find(|p| PoolClass::of(p, &ctx.config).is_ok_and(|class| class.fits(cr, admitted)));
    let Some(pool) = pool else {
        ctx.metrics.claim(Outcome::ColdNoPool.label());
        return Ok(None);
    };
    let pool_name = pool.name_any();
    let idle = format!("{POOL_LABEL}={pool_name},{CLAIMED_LABEL}=false");
    let listed = pods.list(&ListParams::default().labels(&idle)).await?.items;
    let mut idle: Vec<Pod> = listed.into_iter().filter(|p| is_idle(p, pool.uid().as_deref()) && is_ready(p)).collect();
    // Oldest first: the Pods that have waited longest have surely started their runner.
    idle.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    for pod in idle {
        match claim_pod(cr, ctx, &pods, &pod).await {
            Ok(pod) => {
                ctx.metrics.claim(Outcome::Warm.label());
                return Ok(Some(Claimed { pod, pool: pool_name }));
            }
            // Another execution claimed it first (or the pool replaced it): the next one.
            Err(kube::Error::Api(e)) if e.code == 409 => ctx.metrics.claim(Outcome::Conflict.label()),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    ctx.metrics.claim(Outcome::ColdNoIdle.label());
    Ok(None)
}

/// Whether a Pod is one of the pool's (`pool_uid` controls it), idle and not going away.
pub fn is_idle(pod: &Pod, pool_uid: Option<&str>) -> bool {
    controlled_by(pod.meta(), pool_uid)
        && pod.labels().get(CLAIMED_LABEL).map(String::as_str) == Some("false")
        && pod.meta().deletion_timestamp.is_none()
}

/// Whether a Pod's runner is up (the Pod is Running and Ready).
pub fn is_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    status.phase.as_deref() == Some("Running")
        && status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The claim itself: the optimistic-concurrency patch of one idle Pod.
async fn claim_pod(cr: &PythonExecution, ctx: &Context, pods: &Api<Pod>, pod: &Pod) -> Result<Pod, kube::Error> {
    let now = jiff_now();
    let limits = &cr.spec.limits;
    // The deadline counts from the Pod's start: its age, then the execution's timeout and start-up allowance.
    let age =
        pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map_or(0, |t| observe::age_seconds(t, now.0).max(0));
    let deadline = age + i64::try_from(limits.timeout_seconds + ctx.config.startup_seconds).unwrap_or(i64::MAX);
    let owner = cr.controller_owner_ref(&()).map(|r| vec![r]).unwrap_or_default();
    let name_label = crate::desired::labels(cr).remove(NAME_LABEL).unwrap_or_default();
    let patch = serde_json::json!({
        "metadata": {
            // The version that was read: if anyone changed the Pod since (another claim), the API server answers 409.
            "resourceVersion": pod.resource_version(),
            "ownerReferences": owner,
            "labels": {CLAIMED_LABEL: "true", EXECUTION_LABEL: cr.uid().unwrap_or_default(), NAME_LABEL: name_label},
            "annotations": {CLAIMED_AT_ANNOTATION: now.0.to_string()},
        },
        "spec": {"activeDeadlineSeconds": deadline},
    });
    pods.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await
}

fn jiff_now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// What the runner of the claimed Pod gets: what the execution's ConfigMap and Pod spec would have held (built by
/// the same builder, so both paths run the same thing).
pub fn claim_document(cr: &PythonExecution, admitted: &Admitted, config: &crate::config::OperatorConfig) -> Claim {
    let mut data = crate::desired::config_map(cr, admitted, config).data.unwrap_or_default();
    let run: RunConfig = data.get(RUN_CONFIG_FILE).and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default();
    let sources = run.files.keys().filter_map(|key| Some((key.clone(), data.remove(key)?))).collect();
    // The runner's own variables are the operator's alone, as on a cold Pod.
    let runner_only = [NONCE_ENV, GATE_ENV, OOM_EVENTS_ENV, DISK_FREE_ENV];
    let env: BTreeMap<String, String> = cr
        .spec
        .env
        .iter()
        .filter(|v| !runner_only.contains(&v.name.as_str()))
        .filter_map(|v| Some((v.name.clone(), v.value.clone()?)))
        .collect();
    Claim { run, sources, stdin: data.remove(STDIN_FILE), env }
}

/// Writes the claim to the runner's stdin (one line) and closes it.
pub async fn hand_over(pods: &Api<Pod>, pod: &str, claim: &Claim) -> Result<(), AttachError> {
    let mut line = serde_json::to_vec(claim)
        .map_err(|e| AttachError::Write { container: MAIN_CONTAINER, source: std::io::Error::other(e) })?;
    line.push(b'\n');
    let mut stdin = AttachedStdin::open(pods, pod, MAIN_CONTAINER).await?;
    stdin.write(&line).await?;
    stdin.close().await
}

/// Whether the claimed Pod still waits for its hand-over.
pub fn awaits_hand_over(pod: &Pod) -> bool {
    !gate_opened(pod)
}

/// Why a finished warm Pod never ran its execution, or `None` when it may have: the hand-over was never recorded
/// and the runner wrote no frame (its first frame comes before anything runs, [`PodLog::started`]). Both are
/// checked because the hand-over may have gone through with only its record lost. Reading such a Pod's exit code as
/// the program's would report a run that never happened (an evicted idle Pod "completed" with 137).
pub fn ended_before_hand_over(pod: &Pod, log: &PodLog) -> Option<String> {
    if !super::is_warm(pod) || !awaits_hand_over(pod) || log.started {
        return None;
    }
    let status = pod.status.as_ref();
    let why = [status.and_then(|s| s.reason.as_deref()), status.and_then(|s| s.message.as_deref())]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    let why = if why.is_empty() { String::new() } else { format!(" ({why})") };
    Some(format!(
        "the warm Pod {} ended before the execution was handed over to it{why}; the program did not run",
        pod.name_any()
    ))
}

/// Runs the execution in the Pod it claimed: hands the claim over (unless that was done before a restart), marks
/// the Pod handed over (the go-ahead annotation: the execution's reconciler then never sends anything else), makes
/// sure the execution's own NetworkPolicy exists (the Pod keeps its fence if the pool goes), and writes the status:
/// `Running` from the claim's time, `Accepted` with reason [`super::WARM_REASON`]. A failed hand-over is retried by
/// the execution's reconciler as a failed go-ahead is.
pub async fn start(
    cr: &PythonExecution,
    ctx: &Context,
    admitted: &Admitted,
    claimed: Claimed,
    now: &Time,
) -> Result<kube::runtime::controller::Action, Error> {
    use crate::status::{current_status, set_condition, write_status};
    use kube::runtime::controller::Action;
    use pyexec_crds::Phase;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let name = claimed.pod.name_any();
    let mut handed_over = !awaits_hand_over(&claimed.pod);
    if !handed_over {
        match hand_over(&pods, &name, &claim_document(cr, admitted, &ctx.config)).await {
            Ok(()) => {
                let annotate = serde_json::json!({"metadata": {"annotations": {observe::GATE_ANNOTATION: "true"}}});
                pods.patch(&name, &PatchParams::default(), &Patch::Merge(&annotate)).await?;
                handed_over = true;
            }
            Err(e) => tracing::warn!(pod = %name, error = %e, "handing the claim over failed; retrying"),
        }
    }
    crate::children::close_network(cr, ctx).await?;
    let started = super::claimed_at(&claimed.pod).unwrap_or_else(|| now.clone());
    let mut status = current_status(cr);
    status.phase = Some(Phase::Running);
    status.pod_name = Some(name.clone());
    status.start_time = Some(started.clone());
    let message = format!("the operator runs this execution in the warm Pod {name} of pool {}", claimed.pool);
    set_condition(&mut status, cr, "Accepted", true, super::WARM_REASON, &message, now);
    if handed_over {
        set_condition(&mut status, cr, "Started", true, "Running", "the program is running", now);
    } else {
        // The Pod is this execution's, but its program waits for the work until a retry delivers it.
        let waiting = "the warm Pod is claimed; handing the work over failed and is retried";
        set_condition(&mut status, cr, "Started", false, "HandOverPending", waiting, now);
    }
    write_status(cr, ctx, status).await?;
    if let Some(created) = cr.meta().creation_timestamp.as_ref() {
        ctx.metrics.started((started.0.as_millisecond() - created.0.as_millisecond()) as f64 / 1000.0);
    }
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Claimed".into(),
        note: Some(message),
        action: "Claim".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &cr.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
    let delay = if handed_over { cr.spec.limits.timeout_seconds.clamp(5, 300) } else { 2 };
    Ok(Action::requeue(std::time::Duration::from_secs(delay)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::pod::protocol::{CLAIM_ENV, FLAG_ON};

    #[test]
    fn only_a_warm_pod_never_handed_over_and_without_frames_ran_nothing() {
        let pod = |warm: bool, handed_over: bool| -> Pod {
            let env =
                if warm { serde_json::json!([{"name": CLAIM_ENV, "value": FLAG_ON}]) } else { serde_json::json!([]) };
            let annotations =
                if handed_over { serde_json::json!({observe::GATE_ANNOTATION: "true"}) } else { serde_json::json!({}) };
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "small-1", "annotations": annotations},
                "spec": {"containers": [{"name": MAIN_CONTAINER, "env": env}]},
                "status": {"phase": "Failed", "reason": "Evicted", "message": "low on memory"},
            }))
            .unwrap()
        };
        let silent = PodLog::default();
        let started = PodLog { started: true, ..PodLog::default() };
        let message = ended_before_hand_over(&pod(true, false), &silent).unwrap();
        assert_eq!(
            message,
            "the warm Pod small-1 ended before the execution was handed over to it (Evicted: low on memory); \
             the program did not run"
        );
        assert_eq!(ended_before_hand_over(&pod(true, false), &started), None, "handed over, its record lost");
        assert_eq!(ended_before_hand_over(&pod(true, true), &silent), None, "handed over: the exit is the run's");
        assert_eq!(ended_before_hand_over(&pod(false, false), &silent), None, "a cold Pod");
    }
}
