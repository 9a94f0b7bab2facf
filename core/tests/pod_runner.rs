//! The Pod runner with a real CPython, outside Kubernetes: its run directory, workspace and dependencies directory
//! are pointed at temporary folders, its `run.json` is a `RunConfig` as the operator writes it, its log is parsed by
//! `pod::parse_log` and finished by `pod::finish` (the files it reports read by `pod::harvest`), exactly as the
//! operator does. When the tests run as root, the runner runs as `nobody`, as it does in a Pod (uid 1000).
//!
//! The run configuration asks for files by default, as the operator's does with its log store on: every program
//! whose entrypoint is a file then runs under the eval runner, so the tests of exit codes, output and error fields
//! check that hosting it changes nothing.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pyexec_core::eval::EVAL_RUNNER_SOURCE;
use pyexec_core::pod::protocol::{
    ARCHIVE_SHA256_ENV, CLAIM_ENV, Claim, DEPS_DIR_ENV, DISK_FREE_ENV, EVAL_RUNNER_FILE, FLAG_ON, Fence, FenceTarget,
    GATE_ENV, GO_AHEAD, NONCE_ENV, OOM_EVENTS_ENV, REQUIREMENTS_FILE, ROLE_INSTALL, ROLE_RECEIVE, ROLE_RUN,
    RUN_CONFIG_FILE, RUN_DIR_ENV, RunConfig, SOURCE_DIR_ENV, STDIN_FILE, WORK_DIR_ENV, source_key,
};
use pyexec_core::pod::{
    Ending, FilesCaps, Finished, Harvest, PodEnd, RUNNER_FILE, RUNNER_SOURCE, finish, harvest, parse_log,
};
use pyexec_core::{ExecutionStatus, Policy, Timestamp};

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
        std::fs::write(dir.path().join("run").join(RUNNER_FILE), RUNNER_SOURCE).unwrap();
        std::fs::write(dir.path().join("run").join(EVAL_RUNNER_FILE), EVAL_RUNNER_SOURCE).unwrap();
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
        cmd.arg(self.path("run").join(RUNNER_FILE)).arg(role);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.path("work"))
            .env(WORK_DIR_ENV, self.path("work"))
            .env(RUN_DIR_ENV, self.path("run"))
            .env(DEPS_DIR_ENV, self.path("deps"))
            .env(SOURCE_DIR_ENV, self.path("user-source"))
            .env(NONCE_ENV, NONCE);
        cmd
    }

    /// Runs `code` as main.py under `config` (its entrypoint and files set here); returns the result as the operator
    /// would build it, and why it ended.
    fn run(&self, code: &str, config: RunConfig) -> Finished {
        self.run_with(code, config, self.command(ROLE_RUN), None).0
    }

    /// Writes `code` and `config` as the operator would.
    fn prepare(&self, code: &str, config: RunConfig) -> RunConfig {
        let run = RunConfig {
            entrypoint: Some("main.py".into()),
            files: [(source_key(0), "main.py".to_string())].into(),
            ..config
        };
        std::fs::write(self.path("run").join(source_key(0)), code).unwrap();
        std::fs::write(self.path("run").join(RUN_CONFIG_FILE), serde_json::to_string(&run).unwrap()).unwrap();
        chmod_all(self.dir.path());
        run
    }

    /// [`Pod::run`] with the runner's command given and `stdin` written to it; also the runner's stderr.
    fn run_with(&self, code: &str, config: RunConfig, cmd: Command, stdin: Option<&str>) -> (Finished, String) {
        let ran = self.execute(code, config, cmd, stdin);
        (ran.finished, ran.stderr)
    }

    /// [`Pod::run`], with the files the run reported (its result's `files` set from them, as the operator does).
    fn run_files(&self, code: &str, config: RunConfig) -> Ran {
        let mut ran = self.execute(code, config, self.command(ROLE_RUN), None);
        ran.harvest.apply(&mut ran.finished.result);
        ran
    }

    fn execute(&self, code: &str, config: RunConfig, mut cmd: Command, stdin: Option<&str>) -> Ran {
        let run = self.prepare(code, config);
        let started = Timestamp::now();
        let out = match stdin {
            None => cmd.stdin(Stdio::null()).output().unwrap(),
            Some(text) => {
                let mut child =
                    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
                child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
                child.wait_with_output().unwrap()
            }
        };
        let finished = Timestamp::now();
        eprintln!("runner stderr: {}", String::from_utf8_lossy(&out.stderr));
        let log = parse_log(&out.stdout, NONCE);
        let caps = FilesCaps { max_bytes: run.files_max_bytes, max_count: run.files_max_count as usize };
        let harvested = harvest(&log, caps);
        let mut spec = Policy::default().spec_from_metadata(Default::default()).unwrap();
        spec.eval_last_expr = run.eval_last_expr;
        spec.limits.timeout_seconds = run.timeout_seconds;
        spec.pre_commands = run.pre_commands.clone();
        spec.limits.disk_mb = run.disk_mb;
        let pod = PodEnd { exit_code: out.status.code(), ..PodEnd::default() };
        Ran {
            finished: finish("exe_pod", &spec, log, &pod, started, finished),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            harvest: harvested,
        }
    }
}

