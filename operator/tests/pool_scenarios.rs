//! Warm pools against the mocked API server: the pool's reconciler keeping its idle Pods, and executions claiming
//! them, driven as the kubelet and the watches would drive them, and checked by the requests made (method, path,
//! body) and what was written to the runner's stdin through attach.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use kube::Api;
use kube::runtime::controller::Action;
use pyexec_core::pod::protocol::{CLAIM_ENV, Claim, FLAG_ON, FRAME_END, FRAME_STDOUT, NONCE_ENV};
use pyexec_crds::PythonExecutionPool;
use pyexec_operator::config::{OperatorConfig, PoolRefill};
use pyexec_operator::context::Context;
use pyexec_operator::logs::LogStore;
use pyexec_operator::pool::{CLAIMED_AT_ANNOTATION, CLAIMED_LABEL, POOL_LABEL};
use pyexec_operator::reconcile::reconcile;
use serde_json::{Value, json};
use support::*;

type Ctx = std::sync::Arc<Context>;

/// An execution of the pool class below: 256 MiB, half a CPU, 100 MiB of disk, no network.
fn fitting() -> Value {
    json!({"source": {"files": [{"name": "main.py", "content": "print('warm')"}]}, "entrypoint": "main.py",
           "stdin": "in", "env": [{"name": "MODE", "value": "fast"}],
           "limits": {"timeoutSeconds": 30, "memoryMB": 256, "cpu": "500m", "diskMB": 100}})
}

fn pool(name: &str, replicas: i32) -> Value {
    json!({"apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecutionPool",
           "metadata": {"name": name, "namespace": NS, "generation": 1},
           "spec": {"replicas": replicas, "pythonVersion": "3.12",
                    "limits": {"memoryMB": 256, "cpu": "500m", "diskMB": 100}}})
}

fn start(config: OperatorConfig) -> (FakeApi, Ctx) {
    let (client, fake) = FakeApi::start();
    fake.serve_attach();
    (fake.clone(), context(client, config, LogStore::default()))
}

async fn reconcile_pool(fake: &FakeApi, ctx: &Ctx, name: &str) -> Action {
    pyexec_operator::pool::reconcile::reconcile(fake.object(POOLS, name), ctx.clone()).await.unwrap()
}

async fn step(fake: &FakeApi, ctx: &Ctx, name: &str) -> Action {
    reconcile(fake.object(EXECUTIONS, name), ctx.clone()).await.unwrap()
}

/// The pool's Pods (idle and claimed) as the API lists them.
async fn pool_pods(ctx: &Ctx, pool: &str) -> Vec<Value> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(ctx.client.clone(), NS);
    let params = kube::api::ListParams::default().labels(&format!("{POOL_LABEL}={pool}"));
    pods.list(&params).await.unwrap().items.iter().map(|p| serde_json::to_value(p).unwrap()).collect()
}

/// The kubelet started the Pod's runner: Running and Ready.
fn make_ready(fake: &FakeApi, pod: &str) {
    fake.set_status(
        PODS,
        pod,
        json!({"phase": "Running", "startTime": k8s_openapi::jiff::Timestamp::now().to_string(),
               "conditions": [{"type": "Ready", "status": "True"}],
               "containerStatuses": [container("python", json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}))]}),
    );
}

fn names(pods: &[Value]) -> Vec<String> {
    pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_owned()).collect()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap()
}

/// A pool of `replicas` ready idle Pods.
async fn filled(replicas: i32) -> (FakeApi, Ctx, Vec<String>) {
    let (fake, ctx) = start(OperatorConfig::default());
    fake.put(POOLS, pool("small", replicas));
    reconcile_pool(&fake, &ctx, "small").await;
    let pods = names(&pool_pods(&ctx, "small").await);
    assert_eq!(pods.len(), replicas as usize);
    for pod in &pods {
        make_ready(&fake, pod);
    }
    reconcile_pool(&fake, &ctx, "small").await;
    (fake, ctx, pods)
}

