//! The Pod runner with a real CPython, outside Kubernetes: its run directory, workspace and dependencies directory
//! are pointed at temporary folders, its log is parsed by `pod::parse_log` and finished by `pod::finish`, exactly
//! as the operator does. When the tests run as root, the runner runs as `nobody`, as it does in a Pod (uid 1000).

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pyexec_core::eval::EVAL_RUNNER_SOURCE;
use pyexec_core::pod::{PodEnd, RUNNER_SOURCE, finish, parse_log};
use pyexec_core::{ExecutionResult, ExecutionStatus, Policy, Timestamp};

const NONCE: &str = "7f3a9c";

struct Pod {
    dir: tempfile::TempDir,
}

impl Pod {
    fn new() -> Pod {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["work", "run", "deps"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        std::fs::write(dir.path().join("run/pod_runner.py"), RUNNER_SOURCE).unwrap();
        std::fs::write(dir.path().join("run/eval_runner.py"), EVAL_RUNNER_SOURCE).unwrap();
        chmod_all(dir.path());
        Pod { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn command(&self, role: &str) -> Command {
        let mut cmd = if rustix::process::geteuid().is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
            c.arg(python());
            c
        } else {
            Command::new(python())
        };
        cmd.arg(self.path("run/pod_runner.py")).arg(role);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.path("work"))
            .env("PYEXEC_WORK", self.path("work"))
            .env("PYEXEC_RUN_DIR", self.path("run"))
            .env("PYEXEC_DEPS", self.path("deps"))
            .env("PYEXEC_USER_SOURCE", self.path("user-source"))
            .env("PYEXEC_FRAME_NONCE", NONCE);
        cmd
    }

    /// Runs `code` as main.py with the given run.json fields; returns the result as the operator would build it.
    fn run(&self, code: &str, config: serde_json::Value) -> ExecutionResult {
        let mut run = serde_json::json!({"entrypoint": "main.py", "files": {"src-0": "main.py"}});
        for (k, v) in config.as_object().unwrap() {
            run[k] = v.clone();
        }
        std::fs::write(self.path("run/src-0"), code).unwrap();
        std::fs::write(self.path("run/run.json"), run.to_string()).unwrap();
        chmod_all(self.dir.path());
        let started = Timestamp::now();
        let out = self.command("run").stdin(Stdio::null()).output().unwrap();
        let finished = Timestamp::now();
        let log = parse_log(&out.stdout, NONCE);
        let mut spec = Policy::default().spec_from_metadata(Default::default()).unwrap();
        spec.eval_last_expr = run["eval_last_expr"].as_bool().unwrap_or(false);
        spec.limits.timeout_seconds = run["timeout_seconds"].as_u64().unwrap_or(300);
        spec.pre_commands = run["pre_commands"]
            .as_array()
            .map(|a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        let pod = PodEnd { exit_code: out.status.code(), ..PodEnd::default() };
        let result = finish("exe_pod", &spec, log, &pod, started, finished);
        eprintln!("runner stderr: {}", String::from_utf8_lossy(&out.stderr));
        result
    }
}

fn chmod_all(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
            }
        }
    }
}

/// A CPython 3.10+ that `nobody` can execute (the system one; pyenv's live under root's home).
fn python() -> PathBuf {
    for candidate in ["/usr/bin/python3", "/usr/local/bin/python3"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("no python3 in /usr/bin or /usr/local/bin");
}

#[test]
fn outputs_stay_apart_and_the_exit_code_is_the_programs() {
    let pod = Pod::new();
    let r = pod
        .run("import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nsys.exit(3)", serde_json::json!({}));
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Completed, 3), "{r:?}");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("to stdout\n", "to stderr\n"));
}

#[test]
fn eval_mode_and_error_fields_are_the_embedded_backends() {
    let pod = Pod::new();
    let r = pod.run("x = 6\nprint('hi')\nx * 7", serde_json::json!({"eval_last_expr": true}));
    assert_eq!((r.stdout.as_str(), r.result.as_deref()), ("hi", Some("42")), "{r:?}");
    let r = pod.run("a = 1\nb = 0\na / b", serde_json::json!({"eval_last_expr": true}));
    assert_eq!((r.error_type.as_deref(), r.error_line, r.exit_code), (Some("ZeroDivisionError"), Some(3), 1));
}

