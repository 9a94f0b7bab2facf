//! The reconciler against a mocked API server (kube's `tower-test` service with an in-memory store): each test is
//! one scenario of an execution's life, driven as the kubelet and the watch would drive it, and checked by the
//! status written and the requests made.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use kube::runtime::controller::Action;
use pyexec_core::pod::protocol::{
    FLAG_ON, FRAME_END, FRAME_FILES, FRAME_START, FRAME_STDERR, FRAME_STDOUT, GATE_ENV, NONCE_ENV,
};
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::KILL_ANNOTATION;
use pyexec_operator::config::{LogsConfig, OperatorConfig};
use pyexec_operator::context::{Context, Error};
use pyexec_operator::logs::LogStore;
use pyexec_operator::observe::GATE_ANNOTATION;
use pyexec_operator::reconcile::{error_policy, reconcile};
use pyexec_operator::server::Readiness;
use serde_json::{Value, json};
use support::*;

/// An operator configuration with a package index reachable at 10.0.0.9 during installs.
fn with_package_index() -> OperatorConfig {
    serde_yaml_ng::from_str(
        "packageIndex: {url: 'https://pypi.internal/simple', egressTo: [{ipBlock: {cidr: 10.0.0.9/32}}]}",
    )
    .unwrap()
}

fn hello() -> Value {
    json!({"source": {"files": [{"name": "main.py", "content": "print('hi')"}]}, "entrypoint": "main.py",
           "limits": {"timeoutSeconds": 30, "memoryMB": 128, "cpu": "500m", "diskMB": 50}})
}

async fn step(fake: &FakeApi, ctx: &std::sync::Arc<Context>, name: &str) -> Action {
    reconcile(fake.object(EXECUTIONS, name), ctx.clone()).await.unwrap()
}

fn status(fake: &FakeApi, name: &str) -> Value {
    fake.get(EXECUTIONS, name).unwrap()["status"].clone()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == type_).unwrap()
}

fn nonce(fake: &FakeApi, pod: &str) -> String {
    let pod = fake.get(PODS, pod).unwrap();
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap().clone();
    env.iter().find(|e| e["name"] == NONCE_ENV).unwrap()["value"].as_str().unwrap().to_owned()
}

/// Starts an execution and lets the "kubelet" run its Pod.
async fn started(spec: Value) -> (FakeApi, std::sync::Arc<Context>) {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", spec));
    step(&fake, &ctx, "job").await;
    fake.set_status(
        PODS,
        "job",
        json!({"phase": "Running", "startTime": "2026-01-01T00:00:01Z",
        "containerStatuses": [container("python", json!({"running": {"startedAt": "2026-01-01T00:00:02Z"}}))]}),
    );
    step(&fake, &ctx, "job").await;
    (fake, ctx)
}

/// The kubelet reports the main container ended (`phase`, exit `code`, `reason`) after writing `log`; the operator
/// reconciles; the status it wrote.
async fn ends(fake: &FakeApi, ctx: &std::sync::Arc<Context>, phase: &str, code: i32, reason: &str, log: &str) -> Value {
    fake.set_log("job", "python", log);
    fake.set_status(
        PODS,
        "job",
        json!({"phase": phase, "containerStatuses": [container("python", terminated(code, reason))]}),
    );
    step(fake, ctx, "job").await;
    status(fake, "job")
}

fn terminated(code: i32, reason: &str) -> Value {
    json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": "2026-01-01T00:00:02Z", "finishedAt": "2026-01-01T00:00:05Z"}})
}

#[tokio::test]
async fn create_makes_the_children_and_reports_pending() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", hello()));
    let action = step(&fake, &ctx, "job").await;
    assert_ne!(action, Action::await_change(), "a pending execution is looked at again");

    let pod = fake.get(PODS, "job").unwrap();
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "PythonExecution");
    assert_eq!(pod["metadata"]["labels"]["pyexec.io/execution"], "uid-job");
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    let policy = fake.get(POLICIES, "job").unwrap();
    assert_eq!(policy["spec"]["egress"], json!([]), "network none: deny all");
    assert_eq!(policy["metadata"]["annotations"]["pyexec.io/network-stage"], "run");
    let map = fake.get(CONFIG_MAPS, "job").unwrap();
    assert_eq!(map["data"]["src-0"], "print('hi')");

    let s = status(&fake, "job");
    assert_eq!((s["phase"].as_str(), s["podName"].as_str()), (Some("Pending"), Some("job")));
    assert_eq!(condition(&s, "Accepted")["status"], "True");
    assert_eq!(s["observedGeneration"], 1);
    assert_eq!(fake.calls_to("POST", "/apis/events.k8s.io/").len(), 1, "an Event says the Pod was created");
}

#[tokio::test]
async fn a_restarted_operator_adopts_the_existing_pod() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client.clone(), OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", hello()));
    step(&fake, &ctx, "job").await;
    let first = fake.get(PODS, "job").unwrap();

    // A new operator process (empty memory) sees the same objects.
    let restarted = context(client.clone(), OperatorConfig::default(), LogStore::default());
    fake.clear_calls();
    step(&fake, &restarted, "job").await;
    assert!(fake.calls_to("POST", PODS).is_empty(), "no second Pod");
    assert_eq!(fake.get(PODS, "job").unwrap()["metadata"]["uid"], first["metadata"]["uid"]);

    // Crashed after creating the ConfigMap and NetworkPolicy but before the Pod and the status: creating again
    // finds the first two (409) and creates the Pod once.
    let mut cr = fake.get(EXECUTIONS, "job").unwrap();
    cr.as_object_mut().unwrap().remove("status");
    fake.put(EXECUTIONS, cr);
    fake.delete(PODS, "job");
    fake.clear_calls();
    step(&fake, &restarted, "job").await;
    assert_eq!(fake.calls_to("POST", PODS).len(), 1);
    assert_eq!(fake.calls_to("POST", CONFIG_MAPS).len(), 1, "tried, found");
    assert_eq!(status(&fake, "job")["phase"], "Pending");

    // Status lost but the Pod exists: adopted as it is.
    let mut cr = fake.get(EXECUTIONS, "job").unwrap();
    cr.as_object_mut().unwrap().remove("status");
    fake.put(EXECUTIONS, cr);
    fake.clear_calls();
    step(&fake, &restarted, "job").await;
    assert!(fake.calls_to("POST", PODS).is_empty());
    assert_eq!(
        (status(&fake, "job")["phase"].as_str(), status(&fake, "job")["podName"].as_str()),
        (Some("Pending"), Some("job"))
    );
}

