//! Completion webhooks through a real server on 127.0.0.1 (docs/webhooks.md): a receiver on 127.0.0.1 gets the
//! signed final result of `/eval` and `/exec/async` runs (the signature checked in Rust and with the Python
//! snippet of the docs), gets retries after 5xx, and the server refuses callbacks it may not send: private
//! addresses without PYEXEC_WEBHOOK_ALLOW_PRIVATE, malformed URLs, and any URL when it has no secret.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use pyexec_testkit::*;
use serde_json::{Value, json};
use sha2::Sha256;

/// At least 32 bytes; the file holds it with a trailing newline, which is no part of the key.
const SECRET: &str = "webhook-test-secret-0123456789abcdef";

fn skip_external(name: &str) -> bool {
    if Server::external() {
        eprintln!("!!! SKIPPED {name}: it must configure its own server (PYEXEC_TEST_SERVER is set)");
        return true;
    }
    false
}

/// A receiver on 127.0.0.1: answers the statuses of its script in turn, then 200, and records every request.
struct Receiver {
    url: String,
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let script = Arc::new(Mutex::new(VecDeque::from(script.to_vec())));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post({
                let seen = seen.clone();
                move |headers: HeaderMap, body: Bytes| async move {
                    seen.lock().unwrap().push((headers, body));
                    StatusCode::from_u16(script.lock().unwrap().pop_front().unwrap_or(200)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook?token=abc", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, seen }
    }

    /// Waits until `n` requests came in; returns them.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<(HeaderMap, Bytes)> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen.lock().unwrap().clone();
            if seen.len() >= n {
                return seen;
            }
            assert!(Instant::now() < deadline, "{} of {n} webhook requests within {within:?}", seen.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// A server with a webhook secret and the given extra settings; the directory holds the secret file.
async fn server(settings: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("webhook-secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let mut env = vec![("PYEXEC_WEBHOOK_SECRET_FILE", secret.to_str().unwrap())];
    env.extend_from_slice(settings);
    (Server::start_with(&env).await, dir)
}

/// A server that may call back 127.0.0.1 over http (a test receiver).
async fn open_server() -> (Server, tempfile::TempDir) {
    server(&[("PYEXEC_WEBHOOK_ALLOW_PRIVATE", "true"), ("PYEXEC_WEBHOOK_ALLOW_HTTP", "true")]).await
}

/// Checks a request's signature as docs/webhooks.md says: HMAC-SHA256 of `<timestamp>.<body>`.
fn assert_signed(headers: &HeaderMap, body: &[u8]) {
    assert_eq!(headers["content-type"], "application/json");
    let timestamp = headers["x-pyexec-timestamp"].to_str().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(now.abs_diff(timestamp.parse::<u64>().unwrap()) < 120, "a fresh timestamp: {timestamp}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(headers["x-pyexec-signature"].to_str().unwrap(), format!("sha256={expected}"));
}

/// Runs the verification snippet of docs/webhooks.md on a received request: it must accept it, and refuse it
/// with one byte changed.
fn assert_python_snippet_verifies(headers: &HeaderMap, body: &[u8], scratch: &Path) {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhooks.md")).unwrap();
    let start = doc.find("```python\n").expect("docs/webhooks.md has a python block") + "```python\n".len();
    let snippet = &doc[start..start + doc[start..].find("```").unwrap()];
    let script = scratch.join("verify.py");
    std::fs::write(
        &script,
        format!(
            "{snippet}\nimport sys\nsecret, body = sys.argv[1].encode(), open(sys.argv[2], 'rb').read()\n\
             ok = verify(secret, sys.argv[3], sys.argv[4], body)\n\
             tampered = verify(secret, sys.argv[3], sys.argv[4], body + b' ')\n\
             sys.exit(0 if ok and not tampered else 1)\n"
        ),
    )
    .unwrap();
    let body_file: PathBuf = scratch.join("body.json");
    std::fs::write(&body_file, body).unwrap();
    let run = std::process::Command::new("python3")
        .arg(&script)
        .arg(SECRET)
        .arg(&body_file)
        .arg(headers["x-pyexec-timestamp"].to_str().unwrap())
        .arg(headers["x-pyexec-signature"].to_str().unwrap())
        .output();
    match run {
        Ok(out) => assert!(
            out.status.success(),
            "the documented snippet did not verify the delivery: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!("!!! python3 not runnable ({e}): the documented snippet was not checked"),
    }
}

/// The value of a counter in `/metrics`, once it reaches `at_least` (or what it is after a few seconds).
async fn counter(s: &Server, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = s.get("/metrics").send().await.unwrap().text().await.unwrap();
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64);
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn eval_results_arrive_signed() {
    if skip_external("eval_results_arrive_signed") {
        return;
    }
    let (s, dir) = open_server().await;
    let receiver = Receiver::start(&[]).await;
    let (code, answer) =
        s.eval(json!({"code": "print('hi')\n6 * 7", "eval_last_expr": true, "callback_url": receiver.url})).await;
    assert_eq!(code, 200, "{answer}");
    let seen = receiver.wait_for(1, Duration::from_secs(30)).await;
    let (headers, body) = &seen[0];
    let delivered: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(delivered, answer, "the webhook carries the final result, as the request's answer");
    assert_eq!((delivered["status"].as_str(), delivered["result"].as_str()), (Some("completed"), Some("42")));
    assert_signed(headers, body);
    assert_python_snippet_verifies(headers, body, dir.path());
    assert_eq!(counter(&s, "pyexec_webhooks_delivered_total", 1).await, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 1, "delivered once");
}

#[tokio::test]
async fn async_results_arrive_after_retries() {
    if skip_external("async_results_arrive_after_retries") {
        return;
    }
    let (s, _dir) = open_server().await;
    // Two 500s: the third attempt (after 1 s and 2 s) is taken.
    let receiver = Receiver::start(&[500, 500]).await;
    let (code, accepted) = s
        .exec(
            "async",
            &[("main.py", b"print('from async')\n")],
            json!({"entrypoint": "main.py", "callback_url": receiver.url}),
        )
        .await;
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["execution_id"].as_str().unwrap();
    let seen = receiver.wait_for(3, Duration::from_secs(40)).await;
    for (headers, body) in &seen {
        assert_eq!(body, &seen[0].1, "every attempt sends the same result");
        assert_signed(headers, body);
    }
    let delivered: Value = serde_json::from_slice(&seen[0].1).unwrap();
    assert_eq!(delivered["execution_id"], id);
    assert_eq!((delivered["status"].as_str(), delivered["stdout"].as_str()), (Some("completed"), Some("from async\n")));
    assert_eq!(delivered, s.wait_terminal(id).await, "the same record GET answers");
    assert_eq!(counter(&s, "pyexec_webhooks_delivered_total", 1).await, 1);
    assert_eq!(counter(&s, "pyexec_webhooks_failed_total", 0).await, 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 3, "no attempt after the 200");
}

#[tokio::test]
async fn killed_executions_are_reported_and_4xx_is_not_retried() {
    if skip_external("killed_executions_are_reported_and_4xx_is_not_retried") {
        return;
    }
    let (s, _dir) = open_server().await;
    let receiver = Receiver::start(&[404]).await;
    let (code, accepted) = s
        .exec(
            "async",
            &[("main.py", b"import time\ntime.sleep(60)\n")],
            json!({"entrypoint": "main.py", "callback_url": receiver.url}),
        )
        .await;
    assert_eq!(code, 202, "{accepted}");
    let id = accepted["execution_id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = s.delete(&format!("/api/v1/executions/{id}")).send().await.unwrap();
    assert_eq!(killed.status(), 200);
    let seen = receiver.wait_for(1, Duration::from_secs(30)).await;
    let delivered: Value = serde_json::from_slice(&seen[0].1).unwrap();
    assert_eq!(delivered["status"], "killed", "{delivered}");
    // The receiver answered 404: final, no retry.
    assert_eq!(counter(&s, "pyexec_webhooks_failed_total", 1).await, 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.count(), 1, "a 404 is not retried");
}

#[tokio::test]
async fn private_callbacks_are_refused_without_the_setting() {
    if skip_external("private_callbacks_are_refused_without_the_setting") {
        return;
    }
    let (s, _dir) = server(&[("PYEXEC_WEBHOOK_ALLOW_HTTP", "true")]).await;
    let receiver = Receiver::start(&[]).await;
    let port = receiver.url.split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
    // Addresses (and localhost) are refused when the request comes in.
    for url in [receiver.url.clone(), format!("http://localhost:{port}/hook"), format!("http://[::1]:{port}/hook")] {
        let (code, body) = s.eval(json!({"code": "1", "callback_url": url})).await;
        assert_eq!(code, 400, "{url}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("PYEXEC_WEBHOOK_ALLOW_PRIVATE"), "{error}");
        let (code, body) =
            s.exec("async", &[("main.py", b"print(1)\n")], json!({"entrypoint": "main.py", "callback_url": url})).await;
        assert_eq!(code, 400, "{url}: {body}");
    }
    // A name is resolved at delivery, and a private address is never called: this machine's own name, where it
    // resolves only to private addresses (/etc/hosts).
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
    let addresses: Vec<_> = match tokio::net::lookup_host((name.as_str(), 80)).await {
        Ok(found) if !name.is_empty() => found.collect(),
        _ => Vec::new(),
    };
    let private = !addresses.is_empty()
        && addresses
            .iter()
            .all(|a| pyexec_core::callback::classify(a.ip()) != pyexec_core::callback::AddressClass::Public);
    if !private {
        eprintln!(
            "!!! SKIPPED the host-name part: {name:?} does not resolve to private addresses only ({addresses:?})"
        );
        return;
    }
    let (code, body) = s.eval(json!({"code": "1", "callback_url": format!("http://{name}:{port}/hook")})).await;
    assert_eq!(code, 200, "a name is accepted up front: {body}");
    assert_eq!(counter(&s, "pyexec_webhooks_failed_total", 1).await, 1, "and refused at delivery");
    assert_eq!(receiver.count(), 0, "nothing was sent");
    assert!(s.log_text().contains("resolves to"), "the log says why");
}

#[tokio::test]
async fn bad_callback_urls_answer_400() {
    if skip_external("bad_callback_urls_answer_400") {
        return;
    }
    let (s, _dir) = server(&[]).await;
    let long = format!("https://hooks.example.com/{}", "a".repeat(2048));
    for (url, says) in [
        ("not-a-url", "relative URL without a base"),
        ("ftp://hooks.example.com/x", "https"),
        ("http://hooks.example.com/x", "PYEXEC_WEBHOOK_ALLOW_HTTP"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
        ("https://hooks example.com/", "spaces"),
        (long.as_str(), "more than the 2048 allowed"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ] {
        let (code, body) = s.eval(json!({"code": "1", "callback_url": url})).await;
        assert_eq!(code, 400, "{url}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{url}: {body}");
        let (code, body) =
            s.exec("sync", &[("main.py", b"print(1)\n")], json!({"entrypoint": "main.py", "callback_url": url})).await;
        assert_eq!(code, 400, "{url}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{url}: {body}");
    }
    // In config, it would be ignored: refused, naming its place.
    let (code, body) = s.eval(json!({"code": "1", "config": {"callback_url": "https://hooks.example.com/"}})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("top level"), "{body}");

    // A server without a secret refuses every callback rather than sending it unsigned.
    let plain = Server::start().await;
    let (code, body) = plain.eval(json!({"code": "1", "callback_url": "https://hooks.example.com/x"})).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("no webhook secret"), "{body}");
    let (code, _) = plain.eval(json!({"code": "1", "callback_url": ""})).await;
    assert_eq!(code, 200, "an empty callback_url is none");
}
