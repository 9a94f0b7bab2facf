//! [`Sandbox`]: probes the host once, then runs programs, each in a fresh sandbox.
//!
//! This is where the mechanisms meet; each lives in a module of its own. One run takes a host uid (`uid`) and
//! creates its cgroups (`cgroup`), plans the child (`rootfs_plan`, `plan`, `landlock`, `seccomp`), clones it
//! (`launcher`) and holds it (`live_child`), prepares it from outside while it waits (uid maps, v1 cgroups,
//! `network`), then streams its pipes (`io`) against the timeout and cancellation, reaps it and turns what it
//! reported (`stage`) into an [`Outcome`] or an error.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::SandboxError;
use crate::cgroup::{CgroupLayout, CgroupLimits, RunCgroup};
use crate::config::SandboxConfig;
use crate::landlock;
use crate::launcher::Launcher;
use crate::live_child::LiveChild;
use crate::network::{Egress, EgressGuard};
use crate::plan::{ChildPlan, Pipes, Program, cstr, relative, rlimits};
use crate::prepared::{ChildPipes, Handover, Prepared};
use crate::report::{self, IsolationReport};
use crate::rootfs_plan::{RootfsPlan, RootfsPlanner};
use crate::seccomp;
use crate::spec::{ExitStatus, Identity, MAX_EXTRA_OUTPUTS, Network, Outcome, OutputChunk, RunLimits, RunSpec};
use crate::uid::UidPool;

/// Runs started by this process, across all [`Sandbox`]es: names each run's cgroup uniquely.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Runs programs in sandboxes. Cheap to clone; all clones share the host probe and the launcher thread.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    config: SandboxConfig,
    launcher: Launcher,
    /// Host uids of runs with [`Identity::PerRun`] (used only when the server is root).
    uids: Arc<UidPool>,
    /// Whether the server is root: per-run host uids, cgroups, `setgroups`.
    rootful: bool,
    euid: u32,
    egid: u32,
    /// The host uid of runs with [`Identity::Service`] when the server is root.
    service_uid: u32,
    cgroups: CgroupLayout,
    landlock_abi: Option<u32>,
    seccomp: Vec<seccompiler::sock_filter>,
    /// The egress machinery, or why runs cannot have network.
    egress: Result<Egress, String>,
    /// An empty directory each child mounts its root tmpfs on (inside its own mount namespace).
    root_dir: PathBuf,
    /// The highest capability this kernel knows: the program drops `0..=last_cap`.
    last_cap: u32,
    rootfs: RootfsPlanner,
    report: IsolationReport,
    /// Runs being torn down after their result ([`Sandbox::settle`]).
    cleanups: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("report", &self.inner.report).finish()
    }
}

