//! `pyexec-bench sandbox`: the cost of the sandbox, as the difference and ratio between a sandboxed
//! `python -I -c 'print(1)'` and the same command started bare, measured interleaved in the same run (these
//! machines are noisy: only same-run comparisons mean anything). Also reports a whole embedded execution
//! (workspace copy, result building) against the same baseline, started cold and from a warm pool (an idle warm
//! sandbox waits, untimed, before each warm run).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use pyexec_core::{EvalRequest, Policy};
use pyexec_embedded::{Discovery, InstallerConfig, Runner, RunnerSettings, WarmSettings};
use pyexec_sandbox::{RunLimits, Sandbox, SandboxConfig};

use crate::stats::{bare_python, stats};

/// Options of `pyexec-bench sandbox`.
#[derive(clap::Args)]
pub struct Args {
    /// Measured iterations of each variant (after 10 warm-up rounds).
    #[arg(long, default_value_t = 200)]
    runs: usize,
    /// Fail (exit 1) when the sandbox's p50 overhead exceeds this many milliseconds.
    #[arg(long)]
    max_overhead_ms: Option<f64>,
    /// Leave the host's cgroup mount options alone (see docs/security.md).
    #[arg(long)]
    no_favor_dynmods: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let config = |name: &str| SandboxConfig {
        favor_dynmods: !args.no_favor_dynmods,
        ..SandboxConfig::new(state.path().join(name))
    };
    let installer = InstallerConfig::new(state.path().join("environments"));
    let runner = Runner::new(config("runner"), &Discovery::everywhere(), RunnerSettings::default(), installer)
        .await
        .context("starting the embedded runner")?;
    let sandbox = Sandbox::new(config("sandbox")).await?;
    let installer = InstallerConfig::new(state.path().join("environments-warm"));
    let pooled = Runner::new(config("pooled"), &Discovery::everywhere(), RunnerSettings::default(), installer)
        .await
        .context("starting the embedded runner with warm pools")?
        .with_warm_pool(WarmSettings::default());
    let python = runner.interpreters().get(None).map_err(anyhow::Error::msg)?.clone();
    eprintln!(
        "python {} at {}; isolation {:?}; cgroups {}; {} runs per variant",
        python.full_version,
        python.executable.display(),
        sandbox.report().level,
        sandbox.report().cgroups,
        args.runs
    );

    let bare = || bare_python(&python.executable);
    let sandboxed = || async {
        let mut spec = python.run_spec(vec!["-I".into(), "-c".into(), "print(1)".into()]);
        spec.env.push(("LANG".into(), "C.UTF-8".into()));
        spec.limits = RunLimits { timeout: Duration::from_secs(30), ..RunLimits::default() };
        let t = Instant::now();
        let out = sandbox.run(spec, None, Default::default()).await?;
        let elapsed = t.elapsed();
        if out.stdout.bytes != b"1\n" {
            bail!("sandboxed python printed {:?}", out.stdout);
        }
        anyhow::Ok(elapsed)
    };
    let execution = |runner: &'static Runner, warm: bool| async move {
        let req = EvalRequest { code: Some("print(1)".into()), ..Default::default() };
        let (spec, files) = Policy::default().spec_from_eval(req)?;
        let dir = tempfile::tempdir()?;
        let ws = dir.path().join("ws");
        pyexec_core::workspace::create_dir(&ws)?;
        pyexec_core::workspace::write_files(&files, &ws)?;
        if warm && !runner.prewarm(&spec, &ws, Duration::from_secs(30)).await {
            bail!("no warm sandbox became ready");
        }
        let t = Instant::now();
        let r = runner.run_reporting("exe_bench", &spec, None, &ws, None, Default::default()).await;
        let elapsed = t.elapsed();
        if r.result.stdout != "1\n" || r.warm != warm {
            bail!("execution printed {:?} (warm: {}, wanted {warm})", r.result, r.warm);
        }
        anyhow::Ok(elapsed)
    };
    // The runners live for the whole benchmark.
    let runner: &'static Runner = Box::leak(Box::new(runner));
    let pooled: &'static Runner = Box::leak(Box::new(pooled));

    for _ in 0..10 {
        bare()?;
        sandboxed().await?;
        execution(runner, false).await?;
        execution(pooled, true).await?;
    }
    let (mut b, mut s, mut e, mut w) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Interleaved, so that a noisy neighbour hurts every variant alike.
    for _ in 0..args.runs {
        b.push(bare()?);
        s.push(sandboxed().await?);
        e.push(execution(runner, false).await?);
        w.push(execution(pooled, true).await?);
    }
    let (b, s, e, w) = (stats(b), stats(s), stats(e), stats(w));
    println!("| variant | p50 ms | p95 ms | p50 overhead vs bare | p50 ratio |");
    println!("|---|---|---|---|---|");
    println!("| bare `python -I -c 'print(1)'` | {:.2} | {:.2} | - | 1.00 |", b.p50, b.p95);
    for (name, x) in [
        ("sandboxed, same command", &s),
        ("embedded execution of `print(1)` (eval endpoint path), cold", &e),
        ("embedded execution of `print(1)`, warm sandbox from the pool", &w),
    ] {
        println!("| {name} | {:.2} | {:.2} | +{:.2} ms | {:.2} |", x.p50, x.p95, x.p50 - b.p50, x.p50 / b.p50);
    }
    if let Some(max) = args.max_overhead_ms {
        let overhead = s.p50 - b.p50;
        if overhead > max {
            bail!("sandbox overhead {overhead:.2} ms exceeds {max} ms");
        }
        eprintln!("sandbox overhead {overhead:.2} ms is within {max} ms");
    }
    Ok(())
}
