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
    let mut decoder = FrameDecoder::new(nonce);
    let frames = decoder.push(log);
    for frame in frames.into_iter().chain(decoder.finish()) {
        match frame {
            Frame::Stdout(data) => out.stdout.extend_from_slice(&data),
            Frame::Stderr(data) => out.stderr.extend_from_slice(&data),
            Frame::PreOutput(data) => out.pre_output.extend_from_slice(&data),
            Frame::End(end) => out.end = Some(*end),
        }
    }
    out
}

/// One of the runner's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A piece of the program's standard output.
    Stdout(Vec<u8>),
    /// A piece of the program's standard error.
    Stderr(Vec<u8>),
    /// A piece of the pre-commands' output.
    PreOutput(Vec<u8>),
    /// The final summary.
    End(Box<EndFrame>),
}

/// The longest line kept while waiting for its end. The runner's longest frame is its summary, which holds an eval
/// result of at most 1 MiB (about 1.4 MiB as base64); anything longer is not a frame, and may be a program's
/// attempt to make a reader buffer without bound.
const MAX_LINE: usize = 4 << 20;

/// Decodes the frames carrying one nonce from a container log read piece by piece, as a followed log arrives.
#[derive(Debug)]
pub struct FrameDecoder {
    prefix: Vec<u8>,
    /// The start of a line whose end has not arrived.
    partial: Vec<u8>,
    /// The current line outgrew [`MAX_LINE`]: the rest of it is dropped.
    skipping: bool,
}

impl FrameDecoder {
    /// A decoder for the frames of the runner started with `nonce`.
    pub fn new(nonce: &str) -> Self {
        Self { prefix: format!("\x1fpyexec {nonce} ").into_bytes(), partial: Vec::new(), skipping: false }
    }

    /// The frames completed by `chunk`.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(end);
            rest = &after[1..];
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            let frame = if self.partial.is_empty() {
                self.decode(line)
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                self.decode(&whole)
            };
            frames.extend(frame);
        }
        if !self.skipping {
            self.partial.extend_from_slice(rest);
            if self.partial.len() > MAX_LINE {
                self.partial = Vec::new();
                self.skipping = true;
            }
        }
        frames
    }

    /// The frame on a last line that ended without a newline.
    pub fn finish(self) -> Option<Frame> {
        if self.skipping { None } else { self.decode(&self.partial) }
    }

    fn decode(&self, line: &[u8]) -> Option<Frame> {
        let rest = line.strip_prefix(self.prefix.as_slice())?;
        let (&kind, data) = rest.split_first()?;
        let data = STANDARD.decode(data.strip_prefix(b" ")?).ok()?;
        match kind {
            b'o' => Some(Frame::Stdout(data)),
            b'e' => Some(Frame::Stderr(data)),
            b'p' => Some(Frame::PreOutput(data)),
            b'x' => serde_json::from_slice(&data).ok().map(|end| Frame::End(Box::new(end))),
            _ => None,
        }
    }
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

    #[test]
    fn frames_split_anywhere_decode_the_same() {
        let mut log = String::from("noise\n");
        log += &frame("n1", 'o', b"hello ");
        log += &frame("forged", 'o', b"FORGED");
        log += &frame("n1", 'e', b"oops\n");
        log += &frame("n1", 'x', br#"{"exit":0}"#);
        let whole = {
            let mut d = FrameDecoder::new("n1");
            let mut frames = d.push(log.as_bytes());
            frames.extend(d.finish());
            frames
        };
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0], Frame::Stdout(b"hello ".to_vec()));
        for size in [1, 2, 7, 50] {
            let mut d = FrameDecoder::new("n1");
            let mut frames: Vec<Frame> = log.as_bytes().chunks(size).flat_map(|c| d.push(c)).collect();
            frames.extend(d.finish());
            assert_eq!(frames, whole, "chunks of {size} bytes");
        }
    }

    #[test]
    fn the_largest_summary_frame_is_kept() {
        let result = STANDARD.encode(vec![b'x'; 1 << 20]);
        let log = frame("n1", 'x', format!(r#"{{"exit":0,"result":"{result}"}}"#).as_bytes());
        let parsed = parse_log(log.as_bytes(), "n1");
        assert_eq!(parsed.end.and_then(|e| e.result).map(|r| r.len()), Some(result.len()));
    }

    #[test]
    fn an_endless_line_is_dropped_not_buffered() {
        let mut d = FrameDecoder::new("n1");
        let junk = vec![b'a'; 64 << 10];
        for _ in 0..100 {
            assert!(d.push(&junk).is_empty());
        }
        assert!(d.partial.len() <= MAX_LINE, "the decoder holds {} bytes", d.partial.len());
        let frames = d.push(format!("tail\n{}", frame("n1", 'o', b"after")).as_bytes());
        assert_eq!(frames, vec![Frame::Stdout(b"after".to_vec())]);
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
