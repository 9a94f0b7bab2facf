//! A `pyexec-apiserver` process started by a benchmark, with its own data directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The server binary: `configured`, else `pyexec-apiserver` next to this binary.
pub fn server_binary(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match configured {
        Some(p) => p.to_owned(),
        None => std::env::current_exe()?.with_file_name("pyexec-apiserver"),
    };
    if !path.is_file() {
        bail!(
            "{} not found: build it first (cargo build --release -p pyexec-apiserver) or pass --server",
            path.display()
        );
    }
    Ok(path)
}

/// A server process with its own data directory.
pub struct ServerProcess {
    child: Child,
    pub url: String,
    _data: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    pub async fn start(binary: &Path, env: &[(&str, String)]) -> anyhow::Result<ServerProcess> {
        let data = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut cmd = Command::new(binary);
        cmd.env("PYEXEC_LISTEN", format!("127.0.0.1:{port}"))
            .env("PYEXEC_DATA_DIR", data.path().join("data"))
            .env("PYEXEC_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.path().join("server.log"))?);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let server = ServerProcess { child, url: format!("http://127.0.0.1:{port}"), _data: data };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.get(format!("{}/health", server.url)).send().await.is_err() {
            if Instant::now() > deadline {
                bail!("the server did not start");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(server)
    }

    /// `VmRSS` and `VmHWM` in MiB.
    pub fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}
