//! The HTTP surface against web pages and abusive connections, through a real server on 127.0.0.1: open
//! redirects, cross-site requests, DNS rebinding, connection floods and stalls, internal details in error bodies,
//! secrets on the command line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pyexec_testkit::{Server, json_of, tar_of};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Sends `head` (request line and headers, without the blank line) and `body` on a fresh connection that the
/// server closes after answering, with exactly the bytes given: no client library adds or normalises anything.
async fn raw(server: &Server, head: &str, body: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(address(server)).await.unwrap();
    let mut request = format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    parse_response(&answer)
}

fn parse_response(bytes: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Raw { status, headers, body: body.to_owned() }
}

const EVAL: &str = r#"{"code": "6 * 7", "eval_last_expr": true}"#;

async fn execution_count(server: &Server) -> usize {
    let (code, page) = json_of(server.get("/api/v1/executions").send().await.unwrap()).await;
    assert_eq!(code, 200, "{page}");
    page["executions"].as_array().map(Vec::len).unwrap_or_else(|| panic!("no executions list: {page}"))
}

fn skip_external(test: &str) -> bool {
    if Server::external() {
        eprintln!("SKIPPED {test}: it configures its own server");
        return true;
    }
    false
}

#[tokio::test]
async fn trailing_slash_redirects_never_leave_this_server() {
    let s = Server::start().await;
    let host = format!("Host: {}", address(&s));

    // The original's behaviour for ordinary paths.
    let r = raw(&s, &format!("GET /health/ HTTP/1.1\r\n{host}"), b"").await;
    assert_eq!((r.status, r.headers.get("location").map(String::as_str)), (301, Some("/health")), "{r:?}");
    let r = raw(&s, &format!("GET /health/?verbose=1 HTTP/1.1\r\n{host}"), b"").await;
    assert_eq!(r.headers.get("location").map(String::as_str), Some("/health?verbose=1"), "{r:?}");
    let r = raw(&s, &format!("POST /api/v1/eval/ HTTP/1.1\r\n{host}"), EVAL.as_bytes()).await;
    assert_eq!((r.status, r.headers.get("location").map(String::as_str)), (307, Some("/api/v1/eval")), "{r:?}");
    let r = raw(&s, &format!("GET /docs/ HTTP/1.1\r\n{host}"), b"").await;
    assert!(r.status == 200 || r.headers.get("location").is_some_and(|l| l.starts_with("/docs/")), "{r:?}");

    // Leading slashes are collapsed: the target is a path here, never `//evil.example` (another host).
    for path in ["//evil.example/", "///evil.example//", "//evil.example/?next=1"] {
        let r = raw(&s, &format!("GET {path} HTTP/1.1\r\n{host}"), b"").await;
        let location = r.headers.get("location").cloned().unwrap_or_default();
        assert_eq!(r.status, 301, "{path}: {r:?}");
        assert!(location.starts_with("/evil.example"), "{path}: Location {location:?}");
    }
    // What a browser could still read as another host, once it turns `\` into `/` or decodes the path: no
    // redirect at all.
    for path in ["/\\evil.example/", "/%5Cevil.example/", "/%2F%2Fevil.example/", "//%2fevil.example/", "/%09/evil/"] {
        let r = raw(&s, &format!("GET {path} HTTP/1.1\r\n{host}"), b"").await;
        assert!(!(300..400).contains(&r.status), "{path} redirected: {r:?}");
        assert!(!r.headers.contains_key("location"), "{path}: {r:?}");
    }
}

