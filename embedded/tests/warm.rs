//! Warm pools against the real sandbox and CPython: pooled runs share nothing (uid, files, random state, address
//! layout), get exactly their own work (files, arguments, environment, standard input), keep their limits, count
//! their timeout from the hand-over, and runs that no warm sandbox can serve start cold. The other suites also
//! run against pooled runs (`PYEXEC_TEST_WARM=1`, see `common`).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use pyexec_core::{ExecutionResult, ExecutionSpec, ExecutionStatus, Policy};
use pyexec_embedded::{Runner, WarmSettings};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

static POOLED: OnceCell<Runner> = OnceCell::const_new();

/// A runner of its own, with warm pools on, whatever the mode of the other suites.
async fn pooled() -> &'static Runner {
    POOLED
        .get_or_init(|| async {
            let dir = state_dir().join("pooled");
            Runner::new(
                pyexec_sandbox::SandboxConfig::new(dir.join("sandbox")),
                &pyexec_embedded::Discovery::everywhere(),
                pyexec_embedded::RunnerSettings::default(),
                pyexec_embedded::InstallerConfig::new(dir.join("environments")),
            )
            .await
            .expect("the sandbox works on this machine")
            .with_warm_pool(WarmSettings { build_parallelism: 2, ..WarmSettings::default() })
        })
        .await
}

/// `/exec` metadata as a spec. Each test asks for a disk size of its own: that makes a kind of request of its
/// own, so tests running side by side never claim each other's warm sandboxes.
fn exec_spec(metadata: &str) -> ExecutionSpec {
    let mut meta: pyexec_core::Metadata = serde_json::from_str(metadata).unwrap();
    meta.entrypoint.get_or_insert_with(|| "main.py".into());
    Policy::default().spec_from_metadata(meta).unwrap()
}

