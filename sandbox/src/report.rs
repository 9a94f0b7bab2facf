//! What isolation this host actually gives, for `/health` and the start-up log.

use serde::Serialize;

use crate::cgroup::CgroupLayout;
use crate::config::SandboxConfig;
use crate::network::Egress;

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
    /// `full` only with every mechanism in place; `warnings` say what is missing otherwise.
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

/// The report of a host with these mechanisms, warnings included for each one that is missing.
pub(crate) fn build(
    config: &SandboxConfig,
    rootful: bool,
    euid: u32,
    cgroups: &CgroupLayout,
    landlock_abi: Option<u32>,
    egress: &Result<Egress, String>,
) -> IsolationReport {
    let mut warnings = Vec::new();
    let user = if rootful {
        format!(
            "uid {} inside; a fresh unprivileged host uid per run ({}..{})",
            config.sandbox_uid,
            config.host_uid_base,
            u64::from(config.host_uid_base) + u64::from(config.host_uid_count) - 1
        )
    } else {
        warnings.push(format!(
            "the server is not root: sandboxes run as the server's own host uid {euid}, so they are separated from \
             the host by namespaces, seccomp and Landlock only, and share one uid with each other"
        ));
        format!("uid {} inside; the server's host uid {euid}", config.sandbox_uid)
    };
    let (memory_limit, pids_limit) = if cgroups.is_available() {
        ("cgroup (out-of-memory kills the program: exit 137)".to_string(), "cgroup pids.max and RLIMIT_NPROC".into())
    } else {
        warnings.push(format!(
            "cgroups are unavailable ({}): memory is capped with RLIMIT_DATA (allocations fail instead of an OOM \
             kill; files in /work and /tmp are bounded by their tmpfs size only) and processes with RLIMIT_NPROC",
            cgroups.describe()
        ));
        ("RLIMIT_DATA (approximate)".into(), "RLIMIT_NPROC".into())
    };
    if landlock_abi.is_none() {
        warnings.push("the kernel has no Landlock: file-system access is limited by the mount namespace only".into());
    }
    let network_egress = match egress {
        Ok(e) => e.describe(),
        Err(reason) => {
            warnings.push(format!("runs asking for network are refused: {reason}"));
            format!("unavailable: {reason}")
        }
    };
    IsolationReport {
        level: if rootful && cgroups.is_available() { IsolationLevel::Full } else { IsolationLevel::Reduced },
        privileged: rootful,
        user,
        namespaces: vec!["user", "mount", "pid", "network", "ipc", "uts", "cgroup"],
        cgroups: cgroups.describe(),
        memory_limit,
        pids_limit,
        seccomp: true,
        landlock_abi,
        network_egress,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_without_root_or_cgroups_is_reduced_and_says_why() {
        let config = SandboxConfig::new("/nonexistent");
        let cgroups = CgroupLayout::Unavailable { reason: "no cgroup hierarchy is mounted".into() };
        let report = build(&config, false, 1234, &cgroups, None, &Err("pasta is not installed".into()));
        assert_eq!(report.level, IsolationLevel::Reduced);
        assert!(!report.privileged);
        assert_eq!(report.user, "uid 1000 inside; the server's host uid 1234");
        assert_eq!(report.memory_limit, "RLIMIT_DATA (approximate)");
        assert_eq!(report.network_egress, "unavailable: pasta is not installed");
        assert_eq!(report.warnings.len(), 4, "{:?}", report.warnings);
        assert!(report.warnings[1].contains("no cgroup hierarchy is mounted"));
    }

    #[test]
    fn root_with_cgroups_is_full() {
        let config = SandboxConfig::new("/nonexistent");
        let cgroups = CgroupLayout::Unified { parent: "/sys/fs/cgroup/pyexec".into(), cpu: true };
        let report = build(&config, true, 0, &cgroups, Some(6), &Err("no egress".into()));
        assert_eq!(report.level, IsolationLevel::Full);
        assert_eq!(report.user, "uid 1000 inside; a fresh unprivileged host uid per run (2000000000..2000065535)");
        assert_eq!(report.pids_limit, "cgroup pids.max and RLIMIT_NPROC");
        assert_eq!(report.warnings, ["runs asking for network are refused: no egress"]);
    }
}
