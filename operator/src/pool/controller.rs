//! The pools' controller: watches PythonExecutionPools and the Pods labelled with a pool's name (idle ones, which the
//! pool controls, and claimed ones, which their executions do: a claim must wake the pool up to refill), and runs
//! [`super::reconcile::reconcile`] for each change. Its only store is the reflector's of pools; Pods are mapped to
//! their pool by label and not kept.

use std::sync::Arc;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use pyexec_crds::PythonExecutionPool;

use super::POOL_LABEL;
use super::reconcile::{error_policy, reconcile};
use crate::context::Context;

/// Runs the pools' controller over one namespace, or all of them, until the process stops. Without the
/// PythonExecutionPool CRD installed there are no pools: it says so once and returns.
pub async fn run(client: Client, ctx: Arc<Context>, namespace: Option<String>) {
    let (pools, pods): (Api<PythonExecutionPool>, Api<Pod>) = match namespace.as_deref() {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client, ns)),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    if let Err(kube::Error::Api(e)) = pools.list(&kube::api::ListParams::default().limit(1)).await
        && e.code == 404
    {
        tracing::info!("the PythonExecutionPool CRD is not installed: no warm pools, every execution runs cold");
        return;
    }
    let labelled = watcher::Config::default().labels(POOL_LABEL);
    let metrics = ctx.metrics.clone();
    Controller::new(pools, watcher::Config::default().any_semantic())
        .watches(pods, labelled, |pod: Pod| {
            let pool = pod.labels().get(POOL_LABEL)?.clone();
            Some(ObjectRef::<PythonExecutionPool>::new(&pool).within(&pod.namespace()?))
        })
        .with_config(kube::runtime::controller::Config::default().concurrency(2))
        .run(reconcile, error_policy, ctx)
        .for_each(move |result| {
            if let Err(kube::runtime::controller::Error::QueueError(e)) = result {
                metrics.watch_failed();
                tracing::warn!(error = %e, "a watch of the pools' controller failed; retrying");
            }
            future::ready(())
        })
        .await;
}
