//! The operator's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, and the log store: `/logs/{namespace}/{uid}`
//! (the stored full output of an execution: a `StoredLogs`) and `/logs/{namespace}/{uid}/files/{sha256}` (one of the
//! files it lists). `GET` reads them; `PUT` stores them, for the API server, which keeps the records of session
//! calls here: the files first (the body must hash to the name), then the record (refused while it lists a file
//! not stored). Every `/logs/{namespace}/...` request takes that namespace's bearer token ([`LogTokens`]): an API
//! server holding the token of its own namespace can neither read nor write the outputs of another.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use pyexec_crds::contract::StoredLogs;

use crate::config::LogsConfig;
use crate::logs::{LogStore, PutError};
use crate::metrics::Metrics;

/// The largest record `PUT /logs/{namespace}/{uid}` takes: the output of a session call (at most a few MiB of each
/// stream, which JSON may escape to several times that), its display outputs (at most 8 MiB) and its file list.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// Who may read the stored outputs of which namespace: a token per namespace (`logs.tokensDir`), and a token for
/// every namespace without one of its own (`logs.tokenFile`, the configuration before per-namespace tokens). With
/// neither, `/logs` is open (only for setups where nothing untrusted reaches the operator's port).
#[derive(Clone, Default)]
pub struct LogTokens {
    by_namespace: Arc<HashMap<String, String>>,
    shared: Option<Arc<str>>,
}

impl std::fmt::Debug for LogTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Namespaces only: tokens stay out of logs.
        let mut namespaces: Vec<&String> = self.by_namespace.keys().collect();
        namespaces.sort();
        f.debug_struct("LogTokens").field("namespaces", &namespaces).field("shared", &self.shared.is_some()).finish()
    }
}

/// Why the tokens could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    /// A file or the directory could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// What.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of the tokens directory is not named after a namespace, or holds no token.
    #[error("{path}: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: &'static str,
    },
}

impl LogTokens {
    /// Tokens by namespace, and the token of the namespaces without one.
    pub fn new(by_namespace: HashMap<String, String>, shared: Option<String>) -> LogTokens {
        LogTokens { by_namespace: Arc::new(by_namespace), shared: shared.map(Into::into) }
    }

    /// The tokens the configuration names: every file of `tokensDir` (a mounted Secret: its `..data` links are
    /// skipped) is the token of the namespace it is named after; `tokenFile` the shared one.
    pub fn load(config: &LogsConfig) -> Result<LogTokens, TokensError> {
        let mut by_namespace = HashMap::new();
        if let Some(dir) = &config.tokens_dir {
            let read = |source| TokensError::Read { path: dir.clone(), source };
            for entry in std::fs::read_dir(dir).map_err(read)? {
                let path = entry.map_err(read)?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
                if name.starts_with('.') {
                    continue;
                }
                if !is_namespace_name(&name) {
                    return Err(TokensError::Invalid { path, why: "not named after a namespace" });
                }
                by_namespace.insert(name, read_token(&path)?);
            }
        }
        let shared = config.token_file.as_deref().map(read_token).transpose()?;
        Ok(LogTokens::new(by_namespace, shared))
    }

    /// Whether `authorization` (the request's header) may read the stored outputs of `namespace`. A namespace with
    /// a token of its own takes only that one; the shared token serves the others; with no token at all, anyone.
    pub fn allows(&self, namespace: &str, authorization: Option<&str>) -> bool {
        match (self.by_namespace.get(namespace), &self.shared) {
            (Some(token), _) => pyexec_core::secret::bearer_matches(token, authorization),
            (None, Some(shared)) => pyexec_core::secret::bearer_matches(shared, authorization),
            (None, None) => self.by_namespace.is_empty(),
        }
    }

    /// How many namespaces have a token of their own.
    pub fn namespaces(&self) -> usize {
        self.by_namespace.len()
    }
}

fn read_token(path: &FsPath) -> Result<String, TokensError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read { path: path.into(), source })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(TokensError::Invalid { path: path.into(), why: "the token is empty" });
    }
    Ok(token.to_owned())
}

