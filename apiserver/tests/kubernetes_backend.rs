//! The Kubernetes backend against a fake Kubernetes API (kube's `tower-test` service with an in-memory store and
//! watches): requests become the PythonExecution resources the operator expects, statuses become wire results (the
//! same for `GET`, synchronous waits and the last event of `/events`), DELETE becomes the kill annotation, the
//! execution metrics count what the operator finishes, and the queue in front of the slots takes the tenants in
//! turn within their quotas.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use pyexec_apiserver::backend::kubernetes::{KubernetesBackend, KubernetesConfig, SessionSettings};
use pyexec_apiserver::backend::{Backend, BackendError, ExecutionEvent, KillReason, ListQuery, Source};
use pyexec_apiserver::metrics::Metrics;
use pyexec_backend::tenancy::{Quota, Quotas};
use pyexec_core::{CodeFile, ExecutionResult, ExecutionStatus, Policy, PythonVersion};
use pyexec_crds::contract::{API_SERVER, KILL_ANNOTATION, MANAGED_BY_LABEL, TENANT_LABEL};
use pyexec_testkit::kube::*;
use serde_json::{Value, json};

async fn backend(dir: &std::path::Path) -> (KubernetesBackend, FakeApi) {
    let (backend, fake, _) = backend_with_metrics(dir).await;
    (backend, fake)
}

async fn backend_with_metrics(dir: &std::path::Path) -> (KubernetesBackend, FakeApi, Metrics) {
    backend_capped(dir, 100, 1000).await
}

/// A backend with at most `max_in_flight` unfinished resources and `max_queue` submissions waiting.
async fn backend_capped(
    dir: &std::path::Path,
    max_in_flight: usize,
    max_queue: usize,
) -> (KubernetesBackend, FakeApi, Metrics) {
    backend_with_quotas(dir, max_in_flight, max_queue, Quotas::default()).await
}

/// [`backend_capped`] with the tenants' `quotas`.
async fn backend_with_quotas(
    dir: &std::path::Path,
    max_in_flight: usize,
    max_queue: usize,
    quotas: Quotas,
) -> (KubernetesBackend, FakeApi, Metrics) {
    let (client, fake) = FakeApi::start();
    let config = KubernetesConfig {
        namespace: NS.into(),
        python_versions: [10, 11, 12, 13].map(|minor| PythonVersion { minor }).to_vec(),
        default_python: PythonVersion { minor: 12 },
        ttl_seconds: 300,
        runtime_class: Some("gvisor".into()),
        data_dir: dir.to_owned(),
        archive_token: Some("archive-token".into()),
        logs_token: Some("logs-token".into()),
        logs_url: None,
        max_output_bytes: 1 << 20,
        kill_wait: Duration::from_millis(600),
        max_in_flight,
        max_queue,
        quotas,
        sessions: SessionSettings {
            max_sessions: 2,
            max_lifetime: Duration::from_secs(3600),
            file_max_bytes: 1 << 20,
            caps: pyexec_backend::session::CallCaps { output_bytes: 1 << 20, files_bytes: 1 << 20, files_count: 100 },
        },
    };
    let metrics = Metrics::new();
    (KubernetesBackend::start(client, config, Arc::new(metrics.clone())).await.unwrap(), fake, metrics)
}

/// Waits (a few seconds at most) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never happened: {what}");
}

/// The operator's log store with `stdout` for every execution, behind its token; its `logsRef` base.
async fn log_store(stdout: String) -> String {
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/logs/team-a/{uid}",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let body = stdout.clone();
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer logs-token") {
                    return axum::http::StatusCode::UNAUTHORIZED.into_response();
                }
                axum::Json(json!({"stdout": body, "stderr": ""})).into_response()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{base}/logs/team-a")
}

fn eval(body: Value) -> (pyexec_core::ExecutionSpec, Vec<CodeFile>) {
    Policy::default().spec_from_eval(serde_json::from_value(body).unwrap()).unwrap()
}

fn resource(fake: &FakeApi, id: &str) -> Value {
    fake.get(EXECUTIONS, &id.replacen('_', "-", 1)).unwrap()
}

