//! The embedded backend: a bounded queue, fair between tenants, in front of a fixed number of sandbox slots on this
//! machine, with every execution recorded in SQLite. It implements [`pyexec_backend::Backend`], so the API server drives it like
//! any other backend, and it is the only place where the [`Runner`] meets the server's requests.
//!
//! - `submit` stages the files into `<data>/workspaces/<id>` (and a spooled stdin into `<data>/stdin/<id>`),
//!   records the execution as `pending` and queues it; beyond `max_queue` waiting executions it refuses
//!   (`QueueFull` → HTTP 429), and beyond the tenant's `max_queued` too (`Exhausted`, 429, naming the quota);
//! - `max_concurrent` workers take executions from the tenants in turn (`pyexec_backend::fair`: each tenant's in
//!   order, a tenant at its `max_running` skipped) and run them with the [`Runner`]; the sandbox's output chunks
//!   become the API's [`ExecutionEvent::Output`] for live followers;
//! - a kill removes a pending execution from the queue (it never runs) or cancels a running one;
//! - at start-up, executions that were running when the server died are failed, pending ones are queued again
//!   under their tenant (the stored spec keeps it), and workspaces or stdin files that belong to no pending execution are removed;
//! - finished records expire `ttl` after they finished; the workspace and stdin file go when the execution ends.
//!
//! What happens is reported to an [`ExecutionMetrics`] (queue depth, executions in flight, accepted and finished
//! executions), which the API server backs with its Prometheus registry.

mod files;
mod live;
mod settings;
mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyexec_backend::fair::{FairQueue, Running};
use pyexec_backend::{
    Backend, BackendError, BackendHealth, EventStream, ExecutionEvent, ExecutionMetrics, ExecutionPage,
    IdempotentExecution, IdempotentSession, KillReason, ListQuery, QueueHealth, Source, StdinFile,
};
use pyexec_core::model::OutputFile;
use pyexec_core::session::{FileList, SessionCall, SessionInfo};
use pyexec_core::{ExecutionResult, ExecutionSpec, ExecutionStatus, Timestamp, ValidationError};
use pyexec_core::{outcome, workspace};
use pyexec_sandbox::{OutputChunk, Stream};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use self::files::FileKeeper;
use self::live::{Live, wait_done};
use self::settings::QueueConfig;
pub use self::settings::{EmbeddedSettings, StartError};
use self::store::Store;
pub use self::store::StoreError;
use crate::session::SessionError;
use crate::{Runner, Sessions};

/// See the module documentation.
pub struct EmbeddedBackend {
    inner: Arc<Inner>,
}

struct Inner {
    runner: Runner,
    store: Store,
    files: FileKeeper,
    sessions: Sessions,
    config: QueueConfig,
    workspaces: PathBuf,
    stdin: PathBuf,
    staging: PathBuf,
    state: Mutex<State>,
    work: Notify,
    metrics: Arc<dyn ExecutionMetrics>,
    closing: CancellationToken,
}

struct State {
    /// Ids of the pending executions (their state is in `live`), by tenant.
    queue: FairQueue<()>,
    live: HashMap<String, Live>,
    /// Executions in a slot, by tenant (session calls run outside the slots and are not counted).
    running: Running,
}

/// How long a client refused for a full queue is asked to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

fn internal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(e.to_string())
}

impl EmbeddedBackend {
    /// Starts the sandbox and the runner, opens the store in `settings.data_dir`, recovers what a previous run left,
    /// and starts the workers. What the backend does is reported to `metrics`.
    pub async fn start(
        settings: EmbeddedSettings,
        metrics: Arc<dyn ExecutionMetrics>,
    ) -> Result<EmbeddedBackend, StartError> {
        let runner = settings.runner().await?;
        Self::open(runner, settings.queue(), metrics).await
    }

