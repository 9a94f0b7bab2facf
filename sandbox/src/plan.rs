//! The child's plan: every path, string, descriptor and filter the child needs, built in the parent.
//!
//! The child is cloned from a multi-threaded process, so until it calls `execve` it must not allocate or take
//! locks another thread might have held (see `child`). Everything it uses is therefore prepared here, as C strings
//! and plain numbers, and the child only reads it. `rootfs_plan` decides what the root holds; [`OpsBuilder`] turns
//! each decision into operations (creating parent directories, checking bind sources, refusing binds the
//! sandbox's own file systems would hide).

use std::ffi::{CString, c_char};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Component, Path, PathBuf};

use crate::landlock::LandlockPlan;
use crate::spec::{Bind, GeneratedFile, MAX_EXTRA_OUTPUTS, RunLimits, RunSpec};

/// One step of building the new root, executed in order relative to the new root's directory.
#[derive(Debug)]
pub(crate) enum Op {
    /// `mkdir`, ignoring "already exists".
    Mkdir { path: CString, mode: u32 },
    /// A tmpfs with options (`size=...,mode=...`).
    Tmpfs { target: CString, options: CString, flags: libc::c_ulong },
    /// Bind-mount bind source number `source` (opened by the child before it changed identity, used through
    /// `/proc/self/fd/N`) onto a new file or directory, then remount it with `remount` flags (read-only or not,
    /// always nosuid/nodev, plus those the kernel locked on the source; `None`: device nodes, left as they are).
    Bind { source: usize, target: CString, dir: bool, remount: Option<libc::c_ulong> },
    /// A symbolic link.
    Symlink { target: CString, link: CString },
    /// A generated file.
    WriteFile { path: CString, content: Vec<u8>, mode: u32 },
    /// Copy the workspace (an open directory) into a directory of the new root.
    CopyWorkspace { fd: RawFd, target: CString },
    /// Remount a tmpfs read-only after populating it.
    RemountReadOnly { target: CString },
    /// A fresh `proc` for the new pid namespace.
    Proc { target: CString },
}

/// The program to run, or nothing (the start-up self-test stops right before `execve`).
#[derive(Debug)]
pub(crate) struct Program {
    pub path: CString,
    /// The strings `argv_ptrs` points into (never read, only kept alive).
    _argv: Vec<CString>,
    /// The strings `envp_ptrs` points into.
    _envp: Vec<CString>,
    /// Null-terminated pointer arrays into `_argv` / `_envp` (heap data does not move with the struct).
    pub argv_ptrs: Vec<*const c_char>,
    pub envp_ptrs: Vec<*const c_char>,
}

impl Program {
    /// The program of `spec`: its path (also `argv[0]`), arguments and environment, as C strings.
    pub(crate) fn from_spec(spec: &RunSpec) -> Result<Self, crate::SandboxError> {
        let path = cstr(spec.program.as_os_str().as_encoded_bytes())?;
        let argv =
            std::iter::once(Ok(path.clone())).chain(spec.args.iter().map(cstr)).collect::<Result<Vec<CString>, _>>()?;
        let envp = spec
            .env
            .iter()
            .map(|(k, v)| {
                if k.is_empty() || k.contains('=') {
                    return Err(crate::SandboxError::InvalidSpec(format!("invalid environment variable name {k:?}")));
                }
                cstr(format!("{k}={v}"))
            })
            .collect::<Result<Vec<CString>, _>>()?;
        Ok(Self::new(path, argv, envp))
    }

    fn new(path: CString, argv: Vec<CString>, envp: Vec<CString>) -> Self {
        let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let argv_ptrs = ptrs(&argv);
        let envp_ptrs = ptrs(&envp);
        Self { path, _argv: argv, _envp: envp, argv_ptrs, envp_ptrs }
    }
}

/// Resource limits of the program, on top of its cgroup's (`cgroups`: whether it has them).
pub(crate) fn rlimits(limits: &RunLimits, cgroups: bool) -> Vec<(libc::__rlimit_resource_t, u64)> {
    let mut rlimits = vec![
        (libc::RLIMIT_NPROC, limits.pids),
        (libc::RLIMIT_CORE, 0),
        (libc::RLIMIT_NOFILE, 4096),
        (libc::RLIMIT_FSIZE, limits.workspace_bytes.max(limits.tmp_bytes)),
    ];
    if !cgroups {
        // Without a memory cgroup, cap the data segment and anonymous mappings instead (approximate).
        rlimits.push((libc::RLIMIT_DATA, limits.memory_bytes));
    }
    rlimits
}

/// Descriptor numbers as the child sees them (it inherits the parent's table).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildFds {
    pub sync_r: RawFd,
    pub report_w: RawFd,
    pub status_w: RawFd,
    pub stdin_r: RawFd,
    pub stdout_w: RawFd,
    pub stderr_w: RawFd,
    /// Write ends of the extra outputs, duplicated onto 3, 4, ... in the program.
    pub extra_w: [RawFd; MAX_EXTRA_OUTPUTS],
    pub extra_count: usize,
}

