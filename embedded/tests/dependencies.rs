//! Dependencies through the real installer (uv, from the package index: PyPI unless `PYEXEC_INDEX_URL` says
//! otherwise), the real sandbox and real CPython: detection, installation, caching, eviction, and what the user's
//! program may do with an environment.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use pyexec_core::imports::Detected;
use pyexec_core::requirements::{AutoInstall, NOT_ALLOWED, NOT_FOUND, NOT_INSTALLABLE};
use pyexec_core::{EvalRequest, ExecutionResult, ExecutionStatus, Policy, SkippedPackage};
use pyexec_embedded::{Environments, InstallerConfig, Interpreter};
use pyexec_sandbox::{Sandbox, SandboxConfig};

/// The default interpreter of the shared test runner.
async fn python() -> Interpreter {
    runner().await.interpreters().get(None).unwrap().clone()
}

/// An environment cache of its own (its own directory and cap), next to the shared runner's.
async fn environments(name: &str, max_bytes: u64) -> Environments {
    let dir = state_dir().join(name);
    let sandbox = Sandbox::new(SandboxConfig::new(dir.join("sandbox"))).await.unwrap();
    let config = InstallerConfig { max_bytes, ..installer_config(dir.join("environments")) };
    Environments::new(sandbox, config).unwrap()
}

fn installer_config(dir: std::path::PathBuf) -> InstallerConfig {
    let mut config = InstallerConfig::new(dir);
    if let Ok(index) = std::env::var("PYEXEC_INDEX_URL") {
        config.index_url = index;
    }
    config
}

fn names(packages: &[String]) -> Vec<&str> {
    packages.iter().filter_map(|p| p.split_once("==").map(|(n, _)| n)).collect()
}

#[tokio::test]
async fn detected_binary_and_pure_python_packages_install_and_import() {
    let r = eval_json(r#"{"code":"import numpy as np\nimport six\nprint(np.arange(3).sum(), six.PY3)"}"#).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Completed, 0), "{r:?}");
    assert_eq!(r.stdout, "3 True\n");
    assert_eq!(names(&r.installed_packages), ["numpy", "six"], "the result reports what was installed");
    assert!(r.stderr.is_empty(), "installer output is not mixed into the program's: {}", r.stderr);
}

#[tokio::test]
async fn local_modules_and_stdlib_names_are_never_installed() {
    // `requests` and `yaml` are PyPI names, but here they are the project's own modules.
    let files = r#"{"files":[
        {"name":"main.py","content":"import requests\nfrom yaml import load\nimport cProfile, tomllib, asyncio, json\nprint(requests.VALUE, load())"},
        {"name":"requests.py","content":"VALUE = 42"},
        {"name":"yaml/__init__.py","content":"def load():\n    return 'local'"}]}"#;
    let r = eval_json(files).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Completed, 0), "{r:?}");
    assert_eq!(r.stdout, "42 local\n");
    assert!(r.installed_packages.is_empty(), "nothing to install: {:?}", r.installed_packages);
}

#[tokio::test]
async fn imports_are_found_wherever_they_are() {
    let code = "def f():\n    try:\n        import six\n    except ImportError:\n        return None\n    return six.PY3\nprint(f())";
    let r = eval_json(&serde_json::json!({ "code": code }).to_string()).await;
    assert_eq!(r.stdout, "True\n", "{r:?}");
    assert_eq!(names(&r.installed_packages), ["six"]);
}