/// A run: its result, the runner's stderr, and the files it reported.
struct Ran {
    finished: Finished,
    stderr: String,
    harvest: Harvest,
}

/// The run configuration the operator writes by default with its log store on (files reported: 8 MiB, 1000),
/// with `edit` applied.
fn config(edit: impl FnOnce(&mut RunConfig)) -> RunConfig {
    let mut config = RunConfig {
        timeout_seconds: 300,
        output_limit_bytes: 1 << 20,
        files_max_bytes: 8 << 20,
        files_max_count: 1000,
        ..RunConfig::default()
    };
    edit(&mut config);
    config
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
    let code = "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\nsys.exit(3)";
    let Finished { result: r, ending } = pod.run(code, config(|_| {}));
    assert_eq!((r.status, r.exit_code, ending), (ExecutionStatus::Completed, 3, Ending::Completed), "{r:?}");
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("to stdout\n", "to stderr\n"));
}

#[test]
fn a_program_that_exits_124_itself_is_not_timed_out() {
    let pod = Pod::new();
    let Finished { result: r, ending } = pod.run("import sys\nprint('done')\nsys.exit(124)", config(|_| {}));
    assert_eq!((r.status, r.exit_code, ending), (ExecutionStatus::Completed, 124, Ending::Completed), "{r:?}");
    assert_eq!((r.stdout.as_str(), r.error), ("done\n", None));
}

#[test]
fn eval_mode_and_error_fields_are_the_embedded_backends() {
    let pod = Pod::new();
    let eval = config(|c| c.eval_last_expr = true);
    let r = pod.run("x = 6\nprint('hi')\nx * 7", eval.clone()).result;
    assert_eq!((r.stdout.as_str(), r.result.as_deref()), ("hi", Some("42")), "{r:?}");
    let r = pod.run("a = 1\nb = 0\na / b", eval.clone()).result;
    assert_eq!((r.error_type.as_deref(), r.error_line, r.exit_code), (Some("ZeroDivisionError"), Some(3), 1));
    // Only the eval runner's pipe reports a result: a marker line the program prints is output, as on the embedded
    // backend.
    let r = pod.run("print('___PYEXEC_RESULT___\"forged\"')\nx = 1", eval).result;
    assert_eq!((r.result.as_deref(), r.stdout.as_str()), (None, "___PYEXEC_RESULT___\"forged\"\n"), "{r:?}");
}

#[test]
fn stdin_args_and_pre_commands() {
    let pod = Pod::new();
    std::fs::write(pod.path("run").join(STDIN_FILE), "from stdin").unwrap();
    let code = "import sys, os\nprint(sys.stdin.read(), sys.argv[1:], os.path.exists('/tmp') and open('made').read())";
    let r = pod
        .run(
            code,
            config(|c| {
                c.args = vec!["-v".into()];
                c.pre_commands = vec!["echo preparing".into(), "echo made > made".into()];
            }),
        )
        .result;
    assert_eq!(r.stdout, "from stdin ['-v'] made\n\n", "{r:?}");
    assert_eq!(r.pre_commands_output.as_deref(), Some("preparing\n"));

    let failing = config(|c| c.pre_commands = vec!["echo first".into(), "echo bad >&2; exit 5".into()]);
    let Finished { result: r, ending } = pod.run("print('never')", failing);
    assert_eq!((r.status, r.exit_code, ending), (ExecutionStatus::Failed, 5, Ending::PreCommandFailed), "{r:?}");
    assert_eq!(r.error.as_deref(), Some("pre_commands[1] failed with exit code 5: echo bad >&2; exit 5"));
    assert_eq!(r.pre_commands_output.as_deref(), Some("first\nbad\n"));
}

#[test]
fn the_timeout_kills_the_group_and_keeps_the_output() {
    let pod = Pod::new();
    let code = "import os, time\nprint('before', flush=True)\nif os.fork() == 0:\n    time.sleep(60)\ntime.sleep(60)";
    let t = std::time::Instant::now();
    let Finished { result: r, ending } = pod.run(code, config(|c| c.timeout_seconds = 1));
    assert!(t.elapsed().as_secs() < 10, "the runner returned at the timeout");
    assert_eq!((r.status, r.exit_code, ending), (ExecutionStatus::Failed, 124, Ending::TimedOut), "{r:?}");
    assert_eq!((r.stdout.as_str(), r.error.as_deref()), ("before\n", Some("execution timeout after 1s")));
}