/// Everything the child does, decided in advance.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    pub fds: ChildFds,
    /// The server's argument and environment areas, wiped in the child before anything else (see `disguise`).
    pub disguise: &'static [crate::disguise::Area],
    /// Descriptors the child keeps at start (sorted); every other inherited descriptor is closed at once.
    pub keep: Vec<RawFd>,
    /// Host paths of bind sources. The child opens them while it is still the host user that created it (which may
    /// traverse directories the sandbox user cannot, like a root-only home holding an interpreter) and inside its
    /// own mount namespace (a bind source must belong to the caller's namespace).
    pub bind_sources: Vec<CString>,
    /// Descriptors used while building the root (the workspace), closed once it is built.
    pub setup_fds: Vec<RawFd>,
    pub root_dir: CString,
    pub root_options: CString,
    /// The sandbox user's uid inside the namespace.
    pub uid: u32,
    /// The sandbox user's gid inside the namespace.
    pub gid: u32,
    /// Whether `setgroups` may be called (not when an unprivileged parent had to deny it).
    pub clear_groups: bool,
    pub ops: Vec<Op>,
    pub hostname: CString,
    pub loopback_up: bool,
    pub cwd: CString,
    pub rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
    pub last_cap: u32,
    pub landlock: Option<LandlockPlan>,
    pub seccomp: Vec<seccompiler::sock_filter>,
    pub program: Option<Program>,
}

// SAFETY: the raw pointers in `Program` point into heap buffers owned by the same plan, which are never mutated
// after construction; moving the plan to another thread moves the owners along with them.
unsafe impl Send for ChildPlan {}

/// Ends of the pipes kept by the parent, and the child's ends (dropped right after `clone`).
pub(crate) struct Pipes {
    pub sync_w: OwnedFd,
    pub report_r: OwnedFd,
    pub status_r: OwnedFd,
    pub stdin_w: OwnedFd,
    pub stdout_r: OwnedFd,
    pub stderr_r: OwnedFd,
    pub extra_r: Vec<OwnedFd>,
    pub child_ends: Vec<OwnedFd>,
    pub child: ChildFds,
}

/// A close-on-exec pipe whose descriptors are numbered 10 or above, so that the child's `dup2` onto 0..=3 can never
/// clobber a pipe end it still needs (a server started with closed standard descriptors gets low numbers).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    Ok((high(r)?, high(w)?))
}

fn high(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() >= 10 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 10)?)
}

impl Pipes {
    pub(crate) fn new(extra_outputs: usize) -> std::io::Result<Self> {
        let (sync_r, sync_w) = pipe()?;
        let (report_r, report_w) = pipe()?;
        let (status_r, status_w) = pipe()?;
        let (stdin_r, stdin_w) = pipe()?;
        let (stdout_r, stdout_w) = pipe()?;
        let (stderr_r, stderr_w) = pipe()?;
        let mut extra_r = Vec::new();
        let mut extra_w_owned = Vec::new();
        for _ in 0..extra_outputs.min(MAX_EXTRA_OUTPUTS) {
            let (r, w) = pipe()?;
            extra_r.push(r);
            extra_w_owned.push(w);
        }
        let mut extra_w = [-1; MAX_EXTRA_OUTPUTS];
        for (slot, w) in extra_w.iter_mut().zip(&extra_w_owned) {
            *slot = w.as_raw_fd();
        }
        let child = ChildFds {
            sync_r: sync_r.as_raw_fd(),
            report_w: report_w.as_raw_fd(),
            status_w: status_w.as_raw_fd(),
            stdin_r: stdin_r.as_raw_fd(),
            stdout_w: stdout_w.as_raw_fd(),
            stderr_w: stderr_w.as_raw_fd(),
            extra_w,
            extra_count: extra_w_owned.len(),
        };
        let mut child_ends = vec![sync_r, report_w, status_w, stdin_r, stdout_w, stderr_w];
        child_ends.extend(extra_w_owned);
        Ok(Self { sync_w, report_r, status_r, stdin_w, stdout_r, stderr_r, extra_r, child_ends, child })
    }
}

/// C string of a path or text; paths with NUL cannot come from our own code.
pub(crate) fn cstr(s: impl AsRef<[u8]>) -> Result<CString, crate::SandboxError> {
    CString::new(s.as_ref())
        .map_err(|_| crate::SandboxError::InvalidSpec("a path or string contains a NUL byte".into()))
}

