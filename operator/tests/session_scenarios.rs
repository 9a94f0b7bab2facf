//! Sessions against the mocked API server: the session's reconciler creating its ConfigMap, NetworkPolicy and Pod,
//! following the Pod as the kubelet reports it, closing its network and giving its runner the go-ahead (attach),
//! reading the runner's report from its log, installing requirements under the install stage's policy, replacing a
//! lost Pod, and ending the session when it is idle, driven as the kubelet, the runner (its log), the API server's
//! backend (its `lastActivityAt` patches, its Pod deletes) and the watches would drive it, and checked by the
//! requests made (method, path, body).

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use pyexec_core::pod::protocol::{FLAG_ON, GATE_ENV, GO_AHEAD};
use pyexec_core::session::READY_MARKER;
use pyexec_crds::session::{RESTARTS_ANNOTATION, SESSION_LABEL, SESSION_UID_LABEL};
use pyexec_crds::{PythonSession, SessionPhase};
use pyexec_operator::config::OperatorConfig;
use pyexec_operator::context::Context;
use pyexec_operator::logs::LogStore;
use pyexec_operator::session::decide::MAX_REQUEUE;
use pyexec_operator::session::reconcile::reconcile;
use serde_json::{Value, json};
use support::*;

type Ctx = std::sync::Arc<Context>;

const SESSIONS: &str = "/apis/pyexec.io/v1alpha1/namespaces/team-a/pythonsessions";

fn session(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "pyexec.io/v1alpha1", "kind": "PythonSession",
           "metadata": {"name": name, "namespace": NS, "generation": 1}, "spec": spec})
}

fn start() -> (FakeApi, Ctx) {
    start_with(OperatorConfig::default())
}

fn start_with(config: OperatorConfig) -> (FakeApi, Ctx) {
    let (client, fake) = FakeApi::start();
    // The go-ahead goes through attach.
    fake.serve_attach();
    (fake.clone(), context(client, config, LogStore::default()))
}

/// An operator with a package index.
fn with_index() -> OperatorConfig {
    serde_json::from_value(json!({"packageIndex": {"url": "https://pypi.internal/simple",
        "egressTo": [{"ipBlock": {"cidr": "10.9.8.7/32"}}]}}))
    .unwrap()
}

const INSTALL_POLICY: &str = "pyexec-session-ses-install";

async fn step(fake: &FakeApi, ctx: &Ctx, name: &str) -> Action {
    reconcile(fake.object(SESSIONS, name), ctx.clone()).await.unwrap()
}

fn status(fake: &FakeApi, name: &str) -> Value {
    fake.get(SESSIONS, name).unwrap()["status"].clone()
}

fn ready_reason(status: &Value) -> &str {
    status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap()["reason"].as_str().unwrap()
}