#[tokio::test]
async fn running_then_completed_with_the_programs_output() {
    let (fake, ctx) = started(hello()).await;
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["startTime"], "2026-01-01T00:00:02Z");
    assert_eq!(condition(&s, "Started")["status"], "True");

    let n = nonce(&fake, "job");
    let log = format!(
        "{}{}{}",
        frame(&n, FRAME_STDOUT, b"hi\n"),
        frame(&n, FRAME_STDERR, b"warn\n"),
        frame(&n, FRAME_END, br#"{"exit":0}"#)
    );
    let s = ends(&fake, &ctx, "Succeeded", 0, "Completed", &log).await;
    assert_eq!((s["phase"].as_str(), s["exitCode"].as_i64()), (Some("Completed"), Some(0)));
    assert_eq!((s["stdout"].as_str(), s["stderr"].as_str()), (Some("hi\n"), Some("warn\n")));
    assert_eq!(s["durationMs"], 3000);
    assert_eq!(condition(&s, "Finished")["reason"], "Completed");
    for collection in [PODS, POLICIES, CONFIG_MAPS] {
        assert!(fake.get(collection, "job").is_none(), "{collection}: children are removed once the status is written");
    }

    // Terminal: never written again.
    fake.clear_calls();
    assert_eq!(step(&fake, &ctx, "job").await, Action::await_change());
    assert!(fake.calls_to("PATCH", EXECUTIONS).is_empty());
}

/// docs/api.md: `started_at` is set once. A container the kubelet reports with another start later changes neither
/// the running status's start nor the final one.
#[tokio::test]
async fn the_start_time_is_set_once() {
    let (fake, ctx) = started(hello()).await;
    assert_eq!(status(&fake, "job")["startTime"], "2026-01-01T00:00:02Z");
    let later = |state: Value| json!({"phase": "Running", "containerStatuses": [container("python", state)]});
    fake.set_status(PODS, "job", later(json!({"running": {"startedAt": "2026-01-01T00:00:04Z"}})));
    step(&fake, &ctx, "job").await;
    assert_eq!(status(&fake, "job")["startTime"], "2026-01-01T00:00:02Z", "the running status keeps it");

    let n = nonce(&fake, "job");
    fake.set_log("job", "python", &frame(&n, FRAME_END, br#"{"exit":0}"#));
    let ended = json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": "2026-01-01T00:00:04Z",
        "finishedAt": "2026-01-01T00:00:05Z"}});
    fake.set_status(PODS, "job", json!({"phase": "Succeeded", "containerStatuses": [container("python", ended)]}));
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!((s["phase"].as_str(), s["startTime"].as_str()), (Some("Completed"), Some("2026-01-01T00:00:02Z")));
}

