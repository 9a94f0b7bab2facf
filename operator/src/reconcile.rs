//! The reconciler: level-triggered and idempotent. Each call looks at the resource and its Pod as they are now and
//! takes the next step: create the children, stream the archive, close the network and give the go-ahead, report
//! `Running`, collect the result, kill, expire. Restarting the operator loses nothing: every decision is made
//! from observed objects (children have fixed names, so a second create finds the first, and only objects the
//! resource controls count as its children: [`crate::children`]), and a terminal status is never written twice.
//!
//! This module decides; the others do: [`crate::children`] creates and deletes the owned objects,
//! [`crate::collect`] reads a finished Pod into a result, [`crate::status`] writes conditions and the status, and
//! [`crate::retry`] paces the retries of failed reconciliations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use pyexec_core::outcome::{failed, killed_before_start};
use pyexec_core::text::tail;
use pyexec_core::{ExecutionResult, Timestamp};
use pyexec_crds::contract::KILL_ANNOTATION;
use pyexec_crds::convert::status_from_result;
use pyexec_crds::{Phase, PythonExecution};

use crate::admission::{Admitted, Refusal, admit, inline_requirements};
use crate::attach::{AttachError, send_go, stream_archive};
use crate::children::{Created, clean_up, close_network, create_children};
use crate::collect::{Collected, collect};
use crate::context::{Context, Error};
use crate::follow::FollowedLog;
use crate::logs::FINALIZER;
use crate::observe::{self, Finish, FinishKind, GATE_ANNOTATION, PodState};
use crate::pool;
use crate::status::{CHILDREN_DELETED, current_status, set_condition, write_status, write_status_if_changed};

/// The `ChildrenDeleted` condition's message until they are.
const DELETING: &str = "the Pod, NetworkPolicy and ConfigMap are being deleted";

/// Whether the status records that the execution's children were deleted.
fn children_deleted(cr: &PythonExecution) -> bool {
    current_status(cr).conditions.iter().any(|c| c.type_ == CHILDREN_DELETED && c.status == "True")
}

/// Reconciles one resource.
#[tracing::instrument(
    skip(cr, ctx),
    fields(execution = %cr.name_any(), namespace = %cr.namespace().unwrap_or_default())
)]
pub async fn reconcile(cr: Arc<PythonExecution>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let object = ObjectRef::from_obj(&*cr);
    let result = reconcile_inner(cr, ctx.clone()).await;
    ctx.metrics.reconciled(result.is_ok(), started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.retries.succeeded(&object);
    }
    result
}

