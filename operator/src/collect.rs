//! The result of a finished (or killed) Pod, read from its containers' logs: the runner's frames from the main
//! container, finished by `pyexec_core::pod::finish` (which also says why the run ended, so the condition's reason
//! cannot contradict the status), or, when an init container failed, what its log says last. The frames come from
//! the Pod's log follower ([`crate::follow`]) when it saw them all; otherwise the log is read now, and what the
//! follower kept is completed with it ([`crate::follow::merge`]).
//!
//! The files the program left in `/work` (its runner sends them with the frames when the log store is on) are
//! read by `pyexec_core::pod::harvest` and stored here, content-addressed, before the status that lists them is
//! written: the record the store serves never names a file it does not hold.

use k8s_openapi::api::core::v1::Pod;
use kube::api::LogParams;
use kube::{Api, ResourceExt};
use pyexec_core::outcome::{failed, install_failed, killed_before_start};
use pyexec_core::pod::protocol::{INSTALL_CONTAINER, MAIN_CONTAINER, RECEIVE_CONTAINER};
use pyexec_core::pod::{Harvest, PodEnd, PodLog, finish as finish_pod, harvest};
use pyexec_core::text::tail;
use pyexec_core::{ExecutionResult, Timestamp};
use pyexec_crds::PythonExecution;
use pyexec_crds::convert::{execution_spec, timestamp_of};
use pyexec_crds::pod::pod_nonce;

use crate::config::OperatorConfig;
use crate::context::{Context, Error};
use crate::follow::{Followers, SETTLE, merge};
use crate::observe::{Finish, FinishKind};
use crate::reconcile::execution_id;

/// Most bytes of the main container's log read back for the output (frames are base64: 4/3 of the kept output,
/// twice, plus the pre-commands'); [`log_limit_bytes`] adds the files.
const LOG_LIMIT_BYTES: i64 = 12 << 20;

/// Most bytes of the main container's log read back: the output's share, and the largest tar of files the runner
/// sends for the operator's caps, base64 (4/3), in frame lines of 64 KiB each with their prefix. The read starts at
/// the log's head, so a limit below what the runner wrote would cut off its end frame.
pub fn log_limit_bytes(config: &OperatorConfig) -> i64 {
    let archive = config.files_archive_bytes();
    if archive == 0 {
        return LOG_LIMIT_BYTES;
    }
    let lines = archive / (64 << 10) + 1;
    let files = archive.div_ceil(3).saturating_mul(4).saturating_add(lines.saturating_mul(128));
    LOG_LIMIT_BYTES.saturating_add(i64::try_from(files).unwrap_or(i64::MAX))
}

/// A finished execution, and the reason of its `Finished` condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Collected {
    /// The result.
    pub result: ExecutionResult,
    /// Why it ended (CamelCase).
    pub reason: &'static str,
}

/// The result of a finished (or killed) Pod, from its logs and container states; the context's followers may hold
/// what its main container's log said while it ran. The files the program left are stored in the context's log
/// store (the result lists them).
///
/// A log that cannot be read is an error (the reconciliation is retried with backoff): the result is never made
/// up from a missing or partial log. So is a failure to store the files.
pub async fn collect(
    cr: &PythonExecution,
    pods: &Api<Pod>,
    ctx: &Context,
    pod: &Pod,
    f: &Finish,
    killed: bool,
) -> Result<Collected, Error> {
    let followers = &ctx.followers;
    let limit = log_limit_bytes(&ctx.config);
    let id = execution_id(cr);
    let spec = execution_spec(&cr.spec);
    let started = f.started_at.as_ref().and_then(timestamp_of).unwrap_or_else(Timestamp::now);
    let finished = f.finished_at.as_ref().and_then(timestamp_of).unwrap_or_else(Timestamp::now);
    if f.disk_exceeded && !killed {
        // Evicted for ephemeral storage: the runner did not get to say anything; what the program wrote is kept.
        let log = match f.kind {
            FinishKind::Program => Some(program_log(pods, followers, pod, true, limit).await?),
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
            let log = program_log(pods, followers, pod, !killed, limit).await?;
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
            let files = ctx.config.files_caps().map_or(Harvest::NotReported, |caps| harvest(&log, caps));
            let done = finish_pod(&id, &spec, log, &pod_end, started, finished);
            let mut result = done.result;
            if let Harvest::Lost(why) = &files {
                tracing::warn!(
                    execution = %cr.name_any(), namespace = %cr.namespace().unwrap_or_default(), why,
                    "the files the program wrote are not kept: the result says some were left out"
                );
            }
            files.apply(&mut result);
            let files = files.into_files();
            if !files.is_empty() {
                let (namespace, uid) = (cr.namespace().unwrap_or_default(), cr.uid().unwrap_or_default());
                ctx.logs.save_files(&namespace, &uid, &files).await?;
            }
            Ok(Collected { result, reason: done.ending.reason() })
        }
        FinishKind::InitFailed { container, exit_code } if container == INSTALL_CONTAINER => {
            let log =
                String::from_utf8_lossy(&read_log(pods, &pod.name_any(), INSTALL_CONTAINER, Some(1 << 20)).await?)
                    .into_owned();
            let mut result = install_failed(&id, pip_summary(&log, *exit_code), Some(started), &tail(&log, 8 << 10));
            result.finished_at = Some(finished);
            // No program ran: there is no run time (docs/api.md, `duration_ms`).
            result.duration_ms = 0;
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
async fn program_log(
    pods: &Api<Pod>,
    followers: &Followers,
    pod: &Pod,
    ended: bool,
    limit: i64,
) -> Result<PodLog, Error> {
    let uid = pod.uid().unwrap_or_default();
    if ended {
        followers.settle(&uid, SETTLE).await;
    }
    let followed = followers.snapshot(&uid).map(|s| s.log);
    if let Some(log) = followed.as_ref().filter(|f| f.complete()) {
        tracing::debug!(pod = %pod.name_any(), frames = log.frames(), "collected from the followed log");
        return Ok(log.clone().into_log());
    }
    let text = read_log(pods, &pod.name_any(), MAIN_CONTAINER, Some(limit)).await?;
    Ok(merge(followed, &text, &pod_nonce(pod).unwrap_or_default()))
}

/// pip's reason for failing, in one line.
pub(crate) fn pip_summary(log: &str, exit_code: i32) -> String {
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
pub(crate) async fn read_log(
    pods: &Api<Pod>,
    name: &str,
    container: &str,
    limit: Option<i64>,
) -> Result<Vec<u8>, Error> {
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

    #[test]
    fn the_log_read_back_covers_the_files_the_runner_sends() {
        let mut config = OperatorConfig::default();
        assert_eq!(log_limit_bytes(&config), LOG_LIMIT_BYTES, "no log store: no files");
        config.logs.dir = Some("/logs".into());
        config.logs.url = Some("http://op:8081".into());
        let archive = config.files_archive_bytes();
        let limit = u64::try_from(log_limit_bytes(&config)).unwrap();
        assert!(limit >= (12 << 20) + archive * 4 / 3, "{limit} for an archive of {archive}");
    }
}
