//! The session's reconciler: level-triggered, like the execution's and the pool's. Each call reads the session's
//! Pods (by the session's uid label, only those it controls), asks [`super::decide`] what they call for, and carries
//! it out: deletes Pods (uid preconditions), makes sure the ConfigMap and NetworkPolicy exist before it creates a
//! Pod, creates the Pod, writes the status (server-side apply of the fields the operator owns: never
//! `lastActivityAt`, which is the API server's), deletes a session that ended long enough ago, and asks to be called
//! again at the next expiry.
//!
//! A deleted session needs nothing: Kubernetes' garbage collector deletes its Pod, ConfigMap and NetworkPolicy.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use pyexec_crds::contract::OPERATOR;
use pyexec_crds::{PythonSession, SessionPhase};

use super::decide::{self, Plan, Transition, decide};
use super::desired::{admit, config_map, network_policy, owned_name, pod, pod_selector};
use crate::children::is_quota_refusal;
use crate::context::{Context, Error};
use crate::observe::controlled_by;

/// The reason of a session whose Pod waits for room in the namespace's quota (it stays `Pending`).
pub const QUOTA_EXCEEDED: &str = "QuotaExceeded";
/// The reason of a session whose Pod the API server refused (Pod Security, validation).
pub const POD_REFUSED: &str = "PodRefused";
/// The reason of a session whose ConfigMap or NetworkPolicy name is taken by an object that is not its own.
pub const NAME_CONFLICT: &str = "NameConflict";
/// How soon a Pod refused by a quota is tried again.
pub const QUOTA_RETRY: Duration = Duration::from_secs(10);

/// Reconciles one session.
#[tracing::instrument(skip(session, ctx), fields(session = %session.name_any(), namespace = %session.namespace().unwrap_or_default()))]
pub async fn reconcile(session: Arc<PythonSession>, ctx: Arc<Context>) -> Result<Action, Error> {
    if session.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = session.namespace().unwrap_or_default();
    let uid = session.uid();
    let admitted = admit(&session, &ctx.config);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = pods.list(&ListParams::default().labels(&pod_selector(&session))).await?.items;
    // Only the Pods the session controls are its own: a Pod that merely carries its labels is never touched.
    let mine: Vec<Pod> = listed.into_iter().filter(|p| controlled_by(p.meta(), uid.as_deref())).collect();
    let now = Timestamp::now();
    let mut plan = decide(&session, admitted.as_ref().err(), &mine, now, ctx.config.startup_seconds);

    for pod in &plan.delete {
        delete_pod(&pods, pod).await?;
    }
    if let (Some(new), Ok(admitted)) = (plan.create.clone(), admitted.as_ref()) {
        let pp = PostParams { field_manager: Some(OPERATOR.into()), ..PostParams::default() };
        // Both before the Pod: it never runs without its runner, nor without its policy.
        let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
        let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        let conflict = match ensure(&maps, &pp, &config_map(&session), uid.as_deref(), "ConfigMap").await? {
            Some(kind) => Some(kind),
            None => {
                let policy = network_policy(&session, &ctx.config);
                ensure(&policies, &pp, &policy, uid.as_deref(), "NetworkPolicy").await?
            }
        };
        if let Some(kind) = conflict {
            let message = format!("a {kind} named {:?} exists and is not this session's", owned_name(&session));
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
