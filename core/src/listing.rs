//! What `GET /api/v1/executions` returns: summaries, so that a page has a fixed upper size whatever the listed
//! executions printed. Every backend lists through [`summarize`] and [`PageBudget`], so the rule lives here once.
//!
//! A summary is the execution's result with `stdout` and `stderr` cut to [`OUTPUT_CAP_BYTES`] each (setting
//! `stdout_truncated` / `stderr_truncated` when cut), and the other free texts (`error`, `error_type`,
//! `error_message`, `result`, `pre_commands_output`, the `installed_packages` entries together) to
//! [`TEXT_CAP_BYTES`]. `GET /api/v1/executions/{id}` returns the whole result.

use crate::model::ExecutionResult;
use crate::text::head;

/// Bytes of `stdout` and of `stderr` a list item carries.
pub const OUTPUT_CAP_BYTES: usize = 4096;

/// Bytes of each other free text a list item carries (and of all its `installed_packages` entries together).
pub const TEXT_CAP_BYTES: usize = 1024;

/// Most bytes of one list answer. A page holds up to `limit` items, fewer when the next one would not fit; its
/// `next_cursor` then leads to the rest.
///
/// With the caps above, one item serialises to at most about 90 KiB (every byte of text escaped as `\u00XX`), so
/// a page always has room for at least one.
pub const PAGE_BUDGET_BYTES: usize = 2 << 20;

/// Room kept for the page's envelope: `{"executions":[`, `],"next_cursor":"…"}`.
const ENVELOPE_BYTES: usize = 256;

/// The list item of `result`.
pub fn summarize(result: &ExecutionResult) -> ExecutionResult {
    let cap = |text: &Option<String>| text.as_deref().map(|t| head(t, TEXT_CAP_BYTES).0);
    let (stdout, stdout_cut) = head(&result.stdout, OUTPUT_CAP_BYTES);
    let (stderr, stderr_cut) = head(&result.stderr, OUTPUT_CAP_BYTES);
    let mut room = TEXT_CAP_BYTES;
    let installed_packages = result
        .installed_packages
        .iter()
        .take_while(|p| {
            let fits = p.len() <= room;
            room = room.saturating_sub(p.len());
            fits
        })
        .cloned()
        .collect();
    // Skip notes are bounded like the installed packages: the first ones that fit.
    let mut room = TEXT_CAP_BYTES;
    let skipped_packages = result
        .skipped_packages
        .iter()
        .take_while(|p| {
            let fits = p.name.len() + p.reason.len() <= room;
            room = room.saturating_sub(p.name.len() + p.reason.len());
            fits
        })
        .cloned()
        .collect();
    ExecutionResult {
        execution_id: result.execution_id.clone(),
        status: result.status,
        stdout,
        stderr,
        exit_code: result.exit_code,
        error: cap(&result.error),
        error_type: cap(&result.error_type),
        error_line: result.error_line,
        started_at: result.started_at,
        finished_at: result.finished_at,
        duration_ms: result.duration_ms,
        result: cap(&result.result),
        error_message: cap(&result.error_message),
        stdout_truncated: result.stdout_truncated || stdout_cut,
        stderr_truncated: result.stderr_truncated || stderr_cut,
        oom_killed: result.oom_killed,
        installed_packages,
        pre_commands_output: cap(&result.pre_commands_output),
        // Images and file lists are unbounded in a list's terms (megabytes, a thousand entries): the whole result
        // (`GET /api/v1/executions/{id}`) and the files endpoint carry them.
        outputs: Vec::new(),
        files: Vec::new(),
        files_truncated: result.files_truncated,
        session_id: result.session_id.clone(),
        session_restarted: result.session_restarted,
        tenant: result.tenant.clone(),
        skipped_packages,
        install_ms: result.install_ms,
    }
}

/// The serialised size of a list item, as it appears in the answer.
pub fn serialized_len(item: &ExecutionResult) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serialising a result into a counter cannot fail; counting nothing would only make the page shorter.
    let _ = serde_json::to_writer(&mut count, item);
    count.0
}

