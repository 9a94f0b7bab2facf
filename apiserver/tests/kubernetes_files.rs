//! Files and display outputs of executions on the Kubernetes backend, end to end against the fake Kubernetes API:
//! the API server creates the resource; the real operator (its reconciler, its log store and the log store's HTTP
//! server on 127.0.0.1) creates the Pod's ConfigMap and collects the Pod; the Pod's main container is the real
//! runner (`pod_runner.py` with CPython, run from what the ConfigMap holds, as the kubelet would run it), whose
//! output becomes the container's log. Then the REST API lists, downloads and tars the files the program wrote and
//! returns the figure it showed in `outputs`.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use clap::Parser;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use pyexec_apiserver::backend::kubernetes::{KubernetesBackend, KubernetesConfig, SessionSettings};
use pyexec_apiserver::backend::{Backend, Source};
use pyexec_apiserver::metrics::Metrics;
use pyexec_apiserver::origin::BrowserPolicy;
use pyexec_apiserver::routes;
use pyexec_apiserver::state::{AppState, Shared};
use pyexec_core::pod::RUNNER_FILE;
use pyexec_core::pod::protocol::{
    DEPS_DIR_ENV, Fence, NONCE_ENV, ROLE_RUN, RUN_CONFIG_FILE, RUN_DIR_ENV, RunConfig, SOURCE_DIR_ENV, WORK_DIR_ENV,
};
use pyexec_core::workspace::IngestLimits;
use pyexec_core::{ExecutionStatus, Policy, PythonVersion};
use pyexec_crds::PythonExecution;
use pyexec_crds::contract::OPERATOR;
use pyexec_operator::config::{LogsConfig, OperatorConfig};
use pyexec_operator::context::Context;
use pyexec_operator::logs::LogStore;
use pyexec_operator::server::{LogTokens, Readiness, ServerState};
use pyexec_testkit::kube::*;
use serde_json::{Value, json};
use tower::ServiceExt;

const LOGS_TOKEN: &str = "logs-token";

/// A stand-in for matplotlib (not installed here), "installed" by the install container into the dependencies
/// directory: what the eval runner uses of pyplot, with figures whose PNG is the signature and the figure's number.
const FAKE_PYPLOT: &str = r#"
_figures = {}

class Figure:
    def __init__(self, num):
        self.num = num
    def savefig(self, fname, format=None, **kwargs):
        data = b"\x89PNG\r\n\x1a\n" + b"fig%d" % self.num
        if isinstance(fname, str):
            with open(fname, "wb") as f:
                f.write(data)
        else:
            fname.write(data)

def figure(num=None):
    num = num or len(_figures) + 1
    return _figures.setdefault(num, Figure(num))

def get_fignums():
    return sorted(_figures)

def close(fig=None):
    _figures.pop(getattr(fig, "num", fig), None)

def plot(*args, **kwargs):
    figure(1)

def savefig(fname, **kwargs):
    figure(max(_figures) if _figures else None).savefig(fname)

def show(*args, **kwargs):
    pass
"#;

/// The API server's Kubernetes backend and the operator, both against one fake API; the operator's log store is
/// served on 127.0.0.1 (`store: false`: no log store, as an operator configured without one).
struct Cluster {
    fake: FakeApi,
    backend: Arc<KubernetesBackend>,
    operator: Arc<Context>,
    app: axum::Router,
    root: tempfile::TempDir,
}

async fn cluster(store: bool) -> Cluster {
    let root = tempfile::tempdir().unwrap();
    let (client, fake) = FakeApi::start();
    // The operator's HTTP endpoint: its address goes into the configuration (`logs.url`) before it serves.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = OperatorConfig::default();
    if store {
        config.logs = LogsConfig { dir: Some(root.path().join("store")), url: Some(url), ..LogsConfig::default() };
    }
    let logs = LogStore::new(&config.logs).with_file_max_bytes(config.files.max_bytes);
    let tokens = LogTokens::new([(NS.to_string(), LOGS_TOKEN.to_string())].into(), None);
    let state = ServerState {
        metrics: pyexec_operator::metrics::Metrics::new(),
        logs: logs.clone(),
        logs_tokens: tokens,
        ready: Readiness::default(),
    };
    tokio::spawn(async move { axum::serve(listener, pyexec_operator::server::router(state)).await.unwrap() });
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: OPERATOR.into(), instance: Some("test".into()) });
    let operator =
        Arc::new(Context::new(client.clone(), config, recorder, logs, None, pyexec_operator::metrics::Metrics::new()));
    let backend = Arc::new(api_server(client, root.path()).await);
    let app = router(backend.clone());
    Cluster { fake, backend, operator, app, root }
}

