//! Host uids for sandboxes. Each concurrent run gets its own unprivileged host uid, never 0 and never shared, so
//! runs cannot touch each other through anything uid-based (signals, `/proc`, keyrings, per-user limits).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::SandboxError;

/// A range of host uids (and the same gids) reserved for sandboxes.
#[derive(Debug)]
pub(crate) struct UidPool {
    base: u32,
    count: u32,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    used: HashSet<u32>,
    cursor: u32,
}

/// A uid in use by one run; returned to the pool on drop.
#[derive(Debug)]
pub(crate) struct UidLease {
    pool: Arc<UidPool>,
    pub uid: u32,
}

impl UidPool {
    pub(crate) fn new(base: u32, count: u32) -> Self {
        Self { base, count: count.max(1), state: Mutex::default() }
    }

    /// Takes the next free uid, round-robin so a uid is not reused right away.
    pub(crate) fn acquire(self: &Arc<Self>) -> Result<UidLease, SandboxError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..self.count {
            let offset = state.cursor;
            state.cursor = (state.cursor + 1) % self.count;
            let uid = self.base + offset;
            if state.used.insert(uid) {
                return Ok(UidLease { pool: self.clone(), uid });
            }
        }
        Err(SandboxError::Unavailable(format!("all {} sandbox host uids are in use", self.count)))
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        let mut state = self.pool.state.lock().unwrap_or_else(|e| e.into_inner());
        state.used.remove(&self.uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_unique_and_returned() {
        let pool = Arc::new(UidPool::new(100, 2));
        let a = pool.acquire().unwrap();
        let b = pool.acquire().unwrap();
        assert_ne!(a.uid, b.uid);
        assert!(pool.acquire().is_err());
        drop(a);
        let c = pool.acquire().unwrap();
        assert!(c.uid == 100 || c.uid == 101);
    }
}
