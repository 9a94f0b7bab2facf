//! The sessions' controller: watches PythonSessions and the Pods they own (label-scoped to session Pods), and runs
//! [`super::reconcile::reconcile`] for each change and at each session's next expiry. Its only store is the
//! reflector's of sessions; Pods are mapped to their session by owner reference and not kept.

use std::sync::Arc;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{self, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use pyexec_crds::PythonSession;
use pyexec_crds::session::SESSION_UID_LABEL;

use super::reconcile::{error_policy, reconcile};
use crate::context::Context;

/// Runs the sessions' controller over one namespace, or all of them, until the process stops. Without the
/// PythonSession CRD installed there are no sessions: it says so once and returns.
pub async fn run(client: Client, ctx: Arc<Context>, namespace: Option<String>) {
    let (sessions, pods): (Api<PythonSession>, Api<Pod>) = match namespace.as_deref() {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client, ns)),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    if let Err(kube::Error::Api(e)) = sessions.list(&kube::api::ListParams::default().limit(1)).await
        && e.code == 404
    {
        tracing::info!("the PythonSession CRD is not installed: no sessions");
        return;
    }
    // Only session Pods: executions' and pools' Pods never wake this controller up.
    let labelled = watcher::Config::default().labels(SESSION_UID_LABEL);
    let metrics = ctx.metrics.clone();
    Controller::new(sessions, watcher::Config::default().any_semantic())
        .owns(pods, labelled)
        .with_config(controller::Config::default().concurrency(4))
        .run(reconcile, error_policy, ctx)
        .for_each(move |result| {
            if let Err(controller::Error::QueueError(e)) = result {
                metrics.watch_failed();
                tracing::warn!(error = %e, "a watch of the sessions' controller failed; retrying");
            }
            future::ready(())
        })
        .await;
}
