//! The objects an execution owns, in the cluster: created once, the NetworkPolicy replaced when the install ends,
//! and all of them deleted once the execution finished (Kubernetes would also delete them with the resource,
//! through their owner references). What they hold is decided by [`crate::desired`].
//!
//! Children are named after the resource, so a name may already be taken by an object someone else made (a user
//! who may create PythonExecutions could name one after a Pod or a NetworkPolicy such as `default-deny`). The
//! operator therefore acts only on objects whose controller owner reference is the resource's uid: a create
//! answered 409 reads the existing object and accepts it only when it is ours (a create repeated after a restart),
//! otherwise it is a [`Error::NameConflict`]; the NetworkPolicy is replaced only after that check, under a
//! resourceVersion precondition; and deletes carry a uid precondition.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use pyexec_crds::contract::OPERATOR;
use pyexec_crds::{PythonExecution, PythonExecutionStatus};

use crate::admission::Admitted;
use crate::context::{Context, Error};
use crate::desired::{self, PolicyStage};
use crate::observe::controlled_by;
use crate::status::{CHILDREN_DELETED, set_condition, write_status};

/// What creating the children came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The ConfigMap, NetworkPolicy and Pod exist (created now, or found and ours).
    Done,
    /// Admission (Pod Security, an invalid Pod) refused the Pod: retrying will not change that. The API server's
    /// message.
    PodRefused(String),
    /// A ResourceQuota of the namespace has no room for the Pod now: it is created once others finished. The API
    /// server's message.
    QuotaExceeded(String),
}

/// Whether the API server's refusal of a create is a ResourceQuota's (`403 Forbidden`, or `422`, with
/// `exceeded quota` in its message): retried later, unlike other refusals (RBAC, Pod Security, validation).
pub fn is_quota_refusal(code: u16, message: &str) -> bool {
    (code == 403 || code == 422) && message.contains("exceeded quota")
}

/// Creates the ConfigMap, the NetworkPolicy (open to the package index while the Pod installs) and the Pod, in
/// that order, so that the Pod never runs without its policy. An object of the same name that is not ours stops
/// it with [`Error::NameConflict`], touching nothing.
pub async fn create_children(
    cr: &PythonExecution,
    ctx: &Context,
    admitted: &Admitted,
    nonce: &str,
) -> Result<Created, Error> {
    let namespace = cr.namespace().unwrap_or_default();
    let uid = cr.uid();
    let pp = PostParams { field_manager: Some(OPERATOR.into()), ..PostParams::default() };
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    create_once(&maps, &pp, &desired::config_map(cr, admitted, &ctx.config), uid.as_deref()).await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let stage = if admitted.installs() { PolicyStage::Install } else { PolicyStage::Run };
    create_once(&policies, &pp, &desired::network_policy(cr, &ctx.config, stage), uid.as_deref()).await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match create_once(&pods, &pp, &desired::pod(cr, admitted, &ctx.config, nonce), uid.as_deref()).await {
        Ok(()) => Ok(Created::Done),
        Err(Error::Kube(kube::Error::Api(e))) if is_quota_refusal(e.code, &e.message) => {
            Ok(Created::QuotaExceeded(e.message))
        }
        Err(Error::Kube(kube::Error::Api(e))) if e.code == 403 || e.code == 422 => Ok(Created::PodRefused(e.message)),
        Err(e) => Err(e),
    }
}

/// The kind of a child, for messages.
fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "Pod" => "Pod",
        "ConfigMap" => "ConfigMap",
        "NetworkPolicy" => "NetworkPolicy",
        _ => "object",
    }
}

