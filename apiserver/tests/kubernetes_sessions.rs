//! Sessions on the Kubernetes backend against the fake Kubernetes API, with the real session runner (CPython, in
//! mux mode, as the operator's session Pod runs it) behind the fake's attach: the test plays the operator, making
//! each PythonSession's Pod ready and replacing a deleted one. State between calls, an in-band interrupt at the
//! timeout, a replaced Pod for a call that will not stop, one call at a time through the busy annotation, files in
//! and out, the activity the operator's idle timeout counts from, the cap, and deletion.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pyexec_apiserver::backend::kubernetes::{KubernetesBackend, KubernetesConfig, SessionSettings};
use pyexec_apiserver::backend::{Backend, BackendError, StdinFile};
use pyexec_apiserver::metrics::Metrics;
use pyexec_core::session::{NewSession, SessionTimeouts};
use pyexec_core::{EvalRequest, ExecutionSpec, Policy, PythonVersion};
use pyexec_testkit::kube::*;
use serde_json::{Value, json};

const SESSIONS: &str = "/apis/pyexec.io/v1alpha1/namespaces/team-a/pythonsessions";

async fn backend(dir: &Path) -> (Arc<KubernetesBackend>, FakeApi) {
    let (client, fake) = FakeApi::start();
    fake.serve_attach();
    let config = KubernetesConfig {
        namespace: NS.into(),
        python_versions: [10, 11, 12, 13].map(|minor| PythonVersion { minor }).to_vec(),
        default_python: PythonVersion { minor: 12 },
        ttl_seconds: 300,
        runtime_class: None,
        data_dir: dir.to_owned(),
        archive_token: None,
        logs_token: None,
        logs_url: None,
        max_output_bytes: 1 << 20,
        kill_wait: Duration::from_millis(600),
        max_in_flight: 10,
        max_queue: 10,
        quotas: Default::default(),
        sessions: SessionSettings {
            max_sessions: 2,
            max_lifetime: Duration::from_secs(3600),
            file_max_bytes: 1 << 20,
            caps: pyexec_backend::session::CallCaps { output_bytes: 1 << 20, files_bytes: 1 << 20, files_count: 100 },
        },
    };
    let backend = KubernetesBackend::start(client, config, Arc::new(Metrics::new())).await.unwrap();
    (Arc::new(backend), fake)
}