/// Runs `files` with `spec`, after waiting for a warm sandbox; returns the result and whether it started warm.
async fn run_warm(files: &[(&str, &str)], spec: &ExecutionSpec) -> (ExecutionResult, bool) {
    let runner = pooled().await;
    let dir = workspace(files);
    assert!(
        runner.prewarm(spec, &ws_path(&dir), Duration::from_secs(60)).await,
        "a warm sandbox becomes ready: {:?}",
        runner.warm_pool().map(|p| p.stats())
    );
    let ran = runner.run_reporting("exe_warm", spec, None, &ws_path(&dir), None, CancellationToken::new()).await;
    (ran.result, ran.warm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_runs_share_no_identity_files_random_state_or_layout() {
    let code = HOST_UID_PRELUDE.to_owned()
        + r#"
import os, random
print("seen", sorted(os.listdir("/work")), sorted(os.listdir("/tmp")))
open("/work/left-behind", "w").write("secret")
open("/tmp/left-behind", "w").write("secret")
print("random", random.random(), random.getrandbits(64))
print("hash", hash("python-executor"))
maps = open("/proc/self/maps").read().splitlines()
print("layout", [l.split()[0] for l in maps if "[stack]" in l or "[heap]" in l or l.endswith("python3")][:3])
"#;
    let spec = exec_spec(r#"{"config":{"disk_mb":101}}"#);
    let mut uids = HashSet::new();
    let mut lines: Vec<HashSet<String>> = vec![HashSet::new(); 3];
    for _ in 0..4 {
        let (r, warm) = run_warm(&[("main.py", &code)], &spec).await;
        assert!(warm, "the run claimed a warm sandbox");
        assert_eq!(r.exit_code, 0, "{r:?}");
        let pick = |prefix: &str| r.stdout.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_owned();
        assert_eq!(pick("seen"), "seen ['main.py'] []", "nothing of an earlier run is visible");
        uids.insert(host_uid_of(&r.stdout).expect("the run printed its host uid"));
        for (set, prefix) in lines.iter_mut().zip(["random", "hash", "layout"]) {
            set.insert(pick(prefix));
        }
    }
    if full_isolation().await {
        assert_eq!(uids.len(), 4, "every pooled run has its own host uid: {uids:?}");
    }
    for (set, what) in lines.iter().zip(["random state", "hash seed", "address layout"]) {
        assert_eq!(set.len(), 4, "every pooled run has its own {what}: {set:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_work_is_handed_over_whole() {
    let code = r#"
import os, sys
print(sys.argv)
print(os.environ["GREETING"], os.environ.get("PYEXEC_CONTROL_FD"), os.environ.get("PYEXEC_RESULT_FD"))
print(open("pkg/data.csv").read().split(), os.readlink("alias.py"), oct(os.stat("run.sh").st_mode & 0o777))
data = sys.stdin.buffer.read()
print(len(data), data[:5], data[-5:])
for fd in (3, 4):
    try:
        os.fstat(fd)
        print("fd", fd, "open")
    except OSError:
        print("fd", fd, "closed")
print(os.getcwd(), sys.path[0], __name__, __file__)
"#;
    let runner = pooled().await;
    let mut spec =
        exec_spec(r#"{"script_args":["one","two words"],"env_vars":["GREETING=hello"],"config":{"disk_mb":102}}"#);
    let stdin: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    spec.stdin = Some(stdin.clone());
    let dir = workspace(&[("main.py", code), ("pkg/data.csv", "a,b\n1,2"), ("run.sh", "#!/bin/sh\n")]);
    let ws = ws_path(&dir);
    std::os::unix::fs::symlink("main.py", ws.join("alias.py")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(ws.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(runner.prewarm(&spec, &ws, Duration::from_secs(60)).await);
    let ran = runner.run_reporting("exe_work", &spec, None, &ws, None, CancellationToken::new()).await;
    assert!(ran.warm);
    let r = ran.result;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let want = format!(
        "['/work/main.py', 'one', 'two words']\nhello None None\n['a,b', '1,2'] main.py 0o755\n\
         200000 b'abcde' b'{tail}'\nfd 3 closed\nfd 4 closed\n/work /work __main__ /work/main.py\n",
        tail = &stdin[stdin.len() - 5..],
    );
    assert_eq!(r.stdout, want, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eval_results_and_tracebacks_match_the_cold_path() {
    let runner = pooled().await;
    let cases = [
        ("x = 41\nx + 1", true),
        ("print('out')\n1 / 0", true),
        ("import sys\nsys.exit(3)", true),
        ("def f(:\n  pass", true),
        ("print('plain')\n'not evaluated'", false),
    ];
    for (code, evaluate) in cases {
        let body = serde_json::json!({"code": code, "eval_last_expr": evaluate}).to_string();
        let (mut spec, files) = Policy::default().spec_from_eval(serde_json::from_str(&body).unwrap()).unwrap();
        spec.limits.disk_mb = 103;
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        pyexec_core::workspace::create_dir(&ws).unwrap();
        pyexec_core::workspace::write_files(&files, &ws).unwrap();
        // The same request cold (a runner without pools) and warm.
        let cold = common::runner().await;
        let cold_ran = cold.run_reporting("exe_cold", &spec, None, &ws, None, CancellationToken::new()).await;
        assert!(runner.prewarm(&spec, &ws, Duration::from_secs(60)).await);
        let warm_ran = runner.run_reporting("exe_warm", &spec, None, &ws, None, CancellationToken::new()).await;
        assert!(warm_ran.warm);
        let (c, w) = (cold_ran.result, warm_ran.result);
        assert_eq!(
            (&c.status, c.exit_code, &c.stdout, &c.stderr, &c.result, &c.error),
            (&w.status, w.exit_code, &w.stdout, &w.stderr, &w.result, &w.error),
            "{code:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeout_counts_from_the_hand_over_and_limits_are_the_requests() {
    let runner = pooled().await;
    let spec = exec_spec(r#"{"config":{"timeout_seconds":2,"disk_mb":104}}"#);
    let dir = workspace(&[("main.py", "")]);
    assert!(runner.prewarm(&spec, &ws_path(&dir), Duration::from_secs(60)).await);
    // The sandbox has been idle longer than the run's timeout; the run itself takes half of it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (r, warm) = run_warm(&[("main.py", "import time\ntime.sleep(1)\nprint('done')")], &spec).await;
    assert!(warm);
    assert_eq!((r.status, r.stdout.as_str()), (ExecutionStatus::Completed, "done\n"), "{r:?}");
    let (r, warm) = run_warm(&[("main.py", "import time\nprint('before', flush=True)\ntime.sleep(30)")], &spec).await;
    assert!(warm);
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 124), "{r:?}");
    assert_eq!(r.error.as_deref(), Some("execution timeout after 2s"));
    if full_isolation().await {
        let spec = exec_spec(r#"{"config":{"memory_mb":64,"disk_mb":104}}"#);
        let (r, warm) = run_warm(&[("main.py", "b = bytearray(200 * 1024 * 1024)\nprint('allocated')")], &spec).await;
        assert!(warm);
        assert_eq!((r.exit_code, r.oom_killed), (137, true), "the claimed run got its 64 MB limit: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_no_warm_sandbox_can_serve_start_cold() {
    let runner = pooled().await;
    let cold_cases = [
        r#"{"pre_commands":["true"]}"#,
        r#"{"env_vars":["PYTHONHASHSEED=7"]}"#,
        r#"{"env_vars":["LD_PRELOAD="]}"#,
        r#"{"entrypoint":"missing.py"}"#,
    ];
    for metadata in cold_cases {
        let spec = exec_spec(metadata);
        let dir =
            workspace(&[("main.py", "import os\nprint(hash('a') == hash('a'), os.environ.get('PYTHONHASHSEED'))")]);
        let ran = runner.run_reporting("exe_cold", &spec, None, &ws_path(&dir), None, CancellationToken::new()).await;
        assert!(!ran.warm, "{metadata} runs cold");
        if metadata.contains("PYTHONHASHSEED") {
            assert_eq!(ran.result.stdout, "True 7\n", "the interpreter started with the request's seed");
        }
        if metadata.contains("missing") {
            assert_eq!(ran.result.exit_code, 2, "the interpreter's own answer: {:?}", ran.result);
            assert!(ran.result.stderr.contains("can't open file"), "{:?}", ran.result);
        }
    }
    // A large workspace is copied in by the kernel instead of being handed over.
    let big = "#".repeat(9 << 20);
    let spec = exec_spec(r#"{"config":{"disk_mb":105}}"#);
    let dir = workspace(&[("main.py", "print(len(open('big.txt').read()))"), ("big.txt", &big)]);
    assert!(runner.prewarm(&spec, &ws_path(&dir), Duration::from_secs(60)).await);
    let ran = runner.run_reporting("exe_big", &spec, None, &ws_path(&dir), None, CancellationToken::new()).await;
    assert!(!ran.warm);
    assert_eq!(ran.result.stdout, format!("{}\n", 9 << 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_kind_of_request_gets_its_own_pool() {
    let runner = pooled().await;
    let pool = runner.warm_pool().expect("pools are on");
    let spec = exec_spec(r#"{"config":{"disk_mb":64}}"#);
    let dir = workspace(&[("main.py", HOST_UID_PRELUDE)]);
    // The first request of a kind finds no pool for it; it creates one, and the next request starts warm.
    let first = runner.run_reporting("exe_new", &spec, None, &ws_path(&dir), None, CancellationToken::new()).await;
    assert!(!first.warm);
    assert!(runner.prewarm(&spec, &ws_path(&dir), Duration::from_secs(60)).await);
    let second = runner.run_reporting("exe_new", &spec, None, &ws_path(&dir), None, CancellationToken::new()).await;
    assert!(second.warm);
    let stats = pool.stats();
    assert!(stats.pools.iter().any(|p| p.serves.ends_with("disk 64 MB")), "{stats:?}");
    assert!(stats.warm_starts >= 1 && stats.built >= 2, "{stats:?}");
    assert!(stats.idle + stats.building <= WarmSettings::default().max_total);
    if full_isolation().await {
        assert!(stats.pools.iter().all(|p| p.idle == 0 || p.idle_memory_bytes > 0), "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numpy_is_imported_ahead_and_reseeded_in_every_pooled_run() {
    let runner = pooled().await;
    let code = "import sys\nprint('ahead', 'numpy' in sys.modules)\nimport numpy as np\n\
                print('legacy', np.random.random())\nprint('default', np.random.default_rng().random())";
    let body = serde_json::json!({"code": code}).to_string();
    let (mut spec, files) = Policy::default().spec_from_eval(serde_json::from_str(&body).unwrap()).unwrap();
    spec.limits.disk_mb = 106;
    let mut seen: Vec<HashSet<String>> = vec![HashSet::new(); 2];
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        pyexec_core::workspace::create_dir(&ws).unwrap();
        pyexec_core::workspace::write_files(&files, &ws).unwrap();
        // The first prewarm installs numpy (from the package index) and creates the environment's pool.
        assert!(
            runner.prewarm(&spec, &ws, Duration::from_secs(300)).await,
            "{:?}",
            runner.warm_pool().map(|p| p.stats())
        );
        let ran = runner.run_reporting("exe_numpy", &spec, None, &ws, None, CancellationToken::new()).await;
        assert!(ran.warm, "{:?}", ran.result);
        let r = ran.result;
        assert!(r.stdout.starts_with("ahead True\n"), "numpy was imported before the claim: {r:?}");
        for (set, prefix) in seen.iter_mut().zip(["legacy", "default"]) {
            set.insert(r.stdout.lines().find(|l| l.starts_with(prefix)).unwrap_or_default().to_owned());
        }
    }
    for (set, what) in seen.iter().zip(["legacy global generator", "default_rng()"]) {
        assert_eq!(set.len(), 3, "numpy's {what} differs in every pooled run: {set:?}");
    }
}