#[tokio::test]
async fn a_failing_program_is_completed_with_its_error_fields() {
    let (fake, ctx) = started(hello()).await;
    let n = nonce(&fake, "job");
    let tb = b"Traceback (most recent call last):\n  File \"/work/main.py\", line 3, in <module>\n    1/0\nZeroDivisionError: division by zero\n";
    let log = format!("{}{}", frame(&n, FRAME_STDERR, tb), frame(&n, FRAME_END, br#"{"exit":1}"#));
    let s = ends(&fake, &ctx, "Failed", 1, "Error", &log).await;
    assert_eq!((s["phase"].as_str(), s["exitCode"].as_i64()), (Some("Completed"), Some(1)));
    assert_eq!((s["errorType"].as_str(), s["errorLine"].as_i64()), (Some("ZeroDivisionError"), Some(3)));
}

#[tokio::test]
async fn a_program_that_exits_124_itself_completed_and_did_not_time_out() {
    let (fake, ctx) = started(hello()).await;
    let n = nonce(&fake, "job");
    let log = format!(
        "{}{}",
        frame(&n, FRAME_STDOUT, b"bye\n"),
        frame(&n, FRAME_END, br#"{"exit":124,"signal":null,"timed_out":false}"#)
    );
    let s = ends(&fake, &ctx, "Failed", 124, "Error", &log).await;
    assert_eq!((s["phase"].as_str(), s["exitCode"].as_i64()), (Some("Completed"), Some(124)), "{s}");
    assert_eq!((s["error"].as_str(), s["stdout"].as_str()), (None, Some("bye\n")));
    assert_eq!(condition(&s, "Finished")["reason"], "Completed");
}

#[tokio::test]
async fn the_runners_timeout_is_a_timeout() {
    let (fake, ctx) = started(hello()).await;
    let n = nonce(&fake, "job");
    let log = format!(
        "{}{}",
        frame(&n, FRAME_STDOUT, b"slow\n"),
        frame(&n, FRAME_END, br#"{"exit":124,"signal":null,"timed_out":true}"#)
    );
    let s = ends(&fake, &ctx, "Failed", 124, "Error", &log).await;
    assert_eq!((s["phase"].as_str(), s["exitCode"].as_i64()), (Some("Failed"), Some(124)), "{s}");
    assert_eq!((s["error"].as_str(), s["stdout"].as_str()), (Some("execution timeout after 30s"), Some("slow\n")));
    assert_eq!(condition(&s, "Finished")["reason"], "TimedOut");
}

#[tokio::test]
async fn failed_reconciliations_back_off_per_object_and_are_counted() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", hello()));
    fake.put(EXECUTIONS, execution("other", hello()));
    let (job, other) = (fake.object::<PythonExecution>(EXECUTIONS, "job"), fake.object(EXECUTIONS, "other"));
    let fail = |cr: &std::sync::Arc<PythonExecution>| {
        error_policy(cr.clone(), &Error::Logs(std::io::Error::other("disk full")), ctx.clone())
    };
    let delays: Vec<Action> = (0..4).map(|_| fail(&job)).collect();
    let expected: Vec<Action> = [1, 2, 4, 8].map(|s| Action::requeue(Duration::from_secs(s))).to_vec();
    assert_eq!(delays, expected, "each failure of the same object waits twice as long");
    assert_eq!(fail(&other), Action::requeue(Duration::from_secs(1)), "per object");
    assert!(ctx.metrics.render().contains("pyexec_operator_reconcile_failures_total{error=\"log_store\"} 5"));

    step(&fake, &ctx, "job").await;
    assert_eq!(fail(&job), Action::requeue(Duration::from_secs(1)), "a success starts over");
}

#[tokio::test]
async fn out_of_memory_is_137_and_flagged() {
    let (fake, ctx) = started(hello()).await;
    let s = ends(&fake, &ctx, "Failed", 137, "OOMKilled", "").await;
    assert_eq!(
        (s["phase"].as_str(), s["exitCode"].as_i64(), s["oomKilled"].as_bool()),
        (Some("Completed"), Some(137), Some(true))
    );
    assert_eq!(condition(&s, "Finished")["reason"], "OOMKilled");
}

#[tokio::test]
async fn the_deadline_is_a_timeout_that_keeps_the_output() {
    let (fake, ctx) = started(hello()).await;
    let n = nonce(&fake, "job");
    fake.set_log("job", "python", &frame(&n, FRAME_STDOUT, b"partial\n"));
    fake.set_status(
        PODS,
        "job",
        json!({"phase": "Failed", "reason": "DeadlineExceeded",
        "containerStatuses": [container("python", json!({"running": {"startedAt": "2026-01-01T00:00:02Z"}}))]}),
    );
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!((s["phase"].as_str(), s["exitCode"].as_i64()), (Some("Failed"), Some(124)));
    assert_eq!((s["error"].as_str(), s["stdout"].as_str()), (Some("execution timeout after 30s"), Some("partial\n")));
    assert_eq!(condition(&s, "Finished")["reason"], "TimedOut");
}

#[tokio::test]
async fn killing_deletes_the_pod_and_is_final() {
    let (fake, ctx) = started(hello()).await;
    let n = nonce(&fake, "job");
    fake.set_log("job", "python", &frame(&n, FRAME_STDOUT, b"working\n"));
    let mut cr = fake.get(EXECUTIONS, "job").unwrap();
    cr["metadata"]["annotations"] = json!({KILL_ANNOTATION: "2026-01-01T00:00:03Z"});
    fake.put(EXECUTIONS, cr);
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!(
        (s["phase"].as_str(), s["exitCode"].as_i64(), s["stdout"].as_str()),
        (Some("Killed"), Some(137), Some("working\n"))
    );
    assert!(fake.get(PODS, "job").is_none());
    assert_eq!(fake.calls_to("DELETE", PODS).len(), 1);
}

#[tokio::test]
async fn a_session_calls_record_gets_no_pod_and_is_failed_when_its_writer_stopped() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    let mut spec = hello();
    spec["sessionRef"] = json!("ses-1");
    spec["limits"]["timeoutSeconds"] = json!(30);
    // Written by the API server making the call, which is running it now.
    let mut cr = execution("call", spec.clone());
    cr["status"] = json!({"phase": "Running", "startTime": "2026-01-01T00:00:01Z"});
    fake.put(EXECUTIONS, cr);
    let action = step(&fake, &ctx, "call").await;
    assert!(fake.calls_to("POST", PODS).is_empty() && fake.calls_to("POST", CONFIG_MAPS).is_empty(), "nothing runs");
    assert_eq!(status(&fake, "call")["phase"], "Running", "left to its writer");
    let wait = format!("{action:?}");
    assert!(wait.contains("requeue_after: Some"), "checked again after its timeout and the grace: {wait}");

    // Created long ago and still running: the API server that made the call stopped during it.
    let mut old = execution("old-call", spec);
    old["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    old["status"] = json!({"phase": "Running", "startTime": "2026-01-01T00:00:01Z"});
    fake.put(EXECUTIONS, old);
    step(&fake, &ctx, "old-call").await;
    let s = status(&fake, "old-call");
    assert_eq!(s["phase"], "Failed");
    assert_eq!(condition(&s, "Finished")["reason"], "CallLost");
    assert!(s["error"].as_str().unwrap().contains("stopped before the call finished"), "{s}");
    assert!(fake.calls_to("POST", PODS).is_empty());
}

#[tokio::test]
async fn killing_before_the_pod_exists() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    let mut cr = execution("job", hello());
    cr["metadata"]["annotations"] = json!({KILL_ANNOTATION: "now"});
    fake.put(EXECUTIONS, cr);
    step(&fake, &ctx, "job").await;
    assert_eq!(status(&fake, "job")["phase"], "Killed");
    assert!(fake.calls_to("POST", PODS).is_empty(), "it never runs");
}

#[tokio::test]
async fn a_failed_install_says_why() {
    let (client, fake) = FakeApi::start();
    let config = with_package_index();
    let ctx = context(client, config, LogStore::default());
    let mut spec = hello();
    spec["requirements"] = json!("docopt\n");
    fake.put(EXECUTIONS, execution("job", spec));
    step(&fake, &ctx, "job").await;
    let policy = fake.get(POLICIES, "job").unwrap();
    assert_eq!(policy["metadata"]["annotations"]["pyexec.io/network-stage"], "install");
    assert_eq!(policy["spec"]["egress"][1]["to"][0]["ipBlock"]["cidr"], "10.0.0.9/32");
    fake.set_log("job", "install", "Collecting docopt\nERROR: No matching distribution found for docopt\n");
    fake.set_status(
        PODS,
        "job",
        json!({"phase": "Failed",
        "initContainerStatuses": [container("install", json!({"terminated": {"exitCode": 1, "reason": "Error"}}))],
        "containerStatuses": [container("python", json!({"waiting": {"reason": "PodInitializing"}}))]}),
    );
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Failed");
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .starts_with("installing dependencies failed: No matching distribution found for docopt"),
        "{s}"
    );
    assert!(s["stderr"].as_str().unwrap().contains("Collecting docopt"), "the installer's tail: {s}");
    assert_eq!(condition(&s, "Finished")["reason"], "InstallFailed");
}

#[tokio::test]
async fn refusals_are_failed_and_create_nothing() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    let mut spec = hello();
    spec["image"] = json!("attacker/miner:latest");
    fake.put(EXECUTIONS, execution("job", spec));
    assert_eq!(step(&fake, &ctx, "job").await, Action::await_change());
    let s = status(&fake, "job");
    assert_eq!((s["phase"].as_str(), s["exitCode"].as_i64()), (Some("Failed"), Some(1)));
    assert_eq!(condition(&s, "Accepted")["reason"], "ImageNotAllowed");
    assert!(fake.calls_to("POST", PODS).is_empty() && fake.calls_to("POST", CONFIG_MAPS).is_empty());
    let mut spec = hello();
    spec["requirements"] = json!("six");
    fake.put(EXECUTIONS, execution("needs-index", spec));
    step(&fake, &ctx, "needs-index").await;
    assert!(status(&fake, "needs-index")["error"].as_str().unwrap().contains("no package index configured"));
}

