//! Tenants on the embedded backend, end to end with the real sandbox (docs/tenants.md): the queue takes the
//! tenants in turn, a tenant beyond its `max_queued` gets the quota's 429, a tenant at its `max_running` leaves a
//! free slot to others, executions pending at a restart come back under their tenant, and every result and metric
//! names the tenant.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyexec_backend::tenancy::{Quota, Quotas};
use pyexec_backend::{Backend, BackendError, ExecutionMetrics, Source};
use pyexec_core::{ExecutionResult, ExecutionStatus, Policy};
use pyexec_embedded::{EmbeddedBackend, EmbeddedSettings, SessionSettings, WarmSettings};

/// What the backend reported, with tenants.
#[derive(Default)]
struct Recorded {
    submitted: Mutex<Vec<Option<String>>>,
    finished: Mutex<Vec<(String, Option<String>)>>,
}

impl ExecutionMetrics for Recorded {
    fn submitted(&self, tenant: Option<&str>) {
        self.submitted.lock().unwrap().push(tenant.map(str::to_owned));
    }
    fn finished(&self, result: &ExecutionResult) {
        self.finished.lock().unwrap().push((result.execution_id.clone(), result.tenant.clone()));
    }
    fn queue_depth(&self, _: usize) {}
    fn in_flight(&self, _: usize) {}
}

/// A backend over `data` with `max_concurrent` slots and the tenants' `quotas`.
async fn backend(data: &Path, max_concurrent: usize, quotas: Quotas) -> (EmbeddedBackend, Arc<Recorded>) {
    let settings = EmbeddedSettings {
        data_dir: data.to_owned(),
        max_concurrent,
        max_queue: 100,
        quotas,
        ttl: Duration::from_secs(3600),
        // A range of its own within the test ranges (the leak test looks at all of them), so that test binaries
        // running at once do not share host uids.
        sandbox_uid_base: 2_000_050_000,
        sandbox_uid_count: 4096,
        cgroup_favor_dynmods: false,
        pythons: Vec::new(),
        default_python: None,
        pids_max: 256,
        tmp_mb: 100,
        max_output_bytes: 1 << 20,
        uv: None,
        index_url: "https://pypi.org/simple".into(),
        index_hosts: Vec::new(),
        allow_sdist: false,
        env_cache_mb: 1024,
        install_timeout: Duration::from_secs(60),
        install_memory_mb: 1024,
        // Cold runs only: the order of starts is the queue's, not a pool's.
        warm: WarmSettings { enabled: false, ..WarmSettings::default() },
        sessions: SessionSettings::default(),
    };
    let metrics = Arc::new(Recorded::default());
    let backend = EmbeddedBackend::start(settings, metrics.clone()).await.expect("the sandbox works on this machine");
    (backend, metrics)
}

fn quotas(per_tenant: &[(&str, Quota)]) -> Quotas {
    Quotas { default: Quota::default(), per_tenant: per_tenant.iter().map(|(t, q)| (t.to_string(), *q)).collect() }
}

/// Submits `code` (`/eval`) as `tenant`, as the API server does for a key of that tenant.
async fn submit(backend: &EmbeddedBackend, tenant: Option<&str>, code: &str) -> Result<ExecutionResult, BackendError> {
    let req = serde_json::from_value(serde_json::json!({"code": code})).unwrap();
    let (mut spec, files) = Policy::default().spec_from_eval(req).unwrap();
    spec.tenant = tenant.map(str::to_owned);
    backend.check(&spec).unwrap();
    backend.submit(spec, Source::Files(files)).await
}

