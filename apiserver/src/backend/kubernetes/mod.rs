//! The Kubernetes backend (`PYEXEC_BACKEND=kubernetes`): every execution is a `PythonExecution` resource, which
//! the operator runs in a locked-down Pod. This backend only translates: a request becomes a resource (uploads
//! become archives the operator streams into the Pod), a resource's status becomes the wire result, DELETE becomes
//! the kill annotation. Synchronous requests wait on a watch of the resource.
//!
//! Resources created here are named `exe-<uuid>` after the execution id `exe_<uuid>` and labelled as managed by
//! the API server (`pyexec_crds::contract`); the list endpoint shows only those, and the execution metrics follow
//! them (`tracker`). Every reader of a result (`GET`, synchronous requests, `/events`) gets it from `results`.
//!
//! At most `max_in_flight` of those resources are unfinished at a time (and at most a tenant's `max_running` of
//! its own); further submissions wait in a bounded queue in this process, without a resource, taken from the
//! tenants in turn, and are refused beyond it or beyond the tenant's `max_queued` (`admission`). Each resource is
//! labelled with its tenant (`pyexec_crds::contract::TENANT_LABEL`).

mod admission;
pub mod archives;
mod events;
mod records;
mod results;
pub mod sessions;
mod tracker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, Client, ResourceExt};
use pyexec_core::listing::{self, PageBudget};
use pyexec_core::model::OutputFile;
use pyexec_core::session::{FileList, SessionCall, SessionInfo};
use pyexec_core::{
    CodeFile, ExecutionPage, ExecutionResult, ExecutionSpec, ExecutionStatus, PythonVersion, ValidationError,
};
use pyexec_crds::contract::{
    API_SERVER, FINGERPRINT_ANNOTATION, KILL_ANNOTATION, MANAGED_BY_LABEL, TENANT_LABEL, managed_by_selector,
};
use pyexec_crds::convert::{
    NO_REQUIREMENTS, execution_id, resource_name, result_from_resource, spec_from_execution, status_of,
};
use pyexec_crds::{ArchiveSource, PythonExecution, Source as CrSource, SourceFile};

use self::admission::{Admission, Admitted, Kill, Stage};
use self::archives::Archives;
use self::results::Results;
use self::tracker::Tracker;
use sha2::Digest;

use super::{
    Backend, BackendError, BackendHealth, EventStream, ExecutionEvent, ExecutionMetrics, IdempotentExecution,
    IdempotentSession, KillReason, ListQuery, QueueHealth, Source, StdinFile,
};

/// Largest total of `/eval` files sent inline in the resource; larger projects go as archives.
const INLINE_LIMIT: usize = 256 << 10;

/// Settings of the backend.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// Namespace the resources are created in.
    pub namespace: String,
    /// Versions the operator offers.
    pub python_versions: Vec<PythonVersion>,
    /// The version used when a request names none.
    pub default_python: PythonVersion,
    /// Seconds finished resources are kept (their `ttlSecondsAfterFinished`).
    pub ttl_seconds: u32,
    /// RuntimeClass for every execution (gVisor, Kata), if any.
    pub runtime_class: Option<String>,
    /// Where uploads are staged and archives kept.
    pub data_dir: PathBuf,
    /// Token the operator sends to fetch archives.
    pub archive_token: Option<String>,
    /// Token to read full outputs from the operator's log store (and to store those of session calls).
    pub logs_token: Option<String>,
    /// The operator's log store, where the records of session calls keep what their status cannot hold.
    pub logs_url: Option<String>,
    /// Bytes of stdout/stderr returned (the full output is fetched from `logsRef` when the status was cut).
    pub max_output_bytes: usize,
    /// How long DELETE waits for the operator to confirm the kill.
    pub kill_wait: Duration,
    /// Most resources created by this server that are not yet finished; further submissions wait.
    pub max_in_flight: usize,
    /// Most submissions that may wait for a slot; beyond that they are refused (429).
    pub max_queue: usize,
    /// The tenants' caps on executions in flight and waiting, and their shares of the slots (docs/tenants.md);
    /// `Quotas::default()`: no cap per tenant, every tenant served in turn with the same weight.
    pub quotas: pyexec_backend::tenancy::Quotas,
    /// Sessions: how long one may live, the largest file moved, and the caps of a call (output, files).
    pub sessions: SessionSettings,
}