#[tokio::test]
async fn docker_is_refused_outside_its_namespaces_and_without_network() {
    let (client, fake) = FakeApi::start();
    let mut config = OperatorConfig::default();
    config.docker.enabled = true;
    config.docker.namespaces = vec!["somewhere-else".into()];
    let ctx = context(client, config, LogStore::default());
    let mut spec = hello();
    spec["docker"] = json!(true);
    spec["network"] = json!("egress");
    fake.put(EXECUTIONS, execution("docker", spec.clone()));
    step(&fake, &ctx, "docker").await;
    let s = status(&fake, "docker");
    assert_eq!(
        (s["phase"].as_str(), condition(&s, "Accepted")["reason"].as_str()),
        (Some("Failed"), Some("DockerNotAllowed"))
    );
    assert!(s["error"].as_str().unwrap().contains("docker.namespaces"), "{s}");
    assert!(fake.calls_to("POST", PODS).is_empty() && fake.calls_to("POST", CONFIG_MAPS).is_empty());

    let (client, fake) = FakeApi::start();
    let mut config = OperatorConfig::default();
    config.docker.enabled = true;
    config.docker.namespaces = vec![NS.into()];
    let ctx = context(client, config, LogStore::default());
    spec["network"] = json!("none");
    fake.put(EXECUTIONS, execution("offline", spec.clone()));
    step(&fake, &ctx, "offline").await;
    let s = status(&fake, "offline");
    assert_eq!(condition(&s, "Accepted")["reason"], "DockerNeedsNetwork");
    assert!(fake.calls_to("POST", PODS).is_empty());
    spec["network"] = json!("egress");
    fake.put(EXECUTIONS, execution("online", spec));
    step(&fake, &ctx, "online").await;
    assert_eq!(condition(&status(&fake, "online"), "Accepted")["status"], "True");
    assert_eq!(fake.calls_to("POST", PODS).len(), 1, "allowed in its namespace, with network");
}

#[tokio::test]
async fn a_pod_deleted_behind_the_operators_back_fails_the_execution() {
    let (fake, ctx) = started(hello()).await;
    fake.delete(PODS, "job");
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Failed");
    assert!(s["error"].as_str().unwrap().contains("Pod was deleted"), "{s}");
}

#[tokio::test]
async fn finished_executions_expire_after_their_ttl() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    let mut spec = hello();
    spec["ttlSecondsAfterFinished"] = json!(60);
    let mut cr = execution("old", spec.clone());
    cr["status"] = json!({"phase": "Completed", "exitCode": 0, "completionTime": "2026-01-01T00:00:00Z"});
    fake.put(EXECUTIONS, cr);
    step(&fake, &ctx, "old").await;
    assert!(fake.get(EXECUTIONS, "old").is_none(), "deleted once its time to live passed");

    let mut recent = execution("recent", spec);
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    recent["status"] = json!({"phase": "Completed", "exitCode": 0, "completionTime": now});
    fake.put(EXECUTIONS, recent);
    let action = step(&fake, &ctx, "recent").await;
    assert!(fake.get(EXECUTIONS, "recent").is_some());
    assert_ne!(action, Action::await_change(), "looked at again when it expires");
}

