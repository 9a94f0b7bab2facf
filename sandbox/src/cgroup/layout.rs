//! Finding the cgroup hierarchies, the server's place in them, and preparing the parent of all run cgroups.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::CgroupLimits;
use super::run::RunCgroup;

/// Name of the directory holding run cgroups, next to the server's own cgroup.
const PARENT_NAME: &str = "pyexec";
/// Where, in a pure-v2 hierarchy, the server moves itself so that its cgroup may delegate controllers.
const SUPERVISOR_NAME: &str = "supervisor";

/// Which kind of hierarchy a run cgroup lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1 controller hierarchy.
    V1,
    /// The unified (v2) hierarchy.
    V2,
}

/// How run cgroups are made on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// No usable cgroups; limits fall back to rlimits.
    Unavailable {
        /// Why, for the health report.
        reason: String,
    },
    /// Pure v2 with the memory and pids controllers delegated.
    Unified {
        /// Parent directory of run cgroups.
        parent: PathBuf,
        /// Whether the cpu controller is available too.
        cpu: bool,
    },
    /// v1 controllers, and possibly a controller-less v2 hierarchy for `cgroup.kill`.
    Hybrid {
        /// Whether task migrations skip the RCU grace period (`favordynmods`); without it, moving each child into
        /// its v1 cgroups can stall for a grace period (about 10 ms on an idle machine).
        fast_migration: bool,
        /// Parent in the memory hierarchy.
        memory: PathBuf,
        /// Parent in the pids hierarchy.
        pids: PathBuf,
        /// Parent in the cpu hierarchy, when mounted.
        cpu: Option<PathBuf>,
        /// Parent in the v2 hierarchy, when mounted and writable.
        unified: Option<PathBuf>,
    },
}

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,...`).
    mount_options: String,
    /// Superblock options (`rw,nsdelegate,...`).
    super_options: String,
    /// The mount's root inside the hierarchy (not `/` when a sub-tree is bind-mounted).
    root: String,
    /// v1 controllers, empty for v2.
    controllers: Vec<String>,
    v2: bool,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let fstype = *post.first()?;
            let root = unescape(pre.get(3)?);
            let mount_point = PathBuf::from(unescape(pre.get(4)?));
            let mount_options = pre.get(5)?.to_string();
            let super_options = post.get(2).unwrap_or(&"").to_string();
            match fstype {
                "cgroup2" => {
                    Some(Mount { mount_point, mount_options, super_options, root, controllers: Vec::new(), v2: true })
                }
                "cgroup" => {
                    let controllers = post
                        .get(2)?
                        .split(',')
                        .filter(|o| matches!(*o, "memory" | "pids" | "cpu" | "cpuacct" | "cpuset" | "freezer"))
                        .map(str::to_owned)
                        .collect();
                    Some(Mount { mount_point, mount_options, super_options, root, controllers, v2: false })
                }
                _ => None,
            }
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// `(controllers, path)` of each line of `/proc/self/cgroup`; v2 has empty controllers.
fn parse_proc_cgroup(text: &str) -> Vec<(Vec<String>, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            let controllers = controllers.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect::<Vec<_>>();
            Some((controllers, path.to_owned()))
        })
        .collect()
}

/// The directory of the server's own cgroup in `mount`.
fn own_dir(mount: &Mount, own: &[(Vec<String>, String)]) -> Option<PathBuf> {
    let path = if mount.v2 {
        own.iter().find(|(c, _)| c.is_empty()).map(|(_, p)| p)?
    } else {
        own.iter().find(|(c, _)| mount.controllers.iter().any(|m| c.contains(m))).map(|(_, p)| p)?
    };
    // A bind-mounted sub-tree shows only what is below its root.
    let relative = path.strip_prefix(mount.root.trim_end_matches('/')).unwrap_or(path);
    Some(mount.mount_point.join(relative.trim_start_matches('/')))
}

impl CgroupLayout {
    /// Discovers the layout of this host and prepares the parent directories (creating them, delegating
    /// controllers, removing run cgroups a crashed server left behind). With `favor_dynmods`, a hybrid host's v2
    /// hierarchy is remounted with `favordynmods` (see [`CgroupLayout::Hybrid::fast_migration`]).
    pub fn discover(favor_dynmods: bool) -> CgroupLayout {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Self::prepare(&parse_mountinfo(&mountinfo), &parse_proc_cgroup(&own), favor_dynmods)
    }

    fn prepare(mounts: &[Mount], own: &[(Vec<String>, String)], favor_dynmods: bool) -> CgroupLayout {
        let v1 = |name: &str| mounts.iter().find(|m| !m.v2 && m.controllers.iter().any(|c| c == name));
        let v2 = mounts.iter().find(|m| m.v2);
        match (v1("memory"), v1("pids")) {
            (Some(memory), Some(pids)) => {
                let prepare_v1 = |m: &Mount| -> io::Result<PathBuf> {
                    let dir = own_dir(m, own).ok_or_else(|| io::Error::other("own cgroup not found"))?;
                    let parent = dir.join(PARENT_NAME);
                    ensure_dir(&parent)?;
                    probe_writable(&parent)?;
                    remove_stale_runs(&parent, Hierarchy::V1);
                    Ok(parent)
                };
                let (memory, pids) = match (prepare_v1(memory), prepare_v1(pids)) {
                    (Ok(m), Ok(p)) => (m, p),
                    (Err(e), _) | (_, Err(e)) => {
                        return CgroupLayout::Unavailable {
                            reason: format!("cannot create cgroups in the v1 memory/pids hierarchies: {e}"),
                        };
                    }
                };
                let cpu = v1("cpu").and_then(|m| prepare_v1(m).ok());
                let unified = v2.and_then(|m| {
                    let parent = own_dir(m, own)?.join(PARENT_NAME);
                    ensure_dir(&parent).ok()?;
                    probe_writable(&parent).ok()?;
                    remove_stale_runs(&parent, Hierarchy::V2);
                    Some(parent)
                });
                let fast_migration = v2.is_some_and(|m| favor_dynamic_modifications(m, favor_dynmods));
                CgroupLayout::Hybrid { fast_migration, memory, pids, cpu, unified }
            }
            _ => match v2 {
                Some(m) => match own_dir(m, own) {
                    Some(dir) => prepare_unified(&dir, &m.mount_point),
                    None => CgroupLayout::Unavailable { reason: "the server's own v2 cgroup was not found".into() },
                },
                None => CgroupLayout::Unavailable { reason: "no cgroup hierarchy is mounted".into() },
            },
        }
    }

    /// One line for the health report.
    pub fn describe(&self) -> String {
        match self {
            CgroupLayout::Unavailable { reason } => format!("unavailable ({reason})"),
            CgroupLayout::Unified { parent, cpu } => {
                format!("v2 at {} (memory, pids{})", parent.display(), if *cpu { ", cpu" } else { "" })
            }
            CgroupLayout::Hybrid { memory, unified, cpu, fast_migration, .. } => format!(
                "v1 at {} (memory, pids{}){}{}",
                memory.display(),
                if cpu.is_some() { ", cpu" } else { "" },
                if unified.is_some() { " + v2 cgroup.kill" } else { "" },
                if *fast_migration { "; favordynmods" } else { "; migrations wait for RCU grace periods" }
            ),
        }
    }

    /// Whether memory and pids limits are enforced by cgroups.
    pub fn is_available(&self) -> bool {
        !matches!(self, CgroupLayout::Unavailable { .. })
    }

    /// Creates the cgroup(s) of one run and writes its limits.
    pub fn create_run(&self, name: &str, limits: &CgroupLimits) -> io::Result<Option<RunCgroup>> {
        match self {
            CgroupLayout::Unavailable { .. } => Ok(None),
            CgroupLayout::Unified { parent, cpu } => {
                RunCgroup::create_unified(&parent.join(name), *cpu, limits).map(Some)
            }
            CgroupLayout::Hybrid { memory, pids, cpu, unified, .. } => RunCgroup::create_hybrid(
                &memory.join(name),
                &pids.join(name),
                cpu.as_ref().map(|c| c.join(name)).as_deref(),
                unified.as_ref().map(|u| u.join(name)).as_deref(),
                limits,
            )
            .map(Some),
        }
    }
}

/// Makes task migrations between cgroups cheap by remounting the v2 hierarchy with `favordynmods` (Linux 6.0+),
/// keeping every other option of the mount. Moving a task takes a global lock whose fast, per-CPU mode costs an
/// RCU grace period to leave; `favordynmods` keeps it in the slow mode instead, which makes fork and exit a few
/// nanoseconds slower everywhere and spares each sandbox the grace period. Only needed where children must be
/// moved into v1 cgroups: on pure v2 they are born in their cgroup.
fn favor_dynamic_modifications(m: &Mount, enabled: bool) -> bool {
    let has = |opts: &str, o: &str| opts.split(',').any(|x| x == o);
    if has(&m.super_options, "favordynmods") {
        return true;
    }
    if !enabled {
        return false;
    }
    let mut data: Vec<&str> =
        m.super_options.split(',').filter(|o| !o.is_empty() && *o != "rw" && *o != "ro").collect();
    data.push("favordynmods");
    let mut flags = libc::MS_REMOUNT;
    for (name, flag) in [
        ("ro", libc::MS_RDONLY),
        ("nosuid", libc::MS_NOSUID),
        ("nodev", libc::MS_NODEV),
        ("noexec", libc::MS_NOEXEC),
        ("noatime", libc::MS_NOATIME),
        ("nodiratime", libc::MS_NODIRATIME),
        ("relatime", libc::MS_RELATIME),
    ] {
        if has(&m.mount_options, name) {
            flags |= flag;
        }
    }
    let (Ok(target), Ok(data)) =
        (std::ffi::CString::new(m.mount_point.as_os_str().as_encoded_bytes()), std::ffi::CString::new(data.join(",")))
    else {
        return false;
    };
    // SAFETY: mount(2) with NUL-terminated strings; a remount of an existing cgroup2 mount.
    let ret = unsafe { libc::mount(std::ptr::null(), target.as_ptr(), std::ptr::null(), flags, data.as_ptr().cast()) };
    if ret != 0 {
        tracing::info!(
            mount = %m.mount_point.display(),
            error = %io::Error::last_os_error(),
            "cannot enable favordynmods; moving each sandbox into its cgroups may wait for an RCU grace period"
        );
        return false;
    }
    true
}

/// Proves that run cgroups can be created under `parent` (an existing parent may belong to another user).
fn probe_writable(parent: &Path) -> io::Result<()> {
    let probe = parent.join(format!("run-{}-probe", std::process::id()));
    fs::create_dir(&probe)?;
    fs::remove_dir(&probe)
}

fn ensure_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Delegates memory, pids (and cpu) below the server's own v2 cgroup `own`, in the hierarchy mounted at `top`.
///
/// v2 forbids enabling controllers for the children of a cgroup that has processes of its own, so the processes
/// of `own` (the server, and in a container whatever else shares its cgroup) move to `own/supervisor` first, the
/// way container init scripts do. Controllers `own` was not given are enabled from the nearest ancestor that has
/// them (see [`enable_from_ancestors`]).
fn prepare_unified(own: &Path, top: &Path) -> CgroupLayout {
    // A server started inside the `supervisor/` cgroup an earlier one made (a restart under the same service
    // manager, the next test binary of a suite) takes over that layout instead of nesting one more level.
    let own = own
        .parent()
        .filter(|parent| own.file_name() == Some(SUPERVISOR_NAME.as_ref()) && parent.join(PARENT_NAME).is_dir())
        .unwrap_or(own);
    let unavailable = |reason: String| CgroupLayout::Unavailable { reason };
    let available = fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| available.split_whitespace().any(|a| a == c);
    let missing: Vec<&str> = ["memory", "pids", "cpu"].into_iter().filter(|c| !has(c)).collect();
    // Ancestors are changed only for the limits every run needs. A cgroup given memory and pids but not cpu is
    // most likely a service manager's choice (systemd enables cpu only where a unit asks), and enabling cpu
    // above it would change how the host's other services share the CPU; runs then go without cpu quotas.
    let gained = if missing.iter().any(|c| *c != "cpu") {
        enable_from_ancestors(own, top, &missing)
    } else {
        if !missing.is_empty() {
            tracing::info!(
                cgroup = %own.display(),
                "the cpu controller is not delegated to the server: runs get no cpu quota (systemd: Delegate=yes)"
            );
        }
        Vec::new()
    };
    let usable = |c: &str| has(c) || gained.contains(&c);
    if !usable("memory") || !usable("pids") {
        return unavailable(format!(
            "the memory and pids controllers are not delegated to {} (available: {:?}) and could not be enabled \
             from its ancestors; run the server as root, or in a cgroup with them delegated (systemd: Delegate=yes)",
            own.display(),
            available.trim()
        ));
    }
    let cpu = usable("cpu");
    let wanted = if cpu { "+memory +pids +cpu" } else { "+memory +pids" };
    if let Err(first) = fs::write(own.join("cgroup.subtree_control"), wanted) {
        if first.raw_os_error() != Some(libc::EBUSY) {
            return unavailable(format!("cannot delegate controllers below {}: {first}", own.display()));
        }
        if let Err(e) = move_processes_to(own, &own.join(SUPERVISOR_NAME)) {
            return unavailable(format!("cannot move processes out of {}: {e}", own.display()));
        }
        if let Err(e) = fs::write(own.join("cgroup.subtree_control"), wanted) {
            return unavailable(format!("cannot delegate controllers below {}: {e}", own.display()));
        }
    }
    let parent = own.join(PARENT_NAME);
    if let Err(e) = ensure_dir(&parent)
        .and_then(|()| fs::write(parent.join("cgroup.subtree_control"), wanted))
        .and_then(|()| probe_writable(&parent))
    {
        return unavailable(format!("cannot prepare {}: {e}", parent.display()));
    }
    remove_stale_runs(&parent, Hierarchy::V2);
    CgroupLayout::Unified { parent, cpu }
}

/// Makes the `missing` controllers available to `own` by enabling each in the `cgroup.subtree_control` of every
/// cgroup from the nearest ancestor that has it down to `own`'s parent, and returns those it could enable.
///
/// A server started as root outside a delegated cgroup (a plain service manager, a VM's process supervisor, a
/// login session) often sits in a cgroup that was given only some controllers; without this it would run every
/// program without memory and pids limits although the host has the controllers. Enabling a controller for a
/// cgroup's children sets no limit on them (every limit defaults to `max`); the one visible effect is that sibling
/// cgroups get cpu weights of their own. It needs write access to the ancestors (root), and fails on an ancestor
/// that holds processes of its own, which v2 forbids; both are logged and leave the controller missing.
fn enable_from_ancestors(own: &Path, top: &Path, missing: &[&'static str]) -> Vec<&'static str> {
    let ancestors: Vec<&Path> = own.ancestors().skip(1).take_while(|a| a.starts_with(top)).collect();
    let listed = |dir: &Path, file: &str, c: &str| {
        fs::read_to_string(dir.join(file)).unwrap_or_default().split_whitespace().any(|x| x == c)
    };
    let mut gained = Vec::new();
    'controllers: for &controller in missing {
        // The nearest ancestor that was given the controller; it and each cgroup below it pass it on.
        let Some(nearest) = ancestors.iter().position(|a| listed(a, "cgroup.controllers", controller)) else {
            continue;
        };
        for dir in ancestors[..=nearest].iter().rev() {
            if listed(dir, "cgroup.subtree_control", controller) {
                continue;
            }
            if let Err(e) = fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}")) {
                let why = if e.raw_os_error() == Some(libc::EBUSY) { " (it holds processes of its own)" } else { "" };
                tracing::warn!(
                    cgroup = %dir.display(), controller, error = %e,
                    "cannot enable a cgroup controller for the sandbox{why}; give the server a delegated cgroup"
                );
                continue 'controllers;
            }
            tracing::info!(cgroup = %dir.display(), controller, "enabled a cgroup controller for the sandbox");
        }
        gained.push(controller);
    }
    gained
}

fn move_processes_to(from: &Path, to: &Path) -> io::Result<()> {
    ensure_dir(to)?;
    let procs = fs::read_to_string(from.join("cgroup.procs"))?;
    for pid in procs.split_whitespace() {
        match fs::write(to.join("cgroup.procs"), pid) {
            Ok(()) => {}
            // Gone in the meantime.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Run cgroups are named `run-<server pid>-<n>`. Those of server processes that no longer exist (a crash) are
/// killed and removed; other live servers on the same host keep theirs.
fn remove_stale_runs(parent: &Path, hierarchy: Hierarchy) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(run_owner) else { continue };
        if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let stale = RunCgroup::adopt(entry.path(), hierarchy);
        stale.kill();
        if let Err(e) = stale.remove_blocking() {
            tracing::warn!(cgroup = %entry.path().display(), error = %e, "could not remove a stale run cgroup");
        }
    }
}

/// The server pid in a run cgroup's name.
fn run_owner(name: &str) -> Option<u32> {
    name.strip_prefix("run-")?.split('-').next()?.parse().ok()
}

/// Builds a layout over a fake tree (tests only).
#[cfg(test)]
pub(crate) fn prepare_for_test(mountinfo: &str, own: &str) -> CgroupLayout {
    CgroupLayout::prepare(&parse_mountinfo(mountinfo), &parse_proc_cgroup(own), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:6 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:7 - cgroup cgroup rw,pids
33 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,cpu,cpuacct
40 25 0:30 / /proc rw - proc proc rw
";

    #[test]
    fn run_cgroup_names_carry_their_owner() {
        assert_eq!(run_owner("run-1234-7"), Some(1234));
        assert_eq!(run_owner("run-1234-probe"), Some(1234));
        assert_eq!(run_owner("supervisor"), None);
    }

    #[test]
    fn parses_mountinfo_and_own_cgroups() {
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
        assert_eq!(mounts.len(), 4);
        assert!(mounts[0].v2);
        assert_eq!(mounts[0].mount_options, "rw,nosuid,nodev,noexec,relatime");
        assert_eq!(mounts[0].super_options, "rw");
        assert_eq!(mounts[3].controllers, vec!["cpu", "cpuacct"]);
        let own = parse_proc_cgroup("4:memory:/process_api/abc\n3:cpu,cpuacct:/\n2:pids:/\n0::/\n");
        assert_eq!(own_dir(&mounts[1], &own), Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc")));
        assert_eq!(own_dir(&mounts[3], &own), Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/")));
        assert_eq!(own_dir(&mounts[0], &own), Some(PathBuf::from("/sys/fs/cgroup/unified/")));
    }

    #[test]
    fn bind_mounted_subtrees_are_relative_to_their_root() {
        let mounts = parse_mountinfo("30 25 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let own = parse_proc_cgroup("0::/kubepods/pod1/ctr\n");
        assert_eq!(own_dir(&mounts[0], &own), Some(PathBuf::from("/sys/fs/cgroup/ctr")));
    }

    /// A fake v2 tree in a temporary directory: files are plain files, so this checks what we write, not what a
    /// kernel would accept.
    #[test]
    fn unified_layout_delegates_controllers_and_writes_limits() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("system.slice/pyexec.service");
        fs::create_dir_all(&own).unwrap();
        fs::write(own.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(own.join("cgroup.procs"), "").unwrap();
        let mountinfo = format!("30 25 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.path().display());
        let layout = prepare_for_test(&mountinfo, "0::/system.slice/pyexec.service\n");
        let parent = own.join("pyexec");
        assert_eq!(layout, CgroupLayout::Unified { parent: parent.clone(), cpu: true });
        assert_eq!(fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(), "+memory +pids +cpu");
        assert_eq!(fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap(), "+memory +pids +cpu");

        let limits = CgroupLimits { memory_bytes: 64 << 20, pids: 32, cpu_shares: 512, background: false };
        let run = layout.create_run("run-1-1", &limits).unwrap().unwrap();
        let dir = parent.join("run-1-1");
        assert_eq!(fs::read_to_string(dir.join("memory.max")).unwrap(), "67108864");
        assert_eq!(fs::read_to_string(dir.join("memory.swap.max")).unwrap(), "0");
        assert_eq!(fs::read_to_string(dir.join("pids.max")).unwrap(), "32");
        assert_eq!(fs::read_to_string(dir.join("cpu.max")).unwrap(), "50000 100000");
        assert_eq!(fs::read_to_string(dir.join("cpu.weight")).unwrap(), "20");
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        assert!(run.oom_killed());
        assert!(layout.describe().starts_with("v2 at "));
    }

    /// A server in a cgroup given only `memory` (as under a VM's process supervisor): pids and cpu are enabled
    /// from the ancestor that has them, then delegated below the server's own cgroup as usual.
    #[test]
    fn unified_layout_enables_missing_controllers_from_ancestors() {
        let root = tempfile::tempdir().unwrap();
        let supervisor = root.path().join("process_api");
        let own = supervisor.join("abc");
        fs::create_dir_all(&own).unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(root.path().join("cgroup.subtree_control"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(supervisor.join("cgroup.controllers"), "cpuset cpu io memory pids\n").unwrap();
        fs::write(supervisor.join("cgroup.subtree_control"), "memory\n").unwrap();
        fs::write(own.join("cgroup.controllers"), "memory\n").unwrap();
        fs::write(own.join("cgroup.procs"), "").unwrap();
        let mountinfo = format!("30 25 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.path().display());
        let layout = prepare_for_test(&mountinfo, "0::/process_api/abc\n");
        assert_eq!(layout, CgroupLayout::Unified { parent: own.join("pyexec"), cpu: true });
        // Written one controller at a time (a fake file keeps the last write); the root was left alone.
        assert_eq!(fs::read_to_string(supervisor.join("cgroup.subtree_control")).unwrap(), "+cpu");
        assert_eq!(
            fs::read_to_string(root.path().join("cgroup.subtree_control")).unwrap(),
            "cpuset cpu io memory pids\n"
        );
        assert_eq!(fs::read_to_string(own.join("cgroup.subtree_control")).unwrap(), "+memory +pids +cpu");
    }

    #[test]
    fn a_missing_cpu_controller_alone_leaves_the_ancestors_alone() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("system.slice/pyexec.service");
        fs::create_dir_all(&own).unwrap();
        fs::write(root.path().join("system.slice/cgroup.controllers"), "cpu memory pids\n").unwrap();
        fs::write(root.path().join("system.slice/cgroup.subtree_control"), "memory pids\n").unwrap();
        fs::write(own.join("cgroup.controllers"), "memory pids\n").unwrap();
        fs::write(own.join("cgroup.procs"), "").unwrap();
        let mountinfo = format!("30 25 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.path().display());
        let layout = prepare_for_test(&mountinfo, "0::/system.slice/pyexec.service\n");
        assert_eq!(layout, CgroupLayout::Unified { parent: own.join("pyexec"), cpu: false });
        let slice = fs::read_to_string(root.path().join("system.slice/cgroup.subtree_control")).unwrap();
        assert_eq!(slice, "memory pids\n");
    }

    #[test]
    fn a_server_started_in_the_supervisor_cgroup_reuses_the_layout() {
        let root = tempfile::tempdir().unwrap();
        let own = root.path().join("service");
        fs::create_dir_all(own.join("supervisor")).unwrap();
        fs::create_dir_all(own.join("pyexec")).unwrap();
        fs::write(own.join("cgroup.controllers"), "memory pids\n").unwrap();
        fs::write(own.join("cgroup.procs"), "").unwrap();
        let mountinfo = format!("30 25 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.path().display());
        let layout = prepare_for_test(&mountinfo, "0::/service/supervisor\n");
        assert_eq!(layout, CgroupLayout::Unified { parent: own.join("pyexec"), cpu: false });
        assert!(!own.join("supervisor/supervisor").exists(), "no nesting");
    }

    #[test]
    fn unified_layout_without_delegated_controllers_is_unavailable() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpu io\n").unwrap();
        let mountinfo = format!("30 25 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.path().display());
        let layout = prepare_for_test(&mountinfo, "0::/\n");
        assert!(matches!(layout, CgroupLayout::Unavailable { reason } if reason.contains("not delegated")));
    }

    #[test]
    fn hybrid_layout_writes_v1_limits() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path().display();
        for d in ["memory", "pids", "cpu", "unified"] {
            fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let mountinfo = format!(
            "1 0 0:1 / {r}/unified rw - cgroup2 cgroup2 rw\n2 0 0:2 / {r}/memory rw - cgroup cgroup rw,memory\n\
             3 0 0:3 / {r}/pids rw - cgroup cgroup rw,pids\n4 0 0:4 / {r}/cpu rw - cgroup cgroup rw,cpu,cpuacct\n"
        );
        let layout = prepare_for_test(&mountinfo, "4:memory:/\n3:pids:/\n2:cpu,cpuacct:/\n0::/\n");
        assert!(matches!(layout, CgroupLayout::Hybrid { unified: Some(_), cpu: Some(_), .. }), "{layout:?}");
        let limits = CgroupLimits { memory_bytes: 1 << 20, pids: 16, cpu_shares: 1024, background: false };
        let run = layout.create_run("run-1-2", &limits).unwrap().unwrap();
        let mem = root.path().join("memory/pyexec/run-1-2");
        assert_eq!(fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap(), "1048576");
        assert_eq!(fs::read_to_string(root.path().join("pids/pyexec/run-1-2/pids.max")).unwrap(), "16");
        assert_eq!(fs::read_to_string(root.path().join("cpu/pyexec/run-1-2/cpu.cfs_quota_us")).unwrap(), "100000");
        assert!(root.path().join("unified/pyexec/run-1-2").is_dir());
        fs::write(mem.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        assert!(!run.oom_killed());
        fs::write(mem.join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert!(run.oom_killed());
    }
}
