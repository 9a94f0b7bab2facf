//! The session's reconciler: level-triggered, like the execution's and the pool's. Each call reads the session's
//! Pods (by the session's uid label, only those it controls), asks [`super::decide`] what they call for, and carries
//! it out: reads a failed install's log (pip's reason) before its Pod goes; moves the current Pod's runner through
//! the gate as an execution's ([`Gate`]: the install stage's NetworkPolicy deleted, then the go-ahead through
//! attach, recorded on the Pod; then the runner's report read from its log and recorded on the Pod, after which the
//! session is `Ready`); deletes Pods (uid preconditions); makes sure the ConfigMap and NetworkPolicy exist (and, for
//! a Pod that installs, the install stage's policy selecting it) before it creates a Pod; creates the Pod; writes
//! the status (server-side apply of the fields the operator owns: never `lastActivityAt`, which is the API
//! server's); deletes a session that ended long enough ago; and asks to be called again at the next expiry.
//!
//! A deleted session needs nothing: Kubernetes' garbage collector deletes its Pod, ConfigMap and NetworkPolicy.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use pyexec_core::outcome::install_failure_message;
use pyexec_core::pod::protocol::INSTALL_CONTAINER;
use pyexec_core::session::ready_report;
use pyexec_crds::contract::OPERATOR;
use pyexec_crds::session::SESSION_CONTAINER;
use pyexec_crds::{PythonSession, SessionPhase};

use super::decide::{self, Gate, INSTALL_FAILED, InstallFailure, Plan, Transition, decide};
use super::desired::{
    RUNNER_READY_ANNOTATION, admit, bounded_report, config_map, install_policy, install_policy_name, network_policy,
    owned_name, pod, pod_selector, startup_seconds,
};
use crate::admission::Admitted;
use crate::attach::send_go;
use crate::children::{apply_own, delete_own, is_quota_refusal};
use crate::collect::{pip_summary, read_log};
use crate::context::{Context, Error};
use crate::observe::{GATE_ANNOTATION, controlled_by};

/// The reason of a session whose Pod waits for room in the namespace's quota (it stays `Pending`).
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// The reason of a session whose Pod the API server refused (Pod Security, validation).
pub const POD_REFUSED: &str = "PodRefused";
/// The reason of a session whose ConfigMap or NetworkPolicies' name is taken by an object that is not its own.
pub const NAME_CONFLICT: &str = "NameConflict";
/// How soon a Pod refused by a quota is tried again.
pub const QUOTA_RETRY: Duration = Duration::from_secs(10);
/// How soon a go-ahead that did not go through is tried again.
pub const GO_AHEAD_RETRY: Duration = Duration::from_secs(2);
/// The most of a session container's log read for the runner's report (it is the log's first line).
const REPORT_LOG_BYTES: i64 = 64 << 10;
/// The most of an install container's log read for pip's reason (it is at the end).
const INSTALL_LOG_BYTES: i64 = 1 << 20;

