//! The layout of a run's new root: what is mounted, linked and written where, in which order.
//!
//! Every decision about what a program can see of the file system is made here, in the parent, as a list of
//! operations (`plan::Op`) that `child::rootfs` carries out without deciding anything. Keeping the decisions apart
//! from the mechanism lets the tests below check the whole layout without mounting anything.
//!
//! The root holds the host's `/usr` (and the merged-/usr links or directories next to it), a few host files,
//! generated `/etc` files, the run's own binds and files, a `/dev` of five device nodes, the size-capped writable
//! `/work`, `/tmp` and `/dev/shm`, and a fresh `/proc`. The sandbox's own file systems are mounted after the binds,
//! so no bind may target them (it would be hidden); `plan::OpsBuilder` refuses such binds.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::SandboxError;
use crate::config::SandboxConfig;
use crate::plan::OpsBuilder;
use crate::spec::{Bind, GeneratedFile, Network, RunSpec};

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
/// Directories the program may write to (Landlock), besides writable binds.
const WRITABLE_DIRS: [&str; 3] = ["/work", "/tmp", "/dev/shm"];

/// A top-level directory of the host next to `/usr`: a merged-/usr link (`bin -> usr/bin`), recreated as the same
/// link, or a real directory, bound read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TopLevelDir {
    name: String,
    /// The link's target; `None` for a real directory.
    link: Option<String>,
}

impl TopLevelDir {
    fn link(name: &str, target: &str) -> Self {
        Self { name: name.into(), link: Some(target.into()) }
    }

    fn dir(name: &str) -> Self {
        Self { name: name.into(), link: None }
    }
}

/// What every root on this host has in common, fixed at start-up: the host's top-level directories, the
/// sandbox user and its host name.
#[derive(Debug, Clone)]
pub(crate) struct RootfsPlanner {
    top_level: Vec<TopLevelDir>,
    sandbox_uid: u32,
    hostname: String,
}

/// A run's root as operations for the child, and where Landlock lets it write.
pub(crate) struct RootfsPlan {
    pub ops: OpsBuilder,
    /// Absolute paths inside the sandbox.
    pub writable_dirs: Vec<String>,
}

impl RootfsPlanner {
    /// Looks at the host's top-level directories once; runs share the result.
    pub(crate) fn probe(config: &SandboxConfig) -> Self {
        let top_level = USR_LINKS
            .iter()
            .filter_map(|name| {
                let host = Path::new("/").join(name);
                match std::fs::read_link(&host) {
                    Ok(target) => Some(TopLevelDir::link(name, &target.to_string_lossy())),
                    Err(_) if host.is_dir() => Some(TopLevelDir::dir(name)),
                    Err(_) => None,
                }
            })
            .collect();
        Self { top_level, sandbox_uid: config.sandbox_uid, hostname: config.hostname.clone() }
    }

    /// The root of a run of `spec`. `dns` is the resolver that egress forwards, when this host has egress.
    pub(crate) fn plan(&self, spec: &RunSpec, dns: Option<Ipv4Addr>) -> Result<RootfsPlan, SandboxError> {
        let limits = &spec.limits;
        let mut b = OpsBuilder::new();

        b.bind(&Bind::same("/usr"))?;
        for dir in &self.top_level {
            match &dir.link {
                Some(target) => b.symlink(target, Path::new(&dir.name))?,
                None => b.bind(&Bind::same(Path::new("/").join(&dir.name)))?,
            }
        }
        let host_files: Vec<&str> =
            HOST_FILES.iter().chain(if spec.network.is_on() { NETWORK_FILES } else { &[] }).copied().collect();
        for path in host_files {
            b.bind(&Bind { optional: true, ..Bind::same(path) })?;
        }
        for file in self.etc_files(&spec.network, dns) {
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

        let writable_dirs = WRITABLE_DIRS
            .into_iter()
            .map(String::from)
            .chain(spec.binds.iter().filter(|b| b.writable).map(|b| b.target.display().to_string()))
            .collect();
        Ok(RootfsPlan { ops: b, writable_dirs })
    }

    /// `/etc` files of the sandbox: its users, host name resolution, fonts and, with internet egress, the resolver.
    fn etc_files(&self, network: &Network, dns: Option<Ipv4Addr>) -> Vec<GeneratedFile> {
        let uid = self.sandbox_uid;
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
            file("/etc/hosts", hosts_file(&self.hostname, network)),
            file("/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n".into()),
            file("/etc/fonts/fonts.conf", FONTS_CONF.into()),
        ];
        if *network == Network::Internet
            && let Some(dns) = dns
        {
            files.push(file("/etc/resolv.conf", format!("nameserver {dns}\noptions edns0\n")));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Op;
    use crate::spec::{HostEntry, RunLimits};

    fn planner() -> RootfsPlanner {
        RootfsPlanner {
            top_level: vec![TopLevelDir::link("bin", "usr/bin"), TopLevelDir::link("lib", "usr/lib")],
            sandbox_uid: 1000,
            hostname: "sandbox".into(),
        }
    }

    fn plan(spec: &RunSpec) -> RootfsPlan {
        planner().plan(spec, Some(Ipv4Addr::new(10, 0, 2, 3))).unwrap()
    }

    fn text(s: &std::ffi::CStr) -> String {
        s.to_string_lossy().into_owned()
    }

    /// Bind targets in order, with whether each is remounted (read-only or writable) or left as a device node.
    fn binds(plan: &RootfsPlan) -> Vec<(String, Option<libc::c_ulong>)> {
        plan.ops
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Bind { target, remount, .. } => Some((text(target), *remount)),
                _ => None,
            })
            .collect()
    }

