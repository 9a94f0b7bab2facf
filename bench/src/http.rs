//! `pyexec-bench http`: the REST API against the sandbox alone and bare CPython, in the same run.
//!
//! For each client concurrency (1, 2, 8 by default) and each variant, the same number of trivial `print(1)`
//! executions: bare `python -I -c 'print(1)'`, `Sandbox::run` of it in this process, and `POST /api/v1/eval`
//! against a real `pyexec-apiserver` process. Variants alternate in two halves to spread the machine's noise.
//! Then the server's memory: idle after start, and its peak while a large archive (1 GiB by default) is streamed
//! to `/api/v1/exec/async`.

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
    Http,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Bare => "bare CPython",
            Variant::Sandbox => "sandbox alone",
            Variant::Http => "HTTP /api/v1/eval",
        }
    }
}

struct BenchContext {
    python: Interpreter,
    sandbox: Sandbox,
    client: reqwest::Client,
    url: String,
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
        Variant::Http => {
            let t = Instant::now();
            let r = ctx
                .client
                .post(format!("{}/api/v1/eval", ctx.url))
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
    let (idle_rss, _) = server.memory_mib();
    let ctx = Arc::new(BenchContext { python, sandbox, client: reqwest::Client::new(), url: server.url.clone() });
    eprintln!(
        "python {}; server {}; {} executions per level and variant",
        ctx.python.full_version,
        binary.display(),
        args.requests
    );

    for variant in [Variant::Bare, Variant::Sandbox, Variant::Http] {
        batch(&ctx, variant, 10, 2).await?;
    }
    println!("| concurrency | variant | p50 ms | p95 ms | executions/s | throughput vs bare |");
    println!("|---|---|---|---|---|---|");
    let mut http_p50_c1 = None;
    let mut http_rate_max = 0.0f64;
    for &c in &args.concurrency {
        let half = (args.requests / 2).max(1);
        let mut results: Vec<(Variant, Vec<Duration>, Duration)> = [Variant::Bare, Variant::Sandbox, Variant::Http]
            .into_iter()
            .map(|v| (v, Vec::new(), Duration::ZERO))
            .collect();
        for order in [[0, 1, 2], [2, 1, 0]] {
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
    let (after_rss, _) = server.memory_mib();
    drop(server);

    let mut upload = None;
    match upload_size_mb(args.upload_mb) {
        Ok(0) => {}
        Ok(mb) => upload = Some(upload_memory(&binary, mb).await?),
        Err(why) => eprintln!("SKIPPED: the upload memory check: {why}"),
    }

    let mut targets = Targets::new();
    if let Some(p50) = http_p50_c1 {
        targets.row("eval print(1) round trip p50 <= 30 ms", format!("{p50:.2} ms"), p50 <= 30.0);
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
