//! From what a backend observed to the [`ExecutionResult`] clients see. Both backends report a [`RunOutcome`] and
//! call [`finalize`], so status, exit codes, error fields and eval results mean the same everywhere.

use crate::eval::{apply_report_channel, split_report_marker};
use crate::model::{ExecutionResult, ExecutionStatus};
use crate::spec::ExecutionSpec;
use crate::time::Timestamp;
use crate::traceback::parse_error;

/// Exit code of a timed-out execution (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code of a process killed by SIGKILL: out of memory, or a kill request.
pub const EXIT_KILLED: i32 = 137;

/// How the program's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// Exited with this code.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
}

impl Termination {
    /// Shell convention: the code, or 128 + signal.
    pub fn exit_code(self) -> i32 {
        match self {
            Termination::Exited(code) => code,
            Termination::Signaled(signal) => 128 + signal,
        }
    }
}

/// Why a run ended early, decided by the backend, not by the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    /// The wall-clock limit passed.
    TimedOut,
    /// A kill request (DELETE) stopped it.
    Killed,
}

impl Interruption {
    /// The interruption of a run that was killed on request and/or stopped at its timeout (a kill wins).
    pub fn of(killed: bool, timed_out: bool) -> Option<Interruption> {
        if killed {
            Some(Interruption::Killed)
        } else if timed_out {
            Some(Interruption::TimedOut)
        } else {
            None
        }
    }
}

/// What a backend observed of one run of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// How the main process ended.
    pub termination: Termination,
    /// Set when the backend stopped the run.
    pub interruption: Option<Interruption>,
    /// The memory limit was hit and the kernel killed a process.
    pub oom_killed: bool,
    /// Captured standard output (already capped).
    pub stdout: Vec<u8>,
    /// Captured standard error (already capped).
    pub stderr: Vec<u8>,
    /// Output beyond the cap was dropped.
    pub stdout_truncated: bool,
    /// Output beyond the cap was dropped.
    pub stderr_truncated: bool,
    /// What the eval runner wrote to its result descriptor, when the backend gave it one.
    pub result_channel: Option<Vec<u8>>,
    /// When the program started.
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Timestamp,
}

/// Builds the client-visible result of a run.
///
/// - timeout: `failed`, exit code 124, `execution timeout after Ns`, output kept;
/// - kill request: `killed`, exit code 137, output kept;
/// - otherwise `completed` with the program's exit code (128 + signal when killed by one, so 137 on OOM);
/// - a non-zero exit with a traceback on stderr fills `error_type`, `error_line` and `error_message`;
/// - in eval mode a successful run reports the trailing expression in `result`.
pub fn finalize(execution_id: &str, spec: &ExecutionSpec, outcome: RunOutcome) -> ExecutionResult {
    let mut stdout = String::from_utf8_lossy(&outcome.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&outcome.stderr).into_owned();
    let mut result = ExecutionResult::pending(execution_id);
    result.started_at = Some(outcome.started_at);
    result.finished_at = Some(outcome.finished_at);
    result.duration_ms = outcome.finished_at.millis_since(outcome.started_at);
    result.oom_killed = outcome.oom_killed;
    result.stdout_truncated = outcome.stdout_truncated;
    result.stderr_truncated = outcome.stderr_truncated;

    match outcome.interruption {
        Some(Interruption::TimedOut) => {
            result.status = ExecutionStatus::Failed;
            result.exit_code = EXIT_TIMEOUT;
            result.error = Some(timeout_message(spec.limits.timeout_seconds));
        }
        Some(Interruption::Killed) => {
            result.status = ExecutionStatus::Killed;
            result.exit_code = EXIT_KILLED;
        }
        None => {
            result.status = ExecutionStatus::Completed;
            result.exit_code = outcome.termination.exit_code();
            if result.exit_code != 0
                && !stderr.is_empty()
                && let Some(info) = parse_error(&stderr)
            {
                result.error_type = Some(info.error_type);
                result.error_line = info.error_line;
                result.error_message = info.error_message;
            }
            if spec.eval_last_expr {
                // Display outputs count whatever the exit; the value only when the program succeeded.
                let report = match &outcome.result_channel {
                    Some(channel) => apply_report_channel(&mut stdout, channel),
                    None => {
                        let (cleaned, report) = split_report_marker(&stdout);
                        stdout = cleaned;
                        report
                    }
                };
                if let Some(report) = report {
                    if result.exit_code == 0 {
                        result.result = report.result;
                    }
                    result.outputs = report.outputs;
                }
            }
        }
    }
    result.stdout = stdout;
    result.stderr = stderr;
    result
}

