//! Sessions: `PythonSession` resources, each one Python interpreter that keeps its state between calls, run in a
//! locked-down Pod of its own that the API server attaches to (docs/kubernetes.md#sessions).
//!
//! - [`desired`]: the session's admission (its class and requirements are admitted as an execution's would be), and
//!   its ConfigMap (the runners, the fence, the requirements), NetworkPolicies (its own, and the install stage's
//!   for a Pod that installs) and Pod, built with the execution's own hardening, install container and policies
//!   ([`crate::desired`]) (pure);
//! - [`decide`]: what the observed session and Pods call for: a Pod to create, Pods to delete, the go-ahead to give
//!   or the runner's report to read (the gate, as an execution's), the status, when to look again (pure);
//! - [`reconcile`]: carries the decision out; [`controller`] drives it.
//!
//! The operator and the API server share the session: the operator owns its Pod and status, except
//! `status.lastActivityAt`, which the API server writes after each call and the operator only reads. The API server
//! restarts the interpreter by deleting the Pod; the operator then creates the next one and counts it in
//! `status.restarts`. Each Pod carries its number ([`pyexec_crds::session::RESTARTS_ANNOTATION`]), so a Pod created
//! just before the operator stopped is found and counted once, never twice.

pub mod controller;
pub mod decide;
pub mod desired;
pub mod reconcile;
