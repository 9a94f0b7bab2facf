//! The store of full outputs. The status keeps 64 KiB of each stream; the whole output (up to the runner's cap),
//! the display outputs and the list of the files the run left in `/work` are kept here, one JSON file per execution
//! (`{dir}/{namespace}/{uid}.json`, a `pyexec_crds::contract::StoredLogs`), and each of those files under its
//! content's SHA-256 (`{dir}/{namespace}/{uid}.files/{sha256}`), served by the operator's HTTP server at
//! `status.logsRef`. Files are stored under their hash, never under the path the program chose, so no path from a
//! run reaches the operator's file system. This is state outside Kubernetes, which is why resources carry a
//! finalizer when the store is on: deleting a resource deletes its record and its files.
//!
//! Besides what the operator collects, the API server stores the records of session calls here (through the
//! server's `PUT`s): their files first ([`LogStore::put_file`], checked against their hash), then the record
//! ([`LogStore::put_record`]), which is refused while it names a file that is not stored.

use std::collections::HashSet;
use std::path::PathBuf;

use pyexec_core::ExecutionResult;
use pyexec_core::files_out::sha256_hex;
use pyexec_core::model::OutputFile;
use pyexec_core::paths::normalize_relative_path;
use pyexec_crds::contract::StoredLogs;

use crate::config::{DEFAULT_FILES_MAX_BYTES, LogsConfig};

/// The finalizer that removes a resource's stored output.
pub const FINALIZER: &str = "pyexec.io/logs";

/// The store (off without a directory).
#[derive(Debug, Clone)]
pub struct LogStore {
    dir: Option<PathBuf>,
    url: Option<String>,
    /// The largest file stored through [`LogStore::put_file`].
    file_max_bytes: u64,
}

impl Default for LogStore {
    fn default() -> Self {
        LogStore { dir: None, url: None, file_max_bytes: DEFAULT_FILES_MAX_BYTES }
    }
}

