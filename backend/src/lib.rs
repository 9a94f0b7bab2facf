//! The boundary between the HTTP handlers and whatever runs executions.
//!
//! Handlers validate requests into an [`ExecutionSpec`] and hand it to a [`Backend`] with the source files; every
//! backend (the embedded sandbox in `pyexec-embedded`, Kubernetes in the API server) implements the same
//! operations, so the handlers, and the conformance tests that drive them over HTTP, are the same for all of them.
//!
//! Everything here is in the API's terms: live output is an [`ExecutionEvent::Output`] named after its wire stream,
//! never a sandbox's output chunk, so the API server depends on this crate and on no backend's internals.
//!
//! [`session`] holds what every backend's sessions share: the link to a session runner and the result of a call.
//! [`tenancy`] holds the tenants' quotas, and [`fair`] the queue that both backends put in front of their slots:
//! per-tenant FIFOs served in turn, within the tenants' caps.
//!
//! Why a crate of its own rather than a module of `pyexec-core`: core is the execution model shared by every
//! component, the operator included, and stays free of I/O and of an async runtime. This boundary is neither: it
//! is an async trait returning streams, and the spooled stdin it hands over is a file that it reads and removes.
//! Only the API server and the backends need it.

pub mod fair;
pub mod session;
pub mod tenancy;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
pub use pyexec_core::ExecutionPage;
use pyexec_core::model::OutputFile;
use pyexec_core::session::{FileList, SessionCall, SessionInfo};
use pyexec_core::{CodeFile, ExecutionResult, ExecutionSpec, ExecutionStatus, ValidationError};
use serde::Serialize;

/// Where an execution's files come from.
#[derive(Debug)]
pub enum Source {
    /// `/eval` files, not yet on disk.
    Files(Vec<CodeFile>),
    /// An uploaded archive already unpacked (and checked) into a directory under [`Backend::staging_dir`]; the
    /// backend takes ownership of it.
    Directory(PathBuf),
}

/// Standard input too large to travel inside the [`ExecutionSpec`], spooled to a file under
/// [`Backend::staging_dir`] while the request was read. The backend that takes it moves or reads the file; dropping
/// the handle removes the file, so a refused request leaves nothing behind.
#[derive(Debug)]
pub struct StdinFile {
    path: Option<PathBuf>,
}

impl StdinFile {
    /// Takes charge of the file at `path`.
    pub fn new(path: PathBuf) -> Self {
        StdinFile { path: Some(path) }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Hands the file over: it is no longer removed on drop.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().unwrap_or_default()
    }
}

impl Drop for StdinFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a spooled stdin");
        }
    }
}

/// Why an execution is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// `DELETE /api/v1/executions/{id}`.
    Request,
    /// The client of a synchronous request went away.
    ClientGone,
}

/// Something that happened to an execution, for live followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionEvent {
    /// A piece of output, in order, only what is kept under the output caps.
    Output {
        /// `"stdout"` or `"stderr"`, as the `output` event names it on the wire.
        stream: &'static str,
        /// The bytes (decoded lossily for transport).
        data: Vec<u8>,
    },
    /// The execution changed status (`running`).
    Status(ExecutionStatus),
    /// The final result; always the last event.
    Result(Box<ExecutionResult>),
}

/// A live stream of events ending with [`ExecutionEvent::Result`].
pub type EventStream = Pin<Box<dyn Stream<Item = ExecutionEvent> + Send>>;

/// Filters and paging of the execution list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only executions in this status.
    pub status: Option<ExecutionStatus>,
    /// Page size.
    pub limit: usize,
    /// Opaque cursor from a previous page: only executions older than it.
    pub before: Option<String>,
    /// Only executions of this tenant (`None`: every tenant's, for admins and servers without API keys).
    pub tenant: Option<String>,
    /// Only the calls of this session.
    pub session_id: Option<String>,
}

/// What a backend reports on `/health`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackendHealth {
    /// `embedded` or `kubernetes`.
    pub backend: &'static str,
    /// Python versions requests may ask for.
    pub python_versions: Vec<String>,
    /// The version used when a request names none.
    pub default_python_version: Option<String>,
    /// What isolation runs get, and what is missing.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub isolation: serde_json::Value,
    /// Whether requirements can be installed, and from where.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub dependencies: serde_json::Value,
    /// Queue state.
    pub queue: QueueHealth,
    /// Sandboxes kept ready ahead of demand: idle and building counts, warm starts and misses, one entry per
    /// pool; `null` where the backend keeps none.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub warm_pools: serde_json::Value,
}