#[tokio::test]
async fn guarded_and_disallowed_imports_are_marked_for_the_install_container() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let policy = Policy {
        auto_install: pyexec_core::requirements::AutoInstall::only(["six", "surely-not-a-real-pkg-xyz"]),
        ..Policy::default()
    };
    let code = "import six, reqeusts\ntry:\n    import surely_not_a_real_pkg_xyz\nexcept ImportError:\n    pass";
    let (spec, files) = policy.spec_from_eval(serde_json::from_value(json!({"code": code})).unwrap()).unwrap();
    let pending = backend.submit(spec, Source::Files(files)).await.unwrap();
    let cr = resource(&fake, &pending.execution_id);
    assert_eq!(
        cr["spec"]["requirements"],
        "six  # pyexec: detected\nsurely_not_a_real_pkg_xyz  # pyexec: optional\n\
         # pyexec: skipped reqeusts: not on the auto-install allow-list (PYEXEC_AUTO_INSTALL_ALLOW)",
        "the allow-list is applied before the resource exists; the operator installs what it says"
    );
}

#[tokio::test]
async fn eval_becomes_a_resource_with_detected_requirements() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let (spec, files) = eval(
        json!({"code": "import yaml, json\nimport numpy as np\nnp.arange(3)", "eval_last_expr": true, "python_version": "3.11"}),
    );
    backend.check(&spec).unwrap();
    let pending = backend.submit(spec, Source::Files(files)).await.unwrap();
    assert_eq!(pending.status, ExecutionStatus::Pending);
    let cr = resource(&fake, &pending.execution_id);
    assert_eq!(cr["metadata"]["labels"][MANAGED_BY_LABEL], API_SERVER);
    let spec = &cr["spec"];
    assert_eq!(spec["source"]["files"][0]["name"], "main.py");
    assert_eq!((spec["entrypoint"].as_str(), spec["evalLastExpr"].as_bool()), (Some("main.py"), Some(true)));
    assert_eq!(spec["pythonVersion"], "3.11");
    // Marked as detected: the install container skips a name the index lacks (pyexec_core::requirements).
    assert_eq!(
        spec["requirements"], "PyYAML  # pyexec: detected\nnumpy  # pyexec: detected",
        "json is stdlib; yaml maps to PyYAML"
    );
    assert_eq!(
        (spec["ttlSecondsAfterFinished"].as_u64(), spec["runtimeClassName"].as_str()),
        (Some(300), Some("gvisor"))
    );
    assert_eq!(spec["network"], "none");

    let (spec, files) = eval(json!({"code": "import yaml", "requirements_txt": "-"}));
    let pending = backend.submit(spec, Source::Files(files)).await.unwrap();
    assert_eq!(resource(&fake, &pending.execution_id)["spec"]["requirements"], "-", "nothing, not even a project file");
}

#[tokio::test]
async fn uploads_become_archives_the_operator_can_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let upload = backend.staging_dir().join("upload-1");
    std::fs::create_dir_all(&upload).unwrap();
    std::fs::write(upload.join("main.py"), "import six\nprint(six.PY3)").unwrap();
    std::fs::write(upload.join("requirements.txt"), "six==1.17.0\n").unwrap();
    let meta = serde_json::from_value(json!({"entrypoint": "main.py", "docker_image": "python:3.13-slim"})).unwrap();
    let spec = Policy::default().spec_from_metadata(meta).unwrap();
    backend.check(&spec).unwrap();
    let pending = backend.submit(spec, Source::Directory(upload.clone())).await.unwrap();
    let cr = resource(&fake, &pending.execution_id);
    let archive = &cr["spec"]["source"]["archive"];
    assert_eq!(archive["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(cr["spec"]["requirements"], "six==1.17.0", "the project's requirements.txt");
    assert_eq!((cr["spec"]["pythonVersion"].as_str(), cr["spec"].get("image")), (Some("3.13"), None));
    assert!(!upload.exists(), "the staged upload was packed");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = backend.archive_router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("{base}/internal/v1/archives/{}", archive["id"].as_str().unwrap());
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401, "only the operator's token reads archives");
    let bytes = client.get(&url).bearer_auth("archive-token").send().await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, archive["sizeBytes"].as_u64().unwrap());
}

#[tokio::test]
async fn images_and_versions_the_cluster_does_not_offer_are_400s() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, _) = backend(dir.path()).await;
    let meta = serde_json::from_value(json!({"docker_image": "ubuntu:24.04"})).unwrap();
    let err = backend.check(&Policy::default().spec_from_metadata(meta).unwrap()).unwrap_err();
    assert!(err.message.contains("not offered"), "{}", err.message);
}