/// Waits until `id` is running.
async fn until_running(backend: &EmbeddedBackend, id: &str) {
    for _ in 0..400 {
        let status = backend.get(id).await.unwrap().unwrap().status;
        assert!(!status.is_terminal(), "{id} ended before it was seen running");
        if status == ExecutionStatus::Running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never started");
}

async fn wait(backend: &EmbeddedBackend, id: &str) -> ExecutionResult {
    tokio::time::timeout(Duration::from_secs(120), backend.wait(id)).await.unwrap().unwrap().unwrap()
}

fn started(r: &ExecutionResult) -> i64 {
    r.started_at.unwrap().unix_micros()
}

fn finished(r: &ExecutionResult) -> i64 {
    r.finished_at.unwrap().unix_micros()
}

/// The finished executions reported, once there are `n`.
async fn reported(metrics: &Recorded, n: usize) -> Vec<(String, Option<String>)> {
    for _ in 0..200 {
        let finished = metrics.finished.lock().unwrap().clone();
        if finished.len() >= n {
            assert_eq!(finished.len(), n, "{finished:?}");
            return finished;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{n} finished executions were never reported: {:?}", metrics.finished.lock().unwrap());
}

const SLOW: &str = "import time; time.sleep(1); print('done')";

#[tokio::test]
async fn tenants_are_served_in_turn_and_held_to_their_queue_quota() {
    let data = tempfile::tempdir().unwrap();
    let alice = Quota { max_queued: Some(5), weight: 1, ..Quota::default() };
    let (backend, metrics) = backend(data.path(), 1, quotas(&[("alice", alice)])).await;

    // Alice's first takes the one slot; five more wait, the most her quota allows.
    let first = submit(&backend, Some("alice"), SLOW).await.unwrap();
    assert_eq!((first.status, first.tenant.as_deref()), (ExecutionStatus::Pending, Some("alice")));
    until_running(&backend, &first.execution_id).await;
    let mut alices = vec![first.execution_id];
    for _ in 0..5 {
        alices.push(submit(&backend, Some("alice"), SLOW).await.unwrap().execution_id);
    }
    let refused = submit(&backend, Some("alice"), SLOW).await.unwrap_err();
    let BackendError::Exhausted { message, retry_after } = &refused else { panic!("{refused:?}") };
    assert!(message.starts_with("tenant alice has 5 executions queued"), "{message}");
    assert!(message.contains("PYEXEC_TENANT_MAX_QUEUED"), "{message}");
    assert!(*retry_after > Duration::ZERO);
    // Bob is not held to alice's quota, and does not wait for all of hers.
    let bob = submit(&backend, Some("bob"), "print('bob')").await.unwrap();
    assert_eq!(bob.tenant.as_deref(), Some("bob"));
    assert_eq!(backend.health().queue.pending, 6);
    let running = backend.get(&alices[0]).await.unwrap().unwrap();
    assert_eq!((running.status, running.tenant.as_deref()), (ExecutionStatus::Running, Some("alice")));

    let bob = wait(&backend, &bob.execution_id).await;
    assert_eq!(
        (bob.status, bob.stdout.as_str(), bob.tenant.as_deref()),
        (ExecutionStatus::Completed, "bob\n", Some("bob"))
    );
    let mut done = Vec::new();
    for id in &alices {
        done.push(wait(&backend, id).await);
    }
    assert!(done.iter().all(|r| r.status == ExecutionStatus::Completed && r.tenant.as_deref() == Some("alice")));
    assert!(started(&bob) < started(&done[2]), "bob's run starts before alice's third");
    assert!(started(&bob) > started(&done[1]), "after her second, whose turn it was");
    assert!(done.windows(2).all(|w| started(&w[0]) < started(&w[1])), "alice's in the order she submitted them");

    // The list's summaries and the stored records name the tenant too.
    let page = backend.list(pyexec_backend::ListQuery { limit: 50, ..Default::default() }).await.unwrap();
    assert_eq!(page.executions.len(), 7, "the refused one left no record");
    assert!(page.executions.iter().all(|r| r.tenant.is_some()), "{:?}", page.executions);
    let submitted = metrics.submitted.lock().unwrap().clone();
    assert_eq!(submitted.iter().filter(|t| t.as_deref() == Some("alice")).count(), 6);
    assert_eq!(submitted.iter().filter(|t| t.as_deref() == Some("bob")).count(), 1);
    // Reported once the waiters have their answer and the workspace is gone.
    let finished_tenants = reported(&metrics, 7).await;
    assert!(finished_tenants.contains(&(bob.execution_id.clone(), Some("bob".into()))));
    backend.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_tenant_at_its_max_running_leaves_the_free_slot_to_another() {
    let data = tempfile::tempdir().unwrap();
    let alice = Quota { max_running: Some(1), weight: 1, ..Quota::default() };
    let (backend, _) = backend(data.path(), 2, quotas(&[("alice", alice)])).await;
    let a1 = submit(&backend, Some("alice"), SLOW).await.unwrap().execution_id;
    let a2 = submit(&backend, Some("alice"), SLOW).await.unwrap().execution_id;
    until_running(&backend, &a1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(backend.get(&a2).await.unwrap().unwrap().status, ExecutionStatus::Pending, "alice runs one at a time");
    let b = submit(&backend, Some("bob"), "print('bob')").await.unwrap().execution_id;
    let (b, a1, a2) = (wait(&backend, &b).await, wait(&backend, &a1).await, wait(&backend, &a2).await);
    assert_eq!(b.status, ExecutionStatus::Completed);
    assert!(started(&b) < finished(&a1), "bob ran alongside alice's first");
    assert!(started(&a2) >= finished(&a1), "alice's second waited for her first");
    backend.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn executions_pending_at_a_restart_come_back_under_their_tenant() {
    let data = tempfile::tempdir().unwrap();
    let (pending, anonymous) = {
        let (backend, _) = backend(data.path(), 1, Quotas::default()).await;
        let running = submit(&backend, Some("alice"), "import time; time.sleep(30)").await.unwrap().execution_id;
        until_running(&backend, &running).await;
        let pending = submit(&backend, Some("carol"), "print('carol')").await.unwrap().execution_id;
        let anonymous = submit(&backend, None, "print('nobody')").await.unwrap().execution_id;
        // Running ones are stopped; pending ones stay in the store for the next start.
        backend.shutdown(Duration::from_millis(100)).await;
        let stopped = backend.get(&running).await.unwrap().unwrap();
        assert_eq!((stopped.status, stopped.tenant.as_deref()), (ExecutionStatus::Failed, Some("alice")));
        (pending, anonymous)
    };
    let (backend, metrics) = backend(data.path(), 1, Quotas::default()).await;
    let carol = wait(&backend, &pending).await;
    assert_eq!(
        (carol.status, carol.stdout.as_str(), carol.tenant.as_deref()),
        (ExecutionStatus::Completed, "carol\n", Some("carol"))
    );
    let nobody = wait(&backend, &anonymous).await;
    assert_eq!((nobody.status, nobody.tenant), (ExecutionStatus::Completed, None));
    let finished_tenants = reported(&metrics, 2).await;
    assert!(finished_tenants.contains(&(pending.clone(), Some("carol".into()))), "{finished_tenants:?}");
    backend.shutdown(Duration::from_secs(5)).await;
}
