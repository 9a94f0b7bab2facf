//! Sessions on Kubernetes (docs/sessions.md, docs/kubernetes.md): a `PythonSession` resource per session, whose
//! long-lived Pod the operator keeps running the session runner in mux mode. Each request attaches to the Pod's
//! `python` container (standard input and output) for its length and speaks the shared session protocol over it.
//!
//! One call at a time holds across API server replicas: a call first sets the busy annotation on the resource
//! with an update that names the resource's version, so a second caller (here or on another replica) meets a
//! conflict and answers 409. The annotation says until when it holds (the call's timeout and a grace), so a
//! session whose caller stopped during a call is not busy for ever. After a call the annotation goes and
//! `status.lastActivityAt` moves, from which the operator counts the idle timeout. A call that would not stop, or
//! whose interpreter died, deletes the Pod: the operator starts a fresh one (`status.restarts`) and the result says
//! the state is lost. Each call is recorded as an execution ([`super::records`]).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{AttachParams, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use pyexec_backend::session::{CallCaps, FileOpError, SessionControl, SessionLink, call_result, mark_killed};
use pyexec_core::model::OutputFile;
use pyexec_core::session::{FileList, SessionCall, SessionInfo, SessionState, new_session_id};
use pyexec_core::{ExecutionResult, ExecutionSpec, Timestamp};
use pyexec_crds::contract::{API_SERVER, FINGERPRINT_ANNOTATION, MANAGED_BY_LABEL, TENANT_LABEL};
use pyexec_crds::session::{session_id_of as session_id, session_resource_name};
use pyexec_crds::types::NetworkMode;
use pyexec_crds::{PythonSession, PythonSessionSpec, SessionEnvVar, SessionLimits, SessionPhase};

use super::records::Records;
use crate::backend::{BackendError, IdempotentSession};

/// The annotation a call holds while it runs: who holds it (a random token per call) and until when (Unix
/// seconds), `<token> <until>`.
pub const BUSY_ANNOTATION: &str = "pyexec.io/busy";
/// How long past its timeout a call's hold lasts (the result is being written back).
const HOLD_GRACE: Duration = Duration::from_secs(60);
/// How long a file request's hold lasts (a transfer of the largest file).
const FILE_HOLD: Duration = Duration::from_secs(900);
/// The container of a session Pod that runs the session runner.
pub const SESSION_CONTAINER: &str = "python";
/// How long a new session may take to become ready (its Pod scheduled, its image pulled, its requirements
/// installed).
const READY_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest idle timeout and lifetime a PythonSession takes.
const MAX_SECONDS: u64 = 86_400;
/// Largest reply a call or file request moves.
const MAX_PAYLOAD: u64 = 128 << 20;

/// See the module documentation.
#[derive(Clone)]
pub struct KubeSessions {
    api: Api<PythonSession>,
    pods: Api<Pod>,
    caps: CallCaps,
    /// Largest file moved into or out of a session.
    file_max_bytes: u64,
    /// Where calls are recorded as executions.
    records: Records,
}

fn internal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(e.to_string())
}

fn not_found(id: &str) -> BackendError {
    BackendError::NotFound(format!(
        "session {id} not found (it may have ended: deleted, idle too long, or past its lifetime)"
    ))
}

fn busy(id: &str) -> BackendError {
    BackendError::Conflict(format!("session {id} is busy with another call; retry when it ends"))
}

/// The resource's name for a session id (`ses_<uuid>` → `ses-<uuid>`), `None` for anything else.
pub fn resource_name(id: &str) -> Option<String> {
    session_resource_name(id)
}

/// Whether a call holds the session at `now` (Unix seconds): a hold past its time is one whose caller stopped.
fn held(session: &PythonSession, now: i64) -> bool {
    let value = session.metadata.annotations.as_ref().and_then(|a| a.get(BUSY_ANNOTATION));
    match value.and_then(|v| v.rsplit_once(' ')) {
        Some((_, until)) => until.parse::<i64>().map_or(true, |until| until > now),
        None => value.is_some(),
    }
}

