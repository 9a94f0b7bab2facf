//! How long a failed reconciliation waits before the next try: per object, doubling from [`FIRST_DELAY`] with each
//! consecutive failure up to [`MAX_DELAY`], and back to the start after a success. One object whose API calls keep
//! failing then costs little, while a brief outage of the API server is retried quickly.

use std::collections::HashMap;
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
        let count = failures.entry(object).or_insert((0, now));
        *count = (count.0.saturating_add(1), now);
        delay(count.0)
    }

    /// A reconciliation of `object` succeeded: its next failure starts over.
    pub fn succeeded(&self, object: &ObjectRef<PythonExecution>) {
        self.lock().remove(object);
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
    fn old_failures_are_forgotten() {
        let retries = Retries::default();
        let t0 = Instant::now();
        retries.failed(object("gone"), t0);
        retries.failed(object("gone"), t0);
        retries.failed(object("b"), t0 + FORGET_AFTER);
        assert_eq!((retries.failures(&object("gone")), retries.failures(&object("b"))), (0, 1));
    }
}
