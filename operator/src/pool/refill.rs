//! The rate limit of a pool's Pod creations: at most `pods` creations per pool in any window of `interval`
//! (`poolRefill` in the configuration). A burst of claims then refills gradually instead of sending a burst of
//! creates to the API server, where the executions waiting for their own writes would queue behind them.
//!
//! The memory is one entry per pool with creations in the last interval: entries older than that are dropped at
//! each use.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::PoolRefill;

/// Creations per pool (by uid) in the last interval.
#[derive(Debug)]
pub struct Refill {
    pods: usize,
    interval: Duration,
    created: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Refill {
    /// A limiter for `config`.
    pub fn new(config: &PoolRefill) -> Refill {
        Refill {
            pods: usize::try_from(config.pods).unwrap_or(usize::MAX).max(1),
            interval: Duration::from_secs(config.interval_seconds.max(1)),
            created: Mutex::default(),
        }
    }

    /// Grants up to `wanted` creations for `pool` at `now` (recorded as made), and when the next one may be made if
    /// fewer were granted.
    pub fn take(&self, pool: &str, wanted: usize, now: Instant) -> (usize, Option<Duration>) {
        let mut created = self.created.lock().unwrap_or_else(|e| e.into_inner());
        let interval = self.interval;
        created.retain(|_, times| {
            while times.front().is_some_and(|t| now.saturating_duration_since(*t) >= interval) {
                times.pop_front();
            }
            !times.is_empty()
        });
        let times = created.entry(pool.to_owned()).or_default();
        let granted = wanted.min(self.pods.saturating_sub(times.len()));
        times.extend(std::iter::repeat_n(now, granted));
        let next = (granted < wanted)
            .then(|| times.front().map(|t| interval.saturating_sub(now.saturating_duration_since(*t))))
            .flatten();
        if times.is_empty() {
            created.remove(pool);
        }
        (granted, next)
    }

    /// Forgets a pool (deleted).
    pub fn forget(&self, pool: &str) {
        self.created.lock().unwrap_or_else(|e| e.into_inner()).remove(pool);
    }

    /// How many pools have creations remembered.
    pub fn tracked(&self) -> usize {
        self.created.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_pods_per_interval_per_pool() {
        let refill = Refill::new(&PoolRefill { pods: 3, interval_seconds: 2 });
        let t0 = Instant::now();
        assert_eq!(refill.take("a", 5, t0), (3, Some(Duration::from_secs(2))));
        assert_eq!(refill.take("a", 1, t0 + Duration::from_millis(500)), (0, Some(Duration::from_millis(1500))));
        assert_eq!(refill.take("b", 2, t0), (2, None), "each pool has its own budget");
        assert_eq!(refill.take("a", 5, t0 + Duration::from_secs(2)), (3, Some(Duration::from_secs(2))), "a new window");
        assert_eq!(refill.take("a", 0, t0 + Duration::from_secs(2)), (0, None));
        assert_eq!(refill.tracked(), 1, "b's creations left the window");
        refill.forget("a");
        assert_eq!(refill.tracked(), 0);
        refill.take("c", 1, t0 + Duration::from_secs(10));
        refill.take("d", 1, t0 + Duration::from_secs(20));
        assert_eq!(refill.tracked(), 1, "old creations are forgotten");
    }
}
