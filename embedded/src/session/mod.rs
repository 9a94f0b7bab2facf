//! Sessions of the embedded backend (docs/sessions.md): interpreters that keep their state between calls, each
//! in a sandbox of its own built by [`Runner::start_session`], with a cap on how many live, idle and lifetime
//! limits, one call at a time, and a rebuilt sandbox when a call would not stop or killed the interpreter.
//!
//! [`Sessions`] only runs sessions; recording each call as an execution (and keeping its files) is the backend's.

mod live;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyexec_backend::session::{CallCaps, CallObserved, FileOpError, call_result};
use pyexec_core::files_out::FilesOut;
use pyexec_core::model::OutputFile;
use pyexec_core::session::{SessionCall, SessionInfo, SessionState, new_session_id};
use pyexec_core::{ExecutionResult, ExecutionSpec, Timestamp};
use tokio_util::sync::CancellationToken;

use crate::runner::Runner;
use live::LiveSession;

/// The server's settings for sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// Most live sessions.
    pub max_sessions: usize,
    /// Every session ends this long after its creation.
    pub max_lifetime: Duration,
    /// Largest file uploaded into or downloaded from a session, bytes.
    pub file_max_bytes: u64,
    /// Bytes of files kept with one call.
    pub files_max_bytes: u64,
    /// Files kept with one call.
    pub files_max_count: usize,
    /// Bytes of standard output and of standard error kept per call.
    pub output_limit_bytes: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            max_sessions: 16,
            max_lifetime: Duration::from_secs(3600),
            file_max_bytes: 100 << 20,
            files_max_bytes: 64 << 20,
            files_max_count: 1000,
            output_limit_bytes: 1 << 20,
        }
    }
}

/// Why a session request failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session (or it ended).
    #[error(
        "session {0} not found (it may have ended: deleted, idle too long, past its lifetime, or the server restarted)"
    )]
    NotFound(String),
    /// Another call is running.
    #[error("session {0} is busy with another call; retry when it ends")]
    Busy(String),
    /// The cap on live sessions is reached.
    #[error("{0} sessions are live, the most this server runs (PYEXEC_MAX_SESSIONS); delete one or retry later")]
    TooMany(usize),
    /// The session could not start (the message says why).
    #[error("{0}")]
    Start(String),
    /// A file path or request that cannot be served.
    #[error("{0}")]
    Invalid(String),
    /// A file larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The file does not exist.
    #[error("no file {0:?} in the session's /work")]
    NoFile(String),
    /// Something broke.
    #[error("{0}")]
    Internal(String),
}

/// A call's result, with the files it wrote.
#[derive(Debug)]
pub struct CallResult {
    /// The call as an execution.
    pub result: ExecutionResult,
    /// The files it created or changed, read from the session (already checked).
    pub files: Option<FilesOut>,
}

struct Entry {
    info: Mutex<SessionInfo>,
    spec: ExecutionSpec,
    idle: Duration,
    created: Instant,
    last_used: Mutex<Instant>,
    /// The interpreter; locked for the length of a call (or file request).
    live: tokio::sync::Mutex<Option<LiveSession>>,
    /// Cancelled when the session ends: a running call stops.
    ended: CancellationToken,
}

impl Entry {
    fn expires(&self) -> Instant {
        let last = *self.last_used.lock().unwrap_or_else(|e| e.into_inner());
        last + self.idle
    }

