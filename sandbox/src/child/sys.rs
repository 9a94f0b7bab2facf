//! Raw system calls for the child. Only async-signal-safe calls, no allocation, no glibc wrappers that
//! coordinate with other threads (glibc's `setresuid`/`setgroups` signal every thread it knows of, and the
//! threads of the server do not exist in the child: they would wait forever).

use std::ffi::CStr;

use crate::stage::{self, Stage};

/// A failed step: what failed, the errno, and which plan item.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failure {
    pub stage: Stage,
    pub errno: i32,
    pub item: u32,
}

pub(crate) type Result<T = ()> = std::result::Result<T, Failure>;

pub(crate) fn errno() -> i32 {
    // SAFETY: errno is thread-local and the child's single thread owns it.
    unsafe { *libc::__errno_location() }
}

/// Turns a `-1` return into a [`Failure`] of `stage`.
pub(crate) fn check<T: Into<i64> + Copy>(ret: T, stage: Stage) -> Result<T> {
    if ret.into() < 0 { Err(Failure { stage, errno: errno(), item: u32::MAX }) } else { Ok(ret) }
}

/// Attaches the index of the plan item to a failure.
pub(crate) fn at(item: usize) -> impl Fn(Failure) -> Failure {
    move |f| Failure { item: item as u32, ..f }
}

pub(crate) fn fail(stage: Stage, errno: i32) -> Failure {
    Failure { stage, errno, item: u32::MAX }
}

/// Writes all of `buf`, retrying on EINTR.
pub(crate) fn write_all(fd: i32, mut buf: &[u8]) -> std::result::Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: valid buffer and length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Sends the failure to the parent and exits.
pub(crate) fn report_and_exit(report_fd: i32, f: Failure) -> ! {
    let _ = write_all(report_fd, &stage::encode(f.stage, f.errno, f.item));
    exit(125)
}

pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: ends the process without running any user-space clean-up (none is safe here).
    unsafe { libc::_exit(code) }
}

/// `fork` without glibc (whose fork handlers take locks other threads of the parent may have held).
pub(crate) fn fork() -> Result<libc::pid_t> {
    // SAFETY: clone with only SIGCHLD behaves as fork; the child continues on a copy of this stack.
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0usize, 0usize, 0usize, 0usize) };
    check(pid, Stage::Fork).map(|p| p as libc::pid_t)
}

pub(crate) fn setresuid(uid: u32) -> Result {
    // SAFETY: raw syscall with integer arguments (affects only this thread, which is the whole process).
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }, Stage::SwitchUser).map(drop)
}

pub(crate) fn setresgid(gid: u32) -> Result {
    // SAFETY: as above.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }, Stage::SwitchUser).map(drop)
}

pub(crate) fn clear_groups() -> Result {
    // SAFETY: as above; size 0 and a null list clear the supplementary groups.
    check(unsafe { libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) }, Stage::SwitchUser)
        .map(drop)
}

pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
    stage: Stage,
) -> Result {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: NUL-terminated strings or null, as mount(2) expects.
    let ret = unsafe { libc::mount(ptr(source), target.as_ptr(), ptr(fstype), flags, ptr(data).cast()) };
    check(ret, stage).map(drop)
}

pub(crate) fn close(fd: i32) {
    // SAFETY: closing a descriptor this process owns.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor except `keep` (sorted ascending).
pub(crate) fn close_all_except(keep: &[i32]) {
    let mut next: u32 = 0;
    for &k in keep {
        let k = k as u32;
        if k > next {
            close_range(next, k - 1);
        }
        next = k + 1;
    }
    close_range(next, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: close_range(2) only closes descriptors.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if ret < 0 {
        // Kernels before 5.9: close one by one up to a sane bound.
        let last = last.min(65_535);
        let mut fd = first;
        while fd <= last {
            close(fd as i32);
            fd += 1;
        }
    }
}

/// Opens `path` relative to the current directory.
pub(crate) fn open(path: &CStr, flags: i32, mode: libc::mode_t, stage: Stage) -> Result<i32> {
    // SAFETY: NUL-terminated path.
    check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) }, stage)
}

pub(crate) fn mkdir(path: &CStr, mode: libc::mode_t) -> Result {
    // SAFETY: NUL-terminated path.
    let ret = unsafe { libc::mkdir(path.as_ptr(), mode) };
    if ret < 0 && errno() != libc::EEXIST {
        return Err(fail(Stage::Mkdir, errno()));
    }
    Ok(())
}

pub(crate) fn prctl(option: libc::c_int, arg: libc::c_ulong, stage: Stage) -> Result {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(option, arg, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) }, stage)
        .map(drop)
}
