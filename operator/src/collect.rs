//! The result of a finished (or killed) Pod, read from its containers' logs: the runner's frames from the main
//! container, finished by `pyexec_core::pod::finish` (which also says why the run ended, so the condition's reason
//! cannot contradict the status), or, when an init container failed, what its log says last. The frames come from
//! the Pod's log follower ([`crate::follow`]) when it saw them all; otherwise the log is read now, and what the
//! follower kept is completed with it ([`crate::follow::merge`]).

use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::{Api, ResourceExt};
use pyexec_core::outcome::{failed, install_failed, killed_before_start};
use pyexec_core::pod::protocol::{INSTALL_CONTAINER, MAIN_CONTAINER, RECEIVE_CONTAINER};
use pyexec_core::pod::{PodEnd, PodLog, finish as finish_pod};
use pyexec_core::text::tail;
use pyexec_core::{ExecutionResult, Timestamp};
use pyexec_crds::PythonExecution;
use pyexec_crds::convert::{execution_spec, timestamp_of};
use pyexec_crds::pod::pod_nonce;

use crate::context::Error;
use crate::follow::{Followers, SETTLE, merge};
use crate::observe::{Finish, FinishKind};
use crate::reconcile::execution_id;

/// Most bytes of the main container's log read back (frames are base64: 4/3 of the kept output, twice, plus
/// the pre-commands').
const LOG_LIMIT_BYTES: i64 = 12 << 20;

/// A finished execution, and the reason of its `Finished` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    /// The result.
    pub result: ExecutionResult,
    /// Why it ended (CamelCase).
    pub reason: &'static str,
}

/// The result of a finished (or killed) Pod, from its logs and container states; `followers` may hold what its
/// main container's log said while it ran.
///
/// A log that cannot be read is an error (the reconciliation is retried with backoff): the result is never made
/// up from a missing or partial log.
pub async fn collect(
    cr: &PythonExecution,
    pods: &Api<Pod>,
    followers: &Followers,
    pod: &Pod,
    f: &Finish,
    killed: bool,
) -> Result<Collected, Error> {
    let id = execution_id(cr);
    let spec = execution_spec(&cr.spec);
    let started = f.started_at.as_ref().and_then(timestamp_of).unwrap_or_else(Timestamp::now);
    let finished = f.finished_at.as_ref().and_then(timestamp_of).unwrap_or_else(Timestamp::now);
    if f.disk_exceeded && !killed {
        // Evicted for ephemeral storage: the runner did not get to say anything; what the program wrote is kept.
        let log = match f.kind {
            FinishKind::Program => Some(program_log(pods, followers, pod, true).await?),
            _ => None,
        };
        let mut result = failed(&id, disk_exceeded_message(cr.spec.limits.disk_mb), Some(started), "");
        if let Some(log) = log {
            result.stdout = String::from_utf8_lossy(&log.stdout).into_owned();
            result.stderr = String::from_utf8_lossy(&log.stderr).into_owned();
        }
        result.finished_at = Some(finished);
        result.duration_ms = finished.millis_since(started);
        return Ok(Collected { result, reason: DISK_LIMIT_EXCEEDED });
    }
    match &f.kind {
        FinishKind::Program => {
            let log = program_log(pods, followers, pod, !killed).await?;
            if let Some(message) = crate::pool::claim::ended_before_hand_over(pod, &log).filter(|_| !killed) {
                // A claimed warm Pod that died before its runner got the claim: nothing ran, and its exit code is
                // not the program's.
                let mut result = failed(&id, message, None, "");
                result.finished_at = Some(finished);
                return Ok(Collected { result, reason: "PodLost" });
            }
            let pod_end = PodEnd {
                exit_code: f.exit_code,
                oom_killed: f.oom_killed,
                deadline_exceeded: f.deadline_exceeded,
                killed,
            };
            let done = finish_pod(&id, &spec, log, &pod_end, started, finished);
            Ok(Collected { result: done.result, reason: done.ending.reason() })
        }
        FinishKind::InitFailed { container, exit_code } if container == INSTALL_CONTAINER => {
            let log =
                String::from_utf8_lossy(&read_log(pods, &pod.name_any(), INSTALL_CONTAINER, Some(1 << 20)).await?)
                    .into_owned();
            let mut result = install_failed(&id, pip_summary(&log, *exit_code), Some(started), tail(&log, 8 << 10));
            result.finished_at = Some(finished);
            Ok(Collected { result, reason: "InstallFailed" })
        }
        FinishKind::InitFailed { container, exit_code } => {
            let what = if container == RECEIVE_CONTAINER {
                "receiving the uploaded files failed"
            } else {
                "preparing the Pod failed"
            };
            let log =
                String::from_utf8_lossy(&read_log(pods, &pod.name_any(), RECEIVE_CONTAINER, Some(64 << 10)).await?)
                    .into_owned();
            let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned();
            let detail = if last.is_empty() { format!("exit code {exit_code}") } else { last };
            let result = failed(&id, format!("{what}: {detail}"), Some(started), tail(&log, 8 << 10));
            Ok(Collected { result, reason: "ReceiveFailed" })
        }
        FinishKind::NeverStarted if killed => {
            Ok(Collected { result: killed_before_start(&id, started), reason: "Killed" })
        }
        FinishKind::NeverStarted => Ok(Collected {
            result: failed(
                &id,
                "the Pod did not start before its deadline (image pulls, scheduling or the install took too long)",
                None,
                "",
            ),
            reason: "DeadlineExceeded",
        }),
    }
}