#[tokio::test]
async fn requirements_dash_installs_nothing() {
    let r = eval_json(r#"{"code":"import six","requirements_txt":"-"}"#).await;
    assert_eq!(r.error_type.as_deref(), Some("ModuleNotFoundError"), "{r:?}");
    assert!(r.installed_packages.is_empty());
}

#[tokio::test]
async fn exec_installs_requirements_txt_or_the_projects_own_file() {
    let code = "import six\nprint(six.__version__)";
    let r = exec(code, r#"{"requirements_txt":"six==1.16.0"}"#).await;
    assert_eq!((r.status, r.stdout.as_str()), (ExecutionStatus::Completed, "1.16.0\n"), "{r:?}");
    assert_eq!(r.installed_packages, ["six==1.16.0"]);

    let r = exec_files(&[("main.py", code), ("requirements.txt", "six==1.17.0\n")], "{}").await;
    assert_eq!(r.stdout, "1.17.0\n", "a project's requirements.txt is installed when the request names none: {r:?}");

    let r =
        exec_files(&[("main.py", code), ("requirements.txt", "six==1.17.0\n")], r#"{"requirements_txt":"-"}"#).await;
    assert_eq!(r.error_type.as_deref(), Some("ModuleNotFoundError"), "\"-\" installs nothing: {r:?}");
}

#[tokio::test]
async fn sdist_only_packages_are_refused_by_default() {
    // docopt has never published a wheel.
    let r = exec("import docopt", r#"{"requirements_txt":"docopt==0.6.2"}"#).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 1), "{r:?}");
    let error = r.error.unwrap();
    assert!(error.starts_with("installing dependencies failed: docopt has no binary wheel"), "{error}");
    assert!(error.contains("PYEXEC_ALLOW_SDIST=true"), "the error says how to allow it: {error}");
    // uv's error, its cause and its hint are what the error says, in this server's words: not repeated.
    assert!(!r.stderr.contains("no usable wheels") && !r.stderr.contains("building from source"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
}

#[tokio::test]
async fn failed_installs_say_why() {
    let r = exec("print(1)", r#"{"requirements_txt":"surely-no-such-package-pyexec-zzz"}"#).await;
    assert_eq!(r.status, ExecutionStatus::Failed);
    let error = r.error.unwrap();
    assert!(error.starts_with("installing dependencies failed: "), "{error}");
    assert!(error.contains("surely-no-such-package-pyexec-zzz was not found"), "{error}");
    assert!(!r.stderr.contains("was not found"), "the reason is said once, in `error`: {}", r.stderr);
    assert_eq!(r.duration_ms, 0, "no program ran");
    assert!(r.install_ms > 0, "the install took the time: {}", r.install_ms);
}

fn skip(name: &str, reason: &str) -> SkippedPackage {
    SkippedPackage { name: name.into(), reason: reason.into() }
}

/// `/eval` of `body` under `policy`.
async fn eval_with(policy: &Policy, body: serde_json::Value) -> ExecutionResult {
    let req: EvalRequest = serde_json::from_value(body).unwrap();
    let (spec, files) = policy.spec_from_eval(req).unwrap();
    let dir = workspace(&[]);
    pyexec_core::workspace::write_files(&files, &ws_path(&dir)).unwrap();
    run_spec(&spec, &ws_path(&dir)).await
}

#[tokio::test]
async fn a_guarded_import_the_index_lacks_is_skipped_with_a_note() {
    let code = "try:\n    import surely_not_a_real_pkg_xyz\nexcept ImportError:\n    pass\nprint('ok')";
    let r = eval_json(&serde_json::json!({ "code": code }).to_string()).await;
    assert_eq!((r.status, r.exit_code, r.stdout.as_str()), (ExecutionStatus::Completed, 0, "ok\n"), "{r:?}");
    assert_eq!(r.skipped_packages, [skip("surely_not_a_real_pkg_xyz", NOT_FOUND)]);
    assert!(r.installed_packages.is_empty() && r.error.is_none(), "{r:?}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(
        json["skipped_packages"],
        serde_json::json!([{"name": "surely_not_a_real_pkg_xyz", "reason": "not found in the package index"}])
    );
}

#[tokio::test]
async fn skipped_names_leave_the_others_installed() {
    // docopt is on the index, but has never published a wheel: an optional import of it is skipped too.
    let code = "import six\n\
                try:\n    import surely_not_a_real_pkg_xyz\nexcept ModuleNotFoundError:\n    pass\n\
                try:\n    import docopt\nexcept (ImportError, AttributeError):\n    docopt = None\n\
                print(six.PY3, docopt)";
    let r = eval_json(&serde_json::json!({ "code": code }).to_string()).await;
    assert_eq!((r.status, r.stdout.as_str()), (ExecutionStatus::Completed, "True None\n"), "{r:?}");
    assert_eq!(names(&r.installed_packages), ["six"]);
    let mut skipped = r.skipped_packages.clone();
    skipped.sort();
    assert_eq!(skipped, [skip("docopt", NOT_INSTALLABLE), skip("surely_not_a_real_pkg_xyz", NOT_FOUND)]);
}

#[tokio::test]
async fn an_unguarded_import_the_index_lacks_is_skipped_and_the_program_fails_on_it() {
    let r = eval_json(r#"{"code":"import six\nimport surely_not_a_real_pkg_xyz"}"#).await;
    assert_eq!(
        r.error_type.as_deref(),
        Some("ModuleNotFoundError"),
        "the program's own error, not the install's: {r:?}"
    );
    assert_eq!(r.skipped_packages, [skip("surely_not_a_real_pkg_xyz", NOT_FOUND)]);
    assert_eq!(names(&r.installed_packages), ["six"]);
}

#[tokio::test]
async fn listed_requirements_the_index_lacks_still_fail() {
    let code = "try:\n    import surely_not_a_real_pkg_xyz\nexcept ImportError:\n    pass\nprint('ok')";
    let body = serde_json::json!({ "code": code, "requirements_txt": "surely-no-such-package-pyexec-zzz" });
    let r = eval_json(&body.to_string()).await;
    assert_eq!(r.status, ExecutionStatus::Failed, "{r:?}");
    let error = r.error.unwrap();
    assert!(error.starts_with("installing dependencies failed: "), "{error}");
    assert!(error.contains("surely-no-such-package-pyexec-zzz was not found"), "{error}");
    assert!(r.stdout.is_empty());
}

#[tokio::test]
async fn the_allow_list_keeps_other_detected_names_out_but_never_listed_ones() {
    let policy = Policy { auto_install: AutoInstall::only(["six"]), ..Policy::default() };
    let code =
        "import six\ntry:\n    import packaging\nexcept ImportError:\n    packaging = None\nprint(six.PY3, packaging)";
    let r = eval_with(&policy, serde_json::json!({ "code": code })).await;
    assert_eq!(r.stdout, "True None\n", "{r:?}");
    assert_eq!(names(&r.installed_packages), ["six"]);
    assert_eq!(r.skipped_packages, [skip("packaging", NOT_ALLOWED)]);
    // Listed, it installs: the list restricts automatic installs only.
    let code = "import six, packaging\nprint(packaging.__name__)";
    let r = eval_with(&policy, serde_json::json!({ "code": code, "requirements_txt": "packaging" })).await;
    assert_eq!(r.stdout, "packaging\n", "{r:?}");
    assert_eq!(names(&r.installed_packages), ["packaging", "six"]);
    assert!(r.skipped_packages.is_empty());
}

#[tokio::test]
async fn the_program_has_no_network_after_an_install() {
    let index = url::Url::parse(&installer_config("x".into()).index_url).unwrap();
    let host = index.host_str().unwrap().to_owned();
    let addr = tokio::net::lookup_host((host.as_str(), 443)).await.unwrap().next().unwrap();
    let code = format!(
        "import six, socket\n\
         try:\n    socket.create_connection(({:?}, 443), timeout=5)\n    print('connected')\n\
         except OSError as e:\n    print('blocked', e.errno)\n\
         try:\n    socket.getaddrinfo({host:?}, 443)\n    print('resolved')\n\
         except OSError:\n    print('no dns')",
        addr.ip().to_string()
    );
    let r = exec(&code, r#"{"requirements_txt":"six"}"#).await;
    assert_eq!(names(&r.installed_packages), ["six"], "{r:?}");
    assert!(r.stdout.starts_with("blocked "), "the index the installer used is unreachable: {}", r.stdout);
    assert!(r.stdout.ends_with("no dns\n"), "{}", r.stdout);
}

#[tokio::test]
async fn environments_are_read_only_to_programs() {
    let code = "import six, pathlib\n\
                try:\n    pathlib.Path(six.__file__).write_text('tampered')\n    print('wrote')\n\
                except OSError as e:\n    print('refused', e.errno)";
    let r = exec(code, r#"{"requirements_txt":"six"}"#).await;
    assert_eq!(r.stdout, "refused 30\n", "EROFS: {r:?}");
    let r = exec("import six; print(open(six.__file__).read(8) != 'tampered')", r#"{"requirements_txt":"six"}"#).await;
    assert_eq!(r.stdout, "True\n");
}

#[tokio::test]
async fn pre_commands_run_first_unprivileged_and_apart() {
    let meta = r#"{"pre_commands":["echo preparing", "id -u; touch /work/made-by-pre"]}"#;
    let r = exec("import os; print('main', os.path.exists('/work/made-by-pre'))", meta).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Completed, 0), "{r:?}");
    assert_eq!(r.stdout, "main True\n", "pre-command output stays out of stdout");
    assert_eq!(r.pre_commands_output.as_deref(), Some("preparing\n1000\n"), "the sandbox user, not root");
}

#[tokio::test]
async fn a_failing_pre_command_fails_the_execution() {
    let r = exec("print('never')", r#"{"pre_commands":["echo step one","echo oops >&2; exit 3","echo never"]}"#).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 3), "{r:?}");
    assert_eq!(r.error.as_deref(), Some("pre_commands[1] failed with exit code 3: echo oops >&2; exit 3"));
    assert_eq!(r.pre_commands_output.as_deref(), Some("step one\noops"));
    assert!(r.stdout.is_empty());
}

#[tokio::test]
async fn pre_commands_are_under_the_executions_limits() {
    let r = exec("print('never')", r#"{"pre_commands":["sleep 60"],"config":{"timeout_seconds":1}}"#).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 124), "{r:?}");
}

#[tokio::test]
async fn a_second_identical_request_hits_the_cache() {
    let first = eval_json(r#"{"code":"import six\nprint(six.PY3)"}"#).await;
    assert_eq!(first.stdout, "True\n");
    // The same request: the same detected name (a detected name has an environment of its own: it may be skipped,
    // a listed one may not).
    let six = [Detected { name: "six".into(), optional: false }];
    let lease = runner().await.environments().get_with(&python().await, "", &six).await.unwrap();
    assert!(!lease.built && !lease.waited, "the environment came from the cache");
    assert_eq!(names(&lease.info.packages), ["six"]);
    let again = eval_json(r#"{"code":"import six\nprint(six.PY3)"}"#).await;
    assert_eq!((again.stdout.as_str(), again.install_ms), ("True\n", 0), "nothing was installed for it: {again:?}");
}

#[tokio::test]
async fn concurrent_identical_requests_build_once() {
    let envs = environments("concurrent", 5 << 30).await;
    let py = python().await;
    let (a, b, c) = tokio::join!(envs.get(&py, "six"), envs.get(&py, "six\n"), envs.get(&py, "# comment\nsix"));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!([a.built, b.built, c.built].iter().filter(|b| **b).count(), 1, "exactly one build");
    assert!(a.waited && b.waited && c.waited, "each waited for the one build (install_ms counts it)");
    assert!(a.info.dir == b.info.dir && b.info.dir == c.info.dir);
    if rustix::process::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(&a.info.dir).unwrap().uid();
        assert_eq!(owner, 2_000_000_000 - 1, "built by the service uid, never by root or a run's uid");
    }
}

#[tokio::test]
async fn binds_into_the_sandboxes_own_directories_are_refused() {
    // They would be hidden by the sandbox's own /tmp or /work (environments are mounted under /opt for this reason).
    let sandbox = Sandbox::new(SandboxConfig::new(state_dir().join("binds"))).await.unwrap();
    for target in ["/tmp/env", "/work", "/proc/x"] {
        let mut spec = pyexec_sandbox::RunSpec::new("/bin/true");
        spec.binds.push(pyexec_sandbox::Bind::at("/usr", target));
        let err = sandbox.run(spec, None, Default::default()).await.unwrap_err().to_string();
        assert!(err.contains("belong to the sandbox"), "{target}: {err}");
    }
}

#[tokio::test]
async fn the_cache_cap_evicts_the_least_recently_used() {
    // A cap no environment fits under: each build evicts every environment not in use.
    let envs = environments("evict", 1).await;
    let py = python().await;
    let six = envs.get(&py, "six").await.unwrap();
    let six_dir = six.info.dir.clone();
    let packaging = envs.get(&py, "packaging").await.unwrap();
    assert!(six_dir.exists(), "an environment in use is never evicted");
    drop(six);
    let idna = envs.get(&py, "idna").await.unwrap();
    assert!(!six_dir.exists(), "the unused environment was evicted");
    assert!(packaging.info.dir.exists() && idna.info.dir.exists());
    drop((packaging, idna));
    let again = envs.get(&py, "six").await.unwrap();
    assert!(again.built, "an evicted environment is built again");
}

#[tokio::test]
async fn killing_an_execution_while_it_installs() {
    let dir = workspace(&[("main.py", "import numpy")]);
    let spec = pyexec_core::Policy::default()
        .spec_from_metadata(
            serde_json::from_str(r#"{"entrypoint":"main.py","requirements_txt":"numpy\npandas"}"#).unwrap(),
        )
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let killer = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        killer.cancel();
    });
    let r = run_spec_with(&spec, &ws_path(&dir), cancel).await;
    assert_eq!((r.status, r.exit_code), (ExecutionStatus::Killed, 137), "{r:?}");
}
