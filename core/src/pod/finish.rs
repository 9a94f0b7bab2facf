//! The result of an execution that ran in a Pod: what the runner reported ([`PodLog`]) and what Kubernetes says
//! about the container and the Pod ([`PodEnd`]) become the same [`ExecutionResult`] the embedded backend would give,
//! through [`crate::finalize`], and one [`Ending`] that says why the run ended. Both come from the same decision
//! (whether the run was interrupted, and by what), so a status and its condition cannot disagree: a program that
//! exits with 124 on its own is `Completed`, never `TimedOut`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::frames::PodLog;
use crate::model::{ExecutionResult, ExecutionStatus};
use crate::outcome::{Interruption, RunOutcome, Termination, failed, finalize, pre_command_failed};
use crate::spec::ExecutionSpec;
use crate::time::Timestamp;

/// What Kubernetes says about the main container and the Pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodEnd {
    /// The main container's exit code, when it terminated.
    pub exit_code: Option<i32>,
    /// The container was OOM-killed (`reason: OOMKilled`).
    pub oom_killed: bool,
    /// The Pod's `activeDeadlineSeconds` passed.
    pub deadline_exceeded: bool,
    /// The execution was killed on request.
    pub killed: bool,
}

/// Why an execution that ran in a Pod ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The program ran to an exit code, whichever (124 included, when the program chose it).
    Completed,
    /// The program was killed for using more memory than its limit.
    OomKilled,
    /// The runner stopped the program at its timeout, or the Pod's deadline passed.
    TimedOut,
    /// A kill request stopped it.
    Killed,
    /// A pre-command failed; the program did not run.
    PreCommandFailed,
    /// The runner found the network fence open (something it must not reach answered); nothing ran.
    NetworkNotFenced,
    /// The program failed having filled its workspace (`ENOSPC`, [`crate::pod::EndFrame::disk_full`]).
    DiskLimitExceeded,
}

impl Ending {
    /// The reason of the resource's `Finished` condition.
    pub fn reason(self) -> &'static str {
        match self {
            Ending::Completed => "Completed",
            Ending::OomKilled => "OOMKilled",
            Ending::TimedOut => "TimedOut",
            Ending::Killed => "Killed",
            Ending::PreCommandFailed => "PreCommandFailed",
            Ending::NetworkNotFenced => "NetworkNotFenced",
            Ending::DiskLimitExceeded => "DiskLimitExceeded",
        }
    }
}

/// An execution that ran in a Pod, finished.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The result clients see.
    pub result: ExecutionResult,
    /// Why it ended.
    pub ending: Ending,
}

/// The result of an execution that ran in a Pod.
pub fn finish(
    execution_id: &str,
    spec: &ExecutionSpec,
    log: PodLog,
    pod: &PodEnd,
    started_at: Timestamp,
    finished_at: Timestamp,
) -> Finished {
    let end = log.end.clone().unwrap_or_default();
    let pre_output = (!log.pre_output.is_empty()).then(|| String::from_utf8_lossy(&log.pre_output).into_owned());
    // Interrupted by whom: only the runner's own word (it stopped the program at its deadline), the Pod's deadline
    // or a kill request count; an exit code never does.
    let interruption = Interruption::of(pod.killed, end.timed_out || pod.deadline_exceeded);
    if let (Some(open), false) = (&end.fence_open, pod.killed) {
        let message = format!("the network fence was not in place: {open} was reachable; nothing was run");
        let mut result = failed(execution_id, message, Some(started_at), "");
        result.finished_at = Some(finished_at);
        result.duration_ms = finished_at.millis_since(started_at);
        result.installed_packages = end.installed;
        return Finished { result, ending: Ending::NetworkNotFenced };
    }
    if let (Some((index, code)), false) = (end.pre_failed, pod.killed) {
        let mut result = pre_command_failed(
            execution_id,
            spec,
            index,
            code,
            pre_output.unwrap_or_default(),
            started_at,
            finished_at,
        );
        result.installed_packages = end.installed;
        return Finished { result, ending: Ending::PreCommandFailed };
    }
    let termination = match (&log.end, pod.exit_code) {
        (Some(end), _) => match end.signal {
            Some(signal) => Termination::Signaled(signal),
            None => Termination::Exited(end.exit),
        },
        // The runner itself was killed (the whole container on out-of-memory): trust the container.
        (None, Some(code)) if code > 128 => Termination::Signaled(code - 128),
        (None, Some(code)) => Termination::Exited(code),
        (None, None) => Termination::Signaled(9),
    };
    // Out of memory: the whole container (Kubernetes says `OOMKilled`), or the program alone (the runner saw it die
    // of SIGKILL while the memory cgroup's OOM count rose).
    let oom_killed = pod.oom_killed || end.oom_killed;
    let ending = match interruption {
        Some(Interruption::Killed) => Ending::Killed,
        Some(Interruption::TimedOut) => Ending::TimedOut,
        None if oom_killed => Ending::OomKilled,
        None => Ending::Completed,
    };
    let output_lost = log.output_lost();
    let disk_full = ending == Ending::Completed && end.disk_full && termination.exit_code() != 0;
    let raw = RunOutcome {
        termination,
        interruption,
        oom_killed,
        stdout: log.stdout,
        stderr: log.stderr,
        stdout_truncated: end.stdout_truncated || output_lost,
        stderr_truncated: end.stderr_truncated || output_lost,
        // Present (possibly empty) whenever the eval runner had its pipe: then, as on the embedded backend, only the
        // pipe counts, never a marker the program printed.
        result_channel: end.result.as_deref().and_then(|r| STANDARD.decode(r).ok()),
        started_at,
        finished_at,
    };
    let mut result = finalize(execution_id, spec, raw);
    result.installed_packages = end.installed;
    result.pre_commands_output = pre_output;
    let ending = if disk_full {
        // The program failed because its workspace was full: the execution failed (as when the kubelet evicts the
        // Pod for it), with the output kept.
        result.status = ExecutionStatus::Failed;
        result.error = Some(disk_limit_message(spec.limits.disk_mb));
        Ending::DiskLimitExceeded
    } else {
        ending
    };
    if output_lost {
        // The exit code and the end of the output are right; the beginning is gone. Say so rather than pass the
        // tail off as the whole output.
        let lost = OUTPUT_LOST.to_string();
        result.error = Some(match result.error.take() {
            Some(error) => format!("{error}; {lost}"),
            None => lost,
        });
    }
    Finished { result, ending }
}

