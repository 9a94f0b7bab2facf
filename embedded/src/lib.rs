//! The embedded backend's executor: runs python-executor executions on this machine, each in a fresh sandbox.
//!
//! [`Interpreters`] finds the CPython versions to offer; [`Runner`] checks what a request needs
//! ([`Runner::check`]), runs it in a [`pyexec_sandbox::Sandbox`] and builds its [`pyexec_core::ExecutionResult`].

pub mod interpreters;
pub mod runner;

pub use interpreters::{Discovery, Interpreter, Interpreters};
pub use runner::{Runner, RunnerError, RunnerSettings};