/// Why something could not be stored through [`LogStore::put_file`] or [`LogStore::put_record`].
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The store is off.
    #[error("the log store is off (logs.dir is not set)")]
    Off,
    /// A namespace, uid, hash or path that the store does not take.
    #[error("{0}")]
    Invalid(String),
    /// The bytes are not those the hash names.
    #[error("the content's SHA-256 is {actual}, not {expected}")]
    DigestMismatch {
        /// The hash in the request.
        expected: String,
        /// The content's.
        actual: String,
    },
    /// More bytes than the store takes.
    #[error("more than {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The record names a file whose bytes are not stored (yet).
    #[error("the file {path:?} (sha256 {sha256}, {size} bytes) is not stored: store the files first")]
    MissingFile {
        /// Its path.
        path: String,
        /// Its hash.
        sha256: String,
        /// Its size.
        size: u64,
    },
    /// Reading or writing the store failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl LogStore {
    /// The store the configuration describes (files of at most the default `files.maxBytes` are taken through
    /// [`LogStore::put_file`]; see [`LogStore::with_file_max_bytes`]).
    pub fn new(config: &LogsConfig) -> LogStore {
        LogStore {
            dir: config.dir.clone(),
            url: config.url.as_ref().map(|u| u.trim_end_matches('/').to_owned()),
            file_max_bytes: DEFAULT_FILES_MAX_BYTES,
        }
    }

    /// The store, taking files of at most `max` bytes through [`LogStore::put_file`] (the operator's
    /// `files.maxBytes`: a session call's file is no larger than an execution's).
    pub fn with_file_max_bytes(mut self, max: u64) -> LogStore {
        self.file_max_bytes = max;
        self
    }

    /// The largest file [`LogStore::put_file`] takes.
    pub fn file_max_bytes(&self) -> u64 {
        self.file_max_bytes
    }

    /// Whether outputs are stored.
    pub fn enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// The directory of a namespace's records, when the store is on and the names are plain.
    fn namespace_dir(&self, namespace: &str, uid: &str) -> Option<PathBuf> {
        // Kubernetes names and uids (DNS labels, UUIDs), or the API server's execution ids (`exe_<uuid>`): no
        // separators can sneak in; checked anyway.
        let safe = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
                && !s.starts_with('.')
        };
        (safe(namespace) && safe(uid)).then(|| self.dir.as_ref().map(|d| d.join(namespace)))?
    }

    fn path(&self, namespace: &str, uid: &str) -> Option<PathBuf> {
        self.namespace_dir(namespace, uid).map(|d| d.join(format!("{uid}.json")))
    }

    fn files_dir(&self, namespace: &str, uid: &str) -> Option<PathBuf> {
        self.namespace_dir(namespace, uid).map(|d| d.join(format!("{uid}.files")))
    }

    fn file_path(&self, namespace: &str, uid: &str, sha256: &str) -> Option<PathBuf> {
        is_hash(sha256).then(|| self.files_dir(namespace, uid).map(|d| d.join(sha256)))?
    }

    /// The `logsRef` of an execution's record.
    fn logs_ref(&self, namespace: &str, uid: &str) -> Option<String> {
        self.url.as_ref().map(|url| format!("{url}/logs/{namespace}/{uid}"))
    }

    /// Stores the output of a finished execution: its output, display outputs and the list of its files (whose
    /// bytes [`LogStore::save_files`] stored before); returns its `logsRef`.
    pub async fn save(&self, namespace: &str, uid: &str, result: &ExecutionResult) -> std::io::Result<Option<String>> {
        let Some(path) = self.path(namespace, uid) else { return Ok(None) };
        let logs = StoredLogs {
            stdout: result.stdout.clone(),
            stderr: result.stderr.clone(),
            pre_commands_output: result.pre_commands_output.clone(),
            files: result.files.clone(),
            files_truncated: result.files_truncated,
            outputs: result.outputs.clone(),
        };
        write_atomically(&path, &serde_json::to_vec(&logs).map_err(std::io::Error::other)?).await?;
        Ok(self.logs_ref(namespace, uid))
    }

    /// Stores the bytes of the files an execution left, each under its SHA-256 (computed here: the list comes from
    /// the runner's tar, read as hostile, and the hash is what names the file on disk).
    pub async fn save_files(&self, namespace: &str, uid: &str, files: &[(OutputFile, Vec<u8>)]) -> std::io::Result<()> {
        for (_, bytes) in files {
            let sha256 = sha256_hex(bytes);
            let Some(path) = self.file_path(namespace, uid, &sha256) else { return Ok(()) };
            if tokio::fs::try_exists(&path).await? {
                continue;
            }
            write_atomically(&path, bytes).await?;
        }
        Ok(())
    }

    /// Stores one file of a record written by the API server: `bytes` must be at most
    /// [`LogStore::file_max_bytes`] and hash to `sha256`.
    pub async fn put_file(&self, namespace: &str, uid: &str, sha256: &str, bytes: &[u8]) -> Result<(), PutError> {
        if !self.enabled() {
            return Err(PutError::Off);
        }
        let path = self
            .file_path(namespace, uid, sha256)
            .ok_or_else(|| PutError::Invalid("not a namespace, uid and lowercase hex SHA-256".into()))?;
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > self.file_max_bytes {
            return Err(PutError::TooLarge { max: self.file_max_bytes });
        }
        let actual = sha256_hex(bytes);
        if actual != sha256 {
            return Err(PutError::DigestMismatch { expected: sha256.to_owned(), actual });
        }
        write_atomically(&path, bytes).await?;
        Ok(())
    }

    /// Stores a record written by the API server, once every file it lists is stored with its size; returns its
    /// `logsRef`.
    pub async fn put_record(&self, namespace: &str, uid: &str, logs: &StoredLogs) -> Result<Option<String>, PutError> {
        if !self.enabled() {
            return Err(PutError::Off);
        }
        let path = self.path(namespace, uid).ok_or_else(|| PutError::Invalid("not a namespace and uid".into()))?;
        let mut paths = HashSet::new();
        for file in &logs.files {
            // The list is served to clients as it is: only plain workspace paths, each once.
            if normalize_relative_path(&file.path).ok().as_deref() != Some(file.path.as_str()) {
                return Err(PutError::Invalid(format!("{:?} is not a plain path inside /work", file.path)));
            }
            if !paths.insert(file.path.as_str()) {
                return Err(PutError::Invalid(format!("{:?} is listed twice", file.path)));
            }
            let stored = match self.file_path(namespace, uid, &file.sha256) {
                Some(stored) => stored,
                None => return Err(PutError::Invalid(format!("{:?} is not a lowercase hex SHA-256", file.sha256))),
            };
            let size = match tokio::fs::metadata(&stored).await {
                Ok(meta) => Some(meta.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            };
            if size != Some(file.size) {
                return Err(PutError::MissingFile {
                    path: file.path.clone(),
                    sha256: file.sha256.clone(),
                    size: file.size,
                });
            }
        }
        write_atomically(&path, &serde_json::to_vec(logs).map_err(std::io::Error::other)?).await?;
        Ok(self.logs_ref(namespace, uid))
    }

    /// The stored output of an execution.
    pub async fn load(&self, namespace: &str, uid: &str) -> std::io::Result<Option<StoredLogs>> {
        let Some(path) = self.path(namespace, uid) else { return Ok(None) };
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(std::io::Error::other)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The bytes of one stored file of an execution.
    pub async fn read_file(&self, namespace: &str, uid: &str, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(path) = self.file_path(namespace, uid, sha256) else { return Ok(None) };
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Forgets an execution's output and files.
    pub async fn remove(&self, namespace: &str, uid: &str) -> std::io::Result<()> {
        if let Some(dir) = self.files_dir(namespace, uid) {
            match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        let Some(path) = self.path(namespace, uid) else { return Ok(()) };
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Lowercase hex SHA-256: the names files are stored under.
fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Writes `bytes` to `path` through a temporary file of a unique name and a rename, so that a reader (or a writer
/// of the same record at the same time) never sees half of it.
async fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("record");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&tmp, bytes).await?;
    if let Err(e) = tokio::fs::rename(&tmp, path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::model::DisplayOutput;

    fn store(dir: &std::path::Path) -> LogStore {
        LogStore::new(&LogsConfig {
            dir: Some(dir.into()),
            url: Some("http://op:8081/".into()),
            tokens_dir: None,
            token_file: None,
        })
    }

    fn file(path: &str, bytes: &[u8]) -> (OutputFile, Vec<u8>) {
        let sha256 = sha256_hex(bytes);
        (OutputFile { path: path.into(), size: bytes.len() as u64, sha256 }, bytes.to_vec())
    }

    #[tokio::test]
    async fn outputs_are_saved_loaded_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let mut result = ExecutionResult::pending("exe");
        result.stdout = "x".repeat(200_000);
        let logs_ref = store.save("team-a", "uid-1", &result).await.unwrap();
        assert_eq!(logs_ref.as_deref(), Some("http://op:8081/logs/team-a/uid-1"));
        assert_eq!(store.load("team-a", "uid-1").await.unwrap().unwrap().stdout.len(), 200_000);
        assert!(store.load("../etc", "passwd").await.unwrap().is_none(), "no path tricks");
        assert!(store.load("team-a", "..").await.unwrap().is_none());
        store.remove("team-a", "uid-1").await.unwrap();
        assert!(store.load("team-a", "uid-1").await.unwrap().is_none());
        assert!(!LogStore::default().enabled());
    }

    #[tokio::test]
    async fn files_are_kept_by_hash_listed_in_the_record_and_removed_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let files = vec![file("out.csv", b"a,b\n"), file("../../etc/evil", b"x"), file("copy.csv", b"a,b\n")];
        store.save_files("team-a", "uid-1", &files).await.unwrap();
        let mut result = ExecutionResult::pending("exe");
        result.files = files.iter().map(|(f, _)| f.clone()).collect();
        result.files_truncated = true;
        result.outputs = vec![DisplayOutput { kind: "image/png".into(), data: "iVBO".into() }];
        store.save("team-a", "uid-1", &result).await.unwrap();
        let loaded = store.load("team-a", "uid-1").await.unwrap().unwrap();
        assert_eq!((loaded.files.len(), loaded.files_truncated, loaded.outputs.len()), (3, true, 1));
        let sha = &files[0].0.sha256;
        assert_eq!(store.read_file("team-a", "uid-1", sha).await.unwrap().as_deref(), Some(&b"a,b\n"[..]));
        assert!(dir.path().join("team-a/uid-1.files").join(sha).is_file(), "content-addressed");
        assert!(!dir.path().join("etc").exists(), "no path of the run reaches the disk");
        assert_eq!(store.read_file("team-a", "uid-1", "../uid-1.json").await.unwrap(), None);
        assert_eq!(store.read_file("team-a", "uid-2", sha).await.unwrap(), None, "another execution's");
        store.remove("team-a", "uid-1").await.unwrap();
        assert_eq!(store.read_file("team-a", "uid-1", sha).await.unwrap(), None);
        assert!(!dir.path().join("team-a/uid-1.files").exists());
        store.remove("team-a", "uid-1").await.unwrap();
    }

    #[tokio::test]
    async fn records_written_by_the_api_server_name_only_stored_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).with_file_max_bytes(10);
        let (meta, bytes) = file("out/a.txt", b"hello");
        let wrong = "0".repeat(64);
        assert!(matches!(store.put_file("ns", "exe_1", &wrong, &bytes).await, Err(PutError::DigestMismatch { .. })));
        assert!(matches!(
            store.put_file("ns", "exe_1", &sha256_hex(&[0; 11]), &[0; 11]).await,
            Err(PutError::TooLarge { max: 10 })
        ));
        assert!(matches!(store.put_file("ns", "exe_1", "ABC", &bytes).await, Err(PutError::Invalid(_))));
        let record = StoredLogs { stdout: "hi".into(), files: vec![meta.clone()], ..StoredLogs::default() };
        assert!(
            matches!(store.put_record("ns", "exe_1", &record).await, Err(PutError::MissingFile { .. })),
            "the files come first"
        );
        store.put_file("ns", "exe_1", &meta.sha256, &bytes).await.unwrap();
        let lying = StoredLogs { files: vec![OutputFile { size: 99, ..meta.clone() }], ..record.clone() };
        assert!(matches!(store.put_record("ns", "exe_1", &lying).await, Err(PutError::MissingFile { .. })));
        for path in ["../x", "/etc/passwd", "a//b"] {
            let bad = StoredLogs { files: vec![OutputFile { path: path.into(), ..meta.clone() }], ..record.clone() };
            assert!(matches!(store.put_record("ns", "exe_1", &bad).await, Err(PutError::Invalid(_))), "{path}");
        }
        let twice = StoredLogs { files: vec![meta.clone(), meta.clone()], ..record.clone() };
        assert!(matches!(store.put_record("ns", "exe_1", &twice).await, Err(PutError::Invalid(_))));
        let logs_ref = store.put_record("ns", "exe_1", &record).await.unwrap();
        assert_eq!(logs_ref.as_deref(), Some("http://op:8081/logs/ns/exe_1"));
        assert_eq!(store.load("ns", "exe_1").await.unwrap().unwrap(), record);
        assert!(matches!(LogStore::default().put_record("ns", "exe_1", &record).await, Err(PutError::Off)));
        // Stored before files existed: still loads.
        std::fs::write(dir.path().join("ns/old.json"), r#"{"stdout":"a","stderr":""}"#).unwrap();
        assert_eq!(store.load("ns", "old").await.unwrap().unwrap().stdout, "a");
    }
}
