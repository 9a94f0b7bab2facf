//! [`Sandbox`]: probes the host once, then runs programs, each in a fresh sandbox.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::SandboxError;
use crate::cgroup::{CgroupLayout, CgroupLimits, RunCgroup};
use crate::config::SandboxConfig;
use crate::io;
use crate::landlock;
use crate::launcher::{Launcher, Spawned};
use crate::network::{Egress, EgressGuard};
use crate::plan::{ChildPlan, OpsBuilder, Pipes, Program, cstr, relative};
use crate::report::{IsolationLevel, IsolationReport};
use crate::seccomp;
use crate::spec::{
    Bind, ExitStatus, GeneratedFile, Identity, MAX_EXTRA_OUTPUTS, Network, Outcome, OutputChunk, RunLimits, RunSpec,
    Stream,
};
use crate::stage::{self, REPORT_BYTES, Stage};
use crate::uid::UidPool;

/// Host paths every sandbox sees read-only (besides `/usr`), when they exist.
const HOST_FILES: &[&str] = &["/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime"];
/// Extra host paths of sandboxes with network: certificate stores.
const NETWORK_FILES: &[&str] = &["/etc/ssl", "/etc/ca-certificates", "/etc/pki"];
/// Top-level directories that merged-/usr systems make links into `/usr`.
const USR_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];
/// Device nodes of `/dev`.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"];
/// fontconfig's configuration: the host's font files (under `/usr`), a cache in the run's `/tmp`. Without it every
/// font user (matplotlib asks `fc-list`) prints "Fontconfig error: Cannot load default config file".
const FONTS_CONF: &str = "<?xml version=\"1.0\"?>\n<!DOCTYPE fontconfig SYSTEM \"urn:fontconfig:fonts.dtd\">\n\
<fontconfig>\n  <dir>/usr/share/fonts</dir>\n  <dir>/usr/local/share/fonts</dir>\n  \
<cachedir>/tmp/.cache/fontconfig</cachedir>\n</fontconfig>\n";
/// Most inodes of a writable tmpfs (the kernel default scales with RAM).
const TMPFS_INODES: u64 = 262_144;

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
    uids: Arc<UidPool>,
    rootful: bool,
    euid: u32,
    egid: u32,
    service_uid: u32,
    cgroups: CgroupLayout,
    landlock_abi: Option<u32>,
    seccomp: Vec<seccompiler::sock_filter>,
    egress: Result<Egress, String>,
    root_dir: PathBuf,
    last_cap: u32,
    usr_links: Vec<(String, Option<String>)>,
    report: IsolationReport,
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
        let usr_links = USR_LINKS
            .iter()
            .filter_map(|name| {
                let host = Path::new("/").join(name);
                match std::fs::read_link(&host) {
                    Ok(target) => Some((name.to_string(), Some(target.to_string_lossy().into_owned()))),
                    Err(_) if host.is_dir() => Some((name.to_string(), None)),
                    Err(_) => None,
                }
            })
            .collect();
        let report = build_report(&config, rootful, euid, &cgroups, landlock_abi, &egress);
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
                usr_links,
                report,
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
            inner.report = build_report(
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

    /// The isolation this host gives.
    pub fn report(&self) -> &IsolationReport {
        &self.inner.report
    }

    /// The host uid of runs with [`Identity::Service`] when the server is root (`None`: runs keep the server's uid).
    pub fn service_uid(&self) -> Option<u32> {
        self.inner.rootful.then_some(self.inner.service_uid)
    }

    /// Whether runs may ask for network (egress tools present).
    pub fn network_available(&self) -> Result<(), String> {
        self.inner.egress.as_ref().map(drop).map_err(Clone::clone)
    }

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

    async fn execute(
        &self,
        spec: RunSpec,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
        exec: bool,
    ) -> Result<Outcome, SandboxError> {
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
        let limits = CgroupLimits {
            memory_bytes: spec.limits.memory_bytes,
            pids: spec.limits.pids,
            cpu_shares: spec.limits.cpu_shares,
        };
        let cgroup = inner.cgroups.create_run(&cgroup_name, &limits).map_err(SandboxError::Io)?;
        let result = self.execute_in(spec, events, cancel, exec, host_ids, cgroup.as_ref()).await;
        if let Some(cgroup) = cgroup {
            let removed = tokio::task::spawn_blocking(move || cgroup.remove_blocking()).await;
            if let Ok(Err(e)) | Err(e) = removed.map_err(std::io::Error::other) {
                tracing::warn!(error = %e, "could not remove a run cgroup");
            }
        }
        drop(lease);
        result
    }

    async fn execute_in(
        &self,
        spec: RunSpec,
        events: Option<mpsc::Sender<OutputChunk>>,
        cancel: CancellationToken,
        exec: bool,
        host_ids: (u32, u32),
        cgroup: Option<&RunCgroup>,
    ) -> Result<Outcome, SandboxError> {
        let inner = &*self.inner;
        let pipes = Pipes::new(spec.extra_outputs)?;
        let (plan, setup_fds, labels) = self.plan(&spec, &pipes, exec)?;
        let cgroup_fd = match cgroup {
            Some(c) => c.clone_into_fd()?,
            None => None,
        };
        let Pipes { sync_w, report_r, status_r, stdin_w, stdout_r, stderr_r, extra_r, child_ends, .. } = pipes;
        let mut child_only = child_ends;
        child_only.extend(setup_fds);
        let spawned = inner.launcher.spawn(plan, child_only, cgroup_fd).await?;
        let child = LiveChild::new(spawned);

        // Prepare the child's world while it waits: identity, cgroups, network.
        let egress = self.prepare_child(&child, host_ids, cgroup, &spec.network).await?;
        // Readers first, so that nothing the program writes can fill a pipe before we listen.
        let stdout = tokio::spawn(io::capture(stdout_r, spec.limits.stdout_bytes, Stream::Stdout, events.clone()));
        let stderr = tokio::spawn(io::capture(stderr_r, spec.limits.stderr_bytes, Stream::Stderr, events));
        let report = tokio::spawn(io::read_small(report_r, REPORT_BYTES));
        let extra_cap = spec.limits.stdout_bytes.max(1 << 20) + 64;
        let extras: Vec<_> = extra_r.into_iter().map(|r| tokio::spawn(io::read_small(r, extra_cap))).collect();
        let stdin = tokio::spawn(io::feed_stdin(stdin_w, spec.stdin));

        rustix::io::write(&sync_w, &[1]).map_err(|e| SandboxError::Io(e.into()))?;
        let started = Instant::now();

        let (timed_out, cancelled) = tokio::select! {
            r = child.exited() => { r?; (false, false) }
            () = tokio::time::sleep(spec.limits.timeout) => (true, false),
            () = cancel.cancelled() => (false, true),
        };
        if timed_out || cancelled {
            if let Some(c) = cgroup {
                c.kill();
            }
            child.kill();
            child.exited().await?;
        }
        child.reap()?;
        let duration = started.elapsed();
        stdin.abort();
        drop(sync_w);
        drop(egress);

        // Every process of the namespace is gone, so every pipe is at end-of-file.
        let status_bytes = io::read_small(status_r, 4).await;
        let failure = join(report).await?;
        if failure.len() >= REPORT_BYTES && !(timed_out || cancelled) {
            let mut bytes = [0u8; REPORT_BYTES];
            bytes.copy_from_slice(&failure[..REPORT_BYTES]);
            return Err(setup_error(&bytes, &labels));
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
            oom_killed: cgroup.is_some_and(RunCgroup::oom_killed),
            stdout,
            stderr,
            extras: extra,
            duration,
        })
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

    /// Builds the child's plan for `spec`.
    fn plan(
        &self,
        spec: &RunSpec,
        pipes: &Pipes,
        exec: bool,
    ) -> Result<(ChildPlan, Vec<OwnedFd>, Vec<String>), SandboxError> {
        let inner = &*self.inner;
        let uid = inner.config.sandbox_uid;
        let limits = &spec.limits;
        let mut b = OpsBuilder::new();

        b.bind(&Bind::same("/usr"))?;
        for (name, link) in &inner.usr_links {
            match link {
                Some(target) => b.symlink(target, Path::new(name))?,
                None => b.bind(&Bind::same(Path::new("/").join(name)))?,
            }
        }
        let host_files: Vec<&str> =
            HOST_FILES.iter().chain(if spec.network.is_on() { NETWORK_FILES } else { &[] }).copied().collect();
        for path in host_files {
            b.bind(&Bind { optional: true, ..Bind::same(path) })?;
        }
        for file in self.etc_files(&spec.network) {
            b.file(&file)?;
        }
        for bind in &spec.binds {
            b.bind(bind)?;
        }
        for file in &spec.files {
            b.file(file)?;
        }

        let dev = Path::new("dev");
        b.tmpfs(dev, "size=64k,mode=0755", libc::MS_NOSUID | libc::MS_NOEXEC)?;
        for device in DEVICES {
            b.device(device)?;
        }
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            b.symlink(target, &dev.join(link))?;
        }
        let writable = libc::MS_NOSUID | libc::MS_NODEV;
        let tmp_options = format!("size={},nr_inodes={TMPFS_INODES},mode=1777", limits.tmp_bytes.max(4096));
        b.tmpfs(&dev.join("shm"), &tmp_options, writable)?;
        b.remount_read_only(dev)?;

        let work = Path::new("work");
        let work_options = format!("size={},nr_inodes={TMPFS_INODES},mode=0755", limits.workspace_bytes.max(4096));
        b.tmpfs(work, &work_options, writable)?;
        if let Some(workspace) = &spec.workspace {
            b.copy_workspace(workspace, work)?;
        }
        b.tmpfs(Path::new("tmp"), &tmp_options, writable)?;
        b.proc(Path::new("proc"))?;

        let mut rlimits = vec![
            (libc::RLIMIT_NPROC, limits.pids),
            (libc::RLIMIT_CORE, 0),
            (libc::RLIMIT_NOFILE, 4096),
            (libc::RLIMIT_FSIZE, limits.workspace_bytes.max(limits.tmp_bytes)),
        ];
        if !inner.cgroups.is_available() {
            // Without a memory cgroup, cap the data segment and anonymous mappings instead (approximate).
            rlimits.push((libc::RLIMIT_DATA, limits.memory_bytes));
        }

        let program = if exec {
            let path = cstr(spec.program.as_os_str().as_encoded_bytes())?;
            let argv = std::iter::once(Ok(path.clone()))
                .chain(spec.args.iter().map(cstr))
                .collect::<Result<Vec<CString>, _>>()?;
            let envp = spec
                .env
                .iter()
                .map(|(k, v)| {
                    if k.is_empty() || k.contains('=') {
                        return Err(SandboxError::InvalidSpec(format!("invalid environment variable name {k:?}")));
                    }
                    cstr(format!("{k}={v}"))
                })
                .collect::<Result<Vec<CString>, _>>()?;
            Some(Program::new(path, argv, envp))
        } else {
            None
        };
        relative(&spec.cwd)?;

        let writable_binds: Vec<String> =
            spec.binds.iter().filter(|b| b.writable).map(|b| b.target.display().to_string()).collect();
        let writable_dirs: Vec<&str> =
            ["/work", "/tmp", "/dev/shm"].into_iter().chain(writable_binds.iter().map(String::as_str)).collect();
        let mut keep: Vec<i32> = pipes.child_ends.iter().map(AsRawFd::as_raw_fd).collect();
        keep.extend(b.setup_fds.iter().map(AsRawFd::as_raw_fd));
        keep.sort_unstable();
        let plan = ChildPlan {
            fds: pipes.child,
            disguise: crate::disguise::server_areas(),
            keep,
            setup_fds: b.setup_fds.iter().map(AsRawFd::as_raw_fd).collect(),
            bind_sources: b.bind_sources,
            cgroup_namespace: true,
            root_dir: cstr(inner.root_dir.as_os_str().as_encoded_bytes())?,
            root_options: cstr(format!("size=16m,nr_inodes=4096,mode=0755,uid={uid},gid={uid}"))?,
            uid,
            gid: uid,
            clear_groups: inner.rootful,
            ops: b.ops,
            hostname: cstr(&inner.config.hostname)?,
            loopback_up: !spec.network.is_on(),
            cwd: cstr(spec.cwd.as_os_str().as_encoded_bytes())?,
            rlimits,
            last_cap: inner.last_cap,
            landlock: landlock::plan(inner.landlock_abi, &writable_dirs),
            seccomp: inner.seccomp.clone(),
            program,
        };
        Ok((plan, b.setup_fds, b.labels))
    }

    /// `/etc` files of the sandbox: its users, host name resolution and, with network, the resolver.
    fn etc_files(&self, network: &Network) -> Vec<GeneratedFile> {
        let uid = self.inner.config.sandbox_uid;
        let host = &self.inner.config.hostname;
        let file = |path: &str, content: String| GeneratedFile {
            path: path.into(),
            content: content.into_bytes(),
            mode: 0o644,
        };
        let mut files = vec![
            file(
                "/etc/passwd",
                format!(
                    "root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}:sandbox:/tmp:/bin/sh\n\
                     nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                ),
            ),
            file("/etc/group", format!("root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n")),
            file("/etc/hosts", hosts_file(host, network)),
            file("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n".into()),
            file("/etc/fonts/fonts.conf", FONTS_CONF.into()),
        ];
        if *network == Network::Internet
            && let Ok(egress) = &self.inner.egress
        {
            files.push(file("/etc/resolv.conf", format!("nameserver {}\noptions edns0\n", egress.dns())));
        }
        files
    }
}

