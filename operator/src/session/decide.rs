//! What a session and its Pods, as observed now, call for (pure): the status to write, a Pod to create, Pods to
//! delete, whether to delete the session itself, and when to look again. Level-triggered: the decision depends on
//! the resource, its Pods and the clock only, so a second call with the same observations decides the same.
//!
//! | observed | decision |
//! |---|---|
//! | `Ended` or `Failed` | its Pods deleted; the session deleted [`ENDED_GRACE_SECONDS`] after it ended |
//! | refused by admission | `Failed` with the refusal's reason |
//! | past `maxLifetimeSeconds` since creation | `Ended` (`LifetimeExceeded`), its Pods deleted |
//! | past `idleTimeoutSeconds` since the later of `lastActivityAt` and `readyAt` | `Ended` (`IdleTimeout`) |
//! | no Pod yet | the first Pod (number 0), `Pending` (`Starting`) |
//! | its Pod runs, waiting for the go-ahead | `Pending`; the operator closes its network and says go ([`Gate`]) |
//! | its Pod's runner took the go-ahead | `Pending` until the operator read its report (the fence held) ([`Gate`]) |
//! | its Pod runs, its runner reported, its container is ready | `Ready` (`readyAt` when it became so) |
//! | its Pod is starting | `Pending`, until the operator's `startupSeconds` from the Pod's creation (`StartupTimeout`) |
//! | its Pod was ready and is not now (it did not end) | `Pending` (`PodNotReady`), until it is ready again or expires |
//! | its Pod cannot start (an invalid image) | `Failed` (`PodFailed`) |
//! | its Pod's install failed | `Failed` (`InstallFailed`; the reconciler adds pip's reason from the log) |
//! | its Pod ended before it was ready | `Failed` (`PodFailed`): no restart loop of a Pod that never starts |
//! | its Pod is gone or being deleted (the API server's restart), or ended while `Ready` | the next Pod, `restarts` + 1, `Pending` (`Restarting`) |

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use pyexec_core::outcome::install_failure_message;
use pyexec_core::pod::protocol::INSTALL_CONTAINER;
use pyexec_crds::session::{ENDED_GRACE_SECONDS, SESSION_CONTAINER};
use pyexec_crds::{PythonSession, PythonSessionStatus, SessionPhase};

use super::desired::{bounded_report, pod_number, runner_ready};
use crate::admission::Refusal;
use crate::observe::{self, Finish, FinishKind, PodState};

/// The reason of a session whose Pod is starting for the first time.
pub const STARTING: &str = "Starting";
/// The reason of a session whose Pod is being replaced.
pub const RESTARTING: &str = "Restarting";
/// The reason of a ready session.
pub const POD_READY: &str = "PodReady";
/// The reason of a session ended for having been idle.
pub const IDLE_TIMEOUT: &str = "IdleTimeout";
/// The reason of a session ended at its maximum lifetime.
pub const LIFETIME_EXCEEDED: &str = "LifetimeExceeded";
/// The reason of a session whose Pod was ready and is not now (its node unreachable, say), though it did not end.
pub const POD_NOT_READY: &str = "PodNotReady";
/// The reason of a session whose Pod ended, or cannot start, before it was ready.
pub const POD_FAILED: &str = "PodFailed";
/// The reason of a session whose Pod was not ready in time.
pub const STARTUP_TIMEOUT: &str = "StartupTimeout";
/// The reason of a session whose Pod could not install its requirements.
pub const INSTALL_FAILED: &str = "InstallFailed";
/// How soon a Pod whose runner waits on the operator (the go-ahead, or the reading of its report) is looked at
/// again: nothing the kubelet says wakes the operator up for it.
pub const GATE_POLL: Duration = Duration::from_secs(1);
/// The condition the status carries.
pub const READY: &str = "Ready";
/// The longest `status.message` (the CRD's bound).
pub const MAX_MESSAGE: usize = 4096;
/// The longest wait before a session is looked at again without a change.
pub const MAX_REQUEUE: Duration = Duration::from_secs(300);

/// A Pod to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPod {
    /// Its number: how many Pods the session had before it.
    pub number: i32,
    /// Its `activeDeadlineSeconds`: the rest of the session's lifetime and the start-up allowance.
    pub deadline_seconds: i64,
}

/// A change worth an Event and a metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The first Pod is created.
    Started,
    /// A Pod replaces one that is gone: why.
    Restarted(String),
    /// The session became ready.
    Ready,
    /// The session ended or failed: its phase and reason.
    Ended(SessionPhase, String),
}

/// What the current Pod's runner waits for from the operator (its container runs with the gate on).
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// The go-ahead: the operator first closes the Pod's network (deletes the install stage's policy).
    GoAhead(Pod),
    /// The go-ahead was sent: the runner's report (it took the go-ahead and the fence held), to read from its log.
    Report(Pod),
}

/// A Pod whose install container failed: its log says why, and is read before the Pod is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallFailure {
    /// The Pod.
    pub pod: String,
    /// The install container's exit code.
    pub exit_code: i32,
    /// It ran out of memory (`packageIndex.memoryMB`).
    pub oom_killed: bool,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The status to write (when it differs from the session's). `lastActivityAt` is the API server's and is never
    /// written by the operator.
    pub status: PythonSessionStatus,
    /// A Pod to create (its name then goes into `status.podName`).
    pub create: Option<NewPod>,
    /// Pods to delete (each under a uid precondition).
    pub delete: Vec<Pod>,
    /// Delete the session itself (it ended long enough ago).
    pub delete_session: bool,
    /// When to look again without a change (`None`: only on a change).
    pub requeue: Option<Duration>,
    /// What changed, for Events and metrics.
    pub transition: Option<Transition>,
    /// What the current Pod's runner waits for from the operator.
    pub gate: Option<Gate>,
    /// The session failed for its install: the status's message is to say pip's reason, from this Pod's log.
    pub install_failed: Option<InstallFailure>,
}

