//! The store of full outputs. The status keeps 64 KiB of each stream; the whole output (up to the runner's cap)
//! is kept here, one JSON file per execution, served by the operator's HTTP server at `status.logsRef`. This is
//! state outside Kubernetes, which is why resources carry a finalizer when the store is on: deleting a resource
//! deletes its file. What is stored (and served) is the API server's and the operator's shared
//! `pyexec_crds::contract::StoredLogs`.

use std::path::PathBuf;

use pyexec_core::ExecutionResult;
use pyexec_crds::contract::StoredLogs;

use crate::config::LogsConfig;

/// The finalizer that removes a resource's stored output.
pub const FINALIZER: &str = "pyexec.io/logs";

/// The store (off without a directory).
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    dir: Option<PathBuf>,
    url: Option<String>,
}

impl LogStore {
    /// The store the configuration describes.
    pub fn new(config: &LogsConfig) -> LogStore {
        LogStore { dir: config.dir.clone(), url: config.url.as_ref().map(|u| u.trim_end_matches('/').to_owned()) }
    }

    /// Whether outputs are stored.
    pub fn enabled(&self) -> bool {
        self.dir.is_some()
    }

    fn path(&self, namespace: &str, uid: &str) -> Option<PathBuf> {
        // Both parts are Kubernetes names/uids (DNS labels, UUIDs): no separators can sneak in; checked anyway.
        let safe = |s: &str| {
            !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') && s != ".."
        };
        (safe(namespace) && safe(uid))
            .then(|| self.dir.as_ref().map(|d| d.join(namespace).join(format!("{uid}.json"))))?
    }

    /// Stores the output of a finished execution; returns its `logsRef`.
    pub async fn save(&self, namespace: &str, uid: &str, result: &ExecutionResult) -> std::io::Result<Option<String>> {
        let Some(path) = self.path(namespace, uid) else { return Ok(None) };
        let logs = StoredLogs {
            stdout: result.stdout.clone(),
            stderr: result.stderr.clone(),
            pre_commands_output: result.pre_commands_output.clone(),
        };
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, serde_json::to_vec(&logs).map_err(std::io::Error::other)?).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(self.url.as_ref().map(|url| format!("{url}/logs/{namespace}/{uid}")))
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

    /// Forgets an execution's output.
    pub async fn remove(&self, namespace: &str, uid: &str) -> std::io::Result<()> {
        let Some(path) = self.path(namespace, uid) else { return Ok(()) };
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outputs_are_saved_loaded_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::new(&LogsConfig {
            dir: Some(dir.path().into()),
            url: Some("http://op:8081/".into()),
            tokens_dir: None,
            token_file: None,
        });
        let mut result = ExecutionResult::pending("exe");
        result.stdout = "x".repeat(200_000);
        let logs_ref = store.save("team-a", "uid-1", &result).await.unwrap();
        assert_eq!(logs_ref.as_deref(), Some("http://op:8081/logs/team-a/uid-1"));
        assert_eq!(store.load("team-a", "uid-1").await.unwrap().unwrap().stdout.len(), 200_000);
        assert!(store.load("../etc", "passwd").await.unwrap().is_none(), "no path tricks");
        store.remove("team-a", "uid-1").await.unwrap();
        assert!(store.load("team-a", "uid-1").await.unwrap().is_none());
        assert!(!LogStore::default().enabled());
    }
}