#[tokio::test]
async fn cross_site_requests_never_run_code() {
    if skip_external("cross_site_requests_never_run_code") {
        return;
    }
    let s = Server::start().await;
    let host = format!("Host: {}", address(&s));
    let evil = "Origin: https://evil.example";

    // What any web page can send without a preflight: text/plain and form bodies, from its visitor's browser.
    let attempts = [
        format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\n{evil}\r\nContent-Type: text/plain"),
        format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\n{evil}\r\nContent-Type: application/x-www-form-urlencoded"),
        format!("POST /api/v1/tools/run_python HTTP/1.1\r\n{host}\r\n{evil}\r\nContent-Type: text/plain"),
        format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\nOrigin: null\r\nContent-Type: text/plain"),
        format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\nSec-Fetch-Site: cross-site\r\nContent-Type: text/plain"),
        format!(
            "POST /mcp HTTP/1.1\r\n{host}\r\n{evil}\r\nContent-Type: text/plain\r\nAccept: application/json, text/event-stream"
        ),
    ];
    for head in &attempts {
        let r = raw(&s, head, EVAL.as_bytes()).await;
        assert_eq!(r.status, 403, "{head}: {r:?}");
        assert!(r.error().contains("PYEXEC_ALLOWED_ORIGINS"), "{head}: {r:?}");
        assert!(r.headers["content-type"].starts_with("application/json"), "{r:?}");
    }
    // A multipart form is a simple request too.
    let form = reqwest::multipart::Form::new()
        .part("tar", reqwest::multipart::Part::bytes(tar_of(&[("main.py", b"print(1)")])).file_name("code.tar"))
        .text("metadata", json!({"entrypoint": "main.py"}).to_string());
    let r = s.post("/api/v1/exec/async").header("origin", "https://evil.example").multipart(form).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(execution_count(&s).await, 0, "a refused request ran nothing");

    // Killing is refused cross-site too (the id need not exist: the refusal comes first).
    let r = raw(
        &s,
        &format!("DELETE /api/v1/executions/exe_00000000-0000-0000-0000-000000000000 HTTP/1.1\r\n{host}\r\n{evil}"),
        b"",
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");

    // curl -d sends a form content type and no Origin: it keeps working, as do this server's own pages.
    let r = raw(&s, &format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\nContent-Type: application/x-www-form-urlencoded\r\nUser-Agent: curl/8.5.0"), EVAL.as_bytes()).await;
    assert_eq!((r.status, r.json()["result"].as_str()), (200, Some("42")), "{r:?}");
    let own = format!("Origin: {}", s.url);
    let r = raw(&s, &format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\n{own}\r\nSec-Fetch-Site: same-origin\r\nContent-Type: application/json"), EVAL.as_bytes()).await;
    assert_eq!((r.status, r.json()["result"].as_str()), (200, Some("42")), "{r:?}");
    // Reading is not refused (the browser does not show another site's answers).
    let r = raw(&s, &format!("GET /api/v1/executions HTTP/1.1\r\n{host}\r\n{evil}"), b"").await;
    assert_eq!(r.status, 200, "{r:?}");

    // An allowed origin may.
    let s = Server::start_with(&[("PYEXEC_ALLOWED_ORIGINS", "https://app.example, http://localhost:3000")]).await;
    let host = format!("Host: {}", address(&s));
    let r = raw(&s, &format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\nOrigin: https://app.example\r\nSec-Fetch-Site: cross-site\r\nContent-Type: text/plain"), EVAL.as_bytes()).await;
    assert_eq!((r.status, r.json()["result"].as_str()), (200, Some("42")), "{r:?}");
    let r = raw(
        &s,
        &format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\nOrigin: http://localhost:3001\r\nContent-Type: text/plain"),
        EVAL.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403, "{r:?}");
}

#[tokio::test]
async fn dns_rebinding_names_are_refused_without_api_keys() {
    if skip_external("dns_rebinding_names_are_refused_without_api_keys") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_ALLOWED_HOSTS", "executor.example,*.internal.example")]).await;
    let port = address(&s).rsplit(':').next().unwrap().to_owned();

    // A page on a name rebound to this machine: its requests are same-origin to the browser, and name its host.
    for name in ["rebind.evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "internal.example"] {
        let host = format!("Host: {name}:{port}");
        let origin = format!("Origin: http://{name}:{port}");
        let r = raw(
            &s,
            &format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\n{origin}\r\nContent-Type: text/plain"),
            EVAL.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 403, "{name}: {r:?}");
        assert!(r.error().contains("PYEXEC_ALLOWED_HOSTS"), "{r:?}");
        let r = raw(&s, &format!("GET /api/v1/executions HTTP/1.1\r\n{host}"), b"").await;
        assert_eq!(r.status, 403, "{name}: reading is refused too: {r:?}");
        let r = raw(&s, &format!("GET /docs/openapi.json HTTP/1.1\r\n{host}"), b"").await;
        assert_eq!(r.status, 403, "{name}: {r:?}");
    }
    assert_eq!(execution_count(&s).await, 0);

    // Loopback names, IP addresses (no DNS, no rebinding) and the configured names are answered.
    for name in [
        "localhost",
        "LOCALHOST.",
        "app.localhost",
        "127.0.0.1",
        "[::1]",
        "10.1.2.3",
        "executor.example",
        "a.internal.example",
    ] {
        let r = raw(&s, &format!("GET /api/v1/executions HTTP/1.1\r\nHost: {name}:{port}"), b"").await;
        assert_eq!(r.status, 200, "{name}: {r:?}");
    }
    // Probes may name anything.
    let r = raw(&s, &format!("GET /health HTTP/1.1\r\nHost: pyexec.default.svc:{port}"), b"").await;
    assert_eq!(r.status, 200, "{r:?}");

    // With API keys a rebound page cannot authenticate, so only /mcp keeps checking the name.
    let s = Server::start_with(&[("PYEXEC_API_KEYS", "k1")]).await;
    let port = address(&s).rsplit(':').next().unwrap().to_owned();
    let host = format!("Host: executor.example:{port}");
    let r = raw(&s, &format!("GET /api/v1/executions HTTP/1.1\r\n{host}\r\nAuthorization: Bearer k1"), b"").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = raw(&s, &format!("GET /api/v1/executions HTTP/1.1\r\n{host}\r\nAuthorization: Bearer k2"), b"").await;
    assert_eq!(r.status, 401, "{r:?}");
    let mcp =
        "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\nAuthorization: Bearer k1";
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).to_string();
    let r = raw(&s, &format!("POST /mcp HTTP/1.1\r\n{host}\r\n{mcp}"), init.as_bytes()).await;
    assert_mcp_host_refusal(&r, &format!("executor.example:{port}"));
    let r = raw(&s, &format!("POST /mcp HTTP/1.1\r\nHost: localhost:{port}\r\n{mcp}"), init.as_bytes()).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// `/mcp` refuses a host name as every route does (403, JSON), naming the setting of MCP clients' host names.
fn assert_mcp_host_refusal(r: &Raw, name: &str) {
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.headers["content-type"].starts_with("application/json"), "{r:?}");
    assert_eq!(
        r.json(),
        json!({"error": format!("the host name {name:?} is not allowed for /mcp (protection against DNS rebinding): \
                                 add it to PYEXEC_MCP_ALLOWED_HOSTS (or PYEXEC_ALLOWED_HOSTS)")}),
        "{r:?}"
    );
}

#[tokio::test]
async fn mcp_names_its_host_setting_when_it_refuses_a_name() {
    if skip_external("mcp_names_its_host_setting_when_it_refuses_a_name") {
        return;
    }
    let s = Server::start().await;
    let port = address(&s).rsplit(':').next().unwrap().to_owned();
    let name = format!("rebind.evil.example:{port}");
    let mcp = "Content-Type: application/json\r\nAccept: application/json, text/event-stream";
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}).to_string();
    let r = raw(&s, &format!("POST /mcp HTTP/1.1\r\nHost: {name}\r\n{mcp}"), init.as_bytes()).await;
    assert_mcp_host_refusal(&r, &name);
    let r = raw(&s, &format!("GET /mcp HTTP/1.1\r\nHost: {name}\r\nAccept: text/event-stream"), b"").await;
    assert_mcp_host_refusal(&r, &name);
    // Elsewhere the refusal names the setting of every route.
    let r = raw(&s, &format!("GET /api/v1/executions HTTP/1.1\r\nHost: {name}"), b"").await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.error().ends_with("add it to PYEXEC_ALLOWED_HOSTS"), "{r:?}");
}

