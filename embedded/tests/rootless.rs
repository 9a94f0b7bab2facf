//! A server started by an unprivileged user still isolates (user namespaces, seccomp, Landlock, rlimits) and
//! says its guarantees are reduced. Run as root, these tests re-execute themselves as `nobody` to check exactly
//! that.
//!
//! Whether such a server can give runs network depends on the host: pasta needs `/dev/net/tun`, which some
//! machines open to everyone (0666) and others to root only (0600). Both cases are run on every machine, in a
//! private mount namespace whose `/dev/net/tun` is a device node of the wanted mode: egress must then either work
//! completely (network runs and installs) or be reported unavailable, with network requests refused.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use pyexec_core::ExecutionStatus;

const NOBODY: u32 = 65534;
/// Tells the re-executed test which case it is in: `1` (egress must work), `0` (must be unavailable).
const EXPECT_EGRESS: &str = "PYEXEC_TEST_EXPECT_EGRESS";

#[tokio::test]
async fn an_unprivileged_server_with_an_open_tun_device_gives_working_egress() {
    if rustix::process::geteuid().is_root() {
        rerun_as_nobody("an_unprivileged_server_with_an_open_tun_device_gives_working_egress", 0o666);
    } else {
        check_rootless().await;
    }
}

#[tokio::test]
async fn an_unprivileged_server_without_tun_access_refuses_network_cleanly() {
    if rustix::process::geteuid().is_root() {
        rerun_as_nobody("an_unprivileged_server_without_tun_access_refuses_network_cleanly", 0o600);
    } else {
        check_rootless().await;
    }
}

/// Copies this test binary where `nobody` can execute it and runs test `name` there, as `nobody`, in a private
/// mount namespace whose `/dev/net/tun` has mode `tun_mode`.
fn rerun_as_nobody(name: &str, tun_mode: u32) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("rootless-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The device node lives on a tmpfs of the private namespace: the host's /dev/net/tun is never touched.
    let script = format!(
        "set -e\n\
         mount -t tmpfs -o size=64k,mode=0755 tmpfs \"$DEV_DIR\"\n\
         mknod -m {tun_mode:o} \"$DEV_DIR/tun\" c 10 200\n\
         mkdir -p /dev/net && touch /dev/net/tun\n\
         mount --bind \"$DEV_DIR/tun\" /dev/net/tun\n\
         exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups -- \"$@\""
    );
    let dev_dir = tempfile::tempdir().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c", &script, "sh"])
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("DEV_DIR", dev_dir.path())
        .env(EXPECT_EGRESS, if tun_mode & 0o006 == 0o006 { "1" } else { "0" })
        .env("HOME", "/nonexistent")
        .env("TMPDIR", "/tmp")
        .output()
        .expect("unshare and setpriv (util-linux) run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("--- as nobody, /dev/net/tun {tun_mode:o} ---\n{stdout}\n{stderr}");
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

    let expect_egress = std::env::var(EXPECT_EGRESS).ok();
    let egress = runner.environments().available();
    eprintln!("rootless egress: {egress:?} (expected: {expect_egress:?})");
    match expect_egress.as_deref() {
        Some("1") => assert!(egress.is_ok(), "an open /dev/net/tun must give a rootless server egress: {egress:?}"),
        Some(_) => assert!(egress.is_err(), "without /dev/net/tun egress must be reported unavailable"),
        None => pyexec_testkit::skip(
            pyexec_testkit::require::EGRESS,
            "the /dev/net/tun case of this test",
            "not run as root, so only this machine's /dev/net/tun mode is checked",
        ),
    }
    if egress.is_ok() {
        // Both halves of egress: the install sandbox reaches the package index, and a run with network on starts
        // (pasta attached, firewall loaded inside the run's namespaces) and resolves names.
        let r = exec("import six; print(six.PY3)", r#"{"requirements_txt":"six"}"#).await;
        assert_eq!((r.stdout.as_str(), r.installed_packages.len()), ("True\n", 1), "installs work rootless: {r:?}");
        let r = exec(
            "import socket\nprint(open('/etc/resolv.conf').read().split()[0])\nprint(socket.gethostbyname('localhost'))",
            r#"{"config":{"network_disabled":false}}"#,
        )
        .await;
        assert_eq!((r.exit_code, r.stdout.as_str()), (0, "nameserver\n127.0.0.1\n"), "{r:?}");
    } else {
        assert!(report.network_egress.starts_with("unavailable"), "{report:?}");
        let meta: pyexec_core::Metadata =
            serde_json::from_str(r#"{"entrypoint":"main.py","config":{"network_disabled":false}}"#).unwrap();
        let spec = pyexec_core::Policy::default().spec_from_metadata(meta).unwrap();
        let message = format!("{:?}", runner.check(&spec).expect_err("network requests are refused up front"));
        assert!(message.contains("network access was requested"), "{message}");
    }
}
