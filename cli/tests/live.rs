//! What people and scripts see while and after a run, against a live server: output as it is produced (`run`,
//! `follow`), the spinner only on a terminal and never inside a line, the line saying why a run was stopped (out of
//! memory, killed, timed out), errors as JSON with `--output json`, and bash completion of subcommand flags.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{run_cli, text};
use pyexec_testkit::{Server, require, skip};

const BIN: &str = env!("CARGO_BIN_EXE_python-executor");

/// Prints a line, sleeps, prints another: the first must be on screen long before the program ends.
const SLOW: &str = "import time\nprint('first line')\ntime.sleep(3)\nprint('second line')\n";

/// Spinner frames and the escape sequence that erases it.
fn has_spinner(s: &str) -> bool {
    s.contains('\x1b') || s.chars().any(|c| ('\u{2800}'..='\u{28ff}').contains(&c)) || s.contains("running")
}

/// Reads `from` on a thread, sending each chunk as it arrives.
fn chunks(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Collects chunks until `text` has arrived (or the time is up); what arrived.
fn until(rx: &mpsc::Receiver<Vec<u8>>, text: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains(text) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => got.extend(chunk),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The rest of the chunks, to the end of the stream.
fn rest(rx: mpsc::Receiver<Vec<u8>>) -> String {
    String::from_utf8_lossy(&rx.into_iter().flatten().collect::<Vec<u8>>()).into_owned()
}

fn spawn(server: &Server, args: &[&str], stdin: &str, stderr: Stdio) -> Child {
    let mut child = Command::new(BIN)
        .args(args)
        .env("PYEXEC_SERVER", &server.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child
}

/// The first line of SLOW arrives on stdout while the program still runs; stdout is exactly its output.
fn shows_output_live(mut child: Child) {
    let started = Instant::now();
    let stdout = chunks(child.stdout.take().unwrap());
    let first = until(&stdout, "first line\n", Duration::from_secs(60));
    assert_eq!(first, "first line\n", "the first line, alone");
    assert!(child.try_wait().unwrap().is_none(), "the command still waits for the program");
    let at_first = started.elapsed();
    let rest = rest(stdout);
    let status = child.wait().unwrap();
    assert_eq!(rest, "second line\n");
    assert_eq!(status.code(), Some(0));
    let at_end = started.elapsed();
    assert!(at_end - at_first >= Duration::from_secs(2), "the first line came {at_first:?}, the end {at_end:?}");
    assert!(!has_spinner(&(first + &rest)), "no spinner on stdout");
}

#[tokio::test]
async fn run_and_follow_print_output_as_it_is_produced() {
    let s = Server::start().await;
    shows_output_live(spawn(&s, &["run"], SLOW, Stdio::null()));

    let id = text(&run_cli(&s.url, &["submit"], SLOW).stdout).trim().to_owned();
    assert!(id.starts_with("exe_"), "{id}");
    shows_output_live(spawn(&s, &["follow", &id], "", Stdio::null()));

    // Output the run printed without a line end, stderr, the exit code and -v, as before.
    let out =
        run_cli(&s.url, &["run", "-v"], "import sys\nprint('a', end='')\nprint('oops', file=sys.stderr)\nsys.exit(3)");
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(3), "a".into()));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("oops\n") && err.contains("Execution ID: exe_") && err.contains("Status: completed"),
        "{err}"
    );
    assert!(!has_spinner(&err), "no spinner without a terminal: {err:?}");
}

/// Ctrl-C while `run` waits stops the run, as closing the synchronous request did.
#[tokio::test]
async fn interrupting_run_kills_its_execution() {
    let s = Server::start().await;
    let mut child = spawn(&s, &["run"], "import time\nprint('started')\ntime.sleep(60)\n", Stdio::piped());
    let stdout = chunks(child.stdout.take().unwrap());
    assert_eq!(until(&stdout, "started\n", Duration::from_secs(60)), "started\n");
    // SAFETY: signals the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let err = text(&out.stderr);
    let id = err.split("execution ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or_default().to_owned();
    assert!(id.starts_with("exe_") && err.ends_with(" killed\n"), "{err:?}");
    let get = run_cli(&s.url, &["--output", "json", "get", &id], "");
    let v: serde_json::Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(v["status"], "killed", "{v}");
}

/// A pseudo-terminal: the side the command writes to, and a reader of what the terminal shows.
fn pty() -> (std::fs::File, std::fs::File) {
    // SAFETY: plain libc calls on a descriptor this function owns; ptsname_r writes at most `buf.len()` bytes.
    unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut buf = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(master, buf.as_mut_ptr(), buf.len()), 0);
        let path = std::ffi::CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
        let reader = std::fs::File::from(OwnedFd::from_raw_fd(master));
        use std::os::unix::fs::OpenOptionsExt;
        let terminal =
            std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(path).unwrap();
        (terminal, reader)
    }
}