/// The session's Pods as the API lists them, oldest first.
async fn session_pods(ctx: &Ctx, uid: &str) -> Vec<Value> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), NS);
    let params = ListParams::default().labels(&format!("{SESSION_UID_LABEL}={uid}"));
    let mut pods: Vec<Value> =
        pods.list(&params).await.unwrap().items.iter().map(|p| serde_json::to_value(p).unwrap()).collect();
    pods.sort_by_key(|p| p["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap());
    pods
}

/// The kubelet started the session runner: Running, its container ready (the runner waits for the go-ahead).
fn make_running(fake: &FakeApi, pod: &str) {
    let mut running = container("python", json!({"running": {"startedAt": Timestamp::now().to_string()}}));
    running["ready"] = json!(true);
    fake.set_status(
        PODS,
        pod,
        json!({"phase": "Running", "startTime": Timestamp::now().to_string(),
               "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [running]}),
    );
}

/// The runner took the go-ahead and found the network closed: its report is on its log.
fn report(fake: &FakeApi, pod: &str, installed: &[&str]) {
    fake.set_log(pod, "python", &format!("{READY_MARKER}{}\n", json!({"installed": installed})));
}

/// The Pod's runner is up: running, then, after the operator's go-ahead (one reconciliation), its report read
/// (the next one).
async fn make_ready(fake: &FakeApi, ctx: &Ctx, name: &str, pod: &str) {
    make_running(fake, pod);
    step(fake, ctx, name).await;
    assert_eq!(fake.attached(pod, "python"), [GO_AHEAD.as_bytes()], "the go-ahead went to the runner");
    report(fake, pod, &[]);
    step(fake, ctx, name).await;
}

fn ago(seconds: i64) -> String {
    (Timestamp::now() - SignedDuration::from_secs(seconds)).to_string()
}

fn posts(fake: &FakeApi) -> Vec<String> {
    fake.calls()
        .into_iter()
        .filter(|c| c.method == "POST" && !c.path.contains("events.k8s.io"))
        .map(|c| c.path)
        .collect()
}

/// A session whose first Pod is ready.
async fn ready_session(name: &str, spec: Value) -> (FakeApi, Ctx, String) {
    let (fake, ctx) = start();
    fake.put(SESSIONS, session(name, spec));
    step(&fake, &ctx, name).await;
    let pod = status(&fake, name)["podName"].as_str().unwrap().to_owned();
    make_ready(&fake, &ctx, name, &pod).await;
    assert_eq!(status(&fake, name)["phase"], "Ready");
    (fake, ctx, pod)
}

#[tokio::test]
async fn a_session_gets_its_runner_its_fence_and_a_locked_down_pod_then_is_ready() {
    let (fake, ctx) = start();
    fake.put(
        SESSIONS,
        session(
            "ses",
            json!({"pythonVersion": "3.12", "env": [{"name": "MODE", "value": "test"}],
                              "limits": {"memoryMB": 512, "cpu": "500m", "diskMB": 100}}),
        ),
    );
    let action = step(&fake, &ctx, "ses").await;
    assert_ne!(action, Action::await_change(), "looked at again when the Pod should have started");

    assert_eq!(posts(&fake), [CONFIG_MAPS, POLICIES, PODS], "the runner and the fence exist before the Pod");
    let cm = fake.get(CONFIG_MAPS, "pyexec-session-ses").unwrap();
    assert_eq!(cm["data"]["session_runner.py"], pyexec_core::session::SESSION_RUNNER_SOURCE);
    assert_eq!(cm["data"]["eval_runner.py"], pyexec_core::eval::EVAL_RUNNER_SOURCE);
    assert_eq!(cm["data"]["pod_runner.py"], pyexec_core::pod::RUNNER_SOURCE, "the fence probe the runner imports");
    let fence: Value = serde_json::from_str(cm["data"]["fence.json"].as_str().unwrap()).unwrap();
    assert_eq!(fence["resolv_conf"], "/etc/resolv.conf", "network none: the runner checks that DNS is silent");
    assert!(cm["data"].get("requirements.txt").is_none());
    assert_eq!(cm["metadata"]["ownerReferences"][0]["kind"], "PythonSession");
    let policy = fake.get(POLICIES, "pyexec-session-ses").unwrap();
    assert_eq!(policy["spec"]["egress"], json!([]), "network none: deny all");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"][SESSION_UID_LABEL], "uid-ses");

    let pod = &fake.calls_to("POST", PODS)[0].body;
    assert_eq!(pod["metadata"]["generateName"], "ses-");
    assert_eq!(pod["metadata"]["labels"][SESSION_LABEL], "ses");
    assert_eq!(pod["metadata"]["labels"]["pyexec.io/execution"], "", "the namespace's default-deny covers it");
    assert_eq!(pod["metadata"]["annotations"][RESTARTS_ANNOTATION], "0");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "uid-ses");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    let spec = &pod["spec"];
    assert_eq!(
        (spec["restartPolicy"].as_str(), spec["automountServiceAccountToken"].as_bool()),
        (Some("Never"), Some(false))
    );
    assert_eq!(spec["enableServiceLinks"], false);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let main = &spec["containers"][0];
    assert_eq!(main["name"], "python");
    assert_eq!(main["command"], json!(["python", "-I", "/opt/pyexec/session_runner.py", "--mux"]));
    assert!(spec.get("initContainers").is_none(), "nothing to install");
    assert_eq!(
        (main["stdin"].as_bool(), main["stdinOnce"].as_bool(), main["tty"].as_bool()),
        (Some(true), Some(false), Some(false))
    );
    assert_eq!(main["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(main["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(main["resources"]["requests"]["cpu"], "500m");
    let env = main["env"].as_array().unwrap();
    for (name, value) in [
        ("PYTHONUNBUFFERED", "1"),
        ("PYTHONDONTWRITEBYTECODE", "1"),
        ("HOME", "/tmp"),
        ("MODE", "test"),
        (GATE_ENV, FLAG_ON),
    ] {
        assert!(env.iter().any(|e| e["name"] == name && e["value"] == value), "{name}: {env:?}");
    }

    let s = status(&fake, "ses");
    let pod_name = s["podName"].as_str().unwrap().to_owned();
    assert!(pod_name.starts_with("ses-"), "{s}");
    assert_eq!((s["phase"].as_str(), ready_reason(&s), s["restarts"].as_i64()), (Some("Pending"), "Starting", Some(0)));
    assert!(s["startedAt"].is_string() && s.get("readyAt").is_none());
    assert!(ctx.metrics.render().contains("pyexec_operator_session_pods_created_total{kind=\"start\"} 1"));

    // Still starting: nothing more is created.
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;
    assert!(posts(&fake).is_empty());

    // Running: not ready for calls before its runner took the go-ahead and found the network closed.
    make_running(&fake, &pod_name);
    fake.clear_calls();
    let action = step(&fake, &ctx, "ses").await;
    assert_eq!(fake.attached(&pod_name, "python"), [GO_AHEAD.as_bytes()]);
    let attach = &fake.calls_matching("", "/attach")[0];
    assert!(attach.query.contains("container=python") && attach.query.contains("stdin=true"), "{attach:?}");
    assert!(fake.calls_matching("", "/networkpolicies").is_empty(), "no install: its policy is the session's");
    let pod = fake.get(PODS, &pod_name).unwrap();
    assert_eq!(pod["metadata"]["annotations"]["pyexec.io/gate-opened"], "true");
    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Pending"), "Starting"));
    assert_eq!(action, Action::requeue(Duration::from_secs(1)), "its report is looked for soon");
    // Still checking the fence: nothing on its log yet, and no second go-ahead.
    step(&fake, &ctx, "ses").await;
    assert_eq!(
        (status(&fake, "ses")["phase"].as_str(), fake.attached(&pod_name, "python").len()),
        (Some("Pending"), 1)
    );

    report(&fake, &pod_name, &[]);
    step(&fake, &ctx, "ses").await;
    let s = status(&fake, "ses");
    assert_eq!(
        (s["phase"].as_str(), s["podName"].as_str(), ready_reason(&s)),
        (Some("Ready"), Some(pod_name.as_str()), "PodReady")
    );
    assert!(s.get("installedPackages").is_none(), "nothing installed");
    let pod = fake.get(PODS, &pod_name).unwrap();
    assert_eq!(pod["metadata"]["annotations"]["pyexec.io/runner-ready"], r#"{"installed":[]}"#);
    assert!(s["readyAt"].is_string());
    let cr: PythonSession = serde_json::from_value(fake.get(SESSIONS, "ses").unwrap()).unwrap();
    assert_eq!(cr.phase(), SessionPhase::Ready);

    // Ready and unchanged: no status write.
    fake.clear_calls();
    let action = step(&fake, &ctx, "ses").await;
    assert!(fake.calls_matching("PATCH", "/pythonsessions/").is_empty(), "{:?}", fake.calls());
    assert_ne!(action, Action::await_change(), "looked at again at the next expiry");
}

#[tokio::test]
async fn a_deleted_pod_is_replaced_and_counted_once() {
    let (fake, ctx, first) = ready_session("ses", json!({})).await;
    // The API server restarts the interpreter: it deletes the Pod.
    fake.delete(PODS, &first);
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;
    let s = status(&fake, "ses");
    assert_eq!(
        (s["phase"].as_str(), ready_reason(&s), s["restarts"].as_i64()),
        (Some("Pending"), "Restarting", Some(1))
    );
    let second = s["podName"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(posts(&fake), [PODS], "the ConfigMap and the policy exist already");
    let pods = session_pods(&ctx, "uid-ses").await;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["metadata"]["annotations"][RESTARTS_ANNOTATION], "1");

    // Reconciled again before the status is seen (or after an operator restart): no third Pod, no second count.
    step(&fake, &ctx, "ses").await;
    assert_eq!(session_pods(&ctx, "uid-ses").await.len(), 1);
    assert_eq!(status(&fake, "ses")["restarts"], 1);

    make_ready(&fake, &ctx, "ses", &second).await;
    let s = status(&fake, "ses");
    assert_eq!(
        (s["phase"].as_str(), s["podName"].as_str(), s["restarts"].as_i64()),
        (Some("Ready"), Some(second.as_str()), Some(1))
    );
    assert!(ctx.metrics.render().contains("pyexec_operator_session_pods_created_total{kind=\"restart\"} 1"));
}

#[tokio::test]
async fn a_pod_that_dies_while_ready_is_deleted_and_replaced() {
    let (fake, ctx, first) = ready_session("ses", json!({})).await;
    // Out of memory: the container ended, the Pod failed (restartPolicy Never).
    fake.set_status(
        PODS,
        &first,
        json!({"phase": "Failed", "containerStatuses": [container("python", json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))]}),
    );
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;
    let deletes = fake.calls_to("DELETE", &format!("{PODS}/{first}"));
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].body["preconditions"]["uid"], format!("uid-{first}"));
    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), s["restarts"].as_i64()), (Some("Pending"), Some(1)));
    assert!(s["message"].as_str().unwrap().contains("out of memory"), "{s}");
    let pods = session_pods(&ctx, "uid-ses").await;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["metadata"]["name"], s["podName"]);
}

