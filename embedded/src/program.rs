//! The command line a sandbox runs for an execution: the interpreter on the entrypoint, through the eval runner in
//! REPL mode, behind a small shell wrapper when there are `pre_commands`.

use std::path::Path;

use pyexec_core::ExecutionSpec;
use pyexec_core::eval::{EVAL_RUNNER_PATH, EVAL_RUNNER_SOURCE, NO_EVAL_FLAG};
use pyexec_core::session::{SESSION_RUNNER_PATH, SESSION_RUNNER_SOURCE};

use crate::interpreters::Interpreter;
use pyexec_core::paths::WORKSPACE_DIR;
use pyexec_sandbox::GeneratedFile;

/// Marks a failed pre-command on its log pipe: `MARKER <index> <exit code>`.
const PRE_FAILED: &str = "___PYEXEC_PRE_COMMAND_FAILED___";
/// Exit status of the wrapper when a pre-command failed.
pub(crate) const PRE_FAILED_EXIT: i32 = 125;

/// What to execute, and which extra output pipe carries what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    pub files: Vec<GeneratedFile>,
    pub extra_outputs: usize,
    /// Extra output carrying the eval result (descriptor 3 + index).
    pub result: Option<usize>,
    /// Extra output carrying the pre-commands' output.
    pub pre_log: Option<usize>,
    /// Extra output carrying the tar of the files the run wrote (docs/sessions.md, "Files out").
    pub files_out: Option<usize>,
}

/// The runners a sandbox of `interpreter` gets: the eval runner (and with `session` the session runner), as
/// bytecode compiled by that interpreter when it could compile them, else as source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Runners {
    /// What to run for the eval runner.
    pub eval: String,
    /// What to run for the session runner.
    pub session: String,
    /// The files that put them there.
    pub files: Vec<GeneratedFile>,
}

/// The eval runner's path when it is bytecode (a sourceless module: importable too, by the session runner).
pub(crate) const EVAL_RUNNER_PYC: &str = "/opt/pyexec/eval_runner.pyc";
/// The session runner's path when it is bytecode.
const SESSION_RUNNER_PYC: &str = "/opt/pyexec/session_runner.pyc";

pub(crate) fn runners(interpreter: &Interpreter, session: bool) -> Runners {
    let file = |path: &str, content: &[u8]| GeneratedFile { path: path.into(), content: content.to_vec(), mode: 0o644 };
    match &interpreter.runners {
        Some(compiled) => {
            let mut files = vec![file(EVAL_RUNNER_PYC, &compiled.eval)];
            if session {
                files.push(file(SESSION_RUNNER_PYC, &compiled.session));
            }
            Runners { eval: EVAL_RUNNER_PYC.into(), session: SESSION_RUNNER_PYC.into(), files }
        }
        None => {
            let mut files = vec![file(EVAL_RUNNER_PATH, EVAL_RUNNER_SOURCE.as_bytes())];
            if session {
                files.push(file(SESSION_RUNNER_PATH, SESSION_RUNNER_SOURCE.as_bytes()));
            }
            Runners { eval: EVAL_RUNNER_PATH.into(), session: SESSION_RUNNER_PATH.into(), files }
        }
    }
}

/// Whether `arg` of an invocation belongs to the eval runner (its path or its flag), not to the program.
pub(crate) fn is_runner_arg(arg: &str) -> bool {
    arg == EVAL_RUNNER_PATH || arg == EVAL_RUNNER_PYC || arg == NO_EVAL_FLAG
}

/// Builds the invocation of `spec` with `python` of `interpreter`. With `collect_files` the program runs under the
/// eval runner (evaluating or not, as the request asks), which reports the files it wrote on an extra output; the
/// caller asks for it only when the entrypoint is a file of the workspace (a missing one gets the interpreter's
/// own error).
pub(crate) fn invocation(
    spec: &ExecutionSpec,
    interpreter: &Interpreter,
    python: &Path,
    collect_files: bool,
) -> Invocation {
    let mut inv = Invocation {
        program: python.display().to_string(),
        args: Vec::new(),
        files: Vec::new(),
        extra_outputs: 0,
        result: None,
        pre_log: None,
        files_out: None,
    };
    let target = match &spec.entrypoint {
        Some(entry) => format!("{WORKSPACE_DIR}/{entry}"),
        None => WORKSPACE_DIR.to_string(),
    };
    if spec.eval_last_expr || collect_files {
        let runners = runners(interpreter, false);
        inv.args.push(runners.eval);
        inv.files = runners.files;
    }
    if spec.eval_last_expr {
        inv.result = Some(inv.extra_outputs);
        inv.extra_outputs += 1;
    } else if collect_files {
        inv.args.push(NO_EVAL_FLAG.into());
    }
    if collect_files {
        inv.files_out = Some(inv.extra_outputs);
        inv.extra_outputs += 1;
    }
    inv.args.push(target);
    inv.args.extend(spec.args.iter().cloned());
    if !spec.pre_commands.is_empty() {
        let log = inv.extra_outputs;
        inv.extra_outputs += 1;
        inv.pre_log = Some(log);
        let mut args = vec!["-c".into(), wrapper(3 + log), "pyexec-pre".into(), spec.pre_commands.len().to_string()];
        args.extend(spec.pre_commands.iter().cloned());
        args.push(inv.program);
        args.append(&mut inv.args);
        inv.program = "/bin/sh".into();
        inv.args = args;
    }
    inv
}