/// The reason of the `Finished` condition of an execution evicted for exceeding its disk limit.
pub const DISK_LIMIT_EXCEEDED: &str = "DiskLimitExceeded";

/// The error of an execution that exceeded its disk limit (`diskMB`).
pub fn disk_exceeded_message(disk_mb: u64) -> String {
    format!("disk limit of {disk_mb} MB exceeded")
}

/// The runner's frames of the main container: the follower's when it saw them all (the log then need not have
/// survived), else a read of the log now, merged with what the follower kept. `ended`: the program ended (not a
/// kill), so a follower still reading gets a moment to read the rest.
async fn program_log(pods: &Api<Pod>, followers: &Followers, pod: &Pod, ended: bool) -> Result<PodLog, Error> {
    let uid = pod.uid().unwrap_or_default();
    if ended {
        followers.settle(&uid, SETTLE).await;
    }
    let followed = followers.snapshot(&uid).map(|s| s.log);
    if let Some(log) = followed.as_ref().filter(|f| f.complete()) {
        tracing::debug!(pod = %pod.name_any(), frames = log.frames(), "collected from the followed log");
        return Ok(log.clone().into_log());
    }
    let text = read_log(pods, &pod.name_any(), MAIN_CONTAINER, Some(LOG_LIMIT_BYTES)).await?;
    Ok(merge(followed, &text, &pod_nonce(pod).unwrap_or_default()))
}

/// pip's reason for failing, in one line.
fn pip_summary(log: &str, exit_code: i32) -> String {
    let error = log
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("ERROR:"))
        .map(|l| l.trim_start_matches("ERROR:").trim().to_owned());
    match error {
        Some(e) if e.contains("from versions: none") || e.starts_with("No matching distribution") => {
            format!("{e} (only binary wheels are installed unless the operator's packageIndex.allowSdist is set)")
        }
        Some(e) => e,
        None => format!("pip exited with code {exit_code}"),
    }
}

/// A container's log; an API error is returned (and the whole collection retried), never read as an empty log.
async fn read_log(pods: &Api<Pod>, name: &str, container: &str, limit: Option<i64>) -> Result<Vec<u8>, Error> {
    let params = LogParams { container: Some(container.into()), limit_bytes: limit, ..LogParams::default() };
    match pods.logs(name, &params).await {
        Ok(text) => Ok(text.into_bytes()),
        Err(source) => {
            tracing::warn!(pod = %name, container, error = %source, "reading the container log failed; retrying");
            Err(Error::Log { container: container.into(), source })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_failures_are_summarized() {
        let log = "Collecting six\nERROR: Could not find a version that satisfies the requirement docopt (from versions: none)\nERROR: No matching distribution found for docopt\n";
        let s = pip_summary(log, 1);
        assert!(s.starts_with("No matching distribution found for docopt") && s.contains("allowSdist"), "{s}");
        assert_eq!(pip_summary("boom", 2), "pip exited with code 2");
    }
}
