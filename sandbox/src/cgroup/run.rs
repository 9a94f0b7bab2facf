//! The cgroup(s) of one run: created with their limits before the child may run, removed after it is reaped.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::layout::Hierarchy;
use super::{CPU_PERIOD_US, CgroupLimits};

/// The cgroups of one run, in every hierarchy that has a controller for it.
#[derive(Debug)]
pub struct RunCgroup {
    /// Every directory created, in creation order (removed in reverse).
    dirs: Vec<PathBuf>,
    /// Where the out-of-memory counters live.
    memory: PathBuf,
    memory_hierarchy: Hierarchy,
    /// v1 directories the child must be moved into (a process can only be born into a v2 cgroup).
    v1_attach: Vec<PathBuf>,
    /// The v2 directory, for `CLONE_INTO_CGROUP` and `cgroup.kill`.
    unified: Option<PathBuf>,
    /// Where the limits are written.
    limits_at: LimitFiles,
}

/// The directories holding a run's limit files.
#[derive(Debug, Clone)]
enum LimitFiles {
    /// Nothing to write (a cgroup adopted after a crash).
    None,
    /// One v2 directory, with or without the cpu controller.
    Unified { dir: PathBuf, cpu: bool },
    /// v1 controller directories.
    Hybrid { memory: PathBuf, pids: PathBuf, cpu: Option<PathBuf> },
}

impl LimitFiles {
    /// Writes `limits`; with `previous` (the limits in force), only the files whose value changes, since every
    /// write is a system call on the path of a warm start.
    fn write(&self, limits: &CgroupLimits, previous: Option<&CgroupLimits>) -> io::Result<()> {
        let changed = |f: fn(&CgroupLimits) -> u64| previous.is_none_or(|p| f(p) != f(limits));
        let memory = changed(|l| l.memory_bytes);
        let pids_changed = changed(|l| l.pids);
        let quota = changed(CgroupLimits::cpu_quota_us);
        let weight = changed(CgroupLimits::shares);
        match self {
            LimitFiles::None => Ok(()),
            LimitFiles::Unified { dir, cpu } => {
                if memory {
                    write(dir, "memory.max", limits.memory_bytes.to_string())?;
                    write_optional(dir, "memory.swap.max", "0")?;
                }
                if pids_changed {
                    write(dir, "pids.max", limits.pids.to_string())?;
                }
                if *cpu && quota {
                    write(dir, "cpu.max", format!("{} {CPU_PERIOD_US}", limits.cpu_quota_us()))?;
                }
                if *cpu && weight {
                    write(dir, "cpu.weight", limits.cpu_weight().to_string())?;
                }
                Ok(())
            }
            LimitFiles::Hybrid { memory: memory_dir, pids, cpu } => {
                if memory {
                    // A lower limit than the current usage needs memsw lowered first, a higher one the opposite
                    // (memsw >= limit at all times); try both orders. memsw is absent without swap accounting.
                    let bytes = limits.memory_bytes.to_string();
                    if write(memory_dir, "memory.limit_in_bytes", &bytes).is_err() {
                        write_optional(memory_dir, "memory.memsw.limit_in_bytes", &bytes)?;
                        write(memory_dir, "memory.limit_in_bytes", &bytes)?;
                    }
                    write_optional(memory_dir, "memory.memsw.limit_in_bytes", &bytes)?;
                }
                if pids_changed {
                    write(pids, "pids.max", limits.pids.to_string())?;
                }
                if let Some(cpu) = cpu {
                    if previous.is_none() {
                        write(cpu, "cpu.cfs_period_us", CPU_PERIOD_US.to_string())?;
                    }
                    if quota {
                        write(cpu, "cpu.cfs_quota_us", limits.cpu_quota_us().to_string())?;
                    }
                    if weight {
                        write(cpu, "cpu.shares", limits.shares().to_string())?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Writes a control file, naming it in the error.
fn write(dir: &Path, file: &str, value: impl AsRef<[u8]>) -> io::Result<()> {
    fs::write(dir.join(file), value).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display())))
}

/// Writes a control file that not every kernel configuration has (swap accounting, for instance).
fn write_optional(dir: &Path, file: &str, value: impl AsRef<[u8]>) -> io::Result<()> {
    match fs::write(dir.join(file), value) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display()))),
    }
}

impl RunCgroup {
    fn empty(memory: PathBuf, memory_hierarchy: Hierarchy) -> Self {
        Self {
            dirs: Vec::new(),
            memory,
            memory_hierarchy,
            v1_attach: Vec::new(),
            unified: None,
            limits_at: LimitFiles::None,
        }
    }

    fn mkdir(&mut self, dir: &Path) -> io::Result<()> {
        fs::create_dir(dir).map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
        self.dirs.push(dir.to_owned());
        Ok(())
    }

    /// A pure-v2 run cgroup.
    pub(super) fn create_unified(dir: &Path, cpu: bool, limits: &CgroupLimits) -> io::Result<Self> {
        let mut run = Self::empty(dir.to_owned(), Hierarchy::V2);
        run.limits_at = LimitFiles::Unified { dir: dir.to_owned(), cpu };
        let result = (|| {
            run.mkdir(dir)?;
            run.limits_at.write(limits, None)
        })();
        run.unified = Some(dir.to_owned());
        run.or_cleanup(result)
    }