async fn api_server(client: Client, dir: &Path) -> KubernetesBackend {
    let config = KubernetesConfig {
        namespace: NS.into(),
        python_versions: [10, 11, 12, 13].map(|minor| PythonVersion { minor }).to_vec(),
        default_python: PythonVersion { minor: 12 },
        ttl_seconds: 300,
        runtime_class: None,
        data_dir: dir.join("apiserver"),
        archive_token: None,
        logs_token: Some(LOGS_TOKEN.into()),
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
    KubernetesBackend::start(client, config, Arc::new(Metrics::new())).await.unwrap()
}

/// The REST API over `backend`, without API keys.
fn router(backend: Arc<KubernetesBackend>) -> axum::Router {
    let config = pyexec_apiserver::config::Config::try_parse_from(["pyexec-apiserver"]).unwrap();
    let tenants = pyexec_apiserver::tenants::Tenants::load(&[], None, Default::default(), &[]).unwrap();
    routes::router(AppState::new(Shared {
        backend,
        policy: Policy::default(),
        ingest: IngestLimits { max_bytes: 1 << 20, max_entries: 100 },
        upload_limit_mb: 1,
        tenants: Arc::new(tenants),
        metrics: Metrics::new(),
        browser: BrowserPolicy::new(&config, false).unwrap(),
        session_timeouts: pyexec_core::session::SessionTimeouts { idle_default: 600, idle_max: 3600 },
        session_upload_max_bytes: 1 << 20,
        mcp_output: pyexec_mcp::OutputBudget::default(),
        retention: Duration::from_secs(86_400),
        idempotency: Default::default(),
        webhooks: None,
    }))
}

impl Cluster {
    /// Submits `/eval` of `code` (evaluating its last expression or not); its execution id and resource name.
    async fn submit(&self, code: &str, eval_last_expr: bool) -> (String, String) {
        let request = json!({"code": code, "eval_last_expr": eval_last_expr, "requirements_txt": "-"});
        let (spec, files) = Policy::default().spec_from_eval(serde_json::from_value(request).unwrap()).unwrap();
        let id = self.backend.submit(spec, Source::Files(files)).await.unwrap().execution_id;
        let name = id.replacen('_', "-", 1);
        (id, name)
    }

    async fn reconcile(&self, name: &str) {
        let cr: Arc<PythonExecution> = self.fake.object(EXECUTIONS, name);
        pyexec_operator::reconcile::reconcile(cr, self.operator.clone()).await.unwrap();
    }

    /// What the kubelet does with the execution's Pod: runs its main container (the runner, from the Pod's
    /// ConfigMap, with `matplotlib` installed in the dependencies directory), keeps its log, and reports it ended.
    fn run_pod(&self, name: &str) {
        let map = self.fake.get(CONFIG_MAPS, name).expect("the operator created the ConfigMap");
        let pod = self.fake.get(PODS, name).expect("the operator created the Pod");
        let dirs = self.root.path().join(format!("pod-{name}"));
        let (run, work, deps) = (dirs.join("run"), dirs.join("work"), dirs.join("deps"));
        for dir in [&run, &work, &deps.join("matplotlib")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(deps.join("matplotlib/__init__.py"), "").unwrap();
        std::fs::write(deps.join("matplotlib/pyplot.py"), FAKE_PYPLOT).unwrap();
        for (key, value) in map["data"].as_object().unwrap() {
            std::fs::write(run.join(key), value.as_str().unwrap()).unwrap();
        }
        // The fence targets are the cluster's (the metadata endpoint, this machine's DNS servers): tests never probe
        // those, so the run configuration gets an empty fence (core's runner tests check the fence itself).
        let mut config: RunConfig = serde_json::from_value(
            map["data"][RUN_CONFIG_FILE].as_str().map_or(Value::Null, |text| serde_json::from_str(text).unwrap()),
        )
        .unwrap();
        config.fence = Fence::default();
        std::fs::write(run.join(RUN_CONFIG_FILE), serde_json::to_string(&config).unwrap()).unwrap();
        let env = pod["spec"]["containers"][0]["env"].as_array().unwrap().clone();
        let nonce = env.iter().find(|e| e["name"] == NONCE_ENV).unwrap()["value"].as_str().unwrap().to_owned();
        let out = Command::new(python())
            .arg(run.join(RUNNER_FILE))
            .arg(ROLE_RUN)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &work)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env(WORK_DIR_ENV, &work)
            .env(RUN_DIR_ENV, &run)
            .env(DEPS_DIR_ENV, &deps)
            .env(SOURCE_DIR_ENV, dirs.join("user-source"))
            .env(NONCE_ENV, &nonce)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        eprintln!("runner stderr: {}", String::from_utf8_lossy(&out.stderr));
        let code = out.status.code().unwrap();
        self.fake.set_log(name, "python", &String::from_utf8_lossy(&out.stdout));
        self.fake.set_status(
            PODS,
            name,
            json!({"phase": if code == 0 { "Succeeded" } else { "Failed" }, "containerStatuses": [container("python",
                json!({"terminated": {"exitCode": code, "reason": "Completed", "startedAt": "2026-01-01T00:00:02Z",
                       "finishedAt": "2026-01-01T00:00:05Z"}}))]}),
        );
    }

    /// Runs `code` through the API server and the operator to its end; its execution id.
    async fn run(&self, code: &str, eval_last_expr: bool) -> String {
        let (id, name) = self.submit(code, eval_last_expr).await;
        // The finalizer (with a log store), then the children.
        self.reconcile(&name).await;
        if self.fake.get(PODS, &name).is_none() {
            self.reconcile(&name).await;
        }
        self.run_pod(&name);
        self.reconcile(&name).await;
        let phase = self.fake.get(EXECUTIONS, &name).unwrap()["status"]["phase"].clone();
        assert_eq!(phase, "Completed", "{}", self.fake.get(EXECUTIONS, &name).unwrap()["status"]);
        id
    }

    async fn get(&self, uri: &str) -> (StatusCode, Option<String>, Vec<u8>) {
        let request = Request::builder().uri(uri).header(header::HOST, "localhost").body(Body::empty()).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type =
            response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec();
        (status, content_type, body)
    }

    async fn get_json(&self, uri: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.get(uri).await;
        (status, serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body))))
    }
}