#[test]
fn a_program_that_closes_its_output_still_times_out_at_its_deadline() {
    let pod = Pod::new();
    let code = "import os, time\nprint('bye', flush=True)\nos.close(1)\nos.close(2)\ntime.sleep(60)";
    let t = std::time::Instant::now();
    let Finished { result: r, ending } = pod.run(code, config(|c| c.timeout_seconds = 1));
    assert!(t.elapsed().as_secs() < 4, "stopped at the deadline, not later: {:?}", t.elapsed());
    assert_eq!((r.status, r.exit_code, ending), (ExecutionStatus::Failed, 124, Ending::TimedOut), "{r:?}");
    assert_eq!(r.stdout, "bye\n");
}

#[test]
fn output_is_capped_and_flagged() {
    let pod = Pod::new();
    let r = pod.run("import sys\nsys.stdout.write('x' * 300000)", config(|c| c.output_limit_bytes = 100_000)).result;
    assert_eq!((r.stdout.len(), r.stdout_truncated), (100_000, true));
}

#[test]
fn a_run_configuration_with_other_fields_is_refused() {
    let pod = Pod::new();
    std::fs::write(pod.path("run").join(RUN_CONFIG_FILE), r#"{"entrypoint": "main.py", "timeout": 5}"#).unwrap();
    chmod_all(pod.dir.path());
    let out = pod.command(ROLE_RUN).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not hold the fields"), "{out:?}");
    assert!(parse_log(&out.stdout, NONCE).end.is_none(), "nothing ran");
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
    let r = pod.run(code, config(|_| {})).result;
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
            .command(ROLE_RECEIVE)
            .env(ARCHIVE_SHA256_ENV, sha)
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
    std::fs::write(pod.path("run").join(REQUIREMENTS_FILE), "six==1.16.0\n").unwrap();
    // Uploaded files that would shadow pip if the workspace were on its sys.path.
    std::fs::create_dir(pod.path("work/pip")).unwrap();
    let evil = "open(__file__ + '.ran', 'w').write('x')\nraise SystemExit('shadowed')\n";
    std::fs::write(pod.path("work/pip/__init__.py"), evil).unwrap();
    std::fs::write(pod.path("work/pip/__main__.py"), evil).unwrap();
    chmod_all(pod.dir.path());
    let out = pod.command(ROLE_INSTALL).current_dir(pod.path("work")).env("PIP_FIND_LINKS", "").output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!pod.path("work/pip/__init__.py.ran").exists() && !pod.path("work/pip/__main__.py.ran").exists());
    let r = pod.run("import six\nprint(six.__version__)", config(|_| {})).result;
    assert_eq!(
        (r.stdout.as_str(), r.installed_packages.clone()),
        ("1.16.0\n", vec!["six==1.16.0".to_string()]),
        "{r:?}"
    );
}

/// A package index in a directory (PEP 503 pages pip reads from a `file://` URL), offline: `tinypkg` 1.0 as a wheel,
/// `sdistonly` 1.0 as a source distribution only.
fn local_index(dir: &Path) -> String {
    let script = r#"
import io, os, sys, tarfile, zipfile
root = sys.argv[1]
os.makedirs(os.path.join(root, "tinypkg"))
os.makedirs(os.path.join(root, "sdistonly"))
with zipfile.ZipFile(os.path.join(root, "tinypkg", "tinypkg-1.0-py3-none-any.whl"), "w") as w:
    w.writestr("tinypkg/__init__.py", "VALUE = 42\n")
    w.writestr("tinypkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n")
    w.writestr("tinypkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    w.writestr("tinypkg-1.0.dist-info/RECORD", "")
setup = b'from setuptools import setup\nsetup(name="sdistonly", version="1.0")\n'
with tarfile.open(os.path.join(root, "sdistonly", "sdistonly-1.0.tar.gz"), "w:gz") as t:
    info = tarfile.TarInfo("sdistonly-1.0/setup.py")
    info.size = len(setup)
    t.addfile(info, io.BytesIO(setup))
for project in ("tinypkg", "sdistonly"):
    files = sorted(os.listdir(os.path.join(root, project)))
    links = "".join(f'<a href="{f}">{f}</a>' for f in files)
    with open(os.path.join(root, project, "index.html"), "w") as f:
        f.write(f"<html><body>{links}</body></html>")
"#;
    let status = Command::new(python()).arg("-c").arg(script).arg(dir).status().unwrap();
    assert!(status.success());
    format!("file://{}", dir.display())
}

/// The install role with `requirements` from the local index; its output, and whether it succeeded.
fn install_from(pod: &Pod, index: &str, requirements: &str) -> (bool, String) {
    std::fs::write(pod.path("run").join(REQUIREMENTS_FILE), requirements).unwrap();
    chmod_all(pod.dir.path());
    let out = pod
        .command(ROLE_INSTALL)
        .env("PIP_FIND_LINKS", "")
        .env("PIP_INDEX_URL", index)
        .env("PIP_CONFIG_FILE", "/dev/null")
        .output()
        .unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), log)
}

