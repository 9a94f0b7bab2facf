//! Code that runs in the cloned child, from `clone3` to `execve`.
//!
//! The child is pid 1 of new user, mount, pid, network, IPC and UTS namespaces. It was cloned from the server, a
//! multi-threaded process, so until `execve` it may only make system calls: no allocation (another thread may have
//! held the allocator's lock at clone time), no glibc wrappers that talk to other threads, no panics. Everything
//! it needs is in the [`ChildPlan`], built by the parent. Failures are sent to the parent as numbers.
//!
//! Sequence:
//! 1. wipe the server's command line and environment from this copy of its memory (`disguise`); close every
//!    inherited descriptor the plan does not name; wait for the parent's go-ahead (uid maps written,
//!    cgroups joined, network attached);
//! 2. build the root on a tmpfs: read-only binds, generated files, `/dev`, `/work` (the workspace copied in),
//!    `/tmp`, `/proc`; switch to it with `pivot_root`, detach the host's root, make `/` read-only;
//! 3. fork the program (pid 2), which drops every capability, sets no_new_privs, applies Landlock and seccomp and
//!    executes; pid 1 stays behind as a minimal init that reaps orphans and reports the program's wait status.
//!    When it exits, the kernel kills whatever is left in the namespace: no process survives a run.

mod copy;
mod rootfs;
mod sys;

use crate::plan::{ChildPlan, MAX_BINDS};
use crate::stage::Stage;
use sys::{Failure, Result, check, fail};

/// Entry point of the cloned child.
///
/// # Safety
/// Must only be called in the child of a `clone` of this process, with `plan` built by this crate.
pub(crate) unsafe fn main(plan: &ChildPlan) -> ! {
    match init(plan) {
        Ok(never) => match never {},
        Err(failure) => sys::report_and_exit(plan.fds.report_w, failure),
    }
}

fn init(plan: &ChildPlan) -> Result<std::convert::Infallible> {
    // SAFETY: the areas are this clone's own copy of the server's; nothing here reads arguments or environment.
    unsafe { crate::disguise::apply(plan.disguise) };
    sys::close_all_except(&plan.keep);
    wait_for_go(plan.fds.sync_r)?;
    // SAFETY: unshare with a namespace flag; affects only this process.
    check(unsafe { libc::unshare(libc::CLONE_NEWCGROUP) }, Stage::CgroupNamespace)?;
    sys::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None, Stage::PrivateMounts)?;
    sys::mount(
        Some(c"tmpfs"),
        &plan.root_dir,
        Some(c"tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some(&plan.root_options),
        Stage::RootTmpfs,
    )?;
    // SAFETY: chdir to a NUL-terminated path.
    check(unsafe { libc::chdir(plan.root_dir.as_ptr()) }, Stage::RootTmpfs)?;
    let mut sources = [-1i32; MAX_BINDS];
    rootfs::open_bind_sources(plan, &mut sources)?;

    // Become the sandbox user before creating anything: files made while still the (unmapped) host user could
    // not be represented in the namespace. The capabilities held in the namespace survive the switch because
    // the namespace has no uid 0; the program drops them explicitly.
    if plan.clear_groups {
        sys::clear_groups()?;
    }
    sys::setresgid(plan.gid)?;
    sys::setresuid(plan.uid)?;
    // A credential change clears the parent-death signal, so arm it only now, then make sure the parent did not
    // die in between (it keeps the sync pipe open for the whole run).
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, Stage::ParentDeathSignal)?;
    if parent_gone(plan.fds.sync_r) {
        sys::exit(0);
    }

    rootfs::build(plan, &sources)?;
    for &fd in plan.setup_fds.iter().chain(sources.iter().filter(|&&fd| fd >= 0)) {
        sys::close(fd);
    }
    rootfs::enter()?;
    // SAFETY: sethostname with a NUL-terminated buffer and its length.
    check(unsafe { libc::sethostname(plan.hostname.as_ptr(), plan.hostname.as_bytes().len()) }, Stage::Hostname)?;
    if plan.loopback_up {
        rootfs::loopback_up()?;
    }

    let program = sys::fork()?;
    if program == 0 {
        let failure = exec_program(plan);
        sys::report_and_exit(plan.fds.report_w, failure);
    }
    // Keep only the status pipe: the program's output pipes must reach end-of-file when its tree is gone.
    sys::close_all_except(&[plan.fds.status_w]);
    reap_until(program, plan.fds.status_w)
}

fn wait_for_go(sync_r: i32) -> Result {
    let mut byte = [0u8; 1];
    loop {
        // SAFETY: reads one byte into a stack buffer.
        let n = unsafe { libc::read(sync_r, byte.as_mut_ptr().cast(), 1) };
        match n {
            1 => return Ok(()),
            // The parent closed the pipe without a go-ahead: it gave up or died.
            0 => sys::exit(0),
            _ if sys::errno() == libc::EINTR => continue,
            _ => return Err(fail(Stage::Sync, sys::errno())),
        }
    }
}

