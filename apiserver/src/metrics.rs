//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! The execution counters and gauges are fed by the backend through [`ExecutionMetrics`] (a backend knows that
//! trait, not this registry); the refusals for a full queue are counted by the handlers, completion webhooks by
//! `webhooks`.
//!
//! Finished executions and their run time are labelled with their tenant (`anonymous` for the one tenant of a
//! server without API keys). That is one series per tenant (times the five statuses, and the buckets of the
//! histogram): fine for the tenants of an API-key file, which an operator writes by hand, and the reason the
//! tenant is never taken from anything a client chooses.

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
    tenant: String,
}

/// The tenant of a finished execution: one series per tenant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

/// The label value of `tenant` (`None`: the anonymous tenant of a server without API keys).
fn tenant_label(tenant: Option<&str>) -> String {
    tenant.unwrap_or("anonymous").to_owned()
}

/// The run-time histogram of one tenant.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

/// The tenant of a request (`anonymous` on a server without API keys): one series per tenant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestTenantLabel {
    tenant: String,
}

/// The server's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    submitted: Counter,
    executions: Family<StatusLabel, Counter>,
    duration: Family<TenantLabel, Histogram, fn() -> Histogram>,
    queue_depth: Gauge,
    in_flight: Gauge,
    rejected: Counter,
    rate_limited: Family<RequestTenantLabel, Counter>,
    webhooks_delivered: Counter,
    webhooks_failed: Counter,
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
        registry.register("executions", "Executions finished, by final status and tenant", executions.clone());
        let duration: Family<TenantLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register("execution_duration_seconds", "Run time of finished executions, by tenant", duration.clone());
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
        let rate_limited = Family::<RequestTenantLabel, Counter>::default();
        registry.register(
            "requests_rate_limited",
            "Requests refused with 429 because their tenant was over its requests per minute",
            rate_limited.clone(),
        );
        let webhooks_delivered = Counter::default();
        registry.register(
            "webhooks_delivered",
            "Completion webhooks the receiver took (answered 2xx)",
            webhooks_delivered.clone(),
        );
        let webhooks_failed = Counter::default();
        registry.register(
            "webhooks_failed",
            "Completion webhooks given up on (final answer, forbidden address, or retries exhausted)",
            webhooks_failed.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            submitted,
            executions,
            duration,
            queue_depth,
            in_flight,
            rejected,
            rate_limited,
            webhooks_delivered,
            webhooks_failed,
        }
    }

    /// A completion webhook was delivered.
    pub fn webhook_delivered(&self) {
        self.webhooks_delivered.inc();
    }

    /// A completion webhook was given up on.
    pub fn webhook_failed(&self) {
        self.webhooks_failed.inc();
    }

    /// A request of `tenant` was refused for its tenant's rate.
    pub fn rate_limited(&self, tenant: Option<&str>) {
        let tenant = tenant.unwrap_or("anonymous").to_owned();
        self.rate_limited.get_or_create(&RequestTenantLabel { tenant }).inc();
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
    fn submitted(&self, _tenant: Option<&str>) {
        // Unlabelled, as before tenants: the finished executions say whose they were.
        self.submitted.inc();
    }

    fn finished(&self, result: &ExecutionResult) {
        let tenant = tenant_label(result.tenant.as_deref());
        self.executions.get_or_create(&StatusLabel { status: result.status.to_string(), tenant: tenant.clone() }).inc();
        if result.duration_ms > 0 {
            self.duration.get_or_create(&TenantLabel { tenant }).observe(result.duration_ms as f64 / 1000.0);
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
        sink.submitted(None);
        sink.submitted(Some("alice"));
        sink.queue_depth(3);
        sink.in_flight(2);
        let mut done = ExecutionResult::pending("exe_a");
        done.status = ExecutionStatus::Completed;
        done.duration_ms = 1500;
        sink.finished(&done);
        let mut alice = done.clone();
        alice.tenant = Some("alice".into());
        alice.duration_ms = 250;
        sink.finished(&alice);
        alice.status = ExecutionStatus::Failed;
        sink.finished(&alice);
        metrics.rejected();
        metrics.webhook_delivered();
        metrics.webhook_delivered();
        metrics.webhook_failed();
        let text = metrics.render();
        for line in [
            "pyexec_webhooks_delivered_total 2",
            "pyexec_webhooks_failed_total 1",
            "pyexec_executions_submitted_total 2",
            "pyexec_queue_depth 3",
            "pyexec_executions_in_flight 2",
            "pyexec_executions_total{status=\"completed\",tenant=\"anonymous\"} 1",
            "pyexec_executions_total{status=\"completed\",tenant=\"alice\"} 1",
            "pyexec_executions_total{status=\"failed\",tenant=\"alice\"} 1",
            "pyexec_execution_duration_seconds_sum{tenant=\"anonymous\"} 1.5",
            "pyexec_execution_duration_seconds_sum{tenant=\"alice\"} 0.5",
            "pyexec_execution_duration_seconds_count{tenant=\"alice\"} 2",
            "pyexec_executions_rejected_queue_full_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
    }
}