/// The soft limit on open files of this process, raised as far as allowed; the hard limit.
fn raise_own_open_files() -> (u64, u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let raised = libc::rlimit { rlim_cur: limit.rlim_max.min(1 << 20), rlim_max: limit.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            limit.rlim_cur = raised.rlim_cur;
        }
    }
    (limit.rlim_cur, limit.rlim_max)
}

fn set_own_soft_open_files(soft: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = soft;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// The server's open sockets: its connections (and listener). Only sockets: the warm pools open and close pipes
/// and process descriptors in the background, whenever they build or destroy a sandbox.
fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:")))
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Polls `condition` every 20 ms for at most `limit`.
async fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_thousand_idle_connections_leave_health_answering() {
    if skip_external("a_thousand_idle_connections_leave_health_answering") {
        return;
    }
    const IDLE: usize = 1000;
    let (_, hard) = raise_own_open_files();
    if hard < 1400 {
        // Root (what the test command's full-isolation switch stands for) can always raise its hard limit.
        let why = format!("the hard limit on open files ({hard}) is too low for {IDLE} connections");
        return pyexec_testkit::skip(pyexec_testkit::require::FULL_ISOLATION, "a_thousand_idle_connections", &why);
    }
    // The server starts with the common default soft limit of 1024 open files, too few for 1,000 connections
    // unless it raises its own.
    set_own_soft_open_files(1024);
    let s = Server::start().await;
    raise_own_open_files();
    let pid = s.pid();

    for _ in 0..20 {
        assert!(s.get("/health").send().await.unwrap().status().is_success());
    }
    let files_before = open_files(pid);
    let rss_before = rss_kib(pid);

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(address(&s)).await.unwrap());
    }
    assert!(
        eventually(Duration::from_secs(20), || open_files(pid) >= files_before + IDLE).await,
        "the server holds {} files, {files_before} before {IDLE} connections",
        open_files(pid)
    );
    let fresh = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let r = fresh.get(format!("{}/health", s.url)).send().await.expect("/health answers beside idle connections");
    assert!(r.status().is_success());
    let rss_busy = rss_kib(pid);

    drop(idle);
    assert!(
        eventually(Duration::from_secs(20), || open_files(pid) < files_before + 20).await,
        "closed connections stay open on the server: {} files, {files_before} before",
        open_files(pid)
    );
    let rss_after = rss_kib(pid);
    eprintln!("VmRSS: {rss_before} KiB before, {rss_busy} KiB with {IDLE} idle connections, {rss_after} KiB after");
    assert!(rss_after <= rss_before + 64 * 1024, "RSS grew from {rss_before} KiB to {rss_after} KiB");
}

