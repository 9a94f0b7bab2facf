//! The wire result of a resource, the same for every reader: `GET /api/v1/executions/{id}`, synchronous requests,
//! and the last event of `/events`. It is the status, completed from the operator's log store (`status.logsRef`)
//! when the status had to cut the output or says the run left files or display outputs (`filesCount`,
//! `outputsCount`: the status has no room for them), so no reader sees less than another. The files themselves
//! are read from the store one by one (`<logsRef>/files/<sha256>`), and records are written to it
//! ([`Results::store`]: the records of session calls).

use kube::ResourceExt;
use pyexec_core::ExecutionResult;
use pyexec_core::files_out::sha256_hex;
use pyexec_core::model::OutputFile;
use pyexec_core::session::FileList;
use pyexec_crds::contract::{StoredLogs, stored_file_url};
use pyexec_crds::convert::result_from_resource;
use pyexec_crds::{PythonExecution, PythonExecutionStatus};

use crate::backend::BackendError;

/// Reads results of resources (cheap to clone).
#[derive(Debug, Clone)]
pub(super) struct Results {
    http: reqwest::Client,
    /// Token of the operator's log store.
    logs_token: Option<String>,
    /// Bytes of stdout/stderr returned.
    max_output_bytes: usize,
}

/// Why a record could not be written to the operator's log store.
#[derive(Debug, thiserror::Error)]
pub(super) enum StoreError {
    /// The store could not be reached, or its answer not read.
    #[error("reaching the operator's log store failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The store answered with an error.
    #[error("the operator's log store refused {what} ({status}): {message}")]
    Refused {
        /// What was being stored.
        what: String,
        /// Its HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
}

/// The message of `GET /executions/{id}/files` for an execution that ran without the operator's log store.
pub(super) const FILES_NEED_THE_STORE: &str = "the files of this execution were not kept: on the Kubernetes backend \
     the operator keeps them in its log store, which is off (set logs.dir and logs.url in the operator's \
     configuration: the Helm chart's operator.logStore.enabled)";

impl Results {
    pub(super) fn new(logs_token: Option<String>, max_output_bytes: usize) -> Results {
        Results { http: reqwest::Client::new(), logs_token, max_output_bytes }
    }

    /// The wire result of the resource `cr` of execution `id`.
    pub(super) async fn result_of(&self, id: &str, cr: &PythonExecution) -> ExecutionResult {
        let mut result = result_from_resource(id, cr);
        // Whose it is: the API server decides from it who may see the result.
        result.tenant = pyexec_crds::convert::tenant_of(cr);
        let status = cr.status.as_ref();
        let cut = status.is_some_and(|s| s.stdout_truncated || s.stderr_truncated);
        let kept_apart = status.is_some_and(|s| s.files_count > 0 || s.outputs_count > 0);
        if !(cut || kept_apart) {
            return result;
        }
        let Some(logs_ref) = self.logs_ref(id, cr) else { return result };
        match self.stored(logs_ref).await {
            Ok(stored) => {
                if cut {
                    let max = self.max_output_bytes;
                    let (stdout, out_cut) = pyexec_core::text::head(&stored.stdout, max);
                    let (stderr, err_cut) = pyexec_core::text::head(&stored.stderr, max);
                    result.stdout_truncated = out_cut || stdout.len() < result.stdout.len();
                    result.stderr_truncated = err_cut;
                    (result.stdout, result.stderr) = (stdout, stderr);
                }
                result.files = stored.files;
                result.files_truncated = result.files_truncated || stored.files_truncated;
                result.outputs = stored.outputs;
            }
            Err(e) => {
                tracing::warn!(execution_id = id, error = %e, "fetching the stored output failed; returning the status's")
            }
        }
        result
    }