fn unix_now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn timestamp(t: Option<&Time>) -> Option<Timestamp> {
    t.and_then(|t| Timestamp::from_unix_micros(t.0.as_microsecond()))
}

/// The session as the API shows it.
pub fn info_of(session: &PythonSession) -> Option<SessionInfo> {
    let name = session.metadata.name.as_deref()?;
    let status = session.status.clone().unwrap_or_default();
    let created = timestamp(session.metadata.creation_timestamp.as_ref()).unwrap_or_else(Timestamp::now);
    // The operator counts idleness from the later of the two (a restarted Pod is not idle from the start).
    let last = [timestamp(status.last_activity_at.as_ref()), timestamp(status.ready_at.as_ref())]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(created);
    let spec = &session.spec;
    let idle = Duration::from_secs(u64::from(spec.idle_timeout_seconds));
    let lifetime_end = created.plus(Duration::from_secs(u64::from(spec.max_lifetime_seconds)));
    let busy = held(session, unix_now());
    let state = match status.phase {
        Some(p) if p.is_terminal() => SessionState::Ended,
        _ if busy => SessionState::Busy,
        _ => SessionState::Idle,
    };
    Some(SessionInfo {
        session_id: session_id(name),
        state,
        python_version: spec.python_version.clone().unwrap_or_default(),
        created_at: created,
        last_used_at: last,
        expires_at: last.plus(idle).min(lifetime_end),
        calls: session
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CALLS_ANNOTATION))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        restarts: u64::try_from(status.restarts).unwrap_or(0),
        memory_mb: i64::try_from(spec.limits.memory_mb).unwrap_or(i64::MAX),
        disk_mb: i64::try_from(spec.limits.disk_mb).unwrap_or(i64::MAX),
        network_disabled: spec.network == NetworkMode::None,
        idle_timeout_seconds: i64::from(spec.idle_timeout_seconds),
        tenant: session.metadata.labels.as_ref().and_then(|l| l.get(TENANT_LABEL)).cloned(),
        memory_used_bytes: status.memory_used_bytes,
    })
}

/// Calls made so far, counted on the resource.
const CALLS_ANNOTATION: &str = "pyexec.io/calls";

/// The resource of a new session.
pub fn resource(
    name: &str,
    spec: &ExecutionSpec,
    idle_seconds: u64,
    default_python: pyexec_core::PythonVersion,
    max_lifetime: Duration,
) -> PythonSession {
    let env = spec.env.iter().map(|(name, value)| SessionEnvVar { name: name.clone(), value: value.clone() }).collect();
    let session_spec = PythonSessionSpec {
        python_version: Some(spec.python.unwrap_or(default_python).to_string()),
        env,
        limits: SessionLimits {
            memory_mb: spec.limits.memory_mb,
            cpu: pyexec_crds::convert::cpu_quantity(spec.limits.cpu_shares),
            disk_mb: spec.limits.disk_mb,
        },
        network: if spec.network { NetworkMode::Egress } else { NetworkMode::None },
        // The resource allows at most a day for either.
        idle_timeout_seconds: u32::try_from(idle_seconds.clamp(1, MAX_SECONDS)).unwrap_or(1),
        max_lifetime_seconds: u32::try_from(max_lifetime.as_secs().clamp(1, MAX_SECONDS)).unwrap_or(1),
        // Installed by the operator before the session is ready (a failed install fails the session).
        requirements_txt: spec.requirements.listed().map(str::to_owned),
        ..PythonSessionSpec::default()
    };
    let mut session = PythonSession::new(name, session_spec);
    let mut labels: std::collections::BTreeMap<String, String> =
        [(MANAGED_BY_LABEL.to_owned(), API_SERVER.to_owned())].into();
    if let Some(tenant) = &spec.tenant {
        labels.insert(TENANT_LABEL.to_owned(), tenant.clone());
    }
    session.metadata.labels = Some(labels);
    if let Some(record) = &spec.idempotency {
        session.metadata.annotations = Some([(FINGERPRINT_ANNOTATION.to_owned(), record.fingerprint.clone())].into());
    }
    session
}

