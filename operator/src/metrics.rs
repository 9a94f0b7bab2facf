//! Prometheus metrics of the operator, served at `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

/// The operator's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<Outcome, Counter>,
    reconcile_seconds: Histogram,
    failures: Family<ErrorLabel, Counter>,
    finished: Family<PhaseLabel, Counter>,
    start_seconds: Histogram,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pyexec_operator");
        let reconciles = Family::<Outcome, Counter>::default();
        registry.register("reconciles", "Reconciliations, by outcome (ok, error)", reconciles.clone());
        let reconcile_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register("reconcile_duration_seconds", "Time of one reconciliation", reconcile_seconds.clone());
        let failures = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "reconcile_failures",
            "Failed reconciliations, by kind of error (api, client, finalizer, log_store)",
            failures.clone(),
        );
        let finished = Family::<PhaseLabel, Counter>::default();
        registry.register("executions_finished", "Executions finished, by final phase", finished.clone());
        let start_seconds = Histogram::new(exponential_buckets(0.1, 2.0, 12));
        registry.register(
            "execution_start_seconds",
            "From the resource's creation to its program's start (scheduling, image, install)",
            start_seconds.clone(),
        );
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica is the leader", leader.clone());
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            reconcile_seconds,
            failures,
            finished,
            start_seconds,
            leader,
        }
    }

    /// One reconciliation ended.
    pub fn reconciled(&self, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        self.reconciles.get_or_create(&Outcome { outcome: outcome.into() }).inc();
        self.reconcile_seconds.observe(seconds);
    }

    /// A reconciliation failed with an error of this kind.
    pub fn failed(&self, kind: &str) {
        self.failures.get_or_create(&ErrorLabel { error: kind.into() }).inc();
    }

    /// An execution reached a final phase.
    pub fn finished(&self, phase: &str) {
        self.finished.get_or_create(&PhaseLabel { phase: phase.into() }).inc();
    }

    /// A program started this long after its resource was created.
    pub fn started(&self, seconds: f64) {
        self.start_seconds.observe(seconds);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_kind() {
        let metrics = Metrics::new();
        metrics.failed("api");
        metrics.failed("api");
        metrics.failed("log_store");
        let text = metrics.render();
        assert!(text.contains("pyexec_operator_reconcile_failures_total{error=\"api\"} 2"), "{text}");
        assert!(text.contains("pyexec_operator_reconcile_failures_total{error=\"log_store\"} 1"), "{text}");
    }
}
