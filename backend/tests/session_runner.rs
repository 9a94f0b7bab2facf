//! The real session runner (CPython, `core/python/session_runner.py`) in mux mode, as a Pod runs it, driven by the
//! shared session link: state between calls, output split into calls, an in-band interrupt at the timeout, a
//! cell that will not stop, and files in and out.

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