#[tokio::test]
async fn stored_logs_live_and_die_with_the_resource() {
    let dir = tempfile::tempdir().unwrap();
    let (client, fake) = FakeApi::start();
    let logs = LogStore::new(&LogsConfig {
        dir: Some(dir.path().into()),
        url: Some("http://op:8081".into()),
        ..LogsConfig::default()
    });
    let ctx = context(client, OperatorConfig::default(), logs.clone());
    fake.put(EXECUTIONS, execution("job", hello()));
    step(&fake, &ctx, "job").await; // adds the finalizer
    assert_eq!(fake.get(EXECUTIONS, "job").unwrap()["metadata"]["finalizers"], json!(["pyexec.io/logs"]));
    step(&fake, &ctx, "job").await; // creates the Pod
    let n = nonce(&fake, "job");
    let big = "y".repeat(100_000);
    let log = format!("{}{}", frame(&n, FRAME_STDOUT, big.as_bytes()), frame(&n, FRAME_END, br#"{"exit":0}"#));
    let s = ends(&fake, &ctx, "Succeeded", 0, "Completed", &log).await;
    assert_eq!((s["stdout"].as_str().unwrap().len(), s["stdoutTruncated"].as_bool()), (64 << 10, Some(true)));
    assert_eq!(s["logsRef"], "http://op:8081/logs/team-a/uid-job");
    assert_eq!(logs.load(NS, "uid-job").await.unwrap().unwrap().stdout.len(), 100_000, "the whole output is stored");

    // Deleted: the finalizer removes the stored output, then lets go.
    let mut cr = fake.get(EXECUTIONS, "job").unwrap();
    cr["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
    fake.put(EXECUTIONS, cr);
    step(&fake, &ctx, "job").await;
    assert!(logs.load(NS, "uid-job").await.unwrap().is_none());
    assert_eq!(fake.get(EXECUTIONS, "job").unwrap()["metadata"]["finalizers"], json!([]));
}

/// A tar of `files`, as the eval runner writes it (or, for a path it never writes, the program could).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        // The name written as is: the tar crate refuses to write `..`, which a program's own tar may hold.
        header.as_mut_bytes()[..path.len()].copy_from_slice(path.as_bytes());
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A context whose configuration has the log store on (so executions report their files), the store in `dir`.
fn with_log_store(client: kube::Client, dir: &std::path::Path) -> (std::sync::Arc<Context>, LogStore) {
    let config = OperatorConfig {
        logs: LogsConfig { dir: Some(dir.into()), url: Some("http://op:8081".into()), ..LogsConfig::default() },
        ..OperatorConfig::default()
    };
    let logs = LogStore::new(&config.logs);
    (context(client, config, logs.clone()), logs)
}

/// The runner's log of a run that wrote `tar` (its frames cut to `pieces` of it, by default all) and reported an
/// eval result with one PNG.
fn log_with_files(n: &str, tar: &[u8], pieces: Option<usize>) -> String {
    use base64::Engine;
    let chunks: Vec<&[u8]> = tar.chunks(4096).collect();
    let mut log = numbered(n, 0, FRAME_START, b"") + &numbered(n, 1, FRAME_STDOUT, b"plotted\n");
    let mut seq = 2;
    for chunk in chunks.iter().take(pieces.unwrap_or(chunks.len())) {
        log += &numbered(n, seq, FRAME_FILES, chunk);
        seq += 1;
    }
    let report = br#"{"result": "42", "outputs": [{"type": "image/png", "data": "iVBORw0KGgo="}]}"#;
    let end = json!({"exit": 0, "frames": 2 + chunks.len(), "files_bytes": tar.len(),
        "result": base64::engine::general_purpose::STANDARD.encode(report)});
    log + &numbered(n, seq, FRAME_END, end.to_string().as_bytes())
}

#[tokio::test]
async fn files_and_display_outputs_are_stored_with_the_output_and_go_with_the_resource() {
    let dir = tempfile::tempdir().unwrap();
    let (client, fake) = FakeApi::start();
    let (ctx, logs) = with_log_store(client, dir.path());
    let mut spec = hello();
    spec["evalLastExpr"] = json!(true);
    fake.put(EXECUTIONS, execution("job", spec));
    step(&fake, &ctx, "job").await; // adds the finalizer
    step(&fake, &ctx, "job").await; // creates the Pod
    let run = fake.get(CONFIG_MAPS, "job").unwrap()["data"]["run.json"].as_str().unwrap().to_owned();
    let run: Value = serde_json::from_str(&run).unwrap();
    assert_eq!((run["files_max_bytes"].as_u64(), run["files_max_count"].as_u64()), (Some(8 << 20), Some(1000)));

    let n = nonce(&fake, "job");
    let big = vec![7u8; 10_000];
    let tar = tar_of(&[("out.csv", b"a,b\n"), ("plots/big.bin", &big), ("../escape", b"x")]);
    let s = ends(&fake, &ctx, "Succeeded", 0, "Completed", &log_with_files(&n, &tar, None)).await;
    assert_eq!((s["phase"].as_str(), s["result"].as_str()), (Some("Completed"), Some("42")), "{s}");
    assert_eq!((s["filesCount"].as_u64(), s["outputsCount"].as_u64()), (Some(2), Some(1)), "{s}");
    assert_eq!(s["filesTruncated"], true, "the entry outside /work was left out");
    assert_eq!(s["logsRef"], "http://op:8081/logs/team-a/uid-job");
    let stored = logs.load(NS, "uid-job").await.unwrap().unwrap();
    assert_eq!(stored.outputs.len(), 1);
    let paths: Vec<&str> = stored.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["out.csv", "plots/big.bin"]);
    let sha = &stored.files[1].sha256;
    assert_eq!(logs.read_file(NS, "uid-job", sha).await.unwrap(), Some(big));
    assert_eq!(stored.stdout, "plotted", "the eval result's newline is trimmed as ever");

    // Deleted: the finalizer removes the record and the files.
    let mut cr = fake.get(EXECUTIONS, "job").unwrap();
    cr["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
    fake.put(EXECUTIONS, cr);
    step(&fake, &ctx, "job").await;
    assert!(logs.load(NS, "uid-job").await.unwrap().is_none());
    assert_eq!(logs.read_file(NS, "uid-job", sha).await.unwrap(), None);
    assert!(!dir.path().join(NS).join("uid-job.files").exists());
}

#[tokio::test]
async fn file_frames_lost_with_the_log_keep_no_files_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let (client, fake) = FakeApi::start();
    let (ctx, logs) = with_log_store(client, dir.path());
    fake.put(EXECUTIONS, execution("job", hello()));
    step(&fake, &ctx, "job").await;
    step(&fake, &ctx, "job").await;
    let n = nonce(&fake, "job");
    let tar = tar_of(&[("a.bin", &vec![1u8; 20_000])]);
    // The log read back lost a piece of the tar (a rotation while nobody followed): never a corrupt tar.
    let s = ends(&fake, &ctx, "Succeeded", 0, "Completed", &log_with_files(&n, &tar, Some(2))).await;
    assert_eq!((s["phase"].as_str(), s["exitCode"].as_i64()), (Some("Completed"), Some(0)), "{s}");
    assert!(s.get("filesCount").is_none() && s["filesTruncated"] == true, "{s}");
    let stored = logs.load(NS, "uid-job").await.unwrap().unwrap();
    assert!(stored.files.is_empty() && stored.files_truncated);
    assert!(!dir.path().join(NS).join("uid-job.files").exists(), "nothing of it was stored");
}

#[tokio::test]
async fn a_pod_that_cannot_be_scheduled_fails_after_the_start_up_allowance() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", hello()));
    step(&fake, &ctx, "job").await;
    let mut pod = fake.get(PODS, "job").unwrap();
    pod["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    pod["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]});
    fake.put(PODS, pod);
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Failed");
    assert!(s["error"].as_str().unwrap().contains("Insufficient memory"), "{s}");
    assert_eq!(condition(&s, "Finished")["reason"], "NotScheduled");
}

/// Someone else's object named like the execution's child exists before the execution: the execution fails with
/// `NameConflict`, and that object is never changed or deleted.
async fn a_foreign_object_with_a_childs_name_is_left_alone(collection: &str, kind: &str, object: Value) {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(collection, object);
    let before = fake.get(collection, "job").unwrap();
    fake.put(EXECUTIONS, execution("job", hello()));
    fake.clear_calls();
    assert_eq!(step(&fake, &ctx, "job").await, Action::await_change());
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Failed", "{s}");
    assert_eq!(condition(&s, "Finished")["reason"], "NameConflict");
    assert_eq!(condition(&s, "Accepted")["reason"], "NameConflict");
    let error = s["error"].as_str().unwrap();
    assert!(error.contains(&format!("a {kind} named \"job\"")), "{error}");

    // Again, as a watch event would: still nothing done to it.
    step(&fake, &ctx, "job").await;
    assert_eq!(fake.get(collection, "job").unwrap(), before, "unchanged, same resourceVersion");
    let target = format!("{collection}/job");
    for method in ["DELETE", "PATCH", "PUT"] {
        assert!(fake.calls_to(method, &target).is_empty(), "{method} {target}: {:?}", fake.calls_to(method, &target));
    }
    assert!(fake.calls_to("POST", PODS).is_empty() || collection == PODS, "no Pod runs");
    assert!(collection == PODS || fake.get(PODS, "job").is_none());
    // What the execution did create is its own, and removed with a uid precondition.
    for other in [CONFIG_MAPS, POLICIES, PODS].into_iter().filter(|c| *c != collection) {
        assert!(fake.get(other, "job").is_none(), "{other}");
        for call in fake.calls_to("DELETE", &format!("{other}/job")) {
            assert_eq!(call.body["preconditions"]["uid"], "uid-job", "{call:?}");
        }
    }
}