/// Reads until the server closes the connection; `None` if it is still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut got)).await {
        Ok(_) => Some(got),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_stalled_request_head_is_closed_after_the_header_timeout() {
    if skip_external("a_stalled_request_head_is_closed_after_the_header_timeout") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_HEADER_TIMEOUT", "1"), ("PYEXEC_IDLE_TIMEOUT", "600")]).await;

    // Half a header, trickled (so the idle timeout never applies), then nothing.
    let mut slow = TcpStream::connect(address(&s)).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break;
        }
    }
    let answer = closed_within(&mut slow, Duration::from_secs(10)).await.expect("the server closes a stalled head");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "closed after {took:?}");
    assert!(!String::from_utf8_lossy(&answer).contains(" 200 "), "no request was served");

    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(address(&s)).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await.is_some());

    // Whole requests are unaffected.
    assert!(s.get("/health").send().await.unwrap().status().is_success());
}

#[tokio::test]
async fn the_idle_timeout_cuts_stalled_clients_but_not_long_requests() {
    if skip_external("the_idle_timeout_cuts_stalled_clients_but_not_long_requests") {
        return;
    }
    let s = Server::start_with(&[("PYEXEC_IDLE_TIMEOUT", "1"), ("PYEXEC_HEADER_TIMEOUT", "600")]).await;
    let host = format!("Host: {}", address(&s));

    // A kept-alive connection with no request in progress.
    let mut kept = TcpStream::connect(address(&s)).await.unwrap();
    kept.write_all(format!("GET /health HTTP/1.1\r\n{host}\r\n\r\n").as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(closed_within(&mut kept, Duration::from_secs(10)).await.is_some(), "an idle kept-alive connection");

    // A request body that stops arriving.
    let mut stalled = TcpStream::connect(address(&s)).await.unwrap();
    let started = Instant::now();
    stalled
        .write_all(
            format!("POST /api/v1/eval HTTP/1.1\r\n{host}\r\nContent-Length: 1000\r\n\r\n{{\"code\": ").as_bytes(),
        )
        .await
        .unwrap();
    assert!(closed_within(&mut stalled, Duration::from_secs(10)).await.is_some(), "a stalled upload");
    assert!(started.elapsed() >= Duration::from_millis(900), "closed after {:?}", started.elapsed());
    assert_eq!(execution_count(&s).await, 0);

    // A body that keeps arriving, slowly, for longer than the idle timeout.
    let mut steady = TcpStream::connect(address(&s)).await.unwrap();
    let body = EVAL.as_bytes();
    steady
        .write_all(
            format!(
                "POST /api/v1/eval HTTP/1.1\r\n{host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    for chunk in body.chunks(body.len() / 5 + 1) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        steady.write_all(chunk).await.unwrap();
    }
    let answer = parse_response(&closed_within(&mut steady, Duration::from_secs(60)).await.unwrap());
    assert_eq!((answer.status, answer.json()["result"].as_str()), (200, Some("42")), "{answer:?}");

    // A request that works for longer than the idle timeout, with nothing moving on the connection.
    let (code, r) = s.eval(json!({"code": "import time\ntime.sleep(3)\n6 * 7", "eval_last_expr": true})).await;
    assert_eq!((code, r["result"].as_str()), (200, Some("42")), "{r}");
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_wait() {
    if skip_external("beyond_the_connection_cap_new_connections_wait") {
        return;
    }
    let mut s = Server::start_with(&[("PYEXEC_MAX_CONNECTIONS", "2")]).await;
    let pid = s.pid();
    // The start-up check left a kept-alive connection in the client's pool: close it first.
    let pooled = open_files(pid);
    s.client = reqwest::Client::new();
    assert!(eventually(Duration::from_secs(10), || open_files(pid) < pooled).await, "the pooled connection stays");
    let files = open_files(pid);

    let first = TcpStream::connect(address(&s)).await.unwrap();
    let _second = TcpStream::connect(address(&s)).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || open_files(pid) == files + 2).await);
    let mut third = TcpStream::connect(address(&s)).await.unwrap();
    third.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(1500), third.read_to_end(&mut answer)).await;
    assert!(early.is_err(), "a third connection was served beyond the cap of 2: {}", String::from_utf8_lossy(&answer));
    assert!(s.log_text().contains("connection limit is reached"), "the log says why connections wait");

    drop(first);
    let answer = closed_within(&mut third, Duration::from_secs(10)).await.expect("served once a connection closed");
    assert_eq!(parse_response(&answer).status, 200);
}