#[tokio::test]
async fn an_idle_session_ends_its_pod_is_deleted_and_the_api_servers_activity_is_kept() {
    let (fake, ctx, pod) = ready_session("ses", json!({"idleTimeoutSeconds": 30})).await;
    let api: Api<PythonSession> = Api::namespaced(ctx.client.clone(), NS);
    // The API server records a call just now: the session stays, and is looked at again within the idle timeout.
    let activity = json!({"status": {"lastActivityAt": ago(0)}});
    api.patch_status("ses", &PatchParams::default(), &Patch::Merge(&activity)).await.unwrap();
    let action = step(&fake, &ctx, "ses").await;
    assert_eq!(status(&fake, "ses")["phase"], "Ready");
    assert!(action != Action::await_change() && action != Action::requeue(MAX_REQUEUE), "{action:?}");

    // Later: the last call and the readiness are both older than the idle timeout.
    let mut object = fake.get(SESSIONS, "ses").unwrap();
    object["status"]["readyAt"] = json!(ago(100));
    fake.put(SESSIONS, object);
    let last_call = ago(50);
    let activity = json!({"status": {"lastActivityAt": last_call}});
    api.patch_status("ses", &PatchParams::default(), &Patch::Merge(&activity)).await.unwrap();
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;

    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Ended"), "IdleTimeout"));
    assert_eq!(s["message"], "the session was idle for 30s");
    assert!(s.get("podName").is_none(), "no Pod to attach to: {s}");
    assert!(s["endedAt"].is_string());
    assert_eq!(s["lastActivityAt"], json!(last_call), "the API server's field is never written by the operator");
    assert_eq!(fake.calls_to("DELETE", &format!("{PODS}/{pod}")).len(), 1);
    assert!(fake.get(PODS, &pod).is_none());
    assert!(fake.get(SESSIONS, "ses").is_some(), "the resource stays, Ended, for the API server to see");
    assert!(
        ctx.metrics.render().contains("pyexec_operator_sessions_ended_total{phase=\"Ended\",reason=\"IdleTimeout\"} 1")
    );

    // Ended is final: nothing is created again.
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;
    assert!(posts(&fake).is_empty());
    assert_eq!(status(&fake, "ses")["phase"], "Ended");
}