    /// The queue, the store and the workers in front of `runner`.
    async fn open(
        runner: Runner,
        config: QueueConfig,
        metrics: Arc<dyn ExecutionMetrics>,
    ) -> Result<EmbeddedBackend, StartError> {
        use std::os::unix::fs::PermissionsExt;
        let data = &config.data_dir;
        std::fs::create_dir_all(data).map_err(StartError::DataDir)?;
        // Uploads and workspaces are readable by the sandbox user (it copies them), so the data directory itself
        // must keep everyone else out.
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).map_err(StartError::DataDir)?;
        let workspaces = data.join("workspaces");
        let stdin = data.join("stdin");
        let staging = data.join("uploads");
        for dir in [&workspaces, &stdin, &staging] {
            std::fs::create_dir_all(dir).map_err(StartError::DataDir)?;
        }
        // Half-received uploads of a previous run are useless.
        remove_entries(&staging, |_| false);
        let store = Store::open(&data.join("executions.db")).map_err(StartError::Store)?;
        let files = FileKeeper::new(data.join("files")).map_err(StartError::DataDir)?;
        let sessions = Sessions::new(runner.clone(), config.sessions);
        let (interrupted, queued) = store.recover().await.map_err(StartError::Store)?;
        for path in interrupted {
            remove_path(&path).await;
        }
        // What a crash left between recording an end and removing the files belongs to no execution any more.
        // Both folders name their entries after the execution.
        let pending: std::collections::HashSet<String> = queued.iter().map(|q| q.result.execution_id.clone()).collect();
        for dir in [&workspaces, &stdin] {
            remove_entries(dir, |name| !pyexec_core::model::is_execution_id(name) || pending.contains(name));
        }
        let inner = Arc::new(Inner {
            runner,
            store,
            files,
            sessions,
            workspaces,
            stdin,
            staging,
            state: Mutex::new(State {
                queue: FairQueue::new(config.quotas.clone(), config.max_queue),
                live: HashMap::new(),
                running: Running::default(),
            }),
            work: Notify::new(),
            metrics,
            closing: CancellationToken::new(),
            config,
        });
        {
            let mut state = inner.lock();
            for q in queued {
                let id = q.result.execution_id.clone();
                let tenant = q.spec.tenant.clone();
                // Records stored before results named their tenant get it from their spec.
                let mut result = q.result;
                result.tenant = tenant.clone();
                state.live.insert(id.clone(), Live::new(result, q.spec, q.workspace, q.stdin));
                state.queue.restore(id, tenant.as_deref(), ());
            }
            if !state.queue.is_empty() {
                tracing::info!(pending = state.queue.len(), "resuming executions queued before the restart");
            }
            inner.metrics.queue_depth(state.queue.len());
        }
        for _ in 0..inner.config.max_concurrent {
            tokio::spawn(worker(inner.clone()));
        }
        tokio::spawn(sweeper(inner.clone()));
        Ok(EmbeddedBackend { inner })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends an execution: stores the result, frees the workspace, wakes waiters and followers.
    async fn conclude(&self, result: ExecutionResult) {
        if let Err(e) = self.store.update(&result).await {
            tracing::error!(execution_id = %result.execution_id, error = %e, "could not store a result");
        }
        let live = {
            let mut state = self.lock();
            let live = state.live.remove(&result.execution_id);
            self.metrics.queue_depth(state.queue.len());
            live
        };
        if let Some(mut live) = live {
            // The spooled stdin (one file) is gone before anyone learns the result; the workspace, which may be
            // large, is removed after the waiters have their answer.
            if let Some(stdin) = &live.stdin {
                remove_path(stdin).await;
            }
            live.finish(&result);
            let _ = tokio::fs::remove_dir_all(&live.workspace).await;
        }
        self.metrics.finished(&result);
    }
}

/// Takes queued executions, the tenants in turn, one at a time, until the server closes.
///
/// A worker that finds only executions of tenants at their `max_running` waits like an idle one: the worker whose
/// run ends frees that tenant's place and takes the next execution itself, and a new submission wakes one.
async fn worker(inner: Arc<Inner>) {
    loop {
        let notified = inner.work.notified();
        let next = {
            let mut state = inner.lock();
            if inner.closing.is_cancelled() {
                return;
            }
            let State { queue, running, .. } = &mut *state;
            let next = queue.pop(|tenant| running.of(tenant));
            if let Some(taken) = &next {
                running.start(taken.tenant.as_deref());
                inner.metrics.queue_depth(queue.len());
                inner.metrics.in_flight(running.total());
            }
            next
        };
        match next {
            Some(taken) => {
                run(&inner, &taken.id).await;
                let mut state = inner.lock();
                state.running.finish(taken.tenant.as_deref());
                inner.metrics.in_flight(state.running.total());
            }
            None => {
                tokio::select! {
                    () = notified => {}
                    () = inner.closing.cancelled() => return,
                }
            }
        }
    }
}

