//! The operator's test context on top of the fake Kubernetes API of `pyexec-testkit`.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use pyexec_operator::config::OperatorConfig;
use pyexec_operator::logs::LogStore;
use pyexec_operator::metrics::Metrics;
use pyexec_operator::reconcile::Context;
pub use pyexec_testkit::kube::*;

/// A reconcile context against `client`.
pub fn context(client: Client, config: OperatorConfig, logs: LogStore) -> Arc<Context> {
    Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter { controller: "pyexec-operator".into(), instance: Some("test".into()) },
        ),
        client,
        config,
        logs,
        archives: None,
        metrics: Metrics::new(),
        streaming: Mutex::default(),
    })
}