#[tokio::test]
async fn internal_errors_name_no_host_path() {
    if skip_external("internal_errors_name_no_host_path") {
        return;
    }
    let s = Server::start().await;
    // Uploads are unpacked under the data directory; a file in place of that directory makes the server fail.
    let staging = s.data_dir().join("data/uploads");
    assert!(staging.is_dir(), "the embedded backend stages uploads in {}", staging.display());
    std::fs::remove_dir_all(&staging).unwrap();
    std::fs::write(&staging, b"not a directory").unwrap();

    let (code, body) = s.exec("async", &[("main.py", b"print(1)")], json!({"entrypoint": "main.py"})).await;
    assert_eq!(code, 500, "{body}");
    let text = body.to_string();
    let data_dir = s.data_dir().display().to_string();
    assert!(!text.contains(&data_dir) && !text.contains("uploads"), "a host path in the answer: {text}");
    assert!(body["error"].as_str().unwrap().contains("internal server error"), "{body}");
    // The detail is for the operator.
    assert!(s.log_text().contains(&staging.display().to_string()), "the log names the failing path");
}

#[tokio::test]
async fn secrets_given_as_flags_are_warned_about() {
    if skip_external("secrets_given_as_flags_are_warned_about") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("server.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = std::process::Command::new(pyexec_testkit::server_binary())
        .args(["--api-keys", "flag-key", "--index-url=https://user:pw@mirror.example/simple"])
        .env("PYEXEC_LISTEN", format!("127.0.0.1:{port}"))
        .env("PYEXEC_DATA_DIR", data.path().join("data"))
        .env_remove("PYEXEC_API_KEYS")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let warned = eventually(Duration::from_secs(60), || {
        let text = read();
        text.contains("PYEXEC_API_KEYS_FILE") && text.contains("PYEXEC_INDEX_URL")
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let text = read();
    assert!(warned, "no warning about secrets in flags:\n{text}");
    assert!(!text.contains("pw@"), "the warning must not repeat the secret:\n{text}");
}