async fn run(inner: &Arc<Inner>, id: &str) {
    let started = {
        let mut state = inner.lock();
        let Some(live) = state.live.get_mut(id) else { return };
        live.result.status = ExecutionStatus::Running;
        live.result.started_at = Some(Timestamp::now());
        live.publish(ExecutionEvent::Status(ExecutionStatus::Running));
        (live.result.clone(), live.spec.clone(), live.workspace.clone(), live.stdin.clone(), live.cancel.clone())
    };
    let (record, spec, workspace, stdin, cancel) = started;
    let first_start = record.started_at;
    // Recorded while the run starts (a warm start takes a few milliseconds, a database write a good part of one);
    // the final record waits for it, so that it can never be overwritten by the start.
    let recorded_start = {
        let inner = inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.store.update(&record).await {
                tracing::error!(execution_id = %record.execution_id, error = %e, "could not record the start of an execution");
            }
        })
    };

    // Output goes to followers as it is produced.
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(64);
    let forward = {
        let inner = inner.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                if let Some(live) = inner.lock().live.get_mut(&id) {
                    live.publish(output_event(chunk));
                }
            }
        })
    };
    let ran = inner.runner.run_reporting(id, &spec, stdin.as_deref(), &workspace, Some(tx), cancel).await;
    let mut result = ran.result;
    // `started_at` is set once, when the execution left the queue (what followers and `GET` saw while it ran); the
    // runner's own clock starts later, after the install, and measures `duration_ms` from there.
    result.started_at = first_start.or(result.started_at);
    // The runner knows nothing of tenants; the API server decides from this who may see the result.
    result.tenant = spec.tenant.clone();
    if let Some(files) = &ran.files
        && let Err(e) = inner.files.save(id, files).await
    {
        tracing::error!(execution_id = id, error = %e, "could not keep an execution's files");
        result.files.clear();
        result.files_truncated = true;
    }
    let _ = forward.await;
    let _ = recorded_start.await;

    let reason = inner.lock().live.get(id).and_then(|l| l.kill);
    if reason == Some(KillReason::ClientGone) {
        result.error = Some(outcome::CLIENT_GONE.into());
    } else if inner.closing.is_cancelled() && result.status == ExecutionStatus::Killed && reason.is_none() {
        // Stopped by the server's shutdown, not by anyone's request.
        result = outcome::interrupted_by_stop(result);
    }
    tracing::info!(
        execution_id = id,
        status = %result.status,
        exit_code = result.exit_code,
        duration_ms = result.duration_ms,
        "execution finished"
    );
    inner.conclude(result).await;
}

/// The API's event for a piece of the sandbox's output.
fn output_event(chunk: OutputChunk) -> ExecutionEvent {
    let stream = match chunk.stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    ExecutionEvent::Output { stream, data: chunk.bytes }
}

/// Deletes expired records.
async fn sweeper(inner: Arc<Inner>) {
    let period = inner.config.ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = inner.closing.cancelled() => return,
        }
        let ttl = inner.config.ttl;
        let cutoff = Timestamp::from_unix_micros(Timestamp::now().unix_micros() - ttl.as_micros() as i64);
        if let Some(cutoff) = cutoff {
            match inner.store.sweep(cutoff).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(removed = n, "expired finished executions");
                    // Files go with their execution.
                    for id in inner.files.executions() {
                        if matches!(inner.store.get(&id).await, Ok(None)) {
                            inner.files.remove(&id).await;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not expire executions"),
            }
        }
    }
}

