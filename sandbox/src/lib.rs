//! Linux isolation of one process tree, for running untrusted programs on one machine.
//!
//! Each [`Sandbox::run`] clones a child into fresh user, mount, pid, network, IPC, UTS and cgroup namespaces. The
//! child builds a minimal read-only root on a tmpfs (the host's `/usr`, the interpreter, a few generated `/etc`
//! files, a handful of device nodes, a fresh `/proc`, no `/sys`), copies the workspace into a size-capped `/work`,
//! pivots into it and starts the program as an unprivileged user whose host uid is never 0: a fresh unprivileged
//! host uid per run when the server is root, the server's own uid otherwise. The program has no capabilities,
//! `no_new_privs`, a seccomp filter and (where the kernel has it) Landlock; memory, process and CPU limits come from
//! a per-run cgroup (v1 or v2); the wall clock kills the whole pid namespace. Network is off (an empty namespace)
//! unless asked for, and then limited to the public internet.
//!
//! Layout: [`config`] and [`spec`] are the API. `rootfs_plan` decides the new root's layout and `plan` holds
//! everything the child needs, prepared in the parent; `launcher` clones the child from a dedicated thread and
//! `live_child` holds it until it is reaped; `child` runs inside (after `disguise` hides the server from it) and
//! reports a failing step as a `stage`; `cgroup`, `uid`, `network`, `seccomp` and `landlock` each own one
//! mechanism, and `io` the program's pipes; [`Sandbox`] ties them together and [`report`] says what this host
//! guarantees.

mod cgroup;
mod child;
pub mod config;
mod disguise;
mod interactive;
mod io;
mod landlock;
mod launcher;
mod live_child;
mod network;
mod plan;
mod prepared;
pub mod report;
mod rootfs_plan;
mod sandbox;
mod seccomp;
pub mod spec;
mod stage;
mod uid;

pub use config::{NetworkConfig, SandboxConfig};
pub use interactive::{Interactive, Outputs};
pub use prepared::{Handover, Prepared};
pub use report::{IsolationLevel, IsolationReport};
pub use sandbox::Sandbox;
pub use spec::{
    Bind, Captured, ExitStatus, GeneratedFile, HostEntry, Identity, MAX_EXTRA_OUTPUTS, Network, Outcome, OutputChunk,
    RunLimits, RunSpec, Stream,
};

/// Deepest directory nesting of a workspace that the sandbox copies into `/work` (deeper trees fail the run).
pub const MAX_WORKSPACE_DEPTH: u32 = 128;

/// Why a sandbox could not run a program.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// This host cannot build sandboxes (missing kernel feature, no permission); the message says what to fix.
    #[error("sandbox unavailable: {0}")]
    Unavailable(String),
    /// The run's specification is unusable.
    #[error("invalid sandbox specification: {0}")]
    InvalidSpec(String),
    /// A step of building the sandbox failed.
    #[error("sandbox set-up failed while {0}")]
    Setup(String),
    /// The workspace does not fit into `/work`.
    #[error("the workspace does not fit into /work (raise disk_mb)")]
    WorkspaceTooLarge,
    /// The program's file does not exist inside the sandbox.
    #[error("the program to run does not exist in the sandbox")]
    ProgramNotFound,
    /// Network was asked for and cannot be given safely.
    #[error("{0}")]
    Network(String),
    /// An operating-system error in the parent.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SandboxError {
    /// What a client may be told. The full error names host paths (the state directory, the workspace, cgroups,
    /// bind sources) and belongs in the server's log; this text names none.
    pub fn client_message(&self) -> String {
        match self {
            SandboxError::WorkspaceTooLarge | SandboxError::ProgramNotFound => self.to_string(),
            SandboxError::Network(_) => "network access could not be set up for this run".into(),
            SandboxError::Unavailable(_) => "the sandbox is unavailable on this server".into(),
            SandboxError::InvalidSpec(_) | SandboxError::Setup(_) | SandboxError::Io(_) => {
                "the sandbox could not be set up for this run".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SandboxError;

    #[test]
    fn client_messages_name_no_host_path() {
        let secret = "/var/lib/python-executor/sandbox/root";
        for e in [
            SandboxError::Unavailable(format!("cannot create {secret}")),
            SandboxError::InvalidSpec(format!("cannot use {secret} in the sandbox")),
            SandboxError::Setup(format!("copying the workspace {secret} -> /work: too deep")),
            SandboxError::Network(format!("pasta could not attach: {secret}")),
            SandboxError::Io(std::io::Error::other(secret)),
        ] {
            assert!(e.to_string().contains(secret), "the log keeps the detail");
            assert!(!e.client_message().contains(secret), "{e:?}");
            assert!(!e.client_message().is_empty());
        }
    }
}