#[tokio::test]
async fn statuses_become_results_and_full_outputs_come_from_the_log_store() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let (spec, files) = eval(json!({"code": "print('x' * 100000)"}));
    let id = backend.submit(spec, Source::Files(files)).await.unwrap().execution_id;
    assert_eq!(backend.get(&id).await.unwrap().unwrap().status, ExecutionStatus::Pending);

    // The operator's log store, with its token.
    let full = "x".repeat(100_000) + "\n";
    let name = id.replacen('_', "-", 1);
    let logs_url = format!("{}/uid-{name}", log_store(full.clone()).await);

    fake.set_status(
        EXECUTIONS,
        &name,
        json!({"phase": "Completed", "exitCode": 0, "stdout": &full[..65536],
        "stdoutTruncated": true, "logsRef": logs_url, "durationMs": 1234,
        "startTime": "2026-01-01T00:00:01Z", "completionTime": "2026-01-01T00:00:02Z"}),
    );
    let result = backend.get(&id).await.unwrap().unwrap();
    assert_eq!((result.status, result.exit_code, result.duration_ms), (ExecutionStatus::Completed, 0, 1234));
    assert_eq!((result.stdout.len(), result.stdout_truncated), (full.len(), false), "the whole output, from the store");
    assert!(backend.get("exe_00000000-0000-4000-8000-000000000000").await.unwrap().is_none());
    assert!(backend.get("not-an-id").await.unwrap().is_none());
}

#[tokio::test]
async fn delete_asks_the_operator_to_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let (spec, files) = eval(json!({"code": "import time; time.sleep(60)"}));
    let id = backend.submit(spec, Source::Files(files)).await.unwrap().execution_id;
    let name = id.replacen('_', "-", 1);
    fake.set_status(EXECUTIONS, &name, json!({"phase": "Running"}));
    assert_eq!(backend.kill(&id, KillReason::Request).await.unwrap(), Some(ExecutionStatus::Killed));
    assert!(resource(&fake, &id)["metadata"]["annotations"][KILL_ANNOTATION].is_string());

    fake.set_status(EXECUTIONS, &name, json!({"phase": "Completed", "exitCode": 0}));
    assert_eq!(
        backend.kill(&id, KillReason::Request).await.unwrap(),
        Some(ExecutionStatus::Completed),
        "terminal stays"
    );
    assert_eq!(backend.kill("exe_00000000-0000-4000-8000-000000000000", KillReason::Request).await.unwrap(), None);
}

#[tokio::test]
async fn lists_are_newest_first_filtered_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    for (i, phase) in ["Completed", "Failed", "Completed"].iter().enumerate() {
        let mut cr = execution(
            &format!("exe-00000000-0000-4000-8000-00000000000{i}"),
            json!({"source": {"files": [{"name": "main.py", "content": "1"}]}}),
        );
        cr["metadata"]["labels"] = json!({MANAGED_BY_LABEL: API_SERVER});
        cr["metadata"]["creationTimestamp"] = json!(format!("2026-01-01T00:00:0{i}Z"));
        cr["status"] = json!({"phase": phase, "exitCode": 0, "stdout": format!("{i}").repeat(100_000)});
        fake.put(EXECUTIONS, cr);
    }
    fake.put(
        EXECUTIONS,
        execution("someone-elses", json!({"source": {"files": [{"name": "main.py", "content": "1"}]}})),
    );
    let page =
        backend.list(ListQuery { status: None, limit: 2, before: None, tenant: None, session_id: None }).await.unwrap();
    let ids: Vec<&str> = page.executions.iter().map(|r| r.execution_id.as_str()).collect();
    assert_eq!(ids, ["exe_00000000-0000-4000-8000-000000000002", "exe_00000000-0000-4000-8000-000000000001"]);
    for r in &page.executions {
        assert_eq!(r.stdout.len(), pyexec_core::listing::OUTPUT_CAP_BYTES, "list items are summaries");
        assert!(r.stdout_truncated);
    }
    let next = backend
        .list(ListQuery { status: None, limit: 2, before: page.next_cursor, tenant: None, session_id: None })
        .await
        .unwrap();
    assert_eq!(next.executions.len(), 1, "only the API server's resources");
    assert!(next.next_cursor.is_none());
    let completed = backend
        .list(ListQuery {
            status: Some(ExecutionStatus::Completed),
            limit: 10,
            before: None,
            tenant: None,
            session_id: None,
        })
        .await
        .unwrap();
    assert_eq!(completed.executions.len(), 2);
}