#[tokio::test]
async fn a_pool_fences_then_fills_with_locked_down_idle_pods_at_the_refill_rate() {
    let config = OperatorConfig { pool_refill: PoolRefill { pods: 2, interval_seconds: 60 }, ..Default::default() };
    let (fake, ctx) = start(config);
    fake.put(POOLS, pool("small", 5));
    let action = reconcile_pool(&fake, &ctx, "small").await;
    assert!(action != Action::await_change() && action != Action::requeue(Duration::from_secs(30)), "{action:?}");

    let posts: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.method == "POST" && !c.path.contains("events.k8s.io"))
        .map(|c| c.path)
        .collect();
    assert_eq!(posts, [CONFIG_MAPS, POLICIES, PODS, PODS], "the runner and the fence exist before any Pod");
    let policy = fake.get(POLICIES, "pyexec-pool-small").unwrap();
    assert_eq!(policy["spec"]["egress"], json!([]), "network none: deny all");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"]["pyexec.io/pool-uid"], "uid-small");
    let pod = &fake.calls_to("POST", PODS)[0].body;
    assert_eq!(pod["metadata"]["generateName"], "small-");
    assert_eq!(pod["metadata"]["labels"][CLAIMED_LABEL], "false");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "PythonExecutionPool");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert!(pod["spec"].get("activeDeadlineSeconds").is_none());
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(env.iter().any(|e| e["name"] == CLAIM_ENV && e["value"] == FLAG_ON), "{env:?}");
    assert_eq!(pod["spec"]["containers"][0]["resources"]["limits"]["memory"], "256Mi");

    let status = fake.get(POOLS, "small").unwrap()["status"].clone();
    assert_eq!((status["replicas"].as_i64(), status["ready"].as_i64()), (Some(2), Some(0)));
    assert_eq!(status["selector"], "pyexec.io/pool=small,pyexec.io/claimed=false");
    assert_eq!(condition(&status, "Ready")["reason"], "RateLimited");

    // Within the interval: no more creations, however often the pool is reconciled.
    fake.clear_calls();
    reconcile_pool(&fake, &ctx, "small").await;
    reconcile_pool(&fake, &ctx, "small").await;
    assert!(fake.calls_to("POST", PODS).is_empty(), "rate-limited");
    assert_eq!(pool_pods(&ctx, "small").await.len(), 2);
}