/// Creates `object`; one that already exists is fine only when `owner_uid` controls it.
async fn create_once<K>(api: &Api<K>, pp: &PostParams, object: &K, owner_uid: Option<&str>) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = object.name_any();
    match api.create(pp, object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(&name).await? {
            Some(existing) if controlled_by(existing.meta(), owner_uid) => Ok(()),
            Some(_) => Err(Error::NameConflict { kind: kind_of::<K>(), name }),
            // Deleted in between: the next reconciliation creates it.
            None => Err(kube::Error::Api(e).into()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Replaces the install stage's NetworkPolicy with the program's (deny-all, or internet-only). Only the
/// execution's own policy is replaced, and only the version that was checked (resourceVersion precondition); a
/// missing one is created.
pub async fn close_network(cr: &PythonExecution, ctx: &Context) -> Result<(), Error> {
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let policy = desired::network_policy(cr, &ctx.config, PolicyStage::Run);
    apply_own(&policies, policy, cr.uid().as_deref()).await
}

/// Makes `object` what the cluster has under its name (created, or applied over the version found), when that is
/// an object `owner_uid` controls; someone else's is a [`Error::NameConflict`], left unchanged. An execution's
/// NetworkPolicy at its next stage, a session's install stage moved to its next Pod.
pub(crate) async fn apply_own<K>(api: &Api<K>, mut object: K, owner_uid: Option<&str>) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = object.name_any();
    match api.get_opt(&name).await? {
        None => {
            let pp = PostParams { field_manager: Some(OPERATOR.into()), ..PostParams::default() };
            create_once(api, &pp, &object, owner_uid).await
        }
        Some(existing) if !controlled_by(existing.meta(), owner_uid) => {
            Err(Error::NameConflict { kind: kind_of::<K>(), name })
        }
        Some(existing) => {
            // Applied with the resourceVersion just checked: if the object changed (or was replaced) since, the
            // API server answers 409 and the next reconciliation looks again.
            object.meta_mut().resource_version = existing.resource_version();
            api.patch(&name, &PatchParams::apply(OPERATOR).force(), &Patch::Apply(&object)).await?;
            Ok(())
        }
    }
}

/// Deletes the Pod, the NetworkPolicy and the ConfigMap that are the execution's (those already gone are fine;
/// an object of the same name that is not its own is left alone), and forgets the Pod's archive stream and log
/// follower.
pub async fn delete_children(cr: &PythonExecution, ctx: &Context) -> Result<(), Error> {
    let name = cr.name_any();
    let namespace = cr.namespace().unwrap_or_default();
    let uid = cr.uid();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    // A warm Pod claimed from a pool has the pool's name for it (recorded in the status at the claim).
    let pod = cr.status.as_ref().and_then(|s| s.pod_name.clone()).unwrap_or_else(|| name.clone());
    delete_own(&pods, &pod, uid.as_deref()).await?;
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    delete_own(&policies, &name, uid.as_deref()).await?;
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    delete_own(&maps, &name, uid.as_deref()).await?;
    if let Some(uid) = uid {
        ctx.streaming().remove_execution(&uid);
    }
    ctx.followers.forget(&ObjectRef::from_obj(cr));
    Ok(())
}

/// Deletes the children of a finished execution and records it in its status (`status`: the terminal one, written
/// already), with the `ChildrenDeleted` condition. A failure is returned: the reconciliation is retried with
/// backoff, and a terminal execution without `ChildrenDeleted=True` is cleaned up by the next one.
pub async fn clean_up(
    cr: &PythonExecution,
    ctx: &Context,
    mut status: PythonExecutionStatus,
    now: &Time,
) -> Result<(), Error> {
    delete_children(cr, ctx).await?;
    set_condition(
        &mut status,
        cr,
        CHILDREN_DELETED,
        true,
        "Deleted",
        "the Pod, NetworkPolicy and ConfigMap are deleted",
        now,
    );
    write_status(cr, ctx, status).await
}

/// Deletes the object `name` if `owner_uid` controls it, with its uid as a precondition (so that an object
/// recreated under the name in between is not deleted).
pub(crate) async fn delete_own<K>(api: &Api<K>, name: &str, owner_uid: Option<&str>) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Some(existing) = api.get_opt(name).await? else { return Ok(()) };
    if !controlled_by(existing.meta(), owner_uid) {
        tracing::warn!(kind = kind_of::<K>(), %name, "not deleting an object of this name that its owner does not control");
        return Ok(());
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions { uid: existing.uid(), resource_version: None }),
        ..DeleteParams::background()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        // Gone, or replaced by another object since it was read (the precondition failed): not ours to delete.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_quota_refusals_are_retried() {
        let quota = "pods \"job\" is forbidden: exceeded quota: compute, requested: limits.cpu=500m, used: limits.cpu=2, limited: limits.cpu=2";
        assert!(is_quota_refusal(403, quota));
        assert!(is_quota_refusal(422, quota));
        assert!(!is_quota_refusal(403, "pods is forbidden: User \"system:serviceaccount:x:y\" cannot create resource"));
        assert!(!is_quota_refusal(403, "violates PodSecurity \"restricted:latest\""));
        assert!(!is_quota_refusal(500, quota));
    }
}
