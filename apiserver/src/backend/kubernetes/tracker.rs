//! The execution metrics of the Kubernetes backend: the operator runs the executions, so this API server learns
//! how they end from a watch of the resources it created. Each one it submitted is counted when it reaches a final
//! phase (by status, with its duration), and the gauges say how many of them are `Pending` (waiting for their Pod)
//! and `Running`, as the embedded backend's say how many wait for a slot and run. Only this replica's submissions
//! count, so replicas behind one Service add up without counting an execution twice.
//!
//! The same set is the backend's in-flight count: a slot is taken when a resource is about to be created
//! ([`Tracker::reserve`]) and freed when the watch sees it reach a final phase or go, which wakes the queue
//! (`admission`). Executions queued in the API server count in the queue-depth gauge too. Each open one keeps its
//! tenant (from the request, which the resource's `pyexec.io/tenant` label also names), so that the queue can cap
//! a tenant's executions in flight and the metrics can say whose an execution was.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use pyexec_crds::contract::{API_SERVER, managed_by_selector};
use pyexec_crds::convert::{execution_id, result_from_status};
use pyexec_crds::{Phase, PythonExecution};

use super::ExecutionMetrics;

/// The executions this API server submitted and has not seen finish.
pub(super) struct Tracker {
    metrics: Arc<dyn ExecutionMetrics>,
    state: Mutex<State>,
    /// Signalled whenever an execution stops being in flight (its slot is free).
    released: Notify,
}

/// An execution in flight.
struct Open {
    /// Its phase, as last seen.
    phase: Phase,
    /// Its tenant.
    tenant: Option<String>,
}

#[derive(Default)]
struct State {
    /// Resource name → the execution.
    open: HashMap<String, Open>,
    /// Executions accepted but waiting in the API server for a slot (they have no resource yet).
    queued: usize,
    /// While the watch lists the resources again (after a gap): those seen so far, and those already open when
    /// the list started. An open one that the list does not contain was deleted during the gap.
    relisting: Option<(HashSet<String>, HashSet<String>)>,
}

impl Tracker {
    pub(super) fn new(metrics: Arc<dyn ExecutionMetrics>) -> Tracker {
        Tracker { metrics, state: Mutex::default(), released: Notify::new() }
    }

    /// Executions in flight: submitted by this server, not yet seen finish or go.
    pub(super) fn in_flight(&self) -> usize {
        self.lock().open.len()
    }

    /// Executions of `tenant` in flight.
    pub(super) fn in_flight_of(&self, tenant: Option<&str>) -> usize {
        // A scan: at most `max_in_flight` entries, and a count kept apart would have to follow every removal.
        self.lock().open.values().filter(|o| o.tenant.as_deref() == tenant).count()
    }

    /// Takes a slot for the resource `name` of `tenant` about to be created, if fewer than `max` are in flight.
    pub(super) fn reserve(&self, name: &str, tenant: Option<&str>, max: usize) -> bool {
        let mut state = self.lock();
        if state.open.len() >= max {
            return false;
        }
        state.open.insert(name.to_owned(), Open { phase: Phase::Pending, tenant: tenant.map(str::to_owned) });
        self.gauges(&state);
        true
    }

    /// Executions now waiting in the API server for a slot.
    pub(super) fn set_queued(&self, queued: usize) {
        let mut state = self.lock();
        state.queued = queued;
        self.gauges(&state);
    }

