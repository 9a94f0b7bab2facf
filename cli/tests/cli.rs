//! The CLI against a live server: its compatibility cases (docs/compatibility.md, C81-C92), the original's
//! `scripts/test-examples.sh` among them,
//! and our additions.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::{run_cli, text};
use pyexec_testkit::Server;

fn cli(server: &Server, args: &[&str], stdin: &str) -> Output {
    // The original scripts pass the server with a trailing slash.
    run_cli(&format!("{}/", server.url), args, stdin)
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("project");
    std::fs::create_dir(&p).unwrap();
    std::fs::write(p.join("main.py"), "import helper, sys\nprint('main entry')\nhelper.run(sys.argv[1:])\n").unwrap();
    std::fs::write(p.join("helper.py"), "def run(args):\n    if args:\n        print('args', args)\n").unwrap();
    dir
}

#[tokio::test]
async fn the_original_example_cases() {
    let s = Server::start().await;
    let out = cli(&s, &["run"], "print('hello world')\n");
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "hello world\n".into()), "{}", text(&out.stderr));
    let out = cli(&s, &["run"], "print(2 + 2)\n");
    assert_eq!(text(&out.stdout), "4\n");
    let out = cli(&s, &["run"], "x = 5\ny = 10\nprint(x + y)\n");
    assert_eq!(text(&out.stdout), "15\n");
    let out = cli(&s, &["run"], "import sys\nsys.exit(42)\n");
    assert_eq!(out.status.code(), Some(42), "the program's exit code");
    let out = cli(&s, &["run", "-q"], "print('quiet')\n");
    assert_eq!((text(&out.stdout), text(&out.stderr)), ("quiet\n".into(), String::new()));
    let out = cli(&s, &["version"], "");
    assert!(text(&out.stdout).contains("python-executor"));

    let dir = project();
    let p = dir.path().join("project");
    let script = dir.path().join("single.py");
    std::fs::write(&script, "print('from a file')\n").unwrap();
    let out = cli(&s, &["run", script.to_str().unwrap()], "");
    assert_eq!(text(&out.stdout), "from a file\n");
    let out = cli(&s, &["run", p.to_str().unwrap()], "");
    assert_eq!(text(&out.stdout), "main entry\n", "{}", text(&out.stderr));
    let tar = dir.path().join("project.tar");
    let status = Command::new("tar").arg("-cf").arg(&tar).arg("-C").arg(&p).arg(".").status().unwrap();
    assert!(status.success());
    let out = cli(&s, &["run", tar.to_str().unwrap()], "");
    assert_eq!(text(&out.stdout), "main entry\n", "{}", text(&out.stderr));
}

#[tokio::test]
async fn arguments_env_files_and_verbose_output() {
    let s = Server::start().await;
    let dir = project();
    let p = dir.path().join("project");
    let out = cli(&s, &["run", p.to_str().unwrap(), "--", "--model", "gpt-4", "a b"], "");
    assert_eq!(text(&out.stdout), "main entry\nargs ['--model', 'gpt-4', 'a b']\n");

    // SAFETY: the variable is only read by the child process started below.
    let out = Command::new(env!("CARGO_BIN_EXE_python-executor"))
        .args(["run", "-e", "API_KEY", "--env", "DEBUG=true", "-v"])
        .env("API_KEY", "s3cret")
        .env("PYEXEC_SERVER", &s.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"import os\nprint(os.environ['API_KEY'], os.environ['DEBUG'])")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(text(&out.stdout), "s3cret true\n");
    let err = text(&out.stderr);
    assert!(err.contains("Execution ID: exe_") && err.contains("Status: completed") && err.contains("---"), "{err}");

    let out = cli(&s, &["run", "-e", "PYEXEC_SURELY_UNSET"], "print(1)");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Error: environment variable \"PYEXEC_SURELY_UNSET\" not set\n");

    let files = format!("{},{}", p.join("main.py").display(), p.join("helper.py").display());
    let out = cli(&s, &["run", "--file", &files], "");
    assert_eq!(text(&out.stdout), "main entry\n", "--file sends files by base name: {}", text(&out.stderr));
}

#[tokio::test]
async fn eval_results_timeouts_and_json() {
    let s = Server::start().await;
    let out = cli(&s, &["eval", "print('computing')\n2 ** 10"], "");
    assert_eq!(text(&out.stdout), "computing\n1024\n");
    let out = cli(&s, &["eval", "-q"], "6 * 7\n");
    assert_eq!(text(&out.stdout), "42\n");
    let out = cli(&s, &["eval", "--no-result", "5"], "");
    assert_eq!(text(&out.stdout), "");
    let out = cli(&s, &["eval", "undefined_name"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("NameError"));
    let out = cli(&s, &["eval", "--timeout", "1", "import time\ntime.sleep(10)"], "");
    assert_eq!(out.status.code(), Some(124), "timeouts exit 124");
    assert!(text(&out.stderr).contains("Error: execution timeout after 1s"));
    let out = cli(&s, &["--output", "json", "eval", "1 + 1"], "");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["status"].as_str(), v["result"].as_str()), (Some("completed"), Some("2")));
}

