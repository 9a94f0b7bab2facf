//! `pyexec-bench http`: the REST API against the sandbox alone and bare CPython, in the same run.
//!
//! For each client concurrency (1, 2, 8 by default) and each variant, the same number of trivial `print(1)`
//! executions: bare `python -I -c 'print(1)'`, `Sandbox::run` of it in this process, and `POST /api/v1/eval`
//! against two real `pyexec-apiserver` processes, one with warm pools off (every sandbox built on demand) and one
//! with the defaults (warm pools on, sent requests as fast as they come). At concurrency 1 a fourth variant waits,
//! untimed, until the warm pool has an idle sandbox before each request: the latency of a warm start. Variants
//! alternate in two halves to spread the machine's noise. Then calls of `x + 1` in a session (its interpreter
//! already running) and the session's memory while idle, the memory of the warm pools (one idle sandbox and the
//! default pool, from `/health`), and the server's: idle after start, and its peak while a large archive (1 GiB by
//! default) is streamed to `/api/v1/exec/async`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use pyexec_embedded::{Discovery, InstallerConfig, Interpreter, Runner, RunnerSettings};
use pyexec_sandbox::{RunLimits, Sandbox, SandboxConfig};

use crate::server::{ServerProcess, server_binary};
use crate::stats::{Targets, bare_python, stats};

/// Options of `pyexec-bench http`.
#[derive(clap::Args)]
pub struct Args {
    /// Executions per concurrency level and variant.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Client concurrency levels.
    #[arg(long, value_delimiter = ',', default_value = "1,2,8")]
    concurrency: Vec<usize>,
    /// The server binary (default: `pyexec-apiserver` next to this binary).
    #[arg(long)]
    server: Option<PathBuf>,
    /// Size of the archive streamed in the memory check, MiB (0 skips the check).
    #[arg(long, default_value_t = 1024)]
    upload_mb: u64,
    /// Exit 1 when a target is missed.
    #[arg(long)]
    check: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    Sandbox,
    /// The server with warm pools off.
    HttpCold,
    /// The server with the defaults, requests back to back.
    Http,
    /// The server with the defaults, each request sent once an idle warm sandbox waits (concurrency 1 only).
    HttpWarm,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare CPython",
            Variant::Sandbox => "sandbox alone (cold)",
            Variant::HttpCold => "HTTP /api/v1/eval, warm pools off",
            Variant::Http => "HTTP /api/v1/eval, warm pools on, back to back",
            Variant::HttpWarm => "HTTP /api/v1/eval, warm pool ready",
        }
    }
}

struct BenchContext {
    python: Interpreter,
    sandbox: Sandbox,
    client: reqwest::Client,
    /// The server with the defaults (warm pools on).
    url: String,
    /// The server with warm pools off.
    cold_url: String,
}

/// The default pool's entry in a server's `/health` (the one kept warm without demand).
async fn default_pool(ctx: &BenchContext) -> anyhow::Result<serde_json::Value> {
    let health: serde_json::Value = ctx.client.get(format!("{}/health", ctx.url)).send().await?.json().await?;
    let pools = health["warm_pools"]["pools"].as_array().cloned().unwrap_or_default();
    pools
        .into_iter()
        .filter(|p| !p["serves"].as_str().unwrap_or("").contains(" + "))
        .max_by_key(|p| p["target"].as_u64())
        .ok_or_else(|| anyhow::anyhow!("the server reports no warm pool: {health}"))
}