/// A CPython the runner can run with (the system one, as the runner's own tests use).
fn python() -> &'static str {
    ["/usr/bin/python3", "/usr/local/bin/python3"].into_iter().find(|p| Path::new(p).exists()).expect("a python3")
}

/// Writes a CSV into its working directory (`/work` in a Pod), plots it, saves and shows the chart.
const PROGRAM: &str = "import matplotlib.pyplot as plt\n\
                       with open('out.csv', 'w') as f:\n\
                       \x20   f.write('month,sales\\n1,10\\n2,12\\n')\n\
                       plt.plot([1, 2], [10, 12])\n\
                       plt.savefig('chart.png')\n\
                       plt.show()\n\
                       print('done')\n\
                       'sales'\n";

#[tokio::test]
async fn files_and_figures_of_an_execution_come_back_through_the_api() {
    let cluster = cluster(true).await;
    let id = cluster.run(PROGRAM, true).await;
    let name = id.replacen('_', "-", 1);
    let status = cluster.fake.get(EXECUTIONS, &name).unwrap()["status"].clone();
    assert_eq!((status["filesCount"].as_u64(), status["outputsCount"].as_u64()), (Some(2), Some(1)), "{status}");
    assert!(status["logsRef"].as_str().unwrap().ends_with(&format!("/logs/{NS}/uid-{name}")), "{status}");

    // The result: the value, the figure in `outputs`, the files in `files`.
    let (code, result) = cluster.get_json(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!((result["status"].as_str(), result["result"].as_str()), (Some("completed"), Some("'sales'")));
    assert_eq!(result["stdout"], "done");
    let outputs = result["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{result}");
    assert_eq!(outputs[0]["type"], "image/png");
    let png = base64::engine::general_purpose::STANDARD.decode(outputs[0]["data"].as_str().unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "{png:?}");
    let mut paths: Vec<&str> =
        result["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(paths, ["chart.png", "out.csv"]);
    assert!(result.get("files_truncated").is_none());
    let got = cluster.backend.get(&id).await.unwrap().unwrap();
    assert_eq!(got.outputs.len(), 1);

    // The list, one file, all of them as a tar.
    let (code, list) = cluster.get_json(&format!("/api/v1/executions/{id}/files")).await;
    assert_eq!((code, list["truncated"].as_bool()), (StatusCode::OK, Some(false)), "{list}");
    let csv = list["files"].as_array().unwrap().iter().find(|f| f["path"] == "out.csv").unwrap().clone();
    assert_eq!(csv["size"], 22);
    let (code, content_type, body) = cluster.get(&format!("/api/v1/executions/{id}/files/out.csv")).await;
    assert_eq!((code, content_type.as_deref()), (StatusCode::OK, Some("text/csv")));
    assert_eq!(body, b"month,sales\n1,10\n2,12\n");
    assert_eq!(pyexec_core::files_out::sha256_hex(&body), csv["sha256"].as_str().unwrap());
    let (code, content_type, chart) = cluster.get(&format!("/api/v1/executions/{id}/files/chart.png")).await;
    assert_eq!((code, content_type.as_deref()), (StatusCode::OK, Some("image/png")));
    assert_eq!(chart, png, "the saved chart is the figure shown");
    let (code, content_type, tar) = cluster.get(&format!("/api/v1/executions/{id}/files?format=tar")).await;
    assert_eq!((code, content_type.as_deref()), (StatusCode::OK, Some("application/x-tar")));
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entries: Vec<(String, Vec<u8>)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (path, data)
        })
        .collect();
    entries.sort();
    assert_eq!(entries, [("chart.png".to_string(), png), ("out.csv".into(), body)]);

    // What was not kept, or does not exist.
    assert_eq!(cluster.get(&format!("/api/v1/executions/{id}/files/main.py")).await.0, StatusCode::NOT_FOUND);
    let unknown = "exe_00000000-0000-4000-8000-000000000000";
    assert_eq!(cluster.get(&format!("/api/v1/executions/{unknown}/files")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(cluster.get(&format!("/api/v1/executions/{unknown}/files/out.csv")).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_program_run_without_evaluation_keeps_its_files_and_its_result() {
    let cluster = cluster(true).await;
    let code = "import sys\nopen('report.txt', 'w').write('partial')\nprint('oops', file=sys.stderr)\n1 / 0\n";
    let (id, name) = cluster.submit(code, false).await;
    cluster.reconcile(&name).await;
    cluster.reconcile(&name).await;
    // While it runs, nothing is kept yet.
    let (status, list) = cluster.get_json(&format!("/api/v1/executions/{id}/files")).await;
    assert_eq!((status, list["files"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)));
    cluster.run_pod(&name);
    cluster.reconcile(&name).await;
    let (_, result) = cluster.get_json(&format!("/api/v1/executions/{id}")).await;
    assert_eq!((result["status"].as_str(), result["exit_code"].as_i64()), (Some("completed"), Some(1)), "{result}");
    assert_eq!((result["error_type"].as_str(), result["error_line"].as_i64()), (Some("ZeroDivisionError"), Some(4)));
    assert!(result["stderr"].as_str().unwrap().starts_with("oops\nTraceback"), "{result}");
    assert!(result.get("outputs").is_none() && result.get("result").is_none(), "{result}");
    assert_eq!(result["files"][0]["path"], "report.txt", "{result}");
    let (_, _, body) = cluster.get(&format!("/api/v1/executions/{id}/files/report.txt")).await;
    assert_eq!(body, b"partial");
    // The resource goes (its time to live): the finalizer removes the stored record and files with it.
    let mut cr = cluster.fake.get(EXECUTIONS, &name).unwrap();
    cr["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:10:00Z");
    cluster.fake.put(EXECUTIONS, cr);
    cluster.reconcile(&name).await;
    assert!(!cluster.root.path().join("store").join(NS).join(format!("uid-{name}.files")).exists());
}

#[tokio::test]
async fn without_the_operators_log_store_the_files_are_not_kept_and_the_api_says_why() {
    let cluster = cluster(false).await;
    let id = cluster.run("open('out.csv', 'w').write('x')\nprint('hi')\n", false).await;
    let (code, result) = cluster.get_json(&format!("/api/v1/executions/{id}")).await;
    assert_eq!((code, result["stdout"].as_str()), (StatusCode::OK, Some("hi\n")));
    assert!(result.get("files").is_none(), "{result}");
    let (code, error) = cluster.get_json(&format!("/api/v1/executions/{id}/files")).await;
    assert_eq!(code, StatusCode::NOT_IMPLEMENTED, "{error}");
    assert!(error["error"].as_str().unwrap().contains("logs.dir"), "{error}");
    assert_eq!(cluster.get(&format!("/api/v1/executions/{id}/files/out.csv")).await.0, StatusCode::NOT_IMPLEMENTED);
    let status = cluster.fake.get(EXECUTIONS, &id.replacen('_', "-", 1)).unwrap()["status"].clone();
    assert!(status.get("filesCount").is_none() && status.get("logsRef").is_none(), "{status}");
    assert_eq!(cluster.backend.get(&id).await.unwrap().unwrap().status, ExecutionStatus::Completed);
}
