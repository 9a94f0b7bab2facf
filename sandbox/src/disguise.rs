//! What pid 1 of a sandbox shows of the server: nothing.
//!
//! pid 1 is cloned from the server without `execve` (see `child`), so it starts as a copy of the server's memory,
//! including the argument and environment areas that `/proc/1/cmdline` reads with no permission check. A server
//! started with `--api-keys ...` or an index URL holding credentials would hand them to every program. The child
//! therefore overwrites both areas (its own copy-on-write pages; the server's stay intact) and renames itself
//! before the program can look. `/proc/1/environ`, `/proc/1/mem` and `/proc/1/exe` need ptrace access, which the
//! program lacks: it has no capabilities while pid 1 holds all of its namespace's, and seccomp refuses `ptrace`
//! and `process_vm_readv`.

use std::sync::OnceLock;

/// The name pid 1 shows in `/proc/1/comm` and `ps`.
pub(crate) const INIT_NAME: &std::ffi::CStr = c"init";

/// One memory range `[start, start + len)` of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Area {
    pub start: usize,
    pub len: usize,
}

/// The server's argument and environment areas, read once from `/proc/self/stat` (they never move).
pub(crate) fn server_areas() -> &'static [Area] {
    static AREAS: OnceLock<Vec<Area>> = OnceLock::new();
    AREAS.get_or_init(|| std::fs::read_to_string("/proc/self/stat").ok().map(|s| parse_stat(&s)).unwrap_or_default())
}

/// `arg_start`, `arg_end`, `env_start`, `env_end` are fields 48 to 51 of `proc_pid_stat(5)`. The second field
/// (the command name, in parentheses) may itself hold spaces and parentheses, so fields are counted from the last
/// `)`, after which field 3 begins.
fn parse_stat(stat: &str) -> Vec<Area> {
    let Some((_, rest)) = stat.rsplit_once(')') else { return Vec::new() };
    let fields: Vec<usize> = rest.split_whitespace().skip(48 - 3).take(4).filter_map(|f| f.parse().ok()).collect();
    let [arg_start, arg_end, env_start, env_end] = fields[..] else { return Vec::new() };
    [(arg_start, arg_end), (env_start, env_end)]
        .into_iter()
        .filter(|(start, end)| *start != 0 && end > start)
        .map(|(start, end)| Area { start, len: end - start })
        .collect()
}

/// Overwrites the areas with zeros and renames the calling process. Only system calls and plain stores: safe in
/// the cloned child.
///
/// # Safety
/// `areas` must come from [`server_areas`] of the process this one was cloned from (so they are mapped, writable
/// stack pages of the copy), and nothing in this process may read the server's arguments or environment afterwards.
pub(crate) unsafe fn apply(areas: &[Area]) {
    for area in areas {
        // SAFETY: the caller guarantees the range is this process's own writable copy of the areas.
        unsafe { std::ptr::write_bytes(area.start as *mut u8, 0, area.len) };
    }
    // SAFETY: PR_SET_NAME with a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, INIT_NAME.as_ptr(), 0 as libc::c_ulong, 0 as libc::c_ulong) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_areas_past_a_tricky_command_name() {
        let mut fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        fields[48 - 3] = "1000".into();
        fields[49 - 3] = "1100".into();
        fields[50 - 3] = "1100".into();
        fields[51 - 3] = "1300".into();
        let stat = format!("42 (a) b (c)) {}", fields.join(" "));
        assert_eq!(parse_stat(&stat), vec![Area { start: 1000, len: 100 }, Area { start: 1100, len: 200 }]);
        assert!(parse_stat("42 (short) S 1").is_empty());
    }

    #[test]
    fn finds_this_process_areas_holding_its_arguments() {
        let areas = server_areas();
        assert_eq!(areas.len(), 2, "{areas:?}");
        // The argument area holds argv[0] first, as /proc/self/cmdline shows it.
        let cmdline = std::fs::read("/proc/self/cmdline").unwrap();
        // SAFETY: the range is this process's own, mapped argument area.
        let mem = unsafe { std::slice::from_raw_parts(areas[0].start as *const u8, areas[0].len) };
        assert_eq!(&mem[..cmdline.len().min(mem.len())], &cmdline[..cmdline.len().min(mem.len())]);
    }
}