/// Milliseconds since the epoch.
fn ms(t: &Time) -> i64 {
    t.0.as_millisecond()
}

fn time(millis: i64) -> Time {
    Time(Timestamp::from_millisecond(millis).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// When the session reaches its maximum lifetime (ms).
pub fn lifetime_end(session: &PythonSession, now: Timestamp) -> i64 {
    let created = session.meta().creation_timestamp.as_ref().map_or(now.as_millisecond(), ms);
    created + i64::from(session.spec.max_lifetime_seconds) * 1000
}

/// When the session has been idle for too long (ms): `idleTimeoutSeconds` after the later of its last call and its
/// becoming ready (a restart starts the count again). `None` before it was ever ready.
pub fn idle_end(session: &PythonSession, status: &PythonSessionStatus) -> Option<i64> {
    let since = [status.last_activity_at.as_ref(), status.ready_at.as_ref()].into_iter().flatten().map(ms).max()?;
    Some(since + i64::from(session.spec.idle_timeout_seconds) * 1000)
}

/// Whether the Pod is going away: deleted (the API server's restart), waiting for its containers to stop.
fn going(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether the Pod's install container runs.
fn installing(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == INSTALL_CONTAINER))
        .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
}

fn container_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == SESSION_CONTAINER))
        .is_some_and(|c| c.ready)
}

/// Why a Pod ended, for people; with `last_words`, what its runner said last (the kubelet's termination message:
/// the end of its log), only for a Pod that ended before it was ready, whose log is the runner's alone (once calls
/// ran, it is the calls' output, which is no status's business).
fn why_ended(pod: &Pod, finish: &Finish, last_words: bool) -> String {
    let mut parts = Vec::new();
    if let Some(code) = finish.exit_code {
        parts.push(format!("exit code {code}"));
    }
    if finish.oom_killed {
        parts.push("out of memory".into());
    }
    if finish.deadline_exceeded {
        parts.push("past its deadline".into());
    }
    if let Some(status) = &pod.status {
        let said: Vec<&str> = [status.reason.as_deref(), status.message.as_deref()].into_iter().flatten().collect();
        if !said.is_empty() {
            parts.push(said.join(": "));
        }
    }
    let ended = if parts.is_empty() { "it ended".into() } else { format!("it ended ({})", parts.join(", ")) };
    // Why the runner stopped before serving, such as a network fence found open.
    let last_words = last_words
        .then_some(pod.status.as_ref())
        .flatten()
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == SESSION_CONTAINER))
        .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.message.as_deref())
        .and_then(|m| m.lines().rev().map(str::trim).find(|l| !l.is_empty()));
    match last_words {
        Some(words) => format!("{ended}: {words}"),
        None => ended,
    }
}

