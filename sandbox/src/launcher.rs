//! The thread that clones sandboxes.
//!
//! The parent-death signal fires when the *thread* that created the child exits, not the process. Tokio's blocking
//! threads come and go, so every sandbox is cloned from this one dedicated thread, which lives as long as the
//! process. Cloning is quick (the child then waits for its go-ahead), so one thread serves all runs.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::thread;

use tokio::sync::oneshot;

use crate::SandboxError;
use crate::plan::ChildPlan;

/// A cloned child, stopped before its go-ahead.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    /// Whether the child was born inside the v2 cgroup (otherwise the parent moves it).
    pub in_cgroup: bool,
}

struct Request {
    plan: Box<ChildPlan>,
    /// Descriptors only the child needs: closed in the parent right after the clone.
    child_only: Vec<OwnedFd>,
    cgroup: Option<OwnedFd>,
    reply: oneshot::Sender<Result<Spawned, SandboxError>>,
}

/// Handle to the launcher thread.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    tx: mpsc::Sender<Request>,
}

const NAMESPACES: u64 = (libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS) as u64;

/// `CLONE_INTO_CGROUP` (libc's constant has the wrong width).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Size of `struct clone_args` up to `tls` (Linux 5.3); the `cgroup` field came with 5.7.
const CLONE_ARGS_SIZE_VER0: usize = 64;

impl Launcher {
    pub(crate) fn start() -> Result<Self, SandboxError> {
        let (tx, rx) = mpsc::channel::<Request>();
        thread::Builder::new()
            .name("pyexec-sandbox-launcher".into())
            // The children run on a copy of this stack until they exec; the workspace copy recurses.
            .stack_size(32 << 20)
            .spawn(move || {
                for request in rx {
                    let Request { plan, child_only, cgroup, reply } = request;
                    let result = clone_child(&plan, cgroup.as_ref());
                    drop(child_only);
                    drop(cgroup);
                    drop(plan);
                    let _ = reply.send(result);
                }
            })
            .map_err(|e| SandboxError::Unavailable(format!("cannot start the sandbox launcher thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Clones a child that will carry out `plan` once released.
    pub(crate) async fn spawn(
        &self,
        plan: ChildPlan,
        child_only: Vec<OwnedFd>,
        cgroup: Option<OwnedFd>,
    ) -> Result<Spawned, SandboxError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { plan: Box::new(plan), child_only, cgroup, reply })
            .map_err(|_| SandboxError::Unavailable("the sandbox launcher thread is gone".into()))?;
        rx.await.map_err(|_| SandboxError::Unavailable("the sandbox launcher thread is gone".into()))?
    }
}

fn clone_child(plan: &ChildPlan, cgroup: Option<&OwnedFd>) -> Result<Spawned, SandboxError> {
    match clone3(plan, cgroup) {
        // Kernels 5.3 to 5.6 lack CLONE_INTO_CGROUP: clone outside and let the parent move the child.
        Err(e) if cgroup.is_some() && matches!(e.raw_os_error(), Some(libc::E2BIG) | Some(libc::EINVAL)) => {
            clone3(plan, None).map(|mut s| {
                s.in_cgroup = false;
                s
            })
        }
        other => other,
    }
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            SandboxError::Unavailable("the kernel lacks clone3 (Linux 5.3 or later is needed)".into())
        }
        Some(libc::EPERM) | Some(libc::ENOSPC) | Some(libc::EUSERS) => SandboxError::Unavailable(format!(
            "cannot create namespaces ({e}); user namespaces may be disabled (sysctl user.max_user_namespaces, \
             kernel.unprivileged_userns_clone) or the container runtime forbids them"
        )),
        _ => SandboxError::Io(e),
    })
}

fn clone3(plan: &ChildPlan, cgroup: Option<&OwnedFd>) -> std::io::Result<Spawned> {
    let mut pidfd: libc::c_int = -1;
    let mut flags = NAMESPACES | libc::CLONE_PIDFD as u64;
    let mut size = CLONE_ARGS_SIZE_VER0;
    // SAFETY: clone_args is plain data; all-zero is its neutral value.
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    if let Some(cg) = cgroup {
        flags |= CLONE_INTO_CGROUP;
        args.cgroup = cg.as_raw_fd() as u64;
        size = std::mem::size_of::<libc::clone_args>();
    }
    args.flags = flags;
    args.pidfd = &mut pidfd as *mut libc::c_int as u64;
    args.exit_signal = libc::SIGCHLD as u64;
    // SAFETY: clone3 without CLONE_VM and without a stack behaves like fork: the child continues here on a copy of
    // this thread's stack. The child only runs `child::main`, which never returns and never allocates.
    let pid = unsafe { libc::syscall(libc::SYS_clone3, &args as *const libc::clone_args, size) };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: we are the freshly cloned child, and `plan` was built by this crate.
        unsafe { crate::child::main(plan) }
    }
    // SAFETY: CLONE_PIDFD stored a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Spawned { pid: pid as i32, pidfd, in_cgroup: cgroup.is_some() })
}