#[test]
fn detected_names_the_index_lacks_are_skipped_and_listed_ones_still_fail() {
    use pyexec_core::SkippedPackage;
    use pyexec_core::requirements::{NOT_FOUND, NOT_INSTALLABLE};
    let pod = Pod::new();
    let index = local_index(&pod.path("index"));
    // As the API server writes them (pyexec_core::requirements::InstallPlan::requirements_txt).
    let requirements = "tinypkg  # pyexec: detected\n\
                        surely-not-a-real-pkg-xyz  # pyexec: optional\n\
                        also_missing_xyz  # pyexec: detected\n\
                        sdistonly  # pyexec: optional\n";
    let (ok, log) = install_from(&pod, &index, requirements);
    assert!(ok, "{log}");
    assert!(log.contains("pyexec: skipped surely-not-a-real-pkg-xyz: not found in the package index"), "{log}");
    let code = "import tinypkg\ntry:\n    import surely_not_a_real_pkg_xyz\nexcept ImportError:\n    pass\nprint(tinypkg.VALUE)";
    let r = pod.run(code, config(|_| {})).result;
    assert_eq!((r.stdout.as_str(), r.installed_packages.clone()), ("42\n", vec!["tinypkg==1.0".to_string()]), "{r:?}");
    let mut skipped = r.skipped_packages.clone();
    skipped.sort();
    let skip = |name: &str, reason: &str| SkippedPackage { name: name.into(), reason: reason.into() };
    assert_eq!(
        skipped,
        [
            skip("also_missing_xyz", NOT_FOUND),
            skip("sdistonly", NOT_INSTALLABLE),
            skip("surely-not-a-real-pkg-xyz", NOT_FOUND),
        ],
        "an optional name is also skipped when nothing of it installs here"
    );

    // What the user listed must install: a missing one fails as pip says, as before.
    let pod = Pod::new();
    let index = local_index(&pod.path("index"));
    let (ok, log) = install_from(&pod, &index, "surely-not-a-real-pkg-xyz\ntinypkg  # pyexec: detected\n");
    assert!(!ok, "{log}");
    assert!(log.contains("No matching distribution found for surely-not-a-real-pkg-xyz"), "{log}");
    // So does a detected (unguarded) name the index has but cannot install here: the failure says why.
    let (ok, log) = install_from(&pod, &index, "sdistonly  # pyexec: detected\n");
    assert!(!ok, "{log}");
    assert!(log.contains("No matching distribution found for sdistonly"), "{log}");
    // Without markers, exactly as before: one pip run over the file.
    let (ok, log) = install_from(&pod, &index, "tinypkg\n");
    assert!(ok, "{log}");
    assert!(log.contains("-r "), "{log}");
}

#[test]
fn the_program_waits_for_the_go_ahead_and_runs_nothing_without_it() {
    let pod = Pod::new();
    let code = "open('ran', 'w').write('yes')\nprint('ran')";
    let gated = || {
        let mut cmd = pod.command(ROLE_RUN);
        cmd.env(GATE_ENV, FLAG_ON);
        cmd
    };
    // Standard input closed (or anything else written) without the go-ahead: nothing runs.
    for stdin in ["", "nope\n"] {
        let (Finished { result: r, .. }, stderr) = pod.run_with(code, config(|_| {}), gated(), Some(stdin));
        assert!(stderr.contains("go-ahead did not come"), "{stderr}");
        assert_eq!((r.stdout.as_str(), pod.path("work/ran").exists()), ("", false), "{r:?}");
    }
    let (Finished { result: r, ending }, _) = pod.run_with(code, config(|_| {}), gated(), Some(GO_AHEAD));
    assert_eq!((r.status, r.stdout.as_str(), ending), (ExecutionStatus::Completed, "ran\n", Ending::Completed));
}

