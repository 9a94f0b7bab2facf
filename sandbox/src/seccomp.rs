//! The seccomp filter of the sandboxed program: allow by default, `EPERM` for calls that reach kernel attack
//! surface a Python program has no business with (debugging other processes, mounting, namespaces, kernel keyring,
//! BPF, io_uring, module loading, clock setting, ...).
//!
//! A deny list rather than an allow list: the set of calls CPython, NumPy, OpenBLAS and friends make is large and
//! changes between versions, while the namespaces, the unmapped host uid and the dropped capabilities are the
//! primary walls. The filter is compiled once (with seccompiler) and loaded in the child right before `execve`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
};

/// Calls answered with `EPERM` whatever their arguments.
fn denied_syscalls() -> Vec<i64> {
    let mut calls = vec![
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_kcmp,
        libc::SYS_pidfd_getfd,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_mount_setattr,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_fanotify_init,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_open_by_handle_at,
        libc::SYS_name_to_handle_at,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_clock_adjtime,
        libc::SYS_adjtimex,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_syslog,
        libc::SYS_vhangup,
        libc::SYS_sethostname,
        libc::SYS_setdomainname,
        libc::SYS_lookup_dcookie,
    ];
    #[cfg(target_arch = "x86_64")]
    calls.extend([
        libc::SYS_iopl,
        libc::SYS_ioperm,
        libc::SYS_uselib,
        libc::SYS_ustat,
        libc::SYS_sysfs,
        libc::SYS__sysctl,
        libc::SYS_nfsservctl,
    ]);
    calls
}

/// `clone` flags that would create namespaces; `clone` itself stays allowed for threads and `fork`.
const NAMESPACE_CLONE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// Address families a program may open sockets in: the ones network namespaces isolate and Python uses. Every
/// other family is refused with `EAFNOSUPPORT` (what a kernel built without it answers, so libraries fall back
/// cleanly). The reasons, family by family, are in `docs/security.md` ("Socket families").
const ALLOWED_SOCKET_FAMILIES: [u64; 4] =
    [libc::AF_UNIX as u64, libc::AF_INET as u64, libc::AF_INET6 as u64, libc::AF_NETLINK as u64];

/// The one netlink protocol allowed: `NETLINK_ROUTE` (per network namespace; glibc's `getifaddrs` and
/// `if_nameindex` use it). Audit, uevent, connector and the other protocols reach state outside the namespace.
const ALLOWED_NETLINK_PROTOCOL: u64 = libc::NETLINK_ROUTE as u64;

/// `personality` values glibc and common programs use; any other (e.g. `ADDR_NO_RANDOMIZE`) is refused.
const ALLOWED_PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn target_arch() -> TargetArch {
    #[cfg(target_arch = "x86_64")]
    return TargetArch::x86_64;
    #[cfg(target_arch = "aarch64")]
    return TargetArch::aarch64;
    #[cfg(target_arch = "riscv64")]
    return TargetArch::riscv64;
}

/// Errors while compiling the filter (a bug, not a runtime condition).
#[derive(Debug, thiserror::Error)]
#[error("compiling the seccomp filter: {0}")]
pub struct SeccompError(#[from] seccompiler::BackendError);

/// Compiles the program's filter.
pub fn program_filter() -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in denied_syscalls() {
        rules.insert(nr, Vec::new());
    }
    let clone_rules = NAMESPACE_CLONE_FLAGS
        .iter()
        .map(|&flag| {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_clone, clone_rules);
    let personality_rule = SeccompRule::new(
        ALLOWED_PERSONALITIES
            .iter()
            .map(|&p| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, p))
            .collect::<Result<Vec<_>, _>>()?,
    )?;
    rules.insert(libc::SYS_personality, vec![personality_rule]);

    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), target_arch())?;
    let mut program: BpfProgram = filter.try_into()?;

    // Socket families are answered with their own errno, so they get a filter of their own, run first.
    program = chain_fallthrough(socket_filter()?, program);

    // clone3 passes its flags in memory a filter cannot read: answer ENOSYS so libc falls back to clone, whose
    // flags the rules above can check (what container runtimes do).
    let clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        target_arch(),
    )?;
    let clone3: BpfProgram = clone3.try_into()?;
    // Both programs start with the same architecture check; run the clone3 filter's syscall check first by
    // chaining: [x32 guard] + [clone3 check falling through into the main program].
    program = chain(x32_guard(), chain_fallthrough(clone3, program));
    Ok(program)
}