/// The sessions' part of [`KubernetesConfig`].
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// Most live sessions created through this API (counted from the resources, so across replicas).
    pub max_sessions: usize,
    /// Every session ends this long after its creation.
    pub max_lifetime: Duration,
    /// Largest file moved into or out of a session, bytes.
    pub file_max_bytes: u64,
    /// Caps of one call.
    pub caps: pyexec_backend::session::CallCaps,
}

/// The spec a session call's result is finished against (its limits and eval mode are the call's).
fn session_call_spec() -> ExecutionSpec {
    let timeouts = pyexec_core::session::SessionTimeouts { idle_default: 1, idle_max: 1 };
    match pyexec_core::Policy::default().session_spec(pyexec_core::session::NewSession::default(), timeouts) {
        Ok((spec, _)) => spec,
        // The defaults always validate; a spec is still needed if they ever did not.
        Err(_) => pyexec_crds::convert::execution_spec(&pyexec_crds::PythonExecutionSpec::default()),
    }
}

/// The execution id of an `Idempotency-Key` (its hash with its tenant): a UUID made of the hash's bytes, so that
/// every replica names the execution of a retry alike.
fn idempotent_id(key_hash: &str) -> String {
    format!("exe_{}", idempotent_uuid(key_hash))
}

/// The UUID that the ids of what an idempotency key creates are made of.
fn idempotent_uuid(key_hash: &str) -> uuid::Uuid {
    let digest = sha2::Sha256::digest(key_hash.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// See the module documentation.
pub struct KubernetesBackend {
    api: Api<PythonExecution>,
    sessions: sessions::KubeSessions,
    config: KubernetesConfig,
    archives: Archives,
    staging: PathBuf,
    results: Results,
    tracker: Arc<Tracker>,
    admission: Arc<Admission>,
    /// The watch behind the metrics and the slots; it ends with the backend.
    following: tokio::task::AbortHandle,
    /// The task that creates queued resources as slots free; it ends with the backend.
    dispatching: tokio::task::AbortHandle,
}

impl Drop for KubernetesBackend {
    fn drop(&mut self) {
        self.following.abort();
        self.dispatching.abort();
    }
}

impl KubernetesBackend {
    /// Connects (the in-cluster service account, or `KUBECONFIG`), prepares the archive store, and starts following
    /// the executions it creates for `metrics`.
    pub async fn start(
        client: Client,
        config: KubernetesConfig,
        metrics: Arc<dyn ExecutionMetrics>,
    ) -> Result<KubernetesBackend, BackendError> {
        let staging = config.data_dir.join("staging");
        std::fs::create_dir_all(&staging).map_err(internal)?;
        let archives =
            Archives::new(config.data_dir.join("archives"), config.archive_token.clone()).map_err(internal)?;
        let sweeper = archives.clone();
        // An archive is needed until its Pod received it; keep it for a day past the longest life of a resource.
        let keep = Duration::from_secs(u64::from(config.ttl_seconds) + 24 * 3600);
        tokio::spawn(async move {
            loop {
                sweeper.sweep(keep).await;
                tokio::time::sleep(Duration::from_secs(600)).await;
            }
        });
        let api = Api::namespaced(client.clone(), &config.namespace);
        let results = Results::new(config.logs_token.clone(), config.max_output_bytes);
        let records = records::Records::new(api.clone(), results.clone(), config.logs_url.clone(), config.ttl_seconds);
        let sessions = sessions::KubeSessions::new(
            client,
            &config.namespace,
            config.sessions.caps,
            config.sessions.file_max_bytes,
            records,
        );
        let tracker = Arc::new(Tracker::new(metrics));
        let following = tokio::spawn(tracker::follow(api.clone(), tracker.clone())).abort_handle();
        let admission = Arc::new(Admission::new(
            config.max_in_flight,
            config.max_queue,
            config.quotas.clone(),
            Duration::from_secs(u64::from(config.ttl_seconds)),
        ));
        let dispatching = tokio::spawn(dispatch(api.clone(), tracker.clone(), admission.clone())).abort_handle();
        Ok(KubernetesBackend {
            api,
            sessions,
            config,
            archives,
            staging,
            results,
            tracker,
            admission,
            following,
            dispatching,
        })
    }

    /// The route the operator fetches archives from.
    pub fn archive_router(&self) -> axum::Router {
        self.archives.clone().router()
    }

    /// What to install, resolved here as the embedded backend does (the request, the project's file, detected
    /// imports against the target version's standard library), so that the resource says exactly what runs.
    fn requirements(&self, spec: &ExecutionSpec, workspace: &Path) -> Option<String> {
        let version = spec.python.unwrap_or(self.config.default_python);
        let stdlib = pyexec_core::imports::stdlib_modules(version);
        let resolved = pyexec_core::requirements::resolve(spec, workspace, |m| stdlib.is_some_and(|s| s.contains(m)));
        match (&spec.requirements, resolved) {
            (pyexec_core::Requirements::Nothing, _) => Some(NO_REQUIREMENTS.into()),
            (_, Some(r)) => Some(r),
            // Nothing to install, also not the project's own file (it was read and found empty).
            (_, None) => Some(NO_REQUIREMENTS.into()),
        }
    }

    async fn source(&self, source: Source, spec: &ExecutionSpec) -> Result<(CrSource, Option<String>), BackendError> {
        let dir = match source {
            Source::Directory(dir) => dir,
            Source::Files(files) => {
                let total: usize = files.iter().map(|f| f.content.len()).sum();
                let dir = self.stage_files(&files).await?;
                if total <= INLINE_LIMIT {
                    let requirements = self.requirements(spec, &dir);
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                    let files =
                        files.into_iter().map(|CodeFile { name, content }| SourceFile { name, content }).collect();
                    return Ok((CrSource { files, ..CrSource::default() }, requirements));
                }
                dir
            }
        };
        let requirements = self.requirements(spec, &dir);
        let packed = self.archives.pack(dir).await.map_err(internal)?;
        let archive = ArchiveSource { id: packed.id, sha256: packed.sha256, size_bytes: packed.size_bytes };
        Ok((CrSource { archive: Some(archive), ..CrSource::default() }, requirements))
    }

    async fn stage_files(&self, files: &[CodeFile]) -> Result<PathBuf, BackendError> {
        let dir = self.staging.join(uuid::Uuid::new_v4().to_string());
        let (target, files) = (dir.clone(), files.to_vec());
        tokio::task::spawn_blocking(move || {
            pyexec_core::workspace::create_dir(&target)?;
            pyexec_core::workspace::write_files(&files, &target).map(drop).map_err(std::io::Error::other)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        Ok(dir)
    }

    async fn get_resource(&self, id: &str) -> Result<Option<PythonExecution>, BackendError> {
        let Some(name) = resource_name(id) else { return Ok(None) };
        self.api.get_opt(&name).await.map_err(internal)
    }

    /// Kills the resource of `id`, if there is one.
    async fn kill_resource(&self, id: &str) -> Result<Option<ExecutionStatus>, BackendError> {
        let Some(cr) = self.get_resource(id).await? else { return Ok(None) };
        if cr.phase().is_terminal() {
            return Ok(Some(status_of(cr.phase())));
        }
        let name = cr.name_any();
        let patch = serde_json::json!({"metadata": {"annotations": {KILL_ANNOTATION: pyexec_core::Timestamp::now().to_rfc3339()}}});
        self.api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(internal)?;
        if let Some(session) = &cr.spec.session_ref {
            // A session call runs in the session's Pod: stopping it takes that Pod (docs/sessions.md); whoever
            // holds the call then records `killed`.
            self.sessions.stop_call(session).await?;
        }
        // The operator deletes the Pod and writes `Killed` (or the program had just finished): wait briefly so the
        // answer says what happened; `killed` is what will happen otherwise.
        let deadline = tokio::time::Instant::now() + self.config.kill_wait;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(cr) = self.api.get_opt(&name).await.map_err(internal)?
                && cr.phase().is_terminal()
            {
                return Ok(Some(status_of(cr.phase())));
            }
        }
        Ok(Some(ExecutionStatus::Killed))
    }
}

fn internal(e: impl std::fmt::Display) -> BackendError {
    BackendError::Internal(e.to_string())
}

/// Creates the resource `name`, whose slot the tracker holds; the slot is given back if the API refuses it.
async fn create(api: &Api<PythonExecution>, tracker: &Tracker, name: &str, cr: &PythonExecution) -> kube::Result<()> {
    let pp = PostParams { field_manager: Some(API_SERVER.into()), ..PostParams::default() };
    let created = api.create(&pp, cr).await;
    tracker.submitted(name, created.is_ok());
    created.map(drop)
}

/// Creates queued resources, oldest first, whenever a slot frees, until the backend ends.
async fn dispatch(api: Api<PythonExecution>, tracker: Arc<Tracker>, admission: Arc<Admission>) {
    loop {
        while let Some((id, name, cr)) = admission.next(&tracker) {
            match create(&api, &tracker, &name, &cr).await {
                Ok(()) => {
                    admission.created(&id);
                    tracing::info!(execution_id = %id, resource = %name, "a slot freed: PythonExecution created");
                }
                Err(e) => {
                    tracing::warn!(execution_id = %id, resource = %name, error = %e, "creating a queued execution failed");
                    let why = match e {
                        kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
                            format!("the execution was refused: {}", s.message)
                        }
                        other => format!("creating the execution failed: {other}"),
                    };
                    admission.ended(&id, admission::never_ran(ExecutionResult::pending(&id), &why));
                }
            }
        }
        // Woken when the watch sees a slot free; the timer only covers a wake-up lost to a race.
        tokio::select! {
            () = tracker.slot_released() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Events of the resource `name` of execution `id`, from a watch of it.
fn resource_events(api: Api<PythonExecution>, namespace: &str, name: &str, id: &str, results: Results) -> EventStream {
    // Status changes as the operator writes them, the program's output from its Pod's log, then the result.
    let watcher = kube::runtime::watcher(
        api.clone(),
        kube::runtime::watcher::Config::default().fields(&format!("metadata.name={name}")),
    );
    let pods = Api::namespaced(api.into_client(), namespace);
    events::execution_events(watcher, Some(pods), id.to_owned(), results)
}

#[async_trait::async_trait]
impl Backend for KubernetesBackend {
    fn check(&self, spec: &ExecutionSpec) -> Result<(), ValidationError> {
        let offered = |v: PythonVersion| self.config.python_versions.contains(&v);
        let list = || self.config.python_versions.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        if let Some(image) = &spec.image {
            match PythonVersion::of_image(image) {
                Some(v) if offered(v) => {}
                _ => {
                    return Err(ValidationError::bad_request(format!(
                        "docker_image {image:?} is not offered: name an official python:3.X image (available: {})",
                        list()
                    )));
                }
            }
        }
        if let Some(v) = spec.python
            && !offered(v)
        {
            return Err(ValidationError::bad_request(format!(
                "python_version {v} is not offered (available: {})",
                list()
            )));
        }
        Ok(())
    }

    fn staging_dir(&self) -> &Path {
        &self.staging
    }

    async fn submit(&self, spec: ExecutionSpec, source: Source) -> Result<ExecutionResult, BackendError> {
        let tenant = spec.tenant.as_deref();
        if let Some(refusal) = self.admission.refusal(&self.tracker, tenant) {
            if let Source::Directory(dir) = source {
                let _ = tokio::fs::remove_dir_all(dir).await;
            }
            return Err(refusal);
        }
        // With an Idempotency-Key the name comes from the key, so that two replicas taking the same retry at once
        // cannot both create it: the second create meets the first.
        let id = match &spec.idempotency {
            Some(record) => idempotent_id(&record.key_hash),
            None => pyexec_core::model::new_execution_id(),
        };
        let name = resource_name(&id).ok_or_else(|| internal("execution ids are exe_<uuid>"))?;
        let (source, requirements) = self.source(source, &spec).await?;
        let mut cr_spec = spec_from_execution(&spec, source, requirements);
        // The image names a version; the operator maps versions to its allowed images.
        if let Some(v) = spec.image.as_deref().and_then(PythonVersion::of_image) {
            cr_spec.image = None;
            cr_spec.python_version = Some(v.to_string());
        }
        cr_spec.python_version.get_or_insert_with(|| self.config.default_python.to_string());
        cr_spec.runtime_class_name = self.config.runtime_class.clone();
        cr_spec.ttl_seconds_after_finished = Some(self.config.ttl_seconds);
        let mut cr = PythonExecution::new(&name, cr_spec);
        let mut labels = std::collections::BTreeMap::from([(MANAGED_BY_LABEL.to_string(), API_SERVER.to_string())]);
        if let Some(tenant) = tenant {
            // Tenant names are DNS labels (checked when the keys are read), valid label values.
            labels.insert(TENANT_LABEL.to_string(), tenant.to_owned());
        }
        cr.metadata.labels = Some(labels);
        if let Some(record) = &spec.idempotency {
            cr.metadata.annotations = Some([(FINGERPRINT_ANNOTATION.to_owned(), record.fingerprint.clone())].into());
        }
        match self.admission.admit(&self.tracker, &id, &name, tenant, cr)? {
            Admitted::Now(cr) => {
                let created = create(&self.api, &self.tracker, &name, &cr).await;
                if let (Err(kube::Error::Api(s)), Some(record)) = (&created, &spec.idempotency)
                    && s.code == 409
                {
                    // Another replica created it for the same retry an instant ago: the same execution, if the
                    // same request.
                    return match self.find_idempotent(&record.key_hash).await? {
                        Some(found) if found.fingerprint == record.fingerprint => {
                            let mut pending = ExecutionResult::pending(&id);
                            pending.tenant = spec.tenant.clone();
                            Ok(pending)
                        }
                        _ => Err(BackendError::Conflict(
                            "the Idempotency-Key was used for another request; use a new key for a new request".into(),
                        )),
                    };
                }
                created.map_err(|e| match e {
                    kube::Error::Api(s) if s.code == 422 || s.code == 400 => BackendError::Invalid(
                        ValidationError::bad_request(format!("the execution was refused: {}", s.message)),
                    ),
                    other => internal(other),
                })?;
                tracing::info!(execution_id = %id, resource = %name, namespace = %self.config.namespace, "PythonExecution created");
            }
            Admitted::Queued => {
                tracing::info!(execution_id = %id, resource = %name, tenant = ?tenant, "no slot for it yet: the execution waits");
            }
        }
        let mut pending = ExecutionResult::pending(&id);
        pending.tenant = spec.tenant.clone();
        Ok(pending)
    }

    async fn get(&self, id: &str) -> Result<Option<ExecutionResult>, BackendError> {
        if let Some(result) = self.admission.result(id) {
            return Ok(Some(result));
        }
        Ok(match self.get_resource(id).await? {
            Some(cr) => Some(self.results.result_of(id, &cr).await),
            None => None,
        })
    }

    async fn wait(&self, id: &str) -> Result<Option<ExecutionResult>, BackendError> {
        if let Some(mut stage) = self.admission.watch(id) {
            let reached = stage.wait_for(|s| !matches!(s, Stage::Queued)).await.map(|s| s.clone());
            if let Ok(Stage::Ended(result)) = reached {
                return Ok(Some(*result));
            }
        }
        let Some(name) = resource_name(id) else { return Ok(None) };
        let finished = |cr: Option<&PythonExecution>| cr.is_none_or(|cr| cr.phase().is_terminal());
        let cr = await_condition(self.api.clone(), &name, finished).await.map_err(internal)?;
        Ok(match cr {
            Some(cr) => Some(self.results.result_of(id, &cr).await),
            None => None,
        })
    }

    async fn kill(&self, id: &str, reason: KillReason) -> Result<Option<ExecutionStatus>, BackendError> {
        match self.admission.kill(&self.tracker, id, reason) {
            Some(Kill::Dequeued) => {
                tracing::info!(execution_id = %id, "killed while waiting for a slot: it never runs");
                return Ok(Some(ExecutionStatus::Killed));
            }
            Some(Kill::Ended(status)) => return Ok(Some(status)),
            Some(Kill::Creating(mut stage)) => {
                let reached =
                    tokio::time::timeout(self.config.kill_wait, stage.wait_for(|s| !matches!(s, Stage::Queued)))
                        .await
                        .ok()
                        .and_then(Result::ok)
                        .map(|s| s.clone());
                match reached {
                    Some(Stage::Ended(result)) => return Ok(Some(result.status)),
                    Some(_) => {}
                    // Still being created: the kill annotation needs the resource.
                    None => return Ok(Some(ExecutionStatus::Pending)),
                }
            }
            None => {}
        }
        self.kill_resource(id).await
    }

    async fn list(&self, query: ListQuery) -> Result<ExecutionPage, BackendError> {
        let mut selector = managed_by_selector(API_SERVER);
        if let Some(tenant) = &query.tenant {
            // Tenant names are DNS labels (checked when the keys are read): nothing can escape the selector.
            selector.push_str(&format!(",{TENANT_LABEL}={tenant}"));
        }
        let resources = self.api.list(&ListParams::default().labels(&selector)).await.map_err(internal)?.items;
        let key = |created: i64, name: &str| format!("{created:012}.{name}");
        let mut all: Vec<(String, ExecutionResult)> = resources
            .iter()
            .map(|cr| {
                let created = cr.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second());
                let name = cr.name_any();
                (key(created, &name), result_from_resource(&execution_id(&name), cr))
            })
            .collect();
        // Executions without a resource (waiting for a slot, or ended before they got one); one whose resource
        // was just created is listed once, as its resource.
        let names: std::collections::HashSet<String> = resources.iter().map(ResourceExt::name_any).collect();
        all.extend(
            self.admission
                .listed()
                .into_iter()
                .filter(|(name, _, result)| {
                    !names.contains(name) && (query.tenant.is_none() || result.tenant == query.tenant)
                })
                .map(|(name, accepted, result)| (key(accepted, &name), result)),
        );
        if let Some(session) = &query.session_id {
            all.retain(|(_, result)| result.session_id.as_deref() == Some(session.as_str()));
        }
        all.sort_by(|a, b| b.0.cmp(&a.0));
        let mut executions = Vec::new();
        let mut next_cursor = None;
        let mut budget = PageBudget::default();
        for (key, result) in all {
            if query.before.as_deref().is_some_and(|before| key.as_str() >= before) {
                continue;
            }
            if query.status.is_some_and(|s| result.status != s) {
                continue;
            }
            let summary = listing::summarize(&result);
            if executions.len() == query.limit || !budget.admit(listing::serialized_len(&summary)) {
                next_cursor = executions.last().map(|(k, _)| k).cloned();
                break;
            }
            executions.push((key, summary));
        }
        Ok(ExecutionPage { executions: executions.into_iter().map(|(_, r)| r).collect(), next_cursor })
    }

    async fn events(&self, id: &str) -> Result<Option<EventStream>, BackendError> {
        let Some(name) = resource_name(id) else { return Ok(None) };
        if let Some(mut stage) = self.admission.watch(id) {
            // Pending until it gets a slot; then its resource's events (without a second `pending`), or the result
            // it ended with while waiting.
            let (api, namespace, id, results) =
                (self.api.clone(), self.config.namespace.clone(), id.to_owned(), self.results.clone());
            let rest = async move {
                let reached = stage.wait_for(|s| !matches!(s, Stage::Queued)).await.map(|s| s.clone());
                match reached {
                    Ok(Stage::Ended(result)) => {
                        Box::pin(futures::stream::iter([ExecutionEvent::Result(result)])) as EventStream
                    }
                    _ => Box::pin(resource_events(api, &namespace, &name, &id, results).skip_while(|e| {
                        std::future::ready(matches!(e, ExecutionEvent::Status(ExecutionStatus::Pending)))
                    })),
                }
            };
            let first = futures::stream::iter([ExecutionEvent::Status(ExecutionStatus::Pending)]);
            return Ok(Some(Box::pin(first.chain(futures::stream::once(rest).flatten()))));
        }
        if self.api.get_opt(&name).await.map_err(internal)?.is_none() {
            return Ok(None);
        }
        Ok(Some(resource_events(self.api.clone(), &self.config.namespace, &name, id, self.results.clone())))
    }

    fn health(&self) -> BackendHealth {
        BackendHealth {
            backend: "kubernetes",
            python_versions: self.config.python_versions.iter().map(ToString::to_string).collect(),
            default_python_version: Some(self.config.default_python.to_string()),
            isolation: serde_json::json!({
                "level": "kubernetes",
                "namespace": self.config.namespace,
                "runtime_class": self.config.runtime_class,
                "pods": "Pod Security restricted, read-only root, no service account token, deny-all NetworkPolicy",
            }),
            dependencies: serde_json::json!({"installed_by": "the operator's install init container (packageIndex)"}),
            // Running: resources created by this server and not finished (their Pods may still be starting);
            // pending: submissions waiting in this server for one of those slots.
            queue: QueueHealth {
                pending: self.admission.waiting(),
                running: self.tracker.in_flight(),
                max_concurrent: self.admission.max_in_flight(),
                max_queue: self.admission.max_queue(),
            },
            // Warm Pods are the operator's (PythonExecutionPool resources): `kubectl get pythonexecutionpools`.
            warm_pools: serde_json::Value::Null,
        }
    }

    /// The files an execution left in `/work`, as the operator's log store keeps them (`results`): none while it
    /// waits or runs; 501 for one that ran while the store was off.
    async fn find_idempotent(&self, key_hash: &str) -> Result<Option<IdempotentExecution>, BackendError> {
        let id = idempotent_id(key_hash);
        let found = |fingerprint: Option<String>| {
            Some(IdempotentExecution { execution_id: id.clone(), fingerprint: fingerprint.unwrap_or_default() })
        };
        if let Some(fingerprint) = self.admission.fingerprint(&id) {
            return Ok(found(fingerprint));
        }
        let Some(cr) = self.get_resource(&id).await? else { return Ok(None) };
        Ok(found(cr.annotations().get(FINGERPRINT_ANNOTATION).cloned()))
    }

    async fn execution_files(&self, id: &str) -> Result<Option<FileList>, BackendError> {
        if let Some(result) = self.admission.result(id) {
            // Waiting for a slot, or ended before it got a resource: it wrote nothing.
            return Ok(Some(FileList { files: result.files, truncated: result.files_truncated }));
        }
        let Some(cr) = self.get_resource(id).await? else { return Ok(None) };
        self.results.files_of(id, &cr).await.map(Some)
    }

    async fn execution_file(&self, id: &str, path: &str) -> Result<Option<Vec<u8>>, BackendError> {
        if self.admission.result(id).is_some() {
            return Ok(None);
        }
        let Some(cr) = self.get_resource(id).await? else { return Ok(None) };
        self.results.file_of(id, &cr, path).await
    }

    async fn create_session(&self, spec: ExecutionSpec, idle_seconds: u64) -> Result<SessionInfo, BackendError> {
        self.check(&spec)?;
        let max = self.config.sessions.max_sessions;
        if self.sessions.list().await?.len() >= max {
            return Err(BackendError::Exhausted {
                message: format!(
                    "{max} sessions are live, the most this server runs (PYEXEC_MAX_SESSIONS); delete one or retry later"
                ),
                retry_after: Duration::from_secs(10),
            });
        }
        let lifetime = self.config.sessions.max_lifetime;
        self.sessions.create(&spec, idle_seconds, self.config.default_python, lifetime).await
    }

    async fn get_session(&self, id: &str) -> Result<Option<SessionInfo>, BackendError> {
        self.sessions.get(id).await
    }

    async fn find_idempotent_session(&self, key_hash: &str) -> Result<Option<IdempotentSession>, BackendError> {
        self.sessions.find_idempotent(key_hash).await
    }

    async fn list_sessions(&self) -> Result<Vec<SessionInfo>, BackendError> {
        self.sessions.list().await
    }

    async fn delete_session(&self, id: &str) -> Result<Option<SessionInfo>, BackendError> {
        self.sessions.delete(id).await
    }

    /// The call is recorded as a PythonExecution with `spec.sessionRef` ([`records`]).
    async fn session_eval(&self, id: &str, call: SessionCall) -> Result<ExecutionResult, BackendError> {
        // With an Idempotency-Key, the record's name comes from the key (as for executions), so a retry finds it.
        let execution_id = match &call.idempotency {
            Some(record) => idempotent_id(&record.key_hash),
            None => pyexec_core::model::new_execution_id(),
        };
        let spec = ExecutionSpec { eval_last_expr: call.eval_last_expr, ..session_call_spec() };
        let (result, _files) = self.sessions.call(id, &execution_id, &call, &spec).await?;
        Ok(result)
    }

    async fn session_files(&self, id: &str) -> Result<FileList, BackendError> {
        self.sessions.files(id).await
    }

    async fn session_file(&self, id: &str, path: &str) -> Result<Vec<u8>, BackendError> {
        self.sessions.file(id, path).await
    }

    async fn session_upload(&self, id: &str, path: &str, file: StdinFile) -> Result<OutputFile, BackendError> {
        self.sessions.upload(id, path, file.path()).await
    }

    async fn shutdown(&self, _grace: Duration) {
        // Executions with a resource live in the cluster and go on. Those still waiting for a slot exist only in
        // this process: they end `failed` (never run), so that waiting clients get an answer now.
        let dropped = self.admission.close(&self.tracker);
        if dropped > 0 {
            tracing::warn!(executions = dropped, "shutting down: executions waiting for a slot were failed, never run");
        }
    }
}
