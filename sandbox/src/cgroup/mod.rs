//! Per-run control groups: memory, pids and CPU limits, the out-of-memory verdict, and a whole-tree kill.
//!
//! Two layouts exist in the wild and both are supported:
//! - **unified (v2)**, what current distributions and Kubernetes nodes run: one hierarchy, limits in `memory.max`,
//!   `pids.max`, `cpu.max`, kill through `cgroup.kill`, and the child is born inside its cgroup (`CLONE_INTO_CGROUP`);
//! - **hybrid**, v1 controllers (`memory`, `pids`, `cpu`) plus a v2 hierarchy without controllers: limits in the
//!   v1 files, the child is moved into each v1 cgroup before it may run, and `cgroup.kill` of the v2 hierarchy still
//!   kills the whole tree in one write.
//!
//! The run cgroups live under a parent `pyexec` next to the server's own cgroup, so an operator's limit on the
//! server also bounds its sandboxes.

mod layout;
mod run;

pub use layout::CgroupLayout;
pub use run::RunCgroup;

/// Limits written into a run's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Hard memory limit, bytes; no swap beyond it.
    pub memory_bytes: u64,
    /// Most tasks (processes and threads) at once.
    pub pids: u64,
    /// CPU weight in the v1 `cpu.shares` scale (1024 = one CPU); also sets a quota of `shares / 1024` CPUs.
    pub cpu_shares: u64,
    /// The lowest weight instead of `cpu_shares`' (the quota is unchanged).
    pub background: bool,
}

/// CFS period used for CPU quotas.
pub const CPU_PERIOD_US: u64 = 100_000;

impl CgroupLimits {
    /// The CPU quota per period: `cpu_shares / 1024` CPUs, at least 1 ms.
    pub fn cpu_quota_us(&self) -> u64 {
        (self.cpu_shares.saturating_mul(CPU_PERIOD_US) / 1024).max(1000)
    }

    /// The v1 `cpu.shares` written: `cpu_shares`, or the lowest for background work.
    pub fn shares(&self) -> u64 {
        if self.background { 2 } else { self.cpu_shares }
    }

    /// The v2 `cpu.weight` equivalent of [`Self::shares`] (the conversion runc and crun use).
    pub fn cpu_weight(&self) -> u64 {
        let shares = self.shares().clamp(2, 262_144);
        1 + ((shares - 2) * 9999) / 262_142
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_conversions() {
        let l = |cpu_shares| CgroupLimits { memory_bytes: 0, pids: 0, cpu_shares, background: false };
        assert_eq!(l(1024).cpu_quota_us(), 100_000);
        assert_eq!(l(512).cpu_quota_us(), 50_000);
        assert_eq!(l(2048).cpu_quota_us(), 200_000);
        assert_eq!(l(2).cpu_quota_us(), 1000);
        assert_eq!(l(1024).cpu_weight(), 39);
        assert_eq!(l(2).cpu_weight(), 1);
        assert_eq!(l(262_144).cpu_weight(), 10_000);
        let background = CgroupLimits { background: true, ..l(1024) };
        assert_eq!((background.cpu_quota_us(), background.cpu_weight(), background.shares()), (100_000, 1, 2));
    }
}
