//! Executions in Kubernetes Pods: the in-Pod runner ([`RUNNER_SOURCE`]) and the reading of what it reports.
//!
//! The runner writes the program's stdout and stderr, the pre-commands' output and a final summary as framed lines
//! on the main container's log (see `python/pod_runner.py` for the format and why the frames carry a nonce).
//! [`parse_log`] reads them back and [`finish`] turns them, with what Kubernetes says about the container, into
//! the same [`ExecutionResult`] the embedded backend would give: both go through [`crate::finalize`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::model::ExecutionResult;
use crate::outcome::{Interruption, RunOutcome, Termination, finalize, pre_command_failed};
use crate::spec::ExecutionSpec;
use crate::time::Timestamp;

/// The runner's source, placed in every execution's ConfigMap.
pub const RUNNER_SOURCE: &str = include_str!("../python/pod_runner.py");

/// The runner's file name in the Pod's run directory (next to the eval runner).
pub const RUNNER_FILE: &str = "pod_runner.py";

/// What the runner reported, read back from the container log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodLog {
    /// The program's standard output.
    pub stdout: Vec<u8>,
    /// The program's standard error.
    pub stderr: Vec<u8>,
    /// The pre-commands' output.
    pub pre_output: Vec<u8>,
    /// The final summary; `None` when the runner did not get to write it (the container was killed).
    pub end: Option<EndFrame>,
}

/// The runner's final frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct EndFrame {
    /// Exit code (128 + signal when the program died of a signal).
    pub exit: i32,
    /// The signal that ended the program.
    #[serde(default)]
    pub signal: Option<i32>,
    /// The timeout stopped it.
    #[serde(default)]
    pub timed_out: bool,
    /// A pre-command failed: (0-based index, exit code).
    #[serde(default)]
    pub pre_failed: Option<(usize, i32)>,
    /// What the eval runner wrote to its result pipe, base64.
    #[serde(default)]
    pub result: Option<String>,
    /// `name==version` of the packages installed by the install container.
    #[serde(default)]
    pub installed: Vec<String>,
    /// Output beyond the runner's cap was dropped.
    #[serde(default)]
    pub stdout_truncated: bool,
    /// Output beyond the runner's cap was dropped.
    #[serde(default)]
    pub stderr_truncated: bool,
}

/// Reads the frames carrying `nonce` out of a container log; every other line is ignored.
pub fn parse_log(log: &[u8], nonce: &str) -> PodLog {
    let mut out = PodLog::default();
    let prefix = format!("\x1fpyexec {nonce} ");
    for line in log.split(|b| *b == b'\n') {
        let Some(rest) = line.strip_prefix(prefix.as_bytes()) else { continue };
        let Some((&kind, data)) = rest.split_first() else { continue };
        let Some(data) = data.strip_prefix(b" ") else { continue };
        let Ok(data) = STANDARD.decode(data) else { continue };
        match kind {
            b'o' => out.stdout.extend_from_slice(&data),
            b'e' => out.stderr.extend_from_slice(&data),
            b'p' => out.pre_output.extend_from_slice(&data),
            b'x' => out.end = serde_json::from_slice(&data).ok(),
            _ => {}
        }
    }
    out
}

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

