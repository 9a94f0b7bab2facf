//! 500 runs with every kind of ending (success, exception, exit code, timeout, out-of-memory, kill, network), then
//! nothing may be left: no process, cgroup, mount, descriptor, zombie or temporary file.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use pyexec_core::{ExecutionStatus, Policy};
use tokio_util::sync::CancellationToken;

const RUNS: usize = 500;
const CONCURRENCY: usize = 4;

#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    fds: usize,
    mounts: usize,
    zombies: Vec<String>,
    run_cgroups: Vec<PathBuf>,
    state_entries: Vec<String>,
    pasta: usize,
}

fn snapshot() -> Snapshot {
    let count = |dir: &str| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    let mut pasta = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some((comm, rest)) = stat.rsplit_once(") ").map(|(a, b)| (a.to_owned(), b.to_owned())) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&me.as_str()) {
            zombies.push(stat.clone());
        }
        if comm.ends_with("(pasta") || comm.ends_with("(passt") {
            pasta += 1;
        }
    }
    let mut state_entries: Vec<String> = std::fs::read_dir(state_dir())
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    state_entries.sort();
    Snapshot {
        fds: count("/proc/self/fd"),
        mounts: std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count(),
        zombies,
        run_cgroups: run_cgroups(),
        state_entries,
        pasta,
    }
}

/// Run cgroups of this process anywhere under /sys/fs/cgroup.
fn run_cgroups() -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, prefix: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() || path.is_symlink() {
                continue;
            }
            if entry.file_name().to_string_lossy().starts_with(prefix) {
                out.push(path);
            } else if depth > 0 {
                walk(&path, depth - 1, prefix, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), 6, &format!("run-{}-", std::process::id()), &mut out);
    out
}

/// The program of run `i`, its metadata, and the status it must end with.
fn case(i: usize, network: bool) -> (&'static str, &'static str, ExecutionStatus) {
    match i % 50 {
        7 => ("import time\ntime.sleep(30)", r#"{"config":{"timeout_seconds":1}}"#, ExecutionStatus::Failed),
        13 => ("b = bytearray(300 << 20)", r#"{"config":{"memory_mb":64}}"#, ExecutionStatus::Completed),
        21 if network => (
            "import socket\nsocket.getaddrinfo('localhost', 80)",
            r#"{"config":{"network_disabled":false}}"#,
            ExecutionStatus::Completed,
        ),
        29 => (
            "import os\nfor _ in range(3):\n    if os.fork() == 0:\n        import time; time.sleep(60)\nprint('bye')",
            "{}",
            ExecutionStatus::Completed,
        ),
        33 => ("import time\nprint('x', flush=True)\ntime.sleep(60)", "{}", ExecutionStatus::Killed),
        n if n % 3 == 0 => ("raise ValueError('boom')", "{}", ExecutionStatus::Completed),
        n if n % 3 == 1 => {
            ("import sys\nprint(sys.stdin.read())\nsys.exit(3)", r#"{"stdin":"hello"}"#, ExecutionStatus::Completed)
        }
        _ => ("print(1)", "{}", ExecutionStatus::Completed),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_runs_leave_nothing_behind() {
    let runner = runner().await;
    let network = runner.isolation().network_egress.starts_with("pasta");
    let oom_expected = full_isolation().await;
    // One run first, so that lazily created state (the runtime's descriptors, the state directory) exists.
    assert_eq!(exec("print(1)", "{}").await.exit_code, 0);
    // Warm pools hold sandboxes between runs by design: compare with them emptied, and let them refill while the
    // runs go (so that runs claim warm sandboxes and their leftovers would show).
    let pool = runner.warm_pool();
    if let Some(pool) = pool {
        pool.drain().await;
    }
    let before = snapshot();
    if let Some(pool) = pool {
        pool.resume();
    }
    let warm_runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));

    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..RUNS {
        while tasks.len() >= CONCURRENCY {
            tasks.join_next().await.unwrap().unwrap();
        }
        let (code, metadata, want) = case(i, network);
        let warm_runs = warm_runs.clone();
        tasks.spawn(async move {
            let mut meta: pyexec_core::Metadata = serde_json::from_str(metadata).unwrap();
            meta.entrypoint = Some("main.py".into());
            let spec = Policy::default().spec_from_metadata(meta).unwrap();
            let dir = workspace(&[("main.py", code)]);
            let cancel = CancellationToken::new();
            if want == ExecutionStatus::Killed {
                let c = cancel.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    c.cancel();
                });
            }
            let ran = runner.run_reporting("exe_leak", &spec, None, &ws_path(&dir), None, cancel).await;
            if ran.warm {
                warm_runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let r = ran.result;
            assert_eq!(r.status, want, "run {i}: {r:?}");
            if i % 50 == 13 && oom_expected {
                assert!(r.oom_killed, "run {i}: {r:?}");
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let warm_runs = warm_runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!(
        "{RUNS} runs in {:.1} s (network cases: {network}; {warm_runs} started warm)",
        started.elapsed().as_secs_f64()
    );
    if let Some(pool) = pool {
        assert!(warm_runs > 0, "with warm pools on, some runs must have started warm");
        pool.drain().await;
    }

    // A finished run's cgroups are removed (and its uid returned) just after its result: give that a moment.
    let mut after = snapshot();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while after != before && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        after = snapshot();
    }
    assert_eq!(after, before, "something leaked");
    assert!(sandbox_processes(None).is_empty(), "{:?}", sandbox_processes(None));
}
