//! The files executions left in `/work`, kept on disk next to their records: `<data>/files/<execution id>/<sha256>`.
//!
//! Files are stored under their content's hash, never under the path the program chose, so no path from a run
//! ever reaches the host's file system; the record's `files` list maps paths to hashes. They expire with their
//! execution (the sweeper removes directories whose execution is gone).

use std::path::PathBuf;

use pyexec_core::files_out::FilesOut;
use pyexec_core::model::is_execution_id;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(super) struct FileKeeper {
    dir: PathBuf,
}

impl FileKeeper {
    pub(super) fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// Stores the files of execution `id`.
    pub(super) async fn save(&self, id: &str, files: &FilesOut) -> std::io::Result<()> {
        if files.files.is_empty() || !is_execution_id(id) {
            return Ok(());
        }
        let dir = self.dir.join(id);
        tokio::fs::create_dir_all(&dir).await?;
        for (entry, bytes) in &files.files {
            let target = dir.join(&entry.sha256);
            if is_hash(&entry.sha256) && tokio::fs::symlink_metadata(&target).await.is_err() {
                tokio::fs::write(&target, bytes).await?;
            }
        }
        Ok(())
    }

    /// The bytes stored for execution `id` under `sha256`.
    pub(super) async fn read(&self, id: &str, sha256: &str) -> std::io::Result<Option<Vec<u8>>> {
        if !is_execution_id(id) || !is_hash(sha256) {
            return Ok(None);
        }
        match tokio::fs::read(self.dir.join(id).join(sha256)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Executions that have files.
    pub(super) fn executions(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|rd| rd.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default()
    }

    /// Removes the files of execution `id`.
    pub(super) async fn remove(&self, id: &str) {
        let path = self.dir.join(id);
        if let Err(e) = tokio::fs::remove_dir_all(&path).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(execution_id = id, error = %e, "could not remove an execution's files");
        }
    }
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::model::OutputFile;

    #[tokio::test]
    async fn files_are_kept_by_hash_and_removed_with_their_execution() {
        let tmp = tempfile::tempdir().unwrap();
        let keeper = FileKeeper::new(tmp.path().join("files")).unwrap();
        let id = pyexec_core::model::new_execution_id();
        let sha = "a".repeat(64);
        let files = FilesOut {
            files: vec![(OutputFile { path: "../../etc/x".into(), size: 3, sha256: sha.clone() }, b"abc".to_vec())],
            truncated: false,
        };
        keeper.save(&id, &files).await.unwrap();
        assert_eq!(keeper.read(&id, &sha).await.unwrap().as_deref(), Some(&b"abc"[..]));
        assert!(!tmp.path().join("etc").exists(), "no path of the run reaches the disk");
        assert_eq!(keeper.read(&id, "../x").await.unwrap(), None);
        assert_eq!(keeper.read("../../x", &sha).await.unwrap(), None);
        assert_eq!(keeper.executions(), vec![id.clone()]);
        keeper.remove(&id).await;
        assert_eq!(keeper.read(&id, &sha).await.unwrap(), None);
    }
}
