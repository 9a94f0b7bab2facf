//! Which requests a warm sandbox can serve, and what kind ("class") of sandbox serves them.
//!
//! A class is everything fixed when a sandbox is built: the interpreter and its mounts, the environment of
//! packages, network, the process cap, the sizes of `/work` and `/tmp`, the interpreter's own environment, what
//! it imports ahead of time, and (only where there are no cgroups, so memory is an rlimit set at build) memory.
//! Everything else (files, arguments, environment variables, standard input, memory and CPU limits, timeout)
//! is handed over at claim time. A request that cannot be handed over runs cold, exactly as without pools.

use pyexec_core::ExecutionSpec;
use pyexec_core::eval::RESULT_FD_ENV;
use pyexec_sandbox::RunSpec;

/// The warm interpreter's control descriptor (extra output 1; 0 carries the eval result).
pub(crate) const CONTROL_INDEX: usize = 1;
/// The warm interpreter's descriptor for the files the program wrote (extra output 2), when they are collected.
pub(crate) const FILES_INDEX: usize = 2;
/// What the warm interpreter writes on its control descriptor once it waits for work.
pub(crate) const READY: &[u8] = b"ready\n";
/// The control descriptor's report of a full `/work` while writing the files.
pub(crate) const NO_SPACE: &[u8] = b"nospace\n";

/// Environment variables read when the interpreter starts (or by the dynamic loader), which a warm interpreter
/// has already gone past: a request setting one runs cold.
fn read_at_startup(name: &str) -> bool {
    const PREFIXES: [&str; 4] = ["PYTHON", "LC_", "LD_", "PYEXEC_"];
    const NAMES: [&str; 5] = ["LANG", "LANGUAGE", "TZ", "HOME", "VIRTUAL_ENV"];
    PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name)
}

/// Why `spec` cannot be served by a warm sandbox (`None`: it can). `preimports`: whether the class imports
/// modules ahead of time (their import-time settings, such as `OMP_NUM_THREADS`, are then fixed too).
pub(crate) fn cold_reason(spec: &ExecutionSpec, preimports: bool) -> Option<&'static str> {
    if !spec.pre_commands.is_empty() {
        return Some("pre_commands run before the interpreter starts");
    }
    if spec.entrypoint.is_none() {
        return Some("the workspace runs as a package (no entrypoint)");
    }
    if spec.network {
        // Egress is a helper process outside the sandbox: an idle one would outlive a server that stops
        // uncleanly (nothing kills it then), so network runs build their sandbox when they come.
        return Some("network runs get their egress when they start");
    }
    if preimports && !spec.env.is_empty() {
        return Some("environment variables may change how preimported modules load");
    }
    if spec.env.iter().any(|(k, _)| read_at_startup(k)) {
        return Some("an environment variable is read at interpreter start-up");
    }
    None
}

/// The identity of a class: the fields of the build spec that a hand-over cannot change.
pub(crate) fn key(template: &RunSpec, memory_fixed: bool) -> String {
    let l = &template.limits;
    let memory = if memory_fixed { l.memory_bytes } else { 0 };
    format!(
        "{:?}|{:?}|{:?}|{:?}|{}|{}|{}|{}",
        template.program,
        template.binds,
        template.network,
        template.env,
        l.pids,
        l.workspace_bytes,
        l.tmp_bytes,
        memory
    )
}

/// The build spec of a warm sandbox for requests whose cold run is `cold`: the same interpreter, mounts,
/// network and sizes; the interpreter's base environment `base_env` (the request's variables come with the
/// work); the eval runner in `--warm` mode; background CPU weight until claimed.
pub(crate) fn template(
    cold: &RunSpec,
    base_env: Vec<(String, String)>,
    preimport: String,
    runners: crate::program::Runners,
) -> RunSpec {
    let mut spec = RunSpec::new(&cold.program);
    spec.args = vec![runners.eval, "--warm".into()];
    spec.files = runners.files;
    spec.binds = cold.binds.clone();
    spec.network = cold.network.clone();
    spec.cwd = cold.cwd.clone();
    spec.identity = cold.identity;
    spec.extra_outputs = FILES_INDEX + 1;
    spec.limits = cold.limits;
    spec.limits.background = true;
    spec.env = base_env;
    spec.env.push((RESULT_FD_ENV.into(), "3".into()));
    spec.env.push(("PYEXEC_CONTROL_FD".into(), (3 + CONTROL_INDEX).to_string()));
    if !preimport.is_empty() {
        spec.env.push(("PYEXEC_PREIMPORT".into(), preimport));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> ExecutionSpec {
        pyexec_core::Policy::default().spec_from_metadata(serde_json::from_str(json).unwrap()).unwrap()
    }

    #[test]
    fn what_runs_cold() {
        assert_eq!(cold_reason(&spec(r#"{"entrypoint":"main.py"}"#), false), None);
        assert!(cold_reason(&spec(r#"{"entrypoint":"main.py","pre_commands":["echo"]}"#), false).is_some());
        assert!(cold_reason(&spec(r#"{}"#), false).is_some(), "no entrypoint");
        assert!(cold_reason(&spec(r#"{"entrypoint":"main.py","config":{"network_disabled":false}}"#), false).is_some());
        let with_env = spec(r#"{"entrypoint":"main.py","env_vars":["MODE=fast"]}"#);
        assert_eq!(cold_reason(&with_env, false), None);
        assert!(cold_reason(&with_env, true).is_some(), "preimported modules may read it");
        for name in ["PYTHONPATH", "PYTHONHASHSEED", "LD_PRELOAD", "LC_ALL", "LANG", "TZ", "HOME", "PYEXEC_X"] {
            let s = spec(&format!(r#"{{"entrypoint":"main.py","env_vars":["{name}=1"]}}"#));
            assert!(cold_reason(&s, false).is_some(), "{name}");
        }
    }

    fn runners() -> crate::program::Runners {
        crate::program::Runners { eval: "/opt/pyexec/eval_runner.py".into(), session: String::new(), files: Vec::new() }
    }

    #[test]
    fn keys_ignore_what_a_hand_over_sets() {
        let mut cold = RunSpec::new("/usr/bin/python3");
        cold.args = vec!["/work/main.py".into()];
        let a = template(&cold, vec![("PATH".into(), "/usr/bin".into())], String::new(), runners());
        let mut other = cold.clone();
        other.args = vec!["/work/other.py".into()];
        other.limits.memory_bytes *= 2;
        other.limits.timeout *= 2;
        let b = template(&other, vec![("PATH".into(), "/usr/bin".into())], String::new(), runners());
        assert_eq!(key(&a, false), key(&b, false));
        assert_ne!(key(&a, true), key(&b, true), "memory is fixed without cgroups");
        let mut bigger = cold.clone();
        bigger.limits.workspace_bytes *= 2;
        let c = template(&bigger, vec![("PATH".into(), "/usr/bin".into())], String::new(), runners());
        assert_ne!(key(&a, false), key(&c, false));
        let d = template(&cold, vec![("PATH".into(), "/usr/bin".into())], "numpy".into(), runners());
        assert_ne!(key(&a, false), key(&d, false), "preimports are part of the class");
        assert!(a.limits.background && a.extra_outputs == 3 && a.args[1] == "--warm");
    }
}