    /// Resolves when a slot may have been freed since the last call.
    pub(super) async fn slot_released(&self) {
        self.released.notified().await;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resource `name` was created (`true`) or refused.
    pub(super) fn submitted(&self, name: &str, created: bool) {
        if created {
            let tenant = self.lock().open.get(name).and_then(|o| o.tenant.clone());
            self.metrics.submitted(tenant.as_deref());
        } else {
            let mut state = self.lock();
            state.open.remove(name);
            self.gauges(&state);
            self.released.notify_one();
        }
    }

    /// The watch saw `cr` as it is now.
    pub(super) fn observed(&self, cr: &PythonExecution) {
        let name = cr.name_any();
        let mut state = self.lock();
        if let Some((seen, _)) = &mut state.relisting {
            seen.insert(name.clone());
        }
        let phase = cr.phase();
        let Some(open) = state.open.get_mut(&name) else { return };
        if phase.is_terminal() {
            let tenant = open.tenant.clone();
            state.open.remove(&name);
            let mut result = result_from_status(&execution_id(&name), cr.status.as_ref());
            result.tenant = tenant;
            self.metrics.finished(&result);
            self.released.notify_one();
        } else {
            open.phase = phase;
        }
        self.gauges(&state);
    }

    /// The resource `name` was deleted before it finished (it is no longer followed).
    pub(super) fn deleted(&self, name: &str) {
        let mut state = self.lock();
        if state.open.remove(name).is_some() {
            self.released.notify_one();
        }
        self.gauges(&state);
    }

    /// The watch starts listing every resource again.
    fn relist_started(&self) {
        let mut state = self.lock();
        let before = state.open.keys().cloned().collect();
        state.relisting = Some((HashSet::new(), before));
    }

    /// The list is complete.
    fn relist_done(&self) {
        let mut state = self.lock();
        if let Some((seen, before)) = state.relisting.take() {
            let open = state.open.len();
            state.open.retain(|name, _| seen.contains(name) || !before.contains(name));
            if state.open.len() < open {
                self.released.notify_one();
            }
        }
        self.gauges(&state);
    }

    fn gauges(&self, state: &State) {
        let count = |phase| state.open.values().filter(|o| o.phase == phase).count();
        self.metrics.queue_depth(count(Phase::Pending) + state.queued);
        self.metrics.in_flight(count(Phase::Running));
    }
}

/// Follows the resources this API server manages until the process ends.
pub(super) async fn follow(api: Api<PythonExecution>, tracker: Arc<Tracker>) {
    let config = watcher::Config::default().labels(&managed_by_selector(API_SERVER));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(cr) | watcher::Event::InitApply(cr)) => tracker.observed(&cr),
            Ok(watcher::Event::Delete(cr)) => tracker.deleted(&cr.name_any()),
            Ok(watcher::Event::Init) => tracker.relist_started(),
            Ok(watcher::Event::InitDone) => tracker.relist_done(),
            Err(e) => tracing::warn!(error = %e, "watching the executions for the metrics failed; retrying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use pyexec_core::{ExecutionResult, ExecutionStatus};

    use super::*;

    #[derive(Default)]
    struct Recorded {
        submitted: AtomicUsize,
        tenants: Mutex<Vec<(&'static str, Option<String>)>>,
        finished: Mutex<Vec<(ExecutionStatus, i64)>>,
        gauges: Mutex<(usize, usize)>,
    }

    impl ExecutionMetrics for Recorded {
        fn submitted(&self, tenant: Option<&str>) {
            self.submitted.fetch_add(1, Ordering::SeqCst);
            self.tenants.lock().unwrap().push(("submitted", tenant.map(str::to_owned)));
        }
        fn finished(&self, result: &ExecutionResult) {
            self.finished.lock().unwrap().push((result.status, result.duration_ms));
            self.tenants.lock().unwrap().push(("finished", result.tenant.clone()));
        }
        fn queue_depth(&self, pending: usize) {
            self.gauges.lock().unwrap().0 = pending;
        }
        fn in_flight(&self, running: usize) {
            self.gauges.lock().unwrap().1 = running;
        }
    }

    fn cr(name: &str, phase: &str) -> PythonExecution {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "pyexec.io/v1alpha1", "kind": "PythonExecution", "metadata": {"name": name},
            "spec": {"source": {"files": [{"name": "main.py", "content": "1"}]}},
            "status": {"phase": phase, "durationMs": 1500, "exitCode": 0},
        }))
        .unwrap()
    }

    #[test]
    fn own_executions_are_counted_once_when_they_finish() {
        let recorded = Arc::new(Recorded::default());
        let tracker = Tracker::new(recorded.clone());
        for name in ["a", "b", "refused"] {
            assert!(tracker.reserve(name, None, usize::MAX));
        }
        tracker.submitted("a", true);
        tracker.submitted("b", true);
        tracker.submitted("refused", false);
        assert_eq!(*recorded.gauges.lock().unwrap(), (2, 0));
        tracker.observed(&cr("a", "Running"));
        assert_eq!(*recorded.gauges.lock().unwrap(), (1, 1));
        tracker.observed(&cr("a", "Completed"));
        tracker.observed(&cr("a", "Completed"));
        tracker.observed(&cr("someone-elses", "Failed"));
        assert_eq!(recorded.submitted.load(Ordering::SeqCst), 2);
        assert_eq!(*recorded.finished.lock().unwrap(), [(ExecutionStatus::Completed, 1500)], "once, only its own");
        assert_eq!(*recorded.gauges.lock().unwrap(), (1, 0));
    }

    #[test]
    fn executions_deleted_while_the_watch_was_away_are_forgotten() {
        let recorded = Arc::new(Recorded::default());
        let tracker = Tracker::new(recorded.clone());
        for name in ["kept", "gone"] {
            assert!(tracker.reserve(name, None, usize::MAX));
            tracker.submitted(name, true);
        }
        tracker.relist_started();
        assert!(tracker.reserve("new", None, usize::MAX));
        tracker.observed(&cr("kept", "Running"));
        tracker.relist_done();
        assert_eq!(*recorded.gauges.lock().unwrap(), (1, 1), "gone is gone; new was submitted during the list");
        assert!(recorded.finished.lock().unwrap().is_empty());
    }

    #[test]
    fn slots_are_taken_up_to_the_cap_and_freed_by_a_final_phase() {
        let recorded = Arc::new(Recorded::default());
        let tracker = Tracker::new(recorded.clone());
        assert!(tracker.reserve("a", None, 2) && tracker.reserve("b", None, 2));
        assert!(!tracker.reserve("c", None, 2), "the cap is reached");
        tracker.set_queued(1);
        assert_eq!(*recorded.gauges.lock().unwrap(), (3, 0), "queued ones count as waiting");
        tracker.observed(&cr("a", "Completed"));
        assert_eq!(tracker.in_flight(), 1);
        assert!(tracker.reserve("c", None, 2));
        tracker.submitted("c", false);
        assert_eq!(tracker.in_flight(), 1, "a refused resource gives its slot back");
    }

    #[test]
    fn each_execution_in_flight_keeps_its_tenant() {
        let recorded = Arc::new(Recorded::default());
        let tracker = Tracker::new(recorded.clone());
        assert!(tracker.reserve("a1", Some("alice"), 10));
        assert!(tracker.reserve("a2", Some("alice"), 10));
        assert!(tracker.reserve("n1", None, 10));
        for name in ["a1", "a2", "n1"] {
            tracker.submitted(name, true);
        }
        assert_eq!((tracker.in_flight_of(Some("alice")), tracker.in_flight_of(None)), (2, 1));
        assert_eq!(tracker.in_flight_of(Some("bob")), 0);
        tracker.observed(&cr("a1", "Running"));
        tracker.observed(&cr("a1", "Completed"));
        tracker.observed(&cr("n1", "Failed"));
        assert_eq!((tracker.in_flight_of(Some("alice")), tracker.in_flight_of(None)), (1, 0));
        let alice = Some("alice".to_owned());
        assert_eq!(
            *recorded.tenants.lock().unwrap(),
            [
                ("submitted", alice.clone()),
                ("submitted", alice.clone()),
                ("submitted", None),
                ("finished", alice),
                ("finished", None)
            ]
        );
    }
}