/// `socket` and `socketpair` outside [`ALLOWED_SOCKET_FAMILIES`], and netlink sockets of another protocol than
/// [`ALLOWED_NETLINK_PROTOCOL`], fail with `EAFNOSUPPORT`; everything else falls through to the main filter.
fn socket_filter() -> Result<BpfProgram, SeccompError> {
    let other_family = || {
        SeccompRule::new(
            ALLOWED_SOCKET_FAMILIES
                .iter()
                .map(|&family| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, family))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let other_netlink = SeccompRule::new(vec![
        SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::AF_NETLINK as u64)?,
        SeccompCondition::new(2, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, ALLOWED_NETLINK_PROTOCOL)?,
    ])?;
    let rules = BTreeMap::from([
        (libc::SYS_socket, vec![other_family()?, other_netlink]),
        (libc::SYS_socketpair, vec![other_family()?]),
    ]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
        target_arch(),
    )?;
    Ok(filter.try_into()?)
}

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;

/// On x86_64 the x32 ABI reuses the x86_64 audit arch with syscall numbers offset by `0x40000000`; a deny list
/// keyed on plain numbers would not match them, so refuse every x32 call first.
fn x32_guard() -> BpfProgram {
    if !cfg!(target_arch = "x86_64") {
        return Vec::new();
    }
    vec![
        sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 },
        sock_filter { code: BPF_JGE_K, jt: 0, jf: 1, k: 0x4000_0000 },
        sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | libc::EPERM as u32 },
    ]
}

fn chain(mut first: BpfProgram, second: BpfProgram) -> BpfProgram {
    first.extend(second);
    first
}

/// Runs `first` (a single-syscall filter whose default action is Allow) and, where it would allow, continues with
/// `second` instead. seccompiler ends every program with `ret ALLOW` for the mismatch case; those returns are
/// rewritten into jumps to the start of `second`.
fn chain_fallthrough(first: BpfProgram, second: BpfProgram) -> BpfProgram {
    let allow = u32::from(SeccompAction::Allow);
    let len = first.len();
    let mut out: BpfProgram = first
        .into_iter()
        .enumerate()
        .map(|(i, insn)| {
            if insn.code == BPF_RET_K && insn.k == allow {
                // Unconditional jump (ja) to the instruction right after `first`.
                sock_filter { code: (libc::BPF_JMP | libc::BPF_JA) as u16, jt: 0, jf: 0, k: (len - i - 1) as u32 }
            } else {
                insn
            }
        })
        .collect();
    out.extend(second);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;

    #[test]
    fn compiles_to_a_loadable_size() {
        let program = program_filter().unwrap();
        assert!(program.len() > 50);
        assert!(program.len() < 4096, "BPF programs are limited to 4096 instructions");
    }

    #[test]
    fn chaining_rewrites_only_allow_returns() {
        let allow = u32::from(SeccompAction::Allow);
        let first = vec![
            sock_filter { code: BPF_JEQ_K, jt: 0, jf: 1, k: 7 },
            sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: 1 },
            sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: allow },
        ];
        let second = vec![sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: 2 }];
        let out = chain_fallthrough(first, second);
        assert_eq!(out.len(), 4);
        assert_eq!(out[1].k, 1);
        assert_eq!(out[2].code, (libc::BPF_JMP | libc::BPF_JA) as u16);
        assert_eq!(out[2].k, 0, "jump to the very next instruction, the start of the second program");
    }
}