/// Turns an absolute path inside the sandbox (`/usr/lib`) into one relative to the new root (`usr/lib`).
pub(crate) fn relative(path: &Path) -> Result<PathBuf, crate::SandboxError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(p) => out.push(p),
            _ => {
                return Err(crate::SandboxError::InvalidSpec(format!(
                    "sandbox path {} must be absolute and without '..'",
                    path.display()
                )));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(crate::SandboxError::InvalidSpec("the sandbox root itself cannot be a mount target".into()));
    }
    Ok(out)
}

/// Collects root-building operations, adding parent directories as needed.
pub(crate) struct OpsBuilder {
    pub ops: Vec<Op>,
    /// What each operation is about, for error messages (parallel to `ops`).
    pub labels: Vec<String>,
    /// Host paths of bind sources, indexed by `Op::Bind::source`.
    pub bind_sources: Vec<CString>,
    /// Descriptors the child needs while building the root (the workspace).
    pub setup_fds: Vec<OwnedFd>,
    made: std::collections::HashSet<PathBuf>,
}

/// Most bind mounts one sandbox may have (the child keeps their descriptors in a fixed array).
pub(crate) const MAX_BINDS: usize = 64;

fn bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}

impl OpsBuilder {
    pub(crate) fn new() -> Self {
        Self {
            ops: Vec::new(),
            labels: Vec::new(),
            bind_sources: Vec::new(),
            setup_fds: Vec::new(),
            made: Default::default(),
        }
    }

    fn push(&mut self, op: Op, label: String) {
        self.ops.push(op);
        self.labels.push(label);
    }

    /// `mkdir -p` of `dir` (relative to the new root).
    fn mkdirs(&mut self, dir: &Path, mode: u32) -> Result<(), crate::SandboxError> {
        let mut current = PathBuf::new();
        for c in dir.components() {
            current.push(c);
            if self.made.insert(current.clone()) {
                let label = format!("/{}", current.display());
                self.push(Op::Mkdir { path: cstr(bytes(&current))?, mode }, label);
            }
        }
        Ok(())
    }

    fn parent_of(&mut self, path: &Path) -> Result<(), crate::SandboxError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.mkdirs(parent, 0o755)?;
        }
        Ok(())
    }

    pub(crate) fn tmpfs(
        &mut self,
        target: &Path,
        options: &str,
        flags: libc::c_ulong,
    ) -> Result<(), crate::SandboxError> {
        self.mkdirs(target, 0o755)?;
        let op = Op::Tmpfs { target: cstr(bytes(target))?, options: cstr(options)?, flags };
        self.push(op, format!("tmpfs /{} ({options})", target.display()));
        Ok(())
    }

    pub(crate) fn remount_read_only(&mut self, target: &Path) -> Result<(), crate::SandboxError> {
        self.push(Op::RemountReadOnly { target: cstr(bytes(target))? }, format!("/{}", target.display()));
        Ok(())
    }

    pub(crate) fn proc(&mut self, target: &Path) -> Result<(), crate::SandboxError> {
        self.mkdirs(target, 0o555)?;
        self.push(Op::Proc { target: cstr(bytes(target))? }, format!("/{}", target.display()));
        Ok(())
    }

    /// Opens the host source now (as the server, which may read what the sandbox user cannot) and plans a
    /// read-only bind of it. Missing optional sources are skipped.
    pub(crate) fn bind(&mut self, bind: &Bind) -> Result<(), crate::SandboxError> {
        self.bind_with(bind, false)
    }

    /// Binds a host device node (`/dev/null`, ...), writable and with device access.
    pub(crate) fn device(&mut self, path: &str) -> Result<(), crate::SandboxError> {
        self.bind_with(&Bind::same(path), true)
    }

    fn bind_with(&mut self, bind: &Bind, device: bool) -> Result<(), crate::SandboxError> {
        let target = relative(&bind.target)?;
        // These are the sandbox's own file systems, mounted after the binds: a bind there would be hidden.
        let owned = ["work", "tmp", "dev", "proc"];
        if !device && owned.iter().any(|dir| target.starts_with(dir)) {
            return Err(crate::SandboxError::InvalidSpec(format!(
                "{} cannot be mounted at {}: /work, /tmp, /dev and /proc belong to the sandbox",
                bind.source.display(),
                bind.target.display()
            )));
        }
        let stat = match rustix::fs::stat(&bind.source) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) if bind.optional => return Ok(()),
            Err(e) => {
                return Err(crate::SandboxError::InvalidSpec(format!(
                    "cannot use {} in the sandbox: {e}",
                    bind.source.display()
                )));
            }
        };
        if self.bind_sources.len() >= MAX_BINDS {
            return Err(crate::SandboxError::InvalidSpec(format!("more than {MAX_BINDS} bind mounts")));
        }
        let dir = rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory;
        let locked_flags = locked_mount_flags(&bind.source);
        self.parent_of(&target)?;
        if dir {
            self.made.insert(target.clone());
        }
        let access = if bind.writable { 0 } else { libc::MS_RDONLY };
        let op = Op::Bind {
            source: self.bind_sources.len(),
            target: cstr(bytes(&target))?,
            dir,
            remount: (!device).then_some(access | libc::MS_NOSUID | libc::MS_NODEV | locked_flags),
        };
        self.bind_sources.push(cstr(bytes(&bind.source))?);
        self.push(op, format!("{} -> {}", bind.source.display(), bind.target.display()));
        Ok(())
    }

    pub(crate) fn symlink(&mut self, target: &str, link: &Path) -> Result<(), crate::SandboxError> {
        self.parent_of(link)?;
        let op = Op::Symlink { target: cstr(target)?, link: cstr(bytes(link))? };
        self.push(op, format!("/{} -> {target}", link.display()));
        Ok(())
    }

    pub(crate) fn file(&mut self, file: &GeneratedFile) -> Result<(), crate::SandboxError> {
        let path = relative(&file.path)?;
        self.parent_of(&path)?;
        let op = Op::WriteFile { path: cstr(bytes(&path))?, content: file.content.clone(), mode: file.mode };
        self.push(op, file.path.display().to_string());
        Ok(())
    }

    pub(crate) fn copy_workspace(&mut self, source: &Path, target: &Path) -> Result<(), crate::SandboxError> {
        let fd = rustix::fs::open(
            source,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| {
            crate::SandboxError::InvalidSpec(format!("cannot open the workspace {}: {e}", source.display()))
        })?;
        let op = Op::CopyWorkspace { fd: fd.as_raw_fd(), target: cstr(bytes(target))? };
        self.push(op, format!("{} -> /{}", source.display(), target.display()));
        self.setup_fds.push(fd);
        Ok(())
    }
}

