//! The objects an execution owns, in the cluster: created once (their names are fixed, so a create repeated after a
//! restart finds the first one, and a 409 is success), the NetworkPolicy replaced when the install ends, and all of
//! them deleted once the execution finished (Kubernetes would also delete them with the resource, through their
//! owner references). What they hold is decided by [`crate::desired`].

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::OPERATOR;

use crate::admission::Admitted;
use crate::context::{Context, Error};
use crate::desired::{self, PolicyStage};

/// What creating the children came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The ConfigMap, NetworkPolicy and Pod exist (created now, or found).
    Done,
    /// Admission (Pod Security, quotas) refused the Pod: retrying will not change that. The API server's message.
    PodRefused(String),
}

/// Creates the ConfigMap, the NetworkPolicy (open to the package index while the Pod installs) and the Pod, in
/// that order, so that the Pod never runs without its policy.
pub async fn create_children(
    cr: &PythonExecution,
    ctx: &Context,
    admitted: &Admitted,
    nonce: &str,
) -> Result<Created, Error> {
    let namespace = cr.namespace().unwrap_or_default();
    let pp = PostParams { field_manager: Some(OPERATOR.into()), ..PostParams::default() };
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    create_once(&maps, &pp, &desired::config_map(cr, admitted, &ctx.config)).await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let stage = if admitted.installs() { PolicyStage::Install } else { PolicyStage::Run };
    create_once(&policies, &pp, &desired::network_policy(cr, &ctx.config, stage)).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match pods.create(&pp, &desired::pod(cr, admitted, &ctx.config, nonce)).await {
        Ok(_) => Ok(Created::Done),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Created::Done),
        Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => Ok(Created::PodRefused(e.message)),
        Err(e) => Err(e.into()),
    }
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

/// Replaces the install stage's NetworkPolicy with the program's (deny-all, or internet-only).
pub async fn close_network(cr: &PythonExecution, ctx: &Context) -> Result<(), Error> {
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let policy = desired::network_policy(cr, &ctx.config, PolicyStage::Run);
    policies.patch(&cr.name_any(), &PatchParams::apply(OPERATOR).force(), &Patch::Apply(&policy)).await?;
    Ok(())
}

/// Deletes the Pod, the NetworkPolicy and the ConfigMap (those already gone are fine), and forgets the Pod's
/// archive stream.
pub async fn delete_children(cr: &PythonExecution, ctx: &Context) -> Result<(), Error> {
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
