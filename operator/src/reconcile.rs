//! The reconciler: level-triggered and idempotent. Each call looks at the resource and its Pod as they are now and
//! takes the next step: create the children, stream the archive, close the network and give the go-ahead, report
//! `Running`, collect the result, kill, expire. Restarting the operator loses nothing: every decision is made
//! from observed objects (children have fixed names, so a second create finds the first), and a terminal status is
//! never written twice.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff;
use kube::api::{DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, Client, Resource, ResourceExt};
use pyexec_core::outcome::{failed, killed_before_start};
use pyexec_core::pod::{PodEnd, finish as finish_pod, parse_log};
use pyexec_core::text::tail;
use pyexec_core::{ExecutionResult, Timestamp};
use pyexec_crds::convert::{execution_spec, status_from_result, timestamp_of};
use pyexec_crds::{Phase, PythonExecution, PythonExecutionStatus};

use crate::admission::{Admitted, Refusal, admit, inline_requirements};
use crate::attach::{ArchiveFetcher, send_go, stream_archive};
use crate::config::OperatorConfig;
use crate::desired::{self, INSTALL_CONTAINER, MAIN_CONTAINER, PolicyStage, RECEIVE_CONTAINER};
use crate::logs::{FINALIZER, LogStore};
use crate::metrics::Metrics;
use crate::observe::{self, Finish, FinishKind, GATE_ANNOTATION, PodState};

/// The field manager of everything the operator writes.
pub const MANAGER: &str = "pyexec-operator";
/// Annotation that asks for an execution to be killed (the API server's DELETE sets it; so can `kubectl annotate`).
pub const KILL_ANNOTATION: &str = "pyexec.io/kill-requested";
/// Most bytes of the main container's log read back (frames are base64: 4/3 of the kept output, twice, plus
/// the pre-commands').
const LOG_LIMIT_BYTES: i64 = 12 << 20;

/// Why a reconciliation failed (it is retried with backoff).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The log store failed.
    #[error("log store: {0}")]
    Logs(#[from] std::io::Error),
}

/// What every reconciliation shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The configuration.
    pub config: OperatorConfig,
    /// Publishes Events on resources.
    pub recorder: Recorder,
    /// Full outputs.
    pub logs: LogStore,
    /// Where archives come from.
    pub archives: Option<ArchiveFetcher>,
    /// Metrics.
    pub metrics: Metrics,
    /// Pods whose archive is being streamed now (by uid), so that a second reconcile does not stream it again.
    pub streaming: Mutex<HashSet<String>>,
}

