//! The python-executor operator: runs each `PythonExecution` in a locked-down Pod and writes what happened back to
//! its status.
//!
//! - [`cli`]: the command line;
//! - [`config`]: what the operator allows (images, runtime classes, package index, egress, limits);
//! - [`admission`]: whether it runs a resource, and with what (pure);
//! - [`desired`]: the ConfigMap, NetworkPolicy and Pod of a resource (pure);
//! - [`observe`]: what the observed Pod means for the resource's status (pure);
//! - [`controller`]: the watches that drive [`reconcile`], with the [`context`] every reconciliation shares;
//! - [`reconcile`]: the level-triggered loop that decides the next step: create, advance, finish, kill, expire;
//! - [`children`]: creating and deleting the objects an execution owns;
//! - [`collect`]: a finished Pod's logs and states, read into a result and the reason it ended;
//! - [`follow`]: the runner's frames read while the program runs, so that a rotated log loses nothing;
//! - [`status`]: conditions and the status patch;
//! - [`retry`]: the growing per-object delay after failed reconciliations;
//! - [`attach`]: streaming archives and the go-ahead into Pods through the attach API;
//! - [`logs`]: the store of full outputs, and [`server`] its HTTP endpoint with metrics and health;
//! - [`metrics`]: Prometheus metrics;
//! - [`pool`]: warm pools (`PythonExecutionPool`): their idle Pods, and the claim of one by an execution that fits;
//! - [`session`]: sessions (`PythonSession`): one interpreter that keeps its state between calls, in a Pod of its own.

pub mod admission;
pub mod attach;
pub mod children;
pub mod cli;
pub mod collect;
pub mod config;
pub mod context;
pub mod controller;
pub mod desired;
pub mod follow;
pub mod logs;
pub mod metrics;
pub mod observe;
pub mod pool;
pub mod reconcile;
pub mod retry;
pub mod server;
pub mod session;
pub mod status;