/// A warm Pod's runner has no run.json and no sources: it waits for the claim on stdin, then runs exactly as a cold
/// one; without a well-formed claim it runs nothing.
#[test]
fn a_warm_runner_waits_for_its_claim_and_then_runs_as_a_cold_one() {
    let pod = Pod::new();
    let code =
        "import os, sys\nopen('ran', 'w').write('yes')\nprint(sys.stdin.read(), os.environ['MODE'], sys.argv[1:])\n";
    let run = config(|c| {
        c.entrypoint = Some("pkg/main.py".into());
        c.files = [(source_key(0), "pkg/main.py".to_string())].into();
        c.args = vec!["-v".into()];
    });
    let claim = Claim {
        run: run.clone(),
        sources: [(source_key(0), code.to_string())].into(),
        stdin: Some("from stdin".into()),
        env: [("MODE".to_string(), "warm".to_string()), (NONCE_ENV.to_string(), "forged".to_string())].into(),
    };
    let warm = |stdin: &str| {
        let mut cmd = pod.command(ROLE_RUN);
        cmd.env(CLAIM_ENV, FLAG_ON).env(GATE_ENV, FLAG_ON);
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(!pod.path("run").join(RUN_CONFIG_FILE).exists(), "a warm Pod has no run.json");
    let mut missing_field = serde_json::to_value(&claim).unwrap();
    missing_field.as_object_mut().unwrap().remove("env");
    for stdin in [String::new(), GO_AHEAD.into(), format!("{missing_field}\n"), serde_json::to_string(&claim).unwrap()]
    {
        let out = warm(&stdin);
        assert!(String::from_utf8_lossy(&out.stderr).contains("no well-formed claim"), "{stdin:?}: {out:?}");
        assert!(!pod.path("work/ran").exists() && out.stdout.is_empty(), "nothing runs: {stdin:?}");
    }
    let out = warm(&format!("{}\n", serde_json::to_string(&claim).unwrap()));
    let log = parse_log(&out.stdout, NONCE);
    let spec = Policy::default().spec_from_metadata(Default::default()).unwrap();
    let done = finish(
        "exe_pod",
        &spec,
        log,
        &PodEnd { exit_code: out.status.code(), ..PodEnd::default() },
        Timestamp::now(),
        Timestamp::now(),
    );
    assert_eq!(
        (done.result.status, done.result.stdout.as_str()),
        (ExecutionStatus::Completed, "from stdin warm ['-v']\n"),
        "{:?} {}",
        done.result,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(pod.path("work/pkg/main.py")).unwrap(), code);
}

/// A fence whose only target is `port` on the loopback address (tests never probe anything but their own listeners).
fn loopback_fence(port: u16) -> Fence {
    Fence {
        tcp: vec![FenceTarget { what: "the test's forbidden listener".into(), host: "127.0.0.1".into(), port }],
        resolv_conf: None,
    }
}

#[test]
fn an_open_fence_fails_the_execution_and_runs_nothing() {
    let pod = Pod::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = "open('ran', 'w').write('yes')\nprint('ran')";
    let t = std::time::Instant::now();
    let fenced = config(|c| {
        c.fence = loopback_fence(port);
        c.pre_commands = vec!["echo pre > pre-ran".into()];
    });
    let Finished { result: r, ending } = pod.run(code, fenced);
    assert!(t.elapsed().as_secs() < 10, "the runner gives up after its grace period: {:?}", t.elapsed());
    assert_eq!((r.status, ending), (ExecutionStatus::Failed, Ending::NetworkNotFenced), "{r:?}");
    assert_eq!(
        r.error.as_deref(),
        Some("the network fence was not in place: the test's forbidden listener was reachable; nothing was run")
    );
    assert!(!pod.path("work/ran").exists() && !pod.path("work/pre-ran").exists(), "neither program nor pre-commands");
    assert_eq!(r.stdout, "");
    drop(listener);
}

#[test]
fn a_refused_connection_is_a_closed_fence() {
    let pod = Pod::new();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let Finished { result: r, ending } = pod.run("print('ran')", config(|c| c.fence = loopback_fence(port)));
    assert_eq!(
        (r.status, r.stdout.as_str(), ending),
        (ExecutionStatus::Completed, "ran\n", Ending::Completed),
        "{r:?}"
    );
}

#[test]
fn an_oom_kill_of_the_program_alone_is_reported_as_one() {
    // The kernel's OOM killer kills the program, not the container: the container exits with the runner's code and
    // Kubernetes says nothing. The runner reads the memory cgroup's count before and after; here a file it is pointed
    // at, whose count the program raises right before it kills itself with SIGKILL, as the kernel would.
    let pod = Pod::new();
    let events = pod.path("work").join("memory.events");
    std::fs::write(&events, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
    std::fs::set_permissions(&events, std::fs::Permissions::from_mode(0o666)).unwrap();
    let code = format!(
        "import os, signal\nprint('allocating', flush=True)\nassert {OOM_EVENTS_ENV:?} not in os.environ\n\
         open({events:?}, 'w').write('oom 2\\noom_kill 2\\n')\nos.kill(os.getpid(), signal.SIGKILL)",
        events = events.to_str().unwrap(),
    );
    let mut cmd = pod.command(ROLE_RUN);
    cmd.env(OOM_EVENTS_ENV, &events);
    let (Finished { result: r, ending }, _) = pod.run_with(&code, config(|_| {}), cmd, None);
    assert_eq!(
        (r.status, r.exit_code, r.oom_killed, ending),
        (ExecutionStatus::Completed, 137, true, Ending::OomKilled),
        "{r:?}"
    );
    assert_eq!(r.stdout, "allocating\n");

    // SIGKILL while the count stays: a signal, not an out-of-memory kill.
    let code = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)";
    let mut cmd = pod.command(ROLE_RUN);
    cmd.env(OOM_EVENTS_ENV, &events);
    let (Finished { result: r, ending }, _) = pod.run_with(code, config(|_| {}), cmd, None);
    assert_eq!((r.exit_code, r.oom_killed, ending), (137, false, Ending::Completed), "{r:?}");
}

#[test]
fn the_runner_counts_its_frames_so_a_rotated_log_is_noticed() {
    let pod = Pod::new();
    let code = "import sys\nprint('a', flush=True)\nprint('b', file=sys.stderr, flush=True)";
    let Finished { result: r, .. } = pod.run(code, config(|_| {}));
    assert_eq!((r.error, r.stdout_truncated), (None, false), "the whole log: nothing lost");
    // The same run, its log's first line (the start frame) rotated away.
    pod.prepare(code, config(|_| {}));
    let out = pod.command(ROLE_RUN).stdin(Stdio::null()).output().unwrap();
    let full = parse_log(&out.stdout, NONCE);
    assert!(full.started && !full.output_lost(), "{full:?}");
    // Its frames are numbered in order from 0, the end frame's number being its count of the others.
    let numbered = pyexec_core::pod::FrameDecoder::new(NONCE).push_numbered(&out.stdout);
    let seqs: Vec<Option<u64>> = numbered.iter().map(|n| n.seq).collect();
    assert_eq!(seqs, (0..numbered.len() as u64).map(Some).collect::<Vec<_>>());
    assert_eq!(full.end.as_ref().and_then(|e| e.frames), Some(numbered.len() as u64 - 1));
    let text = String::from_utf8(out.stdout).unwrap();
    let rotated = parse_log(text.split_once('\n').unwrap().1.as_bytes(), NONCE);
    assert!(rotated.output_lost(), "{rotated:?}");
}

#[test]
fn a_program_that_fills_its_workspace_fails_on_its_disk_limit() {
    let pod = Pod::new();
    // The workspace's free space as `statvfs` would report it after the program filled it.
    let free = pod.path("free");
    std::fs::write(&free, "4096").unwrap();
    chmod_all(pod.dir.path());
    let code = format!(
        "import errno, os, sys\nprint('writing', flush=True)\nassert {DISK_FREE_ENV:?} not in os.environ\n\
         raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
    );
    let mut cmd = pod.command(ROLE_RUN);
    cmd.env(DISK_FREE_ENV, &free);
    let (Finished { result, ending }, _) = pod.run_with(&code, config(|c| c.disk_mb = 50), cmd, None);
    assert_eq!(
        (result.status, result.exit_code, result.error.as_deref(), ending),
        (ExecutionStatus::Failed, 1, Some("disk limit of 50 MB exceeded"), Ending::DiskLimitExceeded)
    );
    assert_eq!(result.stdout, "writing\n", "the output is kept");
    assert!(result.stderr.contains("No space left on device"), "{}", result.stderr);

    // The same failure with room to spare, or without a known limit, is the program's own.
    std::fs::write(&free, (64u64 << 20).to_string()).unwrap();
    let mut cmd = pod.command(ROLE_RUN);
    cmd.env(DISK_FREE_ENV, &free);
    let (Finished { result, ending }, _) = pod.run_with(&code, config(|c| c.disk_mb = 50), cmd, None);
    assert_eq!((result.status, result.error, ending), (ExecutionStatus::Completed, None, Ending::Completed));
    std::fs::write(&free, "0").unwrap();
    let mut cmd = pod.command(ROLE_RUN);
    cmd.env(DISK_FREE_ENV, &free);
    let (Finished { result, ending }, _) = pod.run_with(&code, config(|_| {}), cmd, None);
    assert_eq!((result.status, ending), (ExecutionStatus::Completed, Ending::Completed));
    // Without the override the runner reads the real workspace, which has room: a failure stays the program's.
    let finished = pod.run("raise SystemExit(3)", config(|c| c.disk_mb = 50));
    assert_eq!((finished.result.status, finished.result.exit_code), (ExecutionStatus::Completed, 3));
    // A program that succeeded is never about the disk.
    std::fs::write(&free, "0").unwrap();
    let mut cmd = pod.command(ROLE_RUN);
    cmd.env(DISK_FREE_ENV, &free);
    let (Finished { result, .. }, _) = pod.run_with("print('ok')", config(|c| c.disk_mb = 50), cmd, None);
    assert_eq!((result.status, result.exit_code, result.error), (ExecutionStatus::Completed, 0, None));
}

/// The files of a run, as (path, content) pairs in the tar's order.
fn kept(harvest: &Harvest) -> Vec<(String, String)> {
    let Harvest::Kept(out) = harvest else { panic!("no files kept: {harvest:?}") };
    out.files.iter().map(|(f, data)| (f.path.clone(), String::from_utf8_lossy(data).into_owned())).collect()
}

#[test]
fn the_files_a_program_wrote_are_reported_and_its_result_is_unchanged() {
    let pod = Pod::new();
    let code = "import os, sys\n\
                os.makedirs('data')\n\
                open('out.csv', 'w').write('a,b\\n1,2\\n')\n\
                open('data/x.bin', 'wb').write(bytes(range(4)))\n\
                os.symlink('/etc/passwd', 'link')\n\
                print(sorted(k for k in os.environ if k.startswith(('PYEXEC_FILES', 'PYEXEC_RESULT'))), sys.argv[0])\n\
                print('to stderr', file=sys.stderr)\n\
                sys.exit(3)";
    let ran = pod.run_files(code, config(|_| {}));
    let r = &ran.finished.result;
    assert_eq!((r.status, r.exit_code, ran.finished.ending), (ExecutionStatus::Completed, 3, Ending::Completed));
    let argv0 = format!("[] {}\n", pod.path("work/main.py").display());
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), (argv0.as_str(), "to stderr\n"), "{}", ran.stderr);
    assert_eq!(r.result, None);
    let mut files = kept(&ran.harvest);
    files.sort();
    assert_eq!(
        files,
        [("data/x.bin".to_string(), "\u{0}\u{1}\u{2}\u{3}".to_string()), ("out.csv".into(), "a,b\n1,2\n".into())],
        "regular files only: the link and the unchanged main.py are not reported"
    );
    assert!(!r.files_truncated && r.files.len() == 2);
    assert_eq!(r.files.iter().find(|f| f.path == "out.csv").unwrap().size, 8);
}