async fn reconcile_inner(cr: Arc<PythonExecution>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = cr.namespace().unwrap_or_default();
    let api: Api<PythonExecution> = Api::namespaced(ctx.client.clone(), &namespace);
    if !ctx.logs.enabled() {
        if cr.meta().deletion_timestamp.is_some() {
            ctx.followers.forget(&ObjectRef::from_obj(&*cr));
            return Ok(Action::await_change());
        }
        return apply(cr, &ctx).await;
    }
    finalizer(&api, FINALIZER, cr, |event| async {
        match event {
            Finalizer::Apply(cr) => apply(cr, &ctx).await,
            Finalizer::Cleanup(cr) => {
                ctx.followers.forget(&ObjectRef::from_obj(&*cr));
                ctx.logs.remove(&cr.namespace().unwrap_or_default(), &cr.uid().unwrap_or_default()).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| match e {
        // The reconciliation's own error keeps its kind (for the failure metric).
        finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
        finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => Error::Kube(e),
        other => Error::Finalizer(other.to_string()),
    })
}

/// What failed reconciliations do: count the failure by kind, and retry after a delay that grows with each
/// consecutive failure of the same object ([`crate::retry`]).
pub fn error_policy(cr: Arc<PythonExecution>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.retries.failed(ObjectRef::from_obj(&*cr), Instant::now());
    ctx.metrics.failed(error.kind());
    tracing::warn!(
        execution = %cr.name_any(),
        namespace = %cr.namespace().unwrap_or_default(),
        %error,
        retry_in_seconds = delay.as_secs(),
        "reconcile failed"
    );
    Action::requeue(delay)
}

/// One clock reading per reconciliation: every time written by it is the same.
fn now() -> Time {
    Time(jiff::Timestamp::now())
}

async fn apply(cr: Arc<PythonExecution>, ctx: &Context) -> Result<Action, Error> {
    match next_step(&cr, ctx).await {
        // Someone else's object has a child's name: fail, and leave it (and everything else) alone.
        Err(Error::NameConflict { kind, name }) => {
            let message = format!(
                "a {kind} named {name:?} already exists in the namespace and does not belong to this execution; \
                 it was left unchanged: delete it or give the execution another name"
            );
            refuse(&cr, ctx, Refusal { reason: "NameConflict", message }, &now()).await
        }
        other => other,
    }
}

async fn next_step(cr: &Arc<PythonExecution>, ctx: &Context) -> Result<Action, Error> {
    let cr = cr.clone();
    let name = cr.name_any();
    let namespace = cr.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let now = now();
    if cr.phase().is_terminal() {
        if !children_deleted(&cr) {
            clean_up(&cr, ctx, current_status(&cr), &now).await?;
        }
        return expire(&cr, ctx, &now).await;
    }
    if cr.spec.session_ref.is_some() {
        return session_call(&cr, ctx, &now).await;
    }
    // Only the execution's own Pod is observed: a Pod of the same name that someone else made is not its. A warm
    // Pod has the pool's name for it, which the status records from the claim on.
    let pod_name = cr.status.as_ref().and_then(|s| s.pod_name.clone()).unwrap_or_else(|| name.clone());
    let pod = match pods.get_opt(&pod_name).await? {
        Some(pod) if !observe::controlled_by(pod.meta(), cr.uid().as_deref()) => {
            return Err(Error::NameConflict { kind: "Pod", name: pod_name });
        }
        pod => pod,
    };
    let kill = cr.annotations().contains_key(KILL_ANNOTATION);
    match pod {
        None if kill => {
            let result = killed_before_start(&execution_id(&cr), Timestamp::now());
            finish(&cr, ctx, Collected { result, reason: "Killed" }, None, &now).await
        }
        None if cr.status.as_ref().is_some_and(|s| s.pod_name.is_some()) => {
            let result =
                failed(&execution_id(&cr), "the execution's Pod was deleted before the program finished", None, "");
            finish(&cr, ctx, Collected { result, reason: "PodLost" }, None, &now).await
        }
        None => create(&cr, ctx, &now).await,
        Some(pod) if kill => {
            let finish_state = match pool::pod_state(&pod) {
                PodState::Finished(f) => f,
                PodState::Running { started_at, .. } => Finish::unfinished(FinishKind::Program, started_at),
                _ => Finish::unfinished(FinishKind::NeverStarted, None),
            };
            let collected = collect(&cr, &pods, ctx, &pod, &finish_state, true).await?;
            finish(&cr, ctx, collected, Some(&pod), &now).await
        }
        Some(pod) => advance(&cr, ctx, &pods, pod, &now).await,
    }
}

/// The seconds past its timeout after which an unfinished record of a session call is failed: the API server that
/// made the call writes the record's final status as the call ends, so one still unfinished by then lost its writer.
pub const SESSION_CALL_GRACE_SECONDS: i64 = 120;

/// The reason of a session call's record that its API server left unfinished.
pub const CALL_LOST: &str = "CallLost";

/// An unfinished record of a session call (`spec.sessionRef`): the call runs in the session's Pod, so there is
/// nothing to create; the record is failed once it is [`SESSION_CALL_GRACE_SECONDS`] past its timeout.
async fn session_call(cr: &PythonExecution, ctx: &Context, now: &Time) -> Result<Action, Error> {
    let remaining = session_call_lost_at(cr).map_or(0, |at| at - now.0.as_second());
    if remaining > 0 {
        return Ok(Action::requeue(Duration::from_secs(remaining.unsigned_abs())));
    }
    let message = "the API server running this session call stopped before the call finished; its result is lost";
    let mut result = failed(&execution_id(cr), message, None, "");
    result.started_at =
        cr.status.as_ref().and_then(|s| s.start_time.as_ref()).and_then(pyexec_crds::convert::timestamp_of);
    result.finished_at = Some(Timestamp::now());
    result.session_id = cr.spec.session_ref.as_deref().map(pyexec_crds::session::session_id_of);
    finish(cr, ctx, Collected { result, reason: CALL_LOST }, None, now).await
}

/// When an unfinished session call's record is given up on (Unix seconds): its creation, plus its timeout, plus
/// the grace. `None` without a creation time (never the case for a stored object).
pub fn session_call_lost_at(cr: &PythonExecution) -> Option<i64> {
    let created = cr.meta().creation_timestamp.as_ref()?.0.as_second();
    let timeout = i64::try_from(cr.spec.limits.timeout_seconds).unwrap_or(i64::MAX / 4);
    Some(created.saturating_add(timeout).saturating_add(SESSION_CALL_GRACE_SECONDS))
}

/// Admits the resource and creates its ConfigMap, NetworkPolicy and Pod.
async fn create(cr: &PythonExecution, ctx: &Context, now: &Time) -> Result<Action, Error> {
    let name = cr.name_any();
    let project = match (&cr.spec.source.config_map, cr.spec.requirements.is_none()) {
        (Some(source), true) => {
            let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
            match maps.get_opt(&source.name).await? {
                Some(map) => map.data.and_then(|d| d.get("requirements.txt").cloned()),
                None if within_grace(ctx, cr.meta(), now) => {
                    // It may be applied a little later (GitOps order): wait a while before failing.
                    let message = format!("waiting for the ConfigMap {:?} named in source.configMap", source.name);
                    let mut status = current_status(cr);
                    status.phase = Some(Phase::Pending);
                    set_condition(&mut status, cr, "Started", false, "SourceNotFound", &message, now);
                    write_status_if_changed(cr, ctx, status).await?;
                    return Ok(Action::requeue(Duration::from_secs(5)));
                }
                None => {
                    let refusal = Refusal {
                        reason: "SourceNotFound",
                        message: format!("the ConfigMap {:?} named in source.configMap does not exist", source.name),
                    };
                    return refuse(cr, ctx, refusal, now).await;
                }
            }
        }
        _ => inline_requirements(cr),
    };
    let admitted = match admit(cr, &ctx.config, project) {
        Ok(a) => a,
        Err(refusal) => return refuse(cr, ctx, refusal, now).await,
    };
    // A warm Pod of a pool that fits, when one is idle: no Pod to create, no sandbox to wait for.
    if let Some(claimed) = pool::claim::try_claim(cr, ctx, &admitted).await? {
        return pool::claim::start(cr, ctx, &admitted, claimed, now).await;
    }
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    match create_children(cr, ctx, &admitted, &nonce).await? {
        Created::Done => {}
        Created::PodRefused(message) => {
            let refusal = Refusal { reason: "PodRefused", message: format!("the Pod was refused: {message}") };
            return refuse(cr, ctx, refusal, now).await;
        }
        Created::QuotaExceeded(message) => return wait_for_quota(cr, ctx, message, now).await,
    }
    publish(ctx, cr, EventType::Normal, "Created", "Create", format!("Pod {name} created ({})", describe(&admitted)))
        .await;
    let mut status = current_status(cr);
    status.phase = Some(Phase::Pending);
    status.pod_name = Some(name);
    set_condition(&mut status, cr, "Accepted", true, "Accepted", "the operator runs this execution", now);
    if status.conditions.iter().any(|c| c.type_ == "Started") {
        // It waited for quota: that is over.
        set_condition(&mut status, cr, "Started", false, "Starting", "waiting for the Pod to start", now);
    }
    write_status(cr, ctx, status).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

/// Backpressure: a ResourceQuota has no room for the Pod. The execution stays `Pending` (no Pod yet) with the
/// quota's message, and the reconciliation fails so that the create is retried with the per-object backoff.
async fn wait_for_quota(cr: &PythonExecution, ctx: &Context, message: String, now: &Time) -> Result<Action, Error> {
    let mut status = current_status(cr);
    status.phase = Some(Phase::Pending);
    set_condition(&mut status, cr, "Started", false, "QuotaExceeded", &message, now);
    if !status.conditions.iter().any(|c| c.type_ == "Accepted") {
        set_condition(&mut status, cr, "Accepted", true, "Accepted", "the operator runs this execution", now);
    }
    write_status_if_changed(cr, ctx, status).await?;
    Err(Error::QuotaExceeded(message))
}

/// Whether the object was created less than `missingReferenceGraceSeconds` ago (one without a creation time is not).
fn within_grace(ctx: &Context, meta: &ObjectMeta, now: &Time) -> bool {
    let grace = i64::try_from(ctx.config.missing_reference_grace_seconds).unwrap_or(i64::MAX);
    meta.creation_timestamp.as_ref().is_some_and(|t| observe::age_seconds(t, now.0) < grace)
}

fn describe(admitted: &Admitted) -> String {
    let install = if admitted.installs() { ", installs requirements" } else { "" };
    format!("image {}{install}", admitted.image)
}

/// Moves a running Pod along: archive, go-ahead, `Running`, finish.
async fn advance(cr: &PythonExecution, ctx: &Context, pods: &Api<Pod>, pod: Pod, now: &Time) -> Result<Action, Error> {
    let name = pod.name_any();
    match pool::pod_state(&pod) {
        PodState::Starting { archive_wanted, waiting } => {
            if archive_wanted {
                start_streaming(cr, ctx, pods.clone(), &pod);
            }
            let unscheduled_for = pod.metadata.creation_timestamp.as_ref().map(|t| observe::age_seconds(t, now.0));
            let not_scheduled = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).is_none();
            if not_scheduled && unscheduled_for.is_some_and(|age| age > ctx.config.startup_seconds as i64) {
                // A Pod's deadline only counts once it is scheduled: the operator gives up on unschedulable ones.
                let why = waiting.unwrap_or_else(|| "not scheduled".into());
                let message = format!("the Pod could not start within {}s: {why}", ctx.config.startup_seconds);
                let result = failed(&execution_id(cr), message, None, "");
                return finish(cr, ctx, Collected { result, reason: "NotScheduled" }, Some(&pod), now).await;
            }
            let mut status = current_status(cr);
            status.phase.get_or_insert(Phase::Pending);
            status.pod_name.get_or_insert(name);
            let message = waiting.clone().unwrap_or_else(|| "waiting for the Pod to start".into());
            let reason = if waiting.is_some() { "Waiting" } else { "Starting" };
            set_condition(&mut status, cr, "Started", false, reason, &message, now);
            write_status_if_changed(cr, ctx, status).await?;
            Ok(Action::requeue(Duration::from_secs(15)))
        }
        PodState::Running { started_at, gate_wanted } => {
            // Read the frames as they are written: the log may be rotated before the program ends.
            let cap = FollowedLog::cap_for(ctx.config.output_limit_bytes, ctx.config.files_archive_bytes());
            ctx.followers.start(cr, pods.clone(), &pod, cap);
            // Every runner waits for the go-ahead; until it went through, look again soon rather than at the timeout.
            let gate_pending = gate_wanted && !open_gate(cr, ctx, pods, &pod).await?;
            let mut status = current_status(cr);
            if status.phase != Some(Phase::Running)
                && let (Some(created), Some(started)) = (cr.meta().creation_timestamp.as_ref(), started_at.as_ref())
            {
                ctx.metrics.started((started.0.as_millisecond() - created.0.as_millisecond()) as f64 / 1000.0);
            }
            status.phase = Some(Phase::Running);
            status.pod_name.get_or_insert(name);
            // Set once, at the first sight of the running container (or a warm Pod's claim).
            status.start_time = status.start_time.or(started_at);
            set_condition(&mut status, cr, "Started", true, "Running", "the program is running", now);
            write_status_if_changed(cr, ctx, status).await?;
            if gate_pending {
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            Ok(Action::requeue(Duration::from_secs(cr.spec.limits.timeout_seconds.clamp(5, 300))))
        }
        PodState::Finished(f) => {
            let collected = collect(cr, pods, ctx, &pod, &f, false).await?;
            finish(cr, ctx, collected, Some(&pod), now).await
        }
        PodState::Stuck(message) if observe::may_resolve(&message) && within_grace(ctx, pod.meta(), now) => {
            // What the container names may still be applied (GitOps order): wait a while before failing.
            let mut status = current_status(cr);
            status.phase.get_or_insert(Phase::Pending);
            status.pod_name.get_or_insert(name);
            set_condition(&mut status, cr, "Started", false, "Waiting", &message, now);
            write_status_if_changed(cr, ctx, status).await?;
            Ok(Action::requeue(Duration::from_secs(5)))
        }
        PodState::Stuck(message) => {
            let result = failed(&execution_id(cr), format!("the Pod cannot start: {message}"), None, "");
            finish(cr, ctx, Collected { result, reason: "PodFailed" }, Some(&pod), now).await
        }
    }
}

fn start_streaming(cr: &PythonExecution, ctx: &Context, pods: Api<Pod>, pod: &Pod) {
    let (Some(archive), Some(fetcher)) = (cr.spec.source.archive.clone(), ctx.archives.clone()) else { return };
    let key = crate::context::Streams::key(&cr.uid().unwrap_or_default(), &pod.uid().unwrap_or_default());
    if !ctx.streaming().insert(key) {
        return;
    }
    let name = pod.name_any();
    tokio::spawn(async move {
        match stream_archive(&pods, &name, &fetcher, &archive).await {
            Ok(bytes) => tracing::info!(pod = %name, bytes, "archive streamed into the Pod"),
            // The receive container then fails (truncated or missing archive) and the status says so.
            Err(e) => tracing::warn!(pod = %name, error = %e, "streaming the archive failed"),
        }
    });
}

/// Makes sure the program's NetworkPolicy is in place (created, or the install stage's replaced), then tells the
/// runner to go on: the go-ahead, or for a warm Pod the claim it waits for. Whether it was delivered.
async fn open_gate(cr: &PythonExecution, ctx: &Context, pods: &Api<Pod>, pod: &Pod) -> Result<bool, Error> {
    close_network(cr, ctx).await?;
    let name = &pod.name_any();
    let sent = if pool::is_warm(pod) {
        // Admission is pure and decided this execution fits a warm Pod: no project requirements to read.
        match admit(cr, &ctx.config, None) {
            Ok(admitted) => {
                pool::claim::hand_over(pods, name, &pool::claim::claim_document(cr, &admitted, &ctx.config)).await
            }
            Err(refusal) => {
                Err(AttachError::Write { container: "python", source: std::io::Error::other(refusal.message) })
            }
        }
    } else {
        send_go(pods, name).await
    };
    if let Err(e) = sent {
        tracing::warn!(pod = %name, error = %e, "sending the go-ahead failed; retrying");
        return Ok(false);
    }
    let annotate = serde_json::json!({"metadata": {"annotations": {GATE_ANNOTATION: "true"}}});
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&annotate)).await?;
    Ok(true)
}

/// Writes the terminal status (once), stores the full output, removes the children, publishes an Event.
async fn finish(
    cr: &PythonExecution,
    ctx: &Context,
    collected: Collected,
    pod: Option<&Pod>,
    now: &Time,
) -> Result<Action, Error> {
    let Collected { result, reason } = collected;
    let namespace = cr.namespace().unwrap_or_default();
    let logs_ref = ctx.logs.save(&namespace, &cr.uid().unwrap_or_default(), &result).await?;
    let mut status = status_from_result(&result);
    let previous = current_status(cr);
    status.conditions = previous.conditions;
    status.pod_name = previous.pod_name.or_else(|| pod.map(ResourceExt::name_any));
    // Set once: the start a reader saw while it ran stays (a result that knows no start does not erase it).
    status.start_time = previous.start_time.or(status.start_time);
    status.logs_ref = logs_ref;
    let message = outcome_message(&result);
    set_condition(&mut status, cr, "Finished", true, reason, &message, now);
    let phase = status.phase.unwrap_or(Phase::Failed);
    set_condition(&mut status, cr, CHILDREN_DELETED, false, "Deleting", DELETING, now);
    write_status(cr, ctx, status.clone()).await?;
    clean_up(cr, ctx, status, now).await?;
    let kind = if phase == Phase::Completed { EventType::Normal } else { EventType::Warning };
    publish(ctx, cr, kind, reason, "Finish", format!("{phase:?}: {message}")).await;
    ctx.metrics.finished(cr, &format!("{phase:?}"), reason, now);
    expire(cr, ctx, now).await
}

fn outcome_message(result: &ExecutionResult) -> String {
    result.error.clone().unwrap_or_else(|| format!("exit code {}", result.exit_code))
}

/// Refuses a resource: `Failed`, `Accepted=False` with the reason.
async fn refuse(cr: &PythonExecution, ctx: &Context, refusal: Refusal, now: &Time) -> Result<Action, Error> {
    let mut result = failed(&execution_id(cr), refusal.message.clone(), None, "");
    result.finished_at = Some(Timestamp::now());
    let mut status = status_from_result(&result);
    status.conditions = current_status(cr).conditions;
    set_condition(&mut status, cr, "Accepted", false, refusal.reason, &refusal.message, now);
    set_condition(&mut status, cr, "Finished", true, refusal.reason, &refusal.message, now);
    set_condition(&mut status, cr, CHILDREN_DELETED, false, "Deleting", DELETING, now);
    write_status(cr, ctx, status.clone()).await?;
    clean_up(cr, ctx, status, now).await?;
    publish(ctx, cr, EventType::Warning, refusal.reason, "Admit", refusal.message).await;
    ctx.metrics.finished(cr, "Failed", refusal.reason, now);
    Ok(Action::await_change())
}

/// Deletes a finished resource once its time to live has passed.
async fn expire(cr: &PythonExecution, ctx: &Context, now: &Time) -> Result<Action, Error> {
    let Some(ttl) = cr.spec.ttl_seconds_after_finished.or(ctx.config.default_ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let finished = cr.status.as_ref().and_then(|s| s.completion_time.as_ref()).map(|t| t.0.as_second());
    let now = now.0.as_second();
    let remaining = finished.unwrap_or(now) + i64::from(ttl) - now;
    if remaining > 0 {
        return Ok(Action::requeue(Duration::from_secs(remaining as u64)));
    }
    let api: Api<PythonExecution> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    match api.delete(&cr.name_any(), &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// The execution id the wire API uses for this resource (the API server names resources after it).
pub fn execution_id(cr: &PythonExecution) -> String {
    pyexec_crds::convert::execution_id(&cr.name_any())
}

async fn publish(ctx: &Context, cr: &PythonExecution, type_: EventType, reason: &str, action: &str, note: String) {
    let event =
        Event { type_, reason: reason.into(), note: Some(tail(&note, 1000)), action: action.into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&event, &cr.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_ids_follow_resource_names() {
        let cr = PythonExecution::new("exe-0b7c6f0e-1f1e-4c43-9d3b-6f6a0f0e0001", Default::default());
        assert_eq!(execution_id(&cr), "exe_0b7c6f0e-1f1e-4c43-9d3b-6f6a0f0e0001");
        assert_eq!(execution_id(&PythonExecution::new("nightly-report", Default::default())), "nightly-report");
    }
}