#[tokio::test]
async fn a_session_past_its_lifetime_ends_and_is_deleted_after_the_grace() {
    let (fake, ctx) = start();
    let mut old = session("old", json!({"maxLifetimeSeconds": 60}));
    old["metadata"]["creationTimestamp"] = json!(ago(61));
    fake.put(SESSIONS, old);
    step(&fake, &ctx, "old").await;
    let s = status(&fake, "old");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Ended"), "LifetimeExceeded"));
    assert!(fake.calls_to("POST", PODS).is_empty(), "no Pod for a session past its lifetime");

    // Nobody deleted it: 10 minutes after it ended, the operator does.
    let mut object = fake.get(SESSIONS, "old").unwrap();
    object["status"]["endedAt"] = json!(ago(601));
    fake.put(SESSIONS, object);
    step(&fake, &ctx, "old").await;
    let deletes = fake.calls_to("DELETE", &format!("{SESSIONS}/old"));
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].body["preconditions"]["uid"], "uid-old");
    assert!(fake.get(SESSIONS, "old").is_none());
}

#[tokio::test]
async fn refused_sessions_fail_with_a_reason_and_get_nothing() {
    let (fake, ctx) = start();
    fake.put(SESSIONS, session("pkgs", json!({"requirementsTxt": "pandas\n"})));
    fake.put(SESSIONS, session("miner", json!({"image": "attacker/miner"})));
    step(&fake, &ctx, "pkgs").await;
    step(&fake, &ctx, "miner").await;
    let s = status(&fake, "pkgs");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Failed"), "InstallUnavailable"));
    assert!(s["message"].as_str().unwrap().contains("no package index configured"), "{s}");
    assert_eq!(ready_reason(&status(&fake, "miner")), "ImageNotAllowed");
    assert!(posts(&fake).is_empty(), "nothing is created for a refused session");
}