/// The result of an execution that ran in a Pod.
pub fn finish(
    execution_id: &str,
    spec: &ExecutionSpec,
    log: PodLog,
    pod: &PodEnd,
    started_at: Timestamp,
    finished_at: Timestamp,
) -> ExecutionResult {
    let end = log.end.clone().unwrap_or_default();
    let pre_output = (!log.pre_output.is_empty()).then(|| String::from_utf8_lossy(&log.pre_output).into_owned());
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
        return result;
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
    let interruption = Interruption::of(pod.killed, end.timed_out || pod.deadline_exceeded);
    let raw = RunOutcome {
        termination,
        interruption,
        oom_killed: pod.oom_killed,
        stdout: log.stdout,
        stderr: log.stderr,
        stdout_truncated: end.stdout_truncated,
        stderr_truncated: end.stderr_truncated,
        result_channel: end.result.as_deref().and_then(|r| STANDARD.decode(r).ok()).filter(|r| !r.is_empty()),
        started_at,
        finished_at,
    };
    let mut result = finalize(execution_id, spec, raw);
    result.installed_packages = end.installed;
    result.pre_commands_output = pre_output;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExecutionStatus;
    use crate::spec::Policy;

    fn frame(nonce: &str, kind: char, data: &[u8]) -> String {
        format!("\x1fpyexec {nonce} {kind} {}\n", STANDARD.encode(data))
    }

    #[test]
    fn only_frames_with_the_nonce_count() {
        let mut log = String::from("runner noise\n");
        log += &frame("n1", 'o', b"hello ");
        log += &frame("forged", 'o', b"FORGED");
        log += &frame("n1", 'e', b"oops\n");
        log += &frame("n1", 'o', b"world\n");
        log += &frame("n1", 'p', b"pre\n");
        log += "\x1fpyexec n1 o !!!not base64\n";
        log += &frame("n1", 'x', br#"{"exit":3,"installed":["six==1.17.0"]}"#);
        let parsed = parse_log(log.as_bytes(), "n1");
        assert_eq!(parsed.stdout, b"hello world\n");
        assert_eq!((parsed.stderr.as_slice(), parsed.pre_output.as_slice()), (&b"oops\n"[..], &b"pre\n"[..]));
        assert_eq!(parsed.end.map(|e| (e.exit, e.installed)), Some((3, vec!["six==1.17.0".to_string()])));
    }

    fn spec() -> ExecutionSpec {
        let mut spec = Policy::default().spec_from_metadata(Default::default()).unwrap();
        spec.pre_commands = vec!["true".into(), "exit 4".into()];
        spec
    }

    #[test]
    fn outcomes_mean_what_they_mean_on_the_embedded_backend() {
        let t0 = Timestamp::now();
        let end = |e: EndFrame| PodLog { end: Some(e), ..PodLog::default() };
        let r = finish("exe", &spec(), end(EndFrame { exit: 0, ..Default::default() }), &PodEnd::default(), t0, t0);
        assert_eq!((r.status, r.exit_code), (ExecutionStatus::Completed, 0));

        let r = finish(
            "exe",
            &spec(),
            end(EndFrame { exit: 124, timed_out: true, ..Default::default() }),
            &PodEnd::default(),
            t0,
            t0,
        );
        assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 124));
        assert_eq!(r.error.as_deref(), Some("execution timeout after 300s"));

        let pre = EndFrame { exit: 4, pre_failed: Some((1, 4)), ..Default::default() };
        let log = PodLog { pre_output: b"bad\n".to_vec(), end: Some(pre), ..PodLog::default() };
        let r = finish("exe", &spec(), log, &PodEnd::default(), t0, t0);
        assert_eq!((r.status, r.exit_code), (ExecutionStatus::Failed, 4));
        assert_eq!(r.error.as_deref(), Some("pre_commands[1] failed with exit code 4: exit 4"));

        let oom = PodEnd { exit_code: Some(137), oom_killed: true, ..PodEnd::default() };
        let r = finish("exe", &spec(), PodLog::default(), &oom, t0, t0);
        assert_eq!((r.status, r.exit_code, r.oom_killed), (ExecutionStatus::Completed, 137, true));

        let killed = PodEnd { killed: true, ..PodEnd::default() };
        let r = finish("exe", &spec(), PodLog::default(), &killed, t0, t0);
        assert_eq!((r.status, r.exit_code), (ExecutionStatus::Killed, 137));

        let deadline = PodEnd { deadline_exceeded: true, ..PodEnd::default() };
        let r = finish("exe", &spec(), PodLog { stdout: b"partial".to_vec(), ..PodLog::default() }, &deadline, t0, t0);
        assert_eq!((r.status, r.exit_code, r.stdout.as_str()), (ExecutionStatus::Failed, 124, "partial"));
    }
}
