//! The result of an execution that ran in a Pod: what the runner reported ([`PodLog`]) and what Kubernetes says
//! about the container and the Pod ([`PodEnd`]) become the same [`ExecutionResult`] the embedded backend would give,
//! through [`crate::finalize`], and one [`Ending`] that says why the run ended. Both come from the same decision
//! (whether the run was interrupted, and by what), so a status and its condition cannot disagree: a program that
//! exits with 124 on its own is `Completed`, never `TimedOut`.
//!
//! The files the program left in `/work` come apart from the result ([`harvest`]): the runner sends the eval
//! runner's tar in file frames, whose bytes are read back here as untrusted input ([`crate::files_out::read_tar`]),
//! and only when they arrived whole.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::frames::PodLog;
use crate::files_out::{FilesOut, read_tar};
use crate::model::{ExecutionResult, ExecutionStatus, OutputFile};
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
        result.skipped_packages = skipped_packages(spec, end.skipped);
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
        result.skipped_packages = skipped_packages(spec, end.skipped);
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
    result.skipped_packages = skipped_packages(spec, end.skipped);
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

/// What detection found and the run went without: the names the API server left out before installing (recorded
/// in the requirements it wrote, [`crate::requirements::skipped_in`]: with nothing else to install no install
/// container ran to report them), then those the install container skipped.
fn skipped_packages(
    spec: &ExecutionSpec,
    from_install: Vec<crate::model::SkippedPackage>,
) -> Vec<crate::model::SkippedPackage> {
    let mut skipped = spec.requirements.listed().map(crate::requirements::skipped_in).unwrap_or_default();
    skipped.extend(from_install);
    skipped
}

/// The caps of the files a run reports (the operator's `files` setting; what it wrote into the run configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilesCaps {
    /// Most bytes of file content kept.
    pub max_bytes: u64,
    /// Most files kept.
    pub max_count: usize,
}

/// What became of the files a run in a Pod created or changed under `/work`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Harvest {
    /// None were reported: the run configuration asked for none, the program did not run under the eval runner, or
    /// it did not run to its end (timeout, failed pre-command, open fence, the runner killed). As on the embedded
    /// backend, the result then lists no files and does not say that any were left out.
    NotReported,
    /// The files (possibly none), read from the runner's tar; `truncated` when some were left out (caps, paths
    /// that are not plain workspace paths, or the eval runner's own marker).
    Kept(FilesOut),
    /// Files were reported but cannot be read back whole (frames rotated away with the container log before they
    /// were read, or a tar that does not parse): none are kept, and the result says that some were left out. The
    /// text says why, for the operator's log.
    Lost(String),
}

impl Harvest {
    /// Sets `files` and `files_truncated` of `result`: the files' metadata (their bytes are kept apart).
    pub fn apply(&self, result: &mut ExecutionResult) {
        match self {
            Harvest::NotReported => {}
            Harvest::Kept(out) => {
                result.files = out.files.iter().map(|(file, _)| file.clone()).collect();
                result.files_truncated = out.truncated;
            }
            Harvest::Lost(_) => {
                result.files = Vec::new();
                result.files_truncated = true;
            }
        }
    }

    /// The files and their bytes (none unless [`Harvest::Kept`]).
    pub fn into_files(self) -> Vec<(OutputFile, Vec<u8>)> {
        match self {
            Harvest::Kept(out) => out.files,
            Harvest::NotReported | Harvest::Lost(_) => Vec::new(),
        }
    }
}