/// Queue state for `/health`.
#[derive(Debug, Clone, Copy, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueHealth {
    /// Executions waiting for a slot.
    pub pending: usize,
    /// Executions running.
    pub running: usize,
    /// Slots.
    pub max_concurrent: usize,
    /// Most executions that may wait.
    pub max_queue: usize,
}

/// Why a backend could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The queue is full; try again later.
    #[error("the execution queue is full ({pending} waiting); retry later")]
    QueueFull {
        /// Executions waiting.
        pending: usize,
        /// Suggested wait.
        retry_after: Duration,
    },
    /// The request cannot be run by this backend.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The server is shutting down and accepts no new work.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// No such session or file (the message says which).
    #[error("{0}")]
    NotFound(String),
    /// The resource is in use (a session running another call).
    #[error("{0}")]
    Conflict(String),
    /// A cap on live resources is reached (sessions); try again later.
    #[error("{message}")]
    Exhausted {
        /// What is exhausted.
        message: String,
        /// Suggested wait.
        retry_after: Duration,
    },
    /// More bytes than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// This backend does not offer the operation.
    #[error("{0}")]
    Unsupported(String),
    /// Something broke inside the backend.
    #[error("{0}")]
    Internal(String),
}

/// An execution created with an `Idempotency-Key` (`ExecutionSpec::idempotency`), found again by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentExecution {
    /// Its id.
    pub execution_id: String,
    /// The fingerprint of the request that created it.
    pub fingerprint: String,
}

/// A live session created with an `Idempotency-Key` (`ExecutionSpec::idempotency` of its spec), found again by
/// its key.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotentSession {
    /// The session as it is now.
    pub info: SessionInfo,
    /// The fingerprint of the request that created it.
    pub fingerprint: String,
}

/// The answer of a backend without sessions or kept files.
fn unsupported(what: &str) -> BackendError {
    BackendError::Unsupported(format!("{what} are not available on this backend"))
}

