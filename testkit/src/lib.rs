//! Test support: a real `pyexec-apiserver` on 127.0.0.1 with its own data directory, driven over HTTP.
//!
//! With `PYEXEC_TEST_SERVER=http://host:port` the conformance tests run against that server instead (any
//! backend); tests that must restart, configure or kill the server then say SKIPPED.
//!
//! The server binary is `PYEXEC_APISERVER_BIN`, else `pyexec-apiserver` in the directory of the running
//! executable or its parent (where cargo puts binaries next to `deps/`).
//!
//! [`kube`] is a fake Kubernetes API for the operator's and the Kubernetes backend's tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod kube;

/// The 21 cases of the original's `scripts/test-eval-last-expr.sh` (code, expected `result`), shared by the
/// embedded backend's tests and the HTTP conformance tests. The code is sent as `jq -Rs` does: with a trailing
/// newline.
pub const EVAL_LAST_EXPR_CASES: &[(&str, Option<&str>)] = &[
    ("2 + 2", Some("4")),
    ("6 * 7", Some("42")),
    ("10 / 4", Some("2.5")),
    ("x = 5\ny = 10\nx + y", Some("15")),
    ("a = 100\nb = a // 3\nb * 2", Some("66")),
    ("import math\nmath.sqrt(16)", Some("4.0")),
    ("x = 5", None),
    ("print('hello')", None),
    ("a, b, c = 1, 2, 3", None),
    ("[1, 2, 3]", Some("[1, 2, 3]")),
    ("[x**2 for x in range(5)]", Some("[0, 1, 4, 9, 16]")),
    ("{'a': 1, 'b': 2}", Some("{'a': 1, 'b': 2}")),
    ("'hello world'", Some("'hello world'")),
    ("(1, 2, 3)", Some("(1, 2, 3)")),
    ("{1, 2, 3}", Some("{1, 2, 3}")),
    ("print('computing...')\n2 ** 10", Some("1024")),
    ("print('step 1')\nprint('step 2')\n'done'", Some("'done'")),
    ("len('hello')", Some("5")),
    ("len([1, 2, 3, 4, 5])", Some("5")),
    ("sum(range(101))", Some("5050")),
    ("sorted([3, 1, 4, 1, 5])", Some("[1, 1, 3, 4, 5]")),
];

/// Test switches the test command sets for what its machines have: a test that would skip for want of the
/// capability fails instead when its switch is `1`, so a machine that lacks it cannot pass silently.
pub mod require {
    /// Root with cgroups: full isolation (memory and CPU limits, out-of-memory kills).
    pub const FULL_ISOLATION: &str = "PYEXEC_REQUIRE_FULL_ISOLATION";
    /// Network egress for runs and installs (pasta and nftables usable by the server).
    pub const EGRESS: &str = "PYEXEC_REQUIRE_EGRESS";
    /// Headless Chromium and the browser test's npm packages.
    pub const BROWSER: &str = "PYEXEC_REQUIRE_BROWSER_TEST";
    /// kubernetes-validate, helm and kubectl.
    pub const K8S_TOOLS: &str = "PYEXEC_REQUIRE_K8S_TOOLS";
}

/// Whether the test command requires the capability named by `switch` (see [`require`]).
pub fn required(switch: &str) -> bool {
    std::env::var(switch).as_deref() == Ok("1")
}

/// Says loudly that `test` is skipped because `why`; fails instead when `switch` is required.
pub fn skip(switch: &str, test: &str, why: &str) {
    assert!(!required(switch), "{test} cannot run here ({why}), and {switch}=1 requires it");
    eprintln!("\n!!! SKIPPED {test}: {why} (set {switch}=1 to make this a failure)\n");
}

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A server process (or the external one), with an HTTP client.
pub struct Server {
    pub url: String,
    child: Option<Child>,
    data: Option<tempfile::TempDir>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    pub client: reqwest::Client,
    log: PathBuf,
}

