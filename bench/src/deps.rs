//! `pyexec-bench deps`: an eval that needs numpy, end to end through a real server, with a cold and a warm
//! environment cache, against the original's approach measured in the same run: `pip install --no-cache-dir`
//! on every request, then the program.
//!
//! The baseline runs pip and CPython directly on the host (no container, no sandbox), so it is a lower bound of
//! what the original spends per request.
//!
//! The cache variants run on a server with warm pools off (each eval builds its sandbox and imports numpy); a
//! second server with the defaults measures the same eval once its warm pool (numpy already imported) has an idle
//! sandbox, waited for untimed before each request.

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
    /// Warm-cache executions (and as many from the warm pool).
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

    let server = ServerProcess::start(&binary, &[("PYEXEC_WARM_POOL", "false".into())]).await?;
    let pooled = ServerProcess::start(&binary, &[]).await?;
    let client = reqwest::Client::new();
    let (http, version) = (&client, version.as_str());
    let eval_at = |url: String| async move {
        let t = Instant::now();
        let r = http
            .post(format!("{url}/api/v1/eval"))
            .json(&serde_json::json!({"code": CODE, "python_version": version}))
            .send()
            .await?;
        let body: serde_json::Value = r.json().await?;
        if body["stdout"] != EXPECTED {
            bail!("the server answered {body}");
        }
        anyhow::Ok(t.elapsed())
    };
    let eval = || eval_at(server.url.clone());
    let eval_at = &eval_at;
    eprintln!("python {}; server {}; numpy from the package index", python.full_version, binary.display());

    let cold = eval().await.context("cold eval")?;
    // The pooled server's first numpy eval installs (or finds) the environment and creates its pool.
    eval_at(pooled.url.clone()).await.context("first eval on the pooled server")?;
    let mut warm = Vec::new();
    let mut pool = Vec::new();
    let mut pip = Vec::new();
    // Interleaved, so that both variants see the same machine and network.
    let per_round = args.warm.div_ceil(args.pip.max(1));
    for round in 0..args.pip.max(1) {
        if round < args.pip {
            pip.push(pip_per_request(&pip_python, scratch.path(), round)?);
        }
        for _ in 0..per_round.min(args.warm - warm.len()) {
            warm.push(eval().await?);
            until_numpy_pool_idle(&client, &pooled.url).await?;
            pool.push(eval_at(pooled.url.clone()).await?);
        }
    }
    drop(server);
    drop(pooled);

    let warm = stats(warm);
    let pool = stats(pool);
    println!("| variant | p50 ms | p95 ms |");
    println!("|---|---|---|");
    println!("| eval, cold cache (download, install, run) | {:.0} | - |", cold.as_secs_f64() * 1000.0);
    println!("| eval, warm cache (warm pools off) | {:.1} | {:.1} |", warm.p50, warm.p95);
    println!("| eval, warm pool ready (numpy imported ahead) | {:.1} | {:.1} |", pool.p50, pool.p95);
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
    targets.row("warm-pool numpy eval p50 <= 20 ms", format!("{:.1} ms", pool.p50), pool.p50 <= 20.0);
    let speedup = warm.p50 / pool.p50;
    targets.row(
        "warm pool >= 3x faster than the warm cache alone",
        format!("{speedup:.1}x ({:.1} -> {:.1} ms)", warm.p50, pool.p50),
        speedup >= 3.0,
    );
    if let Some(pip_p50) = pip_p50 {
        let ratio = pip_p50 / warm.p50;
        targets.row(">= 10x faster than pip per request", format!("{ratio:.1}x"), ratio >= 10.0);
    }
    targets.finish(args.check)
}

/// Waits until the server's pool for an environment with packages has an idle sandbox.
async fn until_numpy_pool_idle(client: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health: serde_json::Value = client.get(format!("{url}/health")).send().await?.json().await?;
        let pools = health["warm_pools"]["pools"].as_array().cloned().unwrap_or_default();
        if pools.iter().any(|p| p["serves"].as_str().unwrap_or("").contains(" + ") && p["idle"].as_u64() > Some(0)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the numpy pool did not get an idle sandbox within 60 s: {health}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
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
