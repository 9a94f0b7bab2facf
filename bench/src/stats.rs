//! Percentiles and the bare-CPython baseline shared by the benchmarks.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

/// p50 and p95 of a sample, milliseconds.
pub struct Stats {
    pub p50: f64,
    pub p95: f64,
}

/// Percentiles of `samples` (must not be empty).
pub fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    Stats { p50: at(0.5), p95: at(0.95) }
}

/// One bare `python -I -c 'print(1)'`: fork, exec, wait.
pub fn bare_python(python: &Path) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = Command::new(python).args(["-I", "-c", "print(1)"]).env_clear().stdin(Stdio::null()).output()?;
    let elapsed = t.elapsed();
    if out.stdout != b"1\n" {
        bail!("bare python printed {:?}", out.stdout);
    }
    Ok(elapsed)
}

/// The "target | measured | met" table that ends a benchmark's output.
pub struct Targets {
    missed: usize,
}

impl Targets {
    /// Prints the table's header.
    pub fn new() -> Targets {
        println!();
        println!("| target | measured | met |");
        println!("|---|---|---|");
        Targets { missed: 0 }
    }

    /// One target: what it is, what was measured, whether it was met.
    pub fn row(&mut self, name: &str, value: String, ok: bool) {
        println!("| {name} | {value} | {} |", if ok { "yes" } else { "NO" });
        if !ok {
            self.missed += 1;
        }
    }

    /// With `check`, fails when a target was missed.
    pub fn finish(self, check: bool) -> anyhow::Result<()> {
        if check && self.missed > 0 {
            bail!("{} target(s) missed", self.missed);
        }
        Ok(())
    }
}
