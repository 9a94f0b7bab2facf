//! A server started by an unprivileged user still isolates (user namespaces, seccomp, Landlock, rlimits) and
//! says its guarantees are reduced. Run as root, this test re-executes itself as `nobody` to check exactly that.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use pyexec_core::ExecutionStatus;

const NOBODY: u32 = 65534;

#[tokio::test]
async fn an_unprivileged_server_still_isolates_and_says_so() {
    if rustix::process::geteuid().is_root() {
        rerun_as_nobody();
    } else {
        check_rootless().await;
    }
}

/// Copies this test binary where `nobody` can execute it and runs this very test there.
fn rerun_as_nobody() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("rootless-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args([format!("--reuid={NOBODY}"), format!("--regid={NOBODY}"), "--clear-groups".into(), "--".into()])
        .arg(&exe)
        .args(["--exact", "an_unprivileged_server_still_isolates_and_says_so", "--nocapture", "--test-threads=1"])
        .env("HOME", "/nonexistent")
        .env("TMPDIR", "/tmp")
        .output()
        .expect("setpriv (util-linux) runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- as nobody ---\n{stdout}\n{stderr}");
    assert!(out.status.success(), "the rootless run failed");
    assert!(stdout.contains("1 passed"), "the rootless test did not run");
}

async fn check_rootless() {
    let runner = runner().await;
    let report = runner.isolation();
    assert!(!report.privileged);
    assert_eq!(report.level, pyexec_sandbox::IsolationLevel::Reduced);
    assert!(report.warnings.iter().any(|w| w.contains("not root")), "{report:?}");
    eprintln!("rootless report: {report:#?}");

    let code = r#"
import os, socket
print(os.getuid(), open('/proc/self/uid_map').read().split())
checks = [
    ('sysctl', lambda: open('/proc/sys/kernel/core_pattern', 'w')),
    ('net', lambda: socket.create_connection(('1.1.1.1', 443), timeout=2)),
    ('usr', lambda: open('/usr/x', 'w')),
]
for name, f in checks:
    try:
        f()
        print(name, 'allowed')
    except Exception:
        print(name, 'blocked')
"#;
    let r = exec(code, "{}").await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], format!("1000 ['1000', '{NOBODY}', '1']"));
    for name in ["sysctl", "net", "usr"] {
        assert!(lines.contains(&format!("{name} blocked").as_str()), "{name}: {lines:?}");
    }

    let bomb = "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    print(n)";
    let r = exec(bomb, "{}").await;
    let forked: u64 = r.stdout.trim().parse().unwrap_or_else(|_| panic!("{r:?}"));
    assert!(forked < 256, "RLIMIT_NPROC contains a fork bomb: {forked}");

    let r = exec("b = bytearray(600 << 20)", r#"{"config":{"memory_mb":64}}"#).await;
    assert_eq!(r.error_type.as_deref(), Some("MemoryError"), "RLIMIT_DATA caps memory: {r:?}");

    let r = exec("while True:\n    pass", r#"{"config":{"timeout_seconds":1}}"#).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 124));

    if runner.environments().available().is_ok() {
        let r = exec("import six; print(six.PY3)", r#"{"requirements_txt":"six"}"#).await;
        assert_eq!((r.stdout.as_str(), r.installed_packages.len()), ("True\n", 1), "installs work rootless: {r:?}");
    } else {
        eprintln!("!!! NOTE: no network egress for an unprivileged server here: rootless installs not checked");
    }
}