#[tokio::test]
async fn a_name_taken_by_someone_elses_object_fails_the_session_and_is_left_alone() {
    let (fake, ctx) = start();
    fake.put(
        CONFIG_MAPS,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "pyexec-session-ses"}, "data": {"mine": "yes"}}),
    );
    fake.put(SESSIONS, session("ses", json!({})));
    step(&fake, &ctx, "ses").await;
    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Failed"), "NameConflict"));
    assert!(fake.calls_to("POST", PODS).is_empty());
    assert_eq!(fake.get(CONFIG_MAPS, "pyexec-session-ses").unwrap()["data"]["mine"], "yes");
}

#[tokio::test]
async fn a_pod_refused_by_a_quota_is_created_once_there_is_room() {
    let (fake, ctx) = start();
    fake.put(SESSIONS, session("ses", json!({})));
    fake.fail_next("POST", PODS, 1, Fault::StatusWithMessage(403, "exceeded quota: pods, requested: pods=1"));
    let action = step(&fake, &ctx, "ses").await;
    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Pending"), "QuotaExceeded"));
    assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    step(&fake, &ctx, "ses").await;
    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), ready_reason(&s), s["restarts"].as_i64()), (Some("Pending"), "Starting", Some(0)));
    assert_eq!(session_pods(&ctx, "uid-ses").await.len(), 1);
}

/// The install container ran (`exit`) and, when it succeeded, the runner's container runs.
fn install_ended(fake: &FakeApi, pod: &str, exit: i32) {
    let now = Timestamp::now().to_string();
    let install = container("install", json!({"terminated": {"exitCode": exit, "reason": "Error", "finishedAt": now}}));
    let status = if exit == 0 {
        let mut running = container("python", json!({"running": {"startedAt": now}}));
        running["ready"] = json!(true);
        json!({"phase": "Running", "startTime": now, "initContainerStatuses": [install], "containerStatuses": [running]})
    } else {
        json!({"phase": "Failed", "startTime": now, "initContainerStatuses": [install],
               "containerStatuses": [container("python", json!({"waiting": {"reason": "PodInitializing"}}))]})
    };
    fake.set_status(PODS, pod, status);
}