/// A result as the tests compare them (everything a client sees).
fn seen(result: &ExecutionResult) -> Value {
    serde_json::to_value(result).unwrap()
}

#[tokio::test]
async fn events_end_with_the_result_get_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let (spec, files) = eval(json!({"code": "print('x' * 100000)"}));
    let id = backend.submit(spec, Source::Files(files)).await.unwrap().execution_id;
    let name = id.replacen('_', "-", 1);
    fake.set_status(EXECUTIONS, &name, json!({"phase": "Running"}));
    let mut events = backend.events(&id).await.unwrap().unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap();
    assert_eq!(first, Some(ExecutionEvent::Status(ExecutionStatus::Running)));

    // The operator finishes it; the status keeps 64 KiB, the log store the whole output.
    let full = "x".repeat(100_000) + "\n";
    let logs_ref = format!("{}/uid-{name}", log_store(full.clone()).await);
    fake.set_status(
        EXECUTIONS,
        &name,
        json!({"phase": "Completed", "exitCode": 0, "stdout": &full[..65536], "stdoutTruncated": true,
               "logsRef": logs_ref, "durationMs": 20, "startTime": "2026-01-01T00:00:01Z",
               "completionTime": "2026-01-01T00:00:02Z"}),
    );
    let last = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap();
    let Some(ExecutionEvent::Result(result)) = last else { panic!("the last event is the result: {last:?}") };
    assert_eq!((result.stdout.len(), result.stdout_truncated), (full.len(), false), "the whole output");
    let got = backend.get(&id).await.unwrap().unwrap();
    assert_eq!(seen(&result), seen(&got), "/events ends with what GET returns");
    assert!(tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().is_none(), "and ends");
}

#[tokio::test]
async fn synchronous_requests_wait_for_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let backend = Arc::new(backend);
    let (spec, files) = eval(json!({"code": "print(1)"}));
    let id = backend.submit(spec, Source::Files(files)).await.unwrap().execution_id;
    let mut waiting = tokio::spawn({
        let (backend, id) = (backend.clone(), id.clone());
        async move { backend.wait(&id).await }
    });
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiting).await.is_err(), "pending: still waiting");
    let name = id.replacen('_', "-", 1);
    fake.set_status(EXECUTIONS, &name, json!({"phase": "Completed", "exitCode": 3, "stdout": "1\n"}));
    let waited = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap().unwrap();
    assert_eq!((waited.status, waited.exit_code, waited.stdout.as_str()), (ExecutionStatus::Completed, 3, "1\n"));
    assert_eq!(seen(&waited), seen(&backend.get(&id).await.unwrap().unwrap()));
}

#[tokio::test]
async fn execution_metrics_count_what_the_operator_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake, metrics) = backend_with_metrics(dir.path()).await;
    let mut ids = Vec::new();
    for code in ["print(1)", "print(2)", "print(3)"] {
        let (spec, files) = eval(json!({"code": code}));
        ids.push(backend.submit(spec, Source::Files(files)).await.unwrap().execution_id.replacen('_', "-", 1));
    }
    // Not this server's: never counted.
    let mut other = execution("someone-elses", json!({"source": {"files": [{"name": "main.py", "content": "1"}]}}));
    other["metadata"]["labels"] = json!({MANAGED_BY_LABEL: API_SERVER});
    fake.put(EXECUTIONS, other);
    let has = |line: &str| metrics.render().lines().any(|l| l == line);
    assert!(has("pyexec_executions_submitted_total 3"), "{}", metrics.render());
    eventually("three pending", || has("pyexec_queue_depth 3")).await;

    fake.set_status(EXECUTIONS, &ids[0], json!({"phase": "Running"}));
    eventually("one running", || has("pyexec_executions_in_flight 1") && has("pyexec_queue_depth 2")).await;
    fake.set_status(EXECUTIONS, &ids[0], json!({"phase": "Completed", "exitCode": 0, "durationMs": 1500}));
    fake.set_status(EXECUTIONS, &ids[1], json!({"phase": "Failed", "exitCode": 124, "durationMs": 3000}));
    fake.set_status(EXECUTIONS, "someone-elses", json!({"phase": "Failed", "exitCode": 1, "durationMs": 10}));
    eventually("two finished", || {
        has("pyexec_executions_total{status=\"completed\",tenant=\"anonymous\"} 1")
            && has("pyexec_executions_total{status=\"failed\",tenant=\"anonymous\"} 1")
    })
    .await;
    assert!(has("pyexec_execution_duration_seconds_count{tenant=\"anonymous\"} 2"), "{}", metrics.render());
    assert!(has("pyexec_execution_duration_seconds_sum{tenant=\"anonymous\"} 4.5"), "{}", metrics.render());
    assert!(has("pyexec_executions_in_flight 0") && has("pyexec_queue_depth 1"), "{}", metrics.render());

    // Deleted before it finished: no longer pending, never counted as finished.
    fake.delete(EXECUTIONS, &ids[2]);
    eventually("none pending", || has("pyexec_queue_depth 0")).await;
    assert!(has("pyexec_executions_total{status=\"completed\",tenant=\"anonymous\"} 1"), "{}", metrics.render());
}