/// The API's error for a session's.
fn session_error(e: SessionError) -> BackendError {
    match e {
        SessionError::NotFound(_) | SessionError::NoFile(_) => BackendError::NotFound(e.to_string()),
        SessionError::Busy(_) => BackendError::Conflict(e.to_string()),
        SessionError::TooMany(_) => {
            BackendError::Exhausted { message: e.to_string(), retry_after: Duration::from_secs(10) }
        }
        SessionError::Start(m) => BackendError::Invalid(ValidationError::bad_request(m)),
        SessionError::Invalid(m) => BackendError::Invalid(ValidationError::bad_request(m)),
        SessionError::TooLarge(m) => BackendError::TooLarge(m),
        SessionError::Internal(m) => BackendError::Internal(m),
    }
}

/// Removes a file or a directory tree, whichever `path` is.
async fn remove_path(path: &Path) {
    let removed = match tokio::fs::symlink_metadata(path).await {
        Ok(m) if m.is_dir() => tokio::fs::remove_dir_all(path).await,
        Ok(_) => tokio::fs::remove_file(path).await,
        Err(e) => Err(e),
    };
    if let Err(e) = removed
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "could not remove an execution's files");
    }
}

/// Removes the entries of `dir` whose names `keep` does not want, files and directories alike.
fn remove_entries(dir: &Path, keep: impl Fn(&str) -> bool) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if keep(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a leftover");
        }
    }
}

/// Cursor of the execution list: the row's sequence number.
fn parse_cursor(cursor: &Option<String>) -> Result<Option<i64>, BackendError> {
    match cursor {
        None => Ok(None),
        Some(c) => c
            .parse::<i64>()
            .map(Some)
            .map_err(|_| BackendError::Invalid(ValidationError::bad_request(format!("invalid cursor {c:?}")))),
    }
}

impl EmbeddedBackend {
    /// Accepts an execution, with its spooled stdin if it has one.
    async fn submit_input(
        &self,
        spec: ExecutionSpec,
        source: Source,
        stdin: Option<StdinFile>,
    ) -> Result<ExecutionResult, BackendError> {
        let inner = &self.inner;
        // Checked before the files are staged, so that a refused upload costs no copy; checked again when queued.
        let admitted = inner.lock().queue.admits(spec.tenant.as_deref());
        if inner.closing.is_cancelled() {
            return Err(BackendError::ShuttingDown);
        }
        if let Err(refusal) = admitted {
            if let Source::Directory(dir) = source {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
            tracing::debug!(tenant = ?spec.tenant, %refusal, "submission refused");
            return Err(refusal.into_error(RETRY_AFTER));
        }
        let id = pyexec_core::model::new_execution_id();
        let dir = inner.workspaces.join(&id);
        // Until the execution is queued, dropping the handle removes the file.
        let stdin = match stdin {
            Some(spooled) => {
                let target = inner.stdin.join(&id);
                tokio::fs::rename(spooled.path(), &target).await.map_err(internal)?;
                spooled.keep();
                Some(StdinFile::new(target))
            }
            None => None,
        };
        match source {
            Source::Directory(staged) => tokio::fs::rename(&staged, &dir).await.map_err(internal)?,
            Source::Files(files) => {
                let target = dir.clone();
                tokio::task::spawn_blocking(move || {
                    workspace::create_dir(&target)?;
                    workspace::write_files(&files, &target).map(drop).map_err(std::io::Error::other)
                })
                .await
                .map_err(internal)?
                .map_err(internal)?;
            }
        }
        let mut record = ExecutionResult::pending(&id);
        record.tenant = spec.tenant.clone();
        let tenant = spec.tenant.clone();
        if let Err(e) = inner.store.insert(&record, &spec, &dir, stdin.as_ref().map(StdinFile::path)).await {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(internal(e));
        }
        let queued = {
            let mut state = inner.lock();
            let pushed = state.queue.push(id.clone(), tenant.as_deref(), ());
            if pushed.is_ok() {
                state.live.insert(id.clone(), Live::new(record.clone(), spec, dir.clone(), stdin.map(StdinFile::keep)));
                inner.metrics.queue_depth(state.queue.len());
            }
            pushed
        };
        if let Err(refusal) = queued {
            // Lost the race for the last queue place (the server's or the tenant's): the record must not stay
            // behind as a phantom.
            let mut gone = record.clone();
            gone.status = ExecutionStatus::Failed;
            gone.exit_code = 1;
            gone.error = Some(refusal.to_string());
            let _ = inner.store.update(&gone).await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(refusal.into_error(RETRY_AFTER));
        }
        inner.metrics.submitted(tenant.as_deref());
        inner.work.notify_one();
        Ok(record)
    }
}

#[async_trait::async_trait]
impl Backend for EmbeddedBackend {
    fn check(&self, spec: &ExecutionSpec) -> Result<(), ValidationError> {
        self.inner.runner.check(spec)
    }