#[tokio::test]
async fn an_execution_that_fits_claims_an_idle_pod_and_gets_its_program_through_attach() {
    let (fake, ctx, pods) = filled(1).await;
    let idle = &pods[0];
    let before = fake.get(PODS, idle).unwrap();
    fake.put(EXECUTIONS, execution("job", fitting()));
    fake.clear_calls();
    step(&fake, &ctx, "job").await;

    // No Pod, ConfigMap or policy of its own is created for the program: one patch claims the idle Pod.
    assert!(fake.calls_to("POST", PODS).is_empty() && fake.calls_to("POST", CONFIG_MAPS).is_empty());
    let patches = fake.calls_to("PATCH", &format!("{PODS}/{idle}"));
    let claim = &patches[0];
    assert_eq!(claim.code, 200);
    assert_eq!(claim.body["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"], "optimistic");
    assert_eq!(claim.body["metadata"]["labels"][CLAIMED_LABEL], "true");
    assert_eq!(claim.body["metadata"]["ownerReferences"][0]["kind"], "PythonExecution");
    assert_eq!(claim.body["metadata"]["ownerReferences"][0]["uid"], "uid-job");
    assert!(claim.body["spec"]["activeDeadlineSeconds"].as_i64().unwrap() >= 30 + 120);
    let pod = fake.get(PODS, idle).unwrap();
    assert_eq!(pod["metadata"]["ownerReferences"].as_array().unwrap().len(), 1, "the pool no longer controls it");
    assert_eq!(pod["metadata"]["labels"]["pyexec.io/execution"], "uid-job", "its own policy selects it");
    assert_eq!(pod["metadata"]["annotations"]["pyexec.io/gate-opened"], "true");

    // The hand-over: one line, the claim, on the runner's stdin.
    let written = fake.attached(idle, "python");
    assert_eq!(written.len(), 1);
    let line = String::from_utf8(written[0].clone()).unwrap();
    assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
    let claim: Claim = serde_json::from_str(&line).unwrap();
    assert_eq!(claim.run.entrypoint.as_deref(), Some("main.py"));
    assert_eq!(claim.run.timeout_seconds, 30);
    assert_eq!(claim.sources[&claim.run.files.keys().next().unwrap().clone()], "print('warm')");
    assert_eq!((claim.stdin.as_deref(), claim.env["MODE"].as_str()), (Some("in"), "fast"));
    let policy = fake.get(POLICIES, "job").unwrap();
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"]["pyexec.io/execution"], "uid-job");

    let s = fake.get(EXECUTIONS, "job").unwrap()["status"].clone();
    assert_eq!((s["phase"].as_str(), s["podName"].as_str()), (Some("Running"), Some(idle.as_str())));
    assert_eq!(condition(&s, "Accepted")["reason"], "WarmPod", "it records that it ran warm");
    let seconds = |v: &Value| v.as_str().unwrap().parse::<k8s_openapi::jiff::Timestamp>().unwrap().as_second();
    let claimed_at = &pod["metadata"]["annotations"][CLAIMED_AT_ANNOTATION];
    assert_eq!(seconds(&s["startTime"]), seconds(claimed_at), "the run starts at the claim, not the container's start");
    assert!(ctx.metrics.render().contains("pyexec_operator_pool_claims_total{outcome=\"warm\"} 1"));

    // The program ends: collected as today, from the claimed Pod, which is then deleted (never returned).
    let nonce = pod["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == NONCE_ENV)
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.set_log(
        idle,
        "python",
        &format!("{}{}", frame(&nonce, FRAME_STDOUT, b"warm\n"), frame(&nonce, FRAME_END, br#"{"exit":0}"#)),
    );
    fake.set_status(
        PODS,
        idle,
        json!({"phase": "Succeeded", "containerStatuses": [container("python", json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2099-01-01T00:00:00Z"}}))]}),
    );
    fake.clear_calls();
    step(&fake, &ctx, "job").await;
    let s = fake.get(EXECUTIONS, "job").unwrap()["status"].clone();
    assert_eq!((s["phase"].as_str(), s["stdout"].as_str()), (Some("Completed"), Some("warm\n")), "{s}");
    assert!(fake.get(PODS, idle).is_none(), "the claimed Pod goes with its execution's end");
    assert_eq!(fake.calls_to("DELETE", &format!("{PODS}/{idle}")).len(), 1);
}

#[tokio::test]
async fn two_executions_racing_for_one_idle_pod_never_share_it() {
    let (fake, ctx, pods) = filled(1).await;
    let idle = pods[0].clone();
    fake.put(EXECUTIONS, execution("first", fitting()));
    fake.put(EXECUTIONS, execution("second", fitting()));
    // The first claim is held up after both read the same version of the idle Pod: the second claims it first.
    fake.fail_next("PATCH", &format!("{PODS}/{idle}"), 1, Fault::Delay(Duration::from_millis(300)));
    fake.clear_calls();
    let (a, b) = (fake.clone(), fake.clone());
    let (ctx_a, ctx_b) = (ctx.clone(), ctx.clone());
    let first = tokio::spawn(async move { step(&a, &ctx_a, "first").await });
    let second = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        step(&b, &ctx_b, "second").await
    });
    first.await.unwrap();
    second.await.unwrap();

    let claims: Vec<u16> = fake
        .calls_to("PATCH", &format!("{PODS}/{idle}"))
        .iter()
        .filter(|c| c.body["metadata"]["labels"][CLAIMED_LABEL] == "true")
        .map(|c| c.code)
        .collect();
    let mut sorted = claims.clone();
    sorted.sort();
    assert_eq!(sorted, [200, 409], "exactly one claim of the Pod wins: {claims:?}");
    let owner = fake.get(PODS, &idle).unwrap()["metadata"]["ownerReferences"][0]["name"].clone();
    assert_eq!(owner, "second");
    // The loser ran cold, in its own Pod.
    let first = fake.get(EXECUTIONS, "first").unwrap()["status"].clone();
    assert_eq!((first["phase"].as_str(), first["podName"].as_str()), (Some("Pending"), Some("first")));
    assert_eq!(fake.get(PODS, "first").unwrap()["metadata"]["ownerReferences"][0]["name"], "first");
    assert_eq!(fake.attached(&idle, "python").len(), 1, "handed over once, to the winner");
    let metrics = ctx.metrics.render();
    for outcome in ["warm", "conflict", "cold-no-idle"] {
        assert!(
            metrics.contains(&format!("pyexec_operator_pool_claims_total{{outcome=\"{outcome}\"}} 1")),
            "{metrics}"
        );
    }
}

#[tokio::test]
async fn a_spec_that_fits_no_pool_runs_cold_exactly_as_before() {
    let (fake, ctx, pods) = filled(1).await;
    let mut spec = fitting();
    spec["limits"]["memoryMB"] = json!(512);
    fake.put(EXECUTIONS, execution("big", spec));
    let mut needs = fitting();
    needs["source"] = json!({"configMap": {"name": "code"}});
    fake.put(
        CONFIG_MAPS,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "code"}, "data": {"main.py": "print(1)"}}),
    );
    fake.put(EXECUTIONS, execution("mapped", needs));
    fake.clear_calls();
    step(&fake, &ctx, "big").await;
    step(&fake, &ctx, "mapped").await;
    for name in ["big", "mapped"] {
        let pod = fake.get(PODS, name).unwrap();
        assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], name);
        assert!(fake.get(CONFIG_MAPS, name).is_some() && fake.get(POLICIES, name).is_some());
        let s = fake.get(EXECUTIONS, name).unwrap()["status"].clone();
        assert_eq!(condition(&s, "Accepted")["reason"], "Accepted");
    }
    assert!(fake.calls_to("PATCH", &format!("{PODS}/{}", pods[0])).is_empty(), "the idle Pod is untouched");
    assert!(fake.attached(&pods[0], "python").is_empty());
    assert!(ctx.metrics.render().contains("pyexec_operator_pool_claims_total{outcome=\"cold-no-pool\"} 2"));
}

