//! The pool's reconciler: level-triggered, like the execution's. Each call reads the pool's Pods (idle and claimed,
//! by the pool's label) and takes the next step: make sure the ConfigMap and NetworkPolicy exist (before any Pod),
//! delete the idle Pods that died (their runner ended: a claim would fail), delete the surplus idle Pods when the
//! pool was scaled down (never a claimed one: they belong to their executions), create the missing ones within the
//! refill rate ([`super::refill`]), and write the status the scale subresource reads.
//!
//! A deleted pool needs nothing: Kubernetes' garbage collector deletes what it still controls (its ConfigMap,
//! NetworkPolicy and idle Pods), while the claimed Pods are their executions' and stay with them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use pyexec_core::pod::protocol::MAIN_CONTAINER;
use pyexec_crds::contract::OPERATOR;
use pyexec_crds::{PythonExecutionPool, PythonExecutionPoolStatus};

use super::claim::{is_idle, is_ready};
use super::desired::{config_map, idle_pod, idle_selector, network_policy, owned_name};
use super::fit::PoolClass;
use super::{CLAIMED_LABEL, POOL_LABEL};
use crate::context::{Context, Error};
use crate::observe::controlled_by;

/// How often a pool is looked at without any change (a missed watch event costs at most this).
pub const RESYNC: Duration = Duration::from_secs(30);
/// The longest pool name: it is a label value on the pool's Pods.
pub const MAX_NAME: usize = 63;

/// What the reconciliation found and did, for the status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    idle: usize,
    ready: usize,
    claimed: usize,
}