    fn staging_dir(&self) -> &Path {
        &self.inner.staging
    }

    async fn submit(&self, spec: ExecutionSpec, source: Source) -> Result<ExecutionResult, BackendError> {
        self.submit_input(spec, source, None).await
    }

    async fn submit_with_stdin(
        &self,
        spec: ExecutionSpec,
        source: Source,
        stdin: StdinFile,
    ) -> Result<ExecutionResult, BackendError> {
        self.submit_input(spec, source, Some(stdin)).await
    }

    async fn get(&self, id: &str) -> Result<Option<ExecutionResult>, BackendError> {
        if let Some(live) = self.inner.lock().live.get(id) {
            return Ok(Some(live.result.clone()));
        }
        self.inner.store.get(id).await.map_err(internal)
    }

    async fn wait(&self, id: &str) -> Result<Option<ExecutionResult>, BackendError> {
        let waiter = self.inner.lock().live.get(id).map(Live::waiter);
        match waiter {
            Some(rx) => match wait_done(rx).await {
                Some(result) => Ok(Some(result)),
                None => self.inner.store.get(id).await.map_err(internal),
            },
            None => self.inner.store.get(id).await.map_err(internal),
        }
    }

    async fn kill(&self, id: &str, reason: KillReason) -> Result<Option<ExecutionStatus>, BackendError> {
        let inner = &self.inner;
        enum Action {
            Dequeued(Box<ExecutionResult>),
            Cancelled(tokio::sync::watch::Receiver<Option<ExecutionResult>>),
            NotLive,
        }
        let action = {
            let mut state = inner.lock();
            let queued = state.queue.contains(id);
            match (state.live.get_mut(id), queued) {
                (Some(live), true) => {
                    let result = outcome::killed_while_queued(live.result.clone(), reason == KillReason::ClientGone);
                    state.queue.remove(id);
                    Action::Dequeued(Box::new(result))
                }
                (Some(live), false) => {
                    live.kill.get_or_insert(reason);
                    live.cancel.cancel();
                    Action::Cancelled(live.waiter())
                }
                (None, _) => Action::NotLive,
            }
        };
        match action {
            Action::Dequeued(result) => {
                inner.conclude(*result).await;
                Ok(Some(ExecutionStatus::Killed))
            }
            Action::Cancelled(rx) => {
                // The tree dies in milliseconds; answer once the record says so.
                let done = tokio::time::timeout(Duration::from_secs(10), wait_done(rx)).await;
                Ok(Some(done.ok().flatten().map(|r| r.status).unwrap_or(ExecutionStatus::Killed)))
            }
            Action::NotLive => Ok(inner.store.get(id).await.map_err(internal)?.map(|r| r.status)),
        }
    }

    async fn find_idempotent(&self, key_hash: &str) -> Result<Option<IdempotentExecution>, BackendError> {
        let found = self.inner.store.find_idempotent(key_hash).await.map_err(internal)?;
        Ok(found.map(|(execution_id, fingerprint)| IdempotentExecution { execution_id, fingerprint }))
    }

    async fn list(&self, query: ListQuery) -> Result<ExecutionPage, BackendError> {
        let before = parse_cursor(&query.before)?;
        let filter = store::ListFilter { status: query.status, tenant: query.tenant, session_id: query.session_id };
        let (executions, next) = self.inner.store.list(filter, before, query.limit).await.map_err(internal)?;
        Ok(ExecutionPage { executions, next_cursor: next.map(|n| n.to_string()) })
    }