#[tokio::test]
async fn scaling_down_deletes_idle_pods_and_never_claimed_ones() {
    let (fake, ctx, pods) = filled(3).await;
    fake.put(EXECUTIONS, execution("job", fitting()));
    step(&fake, &ctx, "job").await;
    let claimed = fake.get(EXECUTIONS, "job").unwrap()["status"]["podName"].as_str().unwrap().to_owned();
    assert!(pods.contains(&claimed));

    // Scaled to zero through the scale subresource (as `kubectl scale` or an HPA would).
    let api: Api<PythonExecutionPool> = Api::namespaced(ctx.client.clone(), NS);
    let scale = api.get_scale("small").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("pyexec.io/pool=small,pyexec.io/claimed=false"));
    api.patch_scale("small", &Default::default(), &kube::api::Patch::Merge(json!({"spec": {"replicas": 0}})))
        .await
        .unwrap();
    fake.clear_calls();
    reconcile_pool(&fake, &ctx, "small").await;

    let deleted: Vec<String> =
        fake.calls_to("DELETE", PODS).iter().map(|c| c.path.rsplit('/').next().unwrap().to_owned()).collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert!(!deleted.contains(&claimed), "a claimed Pod belongs to its execution");
    for call in fake.calls_to("DELETE", PODS) {
        assert!(call.body["preconditions"]["resourceVersion"].is_string(), "only the idle version read: {call:?}");
    }
    assert!(fake.get(PODS, &claimed).is_some());
    assert!(fake.calls_to("POST", PODS).is_empty());
    let status = fake.get(POOLS, "small").unwrap()["status"].clone();
    assert_eq!((status["replicas"].as_i64(), status["claimed"].as_i64()), (Some(0), Some(1)));
    assert_eq!(api.get_scale("small").await.unwrap().status.unwrap().replicas, 0);
}

#[tokio::test]
async fn a_deleted_pools_idle_pods_go_with_it_and_claimed_ones_run_on() {
    let (fake, ctx, pods) = filled(2).await;
    fake.put(EXECUTIONS, execution("job", fitting()));
    step(&fake, &ctx, "job").await;
    let claimed = fake.get(EXECUTIONS, "job").unwrap()["status"]["podName"].as_str().unwrap().to_owned();
    let idle: Vec<&String> = pods.iter().filter(|p| **p != claimed).collect();

    fake.delete(POOLS, "small");
    assert!(fake.get(PODS, idle[0]).is_none(), "owned by the pool: collected with it");
    assert!(fake.get(CONFIG_MAPS, "pyexec-pool-small").is_none() && fake.get(POLICIES, "pyexec-pool-small").is_none());
    assert!(fake.get(PODS, &claimed).is_some(), "owned by its execution");
    assert!(fake.get(POLICIES, "job").is_some(), "still fenced by the execution's own policy");

    // The execution goes on as usual.
    fake.clear_calls();
    step(&fake, &ctx, "job").await;
    assert_eq!(fake.get(EXECUTIONS, "job").unwrap()["status"]["phase"], "Running");
    assert!(fake.calls_to("POST", PODS).is_empty() && fake.attached(&claimed, "python").len() == 1);
}