/// Reconciles one pool.
#[tracing::instrument(skip(pool, ctx), fields(pool = %pool.name_any(), namespace = %pool.namespace().unwrap_or_default()))]
pub async fn reconcile(pool: Arc<PythonExecutionPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    if pool.meta().deletion_timestamp.is_some() {
        ctx.metrics.forget_pool(&namespace, &name);
        ctx.refill.forget(&pool.uid().unwrap_or_default());
        return Ok(Action::await_change());
    }
    let class = match PoolClass::of(&pool, &ctx.config) {
        Ok(class) if name.len() <= MAX_NAME => class,
        Ok(_) => {
            let message = format!("the pool's name is longer than {MAX_NAME} characters (it labels its Pods)");
            write_status(&pool, &ctx, Counts::default(), ready_condition(&pool, false, "Invalid", &message)).await?;
            return Ok(Action::await_change());
        }
        Err(refusal) => {
            let message = format!("{}: {}", refusal.reason, refusal.message);
            write_status(&pool, &ctx, Counts::default(), ready_condition(&pool, false, "Invalid", &message)).await?;
            return Ok(Action::await_change());
        }
    };
    let uid = pool.uid();
    let pp = PostParams { field_manager: Some(OPERATOR.into()), ..PostParams::default() };
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    // Both before any Pod: a Pod never runs without its runner, nor without its policy.
    let conflict = match ensure(&maps, &pp, &config_map(&pool), uid.as_deref()).await? {
        Some(kind) => Some(kind),
        None => ensure(&policies, &pp, &network_policy(&pool, &class, &ctx.config), uid.as_deref()).await?,
    };
    if let Some(kind) = conflict {
        let message = format!("a {kind} named {:?} exists and is not this pool's", owned_name(&pool));
        write_status(&pool, &ctx, Counts::default(), ready_condition(&pool, false, "NameConflict", &message)).await?;
        return Ok(Action::requeue(RESYNC));
    }

    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let listed = pods.list(&ListParams::default().labels(&format!("{POOL_LABEL}={name}"))).await?.items;
    let claimed = listed.iter().filter(|p| p.labels().get(CLAIMED_LABEL).map(String::as_str) == Some("true")).count();
    let (dead, mut idle): (Vec<Pod>, Vec<Pod>) =
        listed.into_iter().filter(|p| is_idle(p, uid.as_deref())).partition(has_ended);
    for pod in &dead {
        tracing::info!(pod = %pod.name_any(), "an idle Pod's runner ended; replacing it");
        delete_idle(&pods, pod).await?;
    }
    let wanted = usize::try_from(pool.spec.replicas).unwrap_or(0);
    if idle.len() > wanted {
        // Scaled down: the Pods that are not ready yet go first, then the youngest.
        idle.sort_by_key(|p| (is_ready(p), std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0))));
        for pod in idle.drain(..idle.len() - wanted) {
            delete_idle(&pods, &pod).await?;
        }
    }
    let missing = wanted - idle.len().min(wanted);
    let (granted, next) = ctx.refill.take(&uid.clone().unwrap_or_default(), missing, Instant::now());
    let mut created = 0;
    for _ in 0..granted {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        match pods.create(&pp, &idle_pod(&pool, &class, &ctx.config, &nonce)).await {
            Ok(_) => created += 1,
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                // A quota or Pod Security refusal: the pool stays short and says why; it is tried again later.
                let message = format!("creating an idle Pod was refused: {}", e.message);
                let counts = counts(&idle, created, claimed);
                write_status(&pool, &ctx, counts, ready_condition(&pool, false, "PodRefused", &message)).await?;
                return Ok(Action::requeue(RESYNC));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let counts = counts(&idle, created, claimed);
    ctx.metrics.pool_sizes(&namespace, &name, counts.idle, counts.claimed);
    let condition = match (counts.ready >= wanted, next) {
        (true, _) => ready_condition(&pool, true, "Ready", &format!("{wanted} idle Pods are ready")),
        (false, Some(_)) => ready_condition(
            &pool,
            false,
            "RateLimited",
            &format!("{} of {wanted} idle Pods exist; the rest are created at poolRefill's rate", counts.idle),
        ),
        (false, None) => {
            ready_condition(&pool, false, "Filling", &format!("{} of {wanted} idle Pods are ready", counts.ready))
        }
    };
    write_status(&pool, &ctx, counts, condition).await?;
    Ok(Action::requeue(next.map_or(RESYNC, |wait| wait.max(Duration::from_millis(100)))))
}

/// What the status says: idle Pods existing (`created` just now, not ready yet), ready, and claimed.
fn counts(idle: &[Pod], created: usize, claimed: usize) -> Counts {
    Counts { idle: idle.len() + created, ready: idle.iter().filter(|p| is_ready(p)).count(), claimed }
}

/// Whether an idle Pod can no longer be claimed: it finished or failed, or its runner ended (a warm runner ends
/// only after a claim, so an idle one that did died).
fn has_ended(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    matches!(status.phase.as_deref(), Some("Failed" | "Succeeded"))
        || status
            .container_statuses
            .iter()
            .flatten()
            .any(|c| c.name == MAIN_CONTAINER && c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
}

/// Deletes an idle Pod, only if it is still idle at the version read (a claim in between wins: 409, and the Pod is
/// left to its execution).
async fn delete_idle(pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: pod.resource_version() }),
        ..DeleteParams::background()
    };
    match pods.delete(&pod.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates `object` unless the pool's exists; the kind of an object of that name that is not the pool's.
async fn ensure<K>(api: &Api<K>, pp: &PostParams, object: &K, owner: Option<&str>) -> Result<Option<String>, Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    if let Some(existing) = api.get_opt(&object.name_any()).await? {
        return Ok((!controlled_by(existing.meta(), owner)).then(|| K::kind(&()).into_owned()));
    }
    match api.create(pp, object).await {
        Ok(_) => Ok(None),
        // Created in between (a second reconciliation): looked at again next time.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn ready_condition(pool: &PythonExecutionPool, ready: bool, reason: &str, message: &str) -> Condition {
    let now = Time(jiff::Timestamp::now());
    let previous = pool.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let status = if ready { "True" } else { "False" };
    let last_transition_time = match previous {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now,
    };
    Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time,
        observed_generation: pool.meta().generation,
    }
}

/// Writes the status when it changed.
async fn write_status(
    pool: &PythonExecutionPool,
    ctx: &Context,
    counts: Counts,
    ready: Condition,
) -> Result<(), Error> {
    let clamp = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let status = PythonExecutionPoolStatus {
        replicas: clamp(counts.idle),
        ready: clamp(counts.ready),
        claimed: clamp(counts.claimed),
        selector: idle_selector(pool),
        conditions: vec![ready],
        observed_generation: pool.meta().generation,
    };
    if pool.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let api: Api<PythonExecutionPool> = Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    let patch = serde_json::json!({"status": status});
    api.patch_status(&pool.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

/// What failed pool reconciliations do: count, and look again after a short delay.
pub fn error_policy(pool: Arc<PythonExecutionPool>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(error.kind());
    tracing::warn!(pool = %pool.name_any(), namespace = %pool.namespace().unwrap_or_default(), %error, "pool reconcile failed");
    Action::requeue(Duration::from_secs(5))
}