#[tokio::test]
async fn the_spinner_is_on_the_terminal_only_and_never_inside_a_line() {
    let s = Server::start().await;
    let code = "import time\nprint('step', end='')\ntime.sleep(1.5)\nprint(' one')\ntime.sleep(1.5)\nprint('two')\n";

    // stderr on a terminal: the spinner is drawn there, stdout (a pipe) has the program's output only.
    let (terminal, screen) = pty();
    let mut child = spawn(&s, &["run"], code, Stdio::from(terminal));
    let screen = chunks(screen);
    let stdout = rest(chunks(child.stdout.take().unwrap()));
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(stdout, "step one\ntwo\n");
    let shown = rest(screen);
    assert!(shown.contains(" running "), "the spinner was shown: {shown:?}");
    assert!(shown.ends_with("\r\x1b[2K"), "and cleared at the end: {shown:?}");

    // Both streams on one terminal, as people run it: the spinner waits for the line to end (`follow` used to
    // draw it right after `step`).
    for follow in [false, true] {
        let id =
            if follow { text(&run_cli(&s.url, &["submit"], code).stdout).trim().to_owned() } else { String::new() };
        let args = if follow { vec!["follow", id.as_str()] } else { vec!["run"] };
        let (terminal, screen) = pty();
        let mut child = Command::new(BIN)
            .args(&args)
            .env("PYEXEC_SERVER", &s.url)
            .stdin(Stdio::piped())
            .stdout(Stdio::from(terminal.try_clone().unwrap()))
            .stderr(Stdio::from(terminal))
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(code.as_bytes()).unwrap();
        let screen = chunks(screen);
        assert_eq!(child.wait().unwrap().code(), Some(0));
        let shown = rest(screen);
        assert!(shown.contains("step one\r\n"), "{args:?}: nothing drawn inside a line: {shown:?}");
        assert!(shown.contains("\r\x1b[2Ktwo\r\n"), "{args:?}: the spinner is erased before output: {shown:?}");
        assert!(shown.contains(" running "), "{args:?}: {shown:?}");
    }
}

async fn full_isolation(s: &Server, test: &str) -> bool {
    let health: serde_json::Value = s.get("/health").send().await.unwrap().json().await.unwrap();
    if health["isolation"]["level"] == "full" {
        return true;
    }
    let why = format!("needs full isolation (memory limits), this server's is {}", health["isolation"]["level"]);
    skip(require::FULL_ISOLATION, test, &why);
    false
}

#[tokio::test]
async fn out_of_memory_kills_and_timeouts_say_why() {
    let s = Server::start().await;
    if full_isolation(&s, "out_of_memory_kills_and_timeouts_say_why").await {
        let hog = "print('allocating')\nx = bytearray(512 * 1024 * 1024)\nprint(len(x))\n";
        let out = run_cli(&s.url, &["run", "--memory", "64"], hog);
        assert_eq!(out.status.code(), Some(137), "the exit code is the program's");
        assert_eq!(text(&out.stdout), "allocating\n");
        let err = text(&out.stderr);
        assert_eq!(err.lines().last(), Some("python-executor: out of memory (limit 64 MiB); exit code 137"), "{err:?}");
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        let out = run_cli(&s.url, &["eval", "--memory", "64", "bytearray(512 * 1024 * 1024)"], "");
        assert_eq!(out.status.code(), Some(137));
        assert!(text(&out.stderr).contains("python-executor: out of memory (limit 64 MiB)"), "{}", text(&out.stderr));
        let out = run_cli(&s.url, &["run", "-q", "--memory", "64"], hog);
        assert_eq!((out.status.code(), text(&out.stderr)), (Some(137), String::new()), "-q prints nothing else");
        let out = run_cli(&s.url, &["--output", "json", "run", "--memory", "64"], hog);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((v["oom_killed"].as_bool(), v["exit_code"].as_i64()), (Some(true), Some(137)));
    }

    let id =
        text(&run_cli(&s.url, &["submit"], "import time\nprint('started')\ntime.sleep(60)\n").stdout).trim().to_owned();
    let mut follower = spawn(&s, &["follow", &id], "", Stdio::piped());
    let stdout = chunks(follower.stdout.take().unwrap());
    assert_eq!(until(&stdout, "started\n", Duration::from_secs(60)), "started\n");
    assert_eq!(text(&run_cli(&s.url, &["kill", &id], "").stdout), "Execution killed\n");
    let out = follower.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137));
    let err = text(&out.stderr);
    assert!(err.ends_with("python-executor: killed before it finished (python-executor kill, or the server stopped it); exit code 137\n"), "{err:?}");

    let out = run_cli(&s.url, &["run", "--timeout", "1"], "import time\nprint('waiting')\ntime.sleep(30)\n");
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(124), "waiting\n".into()));
    assert_eq!(text(&out.stderr), "Error: execution timeout after 1s\n");
}