/// The id of the session an idempotency key creates: every replica derives the same, so that a retry reaching
/// another replica finds the session (and two racing creates make one).
pub fn idempotent_session_id(key_hash: &str) -> String {
    format!("ses_{}", super::idempotent_uuid(key_hash))
}

/// No signals reach a Pod's process through attach: interrupts go in band.
struct InBand;

impl SessionControl for InBand {
    fn interrupt(&self) -> bool {
        false
    }
    fn oom_kills(&self) -> u64 {
        0
    }
}

/// A call's hold on a session: the busy annotation, released (with the activity time) when done.
struct Hold {
    name: String,
    token: String,
}

impl KubeSessions {
    /// Sessions in `client`'s `namespace`.
    pub fn new(client: Client, namespace: &str, caps: CallCaps, file_max_bytes: u64, records: Records) -> Self {
        KubeSessions {
            api: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client, namespace),
            caps,
            file_max_bytes,
            records,
        }
    }

    /// Creates the resource and waits until its Pod is ready.
    pub async fn create(
        &self,
        spec: &ExecutionSpec,
        idle_seconds: u64,
        default_python: pyexec_core::PythonVersion,
        max_lifetime: Duration,
    ) -> Result<SessionInfo, BackendError> {
        let id = match &spec.idempotency {
            Some(record) => idempotent_session_id(&record.key_hash),
            None => new_session_id(),
        };
        let name = resource_name(&id).ok_or_else(|| internal("a new session id has no resource name"))?;
        let session = resource(&name, spec, idle_seconds, default_python, max_lifetime);
        match self.api.create(&PostParams::default(), &session).await {
            Ok(_) => {}
            // Under an idempotency key: another replica created it for a concurrent retry, or it ended and is
            // not yet deleted (a key names one session, while it lives).
            Err(kube::Error::Api(e)) if e.code == 409 && spec.idempotency.is_some() => {
                return match self.live(&id).await {
                    Ok(live) => info_of(&live).ok_or_else(|| internal("a session without a name")),
                    Err(_) => Err(BackendError::Conflict(format!(
                        "session {id}, created under this Idempotency-Key, has ended; use a new key for a new session"
                    ))),
                };
            }
            Err(e) => return Err(internal(e)),
        }
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let current = self.api.get_opt(&name).await.map_err(internal)?.ok_or_else(|| not_found(&id))?;
            let status = current.status.clone().unwrap_or_default();
            match status.phase {
                Some(SessionPhase::Ready) if status.pod_name.is_some() => {
                    return info_of(&current).ok_or_else(|| internal("a session without a name"));
                }
                Some(SessionPhase::Failed | SessionPhase::Ended) => {
                    let _ = self.api.delete(&name, &DeleteParams::default()).await;
                    let why = status.message.unwrap_or_else(|| "its Pod ended before it was ready".into());
                    return Err(BackendError::Invalid(pyexec_core::ValidationError::bad_request(format!(
                        "the session could not start: {why}"
                    ))));
                }
                _ => {}
            }
            if tokio::time::Instant::now() > deadline {
                let _ = self.api.delete(&name, &DeleteParams::default()).await;
                return Err(BackendError::Internal(format!(
                    "session {id} was not ready within {}s (its Pod did not start, or its install took longer)",
                    READY_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn live(&self, id: &str) -> Result<PythonSession, BackendError> {
        let name = resource_name(id).ok_or_else(|| not_found(id))?;
        match self.api.get_opt(&name).await.map_err(internal)? {
            Some(s) if !s.status.as_ref().and_then(|st| st.phase).is_some_and(SessionPhase::is_terminal) => Ok(s),
            _ => Err(not_found(id)),
        }
    }

    /// The live session an idempotency key created, with its request's fingerprint.
    pub async fn find_idempotent(&self, key_hash: &str) -> Result<Option<IdempotentSession>, BackendError> {
        let Ok(live) = self.live(&idempotent_session_id(key_hash)).await else { return Ok(None) };
        let fingerprint = live.metadata.annotations.as_ref().and_then(|a| a.get(FINGERPRINT_ANNOTATION)).cloned();
        Ok(info_of(&live).map(|info| IdempotentSession { info, fingerprint: fingerprint.unwrap_or_default() }))
    }

    /// A live session.
    pub async fn get(&self, id: &str) -> Result<Option<SessionInfo>, BackendError> {
        match self.live(id).await {
            Ok(s) => Ok(info_of(&s)),
            Err(BackendError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Live sessions created through the API, newest first.
    pub async fn list(&self) -> Result<Vec<SessionInfo>, BackendError> {
        let params = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={API_SERVER}"));
        let list = self.api.list(&params).await.map_err(internal)?;
        let mut all: Vec<SessionInfo> =
            list.items.iter().filter_map(info_of).filter(|i| i.state != SessionState::Ended).collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.session_id.cmp(&a.session_id)));
        Ok(all)
    }

    /// Deletes the resource (its Pod goes with it).
    pub async fn delete(&self, id: &str) -> Result<Option<SessionInfo>, BackendError> {
        let session = match self.live(id).await {
            Ok(s) => s,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let name = resource_name(id).ok_or_else(|| not_found(id))?;
        self.api.delete(&name, &DeleteParams::foreground()).await.map_err(internal)?;
        Ok(info_of(&session).map(|mut i| {
            i.state = SessionState::Ended;
            i
        }))
    }

    /// Takes the session for one request that takes at most `length`: 409 when another holds it.
    async fn hold(&self, id: &str, length: Duration) -> Result<(Hold, PythonSession), BackendError> {
        let mut session = self.live(id).await?;
        let now = unix_now();
        if held(&session, now) {
            return Err(busy(id));
        }
        let name = resource_name(id).ok_or_else(|| not_found(id))?;
        let until = now.saturating_add(i64::try_from(length.as_secs()).unwrap_or(i64::MAX / 2));
        let token = format!("{} {until}", new_session_id());
        session.metadata.annotations.get_or_insert_with(Default::default).insert(BUSY_ANNOTATION.into(), token.clone());
        // The update names the version read: whoever comes second gets a conflict.
        match self.api.replace(&name, &PostParams::default(), &session).await {
            Ok(held) => Ok((Hold { name, token }, held)),
            Err(kube::Error::Api(e)) if e.code == 409 => Err(busy(id)),
            Err(e) => Err(internal(e)),
        }
    }

    /// Lets the session go: the annotation goes, activity and calls are recorded.
    /// `memory`: the call's end reported it (a call that ended without a report clears the last one).
    async fn release(&self, hold: Hold, called: bool, memory: Option<u64>) {
        let current = self.api.get_opt(&hold.name).await.ok().flatten();
        let Some(mut session) = current else { return };
        let annotations = session.metadata.annotations.get_or_insert_with(Default::default);
        if annotations.get(BUSY_ANNOTATION) != Some(&hold.token) {
            return;
        }
        annotations.remove(BUSY_ANNOTATION);
        if called {
            let calls = annotations.get(CALLS_ANNOTATION).and_then(|c| c.parse::<u64>().ok()).unwrap_or(0) + 1;
            annotations.insert(CALLS_ANNOTATION.into(), calls.to_string());
        }
        if let Err(e) = self.api.replace(&hold.name, &PostParams::default(), &session).await {
            tracing::warn!(session = %hold.name, error = %e, "could not release a session");
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let patch = if called {
            serde_json::json!({"status": {"lastActivityAt": now, "memoryUsedBytes": memory}})
        } else {
            serde_json::json!({"status": {"lastActivityAt": now}})
        };
        if let Err(e) = self.api.patch_status(&hold.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(session = %hold.name, error = %e, "could not record a session's activity");
        }
    }

    /// The session's running Pod: after a restart the operator takes a moment to replace it, which a request
    /// waits for (as long as a new session may take to start).
    async fn running_pod(&self, name: &str) -> Result<String, BackendError> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let session = self.api.get_opt(name).await.map_err(internal)?;
            let status = session.as_ref().and_then(|s| s.status.clone()).unwrap_or_default();
            if status.phase.is_some_and(SessionPhase::is_terminal) || session.is_none() {
                return Err(not_found(&session_id(name)));
            }
            if let (Some(SessionPhase::Ready), Some(pod)) = (status.phase, status.pod_name) {
                let running = self.pods.get_opt(&pod).await.map_err(internal)?.is_some_and(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && !matches!(p.status.and_then(|s| s.phase).as_deref(), Some("Succeeded" | "Failed"))
                });
                if running {
                    return Ok(pod);
                }
            }
            if tokio::time::Instant::now() > deadline {
                return Err(BackendError::Internal(format!("the Pod of session {name} did not come back")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A link to the session's runner, over an attach to its Pod.
    async fn attach(&self, name: &str) -> Result<(SessionLink, kube::api::AttachedProcess), BackendError> {
        let pod = self.running_pod(name).await?;
        let params = AttachParams::default().container(SESSION_CONTAINER).stdin(true).stdout(true).stderr(false);
        let mut attached = self.pods.attach(&pod, &params).await.map_err(internal)?;
        let stdin = attached.stdin().ok_or_else(|| internal("the attach has no stdin"))?;
        let stdout = attached.stdout().ok_or_else(|| internal("the attach has no stdout"))?;
        Ok((SessionLink::from_mux(Box::new(stdin), stdout, MAX_PAYLOAD), attached))
    }

    /// Runs a call, recorded as the execution `execution_id`; on a lost interpreter the Pod is replaced.
    pub async fn call(
        &self,
        id: &str,
        execution_id: &str,
        call: &SessionCall,
        spec: &ExecutionSpec,
    ) -> Result<(ExecutionResult, Option<pyexec_core::files_out::FilesOut>), BackendError> {
        let (hold, session) = self.hold(id, call.timeout + HOLD_GRACE).await?;
        let started_at = Timestamp::now();
        let record = match self.records.open(&session, execution_id, call, started_at).await {
            Ok(record) => record,
            Err(e) => {
                self.release(hold, false, None).await;
                return Err(e);
            }
        };
        let attached = self.attach(&hold.name).await;
        let pod = self.api.get_opt(&hold.name).await.ok().flatten().and_then(|s| s.status.and_then(|s| s.pod_name));
        let observed = match attached {
            Ok((mut link, attached)) => {
                let observed = link.call(call, self.caps, &InBand).await;
                drop(link);
                attached.abort();
                observed
            }
            Err(e) => {
                let mut result = pyexec_core::outcome::failed(execution_id, e.to_string(), Some(started_at), "");
                result.session_id = Some(id.to_owned());
                result.finished_at = Some(Timestamp::now());
                self.records.close(record, &result, None).await;
                self.release(hold, false, None).await;
                return Err(e);
            }
        };
        let finished_at = Timestamp::now();
        // A kill (DELETE of the record) deletes the Pod: the link broke, and the record says why.
        let mut observed = observed;
        let killed = observed.lost && self.records.kill_requested(&record).await;
        if observed.lost && !killed && !observed.timed_out && self.ended_for_memory(pod.as_deref()).await {
            // The interpreter went during the call (one that would not stop is alive: not checked). No cgroup count
            // reaches through an attach: the container's end says whether it was for memory.
            observed.oom_killed = true;
        }
        let memory = observed.memory_bytes;
        let restarted = observed.lost && self.restart(pod.as_deref()).await;
        let (mut result, files) =
            call_result(id, execution_id, call, spec, observed, restarted, self.caps, started_at, finished_at);
        if killed {
            mark_killed(&mut result, restarted);
        }
        self.records.close(record, &result, files.as_ref()).await;
        self.release(hold, true, memory).await;
        Ok((result, files))
    }

    /// Stops the running call of the session `name` (its resource's name): its Pod goes at once, which breaks the
    /// call's link wherever it is held; the operator starts the session's next Pod.
    pub async fn stop_call(&self, name: &str) -> Result<(), BackendError> {
        let session = self.api.get_opt(name).await.map_err(internal)?;
        let Some(pod) = session.and_then(|s| s.status).and_then(|s| s.pod_name) else { return Ok(()) };
        match self.pods.delete(&pod, &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(internal(e)),
        }
    }

    /// Whether the session's container was killed for memory: a lost link is read soon after the end, before the
    /// kubelet may have reported it, so its status is read for a moment.
    async fn ended_for_memory(&self, pod: Option<&str>) -> bool {
        let Some(pod) = pod else { return false };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let Ok(Some(current)) = self.pods.get_opt(pod).await else { return false };
            let container = current
                .status
                .and_then(|s| s.container_statuses)
                .and_then(|all| all.into_iter().find(|c| c.name == SESSION_CONTAINER));
            if let Some(c) = container {
                let ended = [c.state.and_then(|s| s.terminated), c.last_state.and_then(|s| s.terminated)];
                if let Some(t) = ended.into_iter().flatten().next() {
                    return t.reason.as_deref() == Some("OOMKilled");
                }
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes the session's Pod so that the operator starts a fresh one.
    async fn restart(&self, pod: Option<&str>) -> bool {
        let Some(pod) = pod else { return false };
        match self.pods.delete(pod, &DeleteParams::default()).await {
            Ok(_) => true,
            // Already going (a kill deleted it): the operator starts the next one all the same.
            Err(kube::Error::Api(e)) if e.code == 404 => true,
            Err(e) => {
                tracing::warn!(%pod, error = %e, "could not replace a session's Pod");
                false
            }
        }
    }

    async fn with_link<T>(
        &self,
        id: &str,
        op: impl for<'a> FnOnce(
            &'a mut SessionLink,
        ) -> std::pin::Pin<Box<dyn Future<Output = Result<T, FileOpError>> + Send + 'a>>,
    ) -> Result<T, BackendError> {
        let (hold, _) = self.hold(id, FILE_HOLD).await?;
        let result = match self.attach(&hold.name).await {
            Ok((mut link, attached)) => {
                let r = op(&mut link).await;
                drop(link);
                attached.abort();
                r.map_err(|e| file_error(id, e))
            }
            Err(e) => Err(e),
        };
        self.release(hold, false, None).await;
        result
    }

    /// The regular files of the session's `/work`.
    pub async fn files(&self, id: &str) -> Result<FileList, BackendError> {
        let count = self.caps.files_count;
        let (files, truncated) = self.with_link(id, move |link| Box::pin(link.list(count))).await?;
        Ok(FileList { files, truncated })
    }

    /// One file's bytes.
    pub async fn file(&self, id: &str, path: &str) -> Result<Vec<u8>, BackendError> {
        let (path, max) = (path.to_owned(), self.file_max_bytes.min(MAX_PAYLOAD));
        self.with_link(id, move |link| Box::pin(async move { link.get(&path, max).await })).await
    }

    /// Writes the file at `local` to `path`.
    pub async fn upload(&self, id: &str, path: &str, local: &std::path::Path) -> Result<OutputFile, BackendError> {
        let file = tokio::fs::File::open(local).await.map_err(internal)?;
        let size = file.metadata().await.map_err(internal)?.len();
        if size > self.file_max_bytes {
            return Err(BackendError::TooLarge(format!(
                "the file has {size} bytes, over the limit of {} (PYEXEC_SESSION_UPLOAD_MAX_BYTES)",
                self.file_max_bytes
            )));
        }
        let path = path.to_owned();
        self.with_link(id, move |link| Box::pin(async move { link.put(&path, size, file).await })).await
    }
}

fn file_error(id: &str, e: FileOpError) -> BackendError {
    match e {
        FileOpError::NotFound => BackendError::NotFound(format!("no such file in the /work of session {id}")),
        FileOpError::InvalidPath => BackendError::Invalid(pyexec_core::ValidationError::bad_request("invalid path")),
        FileOpError::IsDirectory => {
            BackendError::Invalid(pyexec_core::ValidationError::bad_request("a directory, not a file"))
        }
        FileOpError::TooLarge(_) | FileOpError::NoSpace => BackendError::TooLarge(e.to_string()),
        FileOpError::Failed(m) => BackendError::Internal(format!("session {id}: {m}")),
        FileOpError::Lost(e) => BackendError::Internal(format!("session {id}: {e}")),
    }
}
