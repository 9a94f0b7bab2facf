//! Operating the server: load, crashes and restarts, authentication, retention, shutdown, configuration errors.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use pyexec_testkit::*;
use serde_json::json;

fn skip_external(name: &str) -> bool {
    if Server::external() {
        eprintln!("!!! SKIPPED {name}: it must start and configure its own server (PYEXEC_TEST_SERVER is set)");
        return true;
    }
    false
}

/// 200 simultaneous evals: every answer is the right one for its request, nothing is a 5xx, and 429 only comes
/// when the queue is really full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_simultaneous_evals() {
    if skip_external("two_hundred_simultaneous_evals") {
        return;
    }
    for (max_queue, expect_429) in [("200", false), ("10", true)] {
        let s = Server::start_with(&[("PYEXEC_MAX_QUEUE", max_queue), ("PYEXEC_MAX_CONCURRENT", "2")]).await;
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let (client, url) = (s.client.clone(), s.url.clone());
            tasks.spawn(async move {
                let r = client
                    .post(format!("{url}/api/v1/eval"))
                    .json(&json!({"code": format!("token = {i}\nprint(f'answer-{{token}}')\ntoken * 2"), "eval_last_expr": true}))
                    .send()
                    .await
                    .unwrap();
                let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                let (code, body) = json_of(r).await;
                (i, code, body, retry)
            });
        }
        let (mut ok, mut full) = (0, 0);
        while let Some(joined) = tasks.join_next().await {
            let (i, code, body, retry) = joined.unwrap();
            match code {
                200 => {
                    ok += 1;
                    assert_eq!(body["stdout"], format!("answer-{i}"), "{body}");
                    assert_eq!(body["result"], (i * 2).to_string());
                }
                429 => {
                    full += 1;
                    assert!(retry.is_some(), "429 comes with Retry-After");
                    assert!(body["error"].as_str().unwrap().contains("queue is full"));
                }
                other => panic!("request {i}: unexpected {other}: {body}"),
            }
        }
        eprintln!("max_queue {max_queue}: {ok} answered, {full} refused with 429");
        if expect_429 {
            assert!(full > 0, "a queue of 10 must overflow under 200 simultaneous requests");
            assert!(ok >= 12, "at least the queue and the slots are served");
        } else {
            assert_eq!(full, 0, "with room for all, nobody is refused");
        }
    }
}

/// SIGKILL during a run with more waiting: after a restart nothing is lost, the interrupted run is failed with a
/// clear error, the queued ones run, and earlier results are still there.
#[tokio::test]
async fn a_crash_loses_nothing() {
    if skip_external("a_crash_loses_nothing") {
        return;
    }
    let mut s = Server::start_with(&[("PYEXEC_MAX_CONCURRENT", "1")]).await;
    let (_, done) = s.eval(json!({"code": "print('before the crash')"})).await;
    let done_id = done["execution_id"].as_str().unwrap().to_owned();
    let (_, running) =
        s.exec("async", &[("main.py", b"import time\ntime.sleep(60)")], json!({"entrypoint": "main.py"})).await;
    let running_id = running["execution_id"].as_str().unwrap().to_owned();
    s.wait_status(&running_id, "running").await;
    let mut queued = Vec::new();
    for i in 0..3 {
        let code = format!("import sys\nprint('queued {i}', sys.stdin.read())");
        let (_, r) =
            s.exec("async", &[("main.py", code.as_bytes())], json!({"entrypoint": "main.py", "stdin": "kept"})).await;
        queued.push(r["execution_id"].as_str().unwrap().to_owned());
    }
    s.kill_hard();
    s.restart().await;

    let (_, r) = json_of(s.get(&format!("/api/v1/executions/{done_id}")).send().await.unwrap()).await;
    assert_eq!(r["stdout"], "before the crash\n");
    let r = s.wait_terminal(&running_id).await;
    assert_eq!(r["status"], "failed");
    assert_ne!(r["exit_code"], 0);
    assert!(r["error"].as_str().unwrap().contains("server stopped"), "{r}");
    for (i, id) in queued.iter().enumerate() {
        let r = s.wait_terminal(id).await;
        assert_eq!(
            (r["status"].as_str(), r["stdout"].as_str()),
            (Some("completed"), Some(format!("queued {i} kept\n").as_str())),
            "{r}"
        );
    }
    // No workspace is left behind.
    let workspaces = s.data_dir().join("data/workspaces");
    assert_eq!(std::fs::read_dir(workspaces).unwrap().count(), 0);
}

#[tokio::test]
async fn sigterm_lets_runs_finish_within_the_grace_period_and_keeps_the_queue() {
    if skip_external("sigterm_lets_runs_finish_within_the_grace_period_and_keeps_the_queue") {
        return;
    }
    let mut s = Server::start_with(&[("PYEXEC_SHUTDOWN_GRACE", "5"), ("PYEXEC_MAX_CONCURRENT", "1")]).await;
    let quick_code = b"import time\ntime.sleep(0.5)\nprint('finished in the grace period')";
    let (_, quick) = s.exec("async", &[("main.py", quick_code)], json!({"entrypoint": "main.py"})).await;
    let quick = quick["execution_id"].as_str().unwrap().to_owned();
    s.wait_status(&quick, "running").await;
    let (_, queued) =
        s.exec("async", &[("main.py", b"print('ran after the restart')")], json!({"entrypoint": "main.py"})).await;
    let queued = queued["execution_id"].as_str().unwrap().to_owned();
    let pid = s.pid();
    let started = Instant::now();
    let status = s.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    // The idle warm sandboxes went with the server: none of its run cgroups is left.
    let left = run_cgroups_of(pid);
    assert!(left.is_empty(), "run cgroups left by the stopped server: {left:?}");
    s.restart().await;
    let r = s.wait_terminal(&quick).await;
    assert_eq!(
        (r["status"].as_str(), r["stdout"].as_str()),
        (Some("completed"), Some("finished in the grace period\n")),
        "{r}"
    );
    let r = s.wait_terminal(&queued).await;
    assert_eq!(r["stdout"], "ran after the restart\n", "the queued execution was kept: {r}");
}

