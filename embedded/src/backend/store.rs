//! Durable records of executions, in SQLite in the data directory.
//!
//! Every execution is one row: its current `ExecutionResult` (as JSON, exactly what clients see), the summary the
//! list shows (`pyexec_core::listing`, so that listing never loads whole results), its status and timestamps for
//! queries, and, while it is not finished, its spec, workspace and spooled stdin file so that it can be run after
//! a restart. Results therefore survive restarts; the spec (which may hold environment values and a small stdin)
//! is dropped as soon as the execution ends. A large stdin is never in the database: only its file's path.
//!
//! The database reclaims the space of expired rows: it is in incremental auto-vacuum mode (set when it is created;
//! a database from an earlier version is converted once, with a `VACUUM`, when it is opened), and every sweep that
//! deletes rows returns the freed pages to the file system.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pyexec_core::listing::{self, PageBudget};
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
    pub stdin: Option<PathBuf>,
}

/// The store. Calls block (SQLite): use them from blocking threads ([`Store::call`]).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

// The summary comes before the result so that reading it does not walk the result's overflow pages.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS executions (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER,
    spec        TEXT,
    workspace   TEXT,
    stdin_file  TEXT,
    summary     TEXT,
    result      TEXT NOT NULL,
    tenant      TEXT,
    idempotency_key TEXT,
    request_fingerprint TEXT
);
CREATE INDEX IF NOT EXISTS executions_by_status ON executions (status, seq);
CREATE INDEX IF NOT EXISTS executions_by_finish ON executions (finished_at);
";

/// `PRAGMA auto_vacuum` value of incremental mode.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// Most bytes the write-ahead log keeps on disk after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 16 << 20;

/// Which executions a listing shows.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Only this status.
    pub status: Option<ExecutionStatus>,
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only the calls of this session.
    pub session_id: Option<String>,
}