/// The deterministic timeout message (the original sometimes said `context deadline exceeded` instead).
pub fn timeout_message(timeout_seconds: u64) -> String {
    format!("execution timeout after {timeout_seconds}s")
}

/// A `failed` result for a run that could not start or finish for a reason outside the program (install failure,
/// sandbox error, server restart). Failed results always carry a non-zero exit code.
pub fn failed(
    execution_id: &str,
    error: impl Into<String>,
    started_at: Option<Timestamp>,
    stderr: impl Into<String>,
) -> ExecutionResult {
    let mut result = ExecutionResult::pending(execution_id);
    let finished = Timestamp::now();
    result.status = ExecutionStatus::Failed;
    result.exit_code = 1;
    result.error = Some(error.into());
    result.stderr = stderr.into();
    result.started_at = started_at;
    result.finished_at = Some(finished);
    result.duration_ms = started_at.map(|s| finished.millis_since(s)).unwrap_or(0);
    result
}

/// The result of an execution whose pre-command number `index` (0-based) failed with `code`: `failed`, the
/// command's exit code, and its output in `pre_commands_output` and `stderr`.
pub fn pre_command_failed(
    execution_id: &str,
    spec: &ExecutionSpec,
    index: usize,
    code: i32,
    output: String,
    started_at: Timestamp,
    finished_at: Timestamp,
) -> ExecutionResult {
    let command = spec.pre_commands.get(index).map(String::as_str).unwrap_or("");
    let mut result = failed(
        execution_id,
        format!("pre_commands[{index}] failed with exit code {code}: {command}"),
        Some(started_at),
        output.clone(),
    );
    // As the original's `pre && ... && python` chain: the failed command's exit code.
    result.exit_code = if code == 0 { 1 } else { code };
    result.finished_at = Some(finished_at);
    result.duration_ms = finished_at.millis_since(started_at);
    // Commands that printed nothing leave the key out, as every empty value (docs/api.md, "The result").
    result.pre_commands_output = (!output.is_empty()).then_some(output);
    result
}

/// The result of an execution killed before its program started (while its dependencies were installed).
pub fn killed_before_start(execution_id: &str, accepted_at: Timestamp) -> ExecutionResult {
    let mut result = failed(execution_id, "", Some(accepted_at), "");
    result.status = ExecutionStatus::Killed;
    result.exit_code = EXIT_KILLED;
    result.error = None;
    result
}

/// What a failed install says on every backend: `installing dependencies failed: <why>`.
pub fn install_failure_message(why: impl std::fmt::Display) -> String {
    format!("installing dependencies failed: {why}")
}

/// A `failed` result for an execution whose dependencies could not be installed: [`install_failure_message`],
/// and the installer's last output as `stderr`, less what the message already says ([`install_log_beside`]).
pub fn install_failed(
    execution_id: &str,
    why: impl std::fmt::Display,
    started_at: Option<Timestamp>,
    log_tail: &str,
) -> ExecutionResult {
    let message = install_failure_message(why);
    let stderr = install_log_beside(&message, log_tail);
    failed(execution_id, message, started_at, stderr)
}

/// The installer's output `log` without the lines that `error` (the one-line reason of a failed install) already
/// quotes, for `stderr`: a client reads the reason once, and so does the CLI's user, who sees `stderr` and then the
/// `error`. A line counts as quoted when its text, without the installer's marker (uv's `error:`, `cause:`, `×`,
/// `├─▶`, `╰─▶`, `Because`; pip's `ERROR:`), is part of `error`. The other lines (progress, hints, further causes) stay.
pub fn install_log_beside(error: &str, log: &str) -> String {
    const MARKERS: [&str; 7] = ["error:", "ERROR:", "cause:", "Caused by:", "×", "├─▶", "╰─▶"];
    let quoted = |line: &str| {
        let mut text = line.trim();
        if let Some(rest) = MARKERS.iter().find_map(|m| text.strip_prefix(m)) {
            text = rest.trim_start();
        }
        let text = text.strip_prefix("Because ").unwrap_or(text).trim_end();
        !text.is_empty() && error.contains(text)
    };
    let rest: String = log.split_inclusive('\n').filter(|line| !quoted(line)).collect();
    if rest.trim().is_empty() { String::new() } else { rest }
}