#[test]
fn a_failing_hosted_program_keeps_its_traceback_error_fields_and_files() {
    let pod = Pod::new();
    let code = "open('partial.txt', 'w').write('so far')\nx = 1\ny = 0\nx / y\n";
    for eval in [false, true] {
        let ran = pod.run_files(code, config(|c| c.eval_last_expr = eval));
        let r = &ran.finished.result;
        assert_eq!((r.status, r.exit_code), (ExecutionStatus::Completed, 1), "{r:?}");
        assert_eq!((r.error_type.as_deref(), r.error_line), (Some("ZeroDivisionError"), Some(4)), "{r:?}");
        assert!(r.stderr.starts_with("Traceback (most recent call last):\n"), "{}", r.stderr);
        assert!(!r.stderr.contains("eval_runner"), "the runner's frames are not shown: {}", r.stderr);
        assert_eq!(kept(&ran.harvest), [("partial.txt".to_string(), "so far".to_string())]);
    }
}

#[test]
fn without_files_asked_the_program_runs_directly() {
    let pod = Pod::new();
    // The eval runner adds `display` to the builtins: only a hosted program sees it.
    let code = "import builtins\nopen('out.txt', 'w').write('x')\nprint(hasattr(builtins, 'display'))";
    let hosted = pod.run_files(code, config(|_| {}));
    assert_eq!(hosted.finished.result.stdout, "True\n");
    let plain = pod.run_files(code, config(|c| c.files_max_bytes = 0));
    assert_eq!(plain.finished.result.stdout, "False\n");
    assert_eq!(plain.harvest, Harvest::NotReported);
    assert!(plain.finished.result.files.is_empty() && !plain.finished.result.files_truncated);
    // An entrypoint that is not a regular file gets the interpreter's own error, as without files (`prepare` sets
    // main.py: the run configuration is pointed at a missing file after it).
    let mut cfg = pod.prepare(code, config(|_| {}));
    cfg.entrypoint = Some("missing.py".into());
    std::fs::write(pod.path("run").join(RUN_CONFIG_FILE), serde_json::to_string(&cfg).unwrap()).unwrap();
    chmod_all(pod.dir.path());
    let out = pod.command(ROLE_RUN).stdin(Stdio::null()).output().unwrap();
    let log = parse_log(&out.stdout, NONCE);
    assert_eq!(log.end.as_ref().map(|e| (e.exit, e.files_bytes)), Some((2, None)), "{log:?}");
    assert!(String::from_utf8_lossy(&log.stderr).contains("can't open file"), "{log:?}");
}

