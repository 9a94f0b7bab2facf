//! The operator's own work on the path of a warm claim against the in-memory fake API (`pyexec-testkit`), compared
//! in the same run with the cold path's: from an admitted execution to its claim patched, and to its run
//! configuration delivered through attach (a real WebSocket upgrade in the fake), against the cold path's
//! ConfigMap, NetworkPolicy and Pod created. No kubelet, no network and no etcd are involved: these are the
//! operator's costs (requests built, sent, answered, decoded), which on a real cluster add to the API server's and the
//! kubelet's (docs/kubernetes.md).
//!
//! `cargo bench -p pyexec-operator --bench warm_claim` (`-- --runs N` for another number of executions per path).
//! The pool keeps 5 idle Pods and is topped up between claims (not timed).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::OPERATOR;
use pyexec_operator::admission::admit;
use pyexec_operator::children::create_children;
use pyexec_operator::config::{OperatorConfig, PoolRefill};
use pyexec_operator::context::Context;
use pyexec_operator::logs::LogStore;
use pyexec_operator::metrics::Metrics;
use pyexec_operator::pool::claim::{claim_document, hand_over, try_claim};
use pyexec_testkit::kube::{EXECUTIONS, FakeApi, NS, PODS, POOLS, container, execution};
use serde_json::json;

fn spec(memory_mb: u64) -> serde_json::Value {
    json!({"source": {"files": [{"name": "main.py", "content": "print(1)"}]}, "entrypoint": "main.py",
           "limits": {"timeoutSeconds": 30, "memoryMB": memory_mb, "cpu": "500m", "diskMB": 100}})
}

/// The pool's reconciler tops it up, and the "kubelet" starts the new Pods' runners.
async fn refill(fake: &FakeApi, ctx: &Arc<Context>, pods: &Api<Pod>) {
    pyexec_operator::pool::reconcile::reconcile(fake.object(POOLS, "bench"), ctx.clone()).await.unwrap();
    let idle = pods.list(&ListParams::default().labels("pyexec.io/pool=bench,pyexec.io/claimed=false")).await.unwrap();
    for pod in idle.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_ref()).is_none()) {
        let ready = json!({"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [container("python", json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}}))]});
        fake.set_status(PODS, pod.metadata.name.as_deref().unwrap(), ready);
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|n| n.parse().ok()).unwrap_or(100);
    let (client, fake) = FakeApi::start();
    fake.serve_attach();
    let config =
        OperatorConfig { pool_refill: PoolRefill { pods: 10_000, interval_seconds: 1 }, ..OperatorConfig::default() };
    let recorder = Recorder::new(client.clone(), Reporter { controller: OPERATOR.into(), instance: None });
    let ctx = Arc::new(Context::new(client.clone(), config, recorder, LogStore::default(), None, Metrics::new()));

    // A pool of 5 ready idle Pods (256 MiB), refilled between claims (not timed) as a pool sized for its traffic
    // would be; executions of 256 MiB fit it, of 128 MiB do not (cold).
    fake.put(
        POOLS,
        json!({"apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecutionPool",
            "metadata": {"name": "bench", "namespace": NS, "generation": 1},
            "spec": {"replicas": 5, "limits": {"memoryMB": 256, "cpu": "500m", "diskMB": 100}}}),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let (mut claimed, mut delivered, mut cold) = (Vec::new(), Vec::new(), Vec::new());
    let mut first = None;
    for i in 0..runs {
        refill(&fake, &ctx, &pods).await;
        // Interleaved, so that both paths see the same store sizes and machine load.
        fake.put(EXECUTIONS, execution(&format!("warm-{i}"), spec(256)));
        let cr: Arc<PythonExecution> = fake.object(EXECUTIONS, &format!("warm-{i}"));
        let admitted = admit(&cr, &ctx.config, None).unwrap();
        let t0 = Instant::now();
        let pod = try_claim(&cr, &ctx, &admitted).await.unwrap().expect("an idle Pod is left").pod;
        claimed.push(t0.elapsed());
        let name = pod.metadata.name.clone().unwrap();
        hand_over(&pods, &name, &claim_document(&cr, &admitted, &ctx.config)).await.unwrap();
        delivered.push(t0.elapsed());
        first.get_or_insert(name);

        fake.put(EXECUTIONS, execution(&format!("cold-{i}"), spec(128)));
        let cr: Arc<PythonExecution> = fake.object(EXECUTIONS, &format!("cold-{i}"));
        let admitted = admit(&cr, &ctx.config, None).unwrap();
        let t0 = Instant::now();
        // What the cold path does first: look for a pool (none fits), then create its three children.
        assert!(try_claim(&cr, &ctx, &admitted).await.unwrap().is_none());
        create_children(&cr, &ctx, &admitted, "n0nce").await.unwrap();
        cold.push(t0.elapsed());
    }
    assert_eq!(fake.attached(first.as_deref().unwrap(), "python").len(), 1, "the hand-over reached the runner");
    let (c50, c90) = (percentile(&mut claimed, 0.5), percentile(&mut claimed, 0.9));
    let (d50, d90) = (percentile(&mut delivered, 0.5), percentile(&mut delivered, 0.9));
    let (k50, k90) = (percentile(&mut cold, 0.5), percentile(&mut cold, 0.9));
    println!("warm_claim: {runs} executions per path, operator work against the in-memory fake API");
    println!("  warm: admitted -> claim patched          median {:7.2} ms   p90 {:7.2} ms", ms(c50), ms(c90));
    println!("  warm: admitted -> run config delivered   median {:7.2} ms   p90 {:7.2} ms", ms(d50), ms(d90));
    println!("  cold: admitted -> Pod created            median {:7.2} ms   p90 {:7.2} ms", ms(k50), ms(k90));
    println!("  ratio cold Pod created / warm delivered (medians): {:.2}", ms(k50) / ms(d50));
}
