//! The python-executor execution model, shared by every backend.
//!
//! This crate says what an execution *is* and what its outcome *means*; it runs nothing. Backends (the embedded
//! sandbox, Kubernetes) turn an [`ExecutionSpec`] plus a workspace into a [`RunOutcome`], and [`finalize`] turns
//! that into the [`ExecutionResult`] clients see, so both backends answer identically.
//!
//! - [`model`]: wire types, byte-compatible with the original service;
//! - [`spec`]: validation of requests into an [`ExecutionSpec`], with the original's messages (docs/compatibility.md,
//!   C32, C33, C54);
//! - [`workspace`]: safe streaming of uploaded archives and `/eval` files into a workspace directory;
//! - [`requirements`]: what an execution installs (request, project file, detected imports);
//! - [`egress`]: the ranges network egress never reaches, for every backend;
//! - [`callback`]: completion webhooks' URLs and the addresses they may reach;
//! - [`text`]: cutting outputs and messages at character boundaries;
//! - [`eval`]: the eval runner (REPL mode) and its result protocol;
//! - [`traceback`]: `error_type` / `error_line` / `error_message` from a traceback;
//! - [`imports`]: the packages a program needs (parsed imports, minus stdlib and local modules);
//! - [`outcome`]: status, exit-code and error semantics of a finished run;
//! - [`pod`]: the runner of Kubernetes Pods, its protocol, and the reading of what it reports, into the same outcome;
//! - [`session`]: sessions' wire types and the session runner that keeps an interpreter's state between calls;
//! - [`logging`]: the log setup the API server and the operator share.

pub mod callback;
pub mod egress;
pub mod eval;
pub mod files_out;
pub mod imports;
pub mod listing;
pub mod logging;
pub mod model;
pub mod outcome;
pub mod paths;
pub mod placement;
pub mod pod;
pub mod requirements;
pub mod secret;
pub mod session;
pub mod spec;
#[cfg(test)]
mod test_tar;
pub mod text;
pub mod time;
pub mod traceback;
pub mod workspace;

pub use model::{
    AsyncResponse, CodeFile, ErrorResponse, EvalRequest, ExecutionConfig, ExecutionPage, ExecutionResult,
    ExecutionStatus, KillResponse, Metadata, SkippedPackage,
};
pub use outcome::{Interruption, RunOutcome, Termination, finalize};
pub use spec::{ExecutionSpec, Limits, Policy, PythonVersion, Rejection, Requirements, ValidationError};
pub use time::Timestamp;