    fn tmpfs(plan: &RootfsPlan, path: &str) -> (String, libc::c_ulong) {
        plan.ops
            .ops
            .iter()
            .find_map(|op| match op {
                Op::Tmpfs { target, options, flags } if text(target) == path => Some((text(options), *flags)),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no tmpfs at /{path}"))
    }

    fn file(plan: &RootfsPlan, path: &str) -> Option<String> {
        plan.ops.ops.iter().find_map(|op| match op {
            Op::WriteFile { path: p, content, .. } if text(p) == path => {
                Some(String::from_utf8_lossy(content).into_owned())
            }
            _ => None,
        })
    }

    fn position(plan: &RootfsPlan, wanted: impl Fn(&Op) -> bool) -> usize {
        plan.ops.ops.iter().position(wanted).expect("operation missing")
    }

    #[test]
    fn work_and_tmp_are_tmpfs_of_the_requested_sizes() {
        let mut spec = RunSpec::new("/bin/true");
        spec.limits = RunLimits { workspace_bytes: 5 << 20, tmp_bytes: 3 << 20, ..RunLimits::default() };
        let plan = plan(&spec);
        let writable = libc::MS_NOSUID | libc::MS_NODEV;
        assert_eq!(tmpfs(&plan, "work"), (format!("size={},nr_inodes=262144,mode=0755", 5 << 20), writable));
        assert_eq!(tmpfs(&plan, "tmp"), (format!("size={},nr_inodes=262144,mode=1777", 3 << 20), writable));
        assert_eq!(tmpfs(&plan, "dev/shm"), (format!("size={},nr_inodes=262144,mode=1777", 3 << 20), writable));
        assert_eq!(tmpfs(&plan, "dev"), ("size=64k,mode=0755".into(), libc::MS_NOSUID | libc::MS_NOEXEC));
        // Tiny limits still give a usable tmpfs.
        spec.limits = RunLimits { workspace_bytes: 0, tmp_bytes: 1, ..RunLimits::default() };
        let plan = self::plan(&spec);
        assert!(tmpfs(&plan, "work").0.starts_with("size=4096,"));
        assert!(tmpfs(&plan, "tmp").0.starts_with("size=4096,"));
    }

    #[test]
    fn the_sandbox_file_systems_come_after_every_bind_and_dev_ends_read_only() {
        let plan = plan(&RunSpec::new("/bin/true"));
        let ops = &plan.ops.ops;
        let last_bind =
            ops.iter().rposition(|op| matches!(op, Op::Bind { remount: Some(_), .. })).expect("binds exist");
        let dev = position(&plan, |op| matches!(op, Op::Tmpfs { target, .. } if text(target) == "dev"));
        assert!(last_bind < dev, "a bind below /dev, /work, /tmp or /proc would be hidden");
        let read_only = position(&plan, |op| matches!(op, Op::RemountReadOnly { target } if text(target) == "dev"));
        let shm = position(&plan, |op| matches!(op, Op::Tmpfs { target, .. } if text(target) == "dev/shm"));
        assert!(shm < read_only, "/dev/shm is mounted before /dev becomes read-only");
        let work = position(&plan, |op| matches!(op, Op::Tmpfs { target, .. } if text(target) == "work"));
        let tmp = position(&plan, |op| matches!(op, Op::Tmpfs { target, .. } if text(target) == "tmp"));
        let proc = position(&plan, |op| matches!(op, Op::Proc { target } if text(target) == "proc"));
        assert!(read_only < work && work < tmp && tmp < proc);
        assert!(matches!(ops.last(), Some(Op::Proc { .. })));
    }

    #[test]
    fn devices_are_exactly_the_five() {
        let plan = plan(&RunSpec::new("/bin/true"));
        let devices: Vec<String> =
            binds(&plan).into_iter().filter(|(_, remount)| remount.is_none()).map(|(target, _)| target).collect();
        assert_eq!(devices, ["dev/null", "dev/zero", "dev/full", "dev/random", "dev/urandom"]);
        let links: Vec<(String, String)> = plan
            .ops
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Symlink { target, link } if text(link).starts_with("dev/") => Some((text(link), text(target))),
                _ => None,
            })
            .collect();
        assert_eq!(links.len(), 4, "{links:?}");
        assert!(links.contains(&("dev/fd".into(), "/proc/self/fd".into())));
    }