#[tokio::test]
async fn submit_follow_get_list_kill() {
    let s = Server::start().await;
    let out = cli(
        &s,
        &["submit"],
        "import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.2)\n",
    );
    let id = text(&out.stdout).trim().to_owned();
    assert!(id.starts_with("exe_"), "{id}");
    let out = cli(&s, &["follow", &id], "");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "tick 0\ntick 1\ntick 2\n");
    assert!(text(&out.stderr).contains(&format!("Following execution {id}...")));
    let out = cli(&s, &["--output", "json", "get", &id], "");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "completed");
    let out = cli(&s, &["list", "--limit", "5"], "");
    assert!(text(&out.stdout).contains(&id));
    let out = cli(&s, &["kill", &id], "");
    assert_eq!(text(&out.stdout), "Execution already completed\n");

    let out = cli(&s, &["run", "--async"], "import time\ntime.sleep(60)\n");
    let id = text(&out.stdout).trim().to_owned();
    let out = cli(&s, &["kill", &id], "");
    assert_eq!(text(&out.stdout), "Execution killed\n");
    let out = cli(&s, &["follow", &id], "");
    assert_eq!(out.status.code(), Some(137));
}

#[tokio::test]
async fn errors_are_one_line_and_exit_1() {
    let s = Server::start().await;
    let out = cli(&s, &["run"], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "Error: no input provided: either specify a file/directory argument or pipe code via stdin\n"
    );
    let out = cli(&s, &["run", "a.py", "b.py"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("Error: invalid arguments"));
    let out = cli(&s, &["get", "exe_00000000-0000-4000-8000-000000000000"], "");
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), "Error: execution not found\n".into()));
    let out = cli(&s, &["eval", "1", "--python", "2.7"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unsupported python_version"), "{}", text(&out.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_python-executor"))
        .args(["--server", "http://127.0.0.1:9", "eval", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("Error: cannot reach the server") && err.lines().count() == 1, "{err}");
    let out = cli(&s, &["completions", "bash"], "");
    assert!(text(&out.stdout).contains("python-executor"));
}

/// docs/cli.md: `kill` says `Execution killed` only when it stopped the execution, else `Execution already
/// <status>`, also for an execution killed before.
#[tokio::test]
async fn kill_says_whether_it_killed() {
    let s = Server::start().await;
    let out = cli(&s, &["run", "--async"], "import time\ntime.sleep(60)\n");
    let id = text(&out.stdout).trim().to_owned();
    let out = cli(&s, &["kill", &id], "");
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(0), "Execution killed\n".into()), "{}", text(&out.stderr));
    let out = cli(&s, &["kill", &id], "");
    assert_eq!(text(&out.stdout), "Execution already killed\n", "nothing was left to kill");
    let out = cli(&s, &["--output", "json", "kill", &id], "");
    assert_eq!(text(&out.stdout), "{\"status\":\"killed\"}\n");
    let out = cli(&s, &["-q", "kill", &id], "");
    assert_eq!((text(&out.stdout), text(&out.stderr)), (String::new(), String::new()));

    let out = cli(&s, &["submit"], "raise SystemExit(3)\n");
    let id = text(&out.stdout).trim().to_owned();
    cli(&s, &["follow", "-q", &id], "");
    let out = cli(&s, &["kill", &id], "");
    assert_eq!(text(&out.stdout), "Execution already completed\n");
    let out = cli(&s, &["kill", "exe_00000000-0000-4000-8000-000000000000"], "");
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), "Error: execution not found\n".into()));
}

/// docs/cli.md: a server that cannot be reached is named, with where its address comes from, in text and JSON.
#[test]
fn an_unreachable_server_is_named_with_where_to_set_it() {
    let bin = env!("CARGO_BIN_EXE_python-executor");
    // Nothing listens on the discard port.
    let out = Command::new(bin).args(["--server", "http://127.0.0.1:9", "get", "exe_1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("Error: cannot reach the server at http://127.0.0.1:9: "), "{err}");
    assert!(err.contains("--server") && err.contains("PYEXEC_SERVER") && err.lines().count() == 1, "{err}");

    let out = Command::new(bin)
        .args(["--output", "json", "eval", "1"])
        .env("PYEXEC_SERVER", "http://127.0.0.1:9/")
        .output()
        .unwrap();
    assert_eq!((out.status.code(), text(&out.stderr)), (Some(1), String::new()));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["error"]["kind"].as_str(), &v["error"]["status"]), (Some("transport"), &serde_json::Value::Null));
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("cannot reach the server at http://127.0.0.1:9: "), "{message}");
    assert!(message.contains("--server") && message.contains("PYEXEC_SERVER"), "{message}");
}

/// The reason of a failed install is printed once: not in the program's stderr and again as the `Error:` line.
#[tokio::test]
async fn a_failed_install_prints_its_reason_once() {
    let s = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let requirements = dir.path().join("requirements.txt");
    std::fs::write(&requirements, "this-package-does-not-exist-xyz==1.0\n").unwrap();
    let out = cli(&s, &["run", "--requirements", requirements.to_str().unwrap()], "print('never')\n");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("Error: ")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    let reason = errors[0].strip_prefix("Error: installing dependencies failed: ").unwrap_or_else(|| panic!("{err}"));
    // uv's own first line of the reason; the index may be out of reach, which is then the reason.
    let head = reason.split(": ").next().unwrap();
    assert_eq!(err.matches(head).count(), 1, "{head:?} printed more than once:\n{err}");
    assert!(!text(&out.stdout).contains("never"));
}
