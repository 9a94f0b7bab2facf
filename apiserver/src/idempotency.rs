//! `Idempotency-Key` (docs/api.md, "Retries"): a client that retries a request that creates work sends the same
//! key, and gets the work the first attempt created instead of a second run. The key is scoped to the caller's
//! tenant and lives as long as the execution it created (`PYEXEC_CLEANUP_TTL`); the same key with a request that
//! asks for something else answers 422.
//!
//! The backend keeps the key's hash and the request's fingerprint with the execution
//! (`ExecutionSpec::idempotency`) and finds it again ([`Backend::find_idempotent`]); within this server, requests
//! with the same key are taken one at a time ([`KeyLocks`]), so two concurrent retries cannot both miss.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use axum::http::HeaderMap;
use pyexec_core::spec::IdempotencyRecord;
use pyexec_core::{CodeFile, ExecutionSpec};
use sha2::{Digest, Sha256};

use axum::Json;
use pyexec_core::ExecutionResult;

use crate::backend::{Backend, Source, StdinFile};
use crate::error::ApiError;
use crate::routes::sync;
use crate::state::AppState;

/// The header.
pub const HEADER: &str = "idempotency-key";
/// Longest key.
const MAX_KEY: usize = 255;

/// A request's key, hashed with its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Hex SHA-256 of tenant and key, cut to 40 characters (it is a Kubernetes label value too).
    pub hash: String,
}

/// The request's key, if it sent one: printable ASCII without spaces, 1 to 255 characters.
pub fn key_of(headers: &HeaderMap, tenant: Option<&str>) -> Result<Option<Key>, ApiError> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    let key =
        value.to_str().ok().filter(|k| !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| b.is_ascii_graphic()));
    let Some(key) = key else {
        return Err(ApiError::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters without spaces (a UUID is a good key)"
        )));
    };
    let mut hasher = Sha256::new();
    hasher.update(tenant.unwrap_or_default().as_bytes());
    hasher.update([0]);
    hasher.update(key.as_bytes());
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(Some(Key { hash: hex[..40].to_owned() }))
}

/// Request fingerprints: what a request asks for, hashed, so that a retry can be told from another request under
/// the same key. Everything the run depends on counts (the spec, the files, the standard input); not how the
/// request was encoded (a retry may order JSON keys or multipart boundaries differently).
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// Starts with the validated spec (its tenant and key aside: they are not what is asked for).
    pub fn new(spec: &ExecutionSpec) -> Fingerprint {
        let mut asked = spec.clone();
        asked.tenant = None;
        asked.idempotency = None;
        let mut hasher = Sha256::new();
        hasher.update(serde_json::to_vec(&asked).unwrap_or_default());
        Fingerprint(hasher)
    }

    /// Adds files given inline.
    pub fn files(mut self, files: &[CodeFile]) -> Self {
        for file in files {
            self.part(file.name.as_bytes());
            self.part(file.content.as_bytes());
        }
        self
    }

    /// Adds an unpacked upload: every regular file under `dir`, by path, in order.
    pub fn directory(mut self, dir: &Path) -> std::io::Result<Self> {
        let mut files = Vec::new();
        collect(dir, dir, &mut files)?;
        files.sort();
        for (relative, path) in files {
            self.part(relative.as_bytes());
            self.part(&hash_file(&path)?);
        }
        Ok(self)
    }

    /// Adds a spooled standard input.
    pub fn stdin_file(mut self, path: Option<&Path>) -> std::io::Result<Self> {
        if let Some(path) = path {
            self.part(b"stdin");
            self.part(&hash_file(path)?);
        }
        Ok(self)
    }

    /// Adds what a source holds.
    pub fn source(self, source: &Source) -> std::io::Result<Self> {
        match source {
            Source::Files(files) => Ok(self.files(files)),
            Source::Directory(dir) => self.directory(dir),
        }
    }

    /// The record the execution keeps.
    pub fn finish(self, key: &Key) -> IdempotencyRecord {
        let fingerprint = self.0.finalize().iter().map(|b| format!("{b:02x}")).collect();
        IdempotencyRecord { key_hash: key.hash.clone(), fingerprint }
    }

    /// A length-prefixed part, so that parts cannot run into each other.
    fn part(&mut self, bytes: &[u8]) {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }
}

/// A file's SHA-256, read in pieces (an upload's file may be large).
fn hash_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().to_vec());
        }
        hasher.update(&buf[..n]);
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file() {
            let relative = path.strip_prefix(root).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
            out.push((relative, path));
        }
    }
    Ok(())
}