/// Runs executions. See the crate documentation.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Checks what only this backend knows (interpreters, images, network), before any work is accepted.
    fn check(&self, spec: &ExecutionSpec) -> Result<(), ValidationError>;

    /// A directory on the backend's file system where uploads may be unpacked before [`Backend::submit`].
    fn staging_dir(&self) -> &Path;

    /// Accepts an execution: it is `pending` until a slot is free. Fails with `QueueFull` when too many wait.
    async fn submit(&self, spec: ExecutionSpec, source: Source) -> Result<ExecutionResult, BackendError>;

    /// [`Backend::submit`] with a standard input spooled to a file (the spec's `stdin` is then `None`). By default
    /// the file is read back into the spec, for backends that carry stdin inline.
    async fn submit_with_stdin(
        &self,
        mut spec: ExecutionSpec,
        source: Source,
        stdin: StdinFile,
    ) -> Result<ExecutionResult, BackendError> {
        let text = match tokio::fs::read_to_string(stdin.path()).await {
            Ok(text) => text,
            Err(e) => {
                if let Source::Directory(dir) = source {
                    let _ = tokio::fs::remove_dir_all(dir).await;
                }
                return Err(BackendError::Internal(format!("reading the spooled stdin: {e}")));
            }
        };
        drop(stdin);
        spec.stdin = Some(text).filter(|t| !t.is_empty());
        self.submit(spec, source).await
    }

    /// The execution's current state, `None` when unknown (or expired).
    async fn get(&self, id: &str) -> Result<Option<ExecutionResult>, BackendError>;

    /// Waits for the execution to end and returns its final state.
    async fn wait(&self, id: &str) -> Result<Option<ExecutionResult>, BackendError>;

    /// Stops a pending or running execution (a pending one never runs). Returns the status after the request;
    /// terminal executions are left as they are.
    async fn kill(&self, id: &str, reason: KillReason) -> Result<Option<ExecutionStatus>, BackendError>;

    /// Executions, newest first.
    async fn list(&self, query: ListQuery) -> Result<ExecutionPage, BackendError>;

    /// Output as it is produced, then the final result; `None` when unknown.
    async fn events(&self, id: &str) -> Result<Option<EventStream>, BackendError>;

    /// What `/health` shows about the backend.
    fn health(&self) -> BackendHealth;

    /// The execution created with the idempotency key hash `key_hash`, while it is kept (its retention is the
    /// key's window).
    async fn find_idempotent(&self, key_hash: &str) -> Result<Option<IdempotentExecution>, BackendError> {
        let _ = key_hash;
        Err(unsupported("idempotency keys"))
    }

    /// The files an execution left in `/work` (docs/sessions.md); `None` when the execution is unknown.
    async fn execution_files(&self, id: &str) -> Result<Option<FileList>, BackendError> {
        let _ = id;
        Err(unsupported("kept files"))
    }

    /// One kept file's bytes; `None` when the execution or the file is unknown.
    async fn execution_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let _ = (id, path);
        Err(unsupported("kept files"))
    }

    /// The live session created with the idempotency key hash `key_hash` (a key names a session while it lives).
    async fn find_idempotent_session(&self, key_hash: &str) -> Result<Option<IdempotentSession>, BackendError> {
        let _ = key_hash;
        Err(unsupported("sessions"))
    }

    /// Starts a session (validated by `Policy::session_spec`) with an idle timeout in seconds.
    async fn create_session(&self, spec: ExecutionSpec, idle_seconds: u64) -> Result<SessionInfo, BackendError> {
        let _ = (spec, idle_seconds);
        Err(unsupported("sessions"))
    }

    /// A live session; `None` when unknown or ended.
    async fn get_session(&self, id: &str) -> Result<Option<SessionInfo>, BackendError> {
        let _ = id;
        Err(unsupported("sessions"))
    }

    /// Live sessions, newest first.
    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, BackendError> {
        Err(unsupported("sessions"))
    }

    /// Ends a session; `None` when unknown.
    async fn delete_session(&self, id: &str) -> Result<Option<SessionInfo>, BackendError> {
        let _ = id;
        Err(unsupported("sessions"))
    }

    /// Runs a call in a session and records it as an execution. `NotFound` for an unknown session, `Conflict`
    /// while another call runs.
    async fn session_eval(&self, id: &str, call: SessionCall) -> Result<ExecutionResult, BackendError> {
        let _ = (id, call);
        Err(unsupported("sessions"))
    }

    /// The regular files in a session's `/work` now.
    async fn session_files(&self, id: &str) -> Result<FileList, BackendError> {
        let _ = id;
        Err(unsupported("sessions"))
    }

    /// One file of a session's `/work`.
    async fn session_file(&self, id: &str, path: &str) -> Result<Vec<u8>, BackendError> {
        let _ = (id, path);
        Err(unsupported("sessions"))
    }

    /// Writes the spooled `file` to `path` in a session's `/work`.
    async fn session_upload(&self, id: &str, path: &str, file: StdinFile) -> Result<OutputFile, BackendError> {
        let _ = (id, path, file);
        Err(unsupported("sessions"))
    }

    /// Stops taking work; running executions are failed with a clear error, pending ones stay for the next start.
    async fn shutdown(&self, grace: Duration);
}

/// Where a backend that queues executions itself reports what happens to them, for the server's metrics.
///
/// The API server implements it over its Prometheus registry; a backend sees only these calls, so it needs
/// nothing of the metrics library or of the server.
pub trait ExecutionMetrics: Send + Sync + 'static {
    /// An execution of `tenant` (`None`: the anonymous tenant of a server without API keys) was accepted.
    fn submitted(&self, tenant: Option<&str>);
    /// An execution ended with `result` (its tenant is `result.tenant`).
    fn finished(&self, result: &ExecutionResult);
    /// Executions now waiting for a slot.
    fn queue_depth(&self, pending: usize);
    /// Executions now running.
    fn in_flight(&self, running: usize);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spooled_stdin_is_removed_unless_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (dropped, kept) = (dir.path().join("dropped"), dir.path().join("kept"));
        for path in [&dropped, &kept] {
            std::fs::write(path, "input").unwrap();
        }
        drop(StdinFile::new(dropped.clone()));
        assert!(!dropped.exists(), "a refused request leaves nothing behind");
        let handed_over = StdinFile::new(kept.clone()).keep();
        assert_eq!(handed_over, kept);
        assert!(kept.exists(), "a file handed over stays");
    }
}
