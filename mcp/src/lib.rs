//! python-executor for AI agents: an MCP server with `run_python`, `submit_python`, `get_execution` and
//! `kill_execution` ([`server`]), and the same `run_python` as OpenAI and Anthropic tool definitions ([`tools`]).
//!
//! The server runs over any [`Executor`]: the API server serves it at `/mcp` (streamable HTTP) in-process, the
//! CLI serves it on stdio (`python-executor mcp`) over the REST API.

pub mod server;
pub mod tools;

pub use server::{Executor, ExecutorError, PythonTools, ToolAnswer, run_python};
pub use tools::{RunPython, tool_definitions};