/// Reconciles one session.
#[tracing::instrument(skip(session, ctx), fields(session = %session.name_any(), namespace = %session.namespace().unwrap_or_default()))]
pub async fn reconcile(session: Arc<PythonSession>, ctx: Arc<Context>) -> Result<Action, Error> {
    if session.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = session.namespace().unwrap_or_default();
    let uid = session.uid();
    let admitted = admit(&session, &ctx.config);
    let startup = startup_seconds(admitted.as_ref().ok(), &ctx.config);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = pods.list(&ListParams::default().labels(&pod_selector(&session))).await?.items;
    // Only the Pods the session controls are its own: a Pod that merely carries its labels is never touched.
    let mut mine: Vec<Pod> = listed.into_iter().filter(|p| controlled_by(p.meta(), uid.as_deref())).collect();
    let now = Timestamp::now();
    let mut plan = decide(&session, admitted.as_ref().err(), &mine, now, startup);

    if let Some(failure) = &plan.install_failed {
        // Now, while the Pod (and so the log) is still there.
        let message = install_failure(&pods, failure).await;
        decide::fail(&session, &mut plan, INSTALL_FAILED, message, now);
    }
    if let (Some(gate), Ok(admitted)) = (plan.gate.clone(), admitted.as_ref()) {
        match gate {
            Gate::GoAhead(pod) => {
                let sent = open_gate(&session, &ctx, &pods, &pod, admitted).await?;
                plan.requeue = Some(if sent { decide::GATE_POLL } else { GO_AHEAD_RETRY });
            }
            Gate::Report(pod) => {
                if let Some(reported) = read_report(&pods, &pod).await? {
                    // The runner is up behind a closed network: decided again with what the Pod says now.
                    mine.retain(|p| p.uid() != reported.uid());
                    mine.push(reported);
                    plan = decide(&session, None, &mine, now, startup);
                }
            }
        }
    }

    for pod in &plan.delete {
        delete_pod(&pods, pod).await?;
    }
    if let (Some(new), Ok(admitted)) = (plan.create.clone(), admitted.as_ref()) {
        let pp = PostParams { field_manager: Some(OPERATOR.into()), ..PostParams::default() };
        // All before the Pod: it never runs without its runner, nor without its policies.
        let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
        let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        let map = config_map(&session, admitted, &ctx.config);
        let named = |kind: &'static str| (kind, owned_name(&session));
        let conflict = match ensure_config_map(&maps, &pp, &map, uid.as_deref()).await? {
            Some(kind) => Some(named(kind)),
            None => {
                let policy = network_policy(&session, &ctx.config);
                match ensure(&policies, &pp, &policy, uid.as_deref(), "NetworkPolicy").await? {
                    Some(kind) => Some(named(kind)),
                    None if admitted.installs() => {
                        // The package index, for the new Pod alone while it installs.
                        let install = install_policy(&session, &ctx.config, new.number);
                        match apply_own(&policies, install, uid.as_deref()).await {
                            Ok(()) => None,
                            Err(Error::NameConflict { kind, name }) => Some((kind, name)),
                            Err(e) => return Err(e),
                        }
                    }
                    None => None,
                }
            }
        };
        if let Some((kind, name)) = conflict {
            let message = format!("a {kind} named {name:?} exists and is not this session's");
            decide::fail(&session, &mut plan, NAME_CONFLICT, message, now);
        } else {
            let desired = pod(&session, admitted, &ctx.config, new.number, new.deadline_seconds);
            match pods.create(&pp, &desired).await {
                Ok(created) => {
                    plan.status.pod_name = Some(created.name_any());
                    ctx.metrics.session_pod_created(if new.number == 0 { "start" } else { "restart" });
                }
                Err(kube::Error::Api(e)) if is_quota_refusal(e.code, &e.message) => {
                    let message = format!("the session's Pod waits for room in the namespace's quota: {}", e.message);
                    decide::set_phase(&session, &mut plan, SessionPhase::Pending, false, QUOTA_EXCEEDED, message, now);
                    plan.transition = None;
                    plan.requeue = Some(QUOTA_RETRY);
                }
                Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                    let message = format!("the session's Pod was refused: {}", e.message);
                    decide::fail(&session, &mut plan, POD_REFUSED, message, now);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    write_status(&session, &ctx, &plan).await?;
    if let Some(transition) = &plan.transition {
        record(&session, &ctx, &plan, transition).await;
    }
    if plan.delete_session {
        delete_session(&session, &ctx).await?;
        return Ok(Action::await_change());
    }
    Ok(plan.requeue.map_or_else(Action::await_change, Action::requeue))
}

/// The status message of a session whose Pod could not install its requirements: pip's reason, from the install
/// container's log (the exit code when the log cannot be read: the session fails either way).
async fn install_failure(pods: &Api<Pod>, failure: &InstallFailure) -> String {
    let why = match read_log(pods, &failure.pod, INSTALL_CONTAINER, Some(INSTALL_LOG_BYTES)).await {
        Ok(log) => pip_summary(&String::from_utf8_lossy(&log), failure.exit_code),
        Err(e) => format!("pip exited with code {} (its log: {e})", failure.exit_code),
    };
    let oom = if failure.oom_killed { " (out of memory)" } else { "" };
    install_failure_message(format!("{why}{oom}"))
}

/// Closes the Pod's network and tells its runner to go on; whether the go-ahead went through. The session's own
/// NetworkPolicy exists since before the Pod, so closing is deleting the install stage's (when the Pod installed):
/// policies add up, and without it the Pod has the session's alone. The go-ahead is recorded on the Pod
/// ([`GATE_ANNOTATION`]); one sent again because that record failed is skipped by the runner.
async fn open_gate(
    session: &PythonSession,
    ctx: &Context,
    pods: &Api<Pod>,
    pod: &Pod,
    admitted: &Admitted,
) -> Result<bool, Error> {
    if admitted.installs() {
        let policies: Api<NetworkPolicy> =
            Api::namespaced(ctx.client.clone(), &session.namespace().unwrap_or_default());
        delete_own(&policies, &install_policy_name(session), session.uid().as_deref()).await?;
    }
    let name = pod.name_any();
    if let Err(e) = send_go(pods, &name).await {
        tracing::warn!(pod = %name, error = %e, "sending the go-ahead failed; retrying");
        return Ok(false);
    }
    let annotate = serde_json::json!({"metadata": {"annotations": {GATE_ANNOTATION: "true"}}});
    pods.patch(&name, &PatchParams::default(), &Patch::Merge(&annotate)).await?;
    Ok(true)
}

/// The runner's report, once its log has it: recorded on the Pod ([`RUNNER_READY_ANNOTATION`]), which is returned.
/// `None` while the runner is still checking the fence (or the log cannot be read now: looked at again soon).
async fn read_report(pods: &Api<Pod>, pod: &Pod) -> Result<Option<Pod>, Error> {
    let name = pod.name_any();
    let params = LogParams {
        container: Some(SESSION_CONTAINER.into()),
        limit_bytes: Some(REPORT_LOG_BYTES),
        ..LogParams::default()
    };
    let log = match pods.logs(&name, &params).await {
        Ok(log) => log,
        Err(e) => {
            tracing::warn!(pod = %name, error = %e, "reading the session runner's log failed; retrying");
            return Ok(None);
        }
    };
    let Some(report) = ready_report(&log) else { return Ok(None) };
    let value = serde_json::to_string(&bounded_report(report)).unwrap_or_default();
    let annotate = serde_json::json!({"metadata": {"annotations": {RUNNER_READY_ANNOTATION: value}}});
    Ok(Some(pods.patch(&name, &PatchParams::default(), &Patch::Merge(&annotate)).await?))
}

/// Writes the plan's status unless it is the session's already. Server-side apply of the operator's fields only:
/// `lastActivityAt` is left out, so the API server's value stays whatever it writes meanwhile, and a field the
/// operator stops setting (`podName` of an ended session) is removed.
async fn write_status(session: &PythonSession, ctx: &Context, plan: &Plan) -> Result<(), Error> {
    if session.status.as_ref() == Some(&plan.status) {
        return Ok(());
    }
    let mut status = plan.status.clone();
    status.last_activity_at = None;
    let patch = serde_json::json!({
        "apiVersion": PythonSession::api_version(&()),
        "kind": PythonSession::kind(&()),
        "status": status,
    });
    let api: Api<PythonSession> = Api::namespaced(ctx.client.clone(), &session.namespace().unwrap_or_default());
    api.patch_status(&session.name_any(), &PatchParams::apply(OPERATOR).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Counts a transition and publishes an Event for it.
async fn record(session: &PythonSession, ctx: &Context, plan: &Plan, transition: &Transition) {
    let message = plan.status.message.clone();
    let (type_, reason) = match transition {
        Transition::Started => return,
        Transition::Ready => (EventType::Normal, "Ready"),
        Transition::Restarted(_) => (EventType::Normal, "Restarting"),
        Transition::Ended(phase, reason) => {
            ctx.metrics.session_ended(&format!("{phase:?}"), reason);
            match phase {
                SessionPhase::Failed => (EventType::Warning, "Failed"),
                _ => (EventType::Normal, "Ended"),
            }
        }
    };
    let event = Event { type_, reason: reason.into(), note: message, action: "Reconcile".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&event, &session.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

/// Deletes one of the session's Pods, only if it is still the one read (uid precondition).
async fn delete_pod(pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
        ..DeleteParams::background()
    };
    match pods.delete(&pod.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the session itself (it ended [`pyexec_crds::session::ENDED_GRACE_SECONDS`] ago and nobody did).
async fn delete_session(session: &PythonSession, ctx: &Context) -> Result<(), Error> {
    let api: Api<PythonSession> = Api::namespaced(ctx.client.clone(), &session.namespace().unwrap_or_default());
    let dp = DeleteParams {
        preconditions: Some(Preconditions { uid: session.uid(), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(&session.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The session's ConfigMap as [`ensure`] makes sure of it, and replaced when it holds other runners (an older
/// operator's): ConfigMaps are immutable, and it is read only by a Pod about to be created, since none of the
/// session's runs now.
async fn ensure_config_map(
    maps: &Api<ConfigMap>,
    pp: &PostParams,
    map: &ConfigMap,
    owner: Option<&str>,
) -> Result<Option<&'static str>, Error> {
    if let Some(existing) = maps.get_opt(&map.name_any()).await?
        && controlled_by(existing.meta(), owner)
        && existing.data != map.data
    {
        delete_own(maps, &map.name_any(), owner).await?;
    }
    ensure(maps, pp, map, owner, "ConfigMap").await
}

/// Creates `object` unless the session's exists; `kind` when an object of that name exists that is not the
/// session's (it is left alone).
async fn ensure<K>(
    api: &Api<K>,
    pp: &PostParams,
    object: &K,
    owner: Option<&str>,
    kind: &'static str,
) -> Result<Option<&'static str>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    if let Some(existing) = api.get_opt(&object.name_any()).await? {
        return Ok((!controlled_by(existing.meta(), owner)).then_some(kind));
    }
    match api.create(pp, object).await {
        Ok(_) => Ok(None),
        // Created in between (a second reconciliation): looked at again next time.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What failed session reconciliations do: count, and look again after a short delay.
pub fn error_policy(session: Arc<PythonSession>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.kind());
    tracing::warn!(session = %session.name_any(), namespace = %session.namespace().unwrap_or_default(), %error, "session reconcile failed");
    Action::requeue(Duration::from_secs(5))
}
