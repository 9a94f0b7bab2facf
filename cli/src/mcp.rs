//! `python-executor mcp`: the MCP server on stdin/stdout for agent hosts (Claude Desktop, IDEs, agent
//! frameworks), running its tools on the server at `--server` / `PYEXEC_SERVER` over the REST API.

use pyexec_client::{Archive, Client, Error};
use pyexec_core::{CodeFile, EvalRequest, ExecutionResult, ExecutionStatus, Metadata};
use pyexec_mcp::{Executor, ExecutorError, PythonTools};
use rmcp::ServiceExt;

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
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(refused(e)),
        }
    }

    async fn kill(&self, id: &str) -> Result<Option<ExecutionStatus>, ExecutorError> {
        match self.client.kill(id).await {
            Ok(status) => Ok(Some(status)),
            Err(Error::NotFound) => Ok(None),
            Err(e) => Err(refused(e)),
        }
    }
}

/// Serves MCP on stdio until the host closes it. Logs go to stderr (stdout is the protocol).
pub async fn serve(client: Client) -> Result<(), String> {
    let tools = PythonTools::new(std::sync::Arc::new(OverHttp { client }));
    let service = tools.serve(rmcp::transport::stdio()).await.map_err(|e| format!("starting the MCP server: {e}"))?;
    service.waiting().await.map_err(|e| format!("the MCP session failed: {e}"))?;
    Ok(())
}
