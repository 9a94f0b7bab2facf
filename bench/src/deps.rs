//! `pyexec-bench deps`: an eval that needs numpy, end to end through a real server, with a cold and a warm
//! environment cache, against the original's approach measured in the same run: `pip install --no-cache-dir`
//! on every request, then the program.
//!
//! The baseline runs pip and CPython directly on the host (no container, no sandbox), so it is a lower bound of
//! what the original spends per request.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pyexec_embedded::{Discovery, Interpreters};

use crate::server::{ServerProcess, server_binary};
use crate::stats::{Targets, stats};

const CODE: &str = "import numpy; print(numpy.arange(3).sum())";
const EXPECTED: &str = "3\n";

/// Options of `pyexec-bench deps`.
#[derive(clap::Args)]
pub struct Args {
    /// Warm-cache executions.
    #[arg(long, default_value_t = 30)]
    warm: usize,
    /// pip-per-request executions (each downloads and installs numpy).
    #[arg(long, default_value_t = 3)]
    pip: usize,
    /// The server binary (default: `pyexec-apiserver` next to this binary).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Exit 1 when a target is missed.
    #[arg(long)]
    check: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let binary = server_binary(args.server.as_deref())?;
    let mut interpreters = Interpreters::discover(&Discovery::everywhere()).await;
    interpreters.prefer(None);
    let python = interpreters.get(None).map_err(anyhow::Error::msg)?.clone();
    let version = python.version.to_string();
    let scratch = tempfile::tempdir()?;
    let pip_python = pip_environment(&python.executable, scratch.path())?;

    let server = ServerProcess::start(&binary, &[]).await?;
    let client = reqwest::Client::new();
    let eval = || async {
        let t = Instant::now();
        let r = client
            .post(format!("{}/api/v1/eval", server.url))
            .json(&serde_json::json!({"code": CODE, "python_version": version}))
            .send()
            .await?;
        let body: serde_json::Value = r.json().await?;
        if body["stdout"] != EXPECTED {
            bail!("the server answered {body}");
        }
        anyhow::Ok(t.elapsed())
    };
    eprintln!("python {}; server {}; numpy from the package index", python.full_version, binary.display());

    let cold = eval().await.context("cold eval")?;
    let mut warm = Vec::new();
    let mut pip = Vec::new();
    // Interleaved, so that both variants see the same machine and network.
    let per_round = args.warm.div_ceil(args.pip.max(1));
    for round in 0..args.pip.max(1) {
        if round < args.pip {
            pip.push(pip_per_request(&pip_python, scratch.path(), round)?);
        }
        for _ in 0..per_round.min(args.warm - warm.len()) {
            warm.push(eval().await?);
        }
    }
    drop(server);

    let warm = stats(warm);
    println!("| variant | p50 ms | p95 ms |");
    println!("|---|---|---|");
    println!("| eval, cold cache (download, install, run) | {:.0} | - |", cold.as_secs_f64() * 1000.0);
    println!("| eval, warm cache | {:.1} | {:.1} |", warm.p50, warm.p95);
    let pip_p50 = if pip.is_empty() {
        None
    } else {
        let pip = stats(pip);
        println!(
            "| pip install --no-cache-dir + python, per request (the original) | {:.0} | {:.0} |",
            pip.p50, pip.p95
        );
        Some(pip.p50)
    };

    let mut targets = Targets::new();
    targets.row("warm-cache numpy eval p50 <= 300 ms", format!("{:.1} ms", warm.p50), warm.p50 <= 300.0);
    if let Some(pip_p50) = pip_p50 {
        let ratio = pip_p50 / warm.p50;
        targets.row(">= 10x faster than pip per request", format!("{ratio:.1}x"), ratio >= 10.0);
    }
    targets.finish(args.check)
}

/// A virtual environment with pip for the baseline (made once, not measured).
fn pip_environment(python: &Path, scratch: &Path) -> anyhow::Result<PathBuf> {
    let venv = scratch.join("pip-venv");
    let status = Command::new("uv")
        .args(["venv", "--quiet", "--seed", "--python"])
        .arg(python)
        .arg(&venv)
        .env("UV_CACHE_DIR", scratch.join("uv-cache"))
        .env("UV_PYTHON_DOWNLOADS", "never")
        .status()
        .context("running uv (scripts/install-uv.sh installs it)")?;
    if !status.success() {
        bail!("uv venv --seed failed");
    }
    Ok(venv.join("bin").join("python"))
}

/// What the original does per request: install the requirements into a fresh place, without a cache, then run.
fn pip_per_request(python: &Path, scratch: &Path, round: usize) -> anyhow::Result<Duration> {
    let target = scratch.join(format!("pip-target-{round}"));
    let t = Instant::now();
    let install = Command::new(python)
        .args(["-m", "pip", "install", "--quiet", "--no-cache-dir", "--disable-pip-version-check", "--target"])
        .arg(&target)
        .arg("numpy")
        // From the index, as the original: not from a local wheel directory this machine may be configured with.
        .env_remove("PIP_FIND_LINKS")
        .stdin(Stdio::null())
        .status()?;
    if !install.success() {
        bail!("pip install numpy failed");
    }
    let out = Command::new(python).args(["-c", CODE]).env("PYTHONPATH", &target).stdin(Stdio::null()).output()?;
    let elapsed = t.elapsed();
    if out.stdout != EXPECTED.as_bytes() {
        bail!("the baseline printed {:?}", String::from_utf8_lossy(&out.stdout));
    }
    std::fs::remove_dir_all(&target)?;
    Ok(elapsed)
}
