//! Durable records of executions, in SQLite in the data directory.
//!
//! Every execution is one row: its current `ExecutionResult` (as JSON, exactly what clients see), its status and
//! timestamps for queries, and, while it is not finished, its spec and workspace so that it can be run after a
//! restart. Results therefore survive restarts; the spec (which may hold environment values and stdin) is dropped
//! as soon as the execution ends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pyexec_core::{ExecutionResult, ExecutionSpec, ExecutionStatus, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};

/// Store errors carry their context as text; they become 500s.
#[derive(Debug, thiserror::Error)]
#[error("execution store: {0}")]
pub struct StoreError(String);

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError(format!("corrupt record: {e}"))
    }
}

/// An execution waiting to run, as recovered at start-up.
#[derive(Debug)]
pub struct Queued {
    pub result: ExecutionResult,
    pub spec: ExecutionSpec,
    pub workspace: PathBuf,
}

/// The store. Calls block (SQLite): use them from blocking threads ([`Store::call`]).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS executions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    spec        TEXT,
    workspace   TEXT,
    result      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, seq);
CREATE INDEX IF NOT EXISTS executions_by_finish ON executions (finished_at);
";

impl Store {
    /// Opens (creating if needed) `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; \
             PRAGMA foreign_keys = ON;",
        )?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Runs `f` with the connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError(format!("store task failed: {e}")))?
    }

    /// Records a new pending execution.
    pub async fn insert(
        &self,
        result: &ExecutionResult,
        spec: &ExecutionSpec,
        workspace: &Path,
    ) -> Result<(), StoreError> {
        let (id, status) = (result.execution_id.clone(), result.status.as_str());
        let (result_json, spec_json) = (serde_json::to_string(result)?, serde_json::to_string(spec)?);
        let workspace = workspace.to_string_lossy().into_owned();
        let now = Timestamp::now().unix_micros();
        self.call(move |c| {
            c.execute(
                "INSERT INTO executions (id, status, created_at, spec, workspace, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, status, now, spec_json, workspace, result_json],
            )?;
            Ok(())
        })
        .await
    }

    /// Stores a new state of an execution; a terminal one drops the spec.
    pub async fn update(&self, result: &ExecutionResult) -> Result<(), StoreError> {
        let (id, status) = (result.execution_id.clone(), result.status.as_str());
        let json = serde_json::to_string(result)?;
        let finished =
            result.status.is_terminal().then(|| result.finished_at.unwrap_or_else(Timestamp::now).unix_micros());
        self.call(move |c| {
            let sql = if finished.is_some() {
                "UPDATE executions SET status = ?2, result = ?3, finished_at = ?4, spec = NULL, workspace = NULL WHERE id = ?1"
            } else {
                "UPDATE executions SET status = ?2, result = ?3, finished_at = ?4 WHERE id = ?1"
            };
            c.execute(sql, params![id, status, json, finished])?;
            Ok(())
        })
        .await
    }

    /// The stored state of one execution.
    pub async fn get(&self, id: &str) -> Result<Option<ExecutionResult>, StoreError> {
        let id = id.to_owned();
        self.call(move |c| {
            let json: Option<String> =
                c.query_row("SELECT result FROM executions WHERE id = ?1", [id], |r| r.get(0)).optional()?;
            json.map(|j| serde_json::from_str(&j).map_err(StoreError::from)).transpose()
        })
        .await
    }

    /// Executions newest first, optionally of one status, older than the `before` sequence number. Returns the
    /// sequence number of the last row as the next cursor when the page is full.
    pub async fn list(
        &self,
        status: Option<ExecutionStatus>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<ExecutionResult>, Option<i64>), StoreError> {
        self.call(move |c| {
            let mut stmt = c.prepare(
                "SELECT seq, result FROM executions WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR seq < ?2) \
                 ORDER BY seq DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![status.map(|s| s.as_str()), before, limit as i64 + 1], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            let mut last = None;
            for row in rows {
                let (seq, json) = row?;
                if out.len() == limit {
                    return Ok((out, last));
                }
                out.push(serde_json::from_str(&json)?);
                last = Some(seq);
            }
            Ok((out, None))
        })
        .await
    }

    /// After a restart: executions that were running are failed (the run died with the server) and returned with
    /// their workspaces for clean-up; pending ones are returned, oldest first, to be queued again.
    pub async fn recover(&self, message: &str) -> Result<(Vec<PathBuf>, Vec<Queued>), StoreError> {
        let message = message.to_owned();
        self.call(move |c| {
            let mut interrupted = Vec::new();
            {
                let mut stmt = c.prepare("SELECT result, workspace FROM executions WHERE status = 'running'")?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
                for row in rows {
                    let (json, workspace) = row?;
                    let mut result: ExecutionResult = serde_json::from_str(&json)?;
                    let now = Timestamp::now();
                    result.status = ExecutionStatus::Failed;
                    result.exit_code = 1;
                    result.error = Some(message.clone());
                    result.finished_at = Some(now);
                    result.duration_ms = result.started_at.map(|s| now.millis_since(s)).unwrap_or(0);
                    interrupted.push((result, workspace));
                }
            }
            let mut workspaces = Vec::new();
            for (result, workspace) in interrupted {
                c.execute(
                    "UPDATE executions SET status = 'failed', result = ?2, finished_at = ?3, spec = NULL, \
                     workspace = NULL WHERE id = ?1",
                    params![result.execution_id, serde_json::to_string(&result)?, Timestamp::now().unix_micros()],
                )?;
                workspaces.extend(workspace.map(PathBuf::from));
            }
            let mut stmt =
                c.prepare("SELECT result, spec, workspace FROM executions WHERE status = 'pending' ORDER BY seq")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?))
            })?;
            let mut queued = Vec::new();
            for row in rows {
                let (result, spec, workspace) = row?;
                let (Some(spec), Some(workspace)) = (spec, workspace) else { continue };
                queued.push(Queued {
                    result: serde_json::from_str(&result)?,
                    spec: serde_json::from_str(&spec)?,
                    workspace: PathBuf::from(workspace),
                });
            }
            Ok((workspaces, queued))
        })
        .await
    }

    /// Deletes finished executions that ended before `cutoff`; returns how many.
    pub async fn sweep(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let cutoff = cutoff.unix_micros();
        self.call(move |c| {
            let n = c.execute(
                "DELETE FROM executions WHERE finished_at IS NOT NULL AND finished_at < ?1 \
                 AND status IN ('completed', 'failed', 'killed')",
                [cutoff],
            )?;
            Ok(n)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::Policy;

    fn spec() -> ExecutionSpec {
        Policy::default().spec_from_metadata(Default::default()).unwrap()
    }

    #[tokio::test]
    async fn records_survive_reopening_and_recover_as_the_contract_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let store = Store::open(&path).unwrap();
            for (id, status) in [
                ("exe_a", ExecutionStatus::Completed),
                ("exe_b", ExecutionStatus::Running),
                ("exe_c", ExecutionStatus::Pending),
            ] {
                let mut r = ExecutionResult::pending(id);
                store.insert(&r, &spec(), &dir.path().join(id)).await.unwrap();
                r.status = status;
                if status == ExecutionStatus::Running {
                    r.started_at = Some(Timestamp::now());
                }
                if status.is_terminal() {
                    r.finished_at = Some(Timestamp::now());
                }
                store.update(&r).await.unwrap();
            }
        }
        let store = Store::open(&path).unwrap();
        let (workspaces, queued) = store.recover("the server stopped").await.unwrap();
        assert_eq!(workspaces, vec![dir.path().join("exe_b")]);
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].result.execution_id, "exe_c");
        let b = store.get("exe_b").await.unwrap().unwrap();
        assert_eq!(
            (b.status, b.exit_code, b.error.as_deref()),
            (ExecutionStatus::Failed, 1, Some("the server stopped"))
        );
        assert_eq!(store.get("exe_a").await.unwrap().unwrap().status, ExecutionStatus::Completed);
        assert_eq!(store.get("exe_zzz").await.unwrap(), None);
    }

    #[tokio::test]
    async fn lists_newest_first_with_filters_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        for i in 0..5 {
            let mut r = ExecutionResult::pending(format!("exe_{i}"));
            store.insert(&r, &spec(), dir.path()).await.unwrap();
            if i % 2 == 0 {
                r.status = ExecutionStatus::Completed;
                r.finished_at = Some(Timestamp::now());
                store.update(&r).await.unwrap();
            }
        }
        let (page, next) = store.list(None, None, 2).await.unwrap();
        assert_eq!(page.iter().map(|r| r.execution_id.as_str()).collect::<Vec<_>>(), ["exe_4", "exe_3"]);
        let (page, next2) = store.list(None, next, 2).await.unwrap();
        assert_eq!(page.iter().map(|r| r.execution_id.as_str()).collect::<Vec<_>>(), ["exe_2", "exe_1"]);
        let (page, last) = store.list(None, next2, 2).await.unwrap();
        assert_eq!((page.len(), last), (1, None));
        let (done, _) = store.list(Some(ExecutionStatus::Completed), None, 10).await.unwrap();
        assert_eq!(done.len(), 3);
    }

    #[tokio::test]
    async fn sweep_removes_only_finished_records_past_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut old = ExecutionResult::pending("exe_old");
        store.insert(&old, &spec(), dir.path()).await.unwrap();
        old.status = ExecutionStatus::Completed;
        old.finished_at = Some(Timestamp::parse("2020-01-01T00:00:00Z").unwrap());
        store.update(&old).await.unwrap();
        let pending = ExecutionResult::pending("exe_pending");
        store.insert(&pending, &spec(), dir.path()).await.unwrap();
        assert_eq!(store.sweep(Timestamp::now()).await.unwrap(), 1);
        assert!(store.get("exe_old").await.unwrap().is_none());
        assert!(store.get("exe_pending").await.unwrap().is_some());
    }
}
