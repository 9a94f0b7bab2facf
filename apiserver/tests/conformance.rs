//! The compatibility promise over HTTP (docs/compatibility.md: C1-C80 and A1-A7, differences included), and bad input.
//! Runs against a server it starts (real sandbox, real CPython), or any backend via `PYEXEC_TEST_SERVER`.

#![allow(clippy::unwrap_used)]

use pyexec_testkit::*;
use serde_json::{Value, json};

#[tokio::test]
async fn health_docs_and_the_original_404() {
    let s = Server::start().await;
    let (code, health) = json_of(s.get("/health").send().await.unwrap()).await;
    assert_eq!(code, 200);
    assert_eq!(health["status"], "ok");
    assert!(!health["python_versions"].as_array().unwrap().is_empty());
    assert!(health["isolation"]["level"].is_string(), "{health}");

    let r = s.get("/docs/index.html").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    for path in ["/docs/openapi.json", "/docs/doc.json"] {
        let (code, doc) = json_of(s.get(path).send().await.unwrap()).await;
        assert_eq!(code, 200);
        assert_eq!(doc["openapi"], "3.1.0", "{path}");
        for op in [
            "/api/v1/eval",
            "/api/v1/exec/sync",
            "/api/v1/exec/async",
            "/api/v1/executions/{id}",
            "/api/v1/executions/{id}/events",
        ] {
            assert!(doc["paths"][op].is_object(), "{op} missing from {path}");
        }
    }

    let r = s.get("/nope").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().await.unwrap(), "404 page not found");
    let r = s.client.put(format!("{}/api/v1/eval", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 404, "a wrong method is a 404 too, as the original");

    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirect.get(format!("{}/health/", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "/health");
    let r = no_redirect.post(format!("{}/api/v1/eval/", s.url)).send().await.unwrap();
    assert_eq!(r.status(), 307);

    let r = s.get("/metrics").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("pyexec_queue_depth"));
    let r = s.get("/health").send().await.unwrap();
    assert!(r.headers().contains_key("x-request-id"));
}

/// The 21 cases of the original's `scripts/test-eval-last-expr.sh`.
#[tokio::test]
async fn eval_last_expression_cases() {
    let s = Server::start().await;
    for (code, want) in pyexec_testkit::EVAL_LAST_EXPR_CASES {
        let (status, r) = s.eval(json!({"code": format!("{code}\n"), "eval_last_expr": true})).await;
        assert_eq!(status, 200);
        assert_eq!(r["status"], "completed", "{code}: {r}");
        match want {
            Some(w) => assert_eq!(r["result"], *w, "{code}: {r}"),
            None => assert!(r.get("result").is_none(), "result must be absent, not null: {code}: {r}"),
        }
    }
    let (_, r) = s.eval(json!({"code": "print('hello')\n", "eval_last_expr": true})).await;
    assert_eq!(r["stdout"], "hello\n");
    let (_, r) = s.eval(json!({"code": "print('computing...')\n2 ** 10\n", "eval_last_expr": true})).await;
    assert_eq!(r["stdout"], "computing...");
    let (_, r) = s.eval(json!({"code": "print(42)"})).await;
    assert_eq!(r["stdout"], "42\n");
    assert!(r.get("result").is_none());
}