#[test]
fn stdin_args_and_pre_commands() {
    let pod = Pod::new();
    std::fs::write(pod.path("run/stdin"), "from stdin").unwrap();
    let code = "import sys, os\nprint(sys.stdin.read(), sys.argv[1:], os.path.exists('/tmp') and open('made').read())";
    let r = pod.run(code, serde_json::json!({"args": ["-v"], "pre_commands": ["echo preparing", "echo made > made"]}));
    assert_eq!(r.stdout, "from stdin ['-v'] made\n\n", "{r:?}");
    assert_eq!(r.pre_commands_output.as_deref(), Some("preparing\n"));

    let r = pod.run("print('never')", serde_json::json!({"pre_commands": ["echo first", "echo bad >&2; exit 5"]}));
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 5), "{r:?}");
    assert_eq!(r.error.as_deref(), Some("pre_commands[1] failed with exit code 5: echo bad >&2; exit 5"));
    assert_eq!(r.pre_commands_output.as_deref(), Some("first\nbad\n"));
}

#[test]
fn the_timeout_kills_the_group_and_keeps_the_output() {
    let pod = Pod::new();
    let code = "import os, time\nprint('before', flush=True)\nif os.fork() == 0:\n    time.sleep(60)\ntime.sleep(60)";
    let t = std::time::Instant::now();
    let r = pod.run(code, serde_json::json!({"timeout_seconds": 1}));
    assert!(t.elapsed().as_secs() < 10, "the runner returned at the timeout");
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 124), "{r:?}");
    assert_eq!((r.stdout.as_str(), r.error.as_deref()), ("before\n", Some("execution timeout after 1s")));
}

#[test]
fn output_is_capped_and_flagged() {
    let pod = Pod::new();
    let r = pod.run("import sys\nsys.stdout.write('x' * 300000)", serde_json::json!({"output_limit_bytes": 100000}));
    assert_eq!((r.stdout.len(), r.stdout_truncated), (100_000, true));
}

#[test]
fn the_program_cannot_forge_frames_or_read_the_nonce() {
    let pod = Pod::new();
    let code = "import os\n\
                print('env has nonce:', any('7f3a9c' in v or k == 'PYEXEC_FRAME_NONCE' for k, v in os.environ.items()))\n\
                for path in [f'/proc/{os.getppid()}/environ', f'/proc/{os.getppid()}/fd/1']:\n\
                \x20   try:\n\
                \x20       open(path, 'rb' if 'environ' in path else 'wb')\n\
                \x20       print('opened', path.rsplit('/', 1)[1])\n\
                \x20   except OSError:\n\
                \x20       print('refused', path.rsplit('/', 1)[1])\n\
                print('\\x1fpyexec guess o ' + 'Rk9SR0VE')";
    let r = pod.run(code, serde_json::json!({}));
    assert_eq!(r.stdout, "env has nonce: False\nrefused environ\nrefused 1\n\u{1f}pyexec guess o Rk9SR0VE\n", "{r:?}");
}

#[test]
fn archives_are_received_checked_and_unpacked() {
    let pod = Pod::new();
    let tar = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(9);
        h.set_mode(0o644);
        b.append_data(&mut h, "pkg/main.py", &b"print(42)"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let sha = sha256_hex(&tar);
    let receive = |bytes: &[u8], sha: &str| {
        let mut child = pod
            .command("receive")
            .env("PYEXEC_ARCHIVE_SHA256", sha)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = receive(&tar, &"0".repeat(64));
    assert!(!out.status.success(), "a wrong checksum is refused");
    assert!(!pod.path("work/pkg").exists());
    let out = receive(&tar, &sha);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(pod.path("work/pkg/main.py")).unwrap(), "print(42)");

    let evil = {
        let mut h = tar::Header::new_gnu();
        h.as_mut_bytes()[..7].copy_from_slice(b"../x.py");
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(&[0u8; 1024]);
        out
    };
    let out = receive(&evil, "");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("outside the workspace"));
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn requirements_are_installed_into_the_dependencies_directory() {
    let pod = Pod::new();
    std::fs::write(pod.path("run/requirements.txt"), "six==1.16.0\n").unwrap();
    chmod_all(pod.dir.path());
    let out = pod.command("install").env("PIP_FIND_LINKS", "").output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let r = pod.run("import six\nprint(six.__version__)", serde_json::json!({}));
    assert_eq!(
        (r.stdout.as_str(), r.installed_packages.clone()),
        ("1.16.0\n", vec!["six==1.16.0".to_string()]),
        "{r:?}"
    );
}