impl Store {
    /// Opens (creating if needed) `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Must be set before the first table exists; an older database without it is converted below.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
             PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
        ))?;
        let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
        if mode != AUTO_VACUUM_INCREMENTAL {
            tracing::info!(path = %path.display(), "converting the execution store to incremental auto-vacuum (once)");
            conn.execute_batch("VACUUM;")?;
        }
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
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

    /// Records a new pending execution, with the file of its spooled stdin if it has one.
    pub async fn insert(
        &self,
        result: &ExecutionResult,
        spec: &ExecutionSpec,
        workspace: &Path,
        stdin: Option<&Path>,
    ) -> Result<(), StoreError> {
        let (id, status) = (result.execution_id.clone(), result.status.as_str());
        let (result_json, spec_json) = (serde_json::to_string(result)?, serde_json::to_string(spec)?);
        let summary = summary_json(result)?;
        let workspace = workspace.to_string_lossy().into_owned();
        let stdin = stdin.map(|p| p.to_string_lossy().into_owned());
        let now = Timestamp::now().unix_micros();
        let tenant = spec.tenant.clone();
        let (key, fingerprint) = match &spec.idempotency {
            Some(i) => (Some(i.key_hash.clone()), Some(i.fingerprint.clone())),
            None => (None, None),
        };
        self.call(move |c| {
            c.execute(
                "INSERT INTO executions (id, status, created_at, spec, workspace, stdin_file, summary, result, tenant, \
                 idempotency_key, request_fingerprint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![id, status, now, spec_json, workspace, stdin, summary, result_json, tenant, key, fingerprint],
            )?;
            Ok(())
        })
        .await
    }

    /// Stores a new state of an execution; a terminal one drops the spec.
    pub async fn update(&self, result: &ExecutionResult) -> Result<(), StoreError> {
        let (id, status) = (result.execution_id.clone(), result.status.as_str());
        let json = serde_json::to_string(result)?;
        let summary = summary_json(result)?;
        let finished =
            result.status.is_terminal().then(|| result.finished_at.unwrap_or_else(Timestamp::now).unix_micros());
        self.call(move |c| {
            let sql = if finished.is_some() {
                "UPDATE executions SET status = ?2, result = ?3, summary = ?5, finished_at = ?4, spec = NULL, \
                 workspace = NULL, stdin_file = NULL WHERE id = ?1"
            } else {
                "UPDATE executions SET status = ?2, result = ?3, summary = ?5, finished_at = ?4 WHERE id = ?1"
            };
            c.execute(sql, params![id, status, json, finished, summary])?;
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

    /// Summaries of executions newest first, optionally of one status, older than the `before` sequence number,
    /// at most `limit` and within the list's page budget. Returns the sequence number of the last row as the next
    /// cursor when more rows follow. Only the summary column is read: whole results never enter memory here.
    pub async fn list(
        &self,
        filter: ListFilter,
        before: Option<i64>,
        limit: usize,
    ) -> Result<(Vec<ExecutionResult>, Option<i64>), StoreError> {
        self.call(move |c| {
            // A session's calls are few among all executions: their id is read from the summary rather than kept
            // in a column of its own.
            let mut stmt = c.prepare(
                "SELECT seq, id, status, summary FROM executions WHERE (?1 IS NULL OR status = ?1) \
                 AND (?2 IS NULL OR seq < ?2) AND (?4 IS NULL OR tenant = ?4) \
                 AND (?5 IS NULL OR json_extract(summary, '$.session_id') = ?5) ORDER BY seq DESC LIMIT ?3",
            )?;
            let ListFilter { status, tenant, session_id } = filter;
            let mut rows =
                stmt.query(params![status.map(|s| s.as_str()), before, limit as i64 + 1, tenant, session_id])?;
            let mut out = Vec::new();
            let mut last = None;
            let mut budget = PageBudget::default();
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                let summary = match row.get::<_, Option<String>>(3)? {
                    Some(json) => json,
                    // Only a row written by an older version without migration could lack it.
                    None => bare_summary(row.get(1)?, &row.get::<_, String>(2)?)?,
                };
                if out.len() == limit || !budget.admit(summary.len()) {
                    return Ok((out, last));
                }
                out.push(serde_json::from_str(&summary)?);
                last = Some(seq);
            }
            Ok((out, None))
        })
        .await
    }

    /// The execution created with the idempotency key hash `key`, and the fingerprint of its request.
    pub async fn find_idempotent(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
        let key = key.to_owned();
        self.call(move |c| {
            let found = c
                .query_row("SELECT id, request_fingerprint FROM executions WHERE idempotency_key = ?1", [key], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?.unwrap_or_default()))
                })
                .optional()?;
            Ok(found)
        })
        .await
    }

    /// After a restart: executions that were running are failed (the run died with the server) and their
    /// workspaces and stdin files returned for clean-up; pending ones are returned, oldest first, to be queued
    /// again.
    pub async fn recover(&self) -> Result<(Vec<PathBuf>, Vec<Queued>), StoreError> {
        self.call(move |c| {
            let mut interrupted = Vec::new();
            {
                let mut stmt =
                    c.prepare("SELECT result, workspace, stdin_file FROM executions WHERE status = 'running'")?;
                let rows = stmt.query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?))
                })?;
                for row in rows {
                    let (json, workspace, stdin) = row?;
                    let result: ExecutionResult = serde_json::from_str(&json)?;
                    interrupted.push((pyexec_core::outcome::interrupted_by_stop(result), workspace, stdin));
                }
            }
            let mut leftovers = Vec::new();
            for (result, workspace, stdin) in interrupted {
                c.execute(
                    "UPDATE executions SET status = 'failed', result = ?2, summary = ?4, finished_at = ?3, \
                     spec = NULL, workspace = NULL, stdin_file = NULL WHERE id = ?1",
                    params![
                        result.execution_id,
                        serde_json::to_string(&result)?,
                        Timestamp::now().unix_micros(),
                        summary_json(&result)?
                    ],
                )?;
                leftovers.extend(workspace.map(PathBuf::from));
                leftovers.extend(stdin.map(PathBuf::from));
            }
            let mut stmt = c.prepare(
                "SELECT result, spec, workspace, stdin_file FROM executions WHERE status = 'pending' ORDER BY seq",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?;
            let mut queued = Vec::new();
            for row in rows {
                let (result, spec, workspace, stdin) = row?;
                let (Some(spec), Some(workspace)) = (spec, workspace) else { continue };
                queued.push(Queued {
                    result: serde_json::from_str(&result)?,
                    spec: serde_json::from_str(&spec)?,
                    workspace: PathBuf::from(workspace),
                    stdin: stdin.map(PathBuf::from),
                });
            }
            Ok((leftovers, queued))
        })
        .await
    }

    /// Deletes finished executions that ended before `cutoff` and gives their space back to the file system;
    /// returns how many.
    pub async fn sweep(&self, cutoff: Timestamp) -> Result<usize, StoreError> {
        let cutoff = cutoff.unix_micros();
        self.call(move |c| {
            let n = c.execute(
                "DELETE FROM executions WHERE finished_at IS NOT NULL AND finished_at < ?1 \
                 AND status IN ('completed', 'failed', 'killed')",
                [cutoff],
            )?;
            if n > 0 {
                // The freed pages leave the file at the checkpoint, which also trims the write-ahead log.
                {
                    // Frees one page per step: it must be stepped to the end.
                    let mut stmt = c.prepare("PRAGMA incremental_vacuum")?;
                    let mut pages = stmt.query([])?;
                    while pages.next()?.is_some() {}
                }
                c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            }
            Ok(n)
        })
        .await
    }
}

