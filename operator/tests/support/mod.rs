//! The operator's test context on top of the fake Kubernetes API of `pyexec-testkit`.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use pyexec_crds::contract::OPERATOR;
use pyexec_operator::config::OperatorConfig;
use pyexec_operator::context::Context;
use pyexec_operator::logs::LogStore;
use pyexec_operator::metrics::Metrics;
pub use pyexec_testkit::kube::*;

/// A reconcile context against `client`.
pub fn context(client: Client, config: OperatorConfig, logs: LogStore) -> Arc<Context> {
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: OPERATOR.into(), instance: Some("test".into()) });
    Arc::new(Context::new(client, config, recorder, logs, None, Metrics::new()))
}

/// A line of the runner's log, as runners framed it before frames were numbered (still read: a Pod started by an
/// older operator runs its own copy of the runner).
pub fn frame(nonce: &str, kind: &str, data: &[u8]) -> String {
    pyexec_core::pod::protocol::encode_unnumbered_frame(nonce, kind, data)
}

/// A line of the runner's log, as the runner frames it: `seq` is its sequence number.
pub fn numbered(nonce: &str, seq: u64, kind: &str, data: &[u8]) -> String {
    pyexec_core::pod::protocol::encode_frame(nonce, seq, kind, data)
}