#[tokio::test]
async fn requirements_install_under_the_install_stage_then_the_network_closes_before_the_go_ahead() {
    let (fake, ctx) = start_with(with_index());
    fake.put(SESSIONS, session("ses", json!({"requirementsTxt": "six\n"})));
    step(&fake, &ctx, "ses").await;

    // The runner and the requirements, the session's policy, and the install stage for the new Pod alone: all
    // before the Pod.
    assert_eq!(posts(&fake), [CONFIG_MAPS, POLICIES, POLICIES, PODS]);
    assert_eq!(fake.get(CONFIG_MAPS, "pyexec-session-ses").unwrap()["data"]["requirements.txt"], "six\n");
    let install = fake.get(POLICIES, INSTALL_POLICY).unwrap();
    assert_eq!(install["metadata"]["annotations"]["pyexec.io/network-stage"], "install");
    assert_eq!(install["spec"]["egress"][1]["to"][0]["ipBlock"]["cidr"], "10.9.8.7/32", "the package index");
    assert_eq!(
        install["spec"]["podSelector"]["matchLabels"],
        json!({SESSION_UID_LABEL: "uid-ses", "pyexec.io/session-pod": "0"})
    );
    assert_eq!(install["metadata"]["ownerReferences"][0]["uid"], "uid-ses");
    assert_eq!(fake.get(POLICIES, "pyexec-session-ses").unwrap()["spec"]["egress"], json!([]), "the session's own");
    let pod = fake.calls_to("POST", PODS)[0].body.clone();
    assert_eq!(pod["metadata"]["labels"]["pyexec.io/session-pod"], "0");
    let init = &pod["spec"]["initContainers"][0];
    assert_eq!(init["name"], "install");
    assert_eq!(init["command"], json!(["python", "-I", "/opt/pyexec/pod_runner.py", "install"]));
    assert!(init["env"].as_array().unwrap().iter().any(|e| e["name"] == "PIP_INDEX_URL"));
    let main = &pod["spec"]["containers"][0];
    assert!(
        main["volumeMounts"].as_array().unwrap().iter().any(|m| m["mountPath"] == "/deps" && m["readOnly"] == true)
    );
    let name = status(&fake, "ses")["podName"].as_str().unwrap().to_owned();

    // Installing: the session says so, and nothing is sent to the runner.
    let installing = container("install", json!({"running": {"startedAt": Timestamp::now().to_string()}}));
    fake.set_status(
        PODS,
        &name,
        json!({"phase": "Pending", "initContainerStatuses": [installing],
               "containerStatuses": [container("python", json!({"waiting": {"reason": "PodInitializing"}}))]}),
    );
    step(&fake, &ctx, "ses").await;
    let s = status(&fake, "ses");
    assert_eq!(s["phase"], "Pending");
    assert!(s["message"].as_str().unwrap().ends_with("installing the requirements"), "{s}");
    assert!(fake.calls_matching("", "/attach").is_empty());

    // Installed: the install stage goes, then the go-ahead.
    install_ended(&fake, &name, 0);
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;
    let calls = fake.calls();
    let deleted = calls
        .iter()
        .position(|c| c.method == "DELETE" && c.path == format!("{POLICIES}/{INSTALL_POLICY}"))
        .expect("the install stage's policy was deleted");
    let attached = calls.iter().position(|c| c.path.ends_with("/attach")).expect("the go-ahead");
    assert!(deleted < attached, "the network closes before the go-ahead: {calls:?}");
    assert!(fake.get(POLICIES, INSTALL_POLICY).is_none());
    assert!(fake.get(POLICIES, "pyexec-session-ses").is_some(), "the session's own policy stays");
    assert_eq!(fake.attached(&name, "python"), [GO_AHEAD.as_bytes()]);
    assert_eq!(status(&fake, "ses")["phase"], "Pending", "not before the runner's report");

    report(&fake, &name, &["six==1.17.0"]);
    step(&fake, &ctx, "ses").await;
    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Ready"), "PodReady"));
    assert_eq!(s["installedPackages"], json!(["six==1.17.0"]));
}

#[tokio::test]
async fn a_failed_install_fails_the_session_with_pips_reason() {
    let (fake, ctx) = start_with(with_index());
    fake.put(SESSIONS, session("ses", json!({"requirementsTxt": "nosuchpackage\n"})));
    step(&fake, &ctx, "ses").await;
    let name = status(&fake, "ses")["podName"].as_str().unwrap().to_owned();
    fake.set_log(
        &name,
        "install",
        "+ python -m pip install ...\nERROR: Could not find a version that satisfies the requirement nosuchpackage \
         (from versions: none)\nERROR: No matching distribution found for nosuchpackage\n",
    );
    install_ended(&fake, &name, 1);
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;

    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Failed"), "InstallFailed"));
    assert_eq!(
        s["message"],
        "installing dependencies failed: No matching distribution found for nosuchpackage (only binary wheels are \
         installed unless the operator's packageIndex.allowSdist is set)"
    );
    let calls = fake.calls();
    let read = calls.iter().position(|c| c.path.ends_with("/log") && c.query.contains("container=install"));
    let deleted = calls.iter().position(|c| c.method == "DELETE" && c.path == format!("{PODS}/{name}"));
    assert!(read.unwrap() < deleted.unwrap(), "the log is read while the Pod is there: {calls:?}");
    assert!(fake.calls_matching("", "/attach").is_empty(), "nothing was sent to the runner");
    assert!(
        ctx.metrics
            .render()
            .contains("pyexec_operator_sessions_ended_total{phase=\"Failed\",reason=\"InstallFailed\"} 1")
    );
    // Failed is final: no second Pod.
    step(&fake, &ctx, "ses").await;
    assert_eq!(fake.calls_to("POST", PODS).len(), 0);
}

