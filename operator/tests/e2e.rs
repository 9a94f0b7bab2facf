//! End to end on a real cluster, when `KUBECONFIG` is set (otherwise it prints a loud SKIPPED line and passes):
//! applies the CRD, runs the operator's controller in this process over a fresh namespace that enforces Pod
//! Security "restricted", applies the examples of `deploy/examples/` and checks their statuses, kills an
//! execution, then drives the API server's Kubernetes backend over HTTP (eval, an uploaded project fetched by
//! the operator and streamed into its Pod, kill).
//!
//! ```sh
//! export KUBECONFIG=~/.kube/config            # a cluster you may create namespaces and CRDs in
//! cargo build -p pyexec-apiserver
//! cargo test -p pyexec-operator --test e2e -- --nocapture
//! ```
//! Optional: `PYEXEC_E2E_OPERATOR_CONFIG` (an operator configuration file, e.g. with a `packageIndex` to run the
//! requirements example), `PYEXEC_E2E_KEEP=1` (keep the namespace for inspection).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, CustomResourceExt, ResourceExt};
use pyexec_crds::contract::KILL_ANNOTATION;
use pyexec_crds::{Phase, PythonExecution};
use pyexec_operator::config::{ArchiveStore, OperatorConfig};
use pyexec_operator::context::Context;
use pyexec_operator::logs::LogStore;
use pyexec_operator::metrics::Metrics;
use serde::Deserialize;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[tokio::test]
async fn the_operator_and_the_kubernetes_backend_on_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        // Straight to stderr: the test harness captures `eprintln!` of passing tests, and this must be seen.
        use std::io::Write;
        let line = "\n!!! SKIPPED: the end-to-end Kubernetes suite needs KUBECONFIG (see operator/tests/e2e.rs)\n\n";
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    let client = Client::try_default().await.expect("a reachable cluster");
    let namespace = format!("pyexec-e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    install_crd(&client).await;
    create_namespace(&client, &namespace).await;
    eprintln!("e2e: namespace {namespace}");

    let archive_token = uuid::Uuid::new_v4().to_string();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("archive-token");
    std::fs::write(&token_file, &archive_token).unwrap();
    let server = pyexec_testkit::Server::start_with(&[
        ("PYEXEC_BACKEND", "kubernetes"),
        ("PYEXEC_K8S_NAMESPACE", &namespace),
        ("PYEXEC_ARCHIVE_TOKEN_FILE", token_file.to_str().unwrap()),
    ])
    .await;

    let mut config = match std::env::var_os("PYEXEC_E2E_OPERATOR_CONFIG") {
        Some(path) => OperatorConfig::load(Path::new(&path)).unwrap(),
        None => OperatorConfig::default(),
    };
    config.archives =
        Some(ArchiveStore { url: format!("{}/internal/v1/archives", server.url), token_file: Some(token_file) });
    let installs = config.package_index.is_some();
    let recorder = Recorder::new(client.clone(), Reporter { controller: "pyexec-operator-e2e".into(), instance: None });
    let archives = config.archives.as_ref().map(|a| pyexec_operator::attach::ArchiveFetcher::new(a).unwrap());
    let ctx = Arc::new(Context::new(client.clone(), config, recorder, LogStore::default(), archives, Metrics::new()));
    let controller = {
        let (client, ns) = (client.clone(), namespace.clone());
        tokio::spawn(async move { pyexec_operator::controller::run(client, ctx, Some(&ns), Default::default()).await })
    };

    // The examples, as a platform team would apply them.
    let expectations = [
        ("hello.yaml", "hello", Some("Hello from 3.12")),
        ("eval-expression.yaml", "eval-expression", None),
        ("project-from-configmap.yaml", "report", Some("args=['--format', 'text'] words=3 token=yes")),
    ];
    for (file, name, stdout) in expectations {
        apply_file(&client, &namespace, &root().join("deploy/examples").join(file)).await;
        let cr = wait_terminal(&client, &namespace, name, Duration::from_secs(300)).await;
        let status = cr.status.clone().unwrap();
        assert_eq!((status.phase, status.exit_code), (Some(Phase::Completed), Some(0)), "{name}: {status:?}");
        if let Some(expected) = stdout {
            assert!(status.stdout.contains(expected), "{name}: {}", status.stdout);
        }
        if name == "eval-expression" {
            assert_eq!(status.result.as_deref(), Some("4.0"));
        }
    }
    if installs {
        apply_file(&client, &namespace, &root().join("deploy/examples/requirements.yaml")).await;
        let cr = wait_terminal(&client, &namespace, "with-numpy", Duration::from_secs(600)).await;
        assert_eq!(cr.status.unwrap().stdout, "45\n");
    } else {
        eprintln!("e2e: no packageIndex in PYEXEC_E2E_OPERATOR_CONFIG: the requirements example is not run");
    }

    // Kill: the Pod goes, the status says Killed.
    let api: Api<PythonExecution> = Api::namespaced(client.clone(), &namespace);
    let sleeper: PythonExecution = serde_json::from_value(serde_json::json!({
        "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution", "metadata": {"name": "sleeper"},
        "spec": {"source": {"files": [{"name": "main.py", "content": "import time\nprint('up', flush=True)\ntime.sleep(600)"}]}, "entrypoint": "main.py"}
    }))
    .unwrap();
    api.create(&PostParams::default(), &sleeper).await.unwrap();
    wait_for(&client, &namespace, "sleeper", Duration::from_secs(300), |cr| cr.phase() == Phase::Running).await;
    let annotate = serde_json::json!({"metadata": {"annotations": {KILL_ANNOTATION: "e2e"}}});
    api.patch("sleeper", &PatchParams::default(), &Patch::Merge(&annotate)).await.unwrap();
    let cr = wait_terminal(&client, &namespace, "sleeper", Duration::from_secs(60)).await;
    assert_eq!((cr.phase(), cr.status.unwrap().exit_code), (Phase::Killed, Some(137)));

    // The REST API on the Kubernetes backend.
    let (code, r) =
        server.eval(serde_json::json!({"code": "print('hi from a Pod')\n6 * 7", "eval_last_expr": true})).await;
    assert_eq!((code, r["status"].as_str(), r["result"].as_str()), (200, Some("completed"), Some("42")), "{r}");
    assert_eq!(r["stdout"], "hi from a Pod");
    let (_, r) = server
        .exec(
            "sync",
            &[("main.py", b"from helper import x\nprint(x)"), ("helper.py", b"x = 'uploaded'")],
            serde_json::json!({"entrypoint": "main.py"}),
        )
        .await;
    assert_eq!(
        (r["status"].as_str(), r["stdout"].as_str()),
        (Some("completed"), Some("uploaded\n")),
        "archives reach the Pod: {r}"
    );
    // /events: the output from the Pod's log, then the result.
    let (_, r) = server
        .exec(
            "async",
            &[("main.py", b"import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(2)")],
            serde_json::json!({"entrypoint": "main.py"}),
        )
        .await;
    let id = r["execution_id"].as_str().unwrap().to_owned();
    let events = server.get(&format!("/api/v1/executions/{id}/events")).send().await.unwrap();
    let (output, result) = pyexec_testkit::output_and_result(&events.text().await.unwrap());
    assert_eq!(output, "0\n1\n2\n", "live output from the Pod's log");
    assert_eq!(result.expect("a result event")["stdout"], "0\n1\n2\n");
    let (_, r) = server
        .exec("async", &[("main.py", b"import time; time.sleep(600)")], serde_json::json!({"entrypoint": "main.py"}))
        .await;
    let id = r["execution_id"].as_str().unwrap().to_owned();
    server.wait_status(&id, "running").await;
    let killed: serde_json::Value =
        server.delete(&format!("/api/v1/executions/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(killed["status"], "killed");

    controller.abort();
    if std::env::var("PYEXEC_E2E_KEEP").as_deref() != Ok("1") {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let _ = namespaces.delete(&namespace, &DeleteParams::default()).await;
    }
}

async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("pyexec-e2e").force();
    crds.patch(PythonExecution::crd_name(), &pp, &Patch::Apply(PythonExecution::crd())).await.unwrap();
    let established = kube::runtime::wait::conditions::is_crd_established();
    let wait = kube::runtime::wait::await_condition(crds, PythonExecution::crd_name(), established);
    tokio::time::timeout(Duration::from_secs(60), wait).await.unwrap().unwrap();
}

async fn create_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest"}}
    }))
    .unwrap();
    namespaces.create(&PostParams::default(), &ns).await.unwrap();
}