/// Where the server binary is.
pub fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PYEXEC_APISERVER_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap();
    let candidates = [exe.with_file_name("pyexec-apiserver"), exe.parent().unwrap().with_file_name("pyexec-apiserver")];
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!(
            "pyexec-apiserver not found next to {} (build it: cargo build -p pyexec-apiserver, or set PYEXEC_APISERVER_BIN)",
            exe.display()
        )
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// A fresh server with default settings.
    pub async fn start() -> Server {
        Self::start_with(&[]).await
    }

    /// A fresh server with extra `PYEXEC_*` settings, or the external one.
    pub async fn start_with(env: &[(&str, &str)]) -> Server {
        Self::start_with_args(env, &[]).await
    }

    /// A fresh server with extra settings and command-line flags, or the external one.
    pub async fn start_with_args(env: &[(&str, &str)], args: &[&str]) -> Server {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
        if let Ok(url) = std::env::var("PYEXEC_TEST_SERVER") {
            return Server {
                url: url.trim_end_matches('/').to_owned(),
                child: None,
                data: None,
                env: vec![],
                args: vec![],
                client,
                log: PathBuf::new(),
            };
        }
        let data = tempfile::tempdir().unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut server =
            Server { url: String::new(), child: None, data: Some(data), env, args, client, log: PathBuf::new() };
        server.spawn().await;
        server
    }

    /// True when the tests drive a server they did not start.
    pub fn external() -> bool {
        std::env::var_os("PYEXEC_TEST_SERVER").is_some()
    }

    pub fn data_dir(&self) -> &Path {
        self.data.as_ref().expect("a local server").path()
    }

    async fn spawn(&mut self) {
        let port = free_port();
        self.url = format!("http://127.0.0.1:{port}");
        self.log = self.data_dir().join(format!("server-{port}.log"));
        let log = std::fs::File::create(&self.log).unwrap();
        let mut cmd = Command::new(server_binary());
        cmd.env("PYEXEC_LISTEN", format!("127.0.0.1:{port}"))
            .env("PYEXEC_DATA_DIR", self.data_dir().join("data"))
            .env("PYEXEC_LOG_LEVEL", "debug")
            .env_remove("PYEXEC_API_KEYS")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.args(&self.args);
        self.child = Some(cmd.spawn().expect("the server binary starts"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.client.get(format!("{}/health", self.url)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the server exited with {status}:\n{}", self.log_text());
            }
            assert!(Instant::now() < deadline, "the server did not come up:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a local server").id()
    }

    /// SIGKILL: the server dies without any clean-up.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a running local server");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        child.wait().unwrap()
    }

    /// Starts the server again on the same data directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        self.spawn().await;
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.delete(format!("{}{path}", self.url))
    }

    /// `POST /api/v1/eval` with a JSON body; returns (status, body).
    pub async fn eval(&self, body: Value) -> (u16, Value) {
        let r = self.post("/api/v1/eval").json(&body).send().await.unwrap();
        json_of(r).await
    }

    /// `POST /api/v1/exec/{mode}` with a tar of `files` and `metadata`.
    pub async fn exec(&self, mode: &str, files: &[(&str, &[u8])], metadata: Value) -> (u16, Value) {
        self.exec_tar(mode, tar_of(files), metadata).await
    }

    pub async fn exec_tar(&self, mode: &str, tar: Vec<u8>, metadata: Value) -> (u16, Value) {
        let form = reqwest::multipart::Form::new()
            .part(
                "tar",
                reqwest::multipart::Part::bytes(tar)
                    .file_name("code.tar")
                    .mime_str("application/octet-stream")
                    .unwrap(),
            )
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string()).mime_str("application/json").unwrap(),
            );
        let r = self.post(&format!("/api/v1/exec/{mode}")).multipart(form).send().await.unwrap();
        json_of(r).await
    }

    /// GET an execution until it is terminal.
    pub async fn wait_terminal(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, body) = json_of(self.get(&format!("/api/v1/executions/{id}")).send().await.unwrap()).await;
            assert_eq!(code, 200, "{body}");
            if ["completed", "failed", "killed"].contains(&body["status"].as_str().unwrap()) {
                return body;
            }
            assert!(Instant::now() < deadline, "{id} did not finish: {body}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// GET an execution until its status is `status`.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, body) = json_of(self.get(&format!("/api/v1/executions/{id}")).send().await.unwrap()).await;
            if body["status"] == status {
                return body;
            }
            assert!(Instant::now() < deadline, "{id} never became {status}: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Status and JSON body (`Value::Null` when not JSON).
pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The `(event, data)` pairs of a whole Server-Sent Events body, data parsed as JSON.
pub fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let event = block.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or("message");
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            (event.to_owned(), serde_json::from_str(&data).unwrap_or(Value::String(data)))
        })
        .collect()
}

