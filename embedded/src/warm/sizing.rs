//! How many idle sandboxes a kind of request should have: its peak demand in any one second of the last minute,
//! within the configured bounds. A burst raises the pool at once; a quiet minute lets it shrink back.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back demand is remembered.
const HORIZON: Duration = Duration::from_secs(60);

/// Claims (hits and misses) per second over the last [`HORIZON`].
#[derive(Debug, Default)]
pub(crate) struct Demand {
    /// (second since `origin`, requests in it), oldest first.
    seconds: VecDeque<(u64, u32)>,
    origin: Option<Instant>,
    last: Option<Instant>,
}

impl Demand {
    /// Counts one request at `now`.
    pub(crate) fn record(&mut self, now: Instant) {
        let origin = *self.origin.get_or_insert(now);
        let second = now.saturating_duration_since(origin).as_secs();
        match self.seconds.back_mut() {
            Some((s, n)) if *s == second => *n += 1,
            _ => self.seconds.push_back((second, 1)),
        }
        self.last = Some(now);
        self.forget(now);
    }

    fn forget(&mut self, now: Instant) {
        let Some(origin) = self.origin else { return };
        let oldest = now.saturating_duration_since(origin).saturating_sub(HORIZON).as_secs();
        while self.seconds.front().is_some_and(|(s, _)| *s < oldest) {
            self.seconds.pop_front();
        }
    }

    /// The busiest second of the last minute.
    pub(crate) fn peak(&mut self, now: Instant) -> usize {
        self.forget(now);
        self.seconds.iter().map(|(_, n)| *n as usize).max().unwrap_or(0)
    }

    /// When the last request came.
    pub(crate) fn last(&self) -> Option<Instant> {
        self.last
    }
}

/// Idle sandboxes wanted: the peak demand, at least `min` and at most `max`.
pub(crate) fn target(peak: usize, min: usize, max: usize) -> usize {
    peak.max(min).min(max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_follows_bursts_and_forgets_them() {
        let t0 = Instant::now();
        let mut d = Demand::default();
        assert_eq!(d.peak(t0), 0);
        for i in 0..5 {
            d.record(t0 + Duration::from_millis(100 * i));
        }
        d.record(t0 + Duration::from_millis(1500));
        assert_eq!(d.peak(t0 + Duration::from_secs(2)), 5);
        assert_eq!(d.peak(t0 + Duration::from_secs(30)), 5);
        assert_eq!(d.peak(t0 + Duration::from_secs(62)), 0, "a quiet minute forgets the burst");
        assert_eq!(d.last(), Some(t0 + Duration::from_millis(1500)));
    }

    #[test]
    fn targets_stay_within_bounds() {
        assert_eq!(target(0, 2, 8), 2);
        assert_eq!(target(5, 2, 8), 5);
        assert_eq!(target(50, 0, 8), 8);
        assert_eq!(target(1, 0, 8), 1);
        assert_eq!(target(3, 4, 2), 4, "min wins over a smaller max");
    }
}
