//! What a session call observed, as the execution result clients read: the same status, exit-code, error and
//! eval semantics as any execution (through `pyexec_core::finalize`), plus the session's own fields.

use pyexec_core::files_out::{FilesOut, read_tar};
use pyexec_core::outcome::{Interruption, RunOutcome, Termination, finalize};
use pyexec_core::session::SessionCall;
use pyexec_core::{ExecutionResult, ExecutionSpec, Timestamp};

use super::link::{CallCaps, CallObserved};

/// The signal the kernel's OOM killer sends.
const SIGKILL: i32 = 9;

/// The result of a call of session `session_id` recorded as `execution_id`, and the files it wrote (checked, within
/// `caps`). `spec` is the session's; `restarted` says whether the session's interpreter was replaced after it.
#[allow(clippy::too_many_arguments)]
pub fn call_result(
    session_id: &str,
    execution_id: &str,
    call: &SessionCall,
    spec: &ExecutionSpec,
    observed: CallObserved,
    restarted: bool,
    caps: CallCaps,
    started_at: Timestamp,
    finished_at: Timestamp,
) -> (ExecutionResult, Option<FilesOut>) {
    let mut spec = spec.clone();
    spec.eval_last_expr = call.eval_last_expr;
    spec.limits.timeout_seconds = call.timeout.as_secs();
    let termination = match observed.exit {
        Some(code) => Termination::Exited(code),
        None if observed.oom_killed => Termination::Signaled(SIGKILL),
        None => Termination::Exited(1),
    };
    let ended = observed.exit.is_none() && !observed.timed_out;
    let outcome = RunOutcome {
        termination,
        interruption: observed.timed_out.then_some(Interruption::TimedOut),
        oom_killed: observed.oom_killed,
        stdout: observed.stdout.bytes,
        stderr: observed.stderr.bytes,
        stdout_truncated: observed.stdout.truncated,
        stderr_truncated: observed.stderr.truncated,
        result_channel: observed.result_channel,
        started_at,
        finished_at,
    };
    let mut result = finalize(execution_id, &spec, outcome);
    if observed.timed_out && !restarted {
        // Interrupted, the cell printed where it stopped: say so as for any error.
        if let Some(info) = pyexec_core::traceback::parse_error(&result.stderr) {
            result.error_type = Some(info.error_type);
            result.error_line = info.error_line;
        }
    }
    result.session_id = Some(session_id.to_owned());
    result.tenant = spec.tenant.clone();
    result.session_restarted = restarted;
    if ended && result.error.is_none() {
        result.error = Some(if restarted {
            "the session's interpreter exited during the call; the session was restarted and its state is lost".into()
        } else {
            "the session's interpreter exited during the call; the session ended".into()
        });
    } else if restarted && let Some(error) = &mut result.error {
        error.push_str("; the call did not stop when interrupted, so the session was restarted and its state is lost");
    }
    let files = observed.files_tar.and_then(|tar| match read_tar(&tar, caps.files_bytes, caps.files_count) {
        Ok(files) => Some(files),
        Err(e) => {
            tracing::warn!(session_id, error = %e, "a call's files could not be read");
            None
        }
    });
    if let Some(files) = &files {
        result.files = files.files.iter().map(|(f, _)| f.clone()).collect();
        result.files_truncated = files.truncated;
    }
    (result, files)
}

/// Turns the result of a call that was killed on request (`DELETE /api/v1/executions/{id}`) into a `killed` one;
/// `restarted`: the session's interpreter was replaced to stop it.
pub fn mark_killed(result: &mut ExecutionResult, restarted: bool) {
    result.status = pyexec_core::ExecutionStatus::Killed;
    result.exit_code = pyexec_core::outcome::EXIT_KILLED;
    result.error = Some(if restarted {
        "killed on request: the session was restarted and its state is lost".into()
    } else {
        "killed on request".into()
    });
}