#[tokio::test]
async fn a_restarted_pod_installs_again_under_its_own_install_stage() {
    let (fake, ctx) = start_with(with_index());
    fake.put(SESSIONS, session("ses", json!({"requirementsTxt": "six\n"})));
    step(&fake, &ctx, "ses").await;
    let first = status(&fake, "ses")["podName"].as_str().unwrap().to_owned();
    install_ended(&fake, &first, 0);
    step(&fake, &ctx, "ses").await;
    report(&fake, &first, &["six==1.17.0"]);
    step(&fake, &ctx, "ses").await;
    assert_eq!(status(&fake, "ses")["phase"], "Ready");
    assert!(fake.get(POLICIES, INSTALL_POLICY).is_none());

    // The API server restarts the interpreter.
    fake.delete(PODS, &first);
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;
    let second = status(&fake, "ses")["podName"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    let install = fake.get(POLICIES, INSTALL_POLICY).expect("the install stage again, for the new Pod");
    assert_eq!(install["spec"]["podSelector"]["matchLabels"]["pyexec.io/session-pod"], "1");
    let pod = fake.get(PODS, &second).unwrap();
    assert_eq!(pod["metadata"]["labels"]["pyexec.io/session-pod"], "1");
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "install", "a new Pod, a new /deps: installed again");
    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Pending"), "Restarting"));
    assert_eq!(s["installedPackages"], json!(["six==1.17.0"]), "what the session's Pods install");

    install_ended(&fake, &second, 0);
    step(&fake, &ctx, "ses").await;
    assert!(fake.get(POLICIES, INSTALL_POLICY).is_none(), "closed before the go-ahead");
    assert_eq!(fake.attached(&second, "python"), [GO_AHEAD.as_bytes()]);
    report(&fake, &second, &["six==1.17.0"]);
    step(&fake, &ctx, "ses").await;
    let s = status(&fake, "ses");
    assert_eq!(
        (s["phase"].as_str(), s["podName"].as_str(), s["restarts"].as_i64()),
        (Some("Ready"), Some(second.as_str()), Some(1))
    );
}

#[tokio::test]
async fn an_older_operators_runners_are_replaced_before_the_next_pod() {
    let (fake, ctx, first) = ready_session("ses", json!({})).await;
    // The ConfigMap an operator before the gate made: no Pod runner, no fence. The next Pod would not start with it.
    let mut old = fake.get(CONFIG_MAPS, "pyexec-session-ses").unwrap();
    old["data"] = json!({"session_runner.py": "old", "eval_runner.py": "old"});
    fake.put(CONFIG_MAPS, old);
    fake.delete(PODS, &first);
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;
    let calls = fake.calls();
    let deleted = calls.iter().position(|c| c.method == "DELETE" && c.path.ends_with("/configmaps/pyexec-session-ses"));
    let created = calls.iter().position(|c| c.method == "POST" && c.path == PODS);
    assert!(deleted.unwrap() < created.unwrap(), "{calls:?}");
    let map = fake.get(CONFIG_MAPS, "pyexec-session-ses").unwrap();
    assert_eq!(map["data"]["pod_runner.py"], pyexec_core::pod::RUNNER_SOURCE);
    assert_eq!(map["metadata"]["ownerReferences"][0]["uid"], "uid-ses");
    // Current: left alone at the next restart.
    let second = status(&fake, "ses")["podName"].as_str().unwrap().to_owned();
    fake.delete(PODS, &second);
    fake.clear_calls();
    step(&fake, &ctx, "ses").await;
    assert!(fake.calls_matching("DELETE", "/configmaps/").is_empty());
}

#[tokio::test]
async fn an_install_stage_name_taken_by_someone_elses_policy_fails_the_session_before_any_pod() {
    let (fake, ctx) = start_with(with_index());
    fake.put(
        POLICIES,
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": INSTALL_POLICY}, "spec": {"podSelector": {}, "egress": [{}]}}),
    );
    fake.put(SESSIONS, session("ses", json!({"requirementsTxt": "six\n"})));
    step(&fake, &ctx, "ses").await;
    let s = status(&fake, "ses");
    assert_eq!((s["phase"].as_str(), ready_reason(&s)), (Some("Failed"), "NameConflict"));
    assert!(s["message"].as_str().unwrap().contains(INSTALL_POLICY), "{s}");
    assert!(fake.calls_to("POST", PODS).is_empty());
    assert_eq!(fake.get(POLICIES, INSTALL_POLICY).unwrap()["spec"]["egress"], json!([{}]), "left alone");
}
