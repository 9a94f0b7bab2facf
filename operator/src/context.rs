//! What every reconciliation shares ([`Context`]), and why one can fail ([`Error`]). As in kube-rs controllers, the
//! context holds the client, the configuration and the few pieces of memory the operator keeps between
//! reconciliations (Pods whose archive is being streamed, per-object retry state); none of it is needed to resume
//! after a restart, since every decision is made from observed objects.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use kube::Client;
use kube::runtime::events::Recorder;

use crate::attach::ArchiveFetcher;
use crate::config::OperatorConfig;
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::retry::Retries;

/// Why a reconciliation failed (it is retried after a growing delay: [`crate::retry`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the Kubernetes API failed.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The finalizer helper failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// An object the execution would own (same name) exists and is not controlled by it: the operator leaves it
    /// alone and fails the execution.
    #[error("a {kind} named {name:?} already exists and does not belong to this execution")]
    NameConflict {
        /// `Pod`, `ConfigMap` or `NetworkPolicy`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The log store failed.
    #[error("log store: {0}")]
    Logs(#[from] std::io::Error),
    /// A ResourceQuota has no room for the Pod now: the execution stays `Pending` and creating it is retried.
    #[error("the Pod waits for room in the namespace's quota: {0}")]
    QuotaExceeded(String),
    /// Reading a container's log failed: the result is read again later, never made up from a partial log.
    #[error("reading the {container} container's log: {source}")]
    Log {
        /// The container.
        container: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

impl Error {
    /// A short name of the kind of error, for the failure metric's label.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::Finalizer(_) => "finalizer",
            Error::NameConflict { .. } => "name_conflict",
            Error::Logs(_) => "log_store",
            Error::QuotaExceeded(_) => "quota",
            Error::Log { .. } => "api",
        }
    }
}

/// What every reconciliation shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// The configuration.
    pub config: OperatorConfig,
    /// Publishes Events on resources.
    pub recorder: Recorder,
    /// Full outputs.
    pub logs: LogStore,
    /// Where archives come from.
    pub archives: Option<ArchiveFetcher>,
    /// The operator's Prometheus metrics (reconciliations, failures by kind, finished executions).
    pub metrics: Metrics,
    /// Failed reconciliations per object, for the delay before the next try.
    pub retries: Retries,
    /// Pods whose archive is being streamed now (by uid), so that a second reconcile does not stream it again.
    streaming: Mutex<HashSet<String>>,
}

impl Context {
    /// A context with no memory yet.
    pub fn new(
        client: Client,
        config: OperatorConfig,
        recorder: Recorder,
        logs: LogStore,
        archives: Option<ArchiveFetcher>,
        metrics: Metrics,
    ) -> Context {
        Context {
            client,
            config,
            recorder,
            logs,
            archives,
            metrics,
            retries: Retries::default(),
            streaming: Mutex::default(),
        }
    }

    /// The uids of the Pods whose archive is being streamed.
    pub(crate) fn streaming(&self) -> MutexGuard<'_, HashSet<String>> {
        self.streaming.lock().unwrap_or_else(|e| e.into_inner())
    }
}
