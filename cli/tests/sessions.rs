//! `session ...`, `files` and `--save-outputs` against a live server (docs/sessions.md, docs/cli.md).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{run_cli, text};
use pyexec_testkit::Server;

fn cli(server: &Server, args: &[&str], stdin: &str) -> Output {
    run_cli(&server.url, args, stdin)
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Code that shows a 1x1 PNG with `display` (no matplotlib needed).
const SHOW_PNG: &str = "import base64\n\
class Dot:\n    def _repr_png_(self):\n        return base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')\n\
display(Dot())\n";

#[tokio::test]
async fn a_session_keeps_its_state_and_files() {
    let s = Server::start().await;
    let id = ok(&cli(&s, &["session", "new", "--idle-timeout", "120", "-e", "MODE=test"], "")).trim().to_owned();
    assert!(id.starts_with("ses_") && !id.contains('\n'), "the id alone on its line: {id:?}");

    assert_eq!(ok(&cli(&s, &["session", "eval", &id, "import os\nx = 20"], "")), "");
    assert_eq!(ok(&cli(&s, &["session", "eval", &id, "print('adding')\nx + 22"], "")), "adding\n42\n");
    assert_eq!(ok(&cli(&s, &["session", "eval", &id, "-q"], "os.environ['MODE']\n")), "'test'\n", "stdin");
    assert_eq!(ok(&cli(&s, &["session", "eval", &id, "-", "--no-result"], "x\n")), "");
    let dir = tempfile::tempdir().unwrap();
    let cell = dir.path().join("cell.py");
    std::fs::write(&cell, "y = x * 2\ny\n").unwrap();
    assert_eq!(ok(&cli(&s, &["session", "eval", &id, "-f", cell.to_str().unwrap()], "")), "40\n");

    let failing = cli(&s, &["session", "eval", &id, "undefined_name"], "");
    assert_eq!(failing.status.code(), Some(1), "exit codes as eval");
    assert!(text(&failing.stderr).contains("NameError"), "{}", text(&failing.stderr));
    let slow = cli(&s, &["--timeout", "1", "session", "eval", &id, "import time\ntime.sleep(30)"], "");
    assert_eq!(slow.status.code(), Some(124));
    assert_eq!(ok(&cli(&s, &["session", "eval", &id, "-q", "x"], "")), "20\n", "the state survives a timeout");

    // Files in, files out.
    let local = dir.path().join("cities.csv");
    std::fs::write(&local, "city,temp\nOslo,4\nLima,19\n").unwrap();
    let up = ok(&cli(&s, &["session", "upload", &id, local.to_str().unwrap(), "data/cities.csv"], ""));
    assert_eq!(up, "Uploaded data/cities.csv (25 bytes)\n");
    let up = ok(&cli(&s, &["--output", "json", "session", "upload", &id, local.to_str().unwrap()], ""));
    let v: serde_json::Value = serde_json::from_str(&up).unwrap();
    assert_eq!((v["path"].as_str(), v["size"].as_u64()), (Some("cities.csv"), Some(25)), "named after the file");
    let code = "open('data/cities.csv').read().count('\\n')";
    assert_eq!(ok(&cli(&s, &["session", "eval", &id, "-q", code], "")), "3\n");

    let table = ok(&cli(&s, &["session", "files", &id], ""));
    assert!(table.starts_with("PATH") && table.contains("data/cities.csv") && table.contains("25"), "{table}");
    let content = ok(&cli(&s, &["session", "files", &id, "data/cities.csv"], ""));
    assert_eq!(content, "city,temp\nOslo,4\nLima,19\n");
    let copy = dir.path().join("copy.csv");
    ok(&cli(&s, &["session", "files", &id, "data/cities.csv", "-o", copy.to_str().unwrap()], ""));
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&local).unwrap());
    let tar = dir.path().join("work.tar");
    ok(&cli(&s, &["session", "files", &id, "--tar", "-o", tar.to_str().unwrap()], ""));
    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    assert!(text(&listing.stdout).contains("data/cities.csv"), "{}", text(&listing.stdout));
    let missing = cli(&s, &["session", "files", &id, "nope.txt", "-o", dir.path().join("nope").to_str().unwrap()], "");
    assert_eq!(missing.status.code(), Some(1));
    assert!(!dir.path().join("nope").exists(), "no partial file");
    let hostile = cli(&s, &["session", "files", &id, "../../etc/passwd"], "");
    assert_eq!(hostile.status.code(), Some(1));
    assert!(text(&hostile.stderr).starts_with("Error: invalid file path"), "{}", text(&hostile.stderr));

    let ls = ok(&cli(&s, &["session", "ls"], ""));
    assert!(ls.starts_with("SESSION ID") && ls.contains(&id), "{ls}");
    let ls = ok(&cli(&s, &["--output", "json", "session", "ls"], ""));
    let v: serde_json::Value = serde_json::from_str(&ls).unwrap();
    assert!(v["sessions"].as_array().unwrap().iter().any(|s| s["session_id"] == id.as_str()));

    assert_eq!(ok(&cli(&s, &["session", "rm", &id], "")), format!("Session {id} ended\n"));
    let gone = cli(&s, &["session", "eval", &id, "1"], "");
    assert_eq!((gone.status.code(), text(&gone.stderr)), (Some(1), format!("Error: session {id} not found\n")));
}

