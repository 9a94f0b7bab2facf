//! How long a failed reconciliation waits before the next try: per object, doubling from [`FIRST_DELAY`] with each
//! consecutive failure up to [`MAX_DELAY`], and back to the start after a success. One object whose API calls keep
//! failing then costs little, while a brief outage of the API server is retried quickly.
//!
//! The memory is bounded: an object's entry goes with its next successful reconciliation (a terminal execution's
//! last one included), with the object itself ([`Retries::retain`], swept by the controller against its store of
//! executions), after [`FORGET_AFTER`], and never more than [`MAX_TRACKED`] objects are remembered at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use pyexec_crds::PythonExecution;

/// The delay after a first failure.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// Failures older than this are forgotten (the object was deleted, or has long been reconciled by other means).
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Most objects whose failures are remembered; beyond it the longest-quiet one is forgotten (it starts over at
/// [`FIRST_DELAY`]). About 200 bytes each.
pub const MAX_TRACKED: usize = 10_000;

/// Consecutive failures per object.
#[derive(Debug, Default)]
pub struct Retries {
    failures: Mutex<HashMap<ObjectRef<PythonExecution>, (u32, Instant)>>,
}

impl Retries {
    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectRef<PythonExecution>, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a failure of `object` at `now`; returns the delay before its next try.
    pub fn failed(&self, object: ObjectRef<PythonExecution>, now: Instant) -> Duration {
        let mut failures = self.lock();
        failures.retain(|_, (_, at)| now.saturating_duration_since(*at) < FORGET_AFTER);
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&object) {
            let oldest = failures.iter().min_by_key(|(_, (_, at))| *at).map(|(o, _)| o.clone());
            if let Some(oldest) = oldest {
                failures.remove(&oldest);
            }
        }
        let count = failures.entry(object).or_insert((0, now));
        *count = (count.0.saturating_add(1), now);
        delay(count.0)
    }

    /// A reconciliation of `object` succeeded: its next failure starts over.
    pub fn succeeded(&self, object: &ObjectRef<PythonExecution>) {
        self.lock().remove(object);
    }

    /// Forgets every object not in `live` (the executions that still exist).
    pub fn retain(&self, live: &HashSet<ObjectRef<PythonExecution>>) {
        self.lock().retain(|object, _| live.contains(object));
    }

    /// How many objects have failures remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no object has failures remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Consecutive failures of `object` so far.
    pub fn failures(&self, object: &ObjectRef<PythonExecution>) -> u32 {
        self.lock().get(object).map_or(0, |(n, _)| *n)
    }
}

/// The delay after `failures` consecutive failures (1 or more).
pub fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectRef<PythonExecution> {
        ObjectRef::new(name).within("team-a")
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let delays: Vec<u64> = (1..=11).map(|n| delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn each_object_has_its_own_count_and_a_success_resets_it() {
        let retries = Retries::default();
        let t0 = Instant::now();
        assert_eq!(retries.failed(object("a"), t0), Duration::from_secs(1));
        assert_eq!(retries.failed(object("a"), t0), Duration::from_secs(2));
        assert_eq!(retries.failed(object("a"), t0), Duration::from_secs(4));
        assert_eq!(retries.failed(object("b"), t0), Duration::from_secs(1), "another object starts at the first delay");
        retries.succeeded(&object("a"));
        assert_eq!(retries.failures(&object("a")), 0);
        assert_eq!(retries.failed(object("a"), t0), Duration::from_secs(1));
    }

    #[test]
    fn thousands_of_objects_that_finish_or_go_leave_nothing_behind() {
        let retries = Retries::default();
        let t0 = Instant::now();
        let objects: Vec<_> = (0..5_000).map(|i| object(&format!("job-{i}"))).collect();
        for o in &objects {
            retries.failed(o.clone(), t0);
        }
        assert_eq!(retries.len(), 5_000);
        // Half reach their terminal state (their last reconciliation succeeds), the others are deleted first.
        for o in objects.iter().step_by(2) {
            retries.succeeded(o);
        }
        assert_eq!(retries.len(), 2_500);
        retries.retain(&HashSet::new());
        assert!(retries.is_empty(), "deleted objects are forgotten");
    }

    #[test]
    fn never_more_than_the_cap_are_remembered() {
        let retries = Retries::default();
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED + 500 {
            retries.failed(object(&format!("job-{i}")), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(retries.len(), MAX_TRACKED);
        assert_eq!(retries.failures(&object("job-0")), 0, "the longest-quiet object went first");
        assert_eq!(retries.failures(&object(&format!("job-{}", MAX_TRACKED + 499))), 1);
        let live: HashSet<_> = [object("job-10499")].into();
        retries.retain(&live);
        assert_eq!(retries.len(), 1);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let retries = Retries::default();
        let t0 = Instant::now();
        retries.failed(object("gone"), t0);
        retries.failed(object("gone"), t0);
        retries.failed(object("b"), t0 + FORGET_AFTER);
        assert_eq!((retries.failures(&object("gone")), retries.failures(&object("b"))), (0, 1));
    }
}