#[tokio::test]
async fn a_foreign_config_map_with_the_executions_name_is_never_touched() {
    let map = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "job", "namespace": NS, "uid": "someone-elses"}, "data": {"app.conf": "keep me"}});
    a_foreign_object_with_a_childs_name_is_left_alone(CONFIG_MAPS, "ConfigMap", map).await;
}

#[tokio::test]
async fn a_foreign_network_policy_with_the_executions_name_is_never_touched() {
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "job", "namespace": NS, "uid": "someone-elses"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}});
    a_foreign_object_with_a_childs_name_is_left_alone(POLICIES, "NetworkPolicy", policy).await;
}

#[tokio::test]
async fn a_foreign_pod_with_the_executions_name_is_never_adopted_or_touched() {
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job", "namespace": NS, "uid": "someone-elses",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs-uid",
                                 "controller": true}]},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        "status": {"phase": "Running"}});
    a_foreign_object_with_a_childs_name_is_left_alone(PODS, "Pod", pod).await;
}

#[tokio::test]
async fn a_pod_replaced_by_someone_elses_is_not_observed_or_deleted() {
    let (fake, ctx) = started(hello()).await;
    fake.delete(PODS, "job");
    fake.put(
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job", "namespace": NS, "uid": "someone-elses"},
        "spec": {"containers": [{"name": "python", "image": "python:3.12-slim"}]},
        "status": {"phase": "Succeeded",
                   "containerStatuses": [container("python", terminated(0, "Completed"))]}}),
    );
    let before = fake.get(PODS, "job").unwrap();
    fake.clear_calls();
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!((s["phase"].as_str(), s["exitCode"].as_i64()), (Some("Failed"), Some(1)), "{s}");
    assert_eq!(condition(&s, "Finished")["reason"], "NameConflict");
    assert_eq!(fake.get(PODS, "job").unwrap(), before);
    assert!(fake.calls_to("DELETE", PODS).is_empty() && fake.calls_to("PATCH", PODS).is_empty());
    assert!(fake.get(POLICIES, "job").is_none() && fake.get(CONFIG_MAPS, "job").is_none(), "its own are removed");
}

#[tokio::test]
async fn the_controller_skips_an_object_it_cannot_read_and_runs_the_others() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client.clone(), OperatorConfig::default(), LogStore::default());
    let mut bad = execution("bad", hello());
    bad["spec"]["limits"]["timeoutSeconds"] = json!("soon");
    fake.put(EXECUTIONS, bad);
    let mut nulls = execution("nulls", hello());
    nulls["spec"]["limits"]["cpu"] = Value::Null;
    fake.put(EXECUTIONS, nulls);
    fake.put(EXECUTIONS, execution("good", hello()));
    let ready = Readiness::default();
    let controller = tokio::spawn(pyexec_operator::controller::run(client, ctx, Some(NS), ready.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fake.get(PODS, "good").is_none() || fake.get(PODS, "nulls").is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the readable executions run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warned = || {
        fake.calls_to("POST", "/apis/events.k8s.io/")
            .iter()
            .any(|c| c.body["reason"] == "InvalidObject" && c.body["regarding"]["name"] == "bad")
    };
    while !warned() {
        assert!(tokio::time::Instant::now() < deadline, "a Warning Event names the unreadable object");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    controller.abort();
    assert!(fake.get(PODS, "bad").is_none() && fake.get(EXECUTIONS, "bad").unwrap().get("status").is_none());
    assert!(ready.is_ready());
}

#[tokio::test]
async fn readiness_fails_while_the_watch_fails() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client.clone(), OperatorConfig::default(), LogStore::default());
    let ready = Readiness::default();
    // The fake API serves namespaced paths only: a cluster-wide watch fails.
    let controller = tokio::spawn(pyexec_operator::controller::run(client, ctx, None, ready.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ready.is_ready() {
        assert!(tokio::time::Instant::now() < deadline, "not ready while the watch fails");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    controller.abort();
    assert!(!fake.calls_to("GET", "/apis/pyexec.io/v1alpha1/pythonexecutions").is_empty());
}

/// Where the first request with `method` (any when empty) whose path contains `part` is among `calls`.
fn first(calls: &[Call], method: &str, part: &str) -> Option<usize> {
    calls.iter().position(|c| (method.is_empty() || c.method == method) && c.path.contains(part))
}

/// The main container runs; the operator reconciles; what it answered.
async fn main_container_runs(fake: &FakeApi, ctx: &std::sync::Arc<Context>) -> Action {
    fake.set_status(
        PODS,
        "job",
        json!({"phase": "Running", "startTime": "2026-01-01T00:00:01Z",
        "containerStatuses": [container("python", json!({"running": {"startedAt": "2026-01-01T00:00:02Z"}}))]}),
    );
    step(fake, ctx, "job").await
}

#[tokio::test]
async fn a_program_without_requirements_gets_the_go_ahead_only_after_its_policy_exists() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", hello()));
    step(&fake, &ctx, "job").await;
    let main = &fake.get(PODS, "job").unwrap()["spec"]["containers"][0];
    assert_eq!((main["stdin"].as_bool(), main["stdinOnce"].as_bool()), (Some(true), Some(true)));
    assert!(main["env"].as_array().unwrap().iter().any(|e| e["name"] == GATE_ENV && e["value"] == FLAG_ON));
    assert!(fake.calls_matching("", "/attach").is_empty(), "no go-ahead before the program's container runs");

    let action = main_container_runs(&fake, &ctx).await;
    let calls = fake.calls();
    let created = first(&calls, "POST", "/networkpolicies").expect("the program's policy was created");
    assert_eq!(fake.get(POLICIES, "job").unwrap()["metadata"]["annotations"]["pyexec.io/network-stage"], "run");
    let attached = fake.calls_matching("", "/attach");
    assert!(!attached.is_empty(), "the go-ahead was sent");
    assert!(attached.iter().all(|c| c.query.contains("container=python")), "{attached:?}");
    let go = first(&calls, "", "/attach").unwrap();
    assert!(created < first(&calls, "POST", "/pods").unwrap() && created < go, "policy, then Pod, then go-ahead");
    // The fake API cannot attach (400): the go-ahead is not recorded as sent, and is tried again soon.
    assert!(fake.get(PODS, "job").unwrap()["metadata"]["annotations"].get(GATE_ANNOTATION).is_none());
    assert_eq!(action, Action::requeue(Duration::from_secs(2)));
    assert_eq!(status(&fake, "job")["phase"], "Running");
}

#[tokio::test]
async fn after_an_install_the_go_ahead_follows_the_policys_replacement() {
    let (client, fake) = FakeApi::start();
    let config = with_package_index();
    let ctx = context(client, config, LogStore::default());
    let mut spec = hello();
    spec["requirements"] = json!("six\n");
    fake.put(EXECUTIONS, execution("job", spec));
    step(&fake, &ctx, "job").await;
    assert_eq!(fake.get(POLICIES, "job").unwrap()["metadata"]["annotations"]["pyexec.io/network-stage"], "install");
    fake.clear_calls();
    main_container_runs(&fake, &ctx).await;
    let calls = fake.calls();
    let replaced = first(&calls, "PATCH", "/networkpolicies/job").expect("the install stage's policy was replaced");
    assert!(replaced < first(&calls, "", "/attach").expect("then the go-ahead"), "{calls:?}");
    let policy = fake.get(POLICIES, "job").unwrap();
    assert_eq!(
        (policy["metadata"]["annotations"]["pyexec.io/network-stage"].as_str(), &policy["spec"]["egress"]),
        (Some("run"), &json!([]))
    );
}

const QUOTA: &str = "pods \"job\" is forbidden: exceeded quota: compute, requested: limits.cpu=500m, used: limits.cpu=2, limited: limits.cpu=2";

#[tokio::test]
async fn a_full_quota_keeps_the_execution_pending_and_retries_with_backoff() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", hello()));
    fake.fail_next("POST", PODS, 2, Fault::StatusWithMessage(403, QUOTA));
    let mut delays = Vec::new();
    for _ in 0..2 {
        let cr = fake.object::<PythonExecution>(EXECUTIONS, "job");
        let error = reconcile(cr.clone(), ctx.clone()).await.unwrap_err();
        assert!(matches!(error, Error::QuotaExceeded(_)), "{error}");
        delays.push(error_policy(cr, &error, ctx.clone()));
        let s = status(&fake, "job");
        assert_eq!(s["phase"], "Pending", "backpressure, not a failure: {s}");
        assert_eq!(condition(&s, "Started")["reason"], "QuotaExceeded");
        assert!(condition(&s, "Started")["message"].as_str().unwrap().contains("exceeded quota"));
        assert!(s["podName"].is_null(), "no Pod yet");
        assert!(fake.get(PODS, "job").is_none());
    }
    assert_eq!(delays, [1, 2].map(|s| Action::requeue(Duration::from_secs(s))), "the per-object backoff");

    step(&fake, &ctx, "job").await;
    assert!(fake.get(PODS, "job").is_some(), "created once the quota has room");
    let s = status(&fake, "job");
    assert_eq!((s["phase"].as_str(), s["podName"].as_str()), (Some("Pending"), Some("job")));
    assert_eq!(condition(&s, "Started")["reason"], "Starting");
}

#[tokio::test]
async fn other_refusals_of_the_pod_still_fail_it() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", hello()));
    fake.fail_next("POST", PODS, 1, Fault::Status(403));
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Failed");
    assert_eq!(condition(&s, "Accepted")["reason"], "PodRefused");
}