/// The operator's part: every new PythonSession gets a Pod running the session runner and turns Ready; a Ready
/// session whose Pod was deleted gets a new one and a restart counted.
fn play_operator(fake: FakeApi, root: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let runners = root.join("runners");
        std::fs::create_dir_all(&runners).unwrap();
        std::fs::write(runners.join("eval_runner.py"), pyexec_core::eval::EVAL_RUNNER_SOURCE).unwrap();
        std::fs::write(runners.join("session_runner.py"), pyexec_core::session::SESSION_RUNNER_SOURCE).unwrap();
        let mut pods = 0;
        loop {
            for call in fake.calls_to("POST", SESSIONS) {
                let Some(name) = call.body["metadata"]["name"].as_str().map(str::to_owned) else { continue };
                let Some(session) = fake.get(SESSIONS, &name) else { continue };
                let status = &session["status"];
                if status["phase"].is_null()
                    && session["spec"]["requirementsTxt"].as_str().is_some_and(|r| r.contains("no-such-package"))
                {
                    // The operator's install failed: the session fails with pip's reason.
                    let message =
                        "installing the requirements failed: No matching distribution found for no-such-package";
                    fake.set_status(SESSIONS, &name, json!({"phase": "Failed", "message": message}));
                    continue;
                }
                let pod_gone = status["podName"].as_str().is_some_and(|p| fake.get(PODS, p).is_none());
                if status["phase"].is_null() || (status["phase"] == "Ready" && pod_gone) {
                    pods += 1;
                    let pod = format!("{name}-{pods}");
                    let work = root.join(&pod);
                    std::fs::create_dir_all(&work).unwrap();
                    fake.put(
                        PODS,
                        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": NS}}),
                    );
                    let mut command = std::process::Command::new("python3");
                    command
                        .arg(runners.join("session_runner.py"))
                        .arg("--mux")
                        .env("PYEXEC_WORK_DIR", &work)
                        .env("PYEXEC_FILES_ROOT", &work)
                        .env("PYTHONUNBUFFERED", "1");
                    fake.run_container(&pod, "python", command);
                    let restarts = status["restarts"].as_i64().unwrap_or(0) + i64::from(pod_gone);
                    fake.set_status(
                        SESSIONS,
                        &name,
                        json!({"phase": "Ready", "podName": pod, "restarts": restarts,
                               "readyAt": "2026-12-06T22:00:00Z"}),
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    })
}

fn new_session(json: Value) -> (ExecutionSpec, u64) {
    let req: NewSession = serde_json::from_value(json).unwrap();
    Policy::default().session_spec(req, SessionTimeouts { idle_default: 600, idle_max: 3600 }).unwrap()
}

fn call(code: &str, timeout: i64) -> pyexec_core::session::SessionCall {
    let req: EvalRequest =
        serde_json::from_value(json!({"code": code, "config": {"timeout_seconds": timeout}})).unwrap();
    Policy::default().session_call(req).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_is_a_pod_the_api_server_attaches_to() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let operator = play_operator(fake.clone(), dir.path().join("pods"));

    let (spec, idle) = new_session(json!({"config": {"memory_mb": 512, "idle_timeout_seconds": 60}}));
    let info = backend.create_session(spec, idle).await.unwrap();
    let id = info.session_id.clone();
    assert!(id.starts_with("ses_"), "{id}");
    let name = id.replacen('_', "-", 1);
    let resource = fake.get(SESSIONS, &name).unwrap();
    assert_eq!(resource["spec"]["limits"]["memoryMB"], 512);
    assert_eq!(resource["spec"]["idleTimeoutSeconds"], 60);
    assert_eq!(resource["spec"]["network"], "none");

    let first = backend.session_eval(&id, call("x = 41\nprint('hello')", 10)).await.unwrap();
    assert_eq!((first.status.as_str(), first.stdout.as_str()), ("completed", "hello\n"), "{first:?}");
    let second = backend.session_eval(&id, call("x + 1", 10)).await.unwrap();
    assert_eq!(second.result.as_deref(), Some("42"));
    assert_eq!(second.session_id.as_deref(), Some(id.as_str()));
    // Each call is an execution too, on every replica: a PythonExecution that names the session, with the result.
    let recorded = backend.get(&second.execution_id).await.unwrap().expect("the call's record");
    assert_eq!((recorded.status, recorded.result.as_deref()), (pyexec_core::ExecutionStatus::Completed, Some("42")));
    assert_eq!(recorded.session_id.as_deref(), Some(id.as_str()));
    let record = fake.get(EXECUTIONS, &second.execution_id.replacen('_', "-", 1)).unwrap();
    assert_eq!(record["spec"]["sessionRef"], name.as_str());
    assert_eq!(record["spec"]["source"]["files"][0]["content"], "x + 1");
    let finished = record["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Finished");
    assert_eq!(finished.unwrap()["reason"], "Completed");
    // The runner reports its cgroup's memory after each call where it sees the counter (a Pod's container does).
    let memory = backend.get_session(&id).await.unwrap().unwrap().memory_used_bytes;
    let counter = ["/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"];
    if counter.iter().any(|c| Path::new(c).exists()) {
        assert!(memory.is_some_and(|m| m > 1 << 20), "{memory:?}");
    } else {
        assert_eq!(memory, None);
    }
    let listed = backend.list(pyexec_apiserver::backend::ListQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert!(listed.executions.iter().any(|e| e.execution_id == second.execution_id && e.session_id.is_some()));
    let of = |session: &str| pyexec_apiserver::backend::ListQuery {
        limit: 10,
        session_id: Some(session.to_owned()),
        ..Default::default()
    };
    let calls = backend.list(of(&id)).await.unwrap().executions;
    assert_eq!(calls.len(), 2, "the session's calls: {calls:?}");
    assert!(calls.iter().all(|e| e.session_id.as_deref() == Some(id.as_str())));
    assert!(backend.list(of("ses_00000000-0000-4000-8000-000000000000")).await.unwrap().executions.is_empty());
    let resource = fake.get(SESSIONS, &name).unwrap();
    assert_eq!(resource["metadata"]["annotations"]["pyexec.io/calls"], "2");
    assert!(resource["metadata"]["annotations"].get("pyexec.io/busy").is_none(), "released after the call");
    assert!(resource["status"]["lastActivityAt"].is_string(), "the idle timeout counts from the last call");

    // The timeout interrupts the cell from inside the Pod; the state survives.
    let slow = backend.session_eval(&id, call("import time\nwhile True:\n    time.sleep(0.01)", 1)).await.unwrap();
    assert_eq!((slow.exit_code, slow.error_type.as_deref()), (124, Some("KeyboardInterrupt")), "{slow:?}");
    assert!(!slow.session_restarted);
    assert_eq!(backend.session_eval(&id, call("x", 10)).await.unwrap().result.as_deref(), Some("41"));

    // Files in and out.
    let upload = dir.path().join("upload");
    std::fs::write(&upload, "a,b\n1,2\n").unwrap();
    let put = backend.session_upload(&id, "data/in.csv", StdinFile::new(upload)).await.unwrap();
    assert_eq!(put.size, 8);
    let wrote = backend.session_eval(&id, call("open('out.txt', 'w').write(open('data/in.csv').read())", 10)).await;
    assert_eq!(wrote.unwrap().files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["out.txt"]);
    let listed = backend.session_files(&id).await.unwrap();
    let paths: Vec<&str> = listed.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["data/in.csv", "out.txt"]);
    assert_eq!(backend.session_file(&id, "out.txt").await.unwrap(), b"a,b\n1,2\n");
    assert!(matches!(backend.session_file(&id, "missing").await, Err(BackendError::NotFound(_))));

    // One call at a time, across replicas: the busy annotation refuses a second one.
    let running = {
        let (backend, id) = (backend.clone(), id.clone());
        tokio::spawn(async move { backend.session_eval(&id, call("import time\ntime.sleep(1.5)\n'slow'", 10)).await })
    };
    let mut refused = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if let Err(BackendError::Conflict(message)) = backend.session_eval(&id, call("1", 10)).await {
            assert!(message.contains("busy"), "{message}");
            refused = true;
            break;
        }
    }
    assert!(refused, "a second call while one runs was not refused");
    assert_eq!(running.await.unwrap().unwrap().result.as_deref(), Some("'slow'"));

    // A call that will not stop: the Pod is replaced and the result says the state is lost.
    let stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass";
    let lost = backend.session_eval(&id, call(stubborn, 1)).await.unwrap();
    assert!(lost.session_restarted, "{lost:?}");
    let mut fresh = None;
    for _ in 0..100 {
        match backend.session_eval(&id, call("'x' in globals()", 10)).await {
            Ok(r) => {
                fresh = Some(r);
                break;
            }
            Err(BackendError::Conflict(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(fresh.unwrap().result.as_deref(), Some("False"), "a fresh interpreter");
    assert_eq!(backend.get_session(&id).await.unwrap().unwrap().restarts, 1);

    // DELETE of a running call's execution stops it (its Pod goes); the call answers `killed`, and so does its
    // record.
    let running = {
        let (backend, id) = (backend.clone(), id.clone());
        tokio::spawn(async move { backend.session_eval(&id, call("import time\ntime.sleep(30)", 60)).await })
    };
    let mut record = None;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let page =
            backend.list(pyexec_apiserver::backend::ListQuery { limit: 50, ..Default::default() }).await.unwrap();
        record = page.executions.into_iter().find(|e| e.status == pyexec_core::ExecutionStatus::Running);
        if record.is_some() {
            break;
        }
    }
    let running_id = record.expect("the running call is listed").execution_id;
    backend.kill(&running_id, pyexec_apiserver::backend::KillReason::Request).await.unwrap();
    let killed = tokio::time::timeout(Duration::from_secs(20), running).await.unwrap().unwrap().unwrap();
    assert_eq!((killed.status, killed.exit_code), (pyexec_core::ExecutionStatus::Killed, 137), "{killed:?}");
    assert!(killed.session_restarted && killed.error.as_deref().is_some_and(|e| e.contains("state is lost")));
    let recorded = backend.get(&running_id).await.unwrap().unwrap();
    assert_eq!(recorded.status, pyexec_core::ExecutionStatus::Killed);

    // An interpreter killed for memory takes the whole container: its status says OOMKilled, and so does the call.
    let pod = loop {
        let session = fake.get(SESSIONS, &name).unwrap();
        let pod = session["status"]["podName"].as_str().unwrap().to_owned();
        if fake.get(PODS, &pod).is_some() {
            break pod;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let oom_kill = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)";
    let killer = {
        let (backend, id) = (backend.clone(), id.clone());
        tokio::spawn(async move { backend.session_eval(&id, call(oom_kill, 10)).await })
    };
    let terminated = json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}});
    fake.set_status(PODS, &pod, json!({"phase": "Running", "containerStatuses": [container("python", terminated)]}));
    let oom = killer.await.unwrap().unwrap();
    assert!(oom.oom_killed && oom.exit_code == 137 && oom.session_restarted, "{oom:?}");

    // Deleted: gone for the API.
    let ended = backend.delete_session(&id).await.unwrap().unwrap();
    assert_eq!(ended.state, pyexec_core::session::SessionState::Ended);
    assert!(backend.get_session(&id).await.unwrap().is_none());
    assert!(matches!(backend.session_eval(&id, call("1", 10)).await, Err(BackendError::NotFound(_))));
    operator.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requirements_go_to_the_operator_and_the_cap_answers_429() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let operator = play_operator(fake.clone(), dir.path().join("pods"));
    // The operator installs them before the session is ready; a failed install fails the session with pip's reason.
    let (spec, idle) = new_session(json!({"requirements_txt": "no-such-package==1.0"}));
    match backend.create_session(spec, idle).await {
        Err(BackendError::Invalid(e)) => assert!(e.message.contains("No matching distribution"), "{}", e.message),
        other => panic!("{other:?}"),
    }
    let created = fake.calls_to("POST", SESSIONS);
    assert_eq!(created[0].body["spec"]["requirementsTxt"], "no-such-package==1.0");
    assert!(fake.get(SESSIONS, created[0].body["metadata"]["name"].as_str().unwrap()).is_none(), "deleted");
    for _ in 0..2 {
        let (spec, idle) = new_session(json!({}));
        backend.create_session(spec, idle).await.unwrap();
    }
    let (spec, idle) = new_session(json!({}));
    assert!(matches!(backend.create_session(spec, idle).await, Err(BackendError::Exhausted { .. })));
    assert_eq!(backend.list_sessions().await.unwrap().len(), 2);
    operator.abort();
}

#[tokio::test]
async fn a_session_started_under_an_idempotency_key_is_found_by_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let operator = play_operator(fake.clone(), dir.path().join("pods"));
    let record = |fingerprint: &str| pyexec_core::spec::IdempotencyRecord {
        key_hash: "5e55".repeat(16),
        fingerprint: fingerprint.to_owned(),
    };
    assert_eq!(backend.find_idempotent_session(&record("f1").key_hash).await.unwrap(), None);
    let (spec, idle) = new_session(json!({}));
    let keyed = ExecutionSpec { idempotency: Some(record("f1")), ..spec };
    let first = backend.create_session(keyed.clone(), idle).await.unwrap();
    // Its name comes from the key, and the request's fingerprint goes with it.
    let found = backend.find_idempotent_session(&record("f1").key_hash).await.unwrap().expect("found by its key");
    assert_eq!((found.info.session_id.as_str(), found.fingerprint.as_str()), (first.session_id.as_str(), "f1"));
    // A replica that lost the race to create it answers the session the other one created.
    let again = backend.create_session(keyed.clone(), idle).await.unwrap();
    assert_eq!(again.session_id, first.session_id);
    assert_eq!(fake.calls_to("POST", SESSIONS).len(), 2, "both tried, one resource");
    assert_eq!(backend.list_sessions().await.unwrap().len(), 1);
    // Once the session has ended, its key names nothing live; a start under it while the resource remains is a
    // conflict.
    let name = first.session_id.replacen('_', "-", 1);
    fake.set_status(SESSIONS, &name, json!({"phase": "Ended", "message": "idle"}));
    assert_eq!(backend.find_idempotent_session(&record("f1").key_hash).await.unwrap(), None);
    match backend.create_session(keyed, idle).await {
        Err(BackendError::Conflict(message)) => assert!(message.contains("Idempotency-Key"), "{message}"),
        other => panic!("{other:?}"),
    }
    operator.abort();
}