/// The first `MAX_MESSAGE` bytes of `text` (at a character boundary).
fn bounded(text: String) -> String {
    if text.len() <= MAX_MESSAGE {
        return text;
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The `Ready` condition at `now`: its transition time changes only when its status does.
fn ready_condition(
    session: &PythonSession,
    old: &PythonSessionStatus,
    ready: bool,
    reason: &str,
    message: &str,
    now: &Time,
) -> Condition {
    let value = if ready { "True" } else { "False" };
    let previous = old.conditions.iter().find(|c| c.type_ == READY);
    let last_transition_time = match previous {
        Some(c) if c.status == value => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    Condition {
        type_: READY.into(),
        status: value.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time,
        observed_generation: session.meta().generation,
    }
}

/// Sets the phase, the `Ready` condition (`ready`, `reason`) and the message of the plan's status at `now`.
pub fn set_phase(
    session: &PythonSession,
    plan: &mut Plan,
    phase: SessionPhase,
    ready: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let old = session.status.clone().unwrap_or_default();
    let message = bounded(message);
    plan.status.phase = Some(phase);
    plan.status.conditions = vec![ready_condition(session, &old, ready, reason, &message, &Time(now))];
    plan.status.message = Some(message);
}

/// Turns the plan into the session's failure at `now` (for what only carrying it out finds: a name taken, a Pod
/// refused): `Failed` with `reason`, no Pod to create.
pub fn fail(session: &PythonSession, plan: &mut Plan, reason: &str, message: String, now: Timestamp) {
    set_phase(session, plan, SessionPhase::Failed, false, reason, message, now);
    plan.create = None;
    plan.status.pod_name = None;
    plan.status.ended_at = Some(Time(now));
    plan.transition = Some(Transition::Ended(SessionPhase::Failed, reason.to_owned()));
    plan.requeue = Some(Duration::from_secs(ENDED_GRACE_SECONDS).min(MAX_REQUEUE));
}

/// Decides, from the session, admission's refusal (if any), the Pods the session controls, the clock and the
/// operator's `startupSeconds`.
pub fn decide(
    session: &PythonSession,
    refusal: Option<&Refusal>,
    pods: &[Pod],
    now: Timestamp,
    startup_seconds: u64,
) -> Plan {
    let old = session.status.clone().unwrap_or_default();
    let now_ms = now.as_millisecond();
    let now_t = Time(now);
    let mut plan = Plan {
        status: PythonSessionStatus { observed_generation: session.meta().generation, ..old.clone() },
        create: None,
        delete: Vec::new(),
        delete_session: false,
        requeue: None,
        transition: None,
        gate: None,
        install_failed: None,
    };
    let set = |plan: &mut Plan, phase: SessionPhase, ready: bool, reason: &str, message: String| {
        set_phase(session, plan, phase, ready, reason, message, now);
    };
    // Every Pod that is not already going away, to delete when the session ends (or to clean up when it ended).
    let not_going: Vec<Pod> = pods.iter().filter(|p| !going(p)).cloned().collect();
    let wait_until = |plan: &mut Plan, at_ms: i64| {
        let wait = Duration::from_millis(u64::try_from(at_ms - now_ms).unwrap_or(0));
        plan.requeue = Some(wait.clamp(Duration::from_secs(1), MAX_REQUEUE));
    };

    if old.phase.is_some_and(SessionPhase::is_terminal) {
        // A terminal status never changes, but for its end time when it has none.
        plan.status = old.clone();
        plan.delete = not_going;
        let ended_at = old.ended_at.as_ref().map_or(now_ms, ms);
        if old.ended_at.is_none() {
            plan.status.ended_at = Some(time(ended_at));
        }
        let delete_at = ended_at + i64::try_from(ENDED_GRACE_SECONDS * 1000).unwrap_or(i64::MAX);
        if now_ms >= delete_at {
            plan.delete_session = true;
        } else {
            wait_until(&mut plan, delete_at);
        }
        return plan;
    }
    let end = |plan: &mut Plan, phase: SessionPhase, reason: &str, message: String| {
        set(plan, phase, false, reason, message);
        plan.status.pod_name = None;
        plan.status.ended_at = Some(now_t.clone());
        plan.delete = not_going.clone();
        plan.transition = Some(Transition::Ended(phase, reason.to_owned()));
        let grace = Duration::from_secs(ENDED_GRACE_SECONDS);
        plan.requeue = Some(grace.min(MAX_REQUEUE));
    };
    if let Some(refusal) = refusal {
        end(&mut plan, SessionPhase::Failed, refusal.reason, refusal.message.clone());
        return plan;
    }
    let lifetime = lifetime_end(session, now);
    if now_ms >= lifetime {
        let message = format!("the session reached its maximum lifetime of {}s", session.spec.max_lifetime_seconds);
        end(&mut plan, SessionPhase::Ended, LIFETIME_EXCEEDED, message);
        return plan;
    }
    if idle_end(session, &old).is_some_and(|at| now_ms >= at) {
        let message = format!("the session was idle for {}s", session.spec.idle_timeout_seconds);
        end(&mut plan, SessionPhase::Ended, IDLE_TIMEOUT, message);
        return plan;
    }
    let expiry = |status: &PythonSessionStatus| idle_end(session, status).map_or(lifetime, |idle| idle.min(lifetime));
    let startup_ms = i64::try_from(startup_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);

    // The live Pods (neither going away nor ended), oldest number first: the last is the session's.
    let order = |p: &Pod| (pod_number(p), p.metadata.creation_timestamp.as_ref().map(ms));
    let mut live: Vec<&Pod> =
        pods.iter().filter(|p| !going(p) && !matches!(observe::pod_state(p), PodState::Finished(_))).collect();
    live.sort_by_key(|p| order(p));
    let ended: Vec<&Pod> =
        pods.iter().filter(|p| !going(p) && matches!(observe::pod_state(p), PodState::Finished(_))).collect();
    // Ended Pods are never used again; a second live Pod (created by an operator that stopped before its status
    // said so) is surplus.
    plan.delete = ended.iter().map(|p| (*p).clone()).collect();
    if let Some((current, surplus)) = live.split_last() {
        plan.delete.extend(surplus.iter().map(|p| (*p).clone()));
        let name = current.name_any();
        let number = pod_number(current);
        plan.status.pod_name = Some(name.clone());
        plan.status.restarts = number.max(old.restarts);
        if plan.status.started_at.is_none() {
            plan.status.started_at = Some(now_t.clone());
        }
        let created = current.metadata.creation_timestamp.as_ref().map_or(now_ms, ms);
        // Whether this Pod was ready before (the readiness recorded is its own: no older than the Pod). In whole
        // seconds: a status's times are written to the second.
        let was_ready = old.pod_name.as_deref() == Some(name.as_str())
            && old.ready_at.as_ref().is_some_and(|at| at.0.as_second() >= created.div_euclid(1000));
        // A Pod whose runner waits for the go-ahead serves calls only once it reported that it took it and found
        // the network fenced (a Pod of an operator before the gate has none to wait for).
        let gated = observe::main_waits_for_gate(current);
        let report = runner_ready(current);
        match observe::pod_state(current) {
            PodState::Running { .. } if container_ready(current) && (!gated || report.is_some()) => {
                if !was_ready {
                    plan.status.ready_at = Some(now_t.clone());
                }
                if let Some(report) = report {
                    plan.status.installed_packages = bounded_report(report).installed;
                }
                if old.phase != Some(SessionPhase::Ready) {
                    plan.transition = Some(Transition::Ready);
                }
                set(&mut plan, SessionPhase::Ready, true, POD_READY, format!("the session's Pod {name} is ready"));
                let at = expiry(&plan.status);
                wait_until(&mut plan, at);
            }
            PodState::Stuck(why) if !observe::may_resolve(&why) => {
                let message = format!("the session's Pod {name} cannot start: {why}");
                end(&mut plan, SessionPhase::Failed, POD_FAILED, message);
            }
            state => {
                let waiting = match state {
                    PodState::Starting { waiting: Some(why), .. } | PodState::Stuck(why) => format!(": {why}"),
                    PodState::Starting { .. } if installing(current) => ": installing the requirements".into(),
                    PodState::Running { gate_wanted, .. } if gated && report.is_none() => {
                        plan.gate = Some(if gate_wanted {
                            Gate::GoAhead((*current).clone())
                        } else {
                            Gate::Report((*current).clone())
                        });
                        if gate_wanted {
                            ": its runner waits for the go-ahead".into()
                        } else {
                            ": its runner checks that the network is closed".into()
                        }
                    }
                    _ => String::new(),
                };
                let deadline = created.saturating_add(startup_ms);
                // The start-up allowance is for a Pod that never was ready: one that was and is not now waits,
                // within the session's expiry, for the kubelet to say more.
                if was_ready {
                    let message = format!("the session's Pod {name} is not ready{waiting}");
                    set(&mut plan, SessionPhase::Pending, false, POD_NOT_READY, message);
                    let at = expiry(&plan.status);
                    wait_until(&mut plan, at);
                } else if now_ms >= deadline {
                    let message = format!("the session's Pod {name} was not ready within {startup_seconds}s{waiting}");
                    end(&mut plan, SessionPhase::Failed, STARTUP_TIMEOUT, message);
                } else {
                    let reason = if number > 0 { RESTARTING } else { STARTING };
                    let message = format!("waiting for the session's Pod {name} to be ready{waiting}");
                    set(&mut plan, SessionPhase::Pending, false, reason, message);
                    let at = deadline.min(expiry(&plan.status));
                    wait_until(&mut plan, at);
                }
            }
        }
        if plan.gate.is_some() && !plan.status.phase.is_some_and(SessionPhase::is_terminal) {
            plan.requeue = Some(plan.requeue.map_or(GATE_POLL, |r| r.min(GATE_POLL)));
        } else {
            plan.gate = None;
        }
        return plan;
    }

    // No live Pod. The last one the session had, whatever became of it.
    let last = pods.iter().max_by_key(|p| order(p));
    let ended_before_ready = old.phase != Some(SessionPhase::Ready)
        && last.is_some_and(|p| !going(p) && matches!(observe::pod_state(p), PodState::Finished(_)));
    if let Some(pod) = last.filter(|_| ended_before_ready) {
        if let PodState::Finished(Finish { kind: FinishKind::InitFailed { container, exit_code }, oom_killed, .. }) =
            observe::pod_state(pod)
            && container == INSTALL_CONTAINER
        {
            // pip's reason is in the container's log: the reconciler reads it (before the Pod goes) and says it
            // instead of the exit code.
            let oom = if oom_killed { " (out of memory)" } else { "" };
            let message = install_failure_message(format!("pip exited with code {exit_code}{oom}"));
            end(&mut plan, SessionPhase::Failed, INSTALL_FAILED, message);
            plan.install_failed = Some(InstallFailure { pod: pod.name_any(), exit_code, oom_killed });
            return plan;
        }
        // Its log is its runner's alone when the runner never reported: nothing of the session ran.
        let runners_log = observe::main_waits_for_gate(pod) && runner_ready(pod).is_none();
        let why = match observe::pod_state(pod) {
            PodState::Finished(finish) => why_ended(pod, &finish, runners_log),
            _ => "it ended".into(),
        };
        let message = format!("the session's Pod {} ended before it was ready: {why}", pod.name_any());
        end(&mut plan, SessionPhase::Failed, POD_FAILED, message);
        return plan;
    }
    // The next Pod's number: after every Pod there was, and after the status's (the number of a Pod that was
    // meant to be created but was not, a quota's refusal, when no Pod is named).
    let after_pods = pods.iter().map(|p| pod_number(p) + 1).max().unwrap_or(0);
    let after_status = if old.pod_name.is_some() { old.restarts + 1 } else { old.restarts };
    let number = after_pods.max(after_status);
    let first = number == 0;
    let deadline_ms = lifetime - now_ms + startup_ms;
    plan.create = Some(NewPod { number, deadline_seconds: (deadline_ms + 999) / 1000 });
    plan.status.pod_name = None;
    plan.status.restarts = number;
    if plan.status.started_at.is_none() {
        plan.status.started_at = Some(now_t.clone());
    }
    if first {
        set(&mut plan, SessionPhase::Pending, false, STARTING, "creating the session's Pod".into());
        plan.transition = Some(Transition::Started);
    } else {
        let previous = last.map(|p| p.name_any()).or_else(|| old.pod_name.clone()).unwrap_or_default();
        let why = match last {
            Some(pod) if !going(pod) => match observe::pod_state(pod) {
                PodState::Finished(finish) => why_ended(pod, &finish, false),
                _ => "it is gone".into(),
            },
            Some(_) => "it was deleted".into(),
            None => "it is gone".into(),
        };
        let message = if previous.is_empty() {
            "creating the session's next Pod".to_owned()
        } else {
            format!("the session's Pod {previous} is replaced ({why}): creating the next one")
        };
        set(&mut plan, SessionPhase::Pending, false, RESTARTING, message);
        plan.transition = Some(Transition::Restarted(why));
    }
    let at = now_ms.saturating_add(startup_ms).min(expiry(&plan.status));
    wait_until(&mut plan, at);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::desired::tests::session;
    use pyexec_crds::session::RESTARTS_ANNOTATION;
    use serde_json::{Value, json};

    const T0: &str = "2026-01-01T00:00:00Z";

    /// `seconds` after the session's creation.
    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(T0.parse::<Timestamp>().unwrap().as_second() + seconds).unwrap()
    }

    fn iso(seconds: i64) -> String {
        at(seconds).to_string()
    }

    fn with_status(spec: Value, status: Value) -> PythonSession {
        let mut s = session(spec);
        s.status = Some(serde_json::from_value(status).unwrap());
        s
    }

    /// A Pod of the session: number `n`, created at `created` seconds, with this status.
    fn pod(n: i32, created: i64, status: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": format!("ses-1-{n:05}"), "uid": format!("pod-{n}"), "creationTimestamp": iso(created),
                         "annotations": {RESTARTS_ANNOTATION: n.to_string()}},
            "spec": {"containers": [{"name": "python"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn ready() -> Value {
        json!({"phase": "Running", "containerStatuses": [{"name": "python", "ready": true, "restartCount": 0,
               "image": "", "imageID": "", "state": {"running": {"startedAt": iso(2)}}}]})
    }

    fn starting(waiting: &str) -> Value {
        json!({"phase": "Pending", "containerStatuses": [{"name": "python", "ready": false, "restartCount": 0,
               "image": "", "imageID": "", "state": {"waiting": {"reason": waiting}}}]})
    }

    fn ended(exit: i32, reason: &str) -> Value {
        json!({"phase": "Failed", "containerStatuses": [{"name": "python", "ready": false, "restartCount": 0,
               "image": "", "imageID": "", "state": {"terminated": {"exitCode": exit, "reason": reason}}}]})
    }

    fn going(mut pod: Pod) -> Pod {
        pod.metadata.deletion_timestamp = Some(Time(at(50)));
        pod
    }

    fn reason(plan: &Plan) -> &str {
        &plan.status.conditions[0].reason
    }

    #[test]
    fn a_new_session_gets_its_first_pod_and_becomes_ready_with_it() {
        let s = session(json!({}));
        let plan = decide(&s, None, &[], at(1), 120);
        assert_eq!(plan.create, Some(NewPod { number: 0, deadline_seconds: 3599 + 120 }));
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Pending), STARTING));
        assert_eq!(plan.status.started_at, Some(Time(at(1))));
        assert_eq!(plan.transition, Some(Transition::Started));
        assert_eq!(plan.requeue, Some(Duration::from_secs(120)), "the start-up allowance");

        let pending = with_status(json!({}), serde_json::to_value(&plan.status).unwrap());
        let plan = decide(&pending, None, &[pod(0, 1, starting("ContainerCreating"))], at(2), 120);
        assert_eq!((plan.create.as_ref(), plan.status.phase), (None, Some(SessionPhase::Pending)));
        assert_eq!(plan.status.pod_name.as_deref(), Some("ses-1-00000"), "adopted: the name the API server chose");
        let plan = decide(&pending, None, &[pod(0, 1, starting("ErrImagePull"))], at(2), 120);
        assert!(plan.status.message.as_deref().unwrap().ends_with(": ErrImagePull"), "{:?}", plan.status.message);

        let plan = decide(&pending, None, &[pod(0, 1, ready())], at(3), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Ready), POD_READY));
        assert_eq!(plan.status.conditions[0].status, "True");
        assert_eq!(plan.status.ready_at, Some(Time(at(3))));
        assert_eq!(plan.transition, Some(Transition::Ready));
        assert_eq!(plan.requeue, Some(MAX_REQUEUE), "the idle timeout (600 s) is farther than the longest wait");
        assert!(plan.create.is_none() && plan.delete.is_empty());

        // Nothing changed: the same status (no write), the same wait.
        let ready_session = with_status(json!({}), serde_json::to_value(&plan.status).unwrap());
        let again = decide(&ready_session, None, &[pod(0, 1, ready())], at(4), 120);
        assert_eq!(again.status, ready_session.status.clone().unwrap());
        assert_eq!(again.transition, None);
    }

    #[test]
    fn expiry_times_are_the_idle_timeout_after_the_last_call_and_the_lifetime() {
        let spec = json!({"idleTimeoutSeconds": 60, "maxLifetimeSeconds": 1000});
        let s = with_status(spec.clone(), json!({"phase": "Ready", "podName": "ses-1-00000", "readyAt": iso(10)}));
        assert_eq!(lifetime_end(&s, at(0)), at(1000).as_millisecond());
        assert_eq!(idle_end(&s, s.status.as_ref().unwrap()), Some(at(70).as_millisecond()));
        let plan = decide(&s, None, &[pod(0, 1, ready())], at(30), 120);
        assert_eq!(plan.requeue, Some(Duration::from_secs(40)));
        // A call at 65 s: idle until 125 s.
        let called = with_status(
            spec.clone(),
            json!({"phase": "Ready", "podName": "ses-1-00000", "readyAt": iso(10), "lastActivityAt": iso(65)}),
        );
        let plan = decide(&called, None, &[pod(0, 1, ready())], at(80), 120);
        assert_eq!((plan.status.phase, plan.requeue), (Some(SessionPhase::Ready), Some(Duration::from_secs(45))));
        // Near the end of its lifetime, the lifetime comes first.
        let late = with_status(
            spec.clone(),
            json!({"phase": "Ready", "podName": "ses-1-00000", "readyAt": iso(10), "lastActivityAt": iso(990)}),
        );
        assert_eq!(decide(&late, None, &[pod(0, 1, ready())], at(995), 120).requeue, Some(Duration::from_secs(5)));
        // Never ready: only the lifetime counts (and the Pod's start-up).
        let never = session(spec);
        assert_eq!(idle_end(&never, &PythonSessionStatus::default()), None);
    }

    #[test]
    fn an_idle_session_ends_and_its_pod_is_deleted() {
        let s = with_status(
            json!({"idleTimeoutSeconds": 60}),
            json!({"phase": "Ready", "podName": "ses-1-00000", "readyAt": iso(10), "lastActivityAt": iso(20)}),
        );
        let plan = decide(&s, None, &[pod(0, 1, ready())], at(80), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Ended), IDLE_TIMEOUT));
        assert_eq!(plan.status.message.as_deref(), Some("the session was idle for 60s"));
        assert_eq!((plan.status.pod_name.as_ref(), plan.status.ended_at.clone()), (None, Some(Time(at(80)))));
        assert_eq!(plan.delete.len(), 1);
        assert_eq!(plan.transition, Some(Transition::Ended(SessionPhase::Ended, IDLE_TIMEOUT.into())));
        assert_eq!(plan.status.last_activity_at, Some(Time(at(20))), "read, never changed");
        assert!(plan.create.is_none());
    }

    #[test]
    fn a_session_past_its_lifetime_ends_whatever_its_pod_does() {
        let s = with_status(json!({"maxLifetimeSeconds": 100}), json!({"phase": "Pending", "restarts": 1}));
        let plan = decide(&s, None, &[], at(100), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Ended), LIFETIME_EXCEEDED));
        assert!(plan.create.is_none(), "no restart past the lifetime");
    }

    #[test]
    fn ended_sessions_are_deleted_after_the_grace() {
        let s = with_status(json!({}), json!({"phase": "Ended", "endedAt": iso(100)}));
        let leftover = pod(0, 1, ready());
        let plan = decide(&s, None, std::slice::from_ref(&leftover), at(160), 120);
        assert_eq!(plan.delete, vec![leftover], "a Pod still there is deleted");
        assert!(!plan.delete_session);
        assert_eq!(plan.requeue, Some(Duration::from_secs(300)), "looked at again, at most every 5 minutes");
        let plan = decide(&s, None, &[], at(100 + 540), 120);
        assert_eq!(plan.requeue, Some(Duration::from_secs(60)));
        assert_eq!(plan.status, s.status.clone().unwrap(), "a terminal status never changes");
        let plan = decide(&s, None, &[], at(100 + 600), 120);
        assert!(plan.delete_session);
        let failed = with_status(json!({}), json!({"phase": "Failed"}));
        let plan = decide(&failed, None, &[], at(5), 120);
        assert_eq!(plan.status.ended_at, Some(Time(at(5))), "an end time is recorded once");
    }

    #[test]
    fn a_lost_or_failed_pod_of_a_ready_session_is_replaced_and_counted() {
        let s = with_status(
            json!({}),
            json!({"phase": "Ready", "podName": "ses-1-00000", "readyAt": iso(10), "startedAt": iso(1)}),
        );
        // Deleted by the API server (a restart): still terminating, then gone.
        for pods in [vec![going(pod(0, 1, ready()))], vec![]] {
            let plan = decide(&s, None, &pods, at(30), 120);
            assert_eq!(plan.create.as_ref().map(|p| p.number), Some(1), "{pods:?}");
            assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Pending), RESTARTING));
            assert_eq!((plan.status.restarts, plan.status.pod_name.as_ref()), (1, None));
            assert_eq!(plan.status.started_at, Some(Time(at(1))), "kept");
            assert!(plan.delete.is_empty(), "a Pod going away is not deleted again");
            assert!(matches!(plan.transition, Some(Transition::Restarted(_))));
        }
        // Out of memory: the ended Pod is deleted, the next one created.
        let oom = pod(0, 1, ended(137, "OOMKilled"));
        let plan = decide(&s, None, std::slice::from_ref(&oom), at(30), 120);
        assert_eq!(plan.create.as_ref().map(|p| p.number), Some(1));
        assert_eq!(plan.delete, vec![oom]);
        assert!(plan.status.message.as_deref().unwrap().contains("exit code 137, out of memory"), "{:?}", plan.status);

        // The next Pod is found (even before the status names it) and becomes ready: restarts stay 1.
        let restarting = with_status(json!({}), serde_json::to_value(&plan.status).unwrap());
        let pods = [pod(0, 1, ended(137, "OOMKilled")), pod(1, 30, ready())];
        let plan = decide(&restarting, None, &pods, at(32), 120);
        assert_eq!((plan.status.phase, plan.status.restarts), (Some(SessionPhase::Ready), 1));
        assert_eq!(plan.status.pod_name.as_deref(), Some("ses-1-00001"));
        assert_eq!(plan.status.ready_at, Some(Time(at(32))), "the idle count starts again");
        assert_eq!(plan.delete.len(), 1, "the ended Pod is cleaned up");
        assert!(plan.create.is_none());
    }

    #[test]
    fn a_pod_that_ends_before_it_was_ready_fails_the_session_instead_of_looping() {
        let pending = with_status(json!({}), json!({"phase": "Pending", "restarts": 0, "startedAt": iso(1)}));
        let plan = decide(&pending, None, &[pod(0, 1, ended(1, "Error"))], at(5), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Failed), POD_FAILED));
        assert!(plan.status.message.as_deref().unwrap().contains("ended before it was ready: it ended (exit code 1"));
        assert!(plan.create.is_none());
        // One deleted while pending (a second restart asked for) is replaced, though.
        let plan = decide(&pending, None, &[going(pod(0, 1, starting("ContainerCreating")))], at(5), 120);
        assert_eq!(plan.create.as_ref().map(|p| p.number), Some(1));
    }

    #[test]
    fn a_pod_that_cannot_start_or_is_not_ready_in_time_fails_the_session() {
        let pending = with_status(json!({}), json!({"phase": "Pending", "startedAt": iso(1)}));
        let invalid = json!({"phase": "Pending", "containerStatuses": [{"name": "python", "ready": false,
            "restartCount": 0, "image": "", "imageID": "", "state": {"waiting": {"reason": "InvalidImageName"}}}]});
        let plan = decide(&pending, None, &[pod(0, 1, invalid)], at(5), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Failed), POD_FAILED));
        assert_eq!(plan.delete.len(), 1);
        let slow = pod(0, 1, starting("ImagePullBackOff"));
        let plan = decide(&pending, None, std::slice::from_ref(&slow), at(100), 120);
        assert_eq!((plan.status.phase, plan.requeue), (Some(SessionPhase::Pending), Some(Duration::from_secs(21))));
        let plan = decide(&pending, None, &[slow], at(121), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Failed), STARTUP_TIMEOUT));
        assert!(plan.status.message.as_deref().unwrap().ends_with("within 120s: ImagePullBackOff"));
    }

    #[test]
    fn a_pod_that_was_ready_and_is_not_now_is_waited_for_not_failed() {
        let s = with_status(
            json!({}),
            json!({"phase": "Ready", "podName": "ses-1-00000", "readyAt": iso(10), "startedAt": iso(1)}),
        );
        let unreachable = json!({"phase": "Running", "containerStatuses": [{"name": "python", "ready": false,
            "restartCount": 0, "image": "", "imageID": "", "state": {"running": {"startedAt": iso(2)}}}]});
        let plan = decide(&s, None, &[pod(0, 1, unreachable)], at(300), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Pending), POD_NOT_READY));
        assert!(plan.create.is_none() && plan.delete.is_empty());
        assert_eq!(plan.status.ready_at, Some(Time(at(10))), "kept: the idle count goes on");
        // Ready again: the session is Ready with the same Pod.
        let waiting = with_status(json!({}), serde_json::to_value(&plan.status).unwrap());
        let plan = decide(&waiting, None, &[pod(0, 1, ready())], at(301), 120);
        assert_eq!((plan.status.phase, plan.status.restarts), (Some(SessionPhase::Ready), 0));
        assert_eq!(plan.status.ready_at, Some(Time(at(10))), "the same Pod: its readiness is not new");
        assert_eq!(plan.transition, Some(Transition::Ready));
    }

    /// The Pod as this operator creates it: its runner waits for the go-ahead; `annotations` the operator's records.
    fn gated(mut pod: Pod, annotations: &[(&str, &str)]) -> Pod {
        use pyexec_core::pod::protocol::{FLAG_ON, GATE_ENV};
        let env = serde_json::from_value(json!([{"name": GATE_ENV, "value": FLAG_ON}])).unwrap();
        pod.spec.as_mut().unwrap().containers[0].env = Some(env);
        let all = pod.metadata.annotations.get_or_insert_default();
        all.extend(annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        pod
    }

    #[test]
    fn a_gated_pod_is_ready_only_once_its_runner_took_the_go_ahead_and_found_the_network_closed() {
        use crate::observe::GATE_ANNOTATION;
        use crate::session::desired::RUNNER_READY_ANNOTATION;
        let pending = with_status(json!({}), json!({"phase": "Pending", "startedAt": iso(1)}));
        // Running, waiting on its stdin: the operator closes the network and says go.
        let waiting = gated(pod(0, 1, ready()), &[]);
        let plan = decide(&pending, None, std::slice::from_ref(&waiting), at(5), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Pending), STARTING));
        assert_eq!(plan.gate, Some(Gate::GoAhead(waiting)));
        assert!(plan.status.message.as_deref().unwrap().ends_with("waits for the go-ahead"), "{:?}", plan.status);
        assert_eq!(plan.requeue, Some(GATE_POLL), "nothing else wakes the operator up for it");
        assert!(plan.status.ready_at.is_none() && plan.transition.is_none());
        // The go-ahead went: its report is to be read.
        let went = gated(pod(0, 1, ready()), &[(GATE_ANNOTATION, "true")]);
        let plan = decide(&pending, None, std::slice::from_ref(&went), at(6), 120);
        assert_eq!((plan.status.phase, plan.gate), (Some(SessionPhase::Pending), Some(Gate::Report(went))));
        assert!(plan.status.message.as_deref().unwrap().ends_with("checks that the network is closed"));
        // Reported: Ready, with what was installed.
        let report = r#"{"installed": ["six==1.17.0"]}"#;
        let up = gated(pod(0, 1, ready()), &[(GATE_ANNOTATION, "true"), (RUNNER_READY_ANNOTATION, report)]);
        let plan = decide(&pending, None, &[up], at(7), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Ready), POD_READY));
        assert_eq!(plan.status.installed_packages, ["six==1.17.0"]);
        assert_eq!((plan.gate, plan.transition), (None, Some(Transition::Ready)));
        // Never reported: the start-up allowance holds as for any Pod.
        let silent = gated(pod(0, 1, ready()), &[(GATE_ANNOTATION, "true")]);
        let plan = decide(&pending, None, &[silent], at(121), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Failed), STARTUP_TIMEOUT));
        assert_eq!((plan.gate, plan.delete.len()), (None, 1));
    }

    fn init(state: Value) -> Value {
        json!({"phase": "Pending", "initContainerStatuses": [{"name": "install", "ready": false, "restartCount": 0,
               "image": "", "imageID": "", "state": state}],
               "containerStatuses": [{"name": "python", "ready": false, "restartCount": 0, "image": "",
               "imageID": "", "state": {"waiting": {"reason": "PodInitializing"}}}]})
    }

    #[test]
    fn an_install_is_waited_for_and_a_failed_one_fails_the_session_even_after_a_restart() {
        let pending = with_status(json!({}), json!({"phase": "Pending", "startedAt": iso(1)}));
        let installing = gated(pod(0, 1, init(json!({"running": {"startedAt": iso(2)}}))), &[]);
        let plan = decide(&pending, None, &[installing], at(5), 420);
        assert_eq!(plan.status.phase, Some(SessionPhase::Pending));
        assert!(plan.status.message.as_deref().unwrap().ends_with(": installing the requirements"));
        assert_eq!((plan.gate.as_ref(), plan.requeue), (None, Some(MAX_REQUEUE)), "the install allowance is far");

        let mut failed = init(json!({"terminated": {"exitCode": 1, "reason": "Error"}}));
        failed["phase"] = json!("Failed");
        let pip = gated(pod(0, 1, failed.clone()), &[]);
        let plan = decide(&pending, None, std::slice::from_ref(&pip), at(9), 420);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Failed), INSTALL_FAILED));
        assert_eq!(plan.status.message.as_deref(), Some("installing dependencies failed: pip exited with code 1"));
        assert_eq!(
            plan.install_failed,
            Some(InstallFailure { pod: "ses-1-00000".into(), exit_code: 1, oom_killed: false })
        );
        assert_eq!((plan.delete, plan.create), (vec![pip], None));
        assert_eq!(plan.transition, Some(Transition::Ended(SessionPhase::Failed, INSTALL_FAILED.into())));

        // The Pod that replaces a lost one installs again; when that fails, so does the session.
        let restarting = with_status(json!({}), json!({"phase": "Pending", "restarts": 1, "startedAt": iso(1)}));
        let pods = [pod(0, 1, ended(137, "OOMKilled")), gated(pod(1, 30, failed), &[])];
        let plan = decide(&restarting, None, &pods, at(40), 420);
        assert_eq!(reason(&plan), INSTALL_FAILED);
        assert_eq!(plan.install_failed.map(|f| f.pod).as_deref(), Some("ses-1-00001"));
        assert!(plan.create.is_none(), "no restart loop of a Pod that cannot install");
    }

    #[test]
    fn a_runner_that_stops_before_serving_says_why() {
        let pending = with_status(json!({}), json!({"phase": "Pending", "startedAt": iso(1)}));
        let mut status = ended(1, "Error");
        status["containerStatuses"][0]["state"]["terminated"]["message"] =
            json!("pyexec: the network fence is open: the cloud metadata endpoint answered; nothing was run\n");
        let plan = decide(
            &pending,
            None,
            &[gated(pod(0, 1, status), &[(crate::observe::GATE_ANNOTATION, "true")])],
            at(5),
            120,
        );
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Failed), POD_FAILED));
        let message = plan.status.message.unwrap();
        assert!(message.ends_with("(exit code 1): pyexec: the network fence is open: the cloud metadata endpoint answered; nothing was run"), "{message}");
    }

    #[test]
    fn a_refused_session_fails_with_the_refusals_reason() {
        let refusal = Refusal { reason: "ImageNotAllowed", message: "image \"x\" is not allowed".into() };
        let plan = decide(&session(json!({})), Some(&refusal), &[], at(1), 120);
        assert_eq!((plan.status.phase, reason(&plan)), (Some(SessionPhase::Failed), "ImageNotAllowed"));
        assert_eq!(plan.status.message.as_deref(), Some("image \"x\" is not allowed"));
        assert!(plan.create.is_none());
    }

    #[test]
    fn a_surplus_live_pod_is_deleted_and_long_messages_are_bounded() {
        let s = with_status(json!({}), json!({"phase": "Pending", "restarts": 1}));
        let plan = decide(&s, None, &[pod(1, 5, ready()), pod(2, 6, ready())], at(10), 120);
        assert_eq!(plan.status.pod_name.as_deref(), Some("ses-1-00002"));
        assert_eq!(plan.status.restarts, 2);
        assert_eq!(plan.delete.iter().map(|p| p.name_any()).collect::<Vec<_>>(), ["ses-1-00001"]);
        assert_eq!(bounded("é".repeat(3000)).len(), MAX_MESSAGE);
    }
}