/// What an earlier request under the same key created, if anything: `Ok(Some(id))` to answer with, 422 when it
/// asked for something else.
pub async fn earlier(backend: &dyn Backend, record: &IdempotencyRecord) -> Result<Option<String>, ApiError> {
    match backend.find_idempotent(&record.key_hash).await? {
        Some(found) if found.fingerprint == record.fingerprint => Ok(Some(found.execution_id)),
        Some(found) => Err(ApiError::Unprocessable(format!(
            "Idempotency-Key was used for another request (execution {}); use a new key for a new request",
            found.execution_id
        ))),
        None => Ok(None),
    }
}

/// Computes the request's record (reading an upload's files on a blocking thread).
async fn record_of(
    key: &Key,
    spec: &ExecutionSpec,
    source: &Source,
    stdin: Option<&StdinFile>,
) -> Result<IdempotencyRecord, ApiError> {
    let (key, spec, stdin) = (key.clone(), spec.clone(), stdin.map(|s| s.path().to_owned()));
    let source = match source {
        Source::Files(files) => Source::Files(files.clone()),
        Source::Directory(dir) => Source::Directory(dir.clone()),
    };
    tokio::task::spawn_blocking(move || {
        Ok::<_, std::io::Error>(Fingerprint::new(&spec).source(&source)?.stdin_file(stdin.as_deref())?.finish(&key))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("fingerprint task failed: {e}")))?
    .map_err(|e| ApiError::Internal(format!("reading the request to fingerprint it: {e}")))
}

/// What a request under a key comes to: the execution an earlier request created, or this one's, new.
enum Claimed {
    Earlier(String),
    New(Box<ExecutionResult>),
}

/// Submits, unless an earlier request under the same key did; requests under one key take turns here.
async fn claim(
    state: &AppState,
    key: &Key,
    mut spec: ExecutionSpec,
    source: Source,
    stdin: Option<StdinFile>,
) -> Result<Claimed, ApiError> {
    let record = record_of(key, &spec, &source, stdin.as_ref()).await?;
    let _turn = state.idempotency.lock(key).await;
    if let Some(id) = earlier(&*state.backend, &record).await? {
        // The retry's own upload is not needed (its standard input file goes with `stdin`).
        if let Source::Directory(dir) = source {
            let _ = tokio::fs::remove_dir_all(dir).await;
        }
        return Ok(Claimed::Earlier(id));
    }
    spec.idempotency = Some(record);
    Ok(Claimed::New(Box::new(sync::submit_with_stdin(state, spec, source, stdin).await?)))
}

/// A synchronous run under an optional key. With a key, a client that goes away does not kill the run: it said it
/// would retry, and its retry gets the result.
pub async fn run(
    state: &AppState,
    key: Option<Key>,
    spec: ExecutionSpec,
    source: Source,
    stdin: Option<StdinFile>,
) -> Result<Json<ExecutionResult>, ApiError> {
    let Some(key) = key else { return sync::run_with_stdin(state, spec, source, stdin).await };
    let id = match claim(state, &key, spec, source, stdin).await? {
        Claimed::Earlier(id) => id,
        Claimed::New(record) => record.execution_id,
    };
    let result = state.backend.wait(&id).await?;
    result.map(Json).ok_or_else(|| state.execution_not_found())
}

/// An asynchronous submission under an optional key: the id of the execution (an earlier request's, for a retry).
pub async fn submit(
    state: &AppState,
    key: Option<Key>,
    spec: ExecutionSpec,
    source: Source,
    stdin: Option<StdinFile>,
) -> Result<String, ApiError> {
    let Some(key) = key else {
        return Ok(sync::submit_with_stdin(state, spec, source, stdin).await?.execution_id);
    };
    Ok(match claim(state, &key, spec, source, stdin).await? {
        Claimed::Earlier(id) => id,
        Claimed::New(record) => record.execution_id,
    })
}