fn has_resource(fake: &FakeApi, id: &str) -> bool {
    fake.get(EXECUTIONS, &id.replacen('_', "-", 1)).is_some()
}

async fn submit(backend: &KubernetesBackend, code: &str) -> Result<String, BackendError> {
    let (spec, files) = eval(json!({"code": code}));
    backend.submit(spec, Source::Files(files)).await.map(|r| r.execution_id)
}

/// Submits `code` as `tenant` (as the API server does for a key of that tenant).
async fn submit_as(backend: &KubernetesBackend, tenant: &str, code: &str) -> Result<String, BackendError> {
    let (mut spec, files) = eval(json!({"code": code}));
    spec.tenant = Some(tenant.to_owned());
    backend.submit(spec, Source::Files(files)).await.map(|r| r.execution_id)
}

fn finish(fake: &FakeApi, id: &str) {
    fake.set_status(
        EXECUTIONS,
        &id.replacen('_', "-", 1),
        json!({"phase": "Completed", "exitCode": 0, "durationMs": 10}),
    );
}

fn quotas(per_tenant: &[(&str, Quota)]) -> Quotas {
    Quotas { default: Quota::default(), per_tenant: per_tenant.iter().map(|(t, q)| (t.to_string(), *q)).collect() }
}

#[tokio::test]
async fn resources_are_labelled_with_their_tenant_and_results_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake, metrics) = backend_capped(dir.path(), 1, 10).await;
    let (mut spec, files) = eval(json!({"code": "print(1)"}));
    spec.tenant = Some("alice".into());
    let pending = backend.submit(spec, Source::Files(files)).await.unwrap();
    assert_eq!(pending.tenant.as_deref(), Some("alice"), "the pending record");
    let alice = pending.execution_id;
    let cr = resource(&fake, &alice);
    assert_eq!((cr["metadata"]["labels"][TENANT_LABEL].as_str()), Some("alice"));
    assert_eq!(cr["metadata"]["labels"][MANAGED_BY_LABEL], API_SERVER);
    // Waiting for the slot: the record kept here names the tenant too.
    let waiting = submit_as(&backend, "bob", "print(2)").await.unwrap();
    assert!(!has_resource(&fake, &waiting));
    assert_eq!(backend.get(&waiting).await.unwrap().unwrap().tenant.as_deref(), Some("bob"));
    // Without a tenant (a server without API keys): no label.
    let anonymous = submit(&backend, "print(3)").await.unwrap();
    assert_eq!(backend.get(&anonymous).await.unwrap().unwrap().tenant, None);

    let page = backend
        .list(ListQuery { status: None, limit: 10, before: None, tenant: None, session_id: None })
        .await
        .unwrap();
    let listed: Vec<(&str, Option<&str>)> =
        page.executions.iter().map(|r| (r.execution_id.as_str(), r.tenant.as_deref())).collect();
    assert!(listed.contains(&(alice.as_str(), Some("alice"))) && listed.contains(&(waiting.as_str(), Some("bob"))));

    finish(&fake, &alice);
    let has = |line: &str| metrics.render().lines().any(|l| l == line);
    eventually("alice's counted as hers", || has("pyexec_executions_total{status=\"completed\",tenant=\"alice\"} 1"))
        .await;
    assert!(has("pyexec_execution_duration_seconds_count{tenant=\"alice\"} 1"), "{}", metrics.render());
    let done = backend.get(&alice).await.unwrap().unwrap();
    assert_eq!((done.status, done.tenant.as_deref()), (ExecutionStatus::Completed, Some("alice")), "from the resource");
    eventually("bob's gets the slot", || has_resource(&fake, &waiting)).await;
    assert_eq!(
        resource(&fake, &waiting)["metadata"]["labels"][TENANT_LABEL],
        "bob",
        "created from the queue: labelled"
    );
    eventually("the anonymous one gets the slot", || {
        finish(&fake, &waiting);
        has_resource(&fake, &anonymous)
    })
    .await;
    assert!(resource(&fake, &anonymous)["metadata"]["labels"].get(TENANT_LABEL).is_none(), "no tenant, no label");
}