#[tokio::test]
async fn pods_that_die_while_idle_are_replaced() {
    let (fake, ctx, pods) = filled(2).await;
    fake.set_status(
        PODS,
        &pods[0],
        json!({"phase": "Failed", "containerStatuses": [container("python", json!({"terminated": {"exitCode": 137, "reason": "Error"}}))]}),
    );
    fake.clear_calls();
    reconcile_pool(&fake, &ctx, "small").await;
    let deletes = fake.calls_to("DELETE", &format!("{PODS}/{}", pods[0]));
    assert_eq!(
        (deletes.len(), deletes[0].body["preconditions"]["uid"].as_str()),
        (1, Some(format!("uid-{}", pods[0]).as_str()))
    );
    assert_eq!(fake.calls_to("POST", PODS).len(), 1, "one replacement");
    assert!(fake.get(PODS, &pods[1]).is_some(), "the live one stays");

    // An execution never claims an idle Pod that is not ready (its runner has not started).
    let fresh = fake.calls_to("POST", PODS)[0].clone();
    assert_eq!(fresh.code, 201);
    fake.set_status(PODS, &pods[1], json!({"phase": "Pending"}));
    fake.put(EXECUTIONS, execution("job", fitting()));
    step(&fake, &ctx, "job").await;
    assert_eq!(fake.get(EXECUTIONS, "job").unwrap()["status"]["podName"], "job", "nothing ready: cold");
    assert!(ctx.metrics.render().contains("pyexec_operator_pool_claims_total{outcome=\"cold-no-idle\"} 1"));
}

/// The claim patches sent to a Pod (those labelling it claimed), with the codes they were answered.
fn claim_patches(fake: &FakeApi, pod: &str) -> Vec<u16> {
    fake.calls_to("PATCH", &format!("{PODS}/{pod}"))
        .iter()
        .filter(|c| c.path == format!("{PODS}/{pod}") && c.body["metadata"]["labels"][CLAIMED_LABEL] == "true")
        .map(|c| c.code)
        .collect()
}

/// An operator that stops after its claim of an idle Pod went through, before the execution's status said so (the
/// hand-over and the status write both failed): returns the fake, a new operator's context, and the claimed Pod.
async fn claimed_then_restarted(replicas: i32) -> (FakeApi, Ctx, String) {
    let (fake, ctx, _) = filled(replicas).await;
    fake.put(EXECUTIONS, execution("job", fitting()));
    fake.clear_calls();
    let attach = |c: &pyexec_testkit::kube::Call| c.path.ends_with("/attach");
    // Every attach and the execution's status write fail: the operator got exactly as far as its claim.
    for pod in pool_pods(&ctx, "small").await {
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        fake.fail_next("", &format!("{PODS}/{name}/attach"), 1, Fault::Status(500));
    }
    fake.fail_next("PATCH", &format!("{EXECUTIONS}/job/status"), 1, Fault::Status(500));
    let failed = reconcile(fake.object(EXECUTIONS, "job"), ctx.clone()).await;
    assert!(failed.is_err(), "the status write failed: {failed:?}");
    let claimed: Vec<String> = fake
        .calls_to("PATCH", PODS)
        .iter()
        .filter(|c| c.code == 200 && c.body["metadata"]["labels"][CLAIMED_LABEL] == "true")
        .map(|c| c.path.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(claimed.len(), 1, "one claim went through");
    assert!(fake.calls().iter().filter(|c| attach(c)).all(|c| c.code == 500), "nothing was handed over");
    let status = fake.get(EXECUTIONS, "job").unwrap()["status"].clone();
    assert!(status.get("podName").is_none(), "the status does not know of the claim: {status}");
    let pod = fake.get(PODS, &claimed[0]).unwrap();
    assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "uid-job");
    // A new operator: nothing remembered from the first one.
    let restarted = context(ctx.client.clone(), OperatorConfig::default(), LogStore::default());
    fake.clear_calls();
    (fake, restarted, claimed[0].clone())
}

