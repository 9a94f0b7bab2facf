//! Steps of the child's set-up. A failing step is reported to the parent as `(stage, errno)` through a pipe (the
//! child cannot allocate, so it cannot send text); the parent turns it into a message ([`setup_error`]).

use crate::SandboxError;

/// One step of the sandbox set-up, as reported by the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// Waiting for the parent's go-ahead.
    Sync = 1,
    /// Entering a new cgroup namespace.
    CgroupNamespace,
    /// Making the mount tree private.
    PrivateMounts,
    /// Mounting the root tmpfs.
    RootTmpfs,
    /// Switching to the sandbox user.
    SwitchUser,
    /// Arming the parent-death signal.
    ParentDeathSignal,
    /// Creating a directory in the new root.
    Mkdir,
    /// Bind-mounting a host path: opening it, creating a file to mount it on, mounting it.
    Bind,
    /// Remounting a bind (or `/dev`) with its final flags: read-only unless writable, always nosuid and nodev.
    BindReadOnly,
    /// Mounting a tmpfs.
    Tmpfs,
    /// Creating a symbolic link.
    Symlink,
    /// Writing a generated file.
    WriteFile,
    /// Copying the workspace into `/work`.
    CopyWorkspace,
    /// Mounting `/proc`.
    Proc,
    /// Switching to the new root.
    PivotRoot,
    /// Detaching the host's root.
    DetachOldRoot,
    /// Making the root read-only.
    RootReadOnly,
    /// Setting the host name.
    Hostname,
    /// Bringing up the loopback interface.
    Loopback,
    /// Forking the program.
    Fork,
    /// Wiring standard input and output.
    Stdio,
    /// Entering the working directory.
    Chdir,
    /// Setting resource limits.
    Rlimit,
    /// Dropping capabilities.
    Capabilities,
    /// Setting no_new_privs.
    NoNewPrivs,
    /// Applying the Landlock ruleset.
    Landlock,
    /// Loading the seccomp filter.
    Seccomp,
    /// Executing the program.
    Exec,
}

impl Stage {
    const ALL: [Stage; 28] = [
        Stage::Sync,
        Stage::CgroupNamespace,
        Stage::PrivateMounts,
        Stage::RootTmpfs,
        Stage::SwitchUser,
        Stage::ParentDeathSignal,
        Stage::Mkdir,
        Stage::Bind,
        Stage::BindReadOnly,
        Stage::Tmpfs,
        Stage::Symlink,
        Stage::WriteFile,
        Stage::CopyWorkspace,
        Stage::Proc,
        Stage::PivotRoot,
        Stage::DetachOldRoot,
        Stage::RootReadOnly,
        Stage::Hostname,
        Stage::Loopback,
        Stage::Fork,
        Stage::Stdio,
        Stage::Chdir,
        Stage::Rlimit,
        Stage::Capabilities,
        Stage::NoNewPrivs,
        Stage::Landlock,
        Stage::Seccomp,
        Stage::Exec,
    ];

    /// Decodes a stage number sent by the child.
    pub fn from_u32(n: u32) -> Option<Stage> {
        Self::ALL.into_iter().find(|s| *s as u32 == n)
    }

