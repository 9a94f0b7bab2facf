//! Settings of the sandbox on one host.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// How sandboxes are made on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// A directory for the sandbox's own state (an empty mount point lives here). Created if missing.
    pub state_dir: PathBuf,
    /// First host uid (and gid) given to sandboxes when the server runs as root; must belong to no real user.
    pub host_uid_base: u32,
    /// How many consecutive host uids sandboxes may use (at least the number of concurrent runs).
    pub host_uid_count: u32,
    /// Host uid (and gid) of runs with the service identity (the dependency installer); default: the uid just
    /// below `host_uid_base`.
    pub service_uid: Option<u32>,
    /// The program's uid and gid inside the sandbox.
    pub sandbox_uid: u32,
    /// Host name inside the sandbox.
    pub hostname: String,
    /// Egress networking for runs that ask for it.
    pub network: NetworkConfig,
    /// On hosts with v1 cgroup controllers, remount the v2 hierarchy with `favordynmods` so that moving each
    /// sandbox into its cgroups does not wait for an RCU grace period (about 10 ms). A host-wide setting: see
    /// `docs/security.md`.
    pub favor_dynmods: bool,
}

/// Egress for runs with network: a user-space network stack (pasta) plus a firewall inside the sandbox's network
/// namespace that lets only the public internet through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// `pasta` binary; `None` looks it up on `PATH`.
    pub pasta: Option<PathBuf>,
    /// `nft` binary; `None` looks it up on `PATH`.
    pub nft: Option<PathBuf>,
    /// Address inside the sandbox that pasta forwards to the host's resolver (the only private address allowed,
    /// port 53 only).
    pub dns_address: Ipv4Addr,
    /// Extra destination ranges to refuse, in nftables notation (`203.0.113.0/24`, `fd12::/16`).
    pub extra_blocked: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self { pasta: None, nft: None, dns_address: Ipv4Addr::new(10, 0, 2, 3), extra_blocked: Vec::new() }
    }
}

impl SandboxConfig {
    /// Defaults with the given state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            host_uid_base: 2_000_000_000,
            host_uid_count: 65_536,
            service_uid: None,
            sandbox_uid: 1000,
            hostname: "sandbox".into(),
            network: NetworkConfig::default(),
            favor_dynmods: true,
        }
    }
}