/// The list's summary of a result, as stored.
fn summary_json(result: &ExecutionResult) -> Result<String, StoreError> {
    Ok(serde_json::to_string(&listing::summarize(result))?)
}

/// A summary from the columns alone.
fn bare_summary(id: String, status: &str) -> Result<String, StoreError> {
    let mut result = ExecutionResult::pending(id);
    result.status = status.parse().map_err(StoreError)?;
    summary_json(&result)
}

/// Brings a database of an earlier version to this schema: the stdin and summary columns, and the summaries of
/// the rows it already holds (read one at a time).
fn migrate(c: &Connection) -> Result<(), StoreError> {
    let columns: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('executions')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for column in ["stdin_file", "summary", "tenant", "idempotency_key", "request_fingerprint"] {
        if !columns.iter().any(|c| c == column) {
            c.execute_batch(&format!("ALTER TABLE executions ADD COLUMN {column} TEXT;"))?;
        }
    }
    // Here, not in the schema: a database of an earlier version gets the column just above.
    c.execute_batch(
        "CREATE INDEX IF NOT EXISTS executions_by_tenant ON executions (tenant, seq); \
         CREATE UNIQUE INDEX IF NOT EXISTS executions_by_idempotency_key ON executions (idempotency_key) \
         WHERE idempotency_key IS NOT NULL;",
    )?;
    let missing: Vec<i64> = c
        .prepare("SELECT seq FROM executions WHERE summary IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for seq in missing {
        let json: String = c.query_row("SELECT result FROM executions WHERE seq = ?1", [seq], |r| r.get(0))?;
        let summary = summary_json(&serde_json::from_str(&json)?)?;
        c.execute("UPDATE executions SET summary = ?2 WHERE seq = ?1", params![seq, summary])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::Policy;

    fn spec() -> ExecutionSpec {
        Policy::default().spec_from_metadata(Default::default()).unwrap()
    }

    #[tokio::test]
    async fn records_survive_reopening_and_recover_as_documented() {
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
                let stdin = (id == "exe_c").then(|| dir.path().join("exe_c.stdin"));
                store.insert(&r, &spec(), &dir.path().join(id), stdin.as_deref()).await.unwrap();
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
        let (workspaces, queued) = store.recover().await.unwrap();
        assert_eq!(workspaces, vec![dir.path().join("exe_b")]);
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].result.execution_id, "exe_c");
        assert_eq!(queued[0].stdin, Some(dir.path().join("exe_c.stdin")), "a pending execution keeps its stdin file");
        let b = store.get("exe_b").await.unwrap().unwrap();
        assert_eq!(
            (b.status, b.exit_code, b.error.as_deref()),
            (ExecutionStatus::Failed, 1, Some(pyexec_core::outcome::INTERRUPTED_BY_STOP))
        );
        assert_eq!(store.get("exe_a").await.unwrap().unwrap().status, ExecutionStatus::Completed);
        assert_eq!(store.get("exe_zzz").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_pending_execution_keeps_its_tenant_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let store = Store::open(&path).unwrap();
            let mut record = ExecutionResult::pending("exe_t");
            record.tenant = Some("alice".into());
            let alices = ExecutionSpec { tenant: Some("alice".into()), ..spec() };
            store.insert(&record, &alices, &dir.path().join("exe_t"), None).await.unwrap();
            store
                .insert(&ExecutionResult::pending("exe_anon"), &spec(), &dir.path().join("exe_anon"), None)
                .await
                .unwrap();
        }
        let (_, queued) = Store::open(&path).unwrap().recover().await.unwrap();
        let tenants: Vec<(&str, Option<&str>, Option<&str>)> = queued
            .iter()
            .map(|q| (q.result.execution_id.as_str(), q.spec.tenant.as_deref(), q.result.tenant.as_deref()))
            .collect();
        assert_eq!(tenants, [("exe_t", Some("alice"), Some("alice")), ("exe_anon", None, None)]);
    }

    #[tokio::test]
    async fn lists_newest_first_with_filters_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        for i in 0..5 {
            let mut r = ExecutionResult::pending(format!("exe_{i}"));
            store.insert(&r, &spec(), dir.path(), None).await.unwrap();
            if i % 2 == 0 {
                r.status = ExecutionStatus::Completed;
                r.finished_at = Some(Timestamp::now());
                store.update(&r).await.unwrap();
            }
        }
        let (page, next) = store.list(ListFilter::default(), None, 2).await.unwrap();
        assert_eq!(page.iter().map(|r| r.execution_id.as_str()).collect::<Vec<_>>(), ["exe_4", "exe_3"]);
        let (page, next2) = store.list(ListFilter::default(), next, 2).await.unwrap();
        assert_eq!(page.iter().map(|r| r.execution_id.as_str()).collect::<Vec<_>>(), ["exe_2", "exe_1"]);
        let (page, last) = store.list(ListFilter::default(), next2, 2).await.unwrap();
        assert_eq!((page.len(), last), (1, None));
        let (done, _) = store
            .list(ListFilter { status: Some(ExecutionStatus::Completed), ..Default::default() }, None, 10)
            .await
            .unwrap();
        assert_eq!(done.len(), 3);
    }

    #[tokio::test]
    async fn an_idempotency_key_finds_its_execution_and_names_one_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let record = |fp: &str| pyexec_core::spec::IdempotencyRecord { key_hash: "k1".into(), fingerprint: fp.into() };
        let first = ExecutionSpec { idempotency: Some(record("fp-1")), ..spec() };
        store.insert(&ExecutionResult::pending("exe_1"), &first, dir.path(), None).await.unwrap();
        assert_eq!(store.find_idempotent("k1").await.unwrap(), Some(("exe_1".into(), "fp-1".into())));
        assert_eq!(store.find_idempotent("k2").await.unwrap(), None);
        // A second execution under the same key is refused by the store itself (a race lost elsewhere).
        let again = ExecutionSpec { idempotency: Some(record("fp-2")), ..spec() };
        assert!(store.insert(&ExecutionResult::pending("exe_2"), &again, dir.path(), None).await.is_err());
    }

    #[tokio::test]
    async fn a_tenants_list_holds_only_its_executions() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        for (id, tenant) in [("exe_a1", "alice"), ("exe_b1", "bob"), ("exe_a2", "alice")] {
            let owned = ExecutionSpec { tenant: Some(tenant.into()), ..spec() };
            store.insert(&ExecutionResult::pending(id), &owned, dir.path(), None).await.unwrap();
        }
        let ids = |page: Vec<ExecutionResult>| page.into_iter().map(|r| r.execution_id).collect::<Vec<_>>();
        let of = |tenant: &str| ListFilter { tenant: Some(tenant.into()), ..Default::default() };
        assert_eq!(ids(store.list(of("alice"), None, 10).await.unwrap().0), ["exe_a2", "exe_a1"]);
        assert_eq!(ids(store.list(of("bob"), None, 10).await.unwrap().0), ["exe_b1"]);
        assert_eq!(store.list(ListFilter::default(), None, 10).await.unwrap().0.len(), 3, "every tenant's");
    }

    #[tokio::test]
    async fn a_sessions_list_holds_only_its_calls() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        for (id, session) in
            [("exe_1", Some("ses_a")), ("exe_2", None), ("exe_3", Some("ses_b")), ("exe_4", Some("ses_a"))]
        {
            let mut result = ExecutionResult::pending(id);
            result.session_id = session.map(str::to_owned);
            store.insert(&result, &spec(), dir.path(), None).await.unwrap();
        }
        let ids = |page: Vec<ExecutionResult>| page.into_iter().map(|r| r.execution_id).collect::<Vec<_>>();
        let of = |session: &str| ListFilter { session_id: Some(session.into()), ..Default::default() };
        assert_eq!(ids(store.list(of("ses_a"), None, 10).await.unwrap().0), ["exe_4", "exe_1"]);
        assert_eq!(ids(store.list(of("ses_b"), None, 10).await.unwrap().0), ["exe_3"]);
        assert!(store.list(of("ses_' OR 1=1 --"), None, 10).await.unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn sweep_removes_only_finished_records_past_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let mut old = ExecutionResult::pending("exe_old");
        store.insert(&old, &spec(), dir.path(), None).await.unwrap();
        old.status = ExecutionStatus::Completed;
        old.finished_at = Some(Timestamp::parse("2020-01-01T00:00:00Z").unwrap());
        store.update(&old).await.unwrap();
        let pending = ExecutionResult::pending("exe_pending");
        store.insert(&pending, &spec(), dir.path(), None).await.unwrap();
        assert_eq!(store.sweep(Timestamp::now()).await.unwrap(), 1);
        assert!(store.get("exe_old").await.unwrap().is_none());
        assert!(store.get("exe_pending").await.unwrap().is_some());
    }

    fn large(id: &str, finished: &str) -> ExecutionResult {
        let mut r = ExecutionResult::pending(id);
        r.status = ExecutionStatus::Completed;
        r.stdout = format!("{id}:").repeat(200_000);
        r.finished_at = Some(Timestamp::parse(finished).unwrap());
        r
    }

    fn file_size(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    #[tokio::test]
    async fn the_file_shrinks_when_large_records_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        for i in 0..20 {
            let r = large(&format!("exe_{i}"), "2020-01-01T00:00:00Z");
            store.insert(&ExecutionResult::pending(&r.execution_id), &spec(), dir.path(), None).await.unwrap();
            store.update(&r).await.unwrap();
        }
        store.call(|c| Ok(c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?)).await.unwrap();
        let full = file_size(&path);
        assert!(full > 20 << 20, "20 results of over 1 MB take {full} bytes");
        let kept = large("exe_kept", "2100-01-01T00:00:00Z");
        store.insert(&ExecutionResult::pending("exe_kept"), &spec(), dir.path(), None).await.unwrap();
        store.update(&kept).await.unwrap();

        assert_eq!(store.sweep(Timestamp::now()).await.unwrap(), 20);
        let after = file_size(&path) + file_size(&path.with_extension("db-wal"));
        assert!(after < 8 << 20, "the database and its log hold {after} bytes after 20 of 21 records expired");
        assert_eq!(store.get("exe_kept").await.unwrap().unwrap(), kept, "what is kept is intact");
    }

    #[tokio::test]
    async fn an_older_database_is_converted_once_and_keeps_its_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut old = ExecutionResult::pending("exe_old");
        old.status = ExecutionStatus::Completed;
        old.stdout = "x".repeat(100_000);
        {
            // The schema and settings of the previous version.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode = WAL; CREATE TABLE executions (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
                 id TEXT NOT NULL UNIQUE, status TEXT NOT NULL, created_at INTEGER NOT NULL, finished_at INTEGER, \
                 spec TEXT, workspace TEXT, result TEXT NOT NULL);",
            )
            .unwrap();
            c.execute(
                "INSERT INTO executions (id, status, created_at, finished_at, result) \
                 VALUES ('exe_old', 'completed', 1, 1, ?1)",
                [serde_json::to_string(&old).unwrap()],
            )
            .unwrap();
            assert_eq!(c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
        }
        let store = Store::open(&path).unwrap();
        let mode = store.call(|c| Ok(c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0))?)).await.unwrap();
        assert_eq!(mode, AUTO_VACUUM_INCREMENTAL);
        assert_eq!(store.get("exe_old").await.unwrap().unwrap(), old);
        let (page, _) = store.list(ListFilter::default(), None, 10).await.unwrap();
        assert_eq!(page, vec![listing::summarize(&old)], "rows of the old version are listed as summaries");
        assert!(page[0].stdout_truncated && page[0].stdout.len() == listing::OUTPUT_CAP_BYTES);
    }

    #[tokio::test]
    async fn lists_summaries_within_the_page_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let n = 600;
        for i in 0..n {
            // Control characters: each byte of the capped output becomes six in JSON.
            let mut r = ExecutionResult::pending(format!("exe_{i}"));
            store.insert(&r, &spec(), dir.path(), None).await.unwrap();
            r.status = ExecutionStatus::Completed;
            r.finished_at = Some(Timestamp::now());
            r.stdout = "\u{1}".repeat(2 * listing::OUTPUT_CAP_BYTES);
            r.stderr = "\u{2}".repeat(2 * listing::OUTPUT_CAP_BYTES);
            store.update(&r).await.unwrap();
        }
        let (mut seen, mut cursor, mut pages) = (0, None, 0);
        loop {
            let (page, next) = store.list(ListFilter::default(), cursor, 500).await.unwrap();
            let bytes = serde_json::to_vec(&pyexec_core::ExecutionPage {
                executions: page.clone(),
                next_cursor: next.map(|n| n.to_string()),
            })
            .unwrap();
            assert!(bytes.len() <= listing::PAGE_BUDGET_BYTES, "a page of {} bytes", bytes.len());
            assert!(page.iter().all(|r| r.stdout.len() == listing::OUTPUT_CAP_BYTES && r.stdout_truncated));
            (seen, pages) = (seen + page.len(), pages + 1);
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen, n, "every record is reachable through the cursors");
        assert!(pages > 2, "pages end early to stay in budget ({pages} pages)");
    }
}