#[tokio::test]
async fn eval_validation_messages() {
    let s = Server::start().await;
    let server = &s;
    let post = |body: &'static str| async move {
        json_of(server.post("/api/v1/eval").header("content-type", "application/json").body(body).send().await.unwrap())
            .await
    };
    assert_eq!(post("{}").await, (400, json!({"error": "either 'code' or 'files' must be provided"})));
    assert_eq!(post("null").await, (400, json!({"error": "either 'code' or 'files' must be provided"})));
    let (code, r) = post("not json").await;
    assert_eq!(code, 400);
    assert!(r["error"].as_str().unwrap().starts_with("invalid JSON"), "{r}");
    assert_eq!(post("").await, (400, json!({"error": "invalid JSON: EOF"})));
    let (code, r) = post(r#"{"code": 12}"#).await;
    assert_eq!(code, 400);
    assert!(r["error"].as_str().unwrap().starts_with("invalid JSON"), "wrong field type: {r}");
    let (code, r) = s.eval(json!({"code": "x".repeat(102_401)})).await;
    assert_eq!(code, 413);
    assert!(r["error"].as_str().unwrap().contains("exceeds limit"), "{r}");
    let (code, r) = s.eval(json!({"code": "1", "python_version": "2.7"})).await;
    assert_eq!(code, 400);
    assert_eq!(r["error"], "unsupported python_version \"2.7\"; supported versions: 3.10, 3.11, 3.12, 3.13");
    let (code, r) = s.eval(json!({"files": [{"name": "../x.py", "content": "1"}]})).await;
    assert_eq!(code, 400, "{r}");
    let (code, _) = s.eval(json!({"code": "print(1)", "config": {"timeout_seconds": -1}})).await;
    assert_eq!(code, 400);
    // Content-Type is not checked, as in the original.
    let r = s
        .post("/api/v1/eval")
        .header("content-type", "text/plain")
        .body(r#"{"code":"print(7)"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(json_of(r).await.1["stdout"], "7\n");
}

#[tokio::test]
async fn error_fields_on_eval_and_exec() {
    let s = Server::start().await;
    let (_, r) = s.eval(json!({"code": "print(undefined_var)"})).await;
    assert_eq!(
        (r["exit_code"].as_i64(), r["error_type"].as_str(), r["error_line"].as_i64()),
        (Some(1), Some("NameError"), Some(1))
    );
    assert_eq!(r["error_message"], "name 'undefined_var' is not defined");
    let (_, r) = s.eval(json!({"code": "if True\n    pass"})).await;
    assert_eq!(r["error_type"], "SyntaxError");
    let (_, r) = s.eval(json!({"code": "def main():\n    print([][5])\n\nmain()"})).await;
    assert_eq!((r["error_type"].as_str(), r["error_line"].as_i64()), (Some("IndexError"), Some(4)));
    let (_, r) = s.eval(json!({"code": "int('x')"})).await;
    assert_eq!(r["error_type"], "ValueError");
    let (_, r) = s.eval(json!({"code": "x = 1\nraise RuntimeError('no')\n", "eval_last_expr": true})).await;
    assert_eq!((r["error_type"].as_str(), r["error_line"].as_i64()), (Some("RuntimeError"), Some(2)), "{r}");
    let (_, r) =
        s.exec("sync", &[("main.py", b"import json\njson.loads('x')")], json!({"entrypoint": "main.py"})).await;
    assert_eq!((r["error_type"].as_str(), r["error_line"].as_i64()), (Some("JSONDecodeError"), Some(2)), "{r}");
}

#[tokio::test]
async fn python_versions_are_honoured() {
    let s = Server::start().await;
    let (_, health) = json_of(s.get("/health").send().await.unwrap()).await;
    for v in health["python_versions"].as_array().unwrap() {
        let v = v.as_str().unwrap();
        let (_, r) = s
            .eval(json!({"code": "import sys\nsys.version_info[:2]", "eval_last_expr": true, "python_version": v}))
            .await;
        assert_eq!(r["result"], format!("(3, {})", &v[2..]), "{v}: {r}");
    }
    for v in ["3.10", "3.11", "3.12", "3.13"] {
        if !health["python_versions"].as_array().unwrap().iter().any(|x| x == v) {
            let (code, r) = s.eval(json!({"code": "1", "python_version": v})).await;
            assert_eq!(code, 400);
            assert!(r["error"].as_str().unwrap().contains("available:"), "{r}");
            eprintln!("note: python {v} is not installed here; the request is refused with: {}", r["error"]);
        }
    }
}

#[tokio::test]
async fn multipart_sync_cases() {
    let s = Server::start().await;
    let (code, r) = s.exec("sync", &[("main.py", b"print('Hello, World!')")], json!({"entrypoint": "main.py"})).await;
    assert_eq!(code, 200);
    assert_eq!(
        (r["status"].as_str(), r["stdout"].as_str(), r["exit_code"].as_i64()),
        (Some("completed"), Some("Hello, World!\n"), Some(0))
    );
    let id = r["execution_id"].as_str().unwrap();
    assert!(id.starts_with("exe_") && id.len() == 40, "{id}");
    for key in ["started_at", "finished_at"] {
        let ts = r[key].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.len() == 27, "RFC 3339 with 6 fractional digits: {ts}");
    }

    let code = b"import sys, os\nprint(sys.argv[1:])\nprint(os.environ['GREETING'])\ndata = sys.stdin.read()\nprint(f'Length: {len(data)}')";
    let (_, r) = s
        .exec(
            "sync",
            &[("main.py", code)],
            json!({"entrypoint": "main.py", "script_args": ["--v", "arg with spaces", "$VAR"],
            "env_vars": ["GREETING=hi"], "stdin": "Hello from stdin!"}),
        )
        .await;
    assert_eq!(r["stdout"], "['--v', 'arg with spaces', '$VAR']\nhi\nLength: 17\n", "{r}");

    let (_, r) = s
        .exec(
            "sync",
            &[
                ("main.py", b"from helper import greet\ngreet()"),
                ("helper.py", b"def greet():\n    print('main entry')"),
            ],
            json!({"entrypoint": "main.py"}),
        )
        .await;
    assert_eq!(r["stdout"], "main entry\n");

    let (_, r) = s.exec("sync", &[("main.py", b"import sys; sys.exit(42)")], json!({"entrypoint": "main.py"})).await;
    assert_eq!((r["status"].as_str(), r["exit_code"].as_i64()), (Some("completed"), Some(42)));

    let (_, r) = s
        .exec("sync", &[("main.py", b"import sys\nsys.stdout.write('x' * 100000)")], json!({"entrypoint": "main.py"}))
        .await;
    assert_eq!(r["stdout"].as_str().unwrap().len(), 100_000);

    let (_, r) =
        s.exec_tar("sync", tar_gz_of(&[("main.py", b"print('gzip ok')")]), json!({"entrypoint": "main.py"})).await;
    assert_eq!(r["stdout"], "gzip ok\n", "gzip-compressed archives are accepted");

    let (_, r) = s
        .exec(
            "sync",
            &[("main.py", b"import sys\nsys.stdout.buffer.write(b'a\\xffb')")],
            json!({"entrypoint": "main.py"}),
        )
        .await;
    assert_eq!(r["stdout"], "a\u{fffd}b", "invalid UTF-8 becomes U+FFFD");

    let (_, r) = s.exec("sync", &[("__main__.py", b"print('package main')")], json!({})).await;
    assert_eq!(r["stdout"], "package main\n", "no entrypoint runs /work/__main__.py");
}