/// The files a run reported ([`crate::pod::protocol::FRAME_FILES`]), read under `caps`. The tar comes from inside
/// the Pod, where the program could have written its own, so it is read as hostile ([`read_tar`]); it is read only
/// when every byte the runner sent ([`crate::pod::EndFrame::files_bytes`]) is here, so a log that lost file frames
/// never passes for a shorter (or corrupt) tar.
pub fn harvest(log: &PodLog, caps: FilesCaps) -> Harvest {
    let Some(end) = &log.end else { return Harvest::NotReported };
    if end.files_truncated {
        return Harvest::Lost(
            "the runner dropped a tar of files larger than the eval runner writes for the caps".into(),
        );
    }
    let Some(sent) = end.files_bytes else { return Harvest::NotReported };
    let read = u64::try_from(log.files.len()).unwrap_or(u64::MAX);
    if read != sent {
        return Harvest::Lost(format!(
            "{read} of the {sent} bytes of file frames were read (the container log lost frames before they were read)"
        ));
    }
    match read_tar(&log.files, caps.max_bytes, caps.max_count) {
        Ok(out) => Harvest::Kept(out),
        Err(e) => Harvest::Lost(e.to_string()),
    }
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
    fn skipped_packages_come_from_the_requirements_and_the_install_container() {
        use crate::model::SkippedPackage;
        let skip = |name: &str, reason: &str| SkippedPackage { name: name.into(), reason: reason.into() };
        let mut spec = spec();
        spec.requirements = crate::Requirements::Listed(
            "six  # pyexec: detected\n# pyexec: skipped reqeusts: not on the auto-install allow-list".into(),
        );
        let end = EndFrame { skipped: vec![skip("surely-not", crate::requirements::NOT_FOUND)], ..Default::default() };
        let t0 = Timestamp::now();
        let Finished { result, .. } = finish("exe", &spec, ended(end), &PodEnd::default(), t0, t0);
        assert_eq!(
            result.skipped_packages,
            [
                skip("reqeusts", "not on the auto-install allow-list"),
                skip("surely-not", "not found in the package index")
            ]
        );
        // No install container ran (nothing else to install): the API server's notes still come through.
        spec.requirements = crate::Requirements::Listed("# pyexec: skipped reqeusts: not allowed".into());
        let Finished { result, .. } = finish("exe", &spec, PodLog::default(), &PodEnd::default(), t0, t0);
        assert_eq!(result.skipped_packages, [skip("reqeusts", "not allowed")]);
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

    const CAPS: FilesCaps = FilesCaps { max_bytes: 1 << 20, max_count: 10 };

    fn with_files(files: &[u8], files_bytes: Option<u64>) -> PodLog {
        let end = EndFrame { exit: 0, files_bytes, ..Default::default() };
        PodLog { files: files.to_vec(), ..ended(end) }
    }

    #[test]
    fn files_are_kept_only_when_their_frames_are_all_there() {
        let tar = crate::test_tar::RawTar::new().file("out.csv", "a,b\n").file("../escape", "x").done();
        let whole = harvest(&with_files(&tar, Some(tar.len() as u64)), CAPS);
        let Harvest::Kept(out) = &whole else { panic!("{whole:?}") };
        assert_eq!(out.files.len(), 1, "hostile paths are left out");
        assert_eq!((out.files[0].0.path.as_str(), out.files[0].1.as_slice()), ("out.csv", &b"a,b\n"[..]));
        let mut result = ExecutionResult::pending("exe");
        whole.apply(&mut result);
        assert_eq!((result.files.len(), result.files_truncated), (1, true));
        assert_eq!(whole.clone().into_files().len(), 1);

        // A frame rotated away: the tar is shorter than the runner said; nothing is kept, and the result says so.
        let cut = harvest(&with_files(&tar[..512], Some(tar.len() as u64)), CAPS);
        assert!(matches!(cut, Harvest::Lost(ref why) if why.contains("were read")), "{cut:?}");
        let mut result = ExecutionResult::pending("exe");
        cut.apply(&mut result);
        assert_eq!((result.files.len(), result.files_truncated), (0, true));
        assert!(cut.into_files().is_empty());
        // Garbage the program wrote to the descriptor itself.
        let junk = b"not a tar archive, not even close to one";
        assert!(matches!(harvest(&with_files(junk, Some(junk.len() as u64)), CAPS), Harvest::Lost(_)));
        let dropped = EndFrame { exit: 0, files_bytes: Some(0), files_truncated: true, ..Default::default() };
        assert!(matches!(harvest(&ended(dropped), CAPS), Harvest::Lost(_)));
    }

    #[test]
    fn no_report_is_no_files_and_not_truncated() {
        for log in [with_files(b"", None), PodLog::default()] {
            let h = harvest(&log, CAPS);
            assert_eq!(h, Harvest::NotReported);
            let mut result = ExecutionResult::pending("exe");
            h.apply(&mut result);
            assert!(result.files.is_empty() && !result.files_truncated);
        }
        // Nothing changed (or the eval runner was killed): an empty tar, no files, nothing left out.
        assert_eq!(harvest(&with_files(b"", Some(0)), CAPS), Harvest::Kept(FilesOut::default()));
    }

    #[test]
    fn a_timed_out_pre_command_is_a_timeout() {
        let end = EndFrame { exit: 124, timed_out: true, ..Default::default() };
        let (status, code, _, ending) = run(ended(end), PodEnd::default());
        assert_eq!((status, code, ending), (ExecutionStatus::Failed, 124, Ending::TimedOut));
    }
}
