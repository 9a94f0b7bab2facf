//! End to end on a real cluster, when `KUBECONFIG` is set (otherwise it prints a loud SKIPPED line and passes):
//! installs the Helm chart `charts/python-executor` with the images under test (`helm upgrade --install` into a
//! fresh namespace, executions in a second one that enforces Pod Security "restricted"), waits for its
//! Deployments, then checks on a real kubelet, through `PythonExecution` resources: the examples of
//! `deploy/examples/` complete with their output; a program without network cannot reach the cluster's DNS, the
//! Kubernetes API or the chart's API server, and one with network cannot reach the cloud metadata address, the
//! Kubernetes API or the API server either; out of memory is exit 137 with `oomKilled`; a timeout is exit 124 with
//! reason `TimedOut`; the kill annotation ends a running execution as `Killed`; a `PythonSession` becomes Ready and
//! keeps its state between two calls made through attach, and its Pod goes with it. `helm test` then runs an eval
//! through the API server's Service. The release and both namespaces are removed at the end.
//!
//! ```sh
//! scripts/e2e-kind.sh     # all of it on a throwaway kind cluster: builds and loads the images, runs this test
//! ```
//!
//! or, on a cluster that can pull (or already has) the images:
//!
//! ```sh
//! export KUBECONFIG=~/.kube/config            # a cluster you may create namespaces and CRDs in
//! export PYEXEC_E2E_OPERATOR_IMAGE=registry.example/pyexec-operator:dev
//! export PYEXEC_E2E_APISERVER_IMAGE=registry.example/pyexec-apiserver:dev
//! cargo test -p pyexec-operator --test e2e -- --nocapture
//! ```
//!
//! Optional: `PYEXEC_E2E_PYTHON_IMAGE` (the image of Python 3.12 execution Pods, default the chart's
//! `python:3.12-slim`), `PYEXEC_E2E_IMAGE_PULL_POLICY` (of the two images, default `IfNotPresent`),
//! `PYEXEC_E2E_VALUES` (one more values file for the chart), `PYEXEC_E2E_PACKAGES=1` (enables the chart's package
//! proxy and runs the requirements example; needs the internet), `PYEXEC_E2E_HELM` (the helm binary; default
//! `helm` from `PATH`, else `target/k8s-tools/bin/helm` of `scripts/k8s/install-tools.sh`), `PYEXEC_E2E_KEEP=1`
//! (keep the release and the namespaces for inspection).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::{Api, Client, ResourceExt};
use pyexec_crds::contract::KILL_ANNOTATION;
use pyexec_crds::{Phase, PythonExecution};
use serde::Deserialize;

const RELEASE: &str = "pyexec-e2e";
const OPERATOR_IMAGE: &str = "PYEXEC_E2E_OPERATOR_IMAGE";
const APISERVER_IMAGE: &str = "PYEXEC_E2E_APISERVER_IMAGE";
const READY_LIMIT: Duration = Duration::from_secs(300);
/// A first run on a node pulls the Python image.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What the run needs from the environment, checked before anything touches the cluster.
struct Setup {
    helm: PathBuf,
    operator_image: (String, String),
    apiserver_image: (String, String),
    pull_policy: String,
    python_image: Option<String>,
    extra_values: Option<PathBuf>,
    packages: bool,
    keep: bool,
}

