//! Copies the workspace into the sandbox's `/work` tmpfs from inside the child: descriptor-relative, never
//! following symbolic links (links are recreated as links), with fixed stack buffers instead of allocations.
//!
//! The copy runs as the sandbox user inside the run's memory cgroup, so the tmpfs pages are charged to the run and
//! the tmpfs size cap (`disk_mb`) applies to the uploaded files too.

use std::mem::MaybeUninit;

use super::sys;

/// Deepest directory nesting copied; uploads are refused earlier, at a smaller bound (`pyexec_core::paths`).
const MAX_DEPTH: u32 = crate::MAX_WORKSPACE_DEPTH;

/// Offset of `d_name` in a `struct linux_dirent64` record (after `d_ino`, `d_off`, `d_reclen` and `d_type`).
const DIRENT_NAME_OFFSET: usize = 19;

/// Copies everything below the open directory `src` into the open directory `dst`. Returns an errno.
pub(crate) fn tree(src: i32, dst: i32, depth: u32) -> Result<(), i32> {
    if depth > MAX_DEPTH {
        return Err(libc::ELOOP);
    }
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    loop {
        // SAFETY: getdents64 fills at most `buf.len()` bytes of the buffer.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, src, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            return Err(sys::errno());
        }
        if n == 0 {
            return Ok(());
        }
        let mut offset = 0usize;
        while offset < n as usize {
            // SAFETY: the kernel wrote `n` bytes of complete records; each record starts with its header.
            let (reclen, name) = unsafe {
                let rec = buf.as_ptr().add(offset).cast::<u8>();
                let reclen = u16::from_ne_bytes([*rec.add(16), *rec.add(17)]) as usize;
                let name = std::ffi::CStr::from_ptr(rec.add(DIRENT_NAME_OFFSET).cast());
                (reclen, name)
            };
            offset += reclen;
            let bytes = name.to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            entry(src, dst, name, depth)?;
        }
    }
}

/// Copies one entry, by the type `fstatat` gives (not the directory entry's, which some file systems leave unknown).
fn entry(src: i32, dst: i32, name: &std::ffi::CStr, depth: u32) -> Result<(), i32> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstatat writes a full `struct stat`.
    if unsafe { libc::fstatat(src, name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) } < 0 {
        return Err(sys::errno());
    }
    // SAFETY: initialised by the successful fstatat.
    let st = unsafe { st.assume_init() };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            // SAFETY: descriptor-relative calls with a NUL-terminated name.
            unsafe {
                if libc::mkdirat(dst, name.as_ptr(), 0o755) < 0 && sys::errno() != libc::EEXIST {
                    return Err(sys::errno());
                }
                let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
                let s = libc::openat(src, name.as_ptr(), flags);
                if s < 0 {
                    return Err(sys::errno());
                }
                let d = libc::openat(dst, name.as_ptr(), flags);
                if d < 0 {
                    let e = sys::errno();
                    sys::close(s);
                    return Err(e);
                }
                let result = tree(s, d, depth + 1);
                sys::close(s);
                sys::close(d);
                result
            }
        }
        libc::S_IFREG => copy_file(src, dst, name, st.st_mode & 0o755),
        libc::S_IFLNK => {
            let mut target = [0u8; 4097];
            // SAFETY: readlinkat writes at most 4096 bytes, leaving room for the NUL.
            unsafe {
                let n = libc::readlinkat(src, name.as_ptr(), target.as_mut_ptr().cast(), 4096);
                if n < 0 {
                    return Err(sys::errno());
                }
                target[n as usize] = 0;
                if libc::symlinkat(target.as_ptr().cast(), dst, name.as_ptr()) < 0 {
                    return Err(sys::errno());
                }
            }
            Ok(())
        }
        // Uploads never contain devices, FIFOs or sockets (they are rejected when unpacked).
        _ => Ok(()),
    }
}

#[inline(never)]
fn copy_file(src: i32, dst: i32, name: &std::ffi::CStr, mode: libc::mode_t) -> Result<(), i32> {
    // SAFETY: descriptor-relative opens with a NUL-terminated name; descriptors closed on every path.
    unsafe {
        let input = libc::openat(src, name.as_ptr(), libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC);
        if input < 0 {
            return Err(sys::errno());
        }
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let output = libc::openat(dst, name.as_ptr(), flags, mode | 0o644);
        if output < 0 {
            let e = sys::errno();
            sys::close(input);
            return Err(e);
        }
        let result = pump(input, output);
        sys::close(input);
        sys::close(output);
        result
    }
}

/// Moves the bytes in the kernel where it can (sendfile), through a stack buffer where it cannot.
fn pump(input: i32, output: i32) -> Result<(), i32> {
    loop {
        // SAFETY: sendfile between two open descriptors, no offset pointer.
        let n = unsafe { libc::sendfile(output, input, std::ptr::null_mut(), 1 << 30) };
        if n > 0 {
            continue;
        }
        if n == 0 {
            return Ok(());
        }
        let e = sys::errno();
        if e == libc::EINTR {
            continue;
        }
        if e != libc::EINVAL && e != libc::ENOSYS {
            return Err(e);
        }
        break;
    }
    let mut buf = [0u8; 16 * 1024];
    loop {
        // SAFETY: reads into a stack buffer of the given length.
        let n = unsafe { libc::read(input, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = sys::errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        sys::write_all(output, &buf[..n as usize])?;
    }
}