/// A session call under an optional key: an earlier call's result under the same key (waited for if it still
/// runs), or this call's. The session is checked by the caller.
pub async fn session_call(
    state: &AppState,
    key: Option<Key>,
    session_id: &str,
    mut call: pyexec_core::session::SessionCall,
) -> Result<ExecutionResult, ApiError> {
    let Some(key) = key else { return Ok(state.backend.session_eval(session_id, call).await?) };
    let mut hasher = Sha256::new();
    hasher.update(session_id.as_bytes());
    hasher.update([0]);
    hasher.update(call.asked());
    let fingerprint = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let record = IdempotencyRecord { key_hash: key.hash.clone(), fingerprint };
    let turn = state.idempotency.lock(&key).await;
    if let Some(id) = earlier(&*state.backend, &record).await? {
        drop(turn);
        return state.backend.wait(&id).await?.ok_or_else(|| state.execution_not_found());
    }
    call.idempotency = Some(record);
    // The turn lasts the call: a concurrent retry waits for it, then finds its record.
    let result = state.backend.session_eval(session_id, call).await?;
    drop(turn);
    Ok(result)
}

/// A session start under an optional key: the live session an earlier request under the same key started (the
/// same answer again), or a new one. `quota` is the tenant's check, awaited only when a session is to start: a
/// retry of a start that succeeded is not refused for the session it started itself.
pub async fn session_start(
    state: &AppState,
    key: Option<Key>,
    mut spec: ExecutionSpec,
    idle_seconds: u64,
    quota: impl std::future::Future<Output = Result<(), ApiError>>,
) -> Result<pyexec_core::session::SessionInfo, ApiError> {
    let Some(key) = key else {
        quota.await?;
        return Ok(state.backend.create_session(spec, idle_seconds).await?);
    };
    let asked = serde_json::to_vec(&(&spec, idle_seconds))
        .map_err(|e| ApiError::Internal(format!("fingerprinting the request: {e}")))?;
    let mut hasher = Sha256::new();
    hasher.update(b"session\0");
    hasher.update(asked);
    let fingerprint = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let record = IdempotencyRecord { key_hash: key.hash.clone(), fingerprint };
    let _turn = state.idempotency.lock(&key).await;
    match state.backend.find_idempotent_session(&record.key_hash).await? {
        Some(found) if found.fingerprint == record.fingerprint => return Ok(found.info),
        Some(found) => {
            return Err(ApiError::Unprocessable(format!(
                "Idempotency-Key was used for another request (session {}); use a new key for a new request",
                found.info.session_id
            )));
        }
        None => {}
    }
    quota.await?;
    spec.idempotency = Some(record);
    Ok(state.backend.create_session(spec, idle_seconds).await?)
}

/// One lock per key in use, so that requests with the same key are taken one at a time.
#[derive(Default)]
pub struct KeyLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl KeyLocks {
    /// Waits for the key's turn; the turn lasts as long as the guard.
    pub async fn lock(&self, key: &Key) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, weak| weak.strong_count() > 0);
            match map.get(&key.hash).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.hash.clone(), Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HEADER, key.parse().unwrap());
        h
    }

    #[test]
    fn keys_are_scoped_to_their_tenant_and_checked() {
        let alice = key_of(&headers("retry-1"), Some("alice")).unwrap().unwrap();
        let bob = key_of(&headers("retry-1"), Some("bob")).unwrap().unwrap();
        assert_ne!(alice, bob, "the same key of two tenants is two keys");
        assert_eq!(alice.hash.len(), 40);
        assert_eq!(key_of(&HeaderMap::new(), None).unwrap(), None);
        assert!(key_of(&headers("has space"), None).is_err());
        assert!(key_of(&headers(&"k".repeat(256)), None).is_err());
    }

    #[test]
    fn a_fingerprint_changes_with_what_is_asked_not_with_who_asks() {
        let spec = pyexec_core::Policy::default()
            .spec_from_eval(serde_json::from_str(r#"{"code": "print(1)"}"#).unwrap())
            .unwrap()
            .0;
        let key = Key { hash: "k".into() };
        let files = [CodeFile { name: "main.py".into(), content: "print(1)".into() }];
        let one = Fingerprint::new(&spec).files(&files).finish(&key);
        let tenant = ExecutionSpec { tenant: Some("alice".into()), ..spec.clone() };
        assert_eq!(one, Fingerprint::new(&tenant).files(&files).finish(&key));
        let other = [CodeFile { name: "main.py".into(), content: "print(2)".into() }];
        assert_ne!(one.fingerprint, Fingerprint::new(&spec).files(&other).finish(&key).fingerprint);
        let longer = ExecutionSpec { limits: pyexec_core::Limits { timeout_seconds: 9, ..spec.limits }, ..spec };
        assert_ne!(one.fingerprint, Fingerprint::new(&longer).files(&files).finish(&key).fingerprint);
    }
}