/// Runs each pre-command with `sh -c` (stdin empty, stdout and stderr to the log descriptor), stops at the first
/// failure with a marker line and exit code 125, then closes the log and executes the program.
fn wrapper(fd: usize) -> String {
    format!(
        "n=$1; shift\n\
         i=1\n\
         while [ \"$i\" -le \"$n\" ]; do\n\
         \x20 cmd=$1; shift\n\
         \x20 sh -c \"$cmd\" </dev/null >&{fd} 2>&1 || {{ status=$?; printf '\\n%s %s %s\\n' {PRE_FAILED} \"$i\" \"$status\" >&{fd}; exit {PRE_FAILED_EXIT}; }}\n\
         \x20 i=$((i + 1))\n\
         done\n\
         exec {fd}>&-\n\
         exec \"$@\"\n"
    )
}

/// A failed pre-command: which one (1-based), its exit code, and the log without the marker.
pub(crate) fn pre_command_failure(log: &str) -> Option<(usize, i32, String)> {
    let at = log.rfind(PRE_FAILED)?;
    let mut fields = log[at + PRE_FAILED.len()..].split_whitespace();
    let index = fields.next()?.parse().ok()?;
    let code = fields.next()?.parse().ok()?;
    Some((index, code, log[..at].trim_end().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::interpreters::CompiledRunners;

    fn spec(json: &str) -> ExecutionSpec {
        pyexec_core::Policy::default().spec_from_metadata(serde_json::from_str(json).unwrap()).unwrap()
    }

    fn interpreter(compiled: bool) -> Interpreter {
        Interpreter {
            version: pyexec_core::PythonVersion { minor: 12 },
            full_version: "3.12.0".into(),
            executable: "/usr/bin/python3.12".into(),
            sandbox_executable: "/usr/bin/python3.12".into(),
            mounts: Vec::new(),
            sandbox_env: Vec::new(),
            source: "config",
            stdlib: std::sync::Arc::default(),
            runners: compiled.then(|| {
                std::sync::Arc::new(CompiledRunners { eval: b"eval-pyc".to_vec(), session: b"ses-pyc".to_vec() })
            }),
        }
    }

    #[test]
    fn runners_are_bytecode_when_the_interpreter_compiled_them() {
        let compiled = runners(&interpreter(true), true);
        assert_eq!((compiled.eval.as_str(), compiled.session.as_str()), (EVAL_RUNNER_PYC, SESSION_RUNNER_PYC));
        let contents: Vec<&[u8]> = compiled.files.iter().map(|f| f.content.as_slice()).collect();
        assert_eq!(contents, [&b"eval-pyc"[..], &b"ses-pyc"[..]]);
        let source = runners(&interpreter(false), false);
        assert_eq!(source.eval, EVAL_RUNNER_PATH);
        assert_eq!(source.files.len(), 1, "no session runner unless asked");
        assert_eq!(source.files[0].content, EVAL_RUNNER_SOURCE.as_bytes());
        assert!(is_runner_arg(EVAL_RUNNER_PYC) && is_runner_arg(NO_EVAL_FLAG) && !is_runner_arg("/work/main.py"));
    }

    #[test]
    fn plain_eval_and_wrapped_invocations() {
        let python = Path::new("/usr/bin/python3.12");
        let interp = interpreter(false);
        let inv = invocation(&spec(r#"{"entrypoint":"main.py","script_args":["a"]}"#), &interp, python, false);
        assert_eq!(
            (inv.program.as_str(), inv.args.clone()),
            ("/usr/bin/python3.12", vec!["/work/main.py".into(), "a".into()])
        );
        let mut eval = spec(r#"{"entrypoint":"main.py"}"#);
        eval.eval_last_expr = true;
        let inv = invocation(&eval, &interp, python, false);
        assert_eq!(inv.args, vec![EVAL_RUNNER_PATH.to_string(), "/work/main.py".into()]);
        assert_eq!((inv.result, inv.extra_outputs), (Some(0), 1));
        // Collecting files: the runner, evaluating or not, with one more output.
        let inv = invocation(&eval, &interp, python, true);
        assert_eq!((inv.result, inv.files_out, inv.extra_outputs), (Some(0), Some(1), 2));
        let plain = spec(r#"{"entrypoint":"main.py","script_args":["a"]}"#);
        let inv = invocation(&plain, &interp, python, true);
        assert_eq!(inv.args, [EVAL_RUNNER_PATH, NO_EVAL_FLAG, "/work/main.py", "a"]);
        assert_eq!((inv.result, inv.files_out, inv.extra_outputs), (None, Some(0), 1));
        let pre = spec(r#"{"entrypoint":"main.py","pre_commands":["echo hi","true"]}"#);
        let inv = invocation(&pre, &interp, python, false);
        assert_eq!(inv.program, "/bin/sh");
        assert_eq!(&inv.args[2..], ["pyexec-pre", "2", "echo hi", "true", "/usr/bin/python3.12", "/work/main.py"]);
        assert_eq!(inv.pre_log, Some(0));
        assert!(inv.args[1].contains(">&3"));
    }

    #[test]
    fn failures_are_read_from_the_log() {
        let log = format!("installing...\nboom\n\n{PRE_FAILED} 2 7\n");
        assert_eq!(pre_command_failure(&log), Some((2, 7, "installing...\nboom".into())));
        assert_eq!(pre_command_failure("all fine\n"), None);
    }
}