/// A Kubernetes namespace name (an RFC 1123 label).
fn is_namespace_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether the operator can see the cluster, for `/readyz`: failing from a watch error until a reconciliation
/// runs again, or until no watch error came for [`Readiness::RECOVERY`] (a failing watch retries, and fails again,
/// well within it; a recovered one over an empty namespace reconciles nothing). Ready from the start, so that
/// replicas waiting for the leader lease are ready too.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<Mutex<Option<Instant>>>);

impl Readiness {
    /// How long after the last watch error readiness comes back by itself.
    pub const RECOVERY: Duration = Duration::from_secs(90);

    /// Records that the watches work (`true`) or that one failed (`false`).
    pub fn set(&self, ready: bool) {
        let mut last_error = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ready {
            if last_error.take().is_some() {
                tracing::info!("ready: the controller's watches work again");
            }
        } else {
            if last_error.is_none() {
                tracing::warn!("not ready: a watch of the controller fails");
            }
            *last_error = Some(Instant::now());
        }
    }

    /// Whether the watches work.
    pub fn is_ready(&self) -> bool {
        let last_error = self.0.lock().unwrap_or_else(|e| e.into_inner());
        last_error.is_none_or(|at| at.elapsed() >= Self::RECOVERY)
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ServerState {
    /// Metrics to render.
    pub metrics: Metrics,
    /// Stored outputs.
    pub logs: LogStore,
    /// The tokens readers of `/logs` must send.
    pub logs_tokens: LogTokens,
    /// The controller's watch health, for `/readyz`.
    pub ready: Readiness,
}

/// The router.
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/logs/{namespace}/{uid}", get(logs).put(put_logs))
        .route("/logs/{namespace}/{uid}/files/{sha256}", get(stored_file).put(put_file))
        .with_state(state)
}

async fn readyz(State(state): State<ServerState>) -> Response {
    if state.ready.is_ready() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "a watch of the controller fails").into_response()
    }
}

async fn metrics(State(state): State<ServerState>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    state.metrics.watch_health(state.ready.is_ready());
    ([(header::CONTENT_TYPE, content_type)], state.metrics.render()).into_response()
}

/// An error answer: `{"error": message}`.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({"error": message.into()}))).into_response()
}

/// The 401 of a request without the namespace's token (checked before anything is looked up: without the token,
/// whether an output exists is not said), or `None` when it may go on.
fn unauthorized(state: &ServerState, headers: &HeaderMap, namespace: &str) -> Option<Response> {
    let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    (!state.logs_tokens.allows(namespace, sent))
        .then(|| refuse(StatusCode::UNAUTHORIZED, "a valid bearer token of this namespace is required"))
}

/// Why a request body was not read whole.
enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The connection failed while it was read.
    Broken(axum::Error),
}

/// The body, read up to `limit` bytes (a longer one is refused as soon as it is, without reading the rest).
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Broken)?;
        if out.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn body_refusal(e: BodyError, limit: usize) -> Response {
    match e {
        BodyError::TooLarge => refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {limit} bytes")),
        BodyError::Broken(e) => refuse(StatusCode::BAD_REQUEST, format!("reading the body failed: {e}")),
    }
}

fn put_refusal(e: PutError) -> Response {
    match e {
        PutError::Off => refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        PutError::Invalid(_) | PutError::DigestMismatch { .. } => refuse(StatusCode::BAD_REQUEST, e.to_string()),
        PutError::TooLarge { .. } => refuse(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
        PutError::MissingFile { .. } => refuse(StatusCode::CONFLICT, e.to_string()),
        PutError::Io(io) => {
            tracing::error!(error = %io, "writing to the log store");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "cannot write to the log store")
        }
    }
}