/// Waits until the default pool has an idle sandbox.
async fn until_warm(ctx: &BenchContext) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while default_pool(ctx).await?["idle"].as_u64().unwrap_or(0) == 0 {
        if Instant::now() > deadline {
            bail!("the warm pool did not refill within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

async fn one(ctx: &BenchContext, variant: Variant) -> anyhow::Result<Duration> {
    match variant {
        Variant::Bare => {
            let exe = ctx.python.executable.clone();
            tokio::task::spawn_blocking(move || bare_python(&exe)).await?
        }
        Variant::Sandbox => {
            let mut spec = ctx.python.run_spec(vec!["-I".into(), "-c".into(), "print(1)".into()]);
            spec.limits = RunLimits { timeout: Duration::from_secs(30), ..RunLimits::default() };
            let t = Instant::now();
            let out = ctx.sandbox.run(spec, None, Default::default()).await?;
            if out.stdout.bytes != b"1\n" {
                bail!("sandboxed python printed {:?}", out.stdout);
            }
            Ok(t.elapsed())
        }
        Variant::Http | Variant::HttpCold | Variant::HttpWarm => {
            if variant == Variant::HttpWarm {
                until_warm(ctx).await?;
            }
            let url = if variant == Variant::HttpCold { &ctx.cold_url } else { &ctx.url };
            let t = Instant::now();
            let r = ctx
                .client
                .post(format!("{url}/api/v1/eval"))
                .json(&serde_json::json!({"code": "print(1)"}))
                .send()
                .await?;
            let status = r.status();
            let body: serde_json::Value = r.json().await?;
            if status != 200 || body["stdout"] != "1\n" {
                bail!("the API answered {status}: {body}");
            }
            Ok(t.elapsed())
        }
    }
}

/// Runs `n` executions with `concurrency` workers; returns latencies and wall time.
async fn batch(
    ctx: &Arc<BenchContext>,
    variant: Variant,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let started = Instant::now();
    let latencies = futures::stream::iter(0..n)
        .map(|_| {
            let ctx = ctx.clone();
            async move { one(&ctx, variant).await }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((latencies, started.elapsed()))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let binary = server_binary(args.server.as_deref())?;
    let state = tempfile::tempdir()?;
    let runner = Runner::new(
        SandboxConfig::new(state.path().join("r")),
        &Discovery::everywhere(),
        RunnerSettings::default(),
        InstallerConfig::new(state.path().join("environments")),
    )
    .await?;
    let python = runner.interpreters().get(None).map_err(anyhow::Error::msg)?.clone();
    let sandbox = Sandbox::new(SandboxConfig::new(state.path().join("s"))).await?;
    let server = ServerProcess::start(&binary, &[("PYEXEC_MAX_QUEUE", "10000".into())]).await?;
    let cold_server =
        ServerProcess::start(&binary, &[("PYEXEC_MAX_QUEUE", "10000".into()), ("PYEXEC_WARM_POOL", "false".into())])
            .await?;
    let (idle_rss, _) = server.memory_mib();
    let ctx = Arc::new(BenchContext {
        python,
        sandbox,
        client: reqwest::Client::new(),
        url: server.url.clone(),
        cold_url: cold_server.url.clone(),
    });
    until_warm(&ctx).await?;
    let pool = default_pool(&ctx).await?;
    let pool_memory = pool["idle_memory_bytes"].as_u64().unwrap_or(0) as f64 / f64::from(1 << 20);
    let pool_idle = pool["idle"].as_u64().unwrap_or(0);
    eprintln!(
        "python {}; server {}; {} executions per level and variant",
        ctx.python.full_version,
        binary.display(),
        args.requests
    );

    for variant in [Variant::Bare, Variant::Sandbox, Variant::HttpCold, Variant::Http] {
        batch(&ctx, variant, 10, 2).await?;
    }
    println!("| concurrency | variant | p50 ms | p95 ms | executions/s | throughput vs bare |");
    println!("|---|---|---|---|---|---|");
    let mut http_p50_c1 = None;
    let mut http_rate_max = 0.0f64;
    let (mut bare_p50, mut cold_p50, mut warm_p50) = (f64::NAN, f64::NAN, f64::NAN);
    let (mut cold_rate_c8, mut warm_rate_c8) = (f64::NAN, f64::NAN);
    for &c in &args.concurrency {
        let half = (args.requests / 2).max(1);
        let mut variants = vec![Variant::Bare, Variant::Sandbox, Variant::HttpCold, Variant::Http];
        if c == 1 {
            variants.push(Variant::HttpWarm);
        }
        let mut results: Vec<(Variant, Vec<Duration>, Duration)> =
            variants.into_iter().map(|v| (v, Vec::new(), Duration::ZERO)).collect();
        let forward: Vec<usize> = (0..results.len()).collect();
        let backward: Vec<usize> = forward.iter().rev().copied().collect();
        for order in [forward, backward] {
            for i in order {
                let (lat, wall) = batch(&ctx, results[i].0, half, c).await?;
                results[i].1.extend(lat);
                results[i].2 += wall;
            }
        }
        let bare_rate = results[0].1.len() as f64 / results[0].2.as_secs_f64();
        for (variant, lat, wall) in results {
            let n = lat.len();
            let s = stats(lat);
            let rate = n as f64 / wall.as_secs_f64();
            println!(
                "| {c} | {} | {:.2} | {:.2} | {:.1} | {:.2} |",
                variant.name(),
                s.p50,
                s.p95,
                rate,
                rate / bare_rate
            );
            match (variant, c) {
                (Variant::Bare, 1) => bare_p50 = s.p50,
                (Variant::HttpCold, 1) => cold_p50 = s.p50,
                (Variant::HttpWarm, 1) => warm_p50 = s.p50,
                (Variant::HttpCold, 8) => cold_rate_c8 = rate,
                (Variant::Http, 8) => warm_rate_c8 = rate,
                _ => {}
            }
            if variant == Variant::Http {
                if c == 1 {
                    http_p50_c1 = Some(s.p50);
                }
                if c == 8 || http_rate_max == 0.0 {
                    http_rate_max = http_rate_max.max(rate);
                }
            }
        }
    }
    let session = session_calls(&ctx, args.requests).await?;
    let (after_rss, _) = server.memory_mib();
    drop(server);
    drop(cold_server);

    let mut upload = None;
    match upload_size_mb(args.upload_mb) {
        Ok(0) => {}
        Ok(mb) => upload = Some(upload_memory(&binary, mb).await?),
        Err(why) => eprintln!("SKIPPED: the upload memory check: {why}"),
    }

    println!();
    println!(
        "warm pool memory: {pool_idle} idle sandbox(es) of the default pool hold {pool_memory:.1} MiB ({:.1} MiB each)",
        pool_memory / pool_idle.max(1) as f64
    );
    let mut targets = Targets::new();
    if let Some(p50) = http_p50_c1 {
        targets.row("eval print(1) round trip p50 <= 30 ms (back to back)", format!("{p50:.2} ms"), p50 <= 30.0);
    }
    if warm_p50.is_finite() {
        targets.row("warm eval print(1) p50 <= 5 ms", format!("{warm_p50:.2} ms"), warm_p50 <= 5.0);
        let speedup = cold_p50 / warm_p50;
        targets.row(
            "warm eval >= 3x faster than with pools off",
            format!("{speedup:.1}x ({cold_p50:.2} -> {warm_p50:.2} ms)"),
            speedup >= 3.0,
        );
        targets.row(
            "warm eval p50 below bare CPython start-up",
            format!("{warm_p50:.2} vs {bare_p50:.2} ms"),
            warm_p50 < bare_p50,
        );
    }
    if cold_rate_c8.is_finite() && warm_rate_c8.is_finite() {
        let ratio = warm_rate_c8 / cold_rate_c8;
        targets.row(
            "throughput at concurrency 8 with pools >= without",
            format!("{warm_rate_c8:.1}/s vs {cold_rate_c8:.1}/s ({ratio:.2}x)"),
            ratio >= 0.95,
        );
    }
    let (session_lat, session_memory) = session;
    let session_stats = stats(session_lat);
    targets.row(
        "session call `x + 1` p50 <= 5 ms (interpreter running)",
        format!(
            "{:.2} ms (p95 {:.2}); warm eval print(1) {warm_p50:.2} ms, {:.1}x the session call",
            session_stats.p50,
            session_stats.p95,
            warm_p50 / session_stats.p50
        ),
        session_stats.p50 <= 5.0,
    );
    match session_memory {
        Some(bytes) => {
            println!("idle session memory: {:.1} MiB (its cgroup, after `x = 1`)", bytes as f64 / f64::from(1 << 20))
        }
        None => println!("idle session memory: not measured (no cgroups on this host)"),
    }
    targets.row("trivial executions/s at concurrency 8 >= 40", format!("{http_rate_max:.1}/s"), http_rate_max >= 40.0);
    targets.row(
        "idle RSS <= 30 MiB",
        format!("{idle_rss:.1} MiB after start ({after_rss:.1} MiB after the load)"),
        idle_rss <= 30.0,
    );
    if let Some((mb, before, peak)) = upload {
        let grown = peak - before;
        targets.row(
            &format!("{mb} MiB upload raises RSS by <= 64 MiB"),
            format!("+{grown:.1} MiB ({before:.1} -> peak {peak:.1})"),
            grown <= 64.0,
        );
    }
    targets.finish(args.check)
}

/// `requests` calls of `x + 1` in one session, one after another, and the session's memory while idle.
async fn session_calls(ctx: &BenchContext, requests: usize) -> anyhow::Result<(Vec<Duration>, Option<u64>)> {
    let url = &ctx.url;
    let created: serde_json::Value =
        ctx.client.post(format!("{url}/api/v1/sessions")).json(&serde_json::json!({})).send().await?.json().await?;
    let Some(id) = created["session_id"].as_str() else { bail!("no session: {created}") };
    let call = |code: &'static str| {
        ctx.client.post(format!("{url}/api/v1/sessions/{id}/eval")).json(&serde_json::json!({"code": code})).send()
    };
    call("x = 1").await?.error_for_status()?;
    for _ in 0..10 {
        call("x + 1").await?.error_for_status()?;
    }
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let answer: serde_json::Value = call("x + 1").await?.json().await?;
        latencies.push(t.elapsed());
        if answer["result"] != "2" {
            bail!("a session call answered {answer}");
        }
    }
    let info: serde_json::Value = ctx.client.get(format!("{url}/api/v1/sessions/{id}")).send().await?.json().await?;
    ctx.client.delete(format!("{url}/api/v1/sessions/{id}")).send().await?;
    Ok((latencies, info["memory_used_bytes"].as_u64()))
}

/// The archive size for the memory check: the asked size, or less when the temporary directory (where the
/// server unpacks it) cannot hold it twice over, since a disk filled by a benchmark breaks everything after it.
fn upload_size_mb(asked: u64) -> Result<u64, String> {
    if asked == 0 {
        return Ok(0);
    }
    let tmp = std::env::temp_dir();
    let stat = rustix::fs::statvfs(&tmp).map_err(|e| format!("statvfs {}: {e}", tmp.display()))?;
    let free_mb = stat.f_bavail.saturating_mul(stat.f_frsize) >> 20;
    let fits = free_mb / 2;
    const SMALLEST_MB: u64 = 64;
    if fits >= asked {
        Ok(asked)
    } else if fits >= SMALLEST_MB {
        eprintln!("only {free_mb} MiB free in {}: the upload check uses {fits} MiB instead of {asked}", tmp.display());
        Ok(fits)
    } else {
        Err(format!("only {free_mb} MiB free in {}, less than twice {SMALLEST_MB} MiB", tmp.display()))
    }
}

/// Streams a tar holding one `mb` MiB file to a fresh server and reports (mb, RSS before, peak RSS).
async fn upload_memory(binary: &Path, mb: u64) -> anyhow::Result<(u64, f64, f64)> {
    let limit = (mb + 64).to_string();
    let server =
        ServerProcess::start(binary, &[("PYEXEC_MAX_UPLOAD_MB", limit.clone()), ("PYEXEC_MAX_UNPACKED_MB", limit)])
            .await?;
    let (before, _) = server.memory_mib();
    let size = mb << 20;
    let main = b"print('uploaded')\n";
    let mut head = header("main.py", main.len() as u64);
    head.extend_from_slice(main);
    head.resize(head.len() + (512 - main.len() % 512) % 512, 0);
    head.extend(header("big.bin", size));
    let chunk = bytes::Bytes::from(vec![0u8; 256 << 10]);
    let chunks = size / chunk.len() as u64;
    let total = head.len() as u64 + size + 1024;
    let body = futures::stream::iter(
        std::iter::once(bytes::Bytes::from(head))
            .chain((0..chunks).map(move |_| chunk.clone()))
            .chain(std::iter::once(bytes::Bytes::from(vec![0u8; 1024])))
            .map(Ok::<_, std::io::Error>),
    );
    let part =
        reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body), total).file_name("code.tar");
    let meta = serde_json::json!({"entrypoint": "main.py", "config": {"disk_mb": mb + 64, "memory_mb": 2 * mb + 256}});
    let form = reqwest::multipart::Form::new().part("tar", part).text("metadata", meta.to_string());
    let t = Instant::now();
    let r = reqwest::Client::new().post(format!("{}/api/v1/exec/async", server.url)).multipart(form).send().await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    if status != 202 {
        bail!("the upload was refused with {status}: {body}");
    }
    eprintln!("{mb} MiB uploaded and unpacked in {:.1} s", t.elapsed().as_secs_f64());
    let (_, peak) = server.memory_mib();
    if let Some(id) = body["execution_id"].as_str() {
        let _ = reqwest::Client::new().delete(format!("{}/api/v1/executions/{id}", server.url)).send().await;
    }
    Ok((mb, before, peak))
}

/// A ustar header for a regular file.
fn header(name: &str, size: u64) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..107].copy_from_slice(b"0000644");
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}