impl Context {
    fn streaming(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.streaming.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reconciles one resource.
pub async fn reconcile(cr: Arc<PythonExecution>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(cr, ctx.clone()).await;
    ctx.metrics.reconciled(result.is_ok(), started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(cr: Arc<PythonExecution>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = cr.namespace().unwrap_or_default();
    let api: Api<PythonExecution> = Api::namespaced(ctx.client.clone(), &namespace);
    if !ctx.logs.enabled() {
        if cr.meta().deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        return apply(cr, &ctx).await;
    }
    finalizer(&api, FINALIZER, cr, |event| async {
        match event {
            Finalizer::Apply(cr) => apply(cr, &ctx).await,
            Finalizer::Cleanup(cr) => {
                ctx.logs.remove(&cr.namespace().unwrap_or_default(), &cr.uid().unwrap_or_default()).await?;
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

/// What failed reconciliations do: retry with a growing delay.
pub fn error_policy(cr: Arc<PythonExecution>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(execution = %cr.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn apply(cr: Arc<PythonExecution>, ctx: &Context) -> Result<Action, Error> {
    let name = cr.name_any();
    let namespace = cr.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    if cr.phase().is_terminal() {
        return expire(&cr, ctx).await;
    }
    let pod = pods.get_opt(&name).await?;
    let kill = cr.annotations().contains_key(KILL_ANNOTATION);
    match pod {
        None if kill => {
            let result = killed_before_start(&execution_id(&cr), Timestamp::now());
            finish(&cr, ctx, result, "Killed", None).await
        }
        None if cr.status.as_ref().is_some_and(|s| s.pod_name.is_some()) => {
            let result =
                failed(&execution_id(&cr), "the execution's Pod was deleted before the program finished", None, "");
            finish(&cr, ctx, result, "PodLost", None).await
        }
        None => create(&cr, ctx).await,
        Some(pod) if kill => {
            let finish_state = match observe::pod_state(&pod) {
                PodState::Finished(f) => f,
                other => Finish {
                    kind: if matches!(other, PodState::Running { .. }) {
                        FinishKind::Program
                    } else {
                        FinishKind::NeverStarted
                    },
                    exit_code: None,
                    oom_killed: false,
                    deadline_exceeded: false,
                    started_at: match other {
                        PodState::Running { started_at, .. } => started_at,
                        _ => None,
                    },
                    finished_at: None,
                },
            };
            let result = collect(&cr, &pods, &pod, &finish_state, true).await;
            finish(&cr, ctx, result, "Killed", Some(&pod)).await
        }
        Some(pod) => advance(&cr, ctx, &pods, pod).await,
    }
}

/// Admits the resource and creates its ConfigMap, NetworkPolicy and Pod.
async fn create(cr: &PythonExecution, ctx: &Context) -> Result<Action, Error> {
    let name = cr.name_any();
    let namespace = cr.namespace().unwrap_or_default();
    let project = match (&cr.spec.source.config_map, cr.spec.requirements.is_none()) {
        (Some(source), true) => {
            let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
            match maps.get_opt(&source.name).await? {
                Some(map) => map.data.and_then(|d| d.get("requirements.txt").cloned()),
                None => {
                    let refusal = Refusal {
                        reason: "SourceNotFound",
                        message: format!("the ConfigMap {:?} named in source.configMap does not exist", source.name),
                    };
                    return refuse(cr, ctx, refusal).await;
                }
            }
        }
        _ => inline_requirements(cr),
    };
    let admitted = match admit(cr, &ctx.config, project) {
        Ok(a) => a,
        Err(refusal) => return refuse(cr, ctx, refusal).await,
    };
    let pp = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    create_once(&maps, &pp, &desired::config_map(cr, &admitted, &ctx.config)).await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let stage = if admitted.installs() { PolicyStage::Install } else { PolicyStage::Run };
    create_once(&policies, &pp, &desired::network_policy(cr, &ctx.config, stage)).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    match pods.create(&pp, &desired::pod(cr, &admitted, &ctx.config, &nonce)).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
            // Admission (Pod Security, quotas) refused the Pod: that will not change by retrying.
            let refusal = Refusal { reason: "PodRefused", message: format!("the Pod was refused: {}", e.message) };
            return refuse(cr, ctx, refusal).await;
        }
        Err(e) => return Err(e.into()),
    }
    publish(ctx, cr, EventType::Normal, "Created", "Create", format!("Pod {name} created ({})", describe(&admitted)))
        .await;
    let mut status = current_status(cr);
    status.phase = Some(Phase::Pending);
    status.pod_name = Some(name);
    set_condition(&mut status, cr, "Accepted", true, "Accepted", "the operator runs this execution");
    write_status(cr, ctx, status).await?;
    Ok(Action::requeue(Duration::from_secs(60)))
}

fn describe(admitted: &Admitted) -> String {
    let install = if admitted.installs() { ", installs requirements" } else { "" };
    format!("image {}{install}", admitted.image)
}

async fn create_once<K>(api: &Api<K>, pp: &PostParams, object: &K) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(pp, object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Moves a running Pod along: archive, go-ahead, `Running`, finish.
async fn advance(cr: &PythonExecution, ctx: &Context, pods: &Api<Pod>, pod: Pod) -> Result<Action, Error> {
    let name = cr.name_any();
    match observe::pod_state(&pod) {
        PodState::Starting { archive_wanted, waiting } => {
            if archive_wanted {
                start_streaming(cr, ctx, pods.clone(), &pod);
            }
            let unscheduled_for =
                pod.metadata.creation_timestamp.as_ref().map(|t| observe::age_seconds(t, jiff::Timestamp::now()));
            let not_scheduled = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).is_none();
            if not_scheduled && unscheduled_for.is_some_and(|age| age > ctx.config.startup_seconds as i64) {
                // A Pod's deadline only counts once it is scheduled: the operator gives up on unschedulable ones.
                let why = waiting.unwrap_or_else(|| "not scheduled".into());
                let message = format!("the Pod could not start within {}s: {why}", ctx.config.startup_seconds);
                return finish(cr, ctx, failed(&execution_id(cr), message, None, ""), "NotScheduled", Some(&pod)).await;
            }
            let mut status = current_status(cr);
            status.phase.get_or_insert(Phase::Pending);
            status.pod_name.get_or_insert(name);
            let message = waiting.clone().unwrap_or_else(|| "waiting for the Pod to start".into());
            set_condition(
                &mut status,
                cr,
                "Started",
                false,
                if waiting.is_some() { "Waiting" } else { "Starting" },
                &message,
            );
            write_status_if_changed(cr, ctx, status).await?;
            Ok(Action::requeue(Duration::from_secs(15)))
        }
        PodState::Running { started_at, gate_wanted } => {
            if gate_wanted {
                open_gate(cr, ctx, pods, &name).await?;
            }
            let mut status = current_status(cr);
            if status.phase != Some(Phase::Running)
                && let (Some(created), Some(started)) = (cr.meta().creation_timestamp.as_ref(), started_at.as_ref())
            {
                ctx.metrics.started((started.0.as_millisecond() - created.0.as_millisecond()) as f64 / 1000.0);
            }
            status.phase = Some(Phase::Running);
            status.pod_name.get_or_insert(name);
            status.start_time = started_at.or(status.start_time);
            set_condition(&mut status, cr, "Started", true, "Running", "the program is running");
            write_status_if_changed(cr, ctx, status).await?;
            Ok(Action::requeue(Duration::from_secs(cr.spec.limits.timeout_seconds.clamp(5, 300))))
        }
        PodState::Finished(f) => {
            let result = collect(cr, pods, &pod, &f, false).await;
            let reason = finish_reason(&result, &f);
            finish(cr, ctx, result, reason, Some(&pod)).await
        }
        PodState::Stuck(message) => {
            let result = failed(&execution_id(cr), format!("the Pod cannot start: {message}"), None, "");
            finish(cr, ctx, result, "PodFailed", Some(&pod)).await
        }
    }
}

fn start_streaming(cr: &PythonExecution, ctx: &Context, pods: Api<Pod>, pod: &Pod) {
    let (Some(archive), Some(fetcher)) = (cr.spec.source.archive.clone(), ctx.archives.clone()) else { return };
    let uid = pod.uid().unwrap_or_default();
    if !ctx.streaming().insert(uid.clone()) {
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

/// Closes the Pod's network (install stage → run stage), then tells the runner to go on.
async fn open_gate(cr: &PythonExecution, ctx: &Context, pods: &Api<Pod>, name: &str) -> Result<(), Error> {
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let policy = desired::network_policy(cr, &ctx.config, PolicyStage::Run);
    let pp = PatchParams::apply(MANAGER).force();
    policies.patch(name, &pp, &Patch::Apply(&policy)).await?;
    if let Err(e) = send_go(pods, name).await {
        tracing::warn!(pod = %name, error = %e, "sending the go-ahead failed; retrying");
        return Ok(());
    }
    let annotate = serde_json::json!({"metadata": {"annotations": {GATE_ANNOTATION: "true"}}});
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&annotate)).await?;
    Ok(())
}

/// The result of a finished (or killed) Pod, from its logs and container states.
async fn collect(cr: &PythonExecution, pods: &Api<Pod>, pod: &Pod, f: &Finish, killed: bool) -> ExecutionResult {
    let id = execution_id(cr);
    let spec = execution_spec(&cr.spec);
    let started = f.started_at.as_ref().and_then(timestamp_of).unwrap_or_else(Timestamp::now);
    let finished = f.finished_at.as_ref().and_then(timestamp_of).unwrap_or_else(Timestamp::now);
    match &f.kind {
        FinishKind::Program => {
            let log = read_log(pods, &pod.name_any(), MAIN_CONTAINER, Some(LOG_LIMIT_BYTES)).await;
            let nonce = desired::pod_nonce(pod).unwrap_or_default();
            let pod_end = PodEnd {
                exit_code: f.exit_code,
                oom_killed: f.oom_killed,
                deadline_exceeded: f.deadline_exceeded,
                killed,
            };
            finish_pod(&id, &spec, parse_log(&log, &nonce), &pod_end, started, finished)
        }
        FinishKind::InitFailed { container, exit_code } if container == INSTALL_CONTAINER => {
            let log = String::from_utf8_lossy(&read_log(pods, &pod.name_any(), INSTALL_CONTAINER, Some(1 << 20)).await)
                .into_owned();
            let mut r = failed(
                &id,
                format!("installing dependencies failed: {}", pip_summary(&log, *exit_code)),
                Some(started),
                tail(&log, 8 << 10),
            );
            r.finished_at = Some(finished);
            r
        }
        FinishKind::InitFailed { container, exit_code } => {
            let what = if container == RECEIVE_CONTAINER {
                "receiving the uploaded files failed"
            } else {
                "preparing the Pod failed"
            };
            let log =
                String::from_utf8_lossy(&read_log(pods, &pod.name_any(), RECEIVE_CONTAINER, Some(64 << 10)).await)
                    .into_owned();
            let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();
            let detail = if last.is_empty() { format!("exit code {exit_code}") } else { last };
            failed(&id, format!("{what}: {detail}"), Some(started), tail(&log, 8 << 10))
        }
        FinishKind::NeverStarted if killed => killed_before_start(&id, started),
        FinishKind::NeverStarted => failed(
            &id,
            "the Pod did not start before its deadline (image pulls, scheduling or the install took too long)",
            None,
            "",
        ),
    }
}

fn finish_reason(result: &ExecutionResult, f: &Finish) -> &'static str {
    match (&f.kind, result.exit_code) {
        (FinishKind::InitFailed { container, .. }, _) if container == INSTALL_CONTAINER => "InstallFailed",
        (FinishKind::InitFailed { .. }, _) => "ReceiveFailed",
        (FinishKind::NeverStarted, _) => "DeadlineExceeded",
        (_, 124) => "TimedOut",
        _ if result.oom_killed => "OOMKilled",
        _ if result.status == pyexec_core::ExecutionStatus::Failed => "Failed",
        _ => "Completed",
    }
}

/// pip's reason for failing, in one line.
fn pip_summary(log: &str, exit_code: i32) -> String {
    let error = log
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("ERROR:"))
        .map(|l| l.trim_start_matches("ERROR:").trim().to_owned());
    match error {
        Some(e) if e.contains("from versions: none") || e.starts_with("No matching distribution") => {
            format!("{e} (only binary wheels are installed unless the operator's packageIndex.allowSdist is set)")
        }
        Some(e) => e,
        None => format!("pip exited with code {exit_code}"),
    }
}

async fn read_log(pods: &Api<Pod>, name: &str, container: &str, limit: Option<i64>) -> Vec<u8> {
    let params = LogParams { container: Some(container.into()), limit_bytes: limit, ..LogParams::default() };
    match pods.logs(name, &params).await {
        Ok(text) => text.into_bytes(),
        Err(e) => {
            tracing::warn!(pod = %name, container, error = %e, "reading the container log failed");
            Vec::new()
        }
    }
}

/// Writes the terminal status (once), stores the full output, removes the children, publishes an Event.
async fn finish(
    cr: &PythonExecution,
    ctx: &Context,
    result: ExecutionResult,
    reason: &str,
    pod: Option<&Pod>,
) -> Result<Action, Error> {
    let namespace = cr.namespace().unwrap_or_default();
    let logs_ref = ctx.logs.save(&namespace, &cr.uid().unwrap_or_default(), &result).await?;
    let mut status = status_from_result(&result);
    let previous = current_status(cr);
    status.conditions = previous.conditions;
    status.pod_name = previous.pod_name.or_else(|| pod.map(ResourceExt::name_any));
    status.start_time = status.start_time.or(previous.start_time);
    status.logs_ref = logs_ref;
    let message = result.error.clone().unwrap_or_else(|| format!("exit code {}", result.exit_code));
    set_condition(&mut status, cr, "Finished", true, reason, &message);
    let phase = status.phase.unwrap_or(Phase::Failed);
    write_status(cr, ctx, status).await?;
    delete_children(cr, ctx).await?;
    let kind = if phase == Phase::Completed { EventType::Normal } else { EventType::Warning };
    publish(ctx, cr, kind, reason, "Finish", format!("{phase:?}: {message}")).await;
    ctx.metrics.finished(&format!("{phase:?}"));
    expire(cr, ctx).await
}

/// Refuses a resource: `Failed`, `Accepted=False` with the reason.
async fn refuse(cr: &PythonExecution, ctx: &Context, refusal: Refusal) -> Result<Action, Error> {
    let mut result = failed(&execution_id(cr), refusal.message.clone(), None, "");
    result.finished_at = Some(Timestamp::now());
    let mut status = status_from_result(&result);
    status.conditions = current_status(cr).conditions;
    set_condition(&mut status, cr, "Accepted", false, refusal.reason, &refusal.message);
    set_condition(&mut status, cr, "Finished", true, refusal.reason, &refusal.message);
    write_status(cr, ctx, status).await?;
    delete_children(cr, ctx).await?;
    publish(ctx, cr, EventType::Warning, refusal.reason, "Admit", refusal.message).await;
    ctx.metrics.finished("Failed");
    Ok(Action::await_change())
}

/// Deletes a finished resource once its time to live has passed.
async fn expire(cr: &PythonExecution, ctx: &Context) -> Result<Action, Error> {
    let Some(ttl) = cr.spec.ttl_seconds_after_finished.or(ctx.config.default_ttl_seconds_after_finished) else {
        return Ok(Action::await_change());
    };
    let finished = cr.status.as_ref().and_then(|s| s.completion_time.as_ref()).map(|t| t.0.as_second());
    let now = jiff::Timestamp::now().as_second();
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

async fn delete_children(cr: &PythonExecution, ctx: &Context) -> Result<(), Error> {
    let name = cr.name_any();
    let namespace = cr.namespace().unwrap_or_default();
    let dp = DeleteParams::background();
    let ignore_missing = |r: Result<(), kube::Error>| match r {
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        other => other,
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    ignore_missing(pods.delete(&name, &dp).await.map(drop))?;
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    ignore_missing(policies.delete(&name, &dp).await.map(drop))?;
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    ignore_missing(maps.delete(&name, &dp).await.map(drop))?;
    if let Some(uid) = cr.uid() {
        ctx.streaming().remove(&uid);
    }
    Ok(())
}

/// The execution id the wire API uses for this resource (the API server names resources after it).
pub fn execution_id(cr: &PythonExecution) -> String {
    pyexec_crds::convert::execution_id(&cr.name_any())
}

fn current_status(cr: &PythonExecution) -> PythonExecutionStatus {
    cr.status.clone().unwrap_or_default()
}

/// Sets a condition; its transition time changes only when its status does.
pub fn set_condition(
    status: &mut PythonExecutionStatus,
    cr: &PythonExecution,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) {
    let value = if ok { "True" } else { "False" };
    let generation = cr.meta().generation;
    let now = Time(jiff::Timestamp::now());
    let mut message = message.to_owned();
    if message.len() > 32 << 10 {
        message = tail(&message, 32 << 10);
    }
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = now;
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
            last_transition_time: now,
        }),
    }
}

async fn write_status(cr: &PythonExecution, ctx: &Context, mut status: PythonExecutionStatus) -> Result<(), Error> {
    status.observed_generation = cr.meta().generation;
    let api: Api<PythonExecution> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": "pyexec.io/v1alpha1",
        "kind": "PythonExecution",
        "status": status,
    });
    api.patch_status(&cr.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

async fn write_status_if_changed(
    cr: &PythonExecution,
    ctx: &Context,
    status: PythonExecutionStatus,
) -> Result<(), Error> {
    let mut comparable = status.clone();
    comparable.observed_generation = cr.meta().generation;
    let strip = |s: &mut PythonExecutionStatus| {
        s.conditions.iter_mut().for_each(|c| c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH))
    };
    let mut before = current_status(cr);
    strip(&mut before);
    strip(&mut comparable);
    if before == comparable {
        return Ok(());
    }
    write_status(cr, ctx, status).await
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
    fn pip_failures_are_summarized() {
        let log = "Collecting six\nERROR: Could not find a version that satisfies the requirement docopt (from versions: none)\nERROR: No matching distribution found for docopt\n";
        let s = pip_summary(log, 1);
        assert!(s.starts_with("No matching distribution found for docopt") && s.contains("allowSdist"), "{s}");
        assert_eq!(pip_summary("boom", 2), "pip exited with code 2");
    }

    #[test]
    fn execution_ids_follow_resource_names() {
        let cr = PythonExecution::new("exe-0b7c6f0e-1f1e-4c43-9d3b-6f6a0f0e0001", Default::default());
        assert_eq!(execution_id(&cr), "exe_0b7c6f0e-1f1e-4c43-9d3b-6f6a0f0e0001");
        assert_eq!(execution_id(&PythonExecution::new("nightly-report", Default::default())), "nightly-report");
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let cr = PythonExecution::new("x", Default::default());
        let mut status = PythonExecutionStatus::default();
        set_condition(&mut status, &cr, "Started", false, "Waiting", "image");
        let first = status.conditions[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        set_condition(&mut status, &cr, "Started", false, "Waiting", "still");
        assert_eq!(status.conditions[0].last_transition_time, first);
        set_condition(&mut status, &cr, "Started", true, "Running", "go");
        assert_ne!(status.conditions[0].last_transition_time, first);
        assert_eq!(status.conditions.len(), 1);
    }
}