/// `PUT /logs/{namespace}/{uid}`: stores a record (a `StoredLogs`) whose files are stored already.
async fn put_logs(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path((namespace, uid)): Path<(String, String)>,
    body: Body,
) -> Response {
    if let Some(refused) = unauthorized(&state, &headers, &namespace) {
        return refused;
    }
    let bytes = match read_body(body, MAX_RECORD_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => return body_refusal(e, MAX_RECORD_BYTES),
    };
    let record: StoredLogs = match serde_json::from_slice(&bytes) {
        Ok(record) => record,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("not a stored output: {e}")),
    };
    match state.logs.put_record(&namespace, &uid, &record).await {
        Ok(logs_ref) => (StatusCode::CREATED, Json(serde_json::json!({"logsRef": logs_ref}))).into_response(),
        Err(e) => put_refusal(e),
    }
}

/// `PUT /logs/{namespace}/{uid}/files/{sha256}`: stores one file of a record; the body must hash to the name and be
/// at most the operator's `files.maxBytes`.
async fn put_file(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path((namespace, uid, sha256)): Path<(String, String, String)>,
    body: Body,
) -> Response {
    if let Some(refused) = unauthorized(&state, &headers, &namespace) {
        return refused;
    }
    let limit = usize::try_from(state.logs.file_max_bytes()).unwrap_or(usize::MAX);
    let bytes = match read_body(body, limit).await {
        Ok(bytes) => bytes,
        Err(e) => return body_refusal(e, limit),
    };
    match state.logs.put_file(&namespace, &uid, &sha256, &bytes).await {
        Ok(()) => {
            (StatusCode::CREATED, Json(serde_json::json!({"sha256": sha256, "size": bytes.len()}))).into_response()
        }
        Err(e) => put_refusal(e),
    }
}

/// `GET /logs/{namespace}/{uid}/files/{sha256}`: one stored file's bytes.
async fn stored_file(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path((namespace, uid, sha256)): Path<(String, String, String)>,
) -> Response {
    if let Some(refused) = unauthorized(&state, &headers, &namespace) {
        return refused;
    }
    match state.logs.read_file(&namespace, &uid, &sha256).await {
        Ok(Some(bytes)) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Ok(None) => refuse(StatusCode::NOT_FOUND, "no such stored file for this execution"),
        Err(e) => {
            tracing::error!(error = %e, "reading a stored file");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the stored file")
        }
    }
}

