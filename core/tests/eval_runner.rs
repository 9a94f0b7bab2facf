//! The eval runner (`python/eval_runner.py`) with a real CPython, outside any sandbox: how a program ends. The
//! runner exits without tearing the interpreter down, so these check that everything a program can observe of
//! Python's shutdown still happens: threads joined, atexit handlers, objects of the program's modules finalized,
//! files it left open flushed, exit statuses as Python gives them.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pyexec_core::eval::EVAL_RUNNER_SOURCE;

fn python() -> PathBuf {
    for candidate in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("no python3 in /usr/bin or /usr/local/bin");
}

/// Runs `files` (the first is the program) through the runner in a fresh directory; returns the output and the
/// directory (to look at what the program left).
fn run(files: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("eval_runner.py");
    std::fs::write(&runner, EVAL_RUNNER_SOURCE).unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    let output = Command::new(python())
        .arg(&runner)
        .arg(dir.path().join(files[0].0))
        .current_dir(dir.path())
        .env_clear()
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output, dir)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn what_python_does_at_exit_still_happens() {
    let program = r#"
import atexit, os, sys, threading, time
import helper

class Noisy:
    def __del__(self):
        print("finalized", flush=True)

kept = Noisy()
log = open("left-open.txt", "w")
log.write("written but never closed")
helper.start()

def late():
    time.sleep(0.2)
    print("thread finished", flush=True)

threading.Thread(target=late).start()
atexit.register(lambda: print("atexit ran", flush=True))
print("main done")
"#;
    let helper = "handle = None\ndef start():\n    global handle\n    handle = open('helper-open.txt', 'w')\n    handle.write('from a module')\n";
    let (out, dir) = run(&[("main.py", program), ("helper.py", helper)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "main done\nthread finished\natexit ran\nfinalized\n");
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(read("left-open.txt"), "written but never closed");
    assert_eq!(read("helper-open.txt"), "from a module");
}

#[test]
fn exit_statuses_are_pythons() {
    let cases: [(&str, i32, &str); 6] = [
        ("print('ok')", 0, ""),
        ("import sys\nsys.exit(3)", 3, ""),
        ("import sys\nsys.exit(None)", 0, ""),
        ("import sys\nsys.exit('bye')", 1, "bye\n"),
        ("import sys\nsys.exit(-1)", 255, ""),
        ("raise ValueError('boom')", 1, "ValueError: boom\n"),
    ];
    for (code, status, stderr_end) in cases {
        let (out, _dir) = run(&[("main.py", code)]);
        assert_eq!(out.status.code(), Some(status), "{code:?}: {}", text(&out.stderr));
        assert!(text(&out.stderr).ends_with(stderr_end), "{code:?}: {:?}", text(&out.stderr));
    }
}

#[test]
fn a_failed_flush_of_stdout_exits_120_as_python_does() {
    let dir = tempfile::tempdir().unwrap();
    let runner = dir.path().join("eval_runner.py");
    std::fs::write(&runner, EVAL_RUNNER_SOURCE).unwrap();
    std::fs::write(dir.path().join("main.py"), "import sys\n_ = sys.stdout.write('x' * 10)").unwrap();
    // Buffered stdout to a full device: the write is kept in the buffer, the flush at exit fails.
    let out = Command::new(python())
        .arg(&runner)
        .arg(dir.path().join("main.py"))
        .env_clear()
        .stdin(Stdio::null())
        .stdout(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(120), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("OSError: [Errno 28] No space left on device"), "{}", text(&out.stderr));
}
