//! A built sandbox whose program is running but has not been given its work yet: [`Prepared`].
//!
//! Every run goes through one: a cold run builds it and hands the work over at once; a warm pool builds it ahead
//! of demand, waits until the program says it is ready, and hands the work over when a request claims it. The
//! hand-over ([`Handover`]) carries what may differ between requests served by the same kind of sandbox: standard
//! input (which also carries the work itself for a waiting program), the memory and CPU limits (written into the
//! run's cgroup), the output caps and the timeout, which counts from the hand-over.
//!
//! A `Prepared` owns the run's host uid, cgroups, child and network. Dropped without a run it kills the whole
//! tree, reaps it and removes the cgroups, so an idle sandbox that is thrown away leaves nothing behind.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::SandboxError;
use crate::cgroup::RunCgroup;
use crate::io;
use crate::live_child::LiveChild;
use crate::network::EgressGuard;
use crate::sandbox::cgroup_limits;
use crate::spec::{ExitStatus, Outcome, OutputChunk, RunLimits, Stream};
use crate::stage::{self, REPORT_BYTES};
use crate::uid::UidLease;

/// What a run is given when its work is handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    /// Bytes written to standard input before `stdin` (a waiting program's work).
    pub preamble: Vec<u8>,
    /// Bytes written to standard input (after the preamble), then end-of-file.
    pub stdin: Vec<u8>,
    /// The run's limits from now on. `pids`, `workspace_bytes` and `tmp_bytes` are fixed when the sandbox is built
    /// and must equal the built ones; memory and CPU are rewritten into the cgroup; the timeout and the output
    /// caps start here.
    pub limits: RunLimits,
}

/// The parent's ends of the child's pipes.
pub(crate) struct ChildPipes {
    pub sync_w: OwnedFd,
    pub report_r: OwnedFd,
    pub status_r: OwnedFd,
    pub stdin_w: OwnedFd,
    pub stdout_r: OwnedFd,
    pub stderr_r: OwnedFd,
    pub extra_r: Vec<OwnedFd>,
}

/// See the module documentation.
pub struct Prepared {
    cgroup: Option<RunCgroup>,
    lease: Option<UidLease>,
    child: Option<LiveChild>,
    pipes: Option<ChildPipes>,
    labels: Vec<String>,
    egress: Option<EgressGuard>,
    /// References to the run's namespaces (see [`Prepared::hold_namespaces`]).
    namespaces: Vec<OwnedFd>,
    /// The limits the sandbox was built with.
    built: RunLimits,
    /// Where the destruction after a run is tracked, so that a stopping server can wait for it.
    cleanups: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("pid", &self.child.as_ref().map(|c| c.pid)).finish()
    }
}

impl Prepared {
    pub(crate) fn new(
        cgroup: Option<RunCgroup>,
        lease: Option<UidLease>,
        built: RunLimits,
        cleanups: tokio_util::task::TaskTracker,
    ) -> Self {
        Self {
            cgroup,
            lease,
            child: None,
            pipes: None,
            labels: Vec::new(),
            egress: None,
            namespaces: Vec::new(),
            built,
            cleanups,
        }
    }

    pub(crate) fn cgroup(&self) -> Option<&RunCgroup> {
        self.cgroup.as_ref()
    }

    pub(crate) fn child(&self) -> Result<&LiveChild, SandboxError> {
        self.child.as_ref().ok_or_else(|| SandboxError::Io(std::io::Error::other("the sandbox has no child")))
    }

    pub(crate) fn attach_child(&mut self, child: LiveChild, pipes: ChildPipes, labels: Vec<String>) {
        self.hold_namespaces(child.pid);
        self.child = Some(child);
        self.pipes = Some(pipes);
        self.labels = labels;
    }

    /// Keeps the run's mount and network namespaces referenced from here. Without this, the last process of the
    /// run takes them down as it exits (unmounting the whole root waits for an RCU grace period), and only then
    /// is its exit reported: with the references, the exit is reported at once and the namespaces go when the
    /// sandbox is destroyed, after the result. Best effort: a namespace that cannot be opened is simply not held.
    fn hold_namespaces(&mut self, pid: i32) {
        for ns in ["mnt", "net"] {
            let path = format!("/proc/{pid}/ns/{ns}");
            match rustix::fs::open(
                path.as_str(),
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            ) {
                Ok(fd) => self.namespaces.push(fd),
                Err(e) => tracing::debug!(namespace = ns, error = %e, "not holding a run namespace"),
            }
        }
    }

    /// The go-ahead: the child builds its root and executes the program.
    pub(crate) fn release(&mut self, egress: Option<EgressGuard>) -> Result<(), SandboxError> {
        self.egress = egress;
        let pipes = self.pipes()?;
        rustix::io::write(&pipes.sync_w, &[1]).map_err(|e| SandboxError::Io(e.into()))?;
        Ok(())
    }

    fn pipes(&self) -> Result<&ChildPipes, SandboxError> {
        self.pipes.as_ref().ok_or_else(|| SandboxError::Io(std::io::Error::other("the sandbox's pipes are gone")))
    }

