//! Shared helpers: one real runner (real sandbox, real CPython) per test binary, and requests built exactly as
//! the API builds them.
//!
//! With `PYEXEC_TEST_WARM=1` the runner has warm pools, and every run that a warm sandbox can serve is made to
//! start warm (the helper waits until its pool has an idle sandbox, then checks that the run claimed one), so the
//! same suites check pooled runs; the test command runs them both ways.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pyexec_core::{CodeFile, EvalRequest, ExecutionResult, ExecutionSpec, Metadata, Policy};
use pyexec_embedded::{Discovery, InstallerConfig, Runner, RunnerSettings, WarmSettings};
use pyexec_sandbox::SandboxConfig;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

static RUNNER: OnceCell<Runner> = OnceCell::const_new();

/// The state directory of the test runner (also inspected by the leak test).
pub fn state_dir() -> PathBuf {
    std::env::temp_dir().join(format!("pyexec-embedded-tests-{}", std::process::id()))
}

pub async fn runner() -> &'static Runner {
    RUNNER
        .get_or_init(|| async {
            let runner = Runner::new(
                SandboxConfig::new(state_dir()),
                &Discovery::everywhere(),
                RunnerSettings::default(),
                InstallerConfig::new(state_dir().join("environments")),
            )
            .await
            .expect("the sandbox works on this machine");
            let runner = if warm_mode() {
                eprintln!("!!! NOTE: warm pools on: runs that fit a pool start in a warm sandbox");
                runner.with_warm_pool(WarmSettings { build_parallelism: 2, ..WarmSettings::default() })
            } else {
                runner
            };
            if !runner.isolation().privileged {
                eprintln!("!!! NOTE: not running as root: tests check the reduced (rootless) isolation");
            }
            runner
        })
        .await
}

/// Whether the suites run against warm sandboxes (`PYEXEC_TEST_WARM=1`).
pub fn warm_mode() -> bool {
    std::env::var("PYEXEC_TEST_WARM").is_ok_and(|v| v == "1")
}

/// Whether this host gives full isolation (root, cgroups).
pub async fn full_isolation() -> bool {
    runner().await.isolation().level == pyexec_sandbox::IsolationLevel::Full
}

/// A workspace with `files`, as the API stages it.
pub fn workspace(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    pyexec_core::workspace::create_dir(&ws).unwrap();
    let files: Vec<CodeFile> =
        files.iter().map(|(n, c)| CodeFile { name: n.to_string(), content: c.to_string() }).collect();
    pyexec_core::workspace::write_files(&files, &ws).unwrap();
    dir
}

pub fn ws_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("ws")
}

/// Runs a spec over a staged workspace (in a warm sandbox in warm mode, when one can serve it).
pub async fn run_spec(spec: &ExecutionSpec, workspace: &Path) -> ExecutionResult {
    run_spec_with(spec, workspace, CancellationToken::new()).await
}

/// [`run_spec`] with a cancellation token.
pub async fn run_spec_with(spec: &ExecutionSpec, workspace: &Path, cancel: CancellationToken) -> ExecutionResult {
    run_events(spec, workspace, None, cancel).await
}

/// [`run_spec`] with live output to `events` and a cancellation token.
pub async fn run_events(
    spec: &ExecutionSpec,
    workspace: &Path,
    events: Option<tokio::sync::mpsc::Sender<pyexec_sandbox::OutputChunk>>,
    cancel: CancellationToken,
) -> ExecutionResult {
    let runner = runner().await;
    runner.check(spec).expect("the runner accepts the spec");
    let warm = warm_mode() && runner.prewarm(spec, workspace, std::time::Duration::from_secs(60)).await;
    let ran = runner.run_reporting("exe_test", spec, None, workspace, events, cancel).await;
    if warm && ran.started {
        assert!(ran.warm, "an idle warm sandbox was ready, yet the run started cold: {:?}", ran.result);
    }
    ran.result
}

/// `/exec/sync` with `main.py` = `code` and the given metadata JSON (entrypoint defaults to main.py).
pub async fn exec(code: &str, metadata: &str) -> ExecutionResult {
    exec_files(&[("main.py", code)], metadata).await
}

pub async fn exec_files(files: &[(&str, &str)], metadata: &str) -> ExecutionResult {
    let mut meta: Metadata = serde_json::from_str(metadata).unwrap();
    if meta.entrypoint.is_none() {
        meta.entrypoint = Some("main.py".into());
    }
    let spec = Policy::default().spec_from_metadata(meta).unwrap();
    let dir = workspace(files);
    run_spec(&spec, &ws_path(&dir)).await
}

/// `/eval` with the given JSON body.
pub async fn eval_json(body: &str) -> ExecutionResult {
    let req: EvalRequest = serde_json::from_str(body).unwrap();
    let (spec, files) = Policy::default().spec_from_eval(req).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    pyexec_core::workspace::create_dir(&ws).unwrap();
    pyexec_core::workspace::write_files(&files, &ws).unwrap();
    run_spec(&spec, &ws).await
}

/// `/eval` of `code` in REPL mode.
pub async fn eval(code: &str) -> ExecutionResult {
    eval_json(&serde_json::json!({"code": code, "eval_last_expr": true}).to_string()).await
}

/// Python lines that print the run's host uid (`host-uid N`), for [`host_uid_of`] and [`sandbox_processes`].
pub const HOST_UID_PRELUDE: &str = "print('host-uid', open('/proc/self/uid_map').read().split()[1], flush=True)\n";

/// The host uid a run printed with [`HOST_UID_PRELUDE`] (`None` when it printed none).
pub fn host_uid_of(stdout: &str) -> Option<u64> {
    stdout.lines().find_map(|l| l.strip_prefix("host-uid ")).and_then(|u| u.trim().parse().ok())
}

/// Host processes whose real uid is `uid` (any sandbox uid when `None`): there must be none once a run is over.
pub fn sandbox_processes(uid_filter: Option<u64>) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let uid: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse().ok())
            .unwrap_or(0);
        let matches = match uid_filter {
            Some(wanted) => uid == wanted,
            None => (2_000_000_000..2_000_065_536).contains(&uid),
        };
        if matches {
            found.push(format!("pid {name} uid {uid}: {}", status.lines().next().unwrap_or("")));
        }
    }
    found
}