#[tokio::test]
async fn sigterm_stops_running_executions_after_the_grace_period() {
    if skip_external("sigterm_stops_running_executions_after_the_grace_period") {
        return;
    }
    let mut s = Server::start_with(&[("PYEXEC_SHUTDOWN_GRACE", "1")]).await;
    let (_, r) =
        s.exec("async", &[("main.py", b"import time\ntime.sleep(60)")], json!({"entrypoint": "main.py"})).await;
    let id = r["execution_id"].as_str().unwrap().to_owned();
    s.wait_status(&id, "running").await;
    let started = Instant::now();
    assert!(s.terminate().success());
    assert!(started.elapsed() < Duration::from_secs(8), "shutdown took {:?}", started.elapsed());
    s.restart().await;
    let r = s.wait_terminal(&id).await;
    assert_eq!(r["status"], "failed", "{r}");
    assert!(r["error"].as_str().unwrap().contains("server stopped"), "{r}");
}

#[tokio::test]
async fn api_keys_guard_the_api_but_not_health() {
    if skip_external("api_keys_guard_the_api_but_not_health") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let keys_file = dir.path().join("keys");
    std::fs::write(&keys_file, "# team keys\nfrom-file\n").unwrap();
    let s = Server::start_with(&[("PYEXEC_API_KEYS", "k1,k2"), ("PYEXEC_API_KEYS_FILE", keys_file.to_str().unwrap())])
        .await;
    let body = json!({"code": "print('authorised')"});
    let r = s.post("/api/v1/eval").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert!(json_of(r).await.1["error"].as_str().unwrap().contains("API key"));
    let r = s.post("/api/v1/eval").bearer_auth("wrong").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    for key in ["k1", "k2", "from-file"] {
        let (code, r) = json_of(s.post("/api/v1/eval").bearer_auth(key).json(&body).send().await.unwrap()).await;
        assert_eq!((code, r["stdout"].as_str()), (200, Some("authorised\n")), "{key}");
    }
    let r = s.get("/api/v1/executions").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(s.get("/health").send().await.unwrap().status(), 200, "/health stays open");
    assert_eq!(s.get("/docs/openapi.json").send().await.unwrap().status(), 200);

    let open = Server::start().await;
    assert_eq!(open.post("/api/v1/eval").json(&body).send().await.unwrap().status(), 200, "no keys: no auth");
}

#[tokio::test]
async fn finished_results_expire_after_the_ttl_counted_from_the_finish() {
    if skip_external("finished_results_expire_after_the_ttl_counted_from_the_finish") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_CLEANUP_TTL", "2")]).await;
    let (_, r) = s.eval(json!({"code": "import time\ntime.sleep(2.5)\nprint('slow')"})).await;
    let id = r["execution_id"].as_str().unwrap().to_owned();
    let finished = Instant::now();
    let (code, _) = json_of(s.get(&format!("/api/v1/executions/{id}")).send().await.unwrap()).await;
    assert_eq!(code, 200, "kept right after it finished although it was created more than the TTL ago");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, body) = json_of(s.get(&format!("/api/v1/executions/{id}")).send().await.unwrap()).await;
        if code == 404 {
            assert_eq!(body, json!({"error": "execution not found", "retention_seconds": 2}));
            assert!(finished.elapsed() >= Duration::from_secs(2), "expired before the TTL");
            break;
        }
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn bad_configuration_stops_start_up_naming_the_variable() {
    if skip_external("bad_configuration_stops_start_up_naming_the_variable") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (var, value, needle) in [
        ("PYEXEC_PORT", "eighty", "PYEXEC_PORT"),
        ("PYEXEC_DEFAULT_TIMEOUT", "-5", "PYEXEC_DEFAULT_TIMEOUT"),
        ("PYEXEC_AUTO_DETECT_IMPORTS", "maybe", "PYEXEC_AUTO_DETECT_IMPORTS"),
        ("PYEXEC_DEFAULT_MEMORY_MB", "999999", "PYEXEC_DEFAULT_MEMORY_MB"),
        ("PYEXEC_DEFAULT_IMAGE", "ubuntu:24.04", "PYEXEC_DEFAULT_IMAGE"),
        ("PYEXEC_LOG_LEVEL", "loud", "PYEXEC_LOG_LEVEL"),
        ("PYEXEC_API_KEYS_FILE", "/nonexistent/keys", "PYEXEC_API_KEYS_FILE"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pyexec-apiserver"))
            .env("PYEXEC_DATA_DIR", dir.path())
            .env("PYEXEC_LISTEN", "127.0.0.1:0")
            .env(var, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} was accepted");
        assert!(stderr.contains(needle), "{var}={value}: the message does not name it:\n{stderr}");
    }
}

/// Run cgroups (`run-<pid>-N`) of the server process `pid`, anywhere under /sys/fs/cgroup.
fn run_cgroups_of(pid: u32) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, depth: usize, prefix: &str, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                out.push(path);
            } else if depth > 0 {
                walk(&path, depth - 1, prefix, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), 6, &format!("run-{pid}-"), &mut out);
    out
}