    #[test]
    fn usr_is_read_only_and_the_interpreter_at_usr_local_comes_after_it() {
        let prefix = tempfile::tempdir().unwrap();
        let mut spec = RunSpec::new("/usr/local/bin/python3");
        spec.binds.push(Bind::at(prefix.path(), "/usr/local"));
        let plan = plan(&spec);
        let binds = binds(&plan);
        let usr = binds.iter().position(|(t, _)| t == "usr").expect("/usr is bound");
        let local = binds.iter().position(|(t, _)| t == "usr/local").expect("the interpreter is bound");
        assert_eq!(usr, 0, "/usr comes first");
        assert!(usr < local, "a bind at /usr/local before /usr would be hidden by it");
        for (target, remount) in &binds[..=local] {
            let flags = remount.unwrap_or_else(|| panic!("{target} is remounted"));
            assert_ne!(flags & libc::MS_RDONLY, 0, "{target} is read-only");
            assert_ne!(flags & libc::MS_NOSUID, 0, "{target} is nosuid");
        }
        // Merged-/usr links are recreated as links.
        let ops = &plan.ops.ops;
        assert!(
            ops.iter().any(
                |op| matches!(op, Op::Symlink { target, link } if text(link) == "bin" && text(target) == "usr/bin")
            )
        );
        assert!(!plan.writable_dirs.contains(&"/usr/local".to_string()));
    }

    #[test]
    fn user_binds_cannot_target_the_sandbox_file_systems() {
        let source = tempfile::tempdir().unwrap();
        for target in ["/work", "/work/data", "/tmp", "/tmp/x", "/dev", "/dev/shm", "/proc", "/proc/self"] {
            let mut spec = RunSpec::new("/bin/true");
            spec.binds.push(Bind::at(source.path(), target));
            let err = planner().plan(&spec, None).err().unwrap_or_else(|| panic!("a bind at {target} is refused"));
            assert!(matches!(err, SandboxError::InvalidSpec(_)), "{err:?}");
        }
        for target in ["/workspace", "/tmpdir", "/opt/work"] {
            let mut spec = RunSpec::new("/bin/true");
            spec.binds.push(Bind::at(source.path(), target));
            assert!(planner().plan(&spec, None).is_ok(), "{target} is an ordinary path");
        }
        let mut spec = RunSpec::new("/bin/true");
        spec.binds.push(Bind::at(source.path(), "/opt/../work"));
        assert!(planner().plan(&spec, None).is_err(), "no way around it with '..'");
    }

    #[test]
    fn resolv_conf_exists_only_with_internet_egress() {
        let mut spec = RunSpec::new("/bin/true");
        assert_eq!(file(&plan(&spec), "etc/resolv.conf"), None, "no network, no resolver");

        spec.network = Network::Internet;
        let with = plan(&spec);
        assert_eq!(file(&with, "etc/resolv.conf").as_deref(), Some("nameserver 10.0.2.3\noptions edns0\n"));
        let without_egress = planner().plan(&spec, None).unwrap();
        assert_eq!(file(&without_egress, "etc/resolv.conf"), None);

        let addr = "203.0.113.7".parse().unwrap();
        spec.network = Network::Hosts(vec![HostEntry { name: "pypi.org".into(), addrs: vec![addr] }]);
        let pinned = plan(&spec);
        assert_eq!(file(&pinned, "etc/resolv.conf"), None, "allowlisted hosts get no DNS");
        let hosts = file(&pinned, "etc/hosts").unwrap();
        assert!(hosts.starts_with("127.0.0.1\tlocalhost sandbox\n"), "{hosts}");
        assert!(hosts.ends_with("203.0.113.7\tpypi.org\n"), "{hosts}");
    }

