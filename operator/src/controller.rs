//! The controller: watches PythonExecutions (and the Pods, NetworkPolicies and ConfigMaps they own) and runs
//! [`crate::reconcile::reconcile`] for each change, until the process is asked to stop.
//!
//! PythonExecutions are watched as untyped objects and decoded one by one, so that one object the operator cannot
//! read (stored before a schema change, say) is reported on itself with a Warning Event and skipped, instead of
//! failing the list of every object in scope. The watch's health is shared with `/readyz` ([`Readiness`]), and at
//! most [`crate::config::OperatorConfig::concurrency`] reconciliations run at once.
//!
//! Beside it, with the same context, run the warm pools' controller ([`crate::pool::controller`]), which keeps
//! each PythonExecutionPool's idle Pods, and the sessions' controller ([`crate::session::controller`]), which keeps
//! each PythonSession's Pod; each returns at once when its CRD is not installed. Executions meet the
//! pools only in their own reconciliation: before creating a Pod, [`crate::reconcile`] tries to claim an idle Ready
//! Pod of a pool that fits ([`crate::pool::claim`]: one merge patch, at the Pod's `resourceVersion`, that moves its
//! controller owner reference to the execution). From then on the claimed Pod is the execution's child, and its
//! changes reach this controller through the same owned-Pod watch as a Pod the execution created.
//!
//! What it caches stays bounded: the only stores are the reflector's of PythonExecutions (finished ones are deleted
//! `ttlSecondsAfterFinished` after they finished) and the pools' controller's of PythonExecutionPools; the Pods,
//! NetworkPolicies and ConfigMaps are watched only for the operator's own children (label-scoped) and only to map a
//! change to its owner, so none of them is stored; and the per-object state of the context is swept against the
//! store every [`SWEEP_EVERY`] ([`Context::forget_gone`]).

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::{OPERATOR, managed_by_selector};

use crate::context::{Context, Error};
use crate::reconcile::{error_policy, reconcile};
use crate::server::Readiness;

/// Runs the controller over one namespace, or all of them, until SIGTERM/SIGINT. `ready` follows the controller's
/// watches: failing after a watch error, ready again once a reconciliation runs (or the error is old).
pub async fn run(client: Client, ctx: Arc<Context>, namespace: Option<&str>, ready: Readiness) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let resource = execution_resource();
    let executions: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    // Only the operator's own children are watched (label-scoped), so unrelated Pods cost nothing.
    let children = watcher::Config::default().labels(&managed_by_selector(OPERATOR));
    let config = controller::Config::default().concurrency(ctx.config.concurrency);
    let controller = Controller::new_with(executions, watcher::Config::default().any_semantic(), resource);
    // The gauges of pending and running executions are counted from the controller's own store.
    ctx.metrics.count_from(controller.store());
    let sweeper = tokio::spawn(sweep(controller.store(), ctx.clone()));
    // The warm pools' controller runs beside this one, with the same context, and stops with it.
    let pools = tokio::spawn(crate::pool::controller::run(client.clone(), ctx.clone(), namespace.map(str::to_owned)));
    // So does the sessions' controller.
    let sessions =
        tokio::spawn(crate::session::controller::run(client.clone(), ctx.clone(), namespace.map(str::to_owned)));
    let metrics = ctx.metrics.clone();
    controller
        .with_config(config)
        .owns(api::<Pod>(&client, namespace), children.clone())
        .owns(api::<NetworkPolicy>(&client, namespace), children.clone())
        .owns(api::<ConfigMap>(&client, namespace), children)
        .shutdown_on_signal()
        .run(reconcile_object, error_policy_object, ctx)
        .for_each(move |result| {
            match result {
                Ok(_) => ready.set(true),
                Err(controller::Error::QueueError(e)) => {
                    ready.set(false);
                    metrics.watch_failed();
                    tracing::warn!(error = %e, "a watch of the controller failed; retrying");
                }
                // Reconcile failures are logged (and counted) by the error policy; the watch works.
                Err(controller::Error::ReconcilerFailed(..)) => ready.set(true),
                Err(e) => tracing::debug!(error = %e, "reconcile event"),
            }
            future::ready(())
        })
        .await;
    sweeper.abort();
    pools.abort();
    sessions.abort();
}

/// How often the context's per-object state is swept against the store of executions.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Forgets, every [`SWEEP_EVERY`], the per-object state of executions that are gone from the store (deleted).
async fn sweep(store: Store<DynamicObject>, ctx: Arc<Context>) {
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tick.tick().await;
        ctx.forget_gone(live_executions(&store.state()));
    }
}

/// The references of the executions in the store, as the retry state keys them.
pub fn live_executions(objects: &[Arc<DynamicObject>]) -> Vec<ObjectRef<PythonExecution>> {
    objects
        .iter()
        .map(|o| {
            let r = ObjectRef::new(&o.name_any());
            match o.namespace() {
                Some(ns) => r.within(&ns),
                None => r,
            }
        })
        .collect()
}

/// The API resource of PythonExecutions, for the untyped watch.
pub fn execution_resource() -> ApiResource {
    ApiResource::erase::<PythonExecution>(&())
}

/// Reads a watched object as a PythonExecution.
pub fn decode(object: &DynamicObject) -> Result<PythonExecution, serde_json::Error> {
    serde_json::to_value(object).and_then(serde_json::from_value)
}

/// Reconciles a watched object: decoded, or, when it cannot be, reported on itself (Warning Event and an error
/// log naming it) and left alone until it changes; the other objects are reconciled as usual.
pub async fn reconcile_object(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    match decode(&object) {
        Ok(cr) => reconcile(Arc::new(cr), ctx).await,
        Err(e) => {
            report_undecodable(&object, &e, &ctx).await;
            Ok(Action::await_change())
        }
    }
}

/// [`error_policy`] for a watched object.
pub fn error_policy_object(object: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
    match decode(&object) {
        Ok(cr) => error_policy(Arc::new(cr), error, ctx),
        Err(_) => Action::await_change(),
    }
}

async fn report_undecodable(object: &DynamicObject, error: &serde_json::Error, ctx: &Context) {
    let name = object.name_any();
    let namespace = object.namespace().unwrap_or_default();
    tracing::error!(execution = %name, %namespace, %error, "cannot read this PythonExecution; skipping it");
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidObject".into(),
        note: Some(format!("the operator cannot read this PythonExecution, so it does not run it: {error}")),
        action: "Decode".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&execution_resource())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}