/// The concatenated output and the final result of an `/events` body.
pub fn output_and_result(text: &str) -> (String, Option<Value>) {
    let mut output = String::new();
    let mut result = None;
    for (event, data) in sse_events(text) {
        match event.as_str() {
            "output" => output.push_str(data["data"].as_str().unwrap_or_default()),
            "result" => result = Some(data),
            _ => {}
        }
    }
    (output, result)
}

/// A plain tar with `files` (mode 0644).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *content).unwrap();
    }
    b.into_inner().unwrap()
}

/// A gzip-compressed tar.
pub fn tar_gz_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar_of(files)).unwrap();
    gz.finish().unwrap()
}

/// A zip archive of `files`, stored without compression: what people upload by mistake instead of a tar.
pub fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    fn u16le(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(&u16::try_from(n).unwrap().to_le_bytes());
    }
    fn u32le(out: &mut Vec<u8>, n: u64) {
        out.extend_from_slice(&u32::try_from(n).unwrap().to_le_bytes());
    }
    // Version 2.0, no flags, stored, 1980-01-01 00:00.
    const COMMON: [u8; 10] = [20, 0, 0, 0, 0, 0, 0, 0, 0x21, 0];
    let (mut out, mut directory) = (Vec::new(), Vec::new());
    for (name, content) in files {
        let mut crc = flate2::Crc::new();
        crc.update(content);
        let offset = out.len() as u64;
        let mut fields = Vec::new();
        u32le(&mut fields, u64::from(crc.sum()));
        u32le(&mut fields, content.len() as u64);
        u32le(&mut fields, content.len() as u64);
        u16le(&mut fields, name.len());
        u16le(&mut fields, 0);
        out.extend_from_slice(b"PK\x03\x04");
        out.extend_from_slice(&COMMON);
        out.extend_from_slice(&fields);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(content);
        directory.extend_from_slice(b"PK\x01\x02\x14\x00");
        directory.extend_from_slice(&COMMON);
        directory.extend_from_slice(&fields);
        // Comment length, disk, internal and external attributes, then where the entry starts.
        directory.extend_from_slice(&[0; 10]);
        u32le(&mut directory, offset);
        directory.extend_from_slice(name.as_bytes());
    }
    let at = out.len() as u64;
    out.extend_from_slice(&directory);
    out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00");
    u16le(&mut out, files.len());
    u16le(&mut out, files.len());
    u32le(&mut out, directory.len() as u64);
    u32le(&mut out, at);
    u16le(&mut out, 0);
    out
}

/// A tar header written by hand (for entries `tar::Builder` refuses: `..`, absolute paths, odd types).
pub fn raw_entry(path: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..path.len()].copy_from_slice(path.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", data.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.extend(std::iter::repeat_n(0, (512 - data.len() % 512) % 512));
    out
}

pub fn raw_tar(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend(std::iter::repeat_n(0, 1024));
    out
}
