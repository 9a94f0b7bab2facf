//! Landlock: the program may read and execute everything of its (already minimal) root, and write only in
//! `/work`, `/tmp` and `/dev/shm` (plus the device nodes). On ABI 6 and later it may also neither signal nor reach
//! the abstract unix sockets of processes outside its own domain.
//!
//! The ruleset is applied in the child after `pivot_root`, where the landlock crate cannot be used: it allocates,
//! and the child must not (see `child`). So this module holds the kernel ABI (stable UAPI numbers) and a plan
//! computed in the parent; the child only issues three system calls.

use std::ffi::CString;

/// `landlock_create_ruleset` flag: return the ABI version.
const CREATE_RULESET_VERSION: u32 = 1;
/// Rule type: a path and everything beneath it.
pub(crate) const RULE_PATH_BENEATH: libc::c_int = 1;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
const SCOPE_SIGNAL: u64 = 1 << 1;

/// Filesystem rights a given ABI version knows.
fn fs_rights(abi: u32) -> u64 {
    match abi {
        0 => 0,
        1 => (1 << 13) - 1,
        2 => (1 << 14) - 1,
        3 | 4 => (1 << 15) - 1,
        _ => (1 << 16) - 1,
    }
}

/// `struct landlock_ruleset_attr`.
#[repr(C)]
pub(crate) struct RulesetAttr {
    pub handled_access_fs: u64,
    pub handled_access_net: u64,
    pub scoped: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the UAPI).
#[repr(C, packed)]
pub(crate) struct PathBeneathAttr {
    pub allowed_access: u64,
    pub parent_fd: i32,
}

/// What the child applies.
#[derive(Debug)]
pub(crate) struct LandlockPlan {
    pub handled_fs: u64,
    pub scoped: u64,
    /// Size of the attribute struct this ABI understands.
    pub attr_size: usize,
    pub rules: Vec<(CString, u64)>,
}

/// The Landlock ABI of the running kernel, `None` when unavailable.
pub fn abi_version() -> Option<u32> {
    // SAFETY: the documented probe: NULL attributes, size 0, the VERSION flag.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as u32)
}

/// The ruleset for an ABI version, `None` when Landlock is unavailable.
pub(crate) fn plan(abi: Option<u32>, writable: &[&str]) -> Option<LandlockPlan> {
    let abi = abi?;
    let all = fs_rights(abi);
    let read = EXECUTE | READ_FILE | READ_DIR;
    let device = READ_FILE | WRITE_FILE | READ_DIR | (all & (TRUNCATE | IOCTL_DEV));
    let mut rules = vec![(c"/".to_owned(), read), (c"/dev".to_owned(), device)];
    for dir in writable {
        rules.push((CString::new(*dir).ok()?, all));
    }
    let (scoped, attr_size) = match abi {
        1..=3 => (0, 8),
        4 | 5 => (0, 16),
        _ => (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL, 24),
    };
    Some(LandlockPlan { handled_fs: all, scoped, attr_size, rules })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_grow_with_the_abi() {
        assert_eq!(fs_rights(1), 0x1fff);
        assert_eq!(fs_rights(3), 0x7fff);
        assert_eq!(fs_rights(7), 0xffff);
        assert!(plan(None, &["/work"]).is_none());
        let p = plan(Some(7), &["/work", "/tmp"]).unwrap();
        assert_eq!(p.attr_size, 24);
        assert_eq!(p.rules.len(), 4);
        assert_eq!(plan(Some(2), &[]).unwrap().rules[1].1 & TRUNCATE, 0, "no rights the ABI does not know");
        assert_eq!(std::mem::size_of::<PathBeneathAttr>(), 12);
    }
}
