//! Prometheus metrics of the operator, served at `/metrics`.
//!
//! Counters and histograms are recorded where the reconciler takes a step; the gauges of pending and running
//! executions are counted from the controller's store when the metrics are rendered, so they are right after a
//! restart and never drift; the watch's health follows `/readyz`.

use std::sync::{Arc, OnceLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::DynamicObject;
use kube::runtime::reflector::Store;
use pyexec_crds::PythonExecution;

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
struct PoolLabels {
    namespace: String,
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishLabels {
    phase: String,
    reason: String,
}

/// Buckets of the creation-to-running and creation-to-finished histograms: 0.1 s to 1 h.
pub const LIFECYCLE_BUCKETS: [f64; 15] =
    [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0];

/// Counts the executions by phase: (pending, running). No phase yet counts as pending.
type PhaseCounter = Box<dyn Fn() -> (usize, usize) + Send + Sync>;

/// The operator's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<Outcome, Counter>,
    reconcile_seconds: Histogram,
    failures: Family<ErrorLabel, Counter>,
    finished: Family<FinishLabels, Counter>,
    start_seconds: Histogram,
    finish_seconds: Histogram,
    pending: Gauge,
    in_flight: Gauge,
    counter: Arc<OnceLock<PhaseCounter>>,
    watch_healthy: Gauge,
    watch_errors: Counter,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
    claims: Family<Outcome, Counter>,
    pool_idle: Family<PoolLabels, Gauge>,
    pool_claimed: Family<PoolLabels, Gauge>,
    session_pods: Family<KindLabel, Counter>,
    sessions_ended: Family<FinishLabels, Counter>,
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
        let finished = Family::<FinishLabels, Counter>::default();
        registry.register(
            "executions_finished",
            "Executions finished, by final phase and the reason of their Finished condition",
            finished.clone(),
        );
        let start_seconds = Histogram::new(LIFECYCLE_BUCKETS);
        registry.register(
            "execution_start_seconds",
            "From the resource's creation to its program's start, when it turns Running (scheduling, image, install)",
            start_seconds.clone(),
        );
        let finish_seconds = Histogram::new(LIFECYCLE_BUCKETS);
        registry.register(
            "execution_finish_seconds",
            "From the resource's creation to its final phase",
            finish_seconds.clone(),
        );
        let pending = Gauge::default();
        registry.register("executions_pending", "Executions Pending (or not yet reconciled)", pending.clone());
        let in_flight = Gauge::default();
        registry.register("executions_in_flight", "Executions Running", in_flight.clone());
        let watch_healthy = Gauge::default();
        registry.register(
            "watch_healthy",
            "1 while the controller's watches work (as /readyz), 0 after a watch error",
            watch_healthy.clone(),
        );
        let watch_errors = Counter::default();
        registry.register("watch_errors", "Errors of the controller's watches (each retried)", watch_errors.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica is the leader", leader.clone());
        let claims = Family::<Outcome, Counter>::default();
        registry.register(
            "pool_claims",
            "Warm-pool claims of executions being created, by outcome (warm, cold-no-pool, cold-no-idle; conflict: a \
             race for one Pod lost, after which the next Pod is tried)",
            claims.clone(),
        );
        let pool_idle = Family::<PoolLabels, Gauge>::default();
        registry.register("pool_idle_pods", "Idle Pods of each warm pool (starting or ready)", pool_idle.clone());
        let pool_claimed = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "pool_claimed_pods",
            "Pods claimed from each warm pool that still exist (running their executions)",
            pool_claimed.clone(),
        );
        let session_pods = Family::<KindLabel, Counter>::default();
        registry.register(
            "session_pods_created",
            "Session Pods created, by kind (start: a session's first; restart: one replacing a Pod that was lost, \
             ended or deleted to restart the interpreter)",
            session_pods.clone(),
        );
        let sessions_ended = Family::<FinishLabels, Counter>::default();
        registry.register(
            "sessions_ended",
            "Sessions ended, by final phase (Ended, Failed) and the reason of their Ready condition",
            sessions_ended.clone(),
        );
        Metrics {
            registry: Arc::new(registry),
            reconciles,
            reconcile_seconds,
            failures,
            finished,
            start_seconds,
            finish_seconds,
            pending,
            in_flight,
            counter: Arc::new(OnceLock::new()),
            watch_healthy,
            watch_errors,
            leader,
            claims,
            pool_idle,
            pool_claimed,
            session_pods,
            sessions_ended,
        }
    }

    /// A session's Pod was created: its first (`start`) or a replacement (`restart`).
    pub fn session_pod_created(&self, kind: &str) {
        self.session_pods.get_or_create(&KindLabel { kind: kind.into() }).inc();
    }

    /// A session reached a final phase (`Ended`, `Failed`) for this reason.
    pub fn session_ended(&self, phase: &str, reason: &str) {
        self.sessions_ended.get_or_create(&FinishLabels { phase: phase.into(), reason: reason.into() }).inc();
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

    /// An execution reached a final phase (`Completed`, `Failed`, ...) for this reason (that of its `Finished`
    /// condition: `Completed`, `TimedOut`, `Killed`, `NameConflict`, ...) at `now`.
    pub fn finished(&self, cr: &PythonExecution, phase: &str, reason: &str, now: &Time) {
        self.finished.get_or_create(&FinishLabels { phase: phase.into(), reason: reason.into() }).inc();
        if let Some(seconds) = seconds_between(cr.meta().creation_timestamp.as_ref(), now) {
            self.finish_seconds.observe(seconds);
        }
    }

    /// A program started this long after its resource was created.
    pub fn started(&self, seconds: f64) {
        self.start_seconds.observe(seconds.max(0.0));
    }

    /// Counts the pending and running executions from the controller's store at each rendering (the first store
    /// given is kept).
    pub fn count_from(&self, store: Store<DynamicObject>) {
        self.count_with(move || count_phases(store.state().iter().map(|o| phase_of(o))));
    }

    /// Counts the pending and running executions with this function at each rendering.
    pub fn count_with(&self, count: impl Fn() -> (usize, usize) + Send + Sync + 'static) {
        let _ = self.counter.set(Box::new(count));
    }

    /// An execution's claim attempt ended with this outcome (`warm`, `cold-no-pool`, `cold-no-idle`, `conflict`).
    pub fn claim(&self, outcome: &str) {
        self.claims.get_or_create(&Outcome { outcome: outcome.into() }).inc();
    }

    /// A pool's idle and claimed Pods, as its last reconciliation counted them.
    pub fn pool_sizes(&self, namespace: &str, pool: &str, idle: usize, claimed: usize) {
        let labels = PoolLabels { namespace: namespace.into(), pool: pool.into() };
        self.pool_idle.get_or_create(&labels).set(i64::try_from(idle).unwrap_or(i64::MAX));
        self.pool_claimed.get_or_create(&labels).set(i64::try_from(claimed).unwrap_or(i64::MAX));
    }

    /// A pool was deleted: its gauges go.
    pub fn forget_pool(&self, namespace: &str, pool: &str) {
        let labels = PoolLabels { namespace: namespace.into(), pool: pool.into() };
        self.pool_idle.remove(&labels);
        self.pool_claimed.remove(&labels);
    }

    /// A watch of the controller failed.
    pub fn watch_failed(&self) {
        self.watch_errors.inc();
        self.watch_healthy.set(0);
    }

    /// Whether the controller's watches work now.
    pub fn watch_health(&self, healthy: bool) {
        self.watch_healthy.set(i64::from(healthy));
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        if let Some(count) = self.counter.get() {
            let (pending, running) = count();
            self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
            self.in_flight.set(i64::try_from(running).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Seconds from `from` to `to`, if `from` is known (never negative).
pub fn seconds_between(from: Option<&Time>, to: &Time) -> Option<f64> {
    from.map(|from| ((to.0.as_millisecond() - from.0.as_millisecond()) as f64 / 1000.0).max(0.0))
}

/// The `status.phase` of a watched object, if it has one.
fn phase_of(object: &DynamicObject) -> Option<&str> {
    object.data.get("status")?.get("phase")?.as_str()
}

/// (pending, running) among these phases: no phase yet (not reconciled) counts as pending.
fn count_phases<'a>(phases: impl Iterator<Item = Option<&'a str>>) -> (usize, usize) {
    phases.fold((0, 0), |(pending, running), phase| match phase {
        None | Some("Pending") => (pending + 1, running),
        Some("Running") => (pending, running + 1),
        Some(_) => (pending, running),
    })
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

    fn has(text: &str, line: &str) {
        assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
    }

    fn execution(created: Option<&str>) -> PythonExecution {
        let mut cr = PythonExecution::new("a", Default::default());
        cr.metadata.creation_timestamp = created.map(|t| Time(t.parse().unwrap()));
        cr
    }

    #[test]
    fn finished_executions_are_counted_by_phase_and_reason_with_their_time_since_creation() {
        let metrics = Metrics::new();
        let now = Time("2024-01-01T00:01:00Z".parse().unwrap());
        let cr = execution(Some("2024-01-01T00:00:00Z"));
        metrics.finished(&cr, "Completed", "Completed", &now);
        metrics.finished(&cr, "Failed", "TimedOut", &now);
        metrics.finished(&cr, "Failed", "TimedOut", &now);
        metrics.finished(&execution(None), "Failed", "NameConflict", &now);
        let text = metrics.render();
        has(&text, "pyexec_operator_executions_finished_total{phase=\"Completed\",reason=\"Completed\"} 1");
        has(&text, "pyexec_operator_executions_finished_total{phase=\"Failed\",reason=\"TimedOut\"} 2");
        has(&text, "pyexec_operator_executions_finished_total{phase=\"Failed\",reason=\"NameConflict\"} 1");
        // The one without a creation time is not observed.
        has(&text, "pyexec_operator_execution_finish_seconds_count 3");
        has(&text, "pyexec_operator_execution_finish_seconds_sum 180.0");
        has(&text, "pyexec_operator_execution_finish_seconds_bucket{le=\"30.0\"} 0");
        has(&text, "pyexec_operator_execution_finish_seconds_bucket{le=\"60.0\"} 3");
    }

    #[test]
    fn start_times_use_buckets_from_a_tenth_of_a_second_to_an_hour() {
        let metrics = Metrics::new();
        metrics.started(0.05);
        metrics.started(4000.0);
        let text = metrics.render();
        has(&text, "pyexec_operator_execution_start_seconds_bucket{le=\"0.1\"} 1");
        has(&text, "pyexec_operator_execution_start_seconds_bucket{le=\"3600.0\"} 1");
        has(&text, "pyexec_operator_execution_start_seconds_bucket{le=\"+Inf\"} 2");
        has(&text, "pyexec_operator_execution_finish_seconds_bucket{le=\"0.1\"} 0");
        has(&text, "# TYPE pyexec_operator_execution_start_seconds histogram");
        has(&text, "# TYPE pyexec_operator_execution_finish_seconds histogram");
    }

    #[test]
    fn pending_and_running_executions_are_counted_at_rendering() {
        let metrics = Metrics::new();
        let text = metrics.render();
        has(&text, "pyexec_operator_executions_pending 0");
        has(&text, "pyexec_operator_executions_in_flight 0");
        let phases = Arc::new(std::sync::Mutex::new(vec![None, Some("Pending"), Some("Running"), Some("Completed")]));
        let seen = phases.clone();
        metrics.count_with(move || count_phases(seen.lock().unwrap().iter().copied()));
        let text = metrics.render();
        has(&text, "pyexec_operator_executions_pending 2");
        has(&text, "pyexec_operator_executions_in_flight 1");
        phases.lock().unwrap().push(Some("Running"));
        has(&metrics.render(), "pyexec_operator_executions_in_flight 2");
    }

    #[test]
    fn the_phase_of_a_watched_object_is_read_from_its_status() {
        let mut object = DynamicObject::new("a", &crate::controller::execution_resource());
        assert_eq!(phase_of(&object), None);
        object.data = serde_json::json!({"spec": {}, "status": {"phase": "Running"}});
        assert_eq!(phase_of(&object), Some("Running"));
    }

    #[test]
    fn watch_health_and_errors_are_exposed() {
        let metrics = Metrics::new();
        metrics.watch_health(true);
        has(&metrics.render(), "pyexec_operator_watch_healthy 1");
        metrics.watch_failed();
        metrics.watch_failed();
        let text = metrics.render();
        has(&text, "pyexec_operator_watch_healthy 0");
        has(&text, "pyexec_operator_watch_errors_total 2");
        has(&text, "# TYPE pyexec_operator_watch_errors counter");
        has(&text, "# TYPE pyexec_operator_watch_healthy gauge");
    }
}