#[tokio::test]
async fn one_call_at_a_time_and_json_sessions() {
    let s = Server::start().await;
    let out = ok(&cli(&s, &["--output", "json", "session", "new", "--memory-mb", "256"], ""));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["session_id"].as_str().unwrap().to_owned();
    assert_eq!((v["state"].as_str(), v["memory_mb"].as_i64()), (Some("idle"), Some(256)));

    let slow = Command::new(env!("CARGO_BIN_EXE_python-executor"))
        .args(["session", "eval", &id, "import time\ntime.sleep(3)\n'done'"])
        .env("PYEXEC_SERVER", &s.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let busy = cli(&s, &["session", "eval", &id, "1"], "");
    assert_eq!(busy.status.code(), Some(1));
    assert!(text(&busy.stderr).contains("busy"), "{}", text(&busy.stderr));
    let slow = slow.wait_with_output().unwrap();
    assert_eq!(ok(&slow), "'done'\n");

    let out = ok(&cli(&s, &["--output", "json", "session", "eval", &id, "1 + 1"], ""));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["result"].as_str(), v["session_id"].as_str()), (Some("2"), Some(id.as_str())));
    let out = ok(&cli(&s, &["--output", "json", "session", "rm", &id], ""));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["state"], "ended");
}

#[tokio::test]
async fn files_of_an_execution_and_display_outputs() {
    let s = Server::start().await;
    let code = "import os\nos.makedirs('out', exist_ok=True)\nopen('out/report.txt', 'w').write('total: 42\\n')\n";
    let out = ok(&cli(&s, &["--output", "json", "eval", code], ""));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["execution_id"].as_str().unwrap().to_owned();
    let files = v["files"].as_array().map(Vec::as_slice).unwrap_or_default();
    assert!(files.iter().any(|f| f["path"] == "out/report.txt"), "the result names its files: {v}");

    let table = ok(&cli(&s, &["files", &id], ""));
    let row = table.lines().find(|l| l.starts_with("out/report.txt")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains(" 10  ") && row.split_whitespace().last().unwrap().len() == 64, "{row}");
    let json = ok(&cli(&s, &["--output", "json", "files", &id], ""));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["truncated"], false);
    assert_eq!(ok(&cli(&s, &["files", &id, "out/report.txt"], "")), "total: 42\n");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.txt");
    ok(&cli(&s, &["files", &id, "out/report.txt", "-o", report.to_str().unwrap()], ""));
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "total: 42\n");
    let tar = ok(&cli(&s, &["files", &id, "--tar"], ""));
    assert!(tar.contains("out/report.txt") && tar.contains("total: 42"), "a tar on (piped) stdout");
    let missing = cli(&s, &["files", &id, "absent.txt"], "");
    assert_eq!(
        (missing.status.code(), text(&missing.stderr)),
        (Some(1), format!("Error: file \"absent.txt\" of execution {id} not found\n"))
    );

    // Display outputs: a note without --save-outputs, a file with it.
    let out = cli(&s, &["eval", SHOW_PNG], "");
    ok(&out);
    assert_eq!(text(&out.stderr), "[image/png output: 70 bytes; --save-outputs DIR saves it]\n");
    let plots = dir.path().join("plots");
    let out = cli(&s, &["eval", "--save-outputs", plots.to_str().unwrap(), SHOW_PNG], "");
    ok(&out);
    let saved: Vec<_> = std::fs::read_dir(&plots).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(saved.len(), 1);
    assert!(std::fs::read(&saved[0]).unwrap().starts_with(b"\x89PNG"));
    assert!(text(&out.stderr).contains(&format!("saved to {}", saved[0].display())), "{}", text(&out.stderr));

    let id = ok(&cli(&s, &["session", "new"], "")).trim().to_owned();
    let out = cli(&s, &["session", "eval", &id, "--save-outputs", plots.to_str().unwrap(), SHOW_PNG], "");
    ok(&out);
    assert!(text(&out.stderr).starts_with("[image/png output: 70 bytes; saved to "), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(&plots).unwrap().count(), 2);
    ok(&cli(&s, &["session", "rm", &id], ""));
}