/// `error` of an execution killed because the synchronous request waiting for it went away.
pub const CLIENT_GONE: &str = "the client disconnected before the execution finished";

/// `error` of an execution the server's stop (or crash) interrupted.
pub const INTERRUPTED_BY_STOP: &str = "the server stopped while the execution was running; it was not completed";

/// `record` (a pending execution) killed while it waited in the queue: `killed`, its program never ran; with
/// `client_gone`, the error says the synchronous client went away.
pub fn killed_while_queued(mut record: ExecutionResult, client_gone: bool) -> ExecutionResult {
    record.status = ExecutionStatus::Killed;
    record.exit_code = EXIT_KILLED;
    record.finished_at = Some(Timestamp::now());
    record.error = client_gone.then(|| CLIENT_GONE.to_owned());
    record
}

/// `record` (a running execution) that the server's stop interrupted, by its shutdown or, found at the next
/// start, by a crash: `failed` with [`INTERRUPTED_BY_STOP`], never `killed` (nobody asked for it).
pub fn interrupted_by_stop(mut record: ExecutionResult) -> ExecutionResult {
    let now = Timestamp::now();
    record.status = ExecutionStatus::Failed;
    record.exit_code = 1;
    record.error = Some(INTERRUPTED_BY_STOP.to_owned());
    record.finished_at = Some(now);
    if record.duration_ms == 0 {
        record.duration_ms = record.started_at.map(|s| now.millis_since(s)).unwrap_or(0);
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Policy;

    fn spec(eval: bool) -> ExecutionSpec {
        let mut spec = Policy::default().spec_from_metadata(Default::default()).unwrap();
        spec.eval_last_expr = eval;
        spec
    }

    fn outcome(termination: Termination, stdout: &str, stderr: &str) -> RunOutcome {
        let started = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
        RunOutcome {
            termination,
            interruption: None,
            oom_killed: false,
            stdout: stdout.into(),
            stderr: stderr.into(),
            stdout_truncated: false,
            stderr_truncated: false,
            result_channel: None,
            started_at: started,
            finished_at: started.plus(std::time::Duration::from_millis(250)),
        }
    }

    #[test]
    fn success() {
        let r = finalize("exe_1", &spec(false), outcome(Termination::Exited(0), "hi\n", ""));
        assert_eq!(r.status, ExecutionStatus::Completed);
        assert_eq!((r.exit_code, r.stdout.as_str(), r.duration_ms), (0, "hi\n", 250));
        assert_eq!(r.error_type, None);
    }

    #[test]
    fn exceptions_fill_the_error_fields_on_every_endpoint() {
        let tb = "Traceback (most recent call last):\n  File \"/work/main.py\", line 1, in <module>\n    x\nNameError: name 'x' is not defined\n";
        let r = finalize("exe_1", &spec(false), outcome(Termination::Exited(1), "", tb));
        assert_eq!(r.error_type.as_deref(), Some("NameError"));
        assert_eq!(r.error_line, Some(1));
        assert_eq!(r.error_message.as_deref(), Some("name 'x' is not defined"));
        assert_eq!(r.error, None, "a program's own failure is not an execution failure");
    }

    #[test]
    fn oom_is_completed_with_137() {
        let mut o = outcome(Termination::Signaled(9), "", "");
        o.oom_killed = true;
        let r = finalize("exe_1", &spec(false), o);
        assert_eq!((r.status, r.exit_code, r.oom_killed), (ExecutionStatus::Completed, 137, true));
    }

    #[test]
    fn timeout_keeps_output() {
        let mut o = outcome(Termination::Signaled(9), "partial\n", "");
        o.interruption = Some(Interruption::TimedOut);
        let r = finalize("exe_1", &spec(false), o);
        assert_eq!(r.status, ExecutionStatus::Failed);
        assert_eq!(r.exit_code, 124);
        assert_eq!(r.error.as_deref(), Some("execution timeout after 300s"));
        assert_eq!(r.stdout, "partial\n");
    }

    #[test]
    fn killed_is_terminal_with_137() {
        let mut o = outcome(Termination::Signaled(9), "", "");
        o.interruption = Some(Interruption::Killed);
        let r = finalize("exe_1", &spec(false), o);
        assert_eq!((r.status, r.exit_code), (ExecutionStatus::Killed, 137));
    }

    #[test]
    fn eval_results_from_marker_and_channel() {
        let r = finalize("exe_1", &spec(true), outcome(Termination::Exited(0), "x\n___PYEXEC_RESULT___\"4\"\n", ""));
        assert_eq!((r.stdout.as_str(), r.result.as_deref()), ("x", Some("4")));
        let mut o = outcome(Termination::Exited(0), "computing...\n", "");
        o.result_channel = Some(b"\"1024\"".to_vec());
        let r = finalize("exe_1", &spec(true), o);
        assert_eq!((r.stdout.as_str(), r.result.as_deref()), ("computing...", Some("1024")));
        let mut o = outcome(Termination::Exited(0), "hello\n", "");
        o.result_channel = Some(Vec::new());
        let r = finalize("exe_1", &spec(true), o);
        assert_eq!((r.stdout.as_str(), r.result), ("hello\n", None));
        let r = finalize("exe_1", &spec(false), outcome(Termination::Exited(0), "___PYEXEC_RESULT___\"4\"\n", ""));
        assert_eq!(r.result, None, "no result outside eval mode");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let mut o = outcome(Termination::Exited(0), "", "");
        o.stdout = vec![b'a', 0xff, b'b'];
        let r = finalize("exe_1", &spec(false), o);
        assert_eq!(r.stdout, "a\u{fffd}b");
    }

    #[test]
    fn a_failed_install_says_its_reason_once() {
        // As uv 0.13.9 writes it, and the `error` the embedded backend makes of it.
        let log = "error: No solution found when resolving dependencies\n  cause: Because nope-xyz was not found in \
                   the package registry and you require nope-xyz==1.0, we can conclude that your requirements are \
                   unsatisfiable.\n";
        let error = "installing dependencies failed: No solution found when resolving dependencies: nope-xyz was not \
                     found in the package registry and you require nope-xyz==1.0, we can conclude that your \
                     requirements are unsatisfiable.";
        assert_eq!(install_log_beside(error, log), "", "every line is in `error`");
        // The package index out of reach: the first cause is in `error`, the deeper ones are not.
        let log = "Resolved 3 packages in 12ms\nerror: Failed to fetch: `https://pypi.org/simple/six/`\n  cause: Request \
                   failed after 3 retries\n  cause: dns error: failed to lookup address information\n";
        let error = "installing dependencies failed: Failed to fetch: `https://pypi.org/simple/six/`: Request failed \
                     after 3 retries";
        assert_eq!(
            install_log_beside(error, log),
            "Resolved 3 packages in 12ms\n  cause: dns error: failed to lookup address information\n",
            "what `error` does not say stays"
        );
        assert_eq!(install_log_beside("installing dependencies failed: killed", "killed\n\n"), "");
    }

    #[test]
    fn failed_has_a_non_zero_exit_code() {
        let r = failed("exe_1", "installing dependencies failed", None, "tail");
        assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 1));
        assert!(r.finished_at.is_some());
    }

    #[test]
    fn ends_outside_the_program_have_one_wording() {
        let r = install_failed("exe_1", "numpy has no binary wheel", None, "log");
        assert_eq!(r.error.as_deref(), Some("installing dependencies failed: numpy has no binary wheel"));
        assert_eq!((r.status, r.exit_code, r.stderr.as_str()), (ExecutionStatus::Failed, 1, "log"));
        let pip = "Collecting docopt\nERROR: No matching distribution found for docopt\n";
        let r = install_failed("exe_1", "No matching distribution found for docopt (only binary wheels)", None, pip);
        assert_eq!(r.stderr, "Collecting docopt\n", "the reason is in `error` only");

        let queued = ExecutionResult::pending("exe_2");
        let r = killed_while_queued(queued.clone(), false);
        assert_eq!((r.status, r.exit_code, r.error.as_deref()), (ExecutionStatus::Killed, EXIT_KILLED, None));
        assert!(r.finished_at.is_some());
        let r = killed_while_queued(queued, true);
        assert_eq!(r.error.as_deref(), Some(CLIENT_GONE));

        let mut running = ExecutionResult::pending("exe_3");
        running.status = ExecutionStatus::Running;
        running.started_at = Some(Timestamp::parse("2026-01-01T00:00:00Z").unwrap());
        let r = interrupted_by_stop(running);
        assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 1));
        assert_eq!(r.error.as_deref(), Some(INTERRUPTED_BY_STOP));
        assert!(r.duration_ms > 0, "counted from the start to the interruption");
    }
}