    async fn events(&self, id: &str) -> Result<Option<EventStream>, BackendError> {
        if let Some(live) = self.inner.lock().live.get(id) {
            return Ok(Some(live.follow()));
        }
        Ok(self.inner.store.get(id).await.map_err(internal)?.map(|r| {
            Box::pin(futures::stream::once(async move { ExecutionEvent::Result(Box::new(r)) })) as EventStream
        }))
    }

    fn health(&self) -> BackendHealth {
        let inner = &self.inner;
        let (pending, running) = {
            let state = inner.lock();
            (state.queue.len(), state.running.total())
        };
        let interpreters = inner.runner.interpreters();
        BackendHealth {
            backend: "embedded",
            python_versions: interpreters.versions().iter().map(ToString::to_string).collect(),
            default_python_version: interpreters.default_version().map(|v| v.to_string()),
            isolation: serde_json::to_value(inner.runner.isolation()).unwrap_or_default(),
            dependencies: serde_json::to_value(inner.runner.environments().report()).unwrap_or_default(),
            queue: QueueHealth {
                pending,
                running,
                max_concurrent: inner.config.max_concurrent,
                max_queue: inner.config.max_queue,
            },
            warm_pools: match inner.runner.warm_pool() {
                Some(pool) => serde_json::to_value(pool.stats()).unwrap_or_default(),
                None => serde_json::json!({"enabled": false}),
            },
        }
    }

    async fn execution_files(&self, id: &str) -> Result<Option<FileList>, BackendError> {
        let record = self.get(id).await?;
        Ok(record.map(|r| FileList { files: r.files, truncated: r.files_truncated }))
    }

    async fn execution_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        let Some(record) = self.get(id).await? else { return Ok(None) };
        let Some(entry) = record.files.iter().find(|f| f.path == path) else { return Ok(None) };
        self.inner.files.read(id, &entry.sha256).await.map_err(internal)
    }

