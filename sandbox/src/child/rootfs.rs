//! Builds the new root from the plan's operations, then makes it the process's root.

use super::copy;
use super::sys::{self, Result, at, fail};
use crate::plan::{ChildPlan, MAX_BINDS, Op};
use crate::stage::Stage;

const RO_REMOUNT: libc::c_ulong = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;

/// Opens every bind source (`O_PATH`), while the child still has the identity of its creator.
pub(crate) fn open_bind_sources(plan: &ChildPlan, fds: &mut [i32; MAX_BINDS]) -> Result {
    for (i, source) in plan.bind_sources.iter().enumerate() {
        fds[i] = sys::open(source, libc::O_PATH, 0, Stage::Bind).map_err(at_source(plan, i))?;
    }
    Ok(())
}

/// Points a failure to open bind source `i` at the operation that uses it.
fn at_source(plan: &ChildPlan, i: usize) -> impl Fn(sys::Failure) -> sys::Failure + '_ {
    move |f| {
        let op = plan.ops.iter().position(|op| matches!(op, Op::Bind { source, .. } if *source == i));
        at(op.unwrap_or(usize::MAX))(f)
    }
}

/// Executes every operation, relative to the new root (the current directory).
pub(crate) fn build(plan: &ChildPlan, sources: &[i32; MAX_BINDS]) -> Result {
    for (i, op) in plan.ops.iter().enumerate() {
        apply(op, sources).map_err(at(i))?;
    }
    Ok(())
}

/// `/proc/self/fd/N` in a stack buffer.
fn fd_path(fd: i32, buf: &mut [u8; 32]) -> &std::ffi::CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let mut n = fd.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[PREFIX.len() + i] = digits[len - 1 - i];
    }
    buf[PREFIX.len() + len] = 0;
    std::ffi::CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"/")
}

fn apply(op: &Op, sources: &[i32; MAX_BINDS]) -> Result {
    match op {
        Op::Mkdir { path, mode } => sys::mkdir(path, *mode),
        Op::Tmpfs { target, options, flags } => {
            sys::mount(Some(c"tmpfs"), target, Some(c"tmpfs"), *flags, Some(options), Stage::Tmpfs)
        }
        Op::Bind { source, target, dir, remount } => {
            if *dir {
                sys::mkdir(target, 0o755)?;
            } else {
                let fd = sys::open(target, libc::O_WRONLY | libc::O_CREAT | libc::O_NOFOLLOW, 0o644, Stage::Bind)?;
                sys::close(fd);
            }
            let mut buf = [0u8; 32];
            let source = fd_path(sources[*source], &mut buf);
            sys::mount(Some(source), target, None, libc::MS_BIND | libc::MS_REC, None, Stage::Bind)?;
            match remount {
                Some(flags) => {
                    sys::mount(None, target, None, libc::MS_REMOUNT | libc::MS_BIND | flags, None, Stage::BindReadOnly)
                }
                None => Ok(()),
            }
        }
        Op::Symlink { target, link } => {
            // SAFETY: NUL-terminated strings.
            sys::check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }, Stage::Symlink).map(drop)
        }
        Op::WriteFile { path, content, mode } => {
            let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
            let fd = sys::open(path, flags, *mode, Stage::WriteFile)?;
            let written = sys::write_all(fd, content);
            // SAFETY: fchmod on an open descriptor (the umask may have cleared bits of `mode`).
            unsafe { libc::fchmod(fd, *mode) };
            sys::close(fd);
            written.map_err(|e| fail(Stage::WriteFile, e))
        }
        Op::CopyWorkspace { fd, target } => {
            let dst = sys::open(target, libc::O_RDONLY | libc::O_DIRECTORY, 0, Stage::CopyWorkspace)?;
            let result = copy::tree(*fd, dst, 0);
            sys::close(dst);
            result.map_err(|e| fail(Stage::CopyWorkspace, e))
        }
        Op::RemountReadOnly { target } => sys::mount(None, target, None, RO_REMOUNT, None, Stage::BindReadOnly),
        Op::Proc { target } => sys::mount(
            Some(c"proc"),
            target,
            Some(c"proc"),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            None,
            Stage::Proc,
        ),
    }
}

/// Makes the current directory the root (`pivot_root(".", ".")` stacks the old root on top, which is then
/// detached), and the root read-only.
pub(crate) fn enter() -> Result {
    // SAFETY: raw syscalls with NUL-terminated paths.
    unsafe {
        sys::check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()), Stage::PivotRoot)?;
        sys::check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH), Stage::DetachOldRoot)?;
        sys::check(libc::chdir(c"/".as_ptr()), Stage::PivotRoot)?;
    }
    sys::mount(None, c"/", None, RO_REMOUNT, None, Stage::RootReadOnly)
}

/// Brings `lo` up, so that a program may talk to itself over 127.0.0.1 (nothing else is reachable).
pub(crate) fn loopback_up() -> Result {
    // SAFETY: an ioctl on a fresh datagram socket with a zeroed, NUL-terminated interface request.
    unsafe {
        let sock = sys::check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0), Stage::Loopback)?;
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let result = (|| {
            sys::check(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req), Stage::Loopback)?;
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            sys::check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &req), Stage::Loopback)
        })();
        sys::close(sock);
        result.map(drop)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fd_paths() {
        let mut buf = [0u8; 32];
        assert_eq!(super::fd_path(0, &mut buf), c"/proc/self/fd/0");
        assert_eq!(super::fd_path(1234567, &mut buf), c"/proc/self/fd/1234567");
    }
}
