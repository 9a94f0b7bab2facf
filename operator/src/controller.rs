//! The controller: watches PythonExecutions (and the Pods, NetworkPolicies and ConfigMaps they own) and runs
//! [`crate::reconcile::reconcile`] for each change, until the process is asked to stop.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use kube::{Api, Client};
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::{OPERATOR, managed_by_selector};

use crate::context::Context;
use crate::reconcile::{error_policy, reconcile};

/// Runs the controller over one namespace, or all of them, until SIGTERM/SIGINT.
pub async fn run(client: Client, ctx: Arc<Context>, namespace: Option<&str>) {
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
    // Only the operator's own children are watched (label-scoped), so unrelated Pods cost nothing.
    let children = watcher::Config::default().labels(&managed_by_selector(OPERATOR));
    Controller::new(api::<PythonExecution>(&client, namespace), watcher::Config::default().any_semantic())
        .owns(api::<Pod>(&client, namespace), children.clone())
        .owns(api::<NetworkPolicy>(&client, namespace), children.clone())
        .owns(api::<ConfigMap>(&client, namespace), children)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile event");
            }
            futures::future::ready(())
        })
        .await;
}