    /// The status's `logsRef`, when it is this resource's own (the token goes nowhere else).
    fn logs_ref<'a>(&self, id: &str, cr: &'a PythonExecution) -> Option<&'a str> {
        let logs_ref = cr.status.as_ref()?.logs_ref.as_deref()?;
        if !names_resource(logs_ref, cr) {
            // The token is this namespace's: it goes only to the operator's address of this resource's output.
            tracing::warn!(execution_id = id, logs_ref, "status.logsRef does not name this execution; not read");
            return None;
        }
        Some(logs_ref)
    }

    /// The files the run of `cr` left in `/work`: none while it runs; from the log store once it finished.
    /// Unsupported when it ran where the operator kept nothing (its log store is off).
    pub(super) async fn files_of(&self, id: &str, cr: &PythonExecution) -> Result<FileList, BackendError> {
        let Some(status) = cr.status.as_ref().filter(|s| s.phase.is_some_and(|p| p.is_terminal())) else {
            return Ok(FileList::default());
        };
        let Some(logs_ref) = status.logs_ref.as_deref() else {
            return if ran_without_store(status) {
                Err(BackendError::Unsupported(FILES_NEED_THE_STORE.into()))
            } else {
                // Refused before it ran: it wrote nothing.
                Ok(FileList { files: Vec::new(), truncated: status.files_truncated })
            };
        };
        if status.files_count == 0 {
            return Ok(FileList { files: Vec::new(), truncated: status.files_truncated });
        }
        if !names_resource(logs_ref, cr) {
            tracing::warn!(execution_id = id, logs_ref, "status.logsRef does not name this execution; not read");
            return Err(BackendError::Internal("the execution's logsRef does not name it".into()));
        }
        let stored = self.stored(logs_ref).await.map_err(|e| {
            tracing::warn!(execution_id = id, error = %e, "fetching the stored file list failed");
            BackendError::Internal(format!("fetching the stored file list failed: {e}"))
        })?;
        Ok(FileList { files: stored.files, truncated: stored.files_truncated || status.files_truncated })
    }

    /// One file the run of `cr` left in `/work` (`None`: not among them), read from the log store and checked
    /// against the size and SHA-256 the list gives.
    pub(super) async fn file_of(
        &self,
        id: &str,
        cr: &PythonExecution,
        path: &str,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let list = self.files_of(id, cr).await?;
        let Some(entry) = list.files.into_iter().find(|f| f.path == path) else { return Ok(None) };
        let Some(logs_ref) = self.logs_ref(id, cr) else {
            return Err(BackendError::Internal("the execution's logsRef does not name it".into()));
        };
        self.stored_file(logs_ref, &entry).await.map(Some).map_err(|e| {
            tracing::warn!(execution_id = id, path, error = %e, "fetching a stored file failed");
            BackendError::Internal(format!("fetching the stored file {path:?} failed: {e}"))
        })
    }

    async fn stored(&self, logs_ref: &str) -> Result<StoredLogs, reqwest::Error> {
        self.authorized(self.http.get(logs_ref)).send().await?.error_for_status()?.json().await
    }

    /// The bytes of `entry`, at most its size, and only when they are the bytes its hash names.
    async fn stored_file(&self, logs_ref: &str, entry: &OutputFile) -> Result<Vec<u8>, String> {
        if !is_hash(&entry.sha256) {
            return Err(format!("{:?} is not a SHA-256", entry.sha256));
        }
        let url = stored_file_url(logs_ref, &entry.sha256);
        let mut response = self
            .authorized(self.http.get(url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if u64::try_from(bytes.len() + chunk.len()).unwrap_or(u64::MAX) > entry.size {
                return Err(format!("the store sent more than the file's {} bytes", entry.size));
            }
            bytes.extend_from_slice(&chunk);
        }
        if sha256_hex(&bytes) != entry.sha256 {
            return Err("the stored bytes do not have the listed SHA-256".into());
        }
        Ok(bytes)
    }

    /// Writes a record to the operator's log store at `logs_base_url` (`http://…:8081`) for the resource `uid` of
    /// `namespace`: the bytes of `files` first (each checked by the store against its hash), then `logs`, which the
    /// store refuses while it lists a file it does not hold. Returns the record's `logsRef`, for the resource's
    /// status (readers then fetch it as they fetch an execution's).
    pub(super) async fn store(
        &self,
        logs_base_url: &str,
        namespace: &str,
        uid: &str,
        logs: &StoredLogs,
        files: &[(OutputFile, Vec<u8>)],
    ) -> Result<String, StoreError> {
        let logs_ref = format!("{}/logs/{namespace}/{uid}", logs_base_url.trim_end_matches('/'));
        let mut sent = std::collections::HashSet::new();
        for (file, bytes) in files {
            if !sent.insert(file.sha256.as_str()) {
                continue;
            }
            let request = self.http.put(stored_file_url(&logs_ref, &file.sha256)).body(bytes.clone());
            self.send_put(request, || format!("the file {:?}", file.path)).await?;
        }
        let request = self.http.put(&logs_ref).json(logs);
        self.send_put(request, || "the record".into()).await?;
        Ok(logs_ref)
    }

    async fn send_put(
        &self,
        request: reqwest::RequestBuilder,
        what: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        let response = self.authorized(request).send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"].as_str().unwrap_or("no reason given").to_owned();
        Err(StoreError::Refused { what: what(), status: status.as_u16(), message })
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.logs_token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

/// Whether a finished execution without a `logsRef` ran (or would have kept files) where the operator's log store
/// is off: it had a Pod, or its status counts files. One refused before it had a Pod wrote nothing.
fn ran_without_store(status: &PythonExecutionStatus) -> bool {
    status.pod_name.is_some() || status.files_count > 0
}

/// Lowercase hex SHA-256.
fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `logs_ref` is the operator's `/logs/{namespace}/{uid}` of the resource `cr` (nothing after it).
fn names_resource(logs_ref: &str, cr: &PythonExecution) -> bool {
    let (Some(namespace), Some(uid)) = (cr.namespace(), cr.uid()) else { return false };
    let path = logs_ref.split(['?', '#']).next().unwrap_or_default();
    path.ends_with(&format!("/logs/{namespace}/{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_resources_own_logs_ref_is_read() {
        let mut cr = PythonExecution::new("exe-1", Default::default());
        cr.metadata.namespace = Some("team-a".into());
        cr.metadata.uid = Some("uid-1".into());
        assert!(names_resource("http://op.pyexec-system.svc:8081/logs/team-a/uid-1", &cr));
        assert!(!names_resource("http://op.pyexec-system.svc:8081/logs/team-b/uid-1", &cr), "another namespace");
        assert!(!names_resource("http://op:8081/logs/team-a/uid-2", &cr), "another execution");
        assert!(!names_resource("http://op:8081/logs/team-a/uid-1/x", &cr));
        cr.metadata.uid = None;
        assert!(!names_resource("http://op:8081/logs/team-a/", &cr));
    }

    /// The operator's log store (its real HTTP server) on 127.0.0.1, `team-a`'s token `token-a`; its base URL.
    async fn operator_store(dir: &std::path::Path) -> String {
        use pyexec_operator::config::LogsConfig;
        use pyexec_operator::server::{LogTokens, Readiness, ServerState};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let config = LogsConfig { dir: Some(dir.into()), url: Some(url.clone()), ..LogsConfig::default() };
        let state = ServerState {
            metrics: pyexec_operator::metrics::Metrics::new(),
            logs: pyexec_operator::logs::LogStore::new(&config).with_file_max_bytes(1 << 20),
            logs_tokens: LogTokens::new([("team-a".to_string(), "token-a".to_string())].into(), None),
            ready: Readiness::default(),
        };
        tokio::spawn(async move { axum::serve(listener, pyexec_operator::server::router(state)).await });
        url
    }

    /// A finished resource of `team-a` whose status points at `logs_ref`.
    fn finished(uid: &str, status: PythonExecutionStatus) -> PythonExecution {
        let mut cr = PythonExecution::new("exe-1", Default::default());
        cr.metadata.namespace = Some("team-a".into());
        cr.metadata.uid = Some(uid.into());
        cr.status = Some(PythonExecutionStatus { phase: Some(pyexec_crds::Phase::Completed), ..status });
        cr
    }

    #[tokio::test]
    async fn records_are_stored_files_first_and_read_back_as_an_executions() {
        let dir = tempfile::tempdir().unwrap();
        let url = operator_store(dir.path()).await;
        let results = Results::new(Some("token-a".into()), 1 << 20);
        let hello = (OutputFile { path: "out/a.txt".into(), size: 5, sha256: sha256_hex(b"hello") }, b"hello".to_vec());
        let png = pyexec_core::model::DisplayOutput { kind: "image/png".into(), data: "iVBORw0KGgo=".into() };
        let logs = StoredLogs {
            stdout: "out".into(),
            files: vec![hello.0.clone()],
            outputs: vec![png.clone()],
            ..StoredLogs::default()
        };
        let stored = std::slice::from_ref(&hello);
        let logs_ref = results.store(&format!("{url}/"), "team-a", "uid-1", &logs, stored).await.unwrap();
        assert_eq!(logs_ref, format!("{url}/logs/team-a/uid-1"));

        let status = PythonExecutionStatus {
            logs_ref: Some(logs_ref.clone()),
            files_count: 1,
            outputs_count: 1,
            stdout: "out".into(),
            ..PythonExecutionStatus::default()
        };
        let cr = finished("uid-1", status);
        let result = results.result_of("exe_1", &cr).await;
        assert_eq!((result.files, result.outputs, result.stdout.as_str()), (vec![hello.0.clone()], vec![png], "out"));
        let list = results.files_of("exe_1", &cr).await.unwrap();
        assert_eq!((list.files, list.truncated), (vec![hello.0.clone()], false));
        assert_eq!(results.file_of("exe_1", &cr, "out/a.txt").await.unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(results.file_of("exe_1", &cr, "missing.txt").await.unwrap(), None);

        // A record that lists a file whose bytes were not sent, or a token of another namespace: refused.
        let refused = results.store(&url, "team-a", "uid-2", &logs, &[]).await.unwrap_err();
        assert!(matches!(refused, StoreError::Refused { status: 409, .. }), "{refused}");
        let stranger = Results::new(Some("token-b".into()), 1 << 20);
        let refused = stranger.store(&url, "team-a", "uid-3", &logs, &[hello]).await.unwrap_err();
        assert!(matches!(refused, StoreError::Refused { status: 401, .. }), "{refused}");
    }

    #[tokio::test]
    async fn without_a_logs_ref_only_executions_that_never_ran_have_an_answer() {
        let results = Results::new(None, 1 << 20);
        let ran = finished("uid-1", PythonExecutionStatus { pod_name: Some("exe-1".into()), ..Default::default() });
        let err = results.files_of("exe_1", &ran).await.unwrap_err();
        assert!(matches!(&err, BackendError::Unsupported(m) if m.contains("logs.dir")), "{err}");
        assert!(matches!(results.file_of("exe_1", &ran, "a.txt").await, Err(BackendError::Unsupported(_))));
        let refused = finished("uid-1", PythonExecutionStatus::default());
        assert_eq!(results.files_of("exe_1", &refused).await.unwrap(), FileList::default());
        let mut running = ran.clone();
        running.status.as_mut().unwrap().phase = Some(pyexec_crds::Phase::Running);
        assert_eq!(results.files_of("exe_1", &running).await.unwrap(), FileList::default(), "nothing yet");
    }
}