    fn snapshot(&self) -> SessionInfo {
        self.info.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn update(&self, f: impl FnOnce(&mut SessionInfo)) {
        f(&mut self.info.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    runner: Runner,
    settings: SessionSettings,
    sessions: Mutex<HashMap<String, Arc<Entry>>>,
    /// Sessions being started, counted against the cap.
    starting: Mutex<usize>,
    closing: CancellationToken,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("settings", &self.inner.settings).finish()
    }
}

impl Sessions {
    /// Sessions run by `runner`; a task ends those past their idle timeout or lifetime.
    pub fn new(runner: Runner, settings: SessionSettings) -> Sessions {
        let inner = Arc::new(Inner {
            runner,
            settings,
            sessions: Mutex::new(HashMap::new()),
            starting: Mutex::new(0),
            closing: CancellationToken::new(),
        });
        tokio::spawn(reaper(Arc::downgrade(&inner), inner.closing.clone()));
        Sessions { inner }
    }

    /// The settings.
    pub fn settings(&self) -> &SessionSettings {
        &self.inner.settings
    }

    /// Live sessions now.
    pub fn count(&self) -> usize {
        self.inner.lock().len()
    }

    /// Starts a session running `spec` (validated by `Policy::session_spec`) with idle timeout `idle`.
    pub async fn create(&self, spec: ExecutionSpec, idle: Duration) -> Result<SessionInfo, SessionError> {
        let inner = &self.inner;
        {
            let live = inner.lock().len();
            let mut starting = inner.starting.lock().unwrap_or_else(|e| e.into_inner());
            if live + *starting >= inner.settings.max_sessions {
                return Err(SessionError::TooMany(inner.settings.max_sessions));
            }
            *starting += 1;
        }
        let started = inner.start(&spec).await;
        *inner.starting.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        let (live, python_version) = started?;
        let now = Timestamp::now();
        let id = new_session_id();
        let info = SessionInfo {
            session_id: id.clone(),
            state: SessionState::Idle,
            python_version,
            created_at: now,
            last_used_at: now,
            expires_at: now.plus(idle.min(inner.settings.max_lifetime)),
            calls: 0,
            restarts: 0,
            memory_mb: spec.limits.memory_mb as i64,
            disk_mb: spec.limits.disk_mb as i64,
            network_disabled: !spec.network,
            idle_timeout_seconds: idle.as_secs() as i64,
            tenant: spec.tenant.clone(),
            memory_used_bytes: None,
        };
        let entry = Arc::new(Entry {
            info: Mutex::new(info.clone()),
            spec,
            idle,
            created: Instant::now(),
            last_used: Mutex::new(Instant::now()),
            live: tokio::sync::Mutex::new(Some(live)),
            ended: CancellationToken::new(),
        });
        if inner.closing.is_cancelled() {
            inner.end(entry).await;
            return Err(SessionError::Start("the server is shutting down".into()));
        }
        inner.lock().insert(id.clone(), entry);
        tracing::info!(session_id = %id, "session started");
        Ok(info)
    }

    /// The live session whose spec carries the idempotency key hash `key_hash`, and its request's fingerprint.
    pub fn find_idempotent(&self, key_hash: &str) -> Option<(SessionInfo, String)> {
        let entry = self
            .inner
            .lock()
            .values()
            .find(|e| e.spec.idempotency.as_ref().is_some_and(|r| r.key_hash == key_hash))
            .cloned()?;
        let fingerprint = entry.spec.idempotency.as_ref().map(|r| r.fingerprint.clone()).unwrap_or_default();
        Some((entry.snapshot(), fingerprint))
    }

    /// A live session.
    pub fn get(&self, id: &str) -> Option<SessionInfo> {
        let entry = self.inner.lock().get(id).cloned()?;
        let mut info = entry.snapshot();
        // Measured only between calls (a running call holds the interpreter).
        if let Ok(live) = entry.live.try_lock() {
            info.memory_used_bytes = live.as_ref().and_then(LiveSession::memory_bytes);
        }
        Some(info)
    }

    /// Live sessions, newest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = self.inner.lock().values().map(|e| e.snapshot()).collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.session_id.cmp(&a.session_id)));
        all
    }

    /// Ends a session: a running call stops, every process is gone when this returns.
    pub async fn delete(&self, id: &str) -> Option<SessionInfo> {
        let entry = self.inner.lock().remove(id)?;
        let mut info = entry.snapshot();
        self.inner.end(entry).await;
        info.state = SessionState::Ended;
        Some(info)
    }

    /// Runs a call; its result is recorded under `execution_id`. Cancelling `kill` stops the call at once (the
    /// interpreter is replaced, as for a call that would not stop) and the result is `killed`.
    pub async fn call(
        &self,
        id: &str,
        execution_id: &str,
        call: &SessionCall,
        kill: CancellationToken,
    ) -> Result<CallResult, SessionError> {
        let entry = self.inner.entry(id)?;
        let mut guard = entry.live.try_lock().map_err(|_| SessionError::Busy(id.to_owned()))?;
        entry.update(|i| i.state = SessionState::Busy);
        let settings = self.inner.settings;
        let started_at = Timestamp::now();
        let mut restarted = false;
        let caps = self.inner.caps();
        let mut killed = false;
        let observed = match guard.as_mut() {
            Some(live) => {
                tokio::select! {
                    o = live.call(call, caps) => o,
                    () = entry.ended.cancelled() => CallObserved::lost(),
                    () = kill.cancelled() => {
                        killed = true;
                        CallObserved::lost()
                    }
                }
            }
            None => CallObserved::lost(),
        };
        let finished_at = Timestamp::now();
        if observed.lost && !entry.ended.is_cancelled() {
            // The interpreter is gone or would not stop: a fresh one takes its place, state lost.
            if let Some(old) = guard.take() {
                old.destroy().await;
            }
            match self.inner.start(&entry.spec).await {
                Ok((fresh, _)) => {
                    *guard = Some(fresh);
                    restarted = true;
                    entry.update(|i| i.restarts += 1);
                }
                Err(e) => {
                    tracing::warn!(session_id = id, error = %e, "a session could not be restarted; it ends");
                    self.inner.lock().remove(id);
                    entry.ended.cancel();
                }
            }
        }
        let now = Timestamp::now();
        *entry.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        let lifetime_end = entry.snapshot().created_at.plus(settings.max_lifetime);
        entry.update(|i| {
            i.state = SessionState::Idle;
            i.calls += 1;
            i.last_used_at = now;
            i.expires_at = now.plus(entry.idle).min(lifetime_end);
        });
        drop(guard);
        let (mut result, files) =
            call_result(id, execution_id, call, &entry.spec, observed, restarted, caps, started_at, finished_at);
        if killed {
            pyexec_backend::session::mark_killed(&mut result, restarted);
        }
        Ok(CallResult { result, files })
    }

    /// The regular files in the session's `/work` now.
    pub async fn files(&self, id: &str) -> Result<(Vec<OutputFile>, bool), SessionError> {
        let entry = self.inner.entry(id)?;
        let mut guard = entry.live.try_lock().map_err(|_| SessionError::Busy(id.to_owned()))?;
        let live = guard.as_mut().ok_or_else(|| SessionError::NotFound(id.to_owned()))?;
        live.list(self.inner.settings.files_max_count).await.map_err(|e| file_error(id, "", e))
    }

    /// One file of the session's `/work`.
    pub async fn file(&self, id: &str, path: &str) -> Result<Vec<u8>, SessionError> {
        let entry = self.inner.entry(id)?;
        let mut guard = entry.live.try_lock().map_err(|_| SessionError::Busy(id.to_owned()))?;
        let live = guard.as_mut().ok_or_else(|| SessionError::NotFound(id.to_owned()))?;
        let max = self.inner.settings.file_max_bytes.min(live.max_payload());
        live.get(path, max).await.map_err(|e| file_error(id, path, e))
    }

    /// Writes `size` bytes from `source` to `path` in the session's `/work`.
    pub async fn upload(
        &self,
        id: &str,
        path: &str,
        size: u64,
        source: impl tokio::io::AsyncRead + Unpin,
    ) -> Result<OutputFile, SessionError> {
        if size > self.inner.settings.file_max_bytes {
            return Err(SessionError::TooLarge(format!(
                "the file has {size} bytes, over the limit of {} (PYEXEC_SESSION_UPLOAD_MAX_BYTES)",
                self.inner.settings.file_max_bytes
            )));
        }
        let entry = self.inner.entry(id)?;
        let mut guard = entry.live.try_lock().map_err(|_| SessionError::Busy(id.to_owned()))?;
        let live = guard.as_mut().ok_or_else(|| SessionError::NotFound(id.to_owned()))?;
        let put = live.put(path, size, source).await;
        if matches!(put, Err(FileOpError::Lost(_))) {
            // The request stream is out of step now: the session cannot go on.
            drop(guard);
            self.delete(id).await;
        }
        put.map_err(|e| file_error(id, path, e))
    }

    /// Ends every session (the server is stopping).
    pub async fn shutdown(&self) {
        self.inner.closing.cancel();
        let all: Vec<Arc<Entry>> = self.inner.lock().drain().map(|(_, e)| e).collect();
        for entry in all {
            self.inner.end(entry).await;
        }
    }
}

fn file_error(id: &str, path: &str, e: FileOpError) -> SessionError {
    match e {
        FileOpError::NotFound => SessionError::NoFile(path.to_owned()),
        FileOpError::InvalidPath => SessionError::Invalid(format!("invalid path {path:?}")),
        FileOpError::IsDirectory => SessionError::Invalid(format!("{path:?} is a directory of the session's /work")),
        FileOpError::TooLarge(max) => {
            SessionError::TooLarge(format!("the file is larger than {max} bytes, the most a request moves"))
        }
        FileOpError::NoSpace => SessionError::TooLarge(e.to_string()),
        FileOpError::Failed(why) => SessionError::Internal(format!("session {id}: {why}")),
        FileOpError::Lost(_) => SessionError::NotFound(id.to_owned()),
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(&self, id: &str) -> Result<Arc<Entry>, SessionError> {
        self.lock().get(id).cloned().ok_or_else(|| SessionError::NotFound(id.to_owned()))
    }

    async fn start(&self, spec: &ExecutionSpec) -> Result<(LiveSession, String), SessionError> {
        let started = self.runner.start_session(spec).await.map_err(SessionError::Start)?;
        // A reply carries at most a file of the largest size moved, or a call's result and files.
        let max_payload = self.settings.file_max_bytes.max(self.settings.files_max_bytes + (16 << 20)) + (1 << 20);
        let live = LiveSession::new(started.sandbox, started.env, max_payload)
            .ok_or_else(|| SessionError::Internal("a session's sandbox came without its pipes".into()))?;
        Ok((live, started.python_version))
    }

    fn caps(&self) -> CallCaps {
        CallCaps {
            output_bytes: self.settings.output_limit_bytes,
            files_bytes: self.settings.files_max_bytes,
            files_count: self.settings.files_max_count,
        }
    }

    /// Stops a removed session's call (if any) and tears its sandbox down.
    async fn end(&self, entry: Arc<Entry>) {
        entry.ended.cancel();
        let mut guard = entry.live.lock().await;
        if let Some(live) = guard.take() {
            live.destroy().await;
        }
        tracing::info!(session_id = %entry.snapshot().session_id, "session ended");
    }
}

/// Ends sessions past their idle timeout or lifetime (not while a call runs: it ends right after).
async fn reaper(inner: std::sync::Weak<Inner>, closing: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = closing.cancelled() => return,
        }
        let Some(inner) = inner.upgrade() else { return };
        let now = Instant::now();
        let expired: Vec<Arc<Entry>> = {
            let mut sessions = inner.lock();
            let ids: Vec<String> = sessions
                .iter()
                .filter(|(_, e)| {
                    let past = now >= e.expires() || now >= e.created + inner.settings.max_lifetime;
                    past && e.live.try_lock().is_ok()
                })
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| sessions.remove(id)).collect()
        };
        for entry in expired {
            tracing::info!(session_id = %entry.snapshot().session_id, "session expired");
            inner.end(entry).await;
        }
    }
}