#[tokio::test]
async fn a_tenant_with_one_waiting_is_served_before_the_third_of_a_tenant_with_many() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake, _) = backend_capped(dir.path(), 1, 100).await;
    let first = submit_as(&backend, "alice", "print(0)").await.unwrap();
    assert!(has_resource(&fake, &first));
    let mut alices = Vec::new();
    for i in 1..=5 {
        alices.push(submit_as(&backend, "alice", &format!("print({i})")).await.unwrap());
    }
    let bobs = submit_as(&backend, "bob", "print('b')").await.unwrap();
    assert_eq!(backend.health().queue.pending, 6);

    // Slots free one at a time; the order in which the resources are created is the order of the turns.
    let mut created = vec![first.clone()];
    let mut open = first;
    for _ in 0..6 {
        finish(&fake, &open);
        let before = created.len();
        eventually("the next waiting one is created", || {
            alices.iter().chain([&bobs]).any(|id| !created.contains(id) && has_resource(&fake, id))
        })
        .await;
        open =
            alices.iter().chain([&bobs]).find(|id| !created.contains(id) && has_resource(&fake, id)).unwrap().clone();
        created.push(open.clone());
        assert_eq!(created.len(), before + 1);
    }
    let position = |id: &String| created.iter().position(|c| c == id).unwrap();
    assert!(position(&bobs) < position(&alices[1]), "bob's before alice's third: {created:?}");
    let alice_order: Vec<usize> = alices.iter().map(position).collect();
    assert!(alice_order.windows(2).all(|w| w[0] < w[1]), "alice's in the order she submitted them");
}

#[tokio::test]
async fn a_tenant_beyond_its_max_queued_gets_429_naming_its_quota() {
    use axum::response::IntoResponse;
    let dir = tempfile::tempdir().unwrap();
    let alice = Quota { max_queued: Some(5), weight: 1, ..Quota::default() };
    let (backend, fake, _) = backend_with_quotas(dir.path(), 1, 100, quotas(&[("alice", alice)])).await;
    submit_as(&backend, "alice", "print(0)").await.unwrap();
    for i in 1..=5 {
        submit_as(&backend, "alice", &format!("print({i})")).await.unwrap();
    }
    let refused = submit_as(&backend, "alice", "print(6)").await.unwrap_err();
    let BackendError::Exhausted { message, .. } = &refused else { panic!("{refused:?}") };
    assert!(message.contains("tenant alice has 5 executions queued"), "{message}");
    assert!(message.contains("PYEXEC_TENANT_MAX_QUEUED"), "{message}");
    let response = pyexec_apiserver::error::ApiError::from(refused).into_response();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some());
    assert_eq!(fake.calls_to("POST", EXECUTIONS).len(), 1, "only the first has a resource");
    // Another tenant is not held to alice's quota.
    submit_as(&backend, "bob", "print('b')").await.unwrap();
    assert_eq!(backend.health().queue.pending, 6);
}

