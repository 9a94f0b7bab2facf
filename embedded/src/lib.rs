//! The embedded backend: runs python-executor executions on this machine, each in a fresh sandbox, behind the
//! API server's [`pyexec_backend::Backend`] trait.
//!
//! [`Interpreters`] finds the CPython versions to offer; [`Environments`] builds and caches the Python environments
//! that requirements need; [`Runner`] checks what a request needs ([`Runner::check`]), runs it (after its
//! `pre_commands`) in a [`pyexec_sandbox::Sandbox`] and builds its [`pyexec_core::ExecutionResult`].
//! [`EmbeddedBackend`] puts a queue, worker slots, live followers and a SQLite store in front of the runner; it is
//! started from plain [`EmbeddedSettings`], so the API server that serves it needs nothing of the sandbox.

pub mod backend;
pub mod environments;
pub mod interpreters;
mod program;
pub mod runner;
pub mod session;
pub mod warm;

pub use backend::{EmbeddedBackend, EmbeddedSettings, StartError, StoreError};
pub use environments::{EnvInfo, EnvLease, Environments, InstallError, InstallerConfig, InstallerReport};
pub use interpreters::{Discovery, Interpreter, Interpreters};
pub use runner::{Ran, Runner, RunnerError, RunnerSettings, StartedSession};
pub use session::{CallResult, SessionError, SessionSettings, Sessions};
pub use warm::{Preimport, WarmPool, WarmSettings, WarmStats};

// Every workspace the API accepts must also be copied into `/work` by the sandbox.
const _: () = assert!(pyexec_core::paths::MAX_PATH_DEPTH as u64 <= pyexec_sandbox::MAX_WORKSPACE_DEPTH as u64);