/// Mount flags a user namespace may not clear on a bind of a host mount (the kernel locks them): they must be
/// repeated when remounting the bind read-only, or the remount fails with EPERM.
fn locked_mount_flags(path: &Path) -> libc::c_ulong {
    let Ok(st) = rustix::fs::statvfs(path) else { return 0 };
    let f = st.f_flag;
    let mut flags = 0;
    let map = [
        (rustix::fs::StatVfsMountFlags::NOSUID, libc::MS_NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, libc::MS_NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, libc::MS_NOEXEC),
        (rustix::fs::StatVfsMountFlags::NOATIME, libc::MS_NOATIME),
        (rustix::fs::StatVfsMountFlags::NODIRATIME, libc::MS_NODIRATIME),
        (rustix::fs::StatVfsMountFlags::RELATIME, libc::MS_RELATIME),
    ];
    for (st_flag, ms_flag) in map {
        if f.contains(st_flag) {
            flags |= ms_flag;
        }
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_argv_0_and_its_environment_is_checked() {
        let mut spec = RunSpec::new("/usr/bin/python3");
        spec.args = vec!["-c".into(), "pass".into()];
        spec.env = vec![("PATH".into(), "/usr/bin".into()), ("EMPTY".into(), String::new())];
        let program = Program::from_spec(&spec).unwrap();
        assert_eq!(program.path.as_c_str(), c"/usr/bin/python3");
        let argv: Vec<&CString> = program._argv.iter().collect();
        assert_eq!(argv, [c"/usr/bin/python3", c"-c", c"pass"]);
        assert_eq!(program._envp, [c"PATH=/usr/bin".to_owned(), c"EMPTY=".to_owned()]);
        assert_eq!(program.argv_ptrs.len(), 4, "null-terminated");
        assert!(program.envp_ptrs.last().is_some_and(|p| p.is_null()));

        for name in ["", "A=B"] {
            spec.env = vec![(name.into(), "x".into())];
            assert!(matches!(Program::from_spec(&spec), Err(crate::SandboxError::InvalidSpec(_))), "{name:?}");
        }
        spec.env = Vec::new();
        spec.args = vec!["a\0b".into()];
        assert!(Program::from_spec(&spec).is_err(), "a NUL byte cannot reach execve");
    }

    #[test]
    fn data_is_capped_by_rlimit_only_without_cgroups() {
        let limits =
            RunLimits { pids: 64, workspace_bytes: 10, tmp_bytes: 20, memory_bytes: 30, ..RunLimits::default() };
        let with = rlimits(&limits, true);
        assert!(with.contains(&(libc::RLIMIT_NPROC, 64)));
        assert!(with.contains(&(libc::RLIMIT_FSIZE, 20)), "the larger tmpfs bounds a single file");
        assert!(with.contains(&(libc::RLIMIT_CORE, 0)));
        assert!(!with.iter().any(|(r, _)| *r == libc::RLIMIT_DATA));
        assert!(rlimits(&limits, false).contains(&(libc::RLIMIT_DATA, 30)));
    }
}