#[tokio::test]
async fn multipart_bad_input() {
    let s = Server::start_with(&[("PYEXEC_MAX_UPLOAD_MB", "1")]).await;
    let send = |req: reqwest::RequestBuilder| async move { json_of(req.send().await.unwrap()).await };
    let form = || reqwest::multipart::Form::new();
    let tar_part = || reqwest::multipart::Part::bytes(tar_of(&[("main.py", b"print(1)")])).file_name("code.tar");

    assert_eq!(
        send(s.post("/api/v1/exec/sync").json(&json!({}))).await,
        (400, json!({"error": "parsing form: request Content-Type isn't multipart/form-data"}))
    );
    assert_eq!(
        send(s.post("/api/v1/exec/sync").header("content-type", "multipart/form-data").body("x")).await,
        (400, json!({"error": "parsing form: no multipart boundary param in Content-Type"}))
    );
    let (code, r) =
        send(s.post("/api/v1/exec/sync").header("content-type", "multipart/form-data; boundary=zz").body("garbage"))
            .await;
    assert_eq!(code, 400, "malformed multipart: {r}");
    assert_eq!(
        send(s.post("/api/v1/exec/sync").multipart(form().text("metadata", "{}"))).await,
        (400, json!({"error": "missing tar file: http: no such file"}))
    );
    assert_eq!(
        send(s.post("/api/v1/exec/sync").multipart(form().text("tar", "not a file part").text("metadata", "{}"))).await,
        (400, json!({"error": "missing tar file: http: no such file"})),
        "tar must be a file part"
    );
    assert_eq!(
        send(s.post("/api/v1/exec/sync").multipart(form().part("tar", tar_part()))).await,
        (400, json!({"error": "missing metadata"}))
    );
    let (code, r) =
        send(s.post("/api/v1/exec/sync").multipart(form().part("tar", tar_part()).text("metadata", "{bad"))).await;
    assert_eq!(code, 400);
    assert!(r["error"].as_str().unwrap().starts_with("parsing metadata: "), "{r}");
    let (code, r) = send(
        s.post("/api/v1/exec/sync")
            .multipart(form().part("tar", tar_part()).text("metadata", r#"{"config":{"timeout_seconds":"soon"}}"#)),
    )
    .await;
    assert_eq!(code, 400, "wrong field type: {r}");
    assert!(r["error"].as_str().unwrap().starts_with("parsing metadata: "));
    let (code, r) = send(
        s.post("/api/v1/exec/sync").multipart(
            form()
                .part(
                    "tar",
                    reqwest::multipart::Part::bytes(
                        b"this is not a tar archive, just some text that is long enough to look at".to_vec(),
                    )
                    .file_name("code.tar"),
                )
                .text("metadata", "{}"),
        ),
    )
    .await;
    assert_eq!(code, 400, "{r}");
    assert!(r["error"].as_str().unwrap().contains("invalid tar"), "{r}");

    let big = vec![b'#'; 2 << 20];
    let (code, r) = s.exec("sync", &[("main.py", b"print(1)"), ("big.txt", &big)], json!({})).await;
    assert_eq!(code, 413, "{r}");
    assert!(r["error"].as_str().unwrap().contains("upload limit"), "{r}");
    let (code, _) = s.eval(json!({"code": "#".repeat(2 << 20)})).await;
    assert_eq!(code, 413);

    let (code, r) = s.exec("sync", &[("main.py", b"print(1)")], json!({"python_version": "3.9"})).await;
    assert_eq!(code, 400, "{r}");
    let (code, r) = s.exec("sync", &[("main.py", b"print(1)")], json!({"docker_image": "ubuntu:24.04"})).await;
    assert_eq!(code, 400);
    assert!(r["error"].as_str().unwrap().contains("python:3.X"), "{r}");
    let (code, _) = s.exec("sync", &[("main.py", b"print(1)")], json!({"entrypoint": "../etc/passwd"})).await;
    assert_eq!(code, 400);
    let (code, _) = s.exec("sync", &[("main.py", b"print(1)")], json!({"env_vars": ["NOEQUALS"]})).await;
    assert_eq!(code, 400);

    // Nothing of the refused uploads is left behind.
    let uploads = s.data_dir().join("data/uploads");
    assert_eq!(std::fs::read_dir(&uploads).unwrap().count(), 0, "staged uploads leaked");
}

#[tokio::test]
async fn traversal_archives_are_refused() {
    let s = Server::start().await;
    let cases = [
        raw_tar(&[raw_entry("../evil.py", b'0', "", b"x")]),
        raw_tar(&[raw_entry("/etc/cron.d/evil", b'0', "", b"x")]),
        raw_tar(&[
            raw_entry("sub/", b'5', "", b""),
            raw_entry("link", b'2', "sub", b""),
            raw_entry("link/x.py", b'0', "", b"x"),
        ]),
        raw_tar(&[raw_entry("out", b'2', "../../etc", b""), raw_entry("main.py", b'0', "", b"x")]),
        raw_tar(&[raw_entry("passwd", b'1', "/etc/passwd", b"")]),
        raw_tar(&[raw_entry("null", b'3', "", b"")]),
    ];
    for tar in cases {
        let (code, r) = s.exec_tar("sync", tar, json!({"entrypoint": "main.py"})).await;
        assert_eq!(code, 400, "{r}");
        assert!(r["error"].as_str().unwrap().starts_with("invalid archive entry"), "{r}");
    }
    let ok =
        raw_tar(&[raw_entry("real.py", b'0', "", b"print('via link')"), raw_entry("main.py", b'2', "real.py", b"")]);
    let (code, r) = s.exec_tar("sync", ok, json!({"entrypoint": "main.py"})).await;
    assert_eq!((code, r["stdout"].as_str()), (200, Some("via link\n")), "links inside the workspace work");
}

#[tokio::test]
async fn async_lifecycle_and_kill() {
    let s = Server::start().await;
    let (code, r) =
        s.exec("async", &[("main.py", b"print('Async complete!')")], json!({"entrypoint": "main.py"})).await;
    assert_eq!(code, 202);
    let id = r["execution_id"].as_str().unwrap().to_owned();
    assert_eq!(r.as_object().unwrap().len(), 1, "only execution_id: {r}");
    let done = s.wait_terminal(&id).await;
    assert_eq!((done["status"].as_str(), done["stdout"].as_str()), (Some("completed"), Some("Async complete!\n")));
    let (code, r) = json_of(s.delete(&format!("/api/v1/executions/{id}")).send().await.unwrap()).await;
    assert_eq!((code, r), (200, json!({"status": "completed"})), "killing a finished execution changes nothing");

    let (_, r) = s
        .exec(
            "async",
            &[("main.py", b"import time\nprint('started', flush=True)\ntime.sleep(60)")],
            json!({"entrypoint": "main.py"}),
        )
        .await;
    let id = r["execution_id"].as_str().unwrap().to_owned();
    let running = s.wait_status(&id, "running").await;
    assert!(running["started_at"].is_string());
    let (code, r) = json_of(s.delete(&format!("/api/v1/executions/{id}")).send().await.unwrap()).await;
    assert_eq!((code, r), (200, json!({"status": "killed"})));
    let killed = s.wait_terminal(&id).await;
    assert_eq!((killed["status"].as_str(), killed["exit_code"].as_i64()), (Some("killed"), Some(137)));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (_, again) = json_of(s.get(&format!("/api/v1/executions/{id}")).send().await.unwrap()).await;
    assert_eq!(again["status"], "killed", "killed is terminal and never overwritten");

    for bad in ["exe_00000000-0000-4000-8000-000000000000", "nope", "..%2F..%2Fetc"] {
        let (code, r) = json_of(s.get(&format!("/api/v1/executions/{bad}")).send().await.unwrap()).await;
        // The original's body, and how long finished executions are kept (an addition the original lacks).
        assert_eq!((code, r["error"].as_str()), (404, Some("execution not found")), "{bad}");
        if !Server::external() {
            assert!(r["retention_seconds"].as_u64().is_some_and(|s| s > 0), "{r}");
        }
        let (code, _) = json_of(s.delete(&format!("/api/v1/executions/{bad}")).send().await.unwrap()).await;
        assert_eq!(code, 404);
    }
}

#[tokio::test]
async fn killing_a_pending_execution_means_it_never_runs() {
    let s = Server::start_with(&[("PYEXEC_MAX_CONCURRENT", "1")]).await;
    let (_, first) =
        s.exec("async", &[("main.py", b"import time\ntime.sleep(60)")], json!({"entrypoint": "main.py"})).await;
    let first = first["execution_id"].as_str().unwrap().to_owned();
    s.wait_status(&first, "running").await;
    let (_, queued) =
        s.exec("async", &[("main.py", b"open('/tmp/ran', 'w')\nprint('ran')")], json!({"entrypoint": "main.py"})).await;
    let queued = queued["execution_id"].as_str().unwrap().to_owned();
    let (_, r) = json_of(s.get(&format!("/api/v1/executions/{queued}")).send().await.unwrap()).await;
    assert_eq!(r, json!({"execution_id": queued, "status": "pending", "exit_code": 0}));
    let (_, r) = json_of(s.delete(&format!("/api/v1/executions/{queued}")).send().await.unwrap()).await;
    assert_eq!(r, json!({"status": "killed"}));
    json_of(s.delete(&format!("/api/v1/executions/{first}")).send().await.unwrap()).await;
    let r = s.wait_terminal(&queued).await;
    assert_eq!(r["status"], "killed");
    assert!(r.get("started_at").is_none() && r.get("stdout").is_none(), "it never ran: {r}");
}

#[tokio::test]
async fn timeout_memory_and_network() {
    let s = Server::start().await;
    let (_, r) = s.eval(json!({"code": "import time\nprint('before', flush=True)\ntime.sleep(30)", "config": {"timeout_seconds": 2}})).await;
    assert_eq!((r["status"].as_str(), r["exit_code"].as_i64()), (Some("failed"), Some(124)));
    assert_eq!(r["error"], "execution timeout after 2s");
    assert_eq!(r["stdout"], "before\n", "output before the timeout is kept");

    let (_, health) = json_of(s.get("/health").send().await.unwrap()).await;
    if health["isolation"]["level"] == "full" {
        let (_, r) = s.eval(json!({"code": "b = bytearray(500 * 1024 * 1024)", "config": {"memory_mb": 64}})).await;
        assert_eq!(
            (r["status"].as_str(), r["exit_code"].as_i64(), r["oom_killed"].as_bool()),
            (Some("completed"), Some(137), Some(true)),
            "{r}"
        );
    } else {
        let why =
            format!("the out-of-memory case needs full isolation, this server's is {}", health["isolation"]["level"]);
        skip(require::FULL_ISOLATION, "the out-of-memory case", &why);
    }

    let connect = "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=3)\n    print('connected')\nexcept OSError as e:\n    print('blocked', e.errno)";
    let (_, r) = s.eval(json!({"code": connect, "config": {"network_disabled": true}})).await;
    assert!(r["stdout"].as_str().unwrap().starts_with("blocked"), "{r}");
    let (_, r) = s.eval(json!({"code": connect})).await;
    assert!(r["stdout"].as_str().unwrap().starts_with("blocked"), "network is off by default: {r}");
}

#[tokio::test]
async fn huge_output_is_capped_and_flagged() {
    let s = Server::start_with(&[("PYEXEC_MAX_OUTPUT_BYTES", "1000")]).await;
    let (_, r) =
        s.eval(json!({"code": "import sys\nsys.stdout.write('y' * 5_000_000)\nsys.stderr.write('e' * 3000)"})).await;
    assert_eq!(r["status"], "completed");
    assert_eq!(r["stdout"].as_str().unwrap().len(), 1000);
    assert_eq!((r["stdout_truncated"].as_bool(), r["stderr_truncated"].as_bool()), (Some(true), Some(true)));
}

#[tokio::test]
async fn events_stream_output_then_the_result() {
    let s = Server::start().await;
    let (_, r) = s
        .exec(
            "async",
            &[("main.py", b"import time\nfor i in range(3):\n    print(i)\n    time.sleep(0.2)")],
            json!({"entrypoint": "main.py"}),
        )
        .await;
    let id = r["execution_id"].as_str().unwrap();
    let r = s.get(&format!("/api/v1/executions/{id}/events")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let (output, result) = pyexec_testkit::output_and_result(&text);
    assert_eq!(output, "0\n1\n2\n");
    let result = result.expect("a final result event");
    assert_eq!((result["status"].as_str(), result["stdout"].as_str()), (Some("completed"), Some("0\n1\n2\n")));
    assert!(text.trim_end().ends_with('}'), "the result is the last event");
    let (code, _) =
        json_of(s.get("/api/v1/executions/exe_00000000-0000-4000-8000-000000000000/events").send().await.unwrap())
            .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn eval_async_queues_the_eval_body_and_its_events_carry_the_whole_result() {
    let s = Server::start().await;
    let code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.2)\n6 * 7";
    let r = s.post("/api/v1/eval/async").json(&json!({"code": code, "eval_last_expr": true})).send().await.unwrap();
    let (status, accepted) = json_of(r).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["execution_id"].as_str().unwrap();
    assert!(id.starts_with("exe_"), "{accepted}");
    let text = s.get(&format!("/api/v1/executions/{id}/events")).send().await.unwrap().text().await.unwrap();
    let (output, result) = pyexec_testkit::output_and_result(&text);
    assert_eq!(output, "0\n1\n2\n", "output streamed as it came: {text}");
    let result = result.expect("a final result event");
    assert_eq!((result["status"].as_str(), result["result"].as_str()), (Some("completed"), Some("42")), "{result}");

    // The body is checked as /eval checks it, before anything is queued.
    for (body, want) in [
        (json!({"code": ""}), 400),
        (json!({"code": "1", "python_version": "2.7"}), 400),
        (json!({"code": "x".repeat(102_401)}), 413),
        (json!({"code": "1", "timeout_seconds": 5}), 400),
    ] {
        let (status, answer) = json_of(s.post("/api/v1/eval/async").json(&body).send().await.unwrap()).await;
        assert_eq!(status, want, "{answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let r = s.post("/api/v1/eval/async").body("not json").send().await.unwrap();
    assert_eq!(json_of(r).await.0, 400);
}

#[tokio::test]
async fn whoami_names_the_callers_tenant() {
    if Server::external() {
        // Whatever the external server's keys, the answer has the documented shape.
        let (status, me) = json_of(Server::start().await.get("/api/v1/whoami").send().await.unwrap()).await;
        assert!(status == 200 && me["admin"].is_boolean() || status == 401, "{me}");
        return;
    }
    let s = Server::start().await;
    let (status, me) = json_of(s.get("/api/v1/whoami").send().await.unwrap()).await;
    assert_eq!((status, &me), (200, &json!({"tenant": null, "admin": true, "quota": {"weight": 1}})), "open server");
    let keys = [("PYEXEC_API_KEYS", "alice:alice-key,ops:ops-key"), ("PYEXEC_ADMIN_TENANTS", "ops")];
    let s = Server::start_with(&[keys[0], keys[1], ("PYEXEC_TENANT_MAX_SESSIONS", "2")]).await;
    let ask = |key: &'static str| s.get("/api/v1/whoami").bearer_auth(key).send();
    let (_, alice) = json_of(ask("alice-key").await.unwrap()).await;
    assert_eq!((alice["tenant"].as_str(), alice["admin"].as_bool()), (Some("alice"), Some(false)), "{alice}");
    assert_eq!(alice["quota"]["max_sessions"], 2, "{alice}");
    let (_, ops) = json_of(ask("ops-key").await.unwrap()).await;
    assert_eq!((ops["tenant"].as_str(), ops["admin"].as_bool()), (Some("ops"), Some(true)), "{ops}");
    assert_eq!(json_of(ask("wrong-key").await.unwrap()).await.0, 401);
    assert_eq!(json_of(s.get("/api/v1/whoami").send().await.unwrap()).await.0, 401);
}

#[tokio::test]
async fn list_newest_first_with_filters_and_pages() {
    let s = Server::start().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, r) = s.eval(json!({"code": format!("import sys\nsys.exit({})", i % 2)})).await;
        ids.push(r["execution_id"].as_str().unwrap().to_owned());
    }
    let (code, page) = json_of(s.get("/api/v1/executions?limit=2").send().await.unwrap()).await;
    assert_eq!(code, 200);
    let got: Vec<&str> =
        page["executions"].as_array().unwrap().iter().map(|e| e["execution_id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page2) = json_of(s.get(&format!("/api/v1/executions?limit=2&cursor={cursor}")).send().await.unwrap()).await;
    assert_eq!(page2["executions"][0]["execution_id"], ids[0].as_str());
    assert!(page2.get("next_cursor").is_none());
    let (_, completed) = json_of(s.get("/api/v1/executions?status=completed").send().await.unwrap()).await;
    assert_eq!(completed["executions"].as_array().unwrap().len(), 3);
    for bad in ["status=done", "limit=0", "limit=x", "cursor=abc"] {
        let (code, r) = json_of(s.get(&format!("/api/v1/executions?{bad}")).send().await.unwrap()).await;
        assert_eq!(code, 400, "{bad}: {r}");
    }
}

#[tokio::test]
async fn a_sync_client_that_disconnects_kills_its_run() {
    let s = Server::start().await;
    let quick = reqwest::Client::builder().timeout(std::time::Duration::from_millis(1500)).build().unwrap();
    let err = quick
        .post(format!("{}/api/v1/eval", s.url))
        .json(&json!({"code": "import time\nprint('x', flush=True)\ntime.sleep(60)"}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    let (_, page) = json_of(s.get("/api/v1/executions?limit=1").send().await.unwrap()).await;
    let id = page["executions"][0]["execution_id"].as_str().unwrap().to_owned();
    let r = s.wait_terminal(&id).await;
    assert_eq!(r["status"], "killed", "{r}");
    assert_eq!(r["error"], "the client disconnected before the execution finished");
}

#[tokio::test]
async fn dependencies_and_pre_commands_over_http() {
    let s = Server::start().await;
    let (code, r) = s.eval(json!({"code": "import six\nsix.PY3", "eval_last_expr": true})).await;
    assert_eq!((code, r["status"].as_str(), r["result"].as_str()), (200, Some("completed"), Some("True")), "{r}");
    let installed = r["installed_packages"].as_array().unwrap();
    assert!(installed.len() == 1 && installed[0].as_str().unwrap().starts_with("six=="), "{r}");

    let (_, r) = s
        .exec(
            "sync",
            &[("main.py", b"import six\nprint(six.__version__)")],
            json!({"entrypoint": "main.py", "requirements_txt": "six==1.16.0", "pre_commands": ["echo ready"]}),
        )
        .await;
    assert_eq!(r["stdout"], "1.16.0\n", "{r}");
    assert_eq!(r["pre_commands_output"], "ready\n");

    let (_, r) = s.eval(json!({"code": "import docopt"})).await;
    assert_eq!(r["status"], "failed");
    assert!(r["error"].as_str().unwrap().starts_with("installing dependencies failed: docopt has no binary wheel"));

    // A guarded import of a name the index does not have is skipped, not a failed install.
    let guarded = "try:\n    import surely_not_a_real_pkg_xyz\nexcept ImportError:\n    pass\nprint('ok')";
    let (_, r) = s.eval(json!({ "code": guarded })).await;
    assert_eq!((r["status"].as_str(), r["stdout"].as_str()), (Some("completed"), Some("ok\n")), "{r}");
    if !Server::external() {
        // (A Kubernetes server's resource status does not carry the note yet: docs/api.md.)
        let note = json!([{"name": "surely_not_a_real_pkg_xyz", "reason": "not found in the package index"}]);
        assert_eq!(r["skipped_packages"], note, "{r}");
    }

    let (_, r) = s.eval(json!({"code": "import yaml", "requirements_txt": "-"})).await;
    assert_eq!(r["error_type"], "ModuleNotFoundError", "\"-\" installs nothing: {r}");
    assert!(r.get("installed_packages").is_none(), "the field is left out when nothing was installed: {r}");
}

#[tokio::test]
async fn a_server_that_cannot_install_says_so() {
    if Server::external() {
        return;
    }
    let s = Server::start_with(&[
        ("PYEXEC_UV", "/nonexistent/uv"),
        ("PYEXEC_INDEX_URL", "https://u:secret@mirror.example/simple"),
    ])
    .await;
    let (_, health) = json_of(s.get("/health").send().await.unwrap()).await;
    let deps = &health["dependencies"];
    assert_eq!(
        (deps["available"].as_bool(), deps["index_url"].as_str()),
        (Some(false), Some("https://mirror.example/simple"))
    );
    assert!(deps["unavailable_reason"].as_str().unwrap().contains("/nonexistent/uv"), "{health}");
    let (code, r) =
        s.exec("sync", &[("main.py", b"print(1)")], json!({"entrypoint": "main.py", "requirements_txt": "six"})).await;
    assert_eq!(code, 400, "refused before it is accepted: {r}");
    assert!(r["error"].as_str().unwrap().starts_with("requirements_txt was given but this server cannot install"));
    let (code, r) = s.eval(json!({"code": "import six"})).await;
    assert_eq!((code, r["status"].as_str()), (200, Some("failed")), "detected imports are found only later: {r}");
    assert!(r["error"].as_str().unwrap().starts_with("installing dependencies failed: "), "{r}");
    let (_, r) = s.eval(json!({"code": "import json\nprint('stdlib only')"})).await;
    assert_eq!(r["stdout"], "stdlib only\n", "programs without requirements still run: {r}");
}

#[tokio::test]
async fn tool_definitions_and_tool_calls_for_agents() {
    let s = Server::start().await;
    let (code, defs) = json_of(s.get("/api/v1/tools").send().await.unwrap()).await;
    assert_eq!(code, 200);
    let openai = &defs["openai"][0];
    assert_eq!((openai["type"].as_str(), openai["function"]["name"].as_str()), (Some("function"), Some("run_python")));
    assert_eq!(openai["function"]["parameters"], defs["anthropic"][0]["input_schema"], "one schema");
    assert!(defs["anthropic"][0]["description"].as_str().unwrap().contains("sandbox"));

    let call = |args: Value| {
        let s = &s;
        async move { json_of(s.post("/api/v1/tools/run_python").json(&args).send().await.unwrap()).await }
    };
    let (code, answer) = call(json!({"code": "sum(range(10))"})).await;
    assert_eq!(
        (code, answer["is_error"].as_bool(), answer["execution"]["result"].as_str()),
        (200, Some(false), Some("45")),
        "{answer}"
    );
    assert!(answer["content"].as_str().unwrap().contains("result: 45"));
    let (_, answer) = call(json!({"code": "import json\njson.loads('{bad')"})).await;
    assert_eq!(
        (answer["is_error"].as_bool(), answer["execution"]["error_type"].as_str()),
        (Some(true), Some("JSONDecodeError"))
    );
    let (code, answer) = call(json!({"code": 5})).await;
    assert_eq!(code, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().starts_with("invalid run_python arguments"));
}

/// docs/api.md, "The result": an empty value is left out, `pre_commands_output` included.
#[tokio::test]
async fn pre_commands_that_print_nothing_leave_their_output_out() {
    let s = Server::start().await;
    let main: &[(&str, &[u8])] = &[("main.py", b"print('ran')")];
    let (_, r) = s.exec("sync", main, json!({"entrypoint": "main.py", "pre_commands": ["true"]})).await;
    assert_eq!((r["status"].as_str(), r["stdout"].as_str()), (Some("completed"), Some("ran\n")), "{r}");
    assert!(r.get("pre_commands_output").is_none(), "absent, not \"\": {r}");
    let (_, r) = s.exec("sync", main, json!({"entrypoint": "main.py", "pre_commands": ["exit 3"]})).await;
    assert_eq!((r["status"].as_str(), r["exit_code"].as_i64()), (Some("failed"), Some(3)), "{r}");
    assert!(r.get("pre_commands_output").is_none(), "a silent failing command: {r}");
    let (_, r) = s.exec("sync", main, json!({"entrypoint": "main.py", "pre_commands": ["echo ready"]})).await;
    assert_eq!(r["pre_commands_output"], "ready\n", "{r}");
}

/// The reason of a failed install is in `error`, once: `stderr` holds only what the installer said besides (the
/// CLI prints both, one after the other). Without a way to the package index the reason is that, and is still said
/// once.
#[tokio::test]
async fn a_failed_install_says_its_reason_once() {
    let s = Server::start().await;
    let (code, r) = s
        .exec(
            "sync",
            &[("main.py", b"print('never')")],
            json!({"entrypoint": "main.py", "requirements_txt": "this-package-does-not-exist-xyz==1.0"}),
        )
        .await;
    assert_eq!((code, r["status"].as_str(), r["exit_code"].as_i64()), (200, Some("failed"), Some(1)), "{r}");
    let error = r["error"].as_str().unwrap();
    let reason = error.strip_prefix("installing dependencies failed: ").unwrap_or_else(|| panic!("{r}"));
    let stderr = r["stderr"].as_str().unwrap_or_default();
    // The installer's own first line of the reason (uv's `error:` line), which `stderr` used to repeat.
    let head = reason.split(": ").next().unwrap();
    assert!(!stderr.contains(head), "{head:?} is in error and stderr: {r}");
    if reason.contains("was not found in the package registry") {
        assert!(!stderr.contains("was not found in the package registry"), "{r}");
    }
    if !Server::external() {
        // The install is what took the time; no program ran (docs/api.md: `install_ms`, `duration_ms`).
        assert!(r["install_ms"].as_i64().is_some_and(|ms| ms > 0), "{r}");
        assert!(r.get("duration_ms").is_none(), "{r}");
        // A reason in this server's words (how to allow source builds) stands for uv's lines that say the same.
        let (_, r) = s.eval(json!({"code": "import docopt"})).await;
        let error = r["error"].as_str().unwrap();
        assert!(error.starts_with("installing dependencies failed: docopt has no binary wheel"), "{r}");
        let stderr = r["stderr"].as_str().unwrap_or_default();
        assert!(!stderr.contains("no usable wheels") && !stderr.contains("building from source is disabled"), "{r}");
    }
}

/// docs/api.md: `install_ms` is the time the execution spent on its dependencies, absent when nothing was installed
/// for it; `duration_ms` never counts it.
#[tokio::test]
async fn install_time_is_reported_apart_from_the_run_time() {
    if Server::external() {
        return; // The Kubernetes backend leaves `install_ms` out.
    }
    let s = Server::start().await;
    let code = b"import six, time\ntime.sleep(0.2)\nprint(six.__version__)";
    let meta = json!({"entrypoint": "main.py", "requirements_txt": "six==1.16.0"});
    let (_, first) = s.exec("sync", &[("main.py", code)], meta.clone()).await;
    assert_eq!((first["status"].as_str(), first["stdout"].as_str()), (Some("completed"), Some("1.16.0\n")), "{first}");
    let install = first["install_ms"].as_i64().unwrap_or_else(|| panic!("the environment was built: {first}"));
    let run = first["duration_ms"].as_i64().unwrap();
    assert!(run >= 200, "the program's sleep counts: {first}");
    let started = pyexec_core::Timestamp::parse(first["started_at"].as_str().unwrap()).unwrap();
    let finished = pyexec_core::Timestamp::parse(first["finished_at"].as_str().unwrap()).unwrap();
    assert!(install + run <= finished.millis_since(started) + 1, "the two do not overlap: {first}");

    let (_, again) = s.exec("sync", &[("main.py", code)], meta).await;
    assert_eq!(again["stdout"], "1.16.0\n", "{again}");
    assert!(again.get("install_ms").is_none(), "the environment came from the cache: {again}");
    let (_, plain) = s.eval(json!({"code": "print(1)"})).await;
    assert!(plain.get("install_ms").is_none() && plain["duration_ms"].as_i64().is_some(), "{plain}");
}

/// docs/api.md, "The result": `started_at` is set once; the running execution's is its final one, also when its
/// dependencies are installed after it started, and for a session's call.
#[tokio::test]
async fn started_at_never_changes() {
    let s = Server::start().await;
    let code: &[u8] = b"import time\nprint('started', flush=True)\ntime.sleep(1)";
    let (_, r) = s.exec("async", &[("main.py", code)], json!({"entrypoint": "main.py"})).await;
    let id = r["execution_id"].as_str().unwrap().to_owned();
    let running = s.wait_status(&id, "running").await;
    let done = s.wait_terminal(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(running["started_at"].is_string(), "{running}");
    assert_eq!(running["started_at"], done["started_at"], "{running} then {done}");

    if Server::external() {
        return;
    }
    // A session's call, followed through the list of the session's calls while it runs.
    let (code, session) = json_of(s.post("/api/v1/sessions").json(&json!({})).send().await.unwrap()).await;
    assert_eq!(code, 201, "{session}");
    let sid = session["session_id"].as_str().unwrap().to_owned();
    let call = {
        let (client, url) = (s.client.clone(), format!("{}/api/v1/sessions/{sid}/eval", s.url));
        tokio::spawn(async move {
            let body = json!({"code": "import time\ntime.sleep(1.5)\n'done'", "eval_last_expr": true});
            json_of(client.post(url).json(&body).send().await.unwrap()).await
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let running = loop {
        let (_, page) = json_of(s.get(&format!("/api/v1/executions?session_id={sid}")).send().await.unwrap()).await;
        if let Some(item) = page["executions"].as_array().and_then(|e| e.first()).filter(|e| e["status"] == "running") {
            break item.clone();
        }
        assert!(std::time::Instant::now() < deadline, "the call never showed as running: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (code, done) = call.await.unwrap();
    assert_eq!((code, done["result"].as_str()), (200, Some("'done'")), "{done}");
    assert_eq!(running["execution_id"], done["execution_id"]);
    assert_eq!(running["started_at"], done["started_at"], "{running} then {done}");
}

/// The first Server-Sent Events of `/events`, read as they come (the stream stays open while the execution runs).
async fn first_events(s: &Server, id: &str, count: usize) -> Vec<(String, Value)> {
    let mut r = s.get(&format!("/api/v1/executions/{id}/events")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    let read = async {
        loop {
            // Keep-alive comments (`: ...`) are not events.
            let events: Vec<_> = sse_events(&text).into_iter().filter(|(_, data)| data != "").collect();
            let complete = text.ends_with("\n\n");
            if (events.len() >= count && complete) || events.len() > count {
                return events.into_iter().take(count).collect::<Vec<_>>();
            }
            match r.chunk().await.unwrap() {
                Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
                None => return sse_events(&text),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read).await.unwrap()
}

/// docs/api.md, "Following an execution": a follower's first event is the current status (`pending` or
/// `running`), a running execution's output so far comes next; a finished execution sends only its result.
#[tokio::test]
async fn a_follower_first_gets_the_current_status() {
    if Server::external() {
        return; // Needs one execution slot to keep an execution pending (the Kubernetes backend: its own tests).
    }
    let s = Server::start_with(&[("PYEXEC_MAX_CONCURRENT", "1")]).await;
    let slow: &[u8] = b"import time\nprint('started', flush=True)\ntime.sleep(60)";
    let (_, r) = s.exec("async", &[("main.py", slow)], json!({"entrypoint": "main.py"})).await;
    let running = r["execution_id"].as_str().unwrap().to_owned();
    s.wait_status(&running, "running").await;
    let (_, r) = s.exec("async", &[("main.py", b"print('second')")], json!({"entrypoint": "main.py"})).await;
    let pending = r["execution_id"].as_str().unwrap().to_owned();

    let events = first_events(&s, &pending, 1).await;
    assert_eq!(events, [("status".to_owned(), json!({"status": "pending"}))]);
    let events = first_events(&s, &running, 2).await;
    assert_eq!(events[0], ("status".to_owned(), json!({"status": "running"})), "{events:?}");
    // Then the output printed before the follower came (`print` may write its line end apart).
    assert_eq!((events[1].0.as_str(), &events[1].1["stream"]), ("output", &json!("stdout")), "{events:?}");
    assert!(events[1].1["data"].as_str().unwrap().starts_with("started"), "{events:?}");

    json_of(s.delete(&format!("/api/v1/executions/{running}")).send().await.unwrap()).await;
    let done = s.wait_terminal(&pending).await;
    assert_eq!(done["stdout"], "second\n", "{done}");
    let text = s.get(&format!("/api/v1/executions/{pending}/events")).send().await.unwrap().text().await.unwrap();
    let events = sse_events(&text);
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!((events[0].0.as_str(), &events[0].1["stdout"]), ("result", &json!("second\n")));
}

/// A zip (or anything else that is not a tar) answers 400 naming what to upload instead.
#[tokio::test]
async fn a_zip_upload_is_refused_naming_the_accepted_formats() {
    let s = Server::start().await;
    let accepted = "upload a tar archive (.tar, or gzip-compressed .tar.gz)";
    let zip = zip_of(&[("main.py", b"print('zipped')")]);
    assert_eq!(&zip[..4], b"PK\x03\x04");
    let (code, r) = s.exec_tar("sync", zip.clone(), json!({"entrypoint": "main.py"})).await;
    assert_eq!((code, r), (400, json!({"error": format!("the archive is a zip file; {accepted}")})));
    let (code, r) = s.exec_tar("async", zip, json!({"entrypoint": "main.py"})).await;
    assert_eq!((code, r["error"].as_str()), (400, Some(format!("the archive is a zip file; {accepted}").as_str())));
    let (code, r) = s.exec_tar("sync", b"a plain text file, which is no archive at all".to_vec(), json!({})).await;
    assert_eq!(code, 400, "{r}");
    assert_eq!(r["error"], format!("invalid tar archive: the upload does not start with a tar header; {accepted}"));
}