impl Setup {
    fn from_env() -> Setup {
        let image = |var: &str| {
            let value = std::env::var(var).unwrap_or_default();
            assert!(
                !value.trim().is_empty(),
                "{var} is not set: with KUBECONFIG set, the end-to-end suite installs the Helm chart and needs the \
                 images to test ({OPERATOR_IMAGE} and {APISERVER_IMAGE}, e.g. pyexec-operator:e2e, built from \
                 deploy/docker/ and pullable by the cluster, or loaded into it as scripts/e2e-kind.sh does)"
            );
            split_image(value.trim()).unwrap_or_else(|| panic!("{var}={value}: expected <repository>:<tag>"))
        };
        let operator_image = image(OPERATOR_IMAGE);
        let apiserver_image = image(APISERVER_IMAGE);
        let non_empty = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
        let extra_values = non_empty("PYEXEC_E2E_VALUES").map(PathBuf::from);
        if let Some(path) = &extra_values {
            assert!(path.is_file(), "PYEXEC_E2E_VALUES={}: no such file", path.display());
        }
        Setup {
            helm: find_helm(),
            operator_image,
            apiserver_image,
            pull_policy: non_empty("PYEXEC_E2E_IMAGE_PULL_POLICY").unwrap_or_else(|| "IfNotPresent".into()),
            python_image: non_empty("PYEXEC_E2E_PYTHON_IMAGE"),
            extra_values,
            packages: std::env::var("PYEXEC_E2E_PACKAGES").as_deref() == Ok("1"),
            keep: std::env::var("PYEXEC_E2E_KEEP").as_deref() == Ok("1"),
        }
    }

    /// The chart's values for this run (JSON is YAML).
    fn values(&self, executions: &str) -> serde_json::Value {
        let image = |(repository, tag): &(String, String)| serde_json::json!({"repository": repository, "tag": tag, "pullPolicy": self.pull_policy});
        let mut config = serde_json::json!({});
        // The project-from-configmap example takes a variable from a Secret: allow it where the chart can refuse it.
        if chart_has_operator_config("allowSecretEnv") {
            config["allowSecretEnv"] = true.into();
        }
        if let Some(python) = &self.python_image {
            config["images"] = serde_json::json!({"3.12": python});
            config["defaultPythonVersion"] = "3.12".into();
        }
        serde_json::json!({
            "executions": {"namespace": executions, "createNamespace": true},
            "apiserver": {"replicas": 1, "image": image(&self.apiserver_image)},
            "operator": {"image": image(&self.operator_image), "config": config},
            "packageProxy": {"enabled": self.packages},
        })
    }
}

/// Whether the chart's values.yaml has `operator.config.<key>` (values the schema refuses must not be set).
fn chart_has_operator_config(key: &str) -> bool {
    let text = std::fs::read_to_string(root().join("charts/python-executor/values.yaml")).unwrap();
    let values: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
    values["operator"]["config"].get(key).is_some()
}

/// `registry:5000/a/b:tag` → (`registry:5000/a/b`, `tag`); no tag (or a digest): None.
fn split_image(image: &str) -> Option<(String, String)> {
    if image.contains('@') {
        return None;
    }
    let (repository, tag) = image.rsplit_once(':')?;
    (!repository.is_empty() && !tag.is_empty() && !tag.contains('/')).then(|| (repository.into(), tag.into()))
}

/// `PYEXEC_E2E_HELM`, else `helm` on `PATH`, else the pinned one of `scripts/k8s/install-tools.sh`.
fn find_helm() -> PathBuf {
    if let Some(helm) = std::env::var_os("PYEXEC_E2E_HELM").filter(|v| !v.is_empty()) {
        return PathBuf::from(helm);
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("helm")).find(|helm| helm.is_file()));
    if let Some(helm) = on_path.flatten() {
        return helm;
    }
    let pinned = root().join("target/k8s-tools/bin/helm");
    assert!(
        pinned.is_file(),
        "helm not found: put it on PATH (https://helm.sh/docs/intro/install/), set PYEXEC_E2E_HELM, or run \
         scripts/k8s/install-tools.sh (target/k8s-tools/bin/helm)"
    );
    pinned
}

/// Where this run lives.
#[derive(Clone)]
struct Run {
    client: Client,
    /// The release's namespace (the API server, the operator).
    namespace: String,
    /// The executions' namespace (created by the chart, Pod Security "restricted").
    executions: String,
    helm: PathBuf,
}