/// `--output json`: whatever fails, stdout is one JSON document `{"error": {...}}`, stderr is empty, exit code 1.
#[tokio::test]
async fn errors_are_json_with_output_json() {
    let s = Server::start().await;
    let json_error = |out: std::process::Output| -> serde_json::Value {
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(text(&out.stderr), "", "nothing on stderr");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("stdout is JSON ({e}): {:?}", text(&out.stdout));
        });
        assert_eq!(text(&out.stdout).lines().count(), 1, "one document, one line");
        v["error"].clone()
    };
    let e = json_error(run_cli(&s.url, &["--output", "json", "eval", "1", "--python", "2.7"], ""));
    assert_eq!((e["kind"].as_str(), e["status"].as_u64()), (Some("rejected"), Some(400)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("unsupported python_version"), "{e}");

    let e = json_error(run_cli(&s.url, &["--output", "json", "get", "exe_00000000-0000-4000-8000-000000000000"], ""));
    assert_eq!(e, serde_json::json!({"message": "execution not found", "kind": "not_found", "status": 404}));

    let e = json_error(run_cli("http://127.0.0.1:9", &["--output", "json", "run"], "print(1)"));
    assert_eq!((e["kind"].as_str(), &e["status"]), (Some("transport"), &serde_json::Value::Null), "{e}");
    assert!(e["message"].as_str().unwrap().starts_with("cannot reach the server"), "{e}");

    let e = json_error(run_cli(&s.url, &["--output", "json", "run"], ""));
    assert_eq!(e["kind"], "input");
    assert!(e["message"].as_str().unwrap().starts_with("no input provided"), "{e}");

    let e = json_error(run_cli(&s.url, &["--output", "json", "session", "eval", "ses_nope", "1"], ""));
    assert_eq!((e["kind"].as_str(), e["status"].as_u64()), (Some("not_found"), Some(404)), "{e}");

    // Text output keeps the one `Error:` line on stderr.
    let out = run_cli(&s.url, &["eval", "1", "--python", "2.7"], "");
    assert_eq!((out.status.code(), text(&out.stdout)), (Some(1), String::new()));
    assert!(text(&out.stderr).starts_with("Error: the server refused the request (400)"), "{}", text(&out.stderr));
}

/// Completes `line` (the cursor at its end) with the bash script `python-executor completions bash` prints, in a
/// bash without the bash-completion package: sources it, finds the function `complete -p` registered, calls it
/// as bash would, and returns COMPREPLY.
fn complete_in_bash(script: &str, line: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("python-executor.bash");
    std::fs::write(&path, script).unwrap();
    let driver = r#"
set -u
source "$1"
spec=$(complete -p python-executor) || exit 3
fn=$(sed -E 's/.* -F ([^ ]+) .*/\1/' <<<"$spec")
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
cur=${COMP_WORDS[COMP_CWORD]}
prev=${COMP_WORDS[COMP_CWORD-1]}
"$fn" python-executor "$cur" "$prev"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", driver, "driver"])
        .arg(&path)
        .arg(line)
        .output()
        .unwrap();
    assert!(out.status.success(), "bash: {}", text(&out.stderr));
    text(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

#[test]
fn bash_completes_subcommand_flags() {
    let out = Command::new(BIN).args(["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let script = text(&out.stdout);
    assert_eq!(complete_in_bash(&script, "python-executor run --mem"), ["--memory"]);
    assert_eq!(complete_in_bash(&script, "python-executor run --ent"), ["--entrypoint"]);
    assert!(complete_in_bash(&script, "python-executor ses").contains(&"session".to_owned()));
    assert_eq!(complete_in_bash(&script, "python-executor session new --idle"), ["--idle-timeout"]);
    assert_eq!(complete_in_bash(&script, "python-executor eval --save"), ["--save-outputs"]);
    let mut budgets = complete_in_bash(&script, "python-executor mcp --max-std");
    budgets.sort();
    assert_eq!(budgets, ["--max-stderr-bytes", "--max-stdout-bytes"]);
}