/// `/etc/hosts`: the sandbox itself, and the pinned names of an allowlisted network.
fn hosts_file(hostname: &str, network: &Network) -> String {
    let mut out = format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Network::Hosts(hosts) = network {
        for host in hosts {
            for addr in &host.addrs {
                out.push_str(&format!("{addr}\t{}\n", host.name));
            }
        }
    }
    out
}

/// A cloned child until it is reaped: killed and reaped if dropped early (an error path, a cancelled request).
struct LiveChild {
    pid: i32,
    in_cgroup: bool,
    pidfd: Option<OwnedFd>,
}

impl LiveChild {
    fn new(s: Spawned) -> Self {
        Self { pid: s.pid, in_cgroup: s.in_cgroup, pidfd: Some(s.pidfd) }
    }

    fn fd(&self) -> Result<&OwnedFd, SandboxError> {
        self.pidfd.as_ref().ok_or_else(|| SandboxError::Io(std::io::Error::other("child already reaped")))
    }

    /// Resolves when the child (pid 1 of the sandbox) has exited; its pidfd becomes readable then.
    async fn exited(&self) -> Result<(), SandboxError> {
        let fd = self.fd()?;
        let dup = fd.try_clone().map_err(SandboxError::Io)?;
        // SAFETY: `dup` is an owned, open descriptor that the AsyncFd keeps (and closes) for its whole life.
        let afd = unsafe { AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE) }
            .map_err(|e| SandboxError::Io(std::io::Error::other(e.to_string())))?;
        let _ready = afd.readable().await.map_err(SandboxError::Io)?;
        Ok(())
    }

    /// SIGKILL to pid 1 of the sandbox: the kernel then kills every process of its pid namespace.
    fn kill(&self) {
        if let Ok(fd) = self.fd() {
            let _ = rustix::process::pidfd_send_signal(fd, rustix::process::Signal::KILL);
        }
    }

    fn reap(mut self) -> Result<(), SandboxError> {
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

async fn join<T>(task: tokio::task::JoinHandle<T>) -> Result<T, SandboxError> {
    task.await.map_err(|e| SandboxError::Io(std::io::Error::other(format!("output task failed: {e}"))))
}

fn decode_wait_status(status: i32) -> ExitStatus {
    if libc::WIFEXITED(status) {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        ExitStatus::Signaled(libc::WTERMSIG(status))
    } else {
        ExitStatus::Signaled(libc::SIGKILL)
    }
}

fn setup_error(bytes: &[u8; REPORT_BYTES], labels: &[String]) -> SandboxError {
    let (stage, errno, item) = stage::decode(bytes);
    let cause = std::io::Error::from_raw_os_error(errno);
    let what = stage.map(Stage::describe).unwrap_or("setting up the sandbox");
    let subject = labels.get(item as usize).map(|l| format!(" ({l})")).unwrap_or_default();
    match (stage, errno) {
        (Some(Stage::CopyWorkspace), libc::ENOSPC) => SandboxError::WorkspaceTooLarge,
        (Some(Stage::Exec), libc::ENOENT) => SandboxError::ProgramNotFound,
        _ => SandboxError::Setup(format!("{what}{subject}: {cause}")),
    }
}

/// The stable host uid of service runs.
fn service_uid(config: &SandboxConfig) -> u32 {
    config.service_uid.unwrap_or(config.host_uid_base.saturating_sub(1))
}

fn build_report(
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