impl Sandbox {
    /// Probes the host (root or not, cgroups, Landlock, egress tools), starts the launcher thread and proves the
    /// whole set-up works by building one sandbox that runs nothing. Fails with a message naming what is missing.
    pub async fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let euid = rustix::process::geteuid().as_raw();
        let egid = rustix::process::getegid().as_raw();
        let rootful = euid == 0;
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            SandboxError::Unavailable(format!("cannot create the state directory {}: {e}", config.state_dir.display()))
        })?;
        let root_dir = config.state_dir.join("root");
        std::fs::create_dir_all(&root_dir)
            .map_err(|e| SandboxError::Unavailable(format!("cannot create {}: {e}", root_dir.display())))?;
        let favor_dynmods = config.favor_dynmods && rootful;
        let cgroups = tokio::task::spawn_blocking(move || CgroupLayout::discover(favor_dynmods))
            .await
            .map_err(|e| SandboxError::Unavailable(format!("probing cgroups: {e}")))?;
        let landlock_abi = landlock::abi_version();
        let seccomp = seccomp::program_filter().map_err(|e| SandboxError::Unavailable(e.to_string()))?;
        let egress = Egress::discover(&config.network, rootful);
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        let rootfs = RootfsPlanner::probe(&config);
        let report = report::build(&config, rootful, euid, &cgroups, landlock_abi, &egress);
        let service_uid = service_uid(&config);
        let mut sandbox = Sandbox {
            inner: Arc::new(Inner {
                uids: Arc::new(UidPool::new(config.host_uid_base, config.host_uid_count)),
                launcher: Launcher::start()?,
                config,
                rootful,
                euid,
                egid,
                service_uid,
                cgroups,
                landlock_abi,
                seccomp,
                egress,
                root_dir,
                last_cap,
                rootfs,
                report,
                cleanups: tokio_util::task::TaskTracker::new(),
            }),
        };
        sandbox.self_test().await?;
        if sandbox.inner.egress.is_ok()
            && let Err(reason) = sandbox.egress_self_test().await
        {
            // Tools that are present but cannot work here (a firewall this server may not load, a tun device
            // pasta cannot use) must not give runs a half-working network: refuse network requests instead.
            tracing::warn!("network egress is unavailable: {reason}");
            let inner = Arc::get_mut(&mut sandbox.inner)
                .ok_or_else(|| SandboxError::Unavailable("the sandbox is shared during start-up".into()))?;
            inner.egress = Err(reason);
            inner.report = report::build(
                &inner.config,
                inner.rootful,
                inner.euid,
                &inner.cgroups,
                inner.landlock_abi,
                &inner.egress,
            );
        }
        Ok(sandbox)
    }

    /// Waits until every finished run has been torn down (its cgroups removed, its host uid returned): runs are
    /// destroyed in the background after their result, and a stopping server must not leave them half done.
    pub async fn settle(&self) {
        let cleanups = &self.inner.cleanups;
        cleanups.close();
        cleanups.wait().await;
        cleanups.reopen();
    }

    /// The isolation this host gives.
    pub fn report(&self) -> &IsolationReport {
        &self.inner.report
    }

    /// The host uid of runs with [`Identity::Service`] when the server is root (`None`: runs keep the server's uid).
    pub fn service_uid(&self) -> Option<u32> {
        self.inner.rootful.then_some(self.inner.service_uid)
    }

    /// Whether runs get cgroups (memory, pids and CPU limits, OOM verdicts); without them memory is an rlimit
    /// fixed when a sandbox is built.
    pub fn has_cgroups(&self) -> bool {
        self.inner.cgroups.is_available()
    }

    /// Whether runs may ask for network (egress tools present).
    pub fn network_available(&self) -> Result<(), String> {
        self.inner.egress.as_ref().map(drop).map_err(Clone::clone)
    }

    /// Proves that this host can build sandboxes: one that runs nothing, with every restriction applied.
    async fn self_test(&self) -> Result<(), SandboxError> {
        let mut spec = RunSpec::new("/bin/true");
        spec.limits = RunLimits { timeout: Duration::from_secs(10), ..RunLimits::default() };
        let outcome = self
            .execute(spec, None, CancellationToken::new(), false)
            .await
            .map_err(|e| SandboxError::Unavailable(format!("the sandbox self-test failed: {e}")))?;
        match outcome.status {
            ExitStatus::Exited(0) => Ok(()),
            other => Err(SandboxError::Unavailable(format!("the sandbox self-test ended with {other:?}"))),
        }
    }

    /// Proves that egress attaches: a sandbox that runs nothing, with pasta and the firewall in place.
    async fn egress_self_test(&self) -> Result<(), String> {
        let mut spec = RunSpec::new("/bin/true");
        spec.network = Network::Internet;
        spec.limits = RunLimits { timeout: Duration::from_secs(20), ..RunLimits::default() };
        match self.execute(spec, None, CancellationToken::new(), false).await {
            Ok(Outcome { status: ExitStatus::Exited(0), .. }) => Ok(()),
            Ok(outcome) => Err(format!("the egress self-test ended with {:?}", outcome.status)),
            Err(e) => Err(format!("the egress self-test failed: {e}")),
        }
    }

    /// Runs one program in a fresh sandbox and reports what happened. `events` receives output as it is produced;
    /// cancelling `cancel` kills the whole process tree (the outcome then says `cancelled`).
    pub async fn run(
        &self,
        spec: RunSpec,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Result<Outcome, SandboxError> {
        self.execute(spec, events, cancel, true).await
    }

    /// Builds a sandbox for `spec` and starts its program right away; the program waits for its work on standard
    /// input. The returned [`Prepared`] holds everything until [`Prepared::run`] hands the work over; dropping it
    /// destroys the sandbox. The embedded backend's warm pools are made of these.
    pub async fn prepare(&self, mut spec: RunSpec) -> Result<Prepared, SandboxError> {
        spec.stdin.clear();
        self.build(spec, true).await
    }

    /// A cold run: build, then hand over at once. `exec: false` builds the whole sandbox and stops right before
    /// `execve` (the start-up self-tests).
    async fn execute(
        &self,
        mut spec: RunSpec,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
        exec: bool,
    ) -> Result<Outcome, SandboxError> {
        let handover = Handover { preamble: Vec::new(), stdin: std::mem::take(&mut spec.stdin), limits: spec.limits };
        self.build(spec, exec).await?.run(handover, events, cancel).await
    }

    /// Admits a run, gives it a host uid and its cgroups, plans and clones the child, prepares it from outside
    /// (identity, cgroups, network) and lets it go: it builds its root and executes the program. Whatever fails
    /// on the way is undone when the [`Prepared`] is dropped.
    async fn build(&self, spec: RunSpec, exec: bool) -> Result<Prepared, SandboxError> {
        let inner = &*self.inner;
        if spec.network.is_on()
            && let Err(reason) = &inner.egress
        {
            return Err(SandboxError::Network(format!("network access is not available on this server: {reason}")));
        }
        if spec.extra_outputs > MAX_EXTRA_OUTPUTS {
            return Err(SandboxError::InvalidSpec(format!("at most {MAX_EXTRA_OUTPUTS} extra outputs")));
        }
        let lease = match (inner.rootful, spec.identity) {
            (true, Identity::PerRun) => Some(inner.uids.acquire()?),
            _ => None,
        };
        let host_ids = match (&lease, inner.rootful) {
            (Some(l), _) => (l.uid, l.uid),
            (None, true) => (inner.service_uid, inner.service_uid),
            (None, false) => (inner.euid, inner.egid),
        };
        let run_no = RUNS.fetch_add(1, Ordering::Relaxed);
        let cgroup_name = format!("run-{}-{run_no}", std::process::id());
        let cgroup = inner.cgroups.create_run(&cgroup_name, &cgroup_limits(&spec.limits)).map_err(SandboxError::Io)?;
        let mut prepared = Prepared::new(cgroup, lease, spec.limits, inner.cleanups.clone());

        let pipes = Pipes::new(spec.extra_outputs)?;
        let (plan, setup_fds, labels) = self.plan(&spec, &pipes, exec)?;
        let cgroup_fd = match prepared.cgroup() {
            Some(c) => c.clone_into_fd()?,
            None => None,
        };
        let Pipes { sync_w, report_r, status_r, stdin_w, stdout_r, stderr_r, extra_r, child_ends, .. } = pipes;
        let mut child_only = child_ends;
        child_only.extend(setup_fds);
        let spawned = inner.launcher.spawn(plan, child_only, cgroup_fd).await?;
        let pipes = ChildPipes { sync_w, report_r, status_r, stdin_w, stdout_r, stderr_r, extra_r };
        prepared.attach_child(LiveChild::new(spawned), pipes, labels);

        // Prepare the child's world while it waits: identity, cgroups, network; then let it go.
        let egress = self.prepare_child(prepared.child()?, host_ids, prepared.cgroup(), &spec.network).await?;
        prepared.release(egress)?;
        Ok(prepared)
    }

    /// Writes the uid/gid maps, joins the v1 cgroups and attaches the network.
    async fn prepare_child(
        &self,
        child: &LiveChild,
        (host_uid, host_gid): (u32, u32),
        cgroup: Option<&RunCgroup>,
        network: &Network,
    ) -> Result<Option<EgressGuard>, SandboxError> {
        let inner = &*self.inner;
        let pid = child.pid;
        let inside = inner.config.sandbox_uid;
        let proc = PathBuf::from(format!("/proc/{pid}"));
        let write = |file: &str, content: String| {
            std::fs::write(proc.join(file), content)
                .map_err(|e| SandboxError::Unavailable(format!("writing /proc/{pid}/{file}: {e}")))
        };
        if !inner.rootful {
            // An unprivileged parent may only map its own ids, and only after giving up setgroups.
            write("setgroups", "deny".into())?;
        }
        write("uid_map", format!("{inside} {host_uid} 1\n"))?;
        write("gid_map", format!("{inside} {host_gid} 1\n"))?;
        if let Some(cgroup) = cgroup {
            cgroup.attach_v1(pid).map_err(SandboxError::Io)?;
            if !child.in_cgroup {
                cgroup.attach_unified(pid).map_err(SandboxError::Io)?;
            }
        }
        let allowed: Option<Vec<std::net::IpAddr>> = match network {
            Network::None => return Ok(None),
            Network::Internet => None,
            Network::Hosts(hosts) => Some(hosts.iter().flat_map(|h| h.addrs.iter().copied()).collect()),
        };
        let egress = inner.egress.as_ref().map_err(|r| SandboxError::Network(r.clone()))?;
        Ok(Some(egress.attach(pid, &inner.config.state_dir, allowed.as_deref()).await?))
    }

    /// Builds the child's plan for `spec`: its root, limits, program and restrictions. Returns the descriptors only
    /// the child needs and a label per root operation, for error messages.
    fn plan(
        &self,
        spec: &RunSpec,
        pipes: &Pipes,
        exec: bool,
    ) -> Result<(ChildPlan, Vec<OwnedFd>, Vec<String>), SandboxError> {
        let inner = &*self.inner;
        let uid = inner.config.sandbox_uid;
        let dns = inner.egress.as_ref().ok().map(Egress::dns);
        let RootfsPlan { ops: root, writable_dirs } = inner.rootfs.plan(spec, dns)?;
        let rlimits = rlimits(&spec.limits, inner.cgroups.is_available());
        let program = if exec { Some(Program::from_spec(spec)?) } else { None };
        relative(&spec.cwd)?;

        let writable_dirs: Vec<&str> = writable_dirs.iter().map(String::as_str).collect();
        let mut keep: Vec<i32> = pipes.child_ends.iter().map(AsRawFd::as_raw_fd).collect();
        keep.extend(root.setup_fds.iter().map(AsRawFd::as_raw_fd));
        keep.sort_unstable();
        let plan = ChildPlan {
            fds: pipes.child,
            disguise: crate::disguise::server_areas(),
            keep,
            setup_fds: root.setup_fds.iter().map(AsRawFd::as_raw_fd).collect(),
            bind_sources: root.bind_sources,
            root_dir: cstr(inner.root_dir.as_os_str().as_encoded_bytes())?,
            root_options: cstr(format!("size=16m,nr_inodes=4096,mode=0755,uid={uid},gid={uid}"))?,
            uid,
            gid: uid,
            clear_groups: inner.rootful,
            ops: root.ops,
            hostname: cstr(&inner.config.hostname)?,
            loopback_up: !spec.network.is_on(),
            cwd: cstr(spec.cwd.as_os_str().as_encoded_bytes())?,
            rlimits,
            last_cap: inner.last_cap,
            landlock: landlock::plan(inner.landlock_abi, &writable_dirs),
            seccomp: inner.seccomp.clone(),
            program,
        };
        Ok((plan, root.setup_fds, root.labels))
    }
}

/// The cgroup limits of a run.
pub(crate) fn cgroup_limits(limits: &RunLimits) -> CgroupLimits {
    CgroupLimits {
        memory_bytes: limits.memory_bytes,
        pids: limits.pids,
        cpu_shares: limits.cpu_shares,
        background: limits.background,
    }
}

/// The stable host uid of service runs.
fn service_uid(config: &SandboxConfig) -> u32 {
    config.service_uid.unwrap_or(config.host_uid_base.saturating_sub(1))
}