#[tokio::test]
async fn the_chart_on_a_real_cluster() {
    if std::env::var_os("KUBECONFIG").is_none() {
        // Straight to stderr: the test harness captures `eprintln!` of passing tests, and this must be seen.
        use std::io::Write;
        let line = "\n!!! SKIPPED: the end-to-end Kubernetes suite needs KUBECONFIG (see operator/tests/e2e.rs)\n\n";
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    let setup = Setup::from_env();
    let client = Client::try_default().await.expect("a reachable cluster (KUBECONFIG)");
    let namespace = format!("pyexec-e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let run = Run { client, executions: format!("{namespace}-runs"), namespace, helm: setup.helm.clone() };
    eprintln!("e2e: release {RELEASE} in {}, executions in {}", run.namespace, run.executions);

    let values_dir = tempfile::tempdir().unwrap();
    let values = values_dir.path().join("values.json");
    std::fs::write(&values, serde_json::to_vec_pretty(&setup.values(&run.executions)).unwrap()).unwrap();
    let checks = {
        let (run, packages, extra) = (run.clone(), setup.packages, setup.extra_values.clone());
        tokio::spawn(async move {
            install(&run, &values, extra.as_deref()).await;
            wait_deployments_ready(&run).await;
            checks(&run, packages).await;
        })
    };
    let outcome = checks.await;
    if outcome.is_err() {
        diagnostics(&run).await;
    }
    if setup.keep {
        eprintln!("e2e: PYEXEC_E2E_KEEP=1: kept the release {RELEASE} in {} and {}", run.namespace, run.executions);
    } else {
        uninstall(&run).await;
    }
    if let Err(error) = outcome {
        match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(error) => panic!("the checks did not finish: {error}"),
        }
    }
}

async fn checks(run: &Run, packages: bool) {
    session(run).await;
    // The examples, as a platform team would apply them.
    let expectations = [
        ("hello.yaml", "hello", Some("Hello from 3.12")),
        ("eval-expression.yaml", "eval-expression", None),
        ("project-from-configmap.yaml", "report", Some("args=['--format', 'text'] words=3 token=yes")),
    ];
    for (file, name, stdout) in expectations {
        apply_file(run, &root().join("deploy/examples").join(file)).await;
        let cr = wait_terminal(run, name, RUN_LIMIT).await;
        let status = cr.status.clone().unwrap();
        assert_eq!((status.phase, status.exit_code), (Some(Phase::Completed), Some(0)), "{name}: {status:?}");
        if let Some(expected) = stdout {
            assert!(status.stdout.contains(expected), "{name}: {}", status.stdout);
        }
        if name == "eval-expression" {
            assert_eq!(status.result.as_deref(), Some("4.0"));
        }
    }
    if packages {
        apply_file(run, &root().join("deploy/examples/requirements.yaml")).await;
        let cr = wait_terminal(run, "with-numpy", Duration::from_secs(600)).await;
        assert_eq!(cr.status.unwrap().stdout, "45\n");
    } else {
        eprintln!("e2e: PYEXEC_E2E_PACKAGES is not 1: the requirements example is not run");
    }

    // A completed inline run with output on both streams and an eval result.
    let cr = run_program(
        run,
        "output",
        "import sys\nprint('to stdout', flush=True)\nprint('to stderr', file=sys.stderr)\nx = 6 * 7\nx",
        serde_json::json!({"evalLastExpr": true}),
    )
    .await;
    let status = cr.status.unwrap();
    assert_eq!((status.phase, status.exit_code), (Some(Phase::Completed), Some(0)), "{status:?}");
    assert_eq!((status.stdout.as_str(), status.stderr.as_str()), ("to stdout\n", "to stderr\n"), "{status:?}");
    assert_eq!(status.result.as_deref(), Some("42"));

    network_fence(run).await;

    // Out of memory: the container is killed by the kernel, exit 137, oomKilled.
    let cr = run_program(
        run,
        "oom",
        "chunks = []\nwhile True:\n    chunks.append('x' * (16 << 20))",
        serde_json::json!({"limits": {"memoryMB": 64, "timeoutSeconds": 120}}),
    )
    .await;
    let status = cr.status.clone().unwrap();
    assert_eq!(
        (status.phase, status.exit_code, status.oom_killed, finished_reason(&cr).as_deref()),
        (Some(Phase::Completed), Some(137), true, Some("OOMKilled")),
        "{status:?}"
    );

    // Timeout: stopped at its deadline, exit 124, reason TimedOut, the output so far kept.
    let cr = run_program(
        run,
        "timeout",
        "import time\nprint('started', flush=True)\ntime.sleep(600)",
        serde_json::json!({"limits": {"timeoutSeconds": 5}}),
    )
    .await;
    let status = cr.status.clone().unwrap();
    assert_eq!(
        (status.phase, status.exit_code, finished_reason(&cr).as_deref()),
        (Some(Phase::Failed), Some(124), Some("TimedOut")),
        "{status:?}"
    );
    assert!(status.stdout.contains("started"), "{status:?}");

    // Kill: the annotation ends a running execution; the Pod goes, the status says Killed.
    create_program(run, "sleeper", "import time\nprint('up', flush=True)\ntime.sleep(600)", serde_json::json!({}))
        .await;
    wait_for(run, "sleeper", RUN_LIMIT, |cr| cr.phase() == Phase::Running).await;
    let annotate = serde_json::json!({"metadata": {"annotations": {KILL_ANNOTATION: "e2e"}}});
    executions(run).patch("sleeper", &PatchParams::default(), &Patch::Merge(&annotate)).await.unwrap();
    let cr = wait_terminal(run, "sleeper", Duration::from_secs(120)).await;
    let status = cr.status.clone().unwrap();
    assert_eq!(
        (status.phase, status.exit_code, finished_reason(&cr).as_deref()),
        (Some(Phase::Killed), Some(137), Some("Killed")),
        "{status:?}"
    );
    let pods: Api<Pod> = Api::namespaced(run.client.clone(), &run.executions);
    let pod = status.pod_name.clone().unwrap_or_else(|| "sleeper".into());
    let gone = Instant::now();
    while pods.get_opt(&pod).await.unwrap().is_some_and(|p| p.metadata.deletion_timestamp.is_none()) {
        assert!(gone.elapsed() < Duration::from_secs(60), "the killed execution's Pod {pod} is still there");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The REST API: the chart's own test Pod runs an eval through the API server's Service.
    let out = helm(run, &["test", RELEASE, "--namespace", &run.namespace, "--timeout", "6m"]).await;
    if !out.status.success() {
        let tests = pods_of(run, &run.namespace, "app.kubernetes.io/component=test").await;
        for pod in tests {
            eprintln!("e2e: log of {}:\n{}", pod.name_any(), pod_log(run, &run.namespace, &pod.name_any()).await);
        }
        panic!("helm test failed:\n{}", output_text(&out));
    }
    eprintln!("e2e: helm test passed");
}

/// Network cut-off on a real CNI: what the NetworkPolicies of the operator (and the runner's own fence check)
/// must keep away from a program, probed by the program itself.
/// A PythonSession becomes Ready with a Pod that runs the session runner; a call through attach (the API server's
/// own link) keeps state; deleting the resource takes the Pod with it.
async fn session(run: &Run) {
    use pyexec_backend::session::{CallCaps, SessionControl, SessionLink};
    struct InBand;
    impl SessionControl for InBand {
        fn interrupt(&self) -> bool {
            false
        }
        fn oom_kills(&self) -> u64 {
            0
        }
    }
    let sessions: Api<pyexec_crds::PythonSession> = Api::namespaced(run.client.clone(), &run.executions);
    let cr = pyexec_crds::PythonSession::new("e2e-session", pyexec_crds::PythonSessionSpec::default());
    sessions.create(&PostParams::default(), &cr).await.unwrap();
    let deadline = Instant::now() + RUN_LIMIT;
    let pod = loop {
        let s = sessions.get("e2e-session").await.unwrap();
        let status = s.status.unwrap_or_default();
        if let (Some(pyexec_crds::SessionPhase::Ready), Some(pod)) = (status.phase, status.pod_name) {
            break pod;
        }
        assert!(Instant::now() < deadline, "the session was not Ready in time: {:?}", status.message);
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let pods: Api<Pod> = Api::namespaced(run.client.clone(), &run.executions);
    let caps = CallCaps { output_bytes: 1 << 20, files_bytes: 1 << 20, files_count: 100 };
    let mut answers = Vec::new();
    for code in ["x = 41\nprint('hi')", "x + 1"] {
        let params = kube::api::AttachParams::default().container("python").stdin(true).stdout(true).stderr(false);
        let mut attached = pods.attach(&pod, &params).await.unwrap();
        let (stdin, stdout) = (attached.stdin().unwrap(), attached.stdout().unwrap());
        let mut link = SessionLink::from_mux(Box::new(stdin), stdout, 16 << 20);
        let call = pyexec_core::session::SessionCall {
            code: code.into(),
            eval_last_expr: true,
            timeout: Duration::from_secs(60),
            ..Default::default()
        };
        let observed = link.call(&call, caps, &InBand).await;
        drop(link);
        attached.abort();
        assert!(!observed.lost, "{code}: {observed:?}");
        answers.push(observed);
    }
    assert_eq!(answers[0].stdout.bytes, b"hi\n");
    let report: serde_json::Value = serde_json::from_slice(answers[1].result_channel.as_deref().unwrap()).unwrap();
    assert_eq!(report["result"], "42", "state kept between attaches");
    sessions.delete("e2e-session", &DeleteParams::foreground()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while pods.get_opt(&pod).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the session's Pod outlived it");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn network_fence(run: &Run) {
    let services: Api<Service> = Api::namespaced(run.client.clone(), "default");
    let kubernetes = cluster_ip(&services.get("kubernetes").await.unwrap()).expect("the kubernetes Service's IP");
    let apiserver = pyexec_apiserver_ip(run).await;
    let kube_dns = Api::<Service>::namespaced(run.client.clone(), "kube-system")
        .get_opt("kube-dns")
        .await
        .unwrap()
        .and_then(|s| cluster_ip(&s));

    // network: none — not even the cluster's DNS (the Service and the servers of /etc/resolv.conf).
    let mut targets = vec![
        ("kubernetes API".to_owned(), kubernetes.clone(), 443),
        ("pyexec API server".to_owned(), apiserver.clone(), 8080),
        ("cloud metadata".to_owned(), "169.254.169.254".to_owned(), 80),
    ];
    if let Some(dns) = &kube_dns {
        targets.push(("kube-dns Service".to_owned(), dns.clone(), 53));
    }
    let none = fence_probe(run, "fence-none", &targets, true, "none").await;
    assert!(none.keys().any(|k| k.starts_with("dns ") || k == "kube-dns Service"), "no DNS server probed: {none:?}");
    assert!(none.contains_key("resolve kubernetes.default.svc"), "{none:?}");

    // network: egress — the public internet only: neither the metadata address nor the cluster's Services.
    let targets = [
        ("kubernetes API".to_owned(), kubernetes, 443),
        ("pyexec API server".to_owned(), apiserver, 8080),
        ("cloud metadata".to_owned(), "169.254.169.254".to_owned(), 80),
    ];
    fence_probe(run, "fence-egress", &targets, false, "egress").await;
}

/// Runs a program that connects to each target (and, with `dns`, to the name servers of its /etc/resolv.conf and
/// resolves a cluster name) and asserts that each one reports blocked.
async fn fence_probe(
    run: &Run,
    name: &str,
    targets: &[(String, String, u16)],
    dns: bool,
    network: &str,
) -> serde_json::Map<String, serde_json::Value> {
    const PROBE: &str = r#"import json, os, socket
targets = json.loads(os.environ["PROBE_TARGETS"])
if os.environ.get("PROBE_DNS") == "1":
    with open("/etc/resolv.conf") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                targets.append(["dns " + parts[1], parts[1], 53])
result = {}
for what, host, port in targets:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        result[what] = "reachable %s:%s" % (host, port)
    except (socket.timeout, TimeoutError):
        result[what] = "blocked (no answer)"
    except ConnectionRefusedError:
        result[what] = "blocked (refused)"
    except OSError as e:
        result[what] = "blocked (%s)" % e
    finally:
        s.close()
if os.environ.get("PROBE_DNS") == "1":
    try:
        result["resolve kubernetes.default.svc"] = "resolved %s" % socket.getaddrinfo("kubernetes.default.svc", 443)[0][4][0]
    except OSError as e:
        result["resolve kubernetes.default.svc"] = "blocked (%s)" % e
print(json.dumps(result, sort_keys=True))
"#;
    let targets: Vec<_> = targets.iter().map(|(what, host, port)| serde_json::json!([what, host, port])).collect();
    let env = serde_json::json!([
        {"name": "PROBE_TARGETS", "value": serde_json::Value::from(targets).to_string()},
        {"name": "PROBE_DNS", "value": if dns { "1" } else { "0" }},
    ]);
    let cr = run_program(run, name, PROBE, serde_json::json!({"network": network, "env": env})).await;
    let status = cr.status.clone().unwrap();
    assert_eq!(
        (status.phase, status.exit_code),
        (Some(Phase::Completed), Some(0)),
        "{name}: the probe did not run (a NetworkNotFenced failure means the cluster does not enforce \
         NetworkPolicies): {status:?}"
    );
    let report: serde_json::Map<String, serde_json::Value> = serde_json::from_str(status.stdout.trim())
        .unwrap_or_else(|e| panic!("{name}: the probe's output is not JSON ({e}): {}", status.stdout));
    eprintln!("e2e: {name}: {}", serde_json::Value::from(report.clone()));
    for (what, outcome) in &report {
        assert!(
            outcome.as_str().is_some_and(|o| o.starts_with("blocked")),
            "{name} (network: {network}): {what} must be blocked, got {outcome}"
        );
    }
    report
}

fn cluster_ip(service: &Service) -> Option<String> {
    service.spec.as_ref()?.cluster_ip.clone().filter(|ip| !ip.is_empty() && ip != "None")
}

/// The ClusterIP of the chart's API server Service.
async fn pyexec_apiserver_ip(run: &Run) -> String {
    let services: Api<Service> = Api::namespaced(run.client.clone(), &run.namespace);
    let selector = format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=apiserver");
    let list = services.list(&ListParams::default().labels(&selector)).await.unwrap();
    list.items.iter().find_map(cluster_ip).unwrap_or_else(|| panic!("no API server Service ({selector})"))
}

fn executions(run: &Run) -> Api<PythonExecution> {
    Api::namespaced(run.client.clone(), &run.executions)
}

/// Creates a PythonExecution of one inline `main.py`, with `extra` merged into its spec.
async fn create_program(run: &Run, name: &str, code: &str, extra: serde_json::Value) {
    let mut spec =
        serde_json::json!({"source": {"files": [{"name": "main.py", "content": code}]}, "entrypoint": "main.py"});
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    let cr: PythonExecution = serde_json::from_value(serde_json::json!({
        "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution", "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    executions(run).create(&PostParams::default(), &cr).await.unwrap();
}

async fn run_program(run: &Run, name: &str, code: &str, extra: serde_json::Value) -> PythonExecution {
    create_program(run, name, code, extra).await;
    wait_terminal(run, name, RUN_LIMIT).await
}

fn finished_reason(cr: &PythonExecution) -> Option<String> {
    let status = cr.status.as_ref()?;
    status.conditions.iter().find(|c| c.type_ == "Finished").map(|c| c.reason.clone())
}

/// `kubectl apply -f` of every document of `file` into the executions' namespace.
async fn apply_file(run: &Run, file: &Path) {
    let text = std::fs::read_to_string(file).unwrap();
    // Parsed first: the YAML deserializer cannot be held across an await in a spawned task.
    let objects: Vec<DynamicObject> =
        serde_yaml_ng::Deserializer::from_str(&text).map(|doc| DynamicObject::deserialize(doc).unwrap()).collect();
    for object in objects {
        let types = object.types.clone().unwrap();
        let gvk = GroupVersionKind::try_from(&types).unwrap();
        let (group, version) = match types.api_version.split_once('/') {
            Some((g, v)) => (g.to_owned(), v.to_owned()),
            None => (String::new(), types.api_version.clone()),
        };
        let plural = format!("{}s", gvk.kind.to_lowercase());
        let resource =
            ApiResource { group, version, api_version: types.api_version.clone(), kind: gvk.kind.clone(), plural };
        let api: Api<DynamicObject> = Api::namespaced_with(run.client.clone(), &run.executions, &resource);
        api.patch(&object.name_any(), &PatchParams::apply("pyexec-e2e").force(), &Patch::Apply(&object)).await.unwrap();
    }
}

async fn wait_terminal(run: &Run, name: &str, limit: Duration) -> PythonExecution {
    wait_for(run, name, limit, |cr| cr.phase().is_terminal()).await
}

async fn wait_for(run: &Run, name: &str, limit: Duration, done: impl Fn(&PythonExecution) -> bool) -> PythonExecution {
    let condition = move |cr: Option<&PythonExecution>| cr.is_some_and(&done);
    let started = Instant::now();
    let cr = tokio::time::timeout(limit, kube::runtime::wait::await_condition(executions(run), name, condition))
        .await
        .unwrap_or_else(|_| panic!("{name}: not done after {:?}", started.elapsed()))
        .unwrap()
        .unwrap();
    eprintln!("e2e: {name} {:?} after {:.1}s", cr.phase(), started.elapsed().as_secs_f64());
    cr
}

// ---------------------------------------------------------------------------------------------------- the chart

async fn helm(run: &Run, args: &[&str]) -> std::process::Output {
    eprintln!("e2e: helm {}", args.join(" "));
    tokio::process::Command::new(&run.helm)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", run.helm.display()))
}

fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

async fn install(run: &Run, values: &Path, extra: Option<&Path>) {
    let chart = root().join("charts/python-executor");
    let (chart, values) = (chart.to_str().unwrap(), values.to_str().unwrap());
    let mut args = vec!["upgrade", "--install", RELEASE, chart, "--namespace", &run.namespace, "--create-namespace"];
    args.extend(["--values", values]);
    if let Some(extra) = extra {
        args.extend(["--values", extra.to_str().unwrap()]);
    }
    let out = helm(run, &args).await;
    assert!(out.status.success(), "helm upgrade --install failed:\n{}", output_text(&out));
}

/// Every Deployment of the release rolled out and available.
async fn wait_deployments_ready(run: &Run) {
    let deployments: Api<Deployment> = Api::namespaced(run.client.clone(), &run.namespace);
    let selector = format!("app.kubernetes.io/instance={RELEASE}");
    let started = Instant::now();
    loop {
        let list = deployments.list(&ListParams::default().labels(&selector)).await.unwrap();
        assert!(!list.items.is_empty(), "the release has no Deployments ({selector})");
        let waiting: Vec<String> = list.items.iter().filter(|d| !deployment_ready(d)).map(|d| d.name_any()).collect();
        if waiting.is_empty() {
            let names: Vec<String> = list.items.iter().map(|d| d.name_any()).collect();
            eprintln!("e2e: Deployments ready after {:.1}s: {}", started.elapsed().as_secs_f64(), names.join(", "));
            return;
        }
        assert!(started.elapsed() < READY_LIMIT, "Deployments not ready after {READY_LIMIT:?}: {waiting:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn deployment_ready(d: &Deployment) -> bool {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(s) = &d.status else { return false };
    s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
        && s.updated_replicas.unwrap_or(0) == want
        && s.ready_replicas.unwrap_or(0) == want
        && s.available_replicas.unwrap_or(0) == want
        && s.replicas.unwrap_or(0) == want
}

async fn pods_of(run: &Run, namespace: &str, selector: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(run.client.clone(), namespace);
    match pods.list(&ListParams::default().labels(selector)).await {
        Ok(list) => list.items,
        Err(e) => {
            eprintln!("e2e: listing Pods in {namespace} ({selector}): {e}");
            Vec::new()
        }
    }
}

async fn pod_log(run: &Run, namespace: &str, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(run.client.clone(), namespace);
    let params = LogParams { tail_lines: Some(80), ..LogParams::default() };
    pods.logs(name, &params).await.unwrap_or_else(|e| format!("(no log: {e})"))
}

/// After a failure: the release's Pods, their states and the tails of their logs, and the executions' statuses.
async fn diagnostics(run: &Run) {
    eprintln!("e2e: FAILED; the state of the release:");
    for pod in pods_of(run, &run.namespace, &format!("app.kubernetes.io/instance={RELEASE}")).await {
        let status = pod.status.clone().unwrap_or_default();
        let containers: Vec<String> = status
            .container_statuses
            .unwrap_or_default()
            .iter()
            .map(|c| format!("{} ready={} restarts={} state={:?}", c.name, c.ready, c.restart_count, c.state))
            .collect();
        eprintln!("--- Pod {} phase={:?}\n{}", pod.name_any(), status.phase, containers.join("\n"));
        eprintln!("{}", pod_log(run, &run.namespace, &pod.name_any()).await);
    }
    if let Ok(list) = executions(run).list(&ListParams::default()).await {
        for cr in list.items {
            eprintln!("--- PythonExecution {}: {:?}", cr.name_any(), cr.status);
        }
    }
}

/// Deletes the executions while the operator still runs (it takes their finalizers off), uninstalls the release,
/// then deletes both namespaces (the chart keeps the executions' namespace on uninstall). Best effort.
async fn uninstall(run: &Run) {
    let api = executions(run);
    let _ = api.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
    let started = Instant::now();
    while api.list(&ListParams::default()).await.is_ok_and(|l| !l.items.is_empty()) {
        if started.elapsed() > Duration::from_secs(60) {
            eprintln!("e2e: executions still there after 60s; removing their finalizers");
            let strip = serde_json::json!({"metadata": {"finalizers": null}});
            for cr in api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                let _ = api.patch(&cr.name_any(), &PatchParams::default(), &Patch::Merge(&strip)).await;
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let out = helm(run, &["uninstall", RELEASE, "--namespace", &run.namespace]).await;
    if !out.status.success() {
        eprintln!("e2e: helm uninstall failed:\n{}", output_text(&out));
    }
    let namespaces: Api<Namespace> = Api::all(run.client.clone());
    for namespace in [&run.executions, &run.namespace] {
        if let Err(e) = namespaces.delete(namespace, &DeleteParams::default()).await {
            eprintln!("e2e: deleting the namespace {namespace}: {e}");
        }
    }
}

#[test]
fn image_references_split_into_repository_and_tag() {
    let split = |s: &str| split_image(s).map(|(r, t)| format!("{r} {t}"));
    assert_eq!(split("pyexec-operator:e2e").as_deref(), Some("pyexec-operator e2e"));
    assert_eq!(
        split("localhost:5000/a/pyexec-apiserver:1.2").as_deref(),
        Some("localhost:5000/a/pyexec-apiserver 1.2")
    );
    assert_eq!(split("localhost:5000/pyexec-operator"), None, "no tag");
    assert_eq!(split("pyexec-operator"), None);
    assert_eq!(split("pyexec-operator@sha256:abc"), None);
}