#[tokio::test]
async fn a_tenant_at_its_max_running_waits_while_another_takes_a_free_slot() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Quota { max_running: Some(1), weight: 1, ..Quota::default() };
    let (backend, fake, _) = backend_with_quotas(dir.path(), 2, 100, quotas(&[("alice", alice)])).await;
    let a1 = submit_as(&backend, "alice", "print(1)").await.unwrap();
    let a2 = submit_as(&backend, "alice", "print(2)").await.unwrap();
    assert!(has_resource(&fake, &a1));
    assert!(!has_resource(&fake, &a2), "a slot is free, but alice runs her one");
    let b1 = submit_as(&backend, "bob", "print('b')").await.unwrap();
    assert!(has_resource(&fake, &b1), "bob takes the free slot at once");
    let queue = backend.health().queue;
    assert_eq!((queue.pending, queue.running), (1, 2));
    finish(&fake, &b1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!has_resource(&fake, &a2), "a free slot does not lift alice's cap");
    finish(&fake, &a1);
    eventually("alice's second runs once her first is done", || has_resource(&fake, &a2)).await;
}

#[tokio::test]
async fn beyond_the_cap_submissions_wait_without_a_resource_and_beyond_the_queue_get_429() {
    use axum::response::IntoResponse;
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake, metrics) = backend_capped(dir.path(), 1, 1).await;
    let first = submit(&backend, "print(1)").await.unwrap();
    assert!(has_resource(&fake, &first));
    let second = submit(&backend, "print(2)").await.unwrap();
    assert!(!has_resource(&fake, &second), "no slot: it waits in the server");
    let waiting = backend.get(&second).await.unwrap().unwrap();
    assert_eq!((waiting.execution_id.as_str(), waiting.status), (second.as_str(), ExecutionStatus::Pending));
    let queue = backend.health().queue;
    assert_eq!((queue.pending, queue.running, queue.max_concurrent, queue.max_queue), (1, 1, 1, 1));
    let has = |line: &str| metrics.render().lines().any(|l| l == line);
    eventually("both counted as waiting", || has("pyexec_queue_depth 2")).await;

    let refused = submit(&backend, "print(3)").await.unwrap_err();
    let BackendError::QueueFull { pending, retry_after } = &refused else { panic!("{refused:?}") };
    assert_eq!(*pending, 1);
    assert!(*retry_after >= Duration::from_secs(1));
    let response = pyexec_apiserver::error::ApiError::from(refused).into_response();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some(), "{:?}", response.headers());
    assert_eq!(fake.calls_to("POST", EXECUTIONS).len(), 1, "the refused one made no resource either");

    // The waiting one is listed, and its events start `pending`.
    let page = backend
        .list(ListQuery {
            status: Some(ExecutionStatus::Pending),
            limit: 10,
            before: None,
            tenant: None,
            session_id: None,
        })
        .await
        .unwrap();
    let ids: Vec<&str> = page.executions.iter().map(|r| r.execution_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&second.as_str()));
    let mut events = backend.events(&second).await.unwrap().unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap();
    assert_eq!(event, Some(ExecutionEvent::Status(ExecutionStatus::Pending)));

    // The first finishes: its slot goes to the second.
    fake.set_status(EXECUTIONS, &first.replacen('_', "-", 1), json!({"phase": "Completed", "exitCode": 0}));
    eventually("the second's resource is created", || has_resource(&fake, &second)).await;
    assert_eq!(backend.get(&second).await.unwrap().unwrap().status, ExecutionStatus::Pending);
    let queue = backend.health().queue;
    assert_eq!((queue.pending, queue.running), (0, 1));
    let page = backend
        .list(ListQuery { status: None, limit: 10, before: None, tenant: None, session_id: None })
        .await
        .unwrap();
    assert_eq!(page.executions.len(), 2, "listed once, as its resource");

    // Its events go on from the resource, without a second `pending`.
    fake.set_status(EXECUTIONS, &second.replacen('_', "-", 1), json!({"phase": "Running"}));
    let event = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap();
    assert_eq!(event, Some(ExecutionEvent::Status(ExecutionStatus::Running)));
    let third = submit(&backend, "print(3)").await.unwrap();
    assert!(!has_resource(&fake, &third), "the slot is the second's until it finishes");
}