/// The restarted operator ran the execution in the Pod claimed before it stopped: no second claim, no cold Pod,
/// the claim handed over once, the status `Running` there with reason `WarmPod`.
fn adopted(fake: &FakeApi, pods_before: &[String], claimed: &str) {
    for pod in pods_before {
        assert!(claim_patches(fake, pod).is_empty(), "no second claim ({pod})");
    }
    assert!(fake.calls_to("POST", PODS).is_empty(), "no cold Pod");
    assert!(fake.get(PODS, "job").is_none() && fake.get(CONFIG_MAPS, "job").is_none());
    let written = fake.attached(claimed, "python");
    assert_eq!(written.len(), 1, "handed over once");
    let claim: Claim = serde_json::from_slice(&written[0]).unwrap();
    assert_eq!(claim.sources.values().next().map(String::as_str), Some("print('warm')"));
    let pod = fake.get(PODS, claimed).unwrap();
    assert_eq!(pod["metadata"]["annotations"]["pyexec.io/gate-opened"], "true");
    let s = fake.get(EXECUTIONS, "job").unwrap()["status"].clone();
    assert_eq!((s["phase"].as_str(), s["podName"].as_str()), (Some("Running"), Some(claimed)), "{s}");
    assert_eq!(condition(&s, "Accepted")["reason"], "WarmPod");
    assert!(fake.get(POLICIES, "job").is_some(), "its own fence");
}

#[tokio::test]
async fn after_a_restart_between_the_claim_and_the_status_the_claimed_pod_is_adopted() {
    let (fake, ctx, claimed) = claimed_then_restarted(2).await;
    let pods = names(&pool_pods(&ctx, "small").await);
    assert_eq!(pods.len(), 2, "the other idle Pod is still there to be claimed by mistake");
    let action = step(&fake, &ctx, "job").await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30)), "handed over: next look at the timeout");
    adopted(&fake, &pods, &claimed);
    // The new operator found it by its labels, in one list call, without claiming anything.
    let lists: Vec<String> = fake.calls_to("GET", PODS).iter().map(|c| c.query.clone()).collect();
    assert!(lists.iter().any(|q| q.contains("uid-job")), "{lists:?}");
    assert!(!ctx.metrics.render().contains("outcome=\"warm\""), "an adoption is not a second claim");
}

#[tokio::test]
async fn after_a_restart_the_claimed_pod_is_adopted_even_when_its_pool_is_gone() {
    let (fake, ctx, claimed) = claimed_then_restarted(2).await;
    let pods = names(&pool_pods(&ctx, "small").await);
    // While the operator was down, the pool was deleted: its idle Pod went with it, the claimed one is the
    // execution's.
    fake.delete(POOLS, "small");
    assert!(fake.get(PODS, &claimed).is_some());
    fake.clear_calls();
    step(&fake, &ctx, "job").await;
    adopted(&fake, &pods, &claimed);
}

#[tokio::test]
async fn a_hand_over_that_fails_once_is_retried_and_the_execution_runs_warm() {
    let (fake, ctx, pods) = filled(2).await;
    fake.put(EXECUTIONS, execution("job", fitting()));
    fake.clear_calls();
    for pod in &pods {
        fake.fail_next("", &format!("{PODS}/{pod}/attach"), 1, Fault::Status(500));
    }
    let action = step(&fake, &ctx, "job").await;
    let s = fake.get(EXECUTIONS, "job").unwrap()["status"].clone();
    let claimed = s["podName"].as_str().unwrap().to_owned();
    assert!(pods.contains(&claimed), "{s}");
    assert_eq!(claim_patches(&fake, &claimed), [200]);
    let attaches = fake.calls_matching("", &format!("{claimed}/attach"));
    assert_eq!(attaches.iter().map(|c| c.code).collect::<Vec<_>>(), [500], "one attempt, failed");
    assert!(fake.attached(&claimed, "python").is_empty());
    assert!(fake.get(PODS, &claimed).unwrap()["metadata"]["annotations"].get("pyexec.io/gate-opened").is_none());
    assert_eq!(s["phase"], "Running");
    assert_eq!(condition(&s, "Accepted")["reason"], "WarmPod");
    let started = condition(&s, "Started");
    assert_eq!((started["status"].as_str(), started["reason"].as_str()), (Some("False"), Some("HandOverPending")));
    assert_eq!(action, Action::requeue(Duration::from_secs(2)), "not handed over yet: look again soon");

    // The retry: the claim goes through attach, nothing is claimed or created again.
    fake.clear_calls();
    let action = step(&fake, &ctx, "job").await;
    let written = fake.attached(&claimed, "python");
    assert_eq!(written.len(), 1);
    let claim: Claim = serde_json::from_slice(&written[0]).unwrap();
    assert_eq!((claim.run.timeout_seconds, claim.stdin.as_deref()), (30, Some("in")));
    assert_eq!(fake.get(PODS, &claimed).unwrap()["metadata"]["annotations"]["pyexec.io/gate-opened"], "true");
    assert!(pods.iter().all(|p| claim_patches(&fake, p).is_empty()), "no second claim");
    assert!(fake.calls_to("POST", PODS).is_empty());
    let s = fake.get(EXECUTIONS, "job").unwrap()["status"].clone();
    assert_eq!((s["phase"].as_str(), s["podName"].as_str()), (Some("Running"), Some(claimed.as_str())));
    assert_eq!(condition(&s, "Accepted")["reason"], "WarmPod", "it still ran warm");
    let started = condition(&s, "Started");
    assert_eq!((started["status"].as_str(), started["reason"].as_str()), (Some("True"), Some("Running")));
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    // A third look sends nothing more.
    fake.clear_calls();
    step(&fake, &ctx, "job").await;
    assert_eq!(fake.attached(&claimed, "python").len(), 1);
}

