//! The parent's hold on a cloned child (pid 1 of the sandbox): its pidfd, through which it is awaited, killed and
//! reaped. Signals go through the pidfd, never a pid number, so a recycled pid can never be hit, and an early drop
//! (an error path, a cancelled request) kills and reaps the child, leaving neither a process nor a zombie.

use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use crate::SandboxError;
use crate::launcher::Spawned;

/// A cloned child until it is reaped.
pub(crate) struct LiveChild {
    pub pid: i32,
    /// Whether it was born in its v2 cgroup (otherwise the parent moves it there).
    pub in_cgroup: bool,
    pidfd: Option<OwnedFd>,
}

impl LiveChild {
    pub(crate) fn new(s: Spawned) -> Self {
        Self { pid: s.pid, in_cgroup: s.in_cgroup, pidfd: Some(s.pidfd) }
    }

    fn fd(&self) -> Result<&OwnedFd, SandboxError> {
        self.pidfd.as_ref().ok_or_else(|| SandboxError::Io(std::io::Error::other("child already reaped")))
    }

    /// Resolves when the child (pid 1 of the sandbox) has exited; its pidfd becomes readable then.
    pub(crate) async fn exited(&self) -> Result<(), SandboxError> {
        let fd = self.fd()?;
        let dup = fd.try_clone().map_err(SandboxError::Io)?;
        // SAFETY: `dup` is an owned, open descriptor that the AsyncFd keeps (and closes) for its whole life.
        let afd = unsafe { AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE) }
            .map_err(|e| SandboxError::Io(std::io::Error::other(e.to_string())))?;
        let _ready = afd.readable().await.map_err(SandboxError::Io)?;
        Ok(())
    }

    /// Whether the child has exited already (without waiting).
    pub(crate) fn has_exited(&self) -> bool {
        let Ok(fd) = self.fd() else { return true };
        let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
        let now = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
        matches!(rustix::event::poll(&mut fds, Some(&now)), Ok(n) if n > 0)
    }

    /// SIGKILL to pid 1 of the sandbox: the kernel then kills every process of its pid namespace.
    pub(crate) fn kill(&self) {
        if let Ok(fd) = self.fd() {
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
        }
    }

    /// Collects the exited child, so that no zombie is left.
    pub(crate) fn reap(mut self) -> Result<(), SandboxError> {
        if let Some(fd) = self.pidfd.take() {
            rustix::process::waitid(rustix::process::WaitId::PidFd(fd.as_fd()), rustix::process::WaitIdOptions::EXITED)
                .map_err(|e| SandboxError::Io(e.into()))?;
        }
        Ok(())
    }
}

impl Drop for LiveChild {
    fn drop(&mut self) {
        if let Some(fd) = self.pidfd.take() {
            let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
            // Dying after SIGKILL takes microseconds; reap so no zombie is left.
            let _ = rustix::process::waitid(
                rustix::process::WaitId::PidFd(fd.as_fd()),
                rustix::process::WaitIdOptions::EXITED,
            );
        }
    }
}