/// `kubectl apply -f` of every document of `file` into `namespace`.
async fn apply_file(client: &Client, namespace: &str, file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let object: DynamicObject = DynamicObject::deserialize(doc).unwrap();
        let types = object.types.clone().unwrap();
        let gvk = GroupVersionKind::try_from(&types).unwrap();
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), types.api_version.clone()),
        };
        let plural = format!("{}s", gvk.kind.to_lowercase());
        let resource =
            ApiResource { group, version, api_version: types.api_version.clone(), kind: gvk.kind.clone(), plural };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        api.patch(&object.name_any(), &PatchParams::apply("pyexec-e2e").force(), &Patch::Apply(&object)).await.unwrap();
    }
}

async fn wait_terminal(client: &Client, namespace: &str, name: &str, limit: Duration) -> PythonExecution {
    wait_for(client, namespace, name, limit, |cr| cr.phase().is_terminal()).await
}

async fn wait_for(
    client: &Client,
    namespace: &str,
    name: &str,
    limit: Duration,
    done: impl Fn(&PythonExecution) -> bool,
) -> PythonExecution {
    let api: Api<PythonExecution> = Api::namespaced(client.clone(), namespace);
    let condition = move |cr: Option<&PythonExecution>| cr.is_some_and(&done);
    let started = Instant::now();
    let cr = tokio::time::timeout(limit, kube::runtime::wait::await_condition(api, name, condition))
        .await
        .unwrap_or_else(|_| panic!("{name}: not done after {:?}", started.elapsed()))
        .unwrap()
        .unwrap();
    eprintln!("e2e: {name} {:?} after {:.1}s", cr.phase(), started.elapsed().as_secs_f64());
    cr
}