    /// The program's standard input, output and error and its extra outputs, for an owner that talks with it
    /// (the set-up pipes stay here, so that the sandbox's init keeps running).
    #[allow(clippy::type_complexity)]
    pub(crate) fn take_program_pipes(&mut self) -> Result<(OwnedFd, OwnedFd, OwnedFd, Vec<OwnedFd>), SandboxError> {
        let pipes = self.pipes.as_mut().ok_or_else(|| SandboxError::Io(std::io::Error::other("no pipes")))?;
        // Each taken descriptor leaves /dev/null in its place, which the sandbox's teardown closes harmlessly.
        let take = |fd: &mut OwnedFd| -> Result<OwnedFd, SandboxError> {
            let null = rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| SandboxError::Io(e.into()))?;
            Ok(std::mem::replace(fd, null))
        };
        let (stdin, stdout, stderr) =
            (take(&mut pipes.stdin_w)?, take(&mut pipes.stdout_r)?, take(&mut pipes.stderr_r)?);
        let extras = std::mem::take(&mut pipes.extra_r);
        Ok((stdin, stdout, stderr, extras))
    }

    /// The limits the sandbox was built with.
    pub fn built_limits(&self) -> &RunLimits {
        &self.built
    }

    /// Whether the sandbox is still intact: its pid 1 (and so the program) has not exited.
    pub fn is_alive(&self) -> bool {
        self.child.as_ref().is_some_and(|c| !c.has_exited())
    }

    /// Memory the run's cgroup holds now (the program, its files in `/work` and `/tmp`), when cgroups are used.
    pub fn memory_bytes(&self) -> Option<u64> {
        self.cgroup.as_ref().and_then(RunCgroup::memory_current)
    }

    /// Waits until the program writes `token` on extra output `index` (its way of saying it is ready for its
    /// work). Fails when it writes anything else, exits first (with the set-up step that failed, if one did) or
    /// stays silent for `timeout`.
    pub async fn wait_ready(&mut self, index: usize, token: &[u8], timeout: Duration) -> Result<(), SandboxError> {
        let not_ready = |why: String| SandboxError::Setup(format!("waiting for the program to be ready: {why}"));
        let pipes = self.pipes.as_mut().ok_or_else(|| not_ready("the sandbox's pipes are gone".into()))?;
        if index >= pipes.extra_r.len() {
            return Err(SandboxError::InvalidSpec(format!("no extra output {index}")));
        }
        let fd = pipes.extra_r.remove(index);
        let mut rx = pipe::Receiver::from_owned_fd(fd)?;
        let mut got = vec![0u8; token.len()];
        let read = tokio::time::timeout(timeout, rx.read_exact(&mut got)).await;
        pipes.extra_r.insert(index, rx.into_nonblocking_fd()?);
        match read {
            Ok(Ok(_)) if got == token => Ok(()),
            Ok(Ok(_)) => Err(not_ready(format!("it wrote {:?}", String::from_utf8_lossy(&got)))),
            Ok(Err(_)) => Err(self.failure().await.unwrap_or_else(|| not_ready("it exited".into()))),
            Err(_) => Err(not_ready(format!("nothing within {timeout:?}"))),
        }
    }

    /// After the child exited early: the set-up step that failed, if it reported one.
    async fn failure(&mut self) -> Option<SandboxError> {
        let child = self.child.as_ref()?;
        if tokio::time::timeout(Duration::from_secs(5), child.exited()).await.is_err() {
            child.kill();
        }
        let pipes = self.pipes.take()?;
        let report = io::read_small(pipes.report_r, REPORT_BYTES).await;
        let bytes: [u8; REPORT_BYTES] = report.get(..REPORT_BYTES)?.try_into().ok()?;
        Some(stage::setup_error(&bytes, &self.labels))
    }

    /// Hands the work over and runs the program to its end: applies the limits, feeds standard input, streams the
    /// output (to `events` as it comes), enforces the timeout from now on and cancellation, reaps the tree and
    /// says how it ended. The sandbox is destroyed afterwards.
    pub async fn run(
        mut self,
        handover: Handover,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Result<Outcome, SandboxError> {
        let result = self.run_inner(handover, events, cancel).await;
        // Every process of the run is gone by now (pid 1 was reaped, which takes its namespace down): removing
        // the cgroups and returning the host uid need not delay the result.
        let cleanups = self.cleanups.clone();
        cleanups.spawn(self.destroy());
        result
    }

    async fn run_inner(
        &mut self,
        handover: Handover,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Result<Outcome, SandboxError> {
        let Handover { preamble, stdin, limits } = handover;
        let fixed = |l: &RunLimits| (l.pids, l.workspace_bytes, l.tmp_bytes);
        if fixed(&limits) != fixed(&self.built) {
            return Err(SandboxError::InvalidSpec(
                "a hand-over cannot change the process count or file system sizes of a built sandbox".into(),
            ));
        }
        if let Some(cgroup) = &self.cgroup
            && cgroup_limits(&limits) != cgroup_limits(&self.built)
        {
            cgroup.set_limits(&cgroup_limits(&limits), &cgroup_limits(&self.built)).map_err(SandboxError::Io)?;
        }
        let child = self.child.take().ok_or_else(|| SandboxError::Io(std::io::Error::other("no child")))?;
        let ChildPipes { sync_w, report_r, status_r, stdin_w, stdout_r, stderr_r, extra_r } =
            self.pipes.take().ok_or_else(|| SandboxError::Io(std::io::Error::other("no pipes")))?;

        // Readers first, so that nothing the program writes can fill a pipe before we listen.
        let stdout = tokio::spawn(io::capture(stdout_r, limits.stdout_bytes, Stream::Stdout, events.clone()));
        let stderr = tokio::spawn(io::capture(stderr_r, limits.stderr_bytes, Stream::Stderr, events));
        let report = tokio::spawn(io::read_small(report_r, REPORT_BYTES));
        let extra_cap = limits.stdout_bytes.max(1 << 20).max(limits.extra_bytes) + 64;
        let extras: Vec<_> = extra_r.into_iter().map(|r| tokio::spawn(io::read_small(r, extra_cap))).collect();
        let stdin = tokio::spawn(io::feed_stdin(stdin_w, preamble, stdin));
        let started = Instant::now();

        let (timed_out, cancelled) = tokio::select! {
            r = child.exited() => { r?; (false, false) }
            () = tokio::time::sleep(limits.timeout) => (true, false),
            () = cancel.cancelled() => (false, true),
        };
        if timed_out || cancelled {
            if let Some(c) = &self.cgroup {
                c.kill();
            }
            child.kill();
            child.exited().await?;
        }
        child.reap()?;
        let duration = started.elapsed();
        stdin.abort();
        drop(sync_w);
        self.egress = None;

        // Every process of the namespace is gone, so every pipe is at end-of-file.
        let status_bytes = io::read_small(status_r, 4).await;
        let failure = join(report).await?;
        if failure.len() >= REPORT_BYTES && !(timed_out || cancelled) {
            let mut bytes = [0u8; REPORT_BYTES];
            bytes.copy_from_slice(&failure[..REPORT_BYTES]);
            return Err(stage::setup_error(&bytes, &self.labels));
        }
        let stdout = join(stdout).await?.map_err(SandboxError::Io)?;
        let stderr = join(stderr).await?.map_err(SandboxError::Io)?;
        let mut extra = Vec::with_capacity(extras.len());
        for task in extras {
            extra.push(join(task).await?);
        }
        let status = match <[u8; 4]>::try_from(status_bytes.as_slice()) {
            Ok(raw) => decode_wait_status(i32::from_ne_bytes(raw)),
            // The program's init was killed before the program ended (timeout or cancellation).
            Err(_) => ExitStatus::Signaled(libc::SIGKILL),
        };
        Ok(Outcome {
            status,
            timed_out,
            cancelled,
            oom_killed: self.cgroup.as_ref().is_some_and(RunCgroup::oom_killed),
            stdout,
            stderr,
            extras: extra,
            duration,
        })
    }

    /// Kills what is left, reaps it, removes the cgroups and gives the host uid back.
    pub async fn destroy(mut self) {
        self.teardown_async().await;
    }

    async fn teardown_async(&mut self) {
        if let Some(c) = &self.cgroup {
            c.kill();
        }
        // Dropping the child kills pid 1 through its pidfd and reaps it.
        drop(self.child.take());
        self.pipes = None;
        self.egress = None;
        let namespaces = std::mem::take(&mut self.namespaces);
        if !namespaces.is_empty() {
            // Closing the last reference tears the namespaces down, which blocks for a while.
            let _ = tokio::task::spawn_blocking(move || drop(namespaces)).await;
        }
        if let Some(cgroup) = self.cgroup.take() {
            let removed = tokio::task::spawn_blocking(move || cgroup.remove_blocking()).await;
            if let Ok(Err(e)) | Err(e) = removed.map_err(std::io::Error::other) {
                tracing::warn!(error = %e, "could not remove a run cgroup");
            }
        }
        self.lease = None;
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Only reached without `destroy` (an error on the way, a dropped future): undo everything here.
        if let Some(c) = &self.cgroup {
            c.kill();
        }
        drop(self.child.take());
        self.pipes = None;
        self.egress = None;
        if let Some(cgroup) = self.cgroup.take() {
            let remove = move || {
                if let Err(e) = cgroup.remove_blocking() {
                    tracing::warn!(error = %e, "could not remove a run cgroup");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => drop(handle.spawn_blocking(remove)),
                Err(_) => remove(),
            }
        }
        // The uid goes back only once the cgroup (and so every process of the run) is gone... or being removed:
        // its processes were killed above and pid 1 was reaped, so nothing of the run can still use it.
        self.lease = None;
    }
}

/// The result of an output task.
async fn join<T>(task: tokio::task::JoinHandle<T>) -> Result<T, SandboxError> {
    task.await.map_err(|e| SandboxError::Io(std::io::Error::other(format!("output task failed: {e}"))))
}

/// The program's wait status, as pid 1 reported it.
fn decode_wait_status(status: i32) -> ExitStatus {
    if libc::WIFEXITED(status) {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        ExitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        ExitStatus::Signaled(libc::SIGKILL)
    }
}