#[test]
fn eval_mode_reports_display_outputs_and_files() {
    let pod = Pod::new();
    // A stand-in for matplotlib (not installed here), "installed" into the dependencies directory as the install
    // container would: figures whose PNG is the signature and the figure's number.
    let plt = pod.path("deps/matplotlib");
    std::fs::create_dir_all(&plt).unwrap();
    std::fs::write(plt.join("__init__.py"), "").unwrap();
    std::fs::write(
        plt.join("pyplot.py"),
        "_figs = {}\nclass Figure:\n    def __init__(self, n):\n        self.num = n\n    \
         def savefig(self, fname, format=None, **kw):\n        data = b'\\x89PNG\\r\\n\\x1a\\nfig%d' % self.num\n        \
         (open(fname, 'wb') if isinstance(fname, str) else fname).write(data)\n\
         def figure(num=None):\n    n = num or len(_figs) + 1\n    return _figs.setdefault(n, Figure(n))\n\
         def get_fignums():\n    return sorted(_figs)\n\
         def close(fig=None):\n    _figs.pop(getattr(fig, 'num', fig), None)\n\
         def savefig(name):\n    _figs[max(_figs)].savefig(name)\n\
         def show(*a, **k):\n    pass\n",
    )
    .unwrap();
    chmod_all(pod.dir.path());
    let code = "import matplotlib.pyplot as plt\nplt.figure()\nplt.savefig('plot.png')\nplt.show()\n\
                open('out.csv', 'w').write('x\\n')\n6 * 7\n";
    let ran = pod.run_files(code, config(|c| c.eval_last_expr = true));
    let r = &ran.finished.result;
    assert_eq!((r.status, r.result.as_deref()), (ExecutionStatus::Completed, Some("42")), "{r:?} {}", ran.stderr);
    let png = "iVBORw0KGgpmaWcx"; // base64 of the signature and "fig1"
    let outputs: Vec<(&str, &str)> = r.outputs.iter().map(|o| (o.kind.as_str(), o.data.as_str())).collect();
    assert_eq!(outputs, [("image/png", png)]);
    let mut files: Vec<String> = r.files.iter().map(|f| f.path.clone()).collect();
    files.sort();
    assert_eq!(files, ["out.csv", "plot.png"]);
    // Without evaluation, as on the embedded backend, the run keeps no display outputs (and sends no report).
    let plain = pod.run_files(code, config(|_| {}));
    assert!(plain.finished.result.outputs.is_empty() && plain.finished.result.result.is_none());
    assert_eq!(plain.finished.result.files.len(), 2);
}

