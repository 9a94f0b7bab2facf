//! The python-executor operator: runs each `PythonExecution` in a locked-down Pod and writes what happened back to
//! its status.
//!
//! - [`cli`]: the command line;
//! - [`config`]: what the operator allows (images, runtime classes, package index, egress, limits);
//! - [`admission`]: whether it runs a resource, and with what (pure);
//! - [`desired`]: the ConfigMap, NetworkPolicy and Pod of a resource (pure);
//! - [`observe`]: what the observed Pod means for the resource's status (pure);
//! - [`controller`]: the watches that drive [`reconcile`];
//! - [`reconcile`]: the level-triggered loop that creates, advances and finishes executions;
//! - [`attach`]: streaming archives and the go-ahead into Pods through the attach API;
//! - [`logs`]: the store of full outputs, and [`server`] its HTTP endpoint with metrics and health;
//! - [`metrics`]: Prometheus metrics.

pub mod admission;
pub mod attach;
pub mod cli;
pub mod config;
pub mod controller;
pub mod desired;
pub mod logs;
pub mod metrics;
pub mod observe;
pub mod reconcile;
pub mod server;
