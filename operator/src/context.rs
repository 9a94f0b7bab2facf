//! What every reconciliation shares ([`Context`]), and why one can fail ([`Error`]). As in kube-rs controllers, the
//! context holds the client, the configuration and the few pieces of memory the operator keeps between
//! reconciliations (Pods whose archive is being streamed, per-object retry state); none of it is needed to resume
//! after a restart, since every decision is made from observed objects.
//!
//! That memory is bounded whatever the number of executions: retry state goes with a success or with the object
//! ([`Context::forget_gone`], run by the controller against its store), archive streams are forgotten when the
//! children are deleted, after [`STREAM_FORGET_AFTER`], and beyond [`MAX_STREAMS`], and log followers
//! ([`crate::follow`]) exist only for executions in flight: they go when the children are deleted or the execution
//! leaves the store, and there are at most [`crate::follow::MAX_FOLLOWERS`].

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::ObjectRef;
use pyexec_crds::PythonExecution;

use crate::attach::ArchiveFetcher;
use crate::config::OperatorConfig;
use crate::follow::Followers;
use crate::logs::LogStore;
use crate::metrics::Metrics;
use crate::pool::refill::Refill;
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
    /// The warm pools' recent Pod creations, for their refill rate (`poolRefill`).
    pub refill: Refill,
    /// Pods whose archive is being streamed now (by uid), so that a second reconcile does not stream it again.
    streaming: Mutex<Streams>,
    /// The followers of the main container's log of the Pods that run, by Pod uid ([`crate::follow`]).
    pub followers: Followers,
}

/// How long a Pod's archive stream is remembered at most: longer than any stream takes (the Pod is past its
/// receive container by then, and never asks for the archive again).
pub const STREAM_FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Most archive streams remembered at once (far more than run at once); beyond it the oldest is forgotten.
pub const MAX_STREAMS: usize = 4096;

/// The Pods whose archive stream was started, and when, keyed by [`Streams::key`] (the execution's uid, then the
/// Pod's), so that deleting an execution's children forgets its streams.
#[derive(Debug, Default)]
pub struct Streams {
    started: HashMap<String, Instant>,
}

impl Streams {
    /// Records that the stream into the Pod `uid` starts now; false when it was started already.
    pub fn insert(&mut self, uid: String) -> bool {
        self.insert_at(uid, Instant::now())
    }

    /// [`Streams::insert`] at `now`; old entries are forgotten, and the oldest when there are too many.
    pub fn insert_at(&mut self, uid: String, now: Instant) -> bool {
        self.started.retain(|_, at| now.saturating_duration_since(*at) < STREAM_FORGET_AFTER);
        if self.started.contains_key(&uid) {
            return false;
        }
        if self.started.len() >= MAX_STREAMS {
            let oldest = self.started.iter().min_by_key(|(_, at)| **at).map(|(uid, _)| uid.clone());
            if let Some(oldest) = oldest {
                self.started.remove(&oldest);
            }
        }
        self.started.insert(uid, now);
        true
    }

    /// The key of the stream into the Pod `pod_uid` of the execution `execution_uid`.
    pub fn key(execution_uid: &str, pod_uid: &str) -> String {
        format!("{execution_uid}/{pod_uid}")
    }

    /// Forgets the stream `key`.
    pub fn remove(&mut self, key: &str) -> bool {
        self.started.remove(key).is_some()
    }

    /// Forgets every stream of the execution `execution_uid` (its children were deleted).
    pub fn remove_execution(&mut self, execution_uid: &str) -> usize {
        let prefix = format!("{execution_uid}/");
        let before = self.started.len();
        self.started.retain(|key, _| !key.starts_with(&prefix));
        before - self.started.len()
    }

    /// How many streams are remembered.
    pub fn len(&self) -> usize {
        self.started.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.started.is_empty()
    }
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
            refill: Refill::new(&config.pool_refill),
            config,
            recorder,
            logs,
            archives,
            metrics,
            retries: Retries::default(),
            streaming: Mutex::default(),
            followers: Followers::default(),
        }
    }

    /// The uids of the Pods whose archive is being streamed.
    pub(crate) fn streaming(&self) -> MutexGuard<'_, Streams> {
        self.streaming.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the per-object state of executions that no longer exist: `live` are those in the controller's store.
    pub fn forget_gone(&self, live: impl IntoIterator<Item = ObjectRef<PythonExecution>>) {
        let live: HashSet<_> = live.into_iter().collect();
        self.retries.retain(&live);
        self.followers.retain(&live);
    }

    /// How many objects the per-object state holds: (objects with retry state, archive streams).
    pub fn tracked(&self) -> (usize, usize) {
        (self.retries.len(), self.streaming().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_forgotten_with_their_children_and_never_pile_up() {
        let mut streams = Streams::default();
        let t0 = Instant::now();
        for i in 0..5_000 {
            assert!(streams.insert_at(format!("pod-{i}"), t0));
        }
        assert_eq!(streams.len(), MAX_STREAMS, "bounded even if no children were deleted");
        assert!(!streams.insert_at("pod-4999".into(), t0), "a stream already started is not started again");
        for i in 0..5_000 {
            streams.remove(&format!("pod-{i}"));
        }
        assert!(streams.is_empty(), "deleting the children forgets the stream");
        assert!(streams.insert_at(Streams::key("exe-uid", "pod-uid"), t0));
        assert!(streams.insert_at(Streams::key("other", "pod-uid-2"), t0));
        assert_eq!(streams.remove_execution("exe-uid"), 1, "an execution's streams go with its children");
        assert_eq!(streams.remove_execution("exe"), 0, "by whole uid only");
        streams.remove(&Streams::key("other", "pod-uid-2"));
        streams.insert_at("stale".into(), t0);
        streams.insert_at("fresh".into(), t0 + STREAM_FORGET_AFTER);
        assert_eq!(streams.len(), 1, "an old stream is forgotten");
    }
}