/// A claim whose hand-over failed, and whose Pod then went away: the execution's status names the Pod.
async fn claimed_but_not_handed_over() -> (FakeApi, Ctx, String) {
    let (fake, ctx, pods) = filled(1).await;
    fake.put(EXECUTIONS, execution("job", fitting()));
    fake.fail_next("", &format!("{PODS}/{}/attach", pods[0]), 1, Fault::Status(500));
    step(&fake, &ctx, "job").await;
    assert_eq!(fake.get(EXECUTIONS, "job").unwrap()["status"]["podName"], pods[0].as_str());
    assert!(fake.attached(&pods[0], "python").is_empty());
    (fake, ctx, pods[0].clone())
}

#[tokio::test]
async fn a_claimed_pod_that_dies_before_the_hand_over_fails_the_execution_saying_nothing_ran() {
    let (fake, ctx, claimed) = claimed_but_not_handed_over().await;
    // The kubelet evicts it (the node ran short of memory) before the retry: the runner never got its claim.
    fake.set_status(
        PODS,
        &claimed,
        json!({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory.",
               "containerStatuses": [container("python", json!({"terminated": {"exitCode": 137, "reason": "Error",
                   "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2099-01-01T00:00:00Z"}}))]}),
    );
    fake.clear_calls();
    step(&fake, &ctx, "job").await;
    let s = fake.get(EXECUTIONS, "job").unwrap()["status"].clone();
    assert_eq!(s["phase"], "Failed", "{s}");
    let error = s["error"].as_str().unwrap();
    assert!(error.contains(&claimed) && error.contains("did not run") && error.contains("Evicted"), "{error}");
    assert!(s.get("exitCode").is_none_or(|c| c != 137), "the container's exit code is not the program's: {s}");
    assert_eq!(condition(&s, "Finished")["reason"], "PodLost");
    assert!(fake.attached(&claimed, "python").is_empty(), "nothing is sent to a dead Pod");
    assert!(fake.calls_to("POST", PODS).is_empty(), "a claimed Pod is never replaced by another for the same run");
    assert!(fake.get(PODS, &claimed).is_none(), "the dead Pod is deleted with the execution's other children");
}

#[tokio::test]
async fn a_claimed_pod_deleted_before_the_hand_over_fails_the_execution_as_a_lost_pod() {
    let (fake, ctx, claimed) = claimed_but_not_handed_over().await;
    fake.delete(PODS, &claimed);
    fake.clear_calls();
    step(&fake, &ctx, "job").await;
    let s = fake.get(EXECUTIONS, "job").unwrap()["status"].clone();
    assert_eq!(s["phase"], "Failed", "{s}");
    assert_eq!(condition(&s, "Finished")["reason"], "PodLost");
    assert!(s["error"].as_str().unwrap().contains("deleted"), "{s}");
    assert!(fake.calls_to("POST", PODS).is_empty() && fake.calls_matching("", "/attach").is_empty());
}

#[test]
fn the_crd_reference_names_what_a_warm_execution_shows() {
    let reference = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/crd-reference.md")).unwrap();
    let warm = pyexec_operator::pool::WARM_REASON;
    assert!(reference.contains(&format!("`Accepted=True` with reason `{warm}`")), "docs/crd-reference.md");
    assert!(reference.contains("## PythonExecutionPool"));
}