    #[test]
    fn generated_etc_files_name_the_sandbox_user_and_fonts() {
        let plan = plan(&RunSpec::new("/bin/true"));
        assert!(file(&plan, "etc/passwd").unwrap().contains("\nsandbox:x:1000:1000:sandbox:/tmp:/bin/sh\n"));
        assert!(file(&plan, "etc/group").unwrap().contains("\nsandbox:x:1000:\n"));
        assert_eq!(
            file(&plan, "etc/nsswitch.conf").as_deref(),
            Some("passwd: files\ngroup: files\nhosts: files dns\n")
        );
        assert!(file(&plan, "etc/fonts/fonts.conf").unwrap().contains("<cachedir>/tmp/.cache/fontconfig</cachedir>"));
        let ops = &plan.ops.ops;
        for op in ops {
            if let Op::WriteFile { mode, .. } = op {
                assert_eq!(*mode, 0o644);
            }
        }
    }

    #[test]
    fn certificates_are_bound_only_with_network() {
        let certificate_binds = |plan: &RootfsPlan| {
            let ops = &plan.ops;
            ops.labels.iter().filter(|l| NETWORK_FILES.iter().any(|f| l.starts_with(&format!("{f} ")))).count()
        };
        let mut spec = RunSpec::new("/bin/true");
        assert_eq!(certificate_binds(&plan(&spec)), 0);
        spec.network = Network::Internet;
        let expected = NETWORK_FILES.iter().filter(|f| Path::new(f).exists()).count();
        assert_eq!(certificate_binds(&plan(&spec)), expected);
    }

    #[test]
    fn the_workspace_is_copied_into_work_and_only_work_tmp_shm_and_writable_binds_are_writable() {
        let workspace = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let mut spec = RunSpec::new("/bin/true");
        spec.workspace = Some(workspace.path().to_owned());
        spec.binds.push(Bind { writable: true, ..Bind::at(cache.path(), "/opt/cache") });
        let plan = plan(&spec);
        let work = position(&plan, |op| matches!(op, Op::Tmpfs { target, .. } if text(target) == "work"));
        let copy = position(&plan, |op| matches!(op, Op::CopyWorkspace { target, .. } if text(target) == "work"));
        assert_eq!(copy, work + 1, "the workspace is copied right after /work is mounted");
        assert_eq!(plan.ops.setup_fds.len(), 1, "the workspace is held open for the child");
        assert_eq!(plan.writable_dirs, ["/work", "/tmp", "/dev/shm", "/opt/cache"]);
        let (_, remount) = binds(&plan).into_iter().find(|(t, _)| t == "opt/cache").unwrap();
        assert_eq!(remount.map(|f| f & libc::MS_RDONLY), Some(0), "a writable bind is not read-only");
    }

    #[test]
    fn missing_optional_binds_are_skipped_and_missing_required_ones_refused() {
        let mut spec = RunSpec::new("/bin/true");
        spec.binds.push(Bind { optional: true, ..Bind::same("/nonexistent/pyexec-test") });
        let plan = plan(&spec);
        assert!(!binds(&plan).iter().any(|(t, _)| t.starts_with("nonexistent")));
        spec.binds = vec![Bind::same("/nonexistent/pyexec-test")];
        assert!(matches!(planner().plan(&spec, None), Err(SandboxError::InvalidSpec(_))));
    }

    #[test]
    fn the_probe_mirrors_the_hosts_top_level_directories() {
        let planner = RootfsPlanner::probe(&SandboxConfig::new("/nonexistent"));
        assert_eq!((planner.sandbox_uid, planner.hostname.as_str()), (1000, "sandbox"));
        for dir in &planner.top_level {
            let host = Path::new("/").join(&dir.name);
            match &dir.link {
                Some(target) => assert_eq!(std::fs::read_link(&host).unwrap(), Path::new(target)),
                None => assert!(host.is_dir() && !host.is_symlink()),
            }
        }
    }
}