/// Fills one page within [`PAGE_BUDGET_BYTES`].
#[derive(Debug)]
pub struct PageBudget {
    used: usize,
    items: usize,
}

impl Default for PageBudget {
    fn default() -> Self {
        Self { used: ENVELOPE_BYTES, items: 0 }
    }
}

impl PageBudget {
    /// Whether an item of `len` serialised bytes still fits on the page; counts it when it does. The first item
    /// always fits (a summary is far smaller than the budget), so every page makes progress.
    pub fn admit(&mut self, len: usize) -> bool {
        let cost = len + 1;
        if self.items > 0 && self.used + cost > PAGE_BUDGET_BYTES {
            return false;
        }
        self.used += cost;
        self.items += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExecutionStatus;

    fn big(status: ExecutionStatus) -> ExecutionResult {
        let mut r = ExecutionResult::pending("exe_00000000-0000-4000-8000-000000000000");
        r.status = status;
        r.stdout = "é".repeat(600_000);
        r.stderr = "\u{1}".repeat(1_000_000);
        r.error = Some("e".repeat(10_000));
        r.error_type = Some("T".repeat(10_000));
        r.error_message = Some("m".repeat(10_000));
        r.result = Some("r".repeat(1_000_000));
        r.pre_commands_output = Some("p".repeat(1_000_000));
        r.installed_packages = (0..10_000).map(|i| format!("package-{i}==1.0")).collect();
        r
    }

    #[test]
    fn summaries_cap_every_text_and_flag_cut_outputs() {
        let s = summarize(&big(ExecutionStatus::Completed));
        assert!(s.stdout.len() <= OUTPUT_CAP_BYTES && s.stdout.len() > OUTPUT_CAP_BYTES - 4);
        assert!(s.stdout.chars().all(|c| c == 'é'), "cut at a character boundary");
        assert_eq!(s.stderr.len(), OUTPUT_CAP_BYTES);
        assert!(s.stdout_truncated && s.stderr_truncated);
        for text in [&s.error, &s.error_type, &s.error_message, &s.result, &s.pre_commands_output] {
            assert_eq!(text.as_deref().map(str::len), Some(TEXT_CAP_BYTES));
        }
        let packages: usize = s.installed_packages.iter().map(String::len).sum();
        assert!(packages <= TEXT_CAP_BYTES && !s.installed_packages.is_empty());
        assert_eq!(s.installed_packages[0], "package-0==1.0");
        // Worst case: every byte of the capped texts escaped as \u00XX.
        assert!(serialized_len(&s) < 100 << 10, "{}", serialized_len(&s));
        assert_eq!(serialized_len(&s), serde_json::to_vec(&s).unwrap().len());
    }

    #[test]
    fn small_results_are_listed_unchanged() {
        let mut r = ExecutionResult::pending("exe_x");
        r.stdout = "hello\n".into();
        r.error_message = Some("boom".into());
        r.installed_packages = vec!["numpy==2.1.0".into()];
        assert_eq!(summarize(&r), r);
        r.stdout_truncated = true;
        assert_eq!(summarize(&r), r, "a cut made by the run stays flagged");
    }

    #[test]
    fn a_page_stays_within_the_budget_and_always_holds_one_item() {
        let item = serialized_len(&summarize(&big(ExecutionStatus::Failed)));
        let mut budget = PageBudget::default();
        let mut admitted = 0;
        while budget.admit(item) {
            admitted += 1;
        }
        assert!(admitted >= 20, "{admitted} worst-case items per page");
        assert!(ENVELOPE_BYTES + admitted * (item + 1) <= PAGE_BUDGET_BYTES);
        let mut fresh = PageBudget::default();
        assert!(fresh.admit(PAGE_BUDGET_BYTES * 2), "the first item is always admitted");
        assert!(!fresh.admit(1));
    }
}
