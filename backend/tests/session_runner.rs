//! The real session runner (CPython, `core/python/session_runner.py`) in mux mode, as a Pod runs it, driven by the
//! shared session link: state between calls, output split into calls, an in-band interrupt at the timeout, a
//! cell that will not stop, and files in and out; and its gate, as a Kubernetes session Pod starts it (isolated,
//! `PYEXEC_GATE=1`, next to the Pod runner and the fence): nothing runs without the operator's go-ahead or with the
//! fence open, and after it the session is served with the installed packages on its path.

#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::Duration;

use pyexec_backend::session::{CallCaps, CallObserved, SessionControl, SessionLink};
use pyexec_core::session::SessionCall;

struct InBand;

impl SessionControl for InBand {
    fn interrupt(&self) -> bool {
        false
    }
    fn oom_kills(&self) -> u64 {
        0
    }
}

const CAPS: CallCaps = CallCaps { output_bytes: 1 << 20, files_bytes: 1 << 20, files_count: 100 };

fn cell(code: &str, timeout: u64) -> SessionCall {
    SessionCall { code: code.into(), eval_last_expr: true, timeout: Duration::from_secs(timeout), ..Default::default() }
}

fn report(observed: &CallObserved) -> serde_json::Value {
    serde_json::from_slice(observed.result_channel.as_deref().unwrap_or(b"null")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_in_mux_mode_keeps_state_splits_output_and_stops_on_an_interrupt() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(dir.path().join("eval_runner.py"), pyexec_core::eval::EVAL_RUNNER_SOURCE).unwrap();
    std::fs::write(dir.path().join("session_runner.py"), pyexec_core::session::SESSION_RUNNER_SOURCE).unwrap();
    let python = std::env::var("PYEXEC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = tokio::process::Command::new(python)
        .arg(dir.path().join("session_runner.py"))
        .arg("--mux")
        .env("PYEXEC_WORK_DIR", &work)
        .env("PYEXEC_FILES_ROOT", &work)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let requests = child.stdin.take().unwrap();
    let muxed = child.stdout.take().unwrap();
    let mut link = SessionLink::from_mux(Box::new(requests), muxed, 64 << 20);

    let code = "x = 41\nprint('out', end='')\nimport sys\nprint('err', file=sys.stderr)";
    let first = link.call(&cell(code, 10), CAPS, &InBand).await;
    assert_eq!((first.exit, first.lost), (Some(0), false), "{first:?}");
    assert_eq!(first.stdout.bytes, b"out");
    assert_eq!(first.stderr.bytes, b"err\n");
    let second = link.call(&cell("x + 1", 10), CAPS, &InBand).await;
    assert_eq!(report(&second)["result"], "42");
    assert!(second.stdout.bytes.is_empty(), "the first call's output stayed with it");

    // At the timeout the link interrupts in band; the session survives.
    let slow = link.call(&cell("import time\nwhile True:\n    time.sleep(0.01)", 1), CAPS, &InBand).await;
    assert!(slow.timed_out && !slow.lost, "{slow:?}");
    assert_eq!(slow.exit, Some(130));
    assert!(String::from_utf8_lossy(&slow.stderr.bytes).contains("KeyboardInterrupt"));
    assert_eq!(report(&link.call(&cell("x", 10), CAPS, &InBand).await)["result"], "41");

    // Files: in, out with the call, listed and read back; links are not followed.
    let put = link.put("data/in.txt", 5, &b"hello"[..]).await.unwrap();
    assert_eq!(put.size, 5);
    let code = "open('out.txt', 'w').write(open('data/in.txt').read().upper())";
    let wrote = link.call(&cell(code, 10), CAPS, &InBand).await;
    let tar = wrote.files_tar.expect("the call's files");
    let files = pyexec_core::files_out::read_tar(&tar, 1 << 20, 100).unwrap();
    assert_eq!(files.files.iter().map(|(f, _)| f.path.as_str()).collect::<Vec<_>>(), ["out.txt"]);
    let (listed, truncated) = link.list(100).await.unwrap();
    let paths: Vec<&str> = listed.iter().map(|f| f.path.as_str()).collect();
    assert_eq!((paths, truncated), (vec!["data/in.txt", "out.txt"], false));
    assert_eq!(link.get("out.txt", 1 << 20).await.unwrap(), b"HELLO");
    link.call(&cell("import os\nos.symlink('/etc/passwd', 'link')", 10), CAPS, &InBand).await;
    assert!(link.get("link", 1 << 20).await.is_err());

    // A cell that ignores the interrupt is lost after the grace: the backend replaces the interpreter.
    let stubborn = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass";
    let lost = link.call(&cell(stubborn, 1), CAPS, &InBand).await;
    assert!(lost.timed_out && lost.lost);
    drop(link);
    let _ = child.kill().await;
}

/// A gated runner as a session Pod starts it: `python -I session_runner.py --mux` with `PYEXEC_GATE=1`, the Pod
/// runner and `fence.json` next to it, `deps` as the install container's directory.
struct Gated {
    child: tokio::process::Child,
    work: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start_gated(fence: serde_json::Value, deps: Option<&std::path::Path>, env: &[(&str, &str)]) -> Gated {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let runners = dir.path().join("opt");
    std::fs::create_dir(&runners).unwrap();
    std::fs::write(runners.join("eval_runner.py"), pyexec_core::eval::EVAL_RUNNER_SOURCE).unwrap();
    std::fs::write(runners.join("session_runner.py"), pyexec_core::session::SESSION_RUNNER_SOURCE).unwrap();
    std::fs::write(runners.join("pod_runner.py"), pyexec_core::pod::RUNNER_SOURCE).unwrap();
    std::fs::write(runners.join(pyexec_core::session::SESSION_FENCE_FILE), fence.to_string()).unwrap();
    let python = std::env::var("PYEXEC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut command = tokio::process::Command::new(python);
    command
        .arg("-I")
        .arg(runners.join("session_runner.py"))
        .arg("--mux")
        .env(pyexec_core::pod::protocol::GATE_ENV, pyexec_core::pod::protocol::FLAG_ON)
        .env("PYEXEC_WORK_DIR", &work)
        .env("PYEXEC_FILES_ROOT", &work)
        .env("PYEXEC_DEPS", deps.unwrap_or(&dir.path().join("no-deps")))
        // Where the tests run in a Pod, the probe would find the real API: the fence is the test's alone.
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("PYTHONUNBUFFERED", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Gated { child: command.spawn().unwrap(), work, _dir: dir }
}

/// What the runner wrote to its standard error (the container log) until it ended or reported: lines.
async fn log_until_report(stderr: &mut tokio::process::ChildStderr) -> String {
    use tokio::io::AsyncReadExt;
    let mut log = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::timeout_at(deadline, stderr.read(&mut byte)).await.unwrap().unwrap() == 1 {
        log.push(byte[0]);
        let text = String::from_utf8_lossy(&log);
        if byte[0] == b'\n' && pyexec_core::session::ready_report(&text).is_some() {
            break;
        }
    }
    String::from_utf8_lossy(&log).into_owned()
}

fn no_fence() -> serde_json::Value {
    serde_json::json!({"tcp": [], "resolv_conf": null})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_go_ahead_a_gated_runner_runs_nothing() {
    // A request where the go-ahead should be (the API server attached too early, say): refused, nothing run.
    let mut gated = start_gated(no_fence(), None, &[]);
    let (requests, muxed) = (gated.child.stdin.take().unwrap(), gated.child.stdout.take().unwrap());
    let mut stderr = gated.child.stderr.take().unwrap();
    let mut link = SessionLink::from_mux(Box::new(requests), muxed, 64 << 20);
    let observed = link.call(&cell("open('ran', 'w').write('x')", 5), CAPS, &InBand).await;
    assert!(observed.lost && observed.exit.is_none(), "{observed:?}");
    let status = gated.child.wait().await.unwrap();
    let log = log_until_report(&mut stderr).await;
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("the operator's go-ahead did not come; nothing was run"), "{log}");
    assert!(!log.contains(pyexec_core::session::READY_MARKER));
    assert!(!gated.work.join("ran").exists(), "the cell never ran");

    // Standard input closed without a word: the same.
    let mut gated = start_gated(no_fence(), None, &[]);
    drop(gated.child.stdin.take());
    let status = gated.child.wait().await.unwrap();
    let log = log_until_report(gated.child.stderr.as_mut().unwrap()).await;
    assert_eq!(status.code(), Some(1));
    assert!(log.contains("go-ahead did not come"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_fence_open_a_gated_runner_runs_nothing() {
    // Something the session must not reach answers (the policy is not enforced): it gives up after its grace.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let fence = serde_json::json!({"tcp": [{"what": "the test's listener", "host": "127.0.0.1", "port": port}],
                                   "resolv_conf": null});
    let mut gated = start_gated(fence, None, &[]);
    let mut stdin = gated.child.stdin.take().unwrap();
    use tokio::io::AsyncWriteExt;
    stdin.write_all(pyexec_core::pod::protocol::GO_AHEAD.as_bytes()).await.unwrap();
    let status = gated.child.wait().await.unwrap();
    let log = log_until_report(gated.child.stderr.as_mut().unwrap()).await;
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("the network fence is open: the test's listener answered; nothing was run"), "{log}");
    assert!(!log.contains(pyexec_core::session::READY_MARKER), "no report: the operator never calls it ready");
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_go_ahead_a_gated_runner_reports_and_serves_with_the_installed_packages() {
    let deps = tempfile::tempdir().unwrap();
    std::fs::write(deps.path().join("installed_pkg.py"), "VERSION = '1.0'\n").unwrap();
    std::fs::write(deps.path().join(".pyexec-installed.json"), r#"["installed-pkg==1.0"]"#).unwrap();
    let user = tempfile::tempdir().unwrap();
    std::fs::write(user.path().join("users_own.py"), "X = 1\n").unwrap();
    let user_path = user.path().to_str().unwrap();
    let mut gated = start_gated(no_fence(), Some(deps.path()), &[("PYTHONPATH", user_path), ("MODE", "test")]);
    let mut stdin = gated.child.stdin.take().unwrap();
    let muxed = gated.child.stdout.take().unwrap();
    use tokio::io::AsyncWriteExt;
    // The go-ahead, and the same again (an operator that did not see the first one arrive): the second is skipped.
    stdin.write_all(b"go\ngo\n").await.unwrap();
    let log = log_until_report(gated.child.stderr.as_mut().unwrap()).await;
    let reported = pyexec_core::session::ready_report(&log).expect("the runner's report");
    assert_eq!(reported.installed, ["installed-pkg==1.0"]);
    assert!(log.starts_with(pyexec_core::session::READY_MARKER), "the log's first line: {log:?}");

    let mut link = SessionLink::from_mux(Box::new(stdin), muxed, 64 << 20);
    let code = "import os, sys, installed_pkg, users_own\n\
                (installed_pkg.VERSION, users_own.X, os.environ.get('PYEXEC_GATE'), os.environ['MODE'],\n\
                 os.environ['PATH'].split(os.pathsep)[0], sys.flags.isolated)";
    let first = link.call(&cell(code, 10), CAPS, &InBand).await;
    assert_eq!(first.exit, Some(0), "{first:?}");
    let bin = deps.path().join("bin");
    let expected = format!("('1.0', 1, None, 'test', {:?}, 0)", bin.to_str().unwrap());
    assert_eq!(report(&first)["result"], expected.replace('"', "'"));
    // The packages come before the session's own PYTHONPATH, as they do for an execution's program.
    let order =
        link.call(&cell("import sys\n[p for p in sys.path if p.startswith('/')][1:3]", 10), CAPS, &InBand).await;
    let expected = format!("[{:?}, {:?}]", deps.path().to_str().unwrap(), user_path).replace('"', "'");
    assert_eq!(report(&order)["result"], expected);
    assert_eq!(report(&link.call(&cell("x = 2\nx * 21", 10), CAPS, &InBand).await)["result"], "42");
    drop(link);
    let _ = gated.child.kill().await;
}
