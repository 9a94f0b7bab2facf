//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! The execution counters and gauges are fed by the backend through [`ExecutionMetrics`] (a backend knows that
//! trait, not this registry); the refusals for a full queue are counted by the handlers.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use pyexec_backend::ExecutionMetrics;
use pyexec_core::ExecutionResult;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

/// The server's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    submitted: Counter,
    executions: Family<StatusLabel, Counter>,
    duration: Histogram,
    queue_depth: Gauge,
    in_flight: Gauge,
    rejected: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pyexec");
        let submitted = Counter::default();
        registry.register("executions_submitted", "Executions accepted", submitted.clone());
        let executions = Family::<StatusLabel, Counter>::default();
        registry.register("executions", "Executions finished, by final status", executions.clone());
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        registry.register("execution_duration_seconds", "Run time of finished executions", duration.clone());
        let queue_depth = Gauge::default();
        registry.register("queue_depth", "Executions waiting for a slot", queue_depth.clone());
        let in_flight = Gauge::default();
        registry.register("executions_in_flight", "Executions running", in_flight.clone());
        let rejected = Counter::default();
        registry.register(
            "executions_rejected_queue_full",
            "Requests refused with 429 because the queue was full",
            rejected.clone(),
        );
        Metrics { registry: Arc::new(registry), submitted, executions, duration, queue_depth, in_flight, rejected }
    }

    /// A request was refused because the queue was full.
    pub fn rejected(&self) {
        self.rejected.inc();
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

impl ExecutionMetrics for Metrics {
    fn submitted(&self) {
        self.submitted.inc();
    }

    fn finished(&self, result: &ExecutionResult) {
        self.executions.get_or_create(&StatusLabel { status: result.status.to_string() }).inc();
        if result.duration_ms > 0 {
            self.duration.observe(result.duration_ms as f64 / 1000.0);
        }
    }

    fn queue_depth(&self, pending: usize) {
        self.queue_depth.set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    fn in_flight(&self, running: usize) {
        self.in_flight.set(i64::try_from(running).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyexec_core::ExecutionStatus;

    #[test]
    fn what_a_backend_reports_is_exposed() {
        let metrics = Metrics::new();
        let sink: Arc<dyn ExecutionMetrics> = Arc::new(metrics.clone());
        sink.submitted();
        sink.queue_depth(3);
        sink.in_flight(2);
        let mut done = ExecutionResult::pending("exe_a");
        done.status = ExecutionStatus::Completed;
        done.duration_ms = 1500;
        sink.finished(&done);
        metrics.rejected();
        let text = metrics.render();
        for line in [
            "pyexec_executions_submitted_total 1",
            "pyexec_queue_depth 3",
            "pyexec_executions_in_flight 2",
            "pyexec_executions_total{status=\"completed\"} 1",
            "pyexec_execution_duration_seconds_sum 1.5",
            "pyexec_executions_rejected_queue_full_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
    }
}
