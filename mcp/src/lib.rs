//! python-executor for AI agents: an MCP server ([`server`]) with `run_python`, `submit_python`, `get_execution`,
//! `kill_execution`, sessions (`create_session`, `session_run_python`, `close_session`) and files (`list_files`,
//! `get_file`), and the same tools as OpenAI and Anthropic tool definitions ([`tools`]).
//!
//! The server runs over any [`Executor`]: the API server serves it at `/mcp` (streamable HTTP) in-process, the
//! CLI serves it on stdio (`python-executor mcp`) over the REST API. Either way, a tool result carries a run's
//! output once and within an [`OutputBudget`] (its start and its end, and a note saying what was left out).

pub mod budget;
pub mod server;
pub mod tools;

pub use budget::{DEFAULT_STDERR_BYTES, DEFAULT_STDOUT_BYTES, OutputBudget};
pub use server::{Executor, ExecutorError, GET_FILE_MAX_BYTES, PythonTools, ToolAnswer, run_python};
pub use tools::{
    CreateSession, FileOwner, GetFile, ListFiles, RunPython, SessionRef, SessionRunPython, all_tool_definitions,
    tool_definitions,
};
