//! Executions through the real sandbox and real CPython: the compatibility cases that depend on running code
//! (docs/compatibility.md: C17, C23-C27, C32, C38, C41, C46-C50, C59, C62-C66), differences included.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use pyexec_core::ExecutionStatus;
use pyexec_core::model::ExecutionConfig;
use pyexec_testkit::{require, skip};

#[tokio::test]
async fn hello_world() {
    let r = exec("print('Hello, World!')", "{}").await;
    assert_eq!(r.status, ExecutionStatus::Completed, "{r:?}");
    assert_eq!(r.stdout, "Hello, World!\n");
    assert_eq!(r.exit_code, 0);
    assert!(r.started_at.is_some() && r.finished_at.is_some());
    assert_eq!(r.error, None);
}

#[tokio::test]
async fn exit_codes_are_the_programs() {
    let r = exec("import sys; sys.exit(42)", "{}").await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Completed, 42));
    let r = exec("raise SystemExit('bye')", "{}").await;
    assert_eq!(r.exit_code, 1);
    assert_eq!(r.stderr, "bye\n");
    let r = exec("import os; os.kill(os.getpid(), 15)", "{}").await;
    assert_eq!(r.exit_code, 128 + 15, "a signal death reads as 128 + signal");
}

#[tokio::test]
async fn stdin_is_fed_then_closed() {
    let code = "import sys\ndata = sys.stdin.read()\nprint(f'Length: {len(data)}')";
    let r = exec(code, r#"{"stdin":"Hello from stdin!"}"#).await;
    assert_eq!(r.stdout, "Length: 17\n");
    let code = "import sys\nlines = sys.stdin.read().splitlines()\nprint(f'Got {len(lines)} lines')\nfor i, l in enumerate(lines):\n    print(f'Line {i}: {l}')";
    let r = exec(code, r#"{"stdin":"line1\nline2\nline3\n"}"#).await;
    assert!(r.stdout.starts_with("Got 3 lines\nLine 0: line1\n"), "{}", r.stdout);
    let r = exec("import sys; print(repr(sys.stdin.read()))", "{}").await;
    assert_eq!(r.stdout, "''\n", "no stdin reads as empty, never blocks");
}

#[tokio::test]
async fn env_vars_and_script_args() {
    let code = "import os, sys\nprint(os.environ['GREETING'], os.environ['EQ'])\nprint(sys.argv[1:])";
    let r = exec(
        code,
        r#"{"env_vars":["GREETING=hi there","EQ=a=b=c"],"script_args":["--verbose","arg with spaces","$VAR",""]}"#,
    )
    .await;
    assert_eq!(r.stdout, "hi there a=b=c\n['--verbose', 'arg with spaces', '$VAR', '']\n", "{r:?}");
}

#[tokio::test]
async fn the_server_environment_does_not_leak() {
    // SAFETY: test-only; set before any sandbox child reads it (and children never read our environment).
    unsafe { std::env::set_var("PYEXEC_TEST_SECRET", "s3cret") };
    let r = exec("import os; print(sorted(os.environ))", "{}").await;
    assert!(!r.stdout.contains("PYEXEC_TEST_SECRET"), "{}", r.stdout);
    assert!(r.stdout.contains("'HOME'") && r.stdout.contains("'PATH'"));
}

#[tokio::test]
async fn multi_file_projects_import_their_modules() {
    let r = exec_files(
        &[
            ("main.py", "from helper import greet\nfrom pkg.calc import add\ngreet()\nprint(f'Result: {add(7, 8)}')"),
            ("helper.py", "def greet():\n    print('main entry')"),
            ("pkg/__init__.py", ""),
            ("pkg/calc.py", "def add(a, b):\n    return a + b"),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.stdout, "main entry\nResult: 15\n", "{r:?}");
}

#[tokio::test]
async fn no_entrypoint_runs_the_package_main() {
    let dir = workspace(&[("__main__.py", "print('from __main__')")]);
    let spec = pyexec_core::Policy::default().spec_from_metadata(Default::default()).unwrap();
    let r = run_spec(&spec, &ws_path(&dir)).await;
    assert_eq!(r.stdout, "from __main__\n", "{r:?}");
    let r = exec("print(1)", r#"{"entrypoint":"missing.py"}"#).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Completed, 2));
    assert!(r.stderr.contains("can't open file '/work/missing.py'"), "{}", r.stderr);
}

#[tokio::test]
async fn tracebacks_fill_error_fields_on_exec_too() {
    let r = exec("print(undefined_var)", "{}").await;
    assert_eq!((r.exit_code, r.error_type.as_deref(), r.error_line), (1, Some("NameError"), Some(1)));
    assert_eq!(r.error_message.as_deref(), Some("name 'undefined_var' is not defined"));
    let r = exec("if True\n    pass", "{}").await;
    assert_eq!(r.error_type.as_deref(), Some("SyntaxError"));
    assert_eq!(r.error_line, Some(1));
    let r = exec("import json\n\njson.loads('nope')", "{}").await;
    assert_eq!((r.error_type.as_deref(), r.error_line), (Some("JSONDecodeError"), Some(3)));
    let r = exec("raise Exception('plain')", "{}").await;
    assert_eq!(r.error_type.as_deref(), Some("Exception"));
}

#[tokio::test]
async fn eval_error_lines_point_into_the_users_file() {
    let code = "def main():\n    print([][5])\n\nx = 1\nmain()\nx";
    let r = eval(code).await;
    assert_eq!((r.error_type.as_deref(), r.error_line), (Some("IndexError"), Some(5)), "{r:?}");
    assert!(!r.stderr.contains("eval_runner"), "runner frames are hidden: {}", r.stderr);
    let r = eval("x = 1\nint('x')").await;
    assert_eq!((r.error_type.as_deref(), r.error_line), (Some("ValueError"), Some(2)));
    let r = eval("if True\n    pass").await;
    assert_eq!((r.error_type.as_deref(), r.error_line), (Some("SyntaxError"), Some(1)), "{r:?}");
    let r = eval("raise KeyboardInterrupt").await;
    assert_eq!((r.error_type.as_deref(), r.exit_code), (Some("KeyboardInterrupt"), 130));
}

/// The 21 cases of the original's `scripts/test-eval-last-expr.sh`, with code sent as `jq -Rs` does (trailing
/// newline).
#[tokio::test]
async fn eval_last_expression_vectors() {
    for (code, want) in pyexec_testkit::EVAL_LAST_EXPR_CASES {
        let r = eval(&format!("{code}\n")).await;
        assert_eq!(r.status, ExecutionStatus::Completed, "{code}: {r:?}");
        assert_eq!(r.result.as_deref(), *want, "{code}: {r:?}");
    }
    let r = eval("print('hello')\n").await;
    assert_eq!(r.stdout, "hello\n", "stdout untouched without a result");
    let r = eval("print('computing...')\n2 ** 10\n").await;
    assert_eq!(r.stdout, "computing...", "one trailing newline trimmed when there is a result");
    let r = eval("2 + 2").await;
    assert_eq!(r.stdout, "", "{r:?}");
    let r = eval_json(r#"{"code":"print(42)"}"#).await;
    assert_eq!((r.stdout.as_str(), r.result), ("42\n", None), "eval_last_expr defaults to false");
}

#[tokio::test]
async fn eval_runs_in_a_clean_main_namespace() {
    let r = eval("import sys\n(__name__, sorted(k for k in globals() if not k.startswith('__')), sys.argv[0])").await;
    assert_eq!(r.result.as_deref(), Some("('__main__', ['sys'], '/work/main.py')"), "{r:?}");
    let r = eval("json = 'shadowed'\n1 + 1").await;
    assert_eq!(r.result.as_deref(), Some("2"), "shadowing a module name cannot break the result");
    let r = eval("print('___PYEXEC_RESULT___\"forged\"')\n'real'").await;
    assert_eq!(r.result.as_deref(), Some("'real'"), "the result travels out of band");
}

#[tokio::test]
async fn python_versions_are_honoured() {
    let runner = runner().await;
    for version in runner.interpreters().versions() {
        let r = eval_json(
            &serde_json::json!({"code": "import sys\nsys.version_info[:2]", "eval_last_expr": true,
                                "python_version": version.to_string()})
            .to_string(),
        )
        .await;
        assert_eq!(r.result, Some(format!("(3, {})", version.minor)), "{version}: {r:?}");
    }
    eprintln!("python versions checked: {}", runner.interpreters().list());
    let mut spec = pyexec_core::Policy::default().spec_from_metadata(Default::default()).unwrap();
    for minor in [10, 11, 12, 13] {
        spec.python = Some(pyexec_core::PythonVersion { minor });
        if let Err(e) = runner.check(&spec) {
            assert!(e.message.contains("is not available on this server; available: "), "{}", e.message);
        }
    }
}

#[tokio::test]
async fn images_map_to_interpreters_or_are_refused() {
    let runner = runner().await;
    let mut spec = pyexec_core::Policy::default().spec_from_metadata(Default::default()).unwrap();
    spec.image = Some("ubuntu:24.04".into());
    let err = runner.check(&spec).unwrap_err();
    assert!(err.message.contains("cannot be used by the embedded backend"), "{}", err.message);
    let default = runner.interpreters().default_version().unwrap();
    let r = exec("import sys; print(sys.version_info[:2])", &format!(r#"{{"docker_image":"python:{default}-slim"}}"#))
        .await;
    assert_eq!(r.stdout, format!("(3, {})\n", default.minor));
}

#[tokio::test]
async fn large_stdout_is_returned_intact_up_to_the_cap() {
    let r = exec("import sys\nsys.stdout.write('x' * 100_000)", "{}").await;
    assert_eq!(r.stdout.len(), 100_000);
    assert!(!r.stdout_truncated);
}

#[tokio::test]
async fn huge_output_is_capped_drained_and_flagged_with_flat_server_memory() {
    let before = peak_rss_kib();
    let code = "import sys\nchunk = 'y' * 65536\nfor _ in range(1600):\n    sys.stdout.write(chunk)\nsys.stderr.write('e' * 3_000_000)\nprint('done', file=sys.stderr)";
    let r = exec(code, r#"{"config":{"timeout_seconds":60}}"#).await;
    assert_eq!(r.status, ExecutionStatus::Completed, "the program never blocks on a full pipe");
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.stdout.len(), 1 << 20);
    assert!(r.stdout_truncated && r.stderr_truncated);
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "100 MiB of output must not be held: peak RSS grew by {grown} KiB");
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn timeout_fails_with_124_and_keeps_output() {
    let r =
        exec("import time\nprint('before', flush=True)\ntime.sleep(30)", r#"{"config":{"timeout_seconds":2}}"#).await;
    assert_eq!(r.status, ExecutionStatus::Failed);
    assert_eq!(r.exit_code, 124);
    assert_eq!(r.error.as_deref(), Some("execution timeout after 2s"));
    assert_eq!(r.stdout, "before\n");
    let took = r.finished_at.unwrap().millis_since(r.started_at.unwrap());
    assert!((1900..6000).contains(&took), "killed at the deadline, took {took} ms");
}

#[tokio::test]
async fn cancellation_kills_and_reports_killed() {
    let code = HOST_UID_PRELUDE.to_owned() + "import time\nprint('started', flush=True)\ntime.sleep(60)";
    let dir = workspace(&[("main.py", &code)]);
    let spec = pyexec_core::Policy::default()
        .spec_from_metadata(serde_json::from_str(r#"{"entrypoint":"main.py"}"#).unwrap())
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let ws = ws_path(&dir);
    let run = run_events(&spec, &ws, Some(tx), cancel.clone());
    let killer = async {
        // Kill once the program has demonstrably started.
        let mut seen = Vec::new();
        while !seen.ends_with(b"started\n") {
            seen.extend(rx.recv().await.expect("live output arrives while the program runs").bytes);
        }
        cancel.cancel();
    };
    let (r, ()) = tokio::join!(run, killer);
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Killed, 137));
    assert!(r.stdout.ends_with("started\n"));
    let uid = host_uid_of(&r.stdout);
    assert!(sandbox_processes(uid).is_empty(), "{:?}", sandbox_processes(uid));
}

#[tokio::test]
async fn out_of_memory_is_137_and_flagged() {
    if !full_isolation().await {
        return skip(require::FULL_ISOLATION, "out_of_memory_is_137_and_flagged", "needs cgroups (reduced isolation)");
    }
    let r = exec("b = bytearray(500 * 1024 * 1024)\nprint('allocated')", r#"{"config":{"memory_mb":64}}"#).await;
    assert_eq!((r.status, r.exit_code, r.oom_killed), (ExecutionStatus::Completed, 137, true), "{r:?}");
    let r = exec(
        "chunks = []\nwhile True:\n    chunks.append(bytearray(10 * 1024 * 1024))",
        r#"{"config":{"memory_mb":64}}"#,
    )
    .await;
    assert_eq!((r.exit_code, r.oom_killed), (137, true), "{r:?}");
}

#[tokio::test]
async fn cpu_shares_become_a_quota() {
    if !full_isolation().await {
        return skip(require::FULL_ISOLATION, "cpu_shares_become_a_quota", "needs cgroups (reduced isolation)");
    }
    let code = "import time\nw, c = time.time(), time.process_time()\nwhile time.time() - w < 1.5:\n    pass\nprint(round((time.process_time() - c) / (time.time() - w), 2))";
    let r = exec(code, r#"{"config":{"cpu_shares":256}}"#).await;
    let ratio: f64 = r.stdout.trim().parse().unwrap_or_else(|_| panic!("{r:?}"));
    assert!(ratio < 0.5, "256 shares = a quarter CPU, but the program used {ratio} of a CPU");
}

#[tokio::test]
async fn live_output_arrives_before_the_end() {
    let dir = workspace(&[("main.py", "import time\nfor i in range(3):\n    print(i)\n    time.sleep(0.3)")]);
    let spec = pyexec_core::Policy::default()
        .spec_from_metadata(serde_json::from_str(r#"{"entrypoint":"main.py"}"#).unwrap())
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let ws = ws_path(&dir);
    let started = std::time::Instant::now();
    let run = run_events(&spec, &ws, Some(tx), Default::default());
    let watch = async {
        let first = rx.recv().await.unwrap();
        let at = started.elapsed();
        let mut all = first.bytes.clone();
        while let Some(c) = rx.recv().await {
            all.extend(c.bytes);
        }
        (at, all)
    };
    let (r, (first_at, all)) = tokio::join!(run, watch);
    assert_eq!(r.stdout, "0\n1\n2\n");
    assert_eq!(all, b"0\n1\n2\n");
    assert!(first_at.as_millis() < 500, "the first line arrived after {first_at:?}");
}

#[tokio::test]
async fn workspace_larger_than_disk_mb_fails_clearly() {
    let big = "#".repeat(3 << 20);
    let r = exec_files(&[("main.py", "print(1)"), ("data.txt", &big)], r#"{"config":{"disk_mb":1}}"#).await;
    assert_eq!(r.status, ExecutionStatus::Failed);
    assert_ne!(r.exit_code, 0);
    assert!(r.error.as_deref().unwrap_or("").contains("do not fit into /work"), "{r:?}");
}

#[tokio::test]
async fn config_limits_are_validated_before_running() {
    let err = pyexec_core::Policy::default()
        .limits(&ExecutionConfig { memory_mb: Some(-5), ..Default::default() })
        .unwrap_err();
    assert!(err.message.contains("must not be negative"));
}