    /// v1 controller cgroups, plus a v2 cgroup for `cgroup.kill` when there is one.
    pub(super) fn create_hybrid(
        memory: &Path,
        pids: &Path,
        cpu: Option<&Path>,
        unified: Option<&Path>,
        limits: &CgroupLimits,
    ) -> io::Result<Self> {
        let mut run = Self::empty(memory.to_owned(), Hierarchy::V1);
        run.limits_at =
            LimitFiles::Hybrid { memory: memory.to_owned(), pids: pids.to_owned(), cpu: cpu.map(Path::to_owned) };
        let result = (|| {
            run.mkdir(memory)?;
            run.v1_attach.push(memory.to_owned());
            run.mkdir(pids)?;
            run.v1_attach.push(pids.to_owned());
            if let Some(cpu) = cpu {
                run.mkdir(cpu)?;
                run.v1_attach.push(cpu.to_owned());
            }
            run.limits_at.write(limits, None)?;
            if let Some(unified) = unified {
                run.mkdir(unified)?;
                run.unified = Some(unified.to_owned());
            }
            Ok(())
        })();
        run.or_cleanup(result)
    }

    fn or_cleanup(self, result: io::Result<()>) -> io::Result<Self> {
        match result {
            Ok(()) => Ok(self),
            Err(e) => {
                let _ = self.remove_blocking();
                Err(e)
            }
        }
    }

    /// An existing run cgroup found at start-up (left by a crashed server).
    pub(super) fn adopt(dir: PathBuf, hierarchy: Hierarchy) -> Self {
        let mut run = Self::empty(dir.clone(), hierarchy);
        if hierarchy == Hierarchy::V2 {
            run.unified = Some(dir.clone());
        }
        run.dirs.push(dir);
        run
    }

    /// A descriptor of the v2 cgroup for `clone3(CLONE_INTO_CGROUP)`, so the child is born inside it.
    pub fn clone_into_fd(&self) -> io::Result<Option<OwnedFd>> {
        let Some(dir) = &self.unified else { return Ok(None) };
        let fd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        Ok(Some(fd))
    }

    /// Moves `pid` into the v1 cgroups (must happen before it runs anything untrusted).
    pub fn attach_v1(&self, pid: i32) -> io::Result<()> {
        for dir in &self.v1_attach {
            write(dir, "cgroup.procs", pid.to_string())?;
        }
        Ok(())
    }

    /// Moves `pid` into the v2 cgroup, for kernels that cannot clone into it.
    pub fn attach_unified(&self, pid: i32) -> io::Result<()> {
        match &self.unified {
            Some(dir) => write(dir, "cgroup.procs", pid.to_string()),
            None => Ok(()),
        }
    }

    /// Kills every process of the run (v2 `cgroup.kill`, else one by one).
    pub fn kill(&self) {
        if let Some(dir) = &self.unified
            && fs::write(dir.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for dir in &self.dirs {
            if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                    // SAFETY: plain syscall with integer arguments.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }

    /// Changes the limits from `previous` to `limits` (a warm sandbox gets its request's limits when claimed).
    pub fn set_limits(&self, limits: &CgroupLimits, previous: &CgroupLimits) -> io::Result<()> {
        self.limits_at.write(limits, Some(previous))
    }

    /// Memory charged to the run now, bytes.
    pub fn memory_current(&self) -> Option<u64> {
        let file = match self.memory_hierarchy {
            Hierarchy::V1 => "memory.usage_in_bytes",
            Hierarchy::V2 => "memory.current",
        };
        fs::read_to_string(self.memory.join(file)).ok()?.trim().parse().ok()
    }

    /// Whether the kernel's OOM killer killed a process of this run.
    pub fn oom_killed(&self) -> bool {
        self.oom_kills() > 0
    }

    /// How many processes of this run the kernel's OOM killer killed so far.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.memory_hierarchy {
            Hierarchy::V1 => ("memory.oom_control", "oom_kill"),
            Hierarchy::V2 => ("memory.events", "oom_kill"),
        };
        fs::read_to_string(self.memory.join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse::<u64>().ok()).flatten()
                })
            })
            .unwrap_or(0)
    }

    /// Removes the directories. Processes being torn down keep a cgroup busy for a moment, so busy directories
    /// are retried for up to a second. Blocking: call from a blocking context.
    pub fn remove_blocking(self) -> io::Result<()> {
        let mut last = Ok(());
        for dir in self.dirs.iter().rev() {
            last = remove_dir_retrying(dir);
        }
        last
    }
}

fn remove_dir_retrying(dir: &Path) -> io::Result<()> {
    let mut delay = Duration::from_micros(200);
    for _ in 0..40 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            // A fake tree in tests holds files; the kernel's cgroupfs never does.
            Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) && !is_cgroupfs(dir) => {
                return fs::remove_dir_all(dir);
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("removing {}: {e}", dir.display()))),
        }
    }
    Err(io::Error::other(format!("removing {}: still busy", dir.display())))
}

// `f_type`'s integer type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn is_cgroupfs(dir: &Path) -> bool {
    rustix::fs::statfs(dir)
        .map(|s| {
            let magic = s.f_type as i64;
            magic == libc::CGROUP_SUPER_MAGIC as i64 || magic == libc::CGROUP2_SUPER_MAGIC as i64
        })
        .unwrap_or(false)
}
