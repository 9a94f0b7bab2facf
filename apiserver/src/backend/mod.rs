//! The backends the handlers call.
//!
//! The [`Backend`] trait and the types it speaks (sources, spooled stdin, events, the list's query, health, errors)
//! are `pyexec_backend`'s, re-exported here so that handlers and the Kubernetes backend name them in one place.
//! The embedded backend lives with its executor in `pyexec_embedded` (queue, workers, live followers, store); the
//! Kubernetes backend, which only translates requests into `PythonExecution` resources, lives here.

pub mod kubernetes;

pub use pyexec_backend::*;