fn parent_gone(sync_r: i32) -> bool {
    let mut pfd = libc::pollfd { fd: sync_r, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one descriptor without waiting.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n > 0 && pfd.revents & libc::POLLHUP != 0
}

/// pid 1's job: reap every child (orphans are re-parented to it), and when the program itself ends, hand its
/// wait status to the parent and exit, which kills whatever is left.
fn reap_until(program: libc::pid_t, status_w: i32) -> ! {
    loop {
        let mut status = 0;
        // SAFETY: waits for any child of this process.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == program {
            let _ = sys::write_all(status_w, &status.to_ne_bytes());
            sys::exit(0);
        }
        if pid < 0 && sys::errno() != libc::EINTR {
            sys::exit(0);
        }
    }
}

/// The program's side of the fork: wire stdio, drop every privilege, lock down, execute. Returns only on failure.
fn exec_program(plan: &ChildPlan) -> Failure {
    match prepare_program(plan) {
        Err(failure) => failure,
        Ok(()) => match &plan.program {
            // The start-up self-test stops here: every restriction applied, nothing executed.
            None => sys::exit(0),
            Some(p) => {
                // SAFETY: NUL-terminated path and null-terminated pointer arrays owned by the plan.
                unsafe { libc::execve(p.path.as_ptr(), p.argv_ptrs.as_ptr(), p.envp_ptrs.as_ptr()) };
                fail(Stage::Exec, sys::errno())
            }
        },
    }
}

fn prepare_program(plan: &ChildPlan) -> Result {
    let fds = &plan.fds;
    // SAFETY: plain syscalls on descriptors the plan names; every pipe end is close-on-exec, so only the
    // duplicated standard descriptors (and 3, when asked for) survive execve.
    unsafe {
        check(libc::setsid(), Stage::Stdio)?;
        check(libc::dup2(fds.stdin_r, 0), Stage::Stdio)?;
        check(libc::dup2(fds.stdout_w, 1), Stage::Stdio)?;
        check(libc::dup2(fds.stderr_w, 2), Stage::Stdio)?;
        for (i, &w) in fds.extra_w[..fds.extra_count].iter().enumerate() {
            check(libc::dup2(w, 3 + i as i32), Stage::Stdio)?;
        }
        check(libc::chdir(plan.cwd.as_ptr()), Stage::Chdir)?;
        libc::umask(0o022);
        for &(resource, limit) in &plan.rlimits {
            let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            check(libc::setrlimit(resource, &rl), Stage::Rlimit)?;
        }
    }
    drop_capabilities(plan.last_cap)?;
    sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, Stage::NoNewPrivs)?;
    if let Some(landlock) = &plan.landlock {
        apply_landlock(landlock)?;
    }
    if !plan.seccomp.is_empty() {
        let prog = libc::sock_fprog {
            len: plan.seccomp.len() as u16,
            filter: plan.seccomp.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: the filter array outlives the call (the kernel copies it); seccompiler's `sock_filter` has the
        // kernel's layout.
        check(
            unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, 0u32, &prog as *const _) },
            Stage::Seccomp,
        )?;
    }
    Ok(())
}

/// Empties the bounding, ambient, effective, permitted and inheritable sets. The program would lose them at
/// execve anyway (it is not uid 0 in its namespace); dropping them here leaves nothing to chance.
fn drop_capabilities(last_cap: u32) -> Result {
    for cap in 0..=last_cap {
        // SAFETY: prctl with integer arguments; EINVAL for capabilities the kernel does not know is fine.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if ret < 0 && sys::errno() != libc::EINVAL {
            return Err(fail(Stage::Capabilities, sys::errno()));
        }
    }
    // SAFETY: as above.
    let ret = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    if ret < 0 && sys::errno() != libc::EINVAL {
        return Err(fail(Stage::Capabilities, sys::errno()));
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header { version: 0x2008_0522, pid: 0 };
    let data =
        [Data { effective: 0, permitted: 0, inheritable: 0 }, Data { effective: 0, permitted: 0, inheritable: 0 }];
    // SAFETY: capset with the v3 header and two data words, as capset(2) documents.
    check(unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) }, Stage::Capabilities).map(drop)
}

fn apply_landlock(plan: &crate::landlock::LandlockPlan) -> Result {
    use crate::landlock::{PathBeneathAttr, RULE_PATH_BENEATH, RulesetAttr};
    let attr = RulesetAttr { handled_access_fs: plan.handled_fs, handled_access_net: 0, scoped: plan.scoped };
    // SAFETY: landlock syscalls with pointers to live structs of the sizes the ABI expects.
    unsafe {
        let ruleset = check(
            libc::syscall(libc::SYS_landlock_create_ruleset, &attr as *const RulesetAttr, plan.attr_size, 0u32),
            Stage::Landlock,
        )? as i32;
        for (i, (path, access)) in plan.rules.iter().enumerate() {
            let fd = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if fd < 0 {
                // A writable directory the plan names but this run did not mount.
                continue;
            }
            let rule = PathBeneathAttr { allowed_access: *access, parent_fd: fd };
            let ret = libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset,
                RULE_PATH_BENEATH,
                &rule as *const PathBeneathAttr,
                0u32,
            );
            sys::close(fd);
            check(ret, Stage::Landlock).map_err(sys::at(i))?;
        }
        let ret = libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32);
        sys::close(ruleset);
        check(ret, Stage::Landlock).map(drop)
    }
}
