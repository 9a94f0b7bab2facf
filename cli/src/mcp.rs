//! `python-executor mcp`: the MCP server on stdin/stdout for agent hosts (Claude Desktop, IDEs, agent
//! frameworks), running its tools on the server at `--server` / `PYEXEC_SERVER` over the REST API.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pyexec_client::{Archive, Client, Error, FileList, NewSession, Session};
use pyexec_core::{CodeFile, EvalRequest, ExecutionResult, ExecutionStatus, Metadata};
use pyexec_mcp::{Executor, ExecutorError, FileOwner, OutputBudget, PythonTools};
use rmcp::ServiceExt;
use tokio::io::AsyncWrite;

/// The tools' executor: the REST API.
struct OverHttp {
    client: Client,
}

fn refused(e: Error) -> ExecutorError {
    ExecutorError(e.to_string())
}

#[async_trait::async_trait]
impl Executor for OverHttp {
    async fn run(&self, request: EvalRequest) -> Result<ExecutionResult, ExecutorError> {
        self.client.eval(&request).await.map_err(refused)
    }

    async fn submit(&self, files: Vec<CodeFile>, metadata: Metadata) -> Result<String, ExecutorError> {
        let entries: Vec<(&str, &[u8])> = files.iter().map(|f| (f.name.as_str(), f.content.as_bytes())).collect();
        let archive = Archive::from_memory(&entries).map_err(refused)?;
        self.client.exec_async(archive, &metadata).await.map_err(refused)
    }

    async fn get(&self, id: &str) -> Result<Option<ExecutionResult>, ExecutorError> {
        match self.client.get(id).await {
            Ok(result) => Ok(Some(result)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(refused(e)),
        }
    }

    async fn kill(&self, id: &str) -> Result<Option<ExecutionStatus>, ExecutorError> {
        match self.client.kill(id).await {
            Ok(status) => Ok(Some(status)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(refused(e)),
        }
    }

    async fn create_session(&self, request: NewSession) -> Result<Session, ExecutorError> {
        self.client.create_session(&request).await.map_err(refused)
    }

    async fn session_run(
        &self,
        session_id: &str,
        request: EvalRequest,
    ) -> Result<Option<ExecutionResult>, ExecutorError> {
        found(self.client.session_eval(session_id, &request).await)
    }

    async fn close_session(&self, session_id: &str) -> Result<Option<Session>, ExecutorError> {
        found(self.client.delete_session(session_id).await)
    }

    async fn list_files(&self, owner: &FileOwner) -> Result<Option<FileList>, ExecutorError> {
        found(match owner {
            FileOwner::Execution(id) => self.client.execution_files(id).await,
            FileOwner::Session(id) => self.client.session_files(id).await,
        })
    }

    async fn read_file(&self, owner: &FileOwner, path: &str, max_bytes: u64) -> Result<Option<Vec<u8>>, ExecutorError> {
        let mut sink = Capped { bytes: Vec::new(), max: max_bytes };
        let read = match owner {
            FileOwner::Execution(id) => self.client.download_file_to(id, path, &mut sink).await,
            FileOwner::Session(id) => self.client.session_download_to(id, path, &mut sink).await,
        };
        match read {
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::FileTooLarge => Err(ExecutorError(format!(
                "{path} is larger than {max_bytes} bytes, more than get_file returns: work on it in the sandbox"
            ))),
            other => found(other.map(|_| sink.bytes)),
        }
    }
}

/// An answer, with "not found" as `None`.
fn found<T>(answer: Result<T, Error>) -> Result<Option<T>, ExecutorError> {
    match answer {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(refused(e)),
    }
}

/// A download into memory that fails once it goes over `max` bytes.
struct Capped {
    bytes: Vec<u8>,
    max: u64,
}

impl AsyncWrite for Capped {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if (self.bytes.len() + data.len()) as u64 > self.max {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::FileTooLarge, "over the size limit")));
        }
        self.bytes.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serves MCP on stdio until the host closes it, tool results within `budget`. Logs go to stderr (stdout is the
/// protocol).
pub async fn serve(client: Client, budget: OutputBudget) -> Result<(), String> {
    let tools = PythonTools::new(std::sync::Arc::new(OverHttp { client })).with_output_budget(budget);
    let service = tools.serve(rmcp::transport::stdio()).await.map_err(|e| format!("starting the MCP server: {e}"))?;
    service.waiting().await.map_err(|e| format!("the MCP session failed: {e}"))?;
    Ok(())
}