    /// What the step does, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Stage::Sync => "waiting for the go-ahead",
            Stage::CgroupNamespace => "entering a cgroup namespace",
            Stage::PrivateMounts => "making mounts private",
            Stage::RootTmpfs => "mounting the sandbox root",
            Stage::SwitchUser => "switching to the sandbox user",
            Stage::ParentDeathSignal => "arming the parent-death signal",
            Stage::Mkdir => "creating a mount point",
            Stage::Bind => "bind-mounting a host path",
            Stage::BindReadOnly => "making a bind mount read-only",
            Stage::Tmpfs => "mounting a tmpfs",
            Stage::Symlink => "creating a symbolic link",
            Stage::WriteFile => "writing a file into the sandbox",
            Stage::CopyWorkspace => "copying the workspace into /work",
            Stage::Proc => "mounting /proc",
            Stage::PivotRoot => "switching to the sandbox root",
            Stage::DetachOldRoot => "detaching the host root",
            Stage::RootReadOnly => "making the root read-only",
            Stage::Hostname => "setting the host name",
            Stage::Loopback => "bringing up the loopback interface",
            Stage::Fork => "starting the program",
            Stage::Stdio => "connecting standard input and output",
            Stage::Chdir => "entering the working directory",
            Stage::Rlimit => "setting resource limits",
            Stage::Capabilities => "dropping capabilities",
            Stage::NoNewPrivs => "setting no_new_privs",
            Stage::Landlock => "applying the Landlock ruleset",
            Stage::Seccomp => "loading the seccomp filter",
            Stage::Exec => "executing the program",
        }
    }
}

/// The wire form of a failure: stage, errno and the index of the plan item involved (or `u32::MAX`).
pub const REPORT_BYTES: usize = 12;

/// Encodes a failure report.
pub fn encode(stage: Stage, errno: i32, item: u32) -> [u8; REPORT_BYTES] {
    let mut out = [0u8; REPORT_BYTES];
    out[..4].copy_from_slice(&(stage as u32).to_ne_bytes());
    out[4..8].copy_from_slice(&errno.to_ne_bytes());
    out[8..].copy_from_slice(&item.to_ne_bytes());
    out
}

/// Decodes a failure report.
pub fn decode(bytes: &[u8; REPORT_BYTES]) -> (Option<Stage>, i32, u32) {
    let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
    (Stage::from_u32(u32::from_ne_bytes(word(0))), i32::from_ne_bytes(word(4)), u32::from_ne_bytes(word(8)))
}

/// The error a failure report stands for. `labels` name the root operations (`plan::OpsBuilder::labels`), so that
/// the message says which mount or file failed.
pub(crate) fn setup_error(bytes: &[u8; REPORT_BYTES], labels: &[String]) -> SandboxError {
    let (stage, errno, item) = decode(bytes);
    let cause = std::io::Error::from_raw_os_error(errno);
    let what = stage.map(Stage::describe).unwrap_or("setting up the sandbox");
    let subject = labels.get(item as usize).map(|l| format!(" ({l})")).unwrap_or_default();
    match (stage, errno) {
        (Some(Stage::CopyWorkspace), libc::ENOSPC) => SandboxError::WorkspaceTooLarge,
        (Some(Stage::Exec), libc::ENOENT) => SandboxError::ProgramNotFound,
        _ => SandboxError::Setup(format!("{what}{subject}: {cause}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(decode(&encode(stage, 13, 7)), (Some(stage), 13, 7));
            assert!(!stage.describe().is_empty());
        }
        assert_eq!(Stage::from_u32(0), None);
    }

    #[test]
    fn reports_become_errors_naming_the_failed_operation() {
        let labels = vec!["/usr -> /usr".to_string(), "/src -> /opt/data".to_string()];
        let err = setup_error(&encode(Stage::Bind, libc::EACCES, 1), &labels);
        assert!(
            matches!(&err, SandboxError::Setup(m) if m.starts_with("bind-mounting a host path (/src -> /opt/data): ")),
            "{err:?}"
        );
        let err = setup_error(&encode(Stage::Seccomp, libc::EINVAL, u32::MAX), &labels);
        assert!(matches!(&err, SandboxError::Setup(m) if m.starts_with("loading the seccomp filter: ")), "{err:?}");
        let full = setup_error(&encode(Stage::CopyWorkspace, libc::ENOSPC, 7), &labels);
        assert!(matches!(full, SandboxError::WorkspaceTooLarge));
        let missing = setup_error(&encode(Stage::Exec, libc::ENOENT, u32::MAX), &labels);
        assert!(matches!(missing, SandboxError::ProgramNotFound));
    }
}