#[tokio::test]
async fn children_whose_delete_failed_are_deleted_by_a_later_reconcile() {
    let (fake, ctx) = started(hello()).await;
    let n = nonce(&fake, "job");
    fake.set_log("job", "python", &frame(&n, FRAME_END, br#"{"exit":0}"#));
    fake.set_status(
        PODS,
        "job",
        json!({"phase": "Succeeded", "containerStatuses": [container("python", terminated(0, "Completed"))]}),
    );
    fake.fail_next("DELETE", PODS, 1, Fault::Status(500));
    let cr = fake.object::<PythonExecution>(EXECUTIONS, "job");
    assert!(reconcile(cr, ctx.clone()).await.is_err(), "the failed delete is retried");
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Completed", "the final status is written first");
    assert_eq!(condition(&s, "ChildrenDeleted")["status"], "False");
    assert!(fake.get(PODS, "job").is_some());

    step(&fake, &ctx, "job").await;
    assert!(fake.get(PODS, "job").is_none(), "a terminal execution's Pod is deleted later");
    assert!(fake.get(POLICIES, "job").is_none() && fake.get(CONFIG_MAPS, "job").is_none());
    let s = status(&fake, "job");
    assert_eq!(
        (s["phase"].as_str(), condition(&s, "ChildrenDeleted")["status"].as_str()),
        (Some("Completed"), Some("True"))
    );
    assert_eq!(condition(&s, "Finished")["reason"], "Completed", "the outcome is unchanged");

    fake.clear_calls();
    step(&fake, &ctx, "job").await;
    assert!(
        fake.calls_to("DELETE", PODS).is_empty() && fake.calls_to("PATCH", EXECUTIONS).is_empty(),
        "recorded: done"
    );
}

#[tokio::test]
async fn a_failed_log_read_is_retried_not_made_into_a_result() {
    let (fake, first) = started(hello()).await;
    // An operator that restarted once the program ran has no log follower: it reads the log at the end. (The first
    // one's follower goes with it, and its requests are answered before the fault is set.)
    let ctx = context(first.client.clone(), OperatorConfig::default(), LogStore::default());
    drop(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let n = nonce(&fake, "job");
    fake.set_log(
        "job",
        "python",
        &format!("{}{}", frame(&n, FRAME_STDOUT, b"hi\n"), frame(&n, FRAME_END, br#"{"exit":0}"#)),
    );
    fake.set_status(
        PODS,
        "job",
        json!({"phase": "Succeeded", "containerStatuses": [container("python", terminated(0, "Completed"))]}),
    );
    fake.fail_next("GET", &format!("{PODS}/job/log"), 1, Fault::Status(500));
    let cr = fake.object::<PythonExecution>(EXECUTIONS, "job");
    let error = reconcile(cr, ctx.clone()).await.unwrap_err();
    assert!(matches!(error, Error::Log { .. }), "{error}");
    assert_eq!(status(&fake, "job")["phase"], "Running", "nothing final from a log that could not be read");
    assert!(fake.get(PODS, "job").is_some());

    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!((s["phase"].as_str(), s["stdout"].as_str()), (Some("Completed"), Some("hi\n")), "{s}");
}

#[tokio::test]
async fn a_missing_secret_is_waited_for_a_while_before_failing() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    fake.put(EXECUTIONS, execution("job", hello()));
    step(&fake, &ctx, "job").await;
    let waiting = json!({"phase": "Pending", "containerStatuses": [container("python",
        json!({"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"db\" not found"}}))]});
    fake.set_status(PODS, "job", waiting.clone());
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Pending", "a Pod created just now waits for its Secret: {s}");
    assert!(condition(&s, "Started")["message"].as_str().unwrap().contains("secret \"db\" not found"));
    assert!(fake.get(PODS, "job").is_some());

    // Past the grace period (counted from the Pod's creation): it fails.
    let mut pod = fake.get(PODS, "job").unwrap();
    pod["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    fake.put(PODS, pod);
    fake.set_status(PODS, "job", waiting);
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Failed", "{s}");
    assert_eq!(condition(&s, "Finished")["reason"], "PodFailed");
}

#[tokio::test]
async fn a_missing_source_config_map_is_waited_for_a_while_before_failing() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    let spec = json!({"source": {"configMap": {"name": "code"}}, "entrypoint": "main.py",
           "limits": {"timeoutSeconds": 30, "memoryMB": 128, "cpu": "500m", "diskMB": 50}});
    fake.put(EXECUTIONS, execution("job", spec.clone()));
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!(
        (s["phase"].as_str(), condition(&s, "Started")["reason"].as_str()),
        (Some("Pending"), Some("SourceNotFound"))
    );
    fake.put(
        CONFIG_MAPS,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "code", "namespace": NS}, "data": {"main.py": "print(1)"}}),
    );
    step(&fake, &ctx, "job").await;
    assert!(fake.get(PODS, "job").is_some(), "created once the ConfigMap arrived");

    let mut old = execution("old", spec);
    old["spec"]["source"]["configMap"]["name"] = json!("never");
    old["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    fake.put(EXECUTIONS, old);
    step(&fake, &ctx, "old").await;
    let s = status(&fake, "old");
    assert_eq!(
        (s["phase"].as_str(), condition(&s, "Accepted")["reason"].as_str()),
        (Some("Failed"), Some("SourceNotFound"))
    );
}

#[tokio::test]
async fn an_eviction_for_ephemeral_storage_is_the_disk_limit() {
    let (fake, ctx) = started(hello()).await;
    let n = nonce(&fake, "job");
    fake.set_log("job", "python", &frame(&n, FRAME_STDOUT, b"writing\n"));
    fake.set_status(
        PODS,
        "job",
        json!({"phase": "Failed", "reason": "Evicted",
        "message": "Usage of EmptyDir volume \"work\" exceeds the limit \"50Mi\". ",
        "containerStatuses": [container("python", terminated(137, "Error"))]}),
    );
    step(&fake, &ctx, "job").await;
    let s = status(&fake, "job");
    assert_eq!(s["phase"], "Failed");
    assert_eq!((s["error"].as_str(), s["stdout"].as_str()), (Some("disk limit of 50 MB exceeded"), Some("writing\n")));
    assert_eq!(condition(&s, "Finished")["reason"], "DiskLimitExceeded");
}

#[tokio::test]
async fn a_log_rotated_before_it_was_read_says_the_output_was_lost() {
    let (fake, ctx) = started(hello()).await;
    let n = nonce(&fake, "job");
    // The runner wrote its start frame and two output frames; the rotated log kept only the last and the end.
    let log = frame(&n, FRAME_STDOUT, b"the end\n") + &frame(&n, FRAME_END, br#"{"exit":0,"frames":3}"#);
    let s = ends(&fake, &ctx, "Succeeded", 0, "Completed", &log).await;
    assert_eq!((s["exitCode"].as_i64(), s["stdout"].as_str()), (Some(0), Some("the end\n")));
    assert!(s["error"].as_str().unwrap().starts_with("output_lost:"), "{s}");
    assert_eq!(s["stdoutTruncated"], true, "{s}");
}

#[tokio::test]
async fn a_program_that_filled_its_workspace_failed_on_its_disk_limit() {
    let (fake, ctx) = started(hello()).await;
    let n = nonce(&fake, "job");
    let log = frame(&n, FRAME_STDOUT, b"writing\n")
        + &frame(&n, FRAME_STDERR, b"OSError: [Errno 28] No space left on device\n")
        + &frame(&n, FRAME_END, br#"{"exit":1,"disk_full":true}"#);
    let s = ends(&fake, &ctx, "Failed", 1, "Error", &log).await;
    assert_eq!(s["phase"], "Failed");
    assert_eq!((s["error"].as_str(), s["stdout"].as_str()), (Some("disk limit of 50 MB exceeded"), Some("writing\n")));
    assert_eq!(condition(&s, "Finished")["reason"], "DiskLimitExceeded");
}

#[tokio::test]
async fn thousands_of_finished_and_deleted_executions_leave_no_per_object_state() {
    let (client, fake) = FakeApi::start();
    let ctx = context(client, OperatorConfig::default(), LogStore::default());
    let names: Vec<String> = (0..5_000).map(|i| format!("job-{i}")).collect();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for name in &names {
        let mut cr = execution(name, hello());
        cr["status"] = json!({"phase": "Completed", "exitCode": 0, "completionTime": now});
        fake.put(EXECUTIONS, cr);
        // Every one failed a reconciliation once.
        let error = Error::Logs(std::io::Error::other("disk full"));
        error_policy(fake.object(EXECUTIONS, name), &error, ctx.clone());
    }
    assert_eq!(ctx.tracked(), (5_000, 0));
    // Half reach their terminal state (reconciled once more, successfully): their retry state goes.
    for name in names.iter().step_by(2) {
        step(&fake, &ctx, name).await;
    }
    assert_eq!(ctx.tracked(), (2_500, 0));
    // The sweep against the store keeps what still exists, keyed as the retry state is.
    let stored: Vec<_> = names
        .iter()
        .map(|n| std::sync::Arc::new(fake.object::<kube::api::DynamicObject>(EXECUTIONS, n).as_ref().clone()))
        .collect();
    ctx.forget_gone(pyexec_operator::controller::live_executions(&stored));
    assert_eq!(ctx.tracked(), (2_500, 0));
    // Then all are deleted (`ttlSecondsAfterFinished`): nothing is left.
    ctx.forget_gone([]);
    assert_eq!(ctx.tracked(), (0, 0));
}