async fn logs(
    State(state): State<ServerState>,
    headers: HeaderMap,
    Path((namespace, uid)): Path<(String, String)>,
) -> Response {
    if let Some(refused) = unauthorized(&state, &headers, &namespace) {
        return refused;
    }
    match state.logs.load(&namespace, &uid).await {
        Ok(Some(logs)) => Json(logs).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "no stored output for this execution"})))
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading stored output");
            (StatusCode::INTERNAL_SERVER_ERROR, Json(serde_json::json!({"error": "cannot read the stored output"})))
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::ExecutionResult;

    /// A server with outputs stored for `uid-a` in `team-a` and `uid-b` in `team-b`; its base URL.
    async fn serve(tokens: LogTokens) -> (String, tempfile::TempDir) {
        serve_with(tokens, LogStore::new).await
    }

    /// [`serve`], with the store made from its configuration by `store`.
    async fn serve_with(tokens: LogTokens, store: impl FnOnce(&LogsConfig) -> LogStore) -> (String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config =
            LogsConfig { dir: Some(dir.path().into()), url: Some("http://op:8081".into()), ..LogsConfig::default() };
        let logs = store(&config);
        let mut result = ExecutionResult::pending("exe");
        result.stdout = "secret output".into();
        logs.save("team-a", "uid-a", &result).await.unwrap();
        logs.save("team-b", "uid-b", &result).await.unwrap();
        let state = ServerState { metrics: Metrics::new(), logs, logs_tokens: tokens, ready: Readiness::default() };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        (url, dir)
    }

    async fn get(url: &str, path: &str, token: Option<&str>) -> u16 {
        let mut request = reqwest::Client::new().get(format!("{url}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status().as_u16()
    }

    fn per_namespace() -> LogTokens {
        LogTokens::new(HashMap::from([("team-a".into(), "token-a".into()), ("team-b".into(), "token-b".into())]), None)
    }

    #[tokio::test]
    async fn a_namespaces_token_reads_its_outputs_and_no_others() {
        let (url, _dir) = serve(per_namespace()).await;
        assert_eq!(get(&url, "/logs/team-a/uid-a", Some("token-a")).await, 200);
        assert_eq!(get(&url, "/logs/team-b/uid-b", Some("token-b")).await, 200);
        // A's token does not read B's output, which exists: 401, not 404, so nothing is said about it.
        assert_eq!(get(&url, "/logs/team-b/uid-b", Some("token-a")).await, 401);
        assert_eq!(get(&url, "/logs/team-b/missing", Some("token-a")).await, 401);
        // With the right token, a missing output is 404.
        assert_eq!(get(&url, "/logs/team-a/missing", Some("token-a")).await, 404);
        assert_eq!(get(&url, "/logs/team-a/uid-a", None).await, 401);
        assert_eq!(get(&url, "/logs/team-a/uid-a", Some("token-a ")).await, 200, "whitespace is not the token");
        // A namespace without a token, and no shared token: nobody reads it.
        assert_eq!(get(&url, "/logs/team-c/uid-c", Some("token-a")).await, 401);
    }

    #[tokio::test]
    async fn the_shared_token_serves_only_namespaces_without_their_own() {
        let tokens = LogTokens::new(HashMap::from([("team-a".into(), "token-a".into())]), Some("shared".into()));
        let (url, _dir) = serve(tokens).await;
        assert_eq!(get(&url, "/logs/team-b/uid-b", Some("shared")).await, 200);
        assert_eq!(get(&url, "/logs/team-a/uid-a", Some("shared")).await, 401, "team-a has its own");
        assert_eq!(get(&url, "/logs/team-a/uid-a", Some("token-a")).await, 200);
        assert_eq!(get(&url, "/logs/team-b/uid-b", Some("token-a")).await, 401);
        // No token at all: open, as before tokens were configured.
        let (open, _dir) = serve(LogTokens::default()).await;
        assert_eq!(get(&open, "/logs/team-b/uid-b", None).await, 200);
    }

    const HELLO_SHA: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    async fn put(url: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, serde_json::Value) {
        let mut request = reqwest::Client::new().put(format!("{url}{path}")).body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    #[tokio::test]
    async fn the_api_server_stores_files_then_the_record_that_lists_them() {
        let (url, _dir) = serve_with(per_namespace(), |c| LogStore::new(c).with_file_max_bytes(16)).await;
        let file = "/logs/team-a/exe_1/files/".to_string() + HELLO_SHA;
        let record = serde_json::json!({"stdout": "out", "stderr": "", "files_truncated": true,
            "files": [{"path": "greeting.txt", "size": 5, "sha256": HELLO_SHA}],
            "outputs": [{"type": "image/png", "data": "iVBO"}]});
        let record = serde_json::to_vec(&record).unwrap();
        // The namespace's token only, for writes as for reads.
        assert_eq!(put(&url, &file, Some("token-b"), b"hello".to_vec()).await.0, 401);
        assert_eq!(put(&url, "/logs/team-a/exe_1", None, record.clone()).await.0, 401);
        assert_eq!(get(&url, &file, Some("token-b")).await, 401);
        // A record whose file is not stored yet is refused; so are bytes that are not the named ones, or too many.
        let (status, body) = put(&url, "/logs/team-a/exe_1", Some("token-a"), record.clone()).await;
        assert_eq!(status, 409, "{body}");
        assert!(body["error"].as_str().unwrap().contains("greeting.txt"), "{body}");
        assert_eq!(put(&url, &file, Some("token-a"), b"hellO".to_vec()).await.0, 400);
        assert_eq!(put(&url, &file, Some("token-a"), vec![b'x'; 17]).await.0, 413);
        assert_eq!(put(&url, "/logs/team-a/exe_1/files/not-a-hash", Some("token-a"), b"x".to_vec()).await.0, 400);
        assert_eq!(put(&url, "/logs/team-a/exe_1", Some("token-a"), b"{not json".to_vec()).await.0, 400);
        assert_eq!(get(&url, &file, Some("token-a")).await, 404);
        // Files first, then the record.
        let (status, body) = put(&url, &file, Some("token-a"), b"hello".to_vec()).await;
        assert_eq!((status, body["size"].as_u64()), (201, Some(5)));
        let (status, body) = put(&url, "/logs/team-a/exe_1", Some("token-a"), record).await;
        assert_eq!((status, body["logsRef"].as_str()), (201, Some("http://op:8081/logs/team-a/exe_1")), "{body}");
        let read = reqwest::Client::new().get(format!("{url}{file}")).bearer_auth("token-a").send().await.unwrap();
        assert_eq!(read.status(), 200);
        assert_eq!(read.bytes().await.unwrap().as_ref(), b"hello");
        let stored: StoredLogs = reqwest::Client::new()
            .get(format!("{url}/logs/team-a/exe_1"))
            .bearer_auth("token-a")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!((stored.files.len(), stored.files_truncated, stored.outputs.len()), (1, true, 1));
        assert_eq!(get(&url, &format!("/logs/team-a/exe_2/files/{HELLO_SHA}"), Some("token-a")).await, 404);
    }

    #[tokio::test]
    async fn bodies_are_read_up_to_their_limit() {
        let body = Body::from(vec![0u8; 100]);
        assert!(matches!(read_body(body, 99).await, Err(BodyError::TooLarge)));
        assert_eq!(read_body(Body::from(vec![1u8; 100]), 100).await.ok().map(|b| b.len()), Some(100));
        let off = put_refusal(PutError::Off);
        assert_eq!(off.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn tokens_are_read_from_a_mounted_secret() {
        let dir = tempfile::tempdir().unwrap();
        // As the kubelet mounts a Secret: the keys are links into a `..data` directory.
        let data = dir.path().join("..data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("team-a"), "token-a\n").unwrap();
        std::os::unix::fs::symlink("..data/team-a", dir.path().join("team-a")).unwrap();
        let shared = dir.path().join("..data").join("shared");
        std::fs::write(&shared, "shared-token").unwrap();
        let config = LogsConfig {
            tokens_dir: Some(dir.path().into()),
            token_file: Some(shared.clone()),
            ..LogsConfig::default()
        };
        let tokens = LogTokens::load(&config).unwrap();
        assert_eq!(tokens.namespaces(), 1);
        assert!(tokens.allows("team-a", Some("Bearer token-a")));
        assert!(!tokens.allows("team-a", Some("Bearer shared-token")));
        assert!(tokens.allows("team-b", Some("Bearer shared-token")));
        assert!(!format!("{tokens:?}").contains("token-a"), "tokens stay out of debug output");

        std::fs::write(dir.path().join("Not_A_Namespace"), "x").unwrap();
        assert!(matches!(LogTokens::load(&config), Err(TokensError::Invalid { .. })));
        std::fs::remove_file(dir.path().join("Not_A_Namespace")).unwrap();
        std::fs::write(dir.path().join("team-b"), " \n").unwrap();
        assert!(matches!(LogTokens::load(&config), Err(TokensError::Invalid { why: "the token is empty", .. })));
        let missing = LogsConfig { tokens_dir: Some(dir.path().join("absent")), ..LogsConfig::default() };
        assert!(matches!(LogTokens::load(&missing), Err(TokensError::Read { .. })));
    }

    #[test]
    fn readiness_fails_after_a_watch_error_until_the_watch_works() {
        let ready = Readiness::default();
        assert!(ready.is_ready());
        ready.set(false);
        assert!(!ready.is_ready());
        ready.set(false);
        assert!(!ready.is_ready());
        ready.set(true);
        assert!(ready.is_ready());
    }
}