#[test]
fn the_caps_leave_files_out_and_say_so() {
    let pod = Pod::new();
    let code = "for name in 'abc':\n    open(name, 'w').write(name * 10)\n";
    let ran = pod.run_files(code, config(|c| c.files_max_count = 2));
    assert_eq!((ran.finished.result.files.len(), ran.finished.result.files_truncated), (2, true));
    let ran = pod.run_files(code, config(|c| c.files_max_bytes = 15));
    assert_eq!((ran.finished.result.files.len(), ran.finished.result.files_truncated), (1, true));
}

#[test]
fn a_program_stopped_at_its_timeout_reports_no_files() {
    let pod = Pod::new();
    let code = "import time\nopen('out.txt', 'w').write('x')\ntime.sleep(60)";
    let ran = pod.run_files(code, config(|c| c.timeout_seconds = 1));
    assert_eq!((ran.finished.result.exit_code, ran.finished.ending), (124, Ending::TimedOut));
    assert_eq!(ran.harvest, Harvest::NotReported);
    assert!(ran.finished.result.files.is_empty() && !ran.finished.result.files_truncated);
}

#[test]
fn a_tar_the_program_wrote_itself_is_dropped_whole() {
    let pod = Pod::new();
    // The descriptor is taken out of the environment, but the program can find the pipe: it floods it.
    let code = "import os, stat\n\
                for fd in map(int, os.listdir('/proc/self/fd')):\n\
                \x20   try:\n\
                \x20       if fd > 2 and stat.S_ISFIFO(os.fstat(fd).st_mode):\n\
                \x20           os.write(fd, b'x' * 65536)\n\
                \x20   except OSError:\n\
                \x20       pass\n\
                open('out.txt', 'w').write('x')\n";
    let ran = pod.run_files(code, config(|c| (c.files_max_bytes, c.files_max_count) = (10, 1)));
    assert!(matches!(ran.harvest, Harvest::Lost(_)), "{:?} {}", ran.harvest, ran.stderr);
    assert_eq!(ran.finished.result.exit_code, 0);
    assert!(ran.finished.result.files.is_empty() && ran.finished.result.files_truncated);
}