    async fn create_session(&self, spec: ExecutionSpec, idle_seconds: u64) -> Result<SessionInfo, BackendError> {
        if self.inner.closing.is_cancelled() {
            return Err(BackendError::ShuttingDown);
        }
        self.inner.runner.check(&spec)?;
        self.inner.sessions.create(spec, Duration::from_secs(idle_seconds)).await.map_err(session_error)
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionInfo>, BackendError> {
        Ok(self.inner.sessions.get(id))
    }

    async fn find_idempotent_session(&self, key_hash: &str) -> Result<Option<IdempotentSession>, BackendError> {
        Ok(self
            .inner
            .sessions
            .find_idempotent(key_hash)
            .map(|(info, fingerprint)| IdempotentSession { info, fingerprint }))
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, BackendError> {
        Ok(self.inner.sessions.list())
    }

    async fn delete_session(&self, id: &str) -> Result<Option<SessionInfo>, BackendError> {
        Ok(self.inner.sessions.delete(id).await)
    }

    async fn session_eval(&self, id: &str, call: SessionCall) -> Result<ExecutionResult, BackendError> {
        let inner = &self.inner;
        if inner.closing.is_cancelled() {
            return Err(BackendError::ShuttingDown);
        }
        let Some(session) = inner.sessions.get(id) else {
            return Err(session_error(SessionError::NotFound(id.to_owned())));
        };
        // A call belongs to its session's tenant: the API server decides from the record who may see it.
        let tenant = session.tenant;
        // The call is recorded as a running execution first, so that it can be followed and listed.
        let execution_id = pyexec_core::model::new_execution_id();
        let mut record = ExecutionResult::pending(&execution_id);
        record.status = ExecutionStatus::Running;
        record.started_at = Some(Timestamp::now());
        record.session_id = Some(id.to_owned());
        record.tenant = tenant.clone();
        // Kept only so that a record is complete: a call is never queued again (after a restart it is failed).
        let timeouts = pyexec_core::session::SessionTimeouts { idle_default: 1, idle_max: 1 };
        let (mut spec, _) = pyexec_core::Policy::default()
            .session_spec(pyexec_core::session::NewSession::default(), timeouts)
            .map_err(BackendError::Invalid)?;
        spec.tenant = tenant.clone();
        spec.idempotency = call.idempotency.clone();
        let no_workspace = inner.workspaces.join(&execution_id);
        inner.store.insert(&record, &spec, &no_workspace, None).await.map_err(internal)?;
        // Live while it runs, so that `/events`, waits and DELETE of the execution work as for any other.
        let live = Live::new(record.clone(), spec, no_workspace, None);
        let kill = live.cancel.clone();
        inner.lock().live.insert(execution_id.clone(), live);
        inner.metrics.submitted(tenant.as_deref());
        let outcome = inner.sessions.call(id, &execution_id, &call, kill).await;
        let finish = |result: &ExecutionResult| {
            if let Some(mut live) = inner.lock().live.remove(&execution_id) {
                live.finish(result);
            }
        };
        let mut result = match outcome {
            Ok(done) => {
                if let Some(files) = &done.files
                    && let Err(e) = inner.files.save(&execution_id, files).await
                {
                    tracing::error!(execution_id, error = %e, "could not keep a call's files");
                }
                done.result
            }
            Err(e) => {
                // Nothing ran (busy, or the session ended meanwhile): the record must not stay behind.
                let mut gone = record.clone();
                gone.status = ExecutionStatus::Failed;
                gone.exit_code = 1;
                gone.error = Some(e.to_string());
                let _ = inner.store.update(&gone).await;
                finish(&gone);
                return Err(session_error(e));
            }
        };
        result.tenant = tenant;
        // Set once, when the call was recorded as running: the session's clock starts a little later.
        result.started_at = record.started_at.or(result.started_at);
        if let Err(e) = inner.store.update(&result).await {
            tracing::error!(execution_id, error = %e, "could not store a result");
        }
        finish(&result);
        inner.metrics.finished(&result);
        tracing::info!(
            execution_id,
            session_id = id,
            status = %result.status,
            exit_code = result.exit_code,
            duration_ms = result.duration_ms,
            "session call finished"
        );
        Ok(result)
    }

    async fn session_files(&self, id: &str) -> Result<FileList, BackendError> {
        let (files, truncated) = self.inner.sessions.files(id).await.map_err(session_error)?;
        Ok(FileList { files, truncated })
    }

    async fn session_file(&self, id: &str, path: &str) -> Result<Vec<u8>, BackendError> {
        self.inner.sessions.file(id, path).await.map_err(session_error)
    }

    async fn session_upload(&self, id: &str, path: &str, file: StdinFile) -> Result<OutputFile, BackendError> {
        let opened = tokio::fs::File::open(file.path()).await.map_err(internal)?;
        let size = opened.metadata().await.map_err(internal)?.len();
        self.inner.sessions.upload(id, path, size, opened).await.map_err(session_error)
    }

    async fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.closing.cancel();
        inner.sessions.shutdown().await;
        // Idle warm sandboxes hold processes, cgroups and host uids: they go first (nothing will claim them).
        if let Some(pool) = inner.runner.warm_pool() {
            pool.shutdown().await;
        }
        // Running executions get the grace period to finish on their own, then they are stopped (and recorded as
        // failed by their worker); pending ones stay queued in the store for the next start.
        let running = || -> Vec<(CancellationToken, tokio::sync::watch::Receiver<Option<ExecutionResult>>)> {
            let state = inner.lock();
            state
                .live
                .iter()
                .filter(|(id, _)| !state.queue.contains(id))
                .map(|(_, live)| (live.cancel.clone(), live.waiter()))
                .collect()
        };
        let all_done = |list: Vec<(CancellationToken, _)>| {
            futures::future::join_all(list.into_iter().map(|(_, rx)| wait_done(rx)))
        };
        if tokio::time::timeout(grace, all_done(running())).await.is_err() {
            let remaining = running();
            tracing::info!(executions = remaining.len(), "grace period over: stopping running executions");
            for (cancel, _) in &remaining {
                cancel.cancel();
            }
            if tokio::time::timeout(Duration::from_secs(10), all_done(remaining)).await.is_err() {
                tracing::warn!("running executions did not stop in time");
            }
        }
        // Finished runs are torn down after their result: wait for that too, so nothing is left behind.
        if tokio::time::timeout(Duration::from_secs(10), inner.runner.settle()).await.is_err() {
            tracing::warn!("finished runs were not torn down in time");
        }
    }
}
