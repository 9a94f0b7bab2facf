//! What isolation this host actually gives, for `/health` and the start-up log.

use serde::Serialize;

/// How strong the isolation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IsolationLevel {
    /// Every mechanism in place: per-run unprivileged host uids, cgroup limits, seccomp.
    Full,
    /// Namespaces, seccomp and rlimits, but something is missing (see `warnings`).
    Reduced,
}

/// The guarantees of this host's sandboxes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IsolationReport {
    /// Overall level.
    pub level: IsolationLevel,
    /// Whether the server runs as root (needed for per-run host uids and cgroups).
    pub privileged: bool,
    /// Who the program runs as, inside and on the host.
    pub user: String,
    /// Namespaces every run gets.
    pub namespaces: Vec<&'static str>,
    /// How cgroups are used.
    pub cgroups: String,
    /// How the memory limit is enforced.
    pub memory_limit: String,
    /// How the process limit is enforced.
    pub pids_limit: String,
    /// Whether the seccomp filter is applied.
    pub seccomp: bool,
    /// Landlock ABI version applied, when the kernel has Landlock.
    pub landlock_abi: Option<u32>,
    /// Egress for runs that ask for network.
    pub network_egress: String,
    /// What is weaker than full isolation, in words.
    pub warnings: Vec<String>,
}