/// The error of an execution that filled its workspace (`diskMB`), the same as when the Pod is evicted for it.
pub fn disk_limit_message(disk_mb: u64) -> String {
    format!("disk limit of {disk_mb} MB exceeded")
}

/// The error of a result whose output lost frames ([`PodLog::output_lost`]).
pub const OUTPUT_LOST: &str =
    "output_lost: the beginning of the output was lost (the container log was rotated before it was read)";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::protocol::EndFrame;
    use crate::spec::Policy;

    fn spec() -> ExecutionSpec {
        let mut spec = Policy::default().spec_from_metadata(Default::default()).unwrap();
        spec.pre_commands = vec!["true".into(), "exit 4".into()];
        spec
    }

    fn ended(e: EndFrame) -> PodLog {
        PodLog { end: Some(e), ..PodLog::default() }
    }

    fn run(log: PodLog, pod: PodEnd) -> (ExecutionStatus, i32, Option<String>, Ending) {
        let t0 = Timestamp::now();
        let Finished { result, ending } = finish("exe", &spec(), log, &pod, t0, t0);
        (result.status, result.exit_code, result.error, ending)
    }

    #[test]
    fn outcomes_mean_what_they_mean_on_the_embedded_backend() {
        let completed = run(ended(EndFrame { exit: 0, ..Default::default() }), PodEnd::default());
        assert_eq!(completed, (ExecutionStatus::Completed, 0, None, Ending::Completed));

        let timed_out = run(ended(EndFrame { exit: 124, timed_out: true, ..Default::default() }), PodEnd::default());
        let timeout = Some("execution timeout after 300s".to_string());
        assert_eq!(timed_out, (ExecutionStatus::Failed, 124, timeout.clone(), Ending::TimedOut));

        let pre = EndFrame { exit: 4, pre_failed: Some((1, 4)), ..Default::default() };
        let log = PodLog { pre_output: b"bad\n".to_vec(), end: Some(pre), ..PodLog::default() };
        let failed = Some("pre_commands[1] failed with exit code 4: exit 4".to_string());
        assert_eq!(run(log, PodEnd::default()), (ExecutionStatus::Failed, 4, failed, Ending::PreCommandFailed));

        let oom = PodEnd { exit_code: Some(137), oom_killed: true, ..PodEnd::default() };
        assert_eq!(run(PodLog::default(), oom), (ExecutionStatus::Completed, 137, None, Ending::OomKilled));

        let killed = PodEnd { killed: true, ..PodEnd::default() };
        assert_eq!(run(PodLog::default(), killed), (ExecutionStatus::Killed, 137, None, Ending::Killed));

        let deadline = PodEnd { deadline_exceeded: true, ..PodEnd::default() };
        let t0 = Timestamp::now();
        let partial = PodLog { stdout: b"partial".to_vec(), ..PodLog::default() };
        let Finished { result, ending } = finish("exe", &spec(), partial, &deadline, t0, t0);
        assert_eq!(
            (result.status, result.exit_code, result.stdout.as_str()),
            (ExecutionStatus::Failed, 124, "partial")
        );
        assert_eq!(ending, Ending::TimedOut);
    }

    #[test]
    fn exiting_124_is_not_a_timeout() {
        let own = run(
            ended(EndFrame { exit: 124, ..Default::default() }),
            PodEnd { exit_code: Some(124), ..Default::default() },
        );
        assert_eq!(own, (ExecutionStatus::Completed, 124, None, Ending::Completed));
        // No summary (the runner was killed) and the container's own 124: still the program's code.
        let bare = run(PodLog::default(), PodEnd { exit_code: Some(124), ..Default::default() });
        assert_eq!(bare, (ExecutionStatus::Completed, 124, None, Ending::Completed));
    }

    #[test]
    fn an_open_fence_fails_and_says_what_was_reachable() {
        let end = EndFrame { exit: 1, fence_open: Some("the cloud metadata endpoint".into()), ..Default::default() };
        let (status, code, error, ending) = run(ended(end), PodEnd { exit_code: Some(1), ..Default::default() });
        assert_eq!((status, code, ending), (ExecutionStatus::Failed, 1, Ending::NetworkNotFenced));
        assert_eq!(
            error.as_deref(),
            Some("the network fence was not in place: the cloud metadata endpoint was reachable; nothing was run")
        );
        assert_eq!(Ending::NetworkNotFenced.reason(), "NetworkNotFenced");
    }

    #[test]
    fn an_oom_kill_of_the_program_alone_is_an_oom_kill() {
        // The container lived on and exited with the runner's code: Kubernetes says nothing, the runner does.
        let end = EndFrame { exit: 137, signal: Some(9), oom_killed: true, ..Default::default() };
        let t0 = Timestamp::now();
        let pod = PodEnd { exit_code: Some(137), ..PodEnd::default() };
        let Finished { result, ending } = finish("exe", &spec(), ended(end), &pod, t0, t0);
        assert_eq!(
            (result.status, result.exit_code, result.oom_killed, ending),
            (ExecutionStatus::Completed, 137, true, Ending::OomKilled)
        );
        // A SIGKILL without the counter's word stays a signal.
        let end = EndFrame { exit: 137, signal: Some(9), ..Default::default() };
        let Finished { result, ending } = finish("exe", &spec(), ended(end), &pod, t0, t0);
        assert_eq!((result.oom_killed, ending), (false, Ending::Completed));
    }

    #[test]
    fn a_log_that_lost_its_head_says_so() {
        let end = EndFrame { exit: 0, frames: Some(2), ..Default::default() };
        let log = PodLog { stdout: b"tail\n".to_vec(), end: Some(end.clone()), frames_read: 1, ..PodLog::default() };
        let t0 = Timestamp::now();
        let Finished { result, .. } = finish("exe", &spec(), log, &PodEnd::default(), t0, t0);
        assert!(result.stdout_truncated && result.stderr_truncated);
        assert_eq!(result.error.as_deref(), Some(OUTPUT_LOST));
        assert_eq!(result.stdout, "tail\n");
        let whole =
            PodLog { stdout: b"all\n".to_vec(), end: Some(end), started: true, frames_read: 2, ..PodLog::default() };
        let Finished { result, .. } = finish("exe", &spec(), whole, &PodEnd::default(), t0, t0);
        assert!(!result.stdout_truncated && result.error.is_none());
    }

    #[test]
    fn a_program_that_filled_its_workspace_failed_on_its_disk_limit() {
        let end = EndFrame { exit: 1, disk_full: true, ..Default::default() };
        let log = PodLog { stdout: b"writing\n".to_vec(), stderr: b"OSError: [Errno 28]\n".to_vec(), ..ended(end) };
        let t0 = Timestamp::now();
        let mut spec = spec();
        spec.limits.disk_mb = 50;
        let pod = PodEnd { exit_code: Some(1), ..PodEnd::default() };
        let Finished { result, ending } = finish("exe", &spec, log, &pod, t0, t0);
        assert_eq!(
            (result.status, result.exit_code, result.error.as_deref(), ending),
            (ExecutionStatus::Failed, 1, Some("disk limit of 50 MB exceeded"), Ending::DiskLimitExceeded)
        );
        assert_eq!((result.stdout.as_str(), result.stderr.as_str()), ("writing\n", "OSError: [Errno 28]\n"));
        assert_eq!(Ending::DiskLimitExceeded.reason(), "DiskLimitExceeded");
        // A program that succeeded, or one stopped at its timeout, is not about the disk.
        let ok = run(ended(EndFrame { exit: 0, disk_full: true, ..Default::default() }), PodEnd::default());
        assert_eq!(ok, (ExecutionStatus::Completed, 0, None, Ending::Completed));
        let late = EndFrame { exit: 124, timed_out: true, disk_full: true, ..Default::default() };
        assert_eq!(run(ended(late), PodEnd::default()).3, Ending::TimedOut);
    }

    #[test]
    fn a_timed_out_pre_command_is_a_timeout() {
        let end = EndFrame { exit: 124, timed_out: true, ..Default::default() };
        let (status, code, _, ending) = run(ended(end), PodEnd::default());
        assert_eq!((status, code, ending), (ExecutionStatus::Failed, 124, Ending::TimedOut));
    }
}
