//! Bad input is refused with a 400 that names the limit, before anything runs, and nothing a program can read
//! reveals the server: its command line (with secrets given as flags) or host paths. Through a real server on
//! 127.0.0.1 with the real sandbox.

#![allow(clippy::unwrap_used)]

use pyexec_testkit::*;
use serde_json::json;

#[tokio::test]
async fn archives_deeper_than_the_sandbox_copies_are_refused_up_front() {
    if Server::external() {
        eprintln!("SKIPPED: checks a local server's limits");
        return;
    }
    let s = Server::start().await;
    let deepest = vec!["d"; pyexec_core::paths::MAX_PATH_DEPTH - 1].join("/");
    let ok = tar_of(&[
        ("main.py", b"import os\nprint(sum(len(f) for _, _, f in os.walk('.')))\n"),
        (&format!("{deepest}/leaf.txt"), b"x"),
    ]);
    let (code, body) = s.exec_tar("sync", ok, json!({"entrypoint": "main.py"})).await;
    assert_eq!((code, body["exit_code"].as_i64(), body["stdout"].as_str()), (200, Some(0), Some("2\n")), "{body}");

    // 129 directories: more than the sandbox copies, refused before the run with the limit named.
    let too_deep = vec!["d"; 129].join("/");
    let bad = tar_of(&[("main.py", b"print(1)\n"), (&format!("{too_deep}/leaf.txt"), b"x")]);
    let (code, body) = s.exec_tar("sync", bad, json!({"entrypoint": "main.py"})).await;
    assert_eq!(code, 400, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains(&format!("deeper than {} levels", pyexec_core::paths::MAX_PATH_DEPTH)), "{error}");
    assert!(!error.contains(s.data_dir().to_str().unwrap()), "no host path in errors: {error}");

    // The same bound for /eval files.
    let (code, body) = s.eval(json!({"files": [{"name": format!("{too_deep}/m.py"), "content": "print(1)"}]})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("deeper than"), "{body}");
}

#[tokio::test]
async fn arguments_and_environments_execve_would_refuse_get_a_400() {
    if Server::external() {
        eprintln!("SKIPPED: checks a local server's limits");
        return;
    }
    let s = Server::start().await;
    let huge = "a".repeat(200 * 1024);
    for metadata in [
        json!({"entrypoint": "main.py", "script_args": [huge]}),
        json!({"entrypoint": "main.py", "env_vars": [format!("BIG={huge}")]}),
        json!({"entrypoint": "main.py", "env_vars": (0..20).map(|i| format!("V{i}={}", "x".repeat(100_000))).collect::<Vec<_>>()}),
    ] {
        let (code, body) = s.exec("sync", &[("main.py", b"print(1)\n")], metadata).await;
        assert_eq!(code, 400, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("at most") && error.contains("bytes"), "names the limit: {error}");
    }
    // Just under the limits, the program gets every byte.
    let big = "b".repeat(100_000);
    let (code, body) = s
        .exec(
            "sync",
            &[("main.py", b"import os, sys\nprint(len(os.environ['BIG']), len(sys.argv[1]))\n")],
            json!({"entrypoint": "main.py", "script_args": [big], "env_vars": [format!("BIG={big}")]}),
        )
        .await;
    assert_eq!((code, body["stdout"].as_str()), (200, Some("100000 100000\n")), "{body}");
}

#[tokio::test]
async fn secrets_given_as_flags_are_invisible_to_programs() {
    if Server::external() {
        eprintln!("SKIPPED: starts a server with flags");
        return;
    }
    let secret = "flag-secret-7f3a9c";
    let s = Server::start_with_args(&[], &["--api-keys", secret]).await;
    let code = "import os\n\
                cmd = open('/proc/1/cmdline', 'rb').read()\n\
                print(len(cmd), cmd.strip(b'\\0') == b'', open('/proc/1/comm').read().strip())\n\
                for pid in os.listdir('/proc'):\n    \
                    if pid.isdigit():\n        \
                        assert b'flag-secret' not in open(f'/proc/{pid}/cmdline', 'rb').read()\n";
    let r = s.post("/api/v1/eval").bearer_auth(secret).json(&json!({"code": code})).send().await.unwrap();
    let (status, body) = json_of(r).await;
    assert_eq!(status, 200, "{body}");
    let stdout = body["stdout"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(stdout.ends_with(" True init\n"), "pid 1 shows an empty command line: {body}");
    assert!(!stdout.contains(secret) && !body["stderr"].as_str().unwrap_or("").contains(secret), "{body}");
    // The server says where secrets belong.
    assert!(s.log_text().contains("PYEXEC_API_KEYS_FILE"), "a start-up warning about the flag:\n{}", s.log_text());
}

#[tokio::test]
async fn settings_in_the_wrong_place_are_refused_naming_the_right_one() {
    if Server::external() {
        eprintln!("SKIPPED: checks a local server's validation");
        return;
    }
    let s = Server::start().await;
    // At the top of /eval, `timeout_seconds` would be ignored and the code run for the default 300 s.
    let (code, body) = s.eval(json!({"code": "import time\ntime.sleep(30)", "timeout_seconds": 1})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("timeout_seconds belongs in config"), "{body}");
    let (code, body) = s.eval(json!({"code": "print(1)", "config": {"timeout": 1}})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("config.timeout_seconds"), "{body}");
    let (code, body) = s.exec_tar("sync", tar_of(&[("main.py", b"print(1)\n")]), json!({"memory_mb": 64})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("memory_mb belongs in config"), "{body}");
    let created = s.post("/api/v1/sessions").json(&json!({"idle_timeout_seconds": 5})).send().await.unwrap();
    assert_eq!(created.status(), 400);

    // The right places, and fields nobody knows (the original accepts those), still run.
    let (code, body) = s.eval(json!({"code": "print(1)", "config": {"timeout_seconds": 5}, "client_tag": "x"})).await;
    assert_eq!((code, body["stdout"].as_str()), (200, Some("1\n")), "{body}");
}