#[tokio::test]
async fn a_queued_execution_that_is_killed_never_gets_a_resource() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake, _) = backend_capped(dir.path(), 1, 5).await;
    let backend = Arc::new(backend);
    let first = submit(&backend, "print(1)").await.unwrap();
    let killed = submit(&backend, "print(2)").await.unwrap();
    let later = submit(&backend, "print(3)").await.unwrap();
    let waiting = tokio::spawn({
        let (backend, id) = (backend.clone(), killed.clone());
        async move { backend.wait(&id).await }
    });
    assert_eq!(backend.kill(&killed, KillReason::Request).await.unwrap(), Some(ExecutionStatus::Killed));
    let waited = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap().unwrap();
    assert_eq!(waited.status, ExecutionStatus::Killed, "a synchronous request gets the kill");
    assert_eq!(backend.get(&killed).await.unwrap().unwrap().status, ExecutionStatus::Killed);
    assert_eq!(backend.kill(&killed, KillReason::Request).await.unwrap(), Some(ExecutionStatus::Killed), "stays");
    let mut events = backend.events(&killed).await.unwrap().unwrap();
    let mut last = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap() {
        last = Some(event);
    }
    let Some(ExecutionEvent::Result(result)) = last else { panic!("ends with the result: {last:?}") };
    assert_eq!(result.status, ExecutionStatus::Killed);
    assert_eq!(backend.health().queue.pending, 1);

    fake.set_status(EXECUTIONS, &first.replacen('_', "-", 1), json!({"phase": "Failed", "exitCode": 1}));
    eventually("the next waiting one gets the slot", || has_resource(&fake, &later)).await;
    assert!(!has_resource(&fake, &killed), "killed while waiting: never created");
    let killed_list = backend
        .list(ListQuery {
            status: Some(ExecutionStatus::Killed),
            limit: 10,
            before: None,
            tenant: None,
            session_id: None,
        })
        .await
        .unwrap();
    assert_eq!(killed_list.executions.len(), 1);
    assert_eq!(killed_list.executions[0].execution_id, killed);
}

#[tokio::test]
async fn executions_still_waiting_at_shutdown_fail_without_running() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake, _) = backend_capped(dir.path(), 1, 5).await;
    let backend = Arc::new(backend);
    let running = submit(&backend, "print(1)").await.unwrap();
    let queued = submit(&backend, "print(2)").await.unwrap();
    let waiting = tokio::spawn({
        let (backend, id) = (backend.clone(), queued.clone());
        async move { backend.wait(&id).await }
    });
    backend.shutdown(Duration::from_millis(10)).await;
    let waited = tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap().unwrap();
    assert_eq!(waited.status, ExecutionStatus::Failed);
    assert!(waited.error.as_deref().unwrap().contains("never started"), "{:?}", waited.error);
    assert_eq!(backend.get(&queued).await.unwrap().unwrap().status, ExecutionStatus::Failed);
    assert!(matches!(submit(&backend, "print(3)").await, Err(BackendError::ShuttingDown)));
    fake.set_status(EXECUTIONS, &running.replacen('_', "-", 1), json!({"phase": "Completed", "exitCode": 0}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!has_resource(&fake, &queued), "dropped, never created");
    assert_eq!(backend.health().queue.pending, 0);
}

#[tokio::test]
async fn an_idempotency_key_names_the_resource_so_every_replica_finds_one_execution() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, fake) = backend(dir.path()).await;
    let record = |fingerprint: &str| pyexec_core::spec::IdempotencyRecord {
        key_hash: "0123456789abcdef0123456789abcdef01234567".into(),
        fingerprint: fingerprint.into(),
    };
    assert_eq!(backend.find_idempotent(&record("fp").key_hash).await.unwrap(), None);
    let (mut spec, files) = eval(json!({"code": "print(1)"}));
    spec.idempotency = Some(record("fp-1"));
    let first = backend.submit(spec.clone(), Source::Files(files.clone())).await.unwrap().execution_id;
    assert_eq!(resource(&fake, &first)["metadata"]["annotations"]["pyexec.io/request-fingerprint"], "fp-1");
    let found = backend.find_idempotent(&record("fp-1").key_hash).await.unwrap().unwrap();
    assert_eq!((found.execution_id.as_str(), found.fingerprint.as_str()), (first.as_str(), "fp-1"));

    // Another replica that missed it takes the same retry: its create meets the first, and it answers the same id.
    let again = backend.submit(spec.clone(), Source::Files(files.clone())).await.unwrap().execution_id;
    assert_eq!(again, first);
    assert_eq!(fake.calls_to("POST", EXECUTIONS).len(), 2, "one resource, the second create refused");
    // The same key with another request is refused there too.
    spec.idempotency = Some(record("fp-2"));
    assert!(matches!(backend.submit(spec, Source::Files(files)).await, Err(BackendError::Conflict(_))));
}
