//! How much of a run's output goes into a tool result.
//!
//! A model reads a tool result whole, and MCP clients hold it in memory and pass it through JSON-RPC (the official
//! Python SDK over streamable HTTP fails on results of a few hundred KB), while a program can print the server's
//! whole output cap (1 MiB per stream by default). So a tool result carries the start and the end of each stream,
//! up to a budget, with a note saying how much was left out and where the whole output is.

use std::borrow::Cow;

use pyexec_core::ExecutionResult;

use crate::tools::is_image;

/// The most of one text display output (HTML, SVG, text) in a tool result.
pub const OUTPUT_TEXT_MAX: usize = 20 << 10;

/// Default bytes of stdout in a tool result.
pub const DEFAULT_STDOUT_BYTES: usize = 64 << 10;
/// Default bytes of stderr in a tool result.
pub const DEFAULT_STDERR_BYTES: usize = 16 << 10;

/// The most of a run's output that one tool result carries: stdout's budget is shared by stdout, the value of the
/// last expression (`result`) and the text display outputs (HTML, SVG, text); stderr's by stderr and the exception
/// message. Within a budget, what fits is whole and the longest pieces share the rest evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputBudget {
    /// Bytes of stdout.
    pub stdout_bytes: usize,
    /// Bytes of stderr.
    pub stderr_bytes: usize,
}

impl Default for OutputBudget {
    fn default() -> Self {
        OutputBudget { stdout_bytes: DEFAULT_STDOUT_BYTES, stderr_bytes: DEFAULT_STDERR_BYTES }
    }
}

/// How a budget is split between the pieces of one result's output, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shares {
    /// Of stdout.
    pub stdout: usize,
    /// Of the last expression's value.
    pub value: usize,
    /// Of the text display outputs, all together.
    pub outputs: usize,
    /// Of stderr.
    pub stderr: usize,
    /// Of the exception message.
    pub message: usize,
}

impl Shares {
    /// The split of `budget` for `result`.
    pub fn of(result: &ExecutionResult, budget: OutputBudget) -> Shares {
        let outputs: usize =
            result.outputs.iter().filter(|o| !is_image(&o.kind)).map(|o| o.data.len().min(OUTPUT_TEXT_MAX)).sum();
        let value = result.result.as_ref().map_or(0, String::len);
        let out = fair_shares(&[result.stdout.len(), value, outputs], budget.stdout_bytes);
        let message = result.error_message.as_ref().map_or(0, String::len);
        let err = fair_shares(&[result.stderr.len(), message], budget.stderr_bytes);
        Shares { stdout: out[0], value: out[1], outputs: out[2], stderr: err[0], message: err[1] }
    }
}

/// Splits `budget` between pieces of the given sizes: the smallest first, each getting all it needs up to an even
/// share of what is left, so that pieces that fit are whole and long ones share the rest evenly.
pub fn fair_shares(sizes: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    let mut shares = vec![0; sizes.len()];
    let mut left = budget;
    for (n, &i) in order.iter().enumerate() {
        let share = sizes[i].min(left / (sizes.len() - n));
        shares[i] = share;
        left -= share;
    }
    shares
}

/// A text as it goes into a tool result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped<'a> {
    /// The text, or its start, the note and its end.
    pub text: Cow<'a, str>,
    /// Bytes left out (0: the text is whole).
    pub left_out: usize,
    /// Bytes of the start and of the end that were kept.
    pub kept: (usize, usize),
}

/// The largest index `<= at` on a character boundary of `text`.
fn floor_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The smallest index `>= at` on a character boundary of `text`.
fn ceil_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// `text` within `max` bytes: whole when it fits, else its first and last `max / 2` bytes (cut at line ends when
/// one is near, so lines stay whole, and always at character boundaries) around `note(left_out)`.
pub fn head_and_tail<'a>(text: &'a str, max: usize, note: impl FnOnce(usize) -> String) -> Capped<'a> {
    if text.len() <= max {
        return Capped { text: Cow::Borrowed(text), left_out: 0, kept: (text.len(), 0) };
    }
    let half = max / 2;
    let mut head = floor_boundary(text, half);
    // A line end in the second half of the head's share: cut after it rather than mid-line.
    if let Some(newline) = text[..head].rfind('\n')
        && newline + 1 >= head / 2
    {
        head = newline + 1;
    }
    let mut tail = ceil_boundary(text, text.len() - (max - half));
    if let Some(newline) = text[tail..].find('\n') {
        let start = tail + newline + 1;
        if start < text.len() && text.len() - start >= (text.len() - tail) / 2 {
            tail = start;
        }
    }
    let tail = tail.max(head);
    let left_out = tail - head;
    let mut out = String::with_capacity(head + (text.len() - tail) + 200);
    out.push_str(&text[..head]);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("[... ");
    out.push_str(&note(left_out));
    out.push_str(" ...]\n");
    out.push_str(&text[tail..]);
    Capped { text: Cow::Owned(out), left_out, kept: (head, text.len() - tail) }
}

/// Where the whole of an execution's output is, for the notes.
pub fn whole_output_hint(execution_id: &str) -> String {
    format!(
        "the whole output is in GET /api/v1/executions/{execution_id} on the python-executor server (REST API, while \
         the execution is kept); print less, or write large output to a file under /work and read what you need"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn note(n: usize) -> String {
        format!("{n} bytes left out")
    }

    #[test]
    fn budgets_are_shared_fairly() {
        assert_eq!(fair_shares(&[10, 0, 5], 100), [10, 0, 5], "what fits is whole");
        assert_eq!(fair_shares(&[1000, 10, 1000], 100), [45, 10, 45], "the long ones share the rest");
        assert_eq!(fair_shares(&[1000, 200], 300), [150, 150]);
        assert_eq!(fair_shares(&[1000, 20], 0), [0, 0]);
        let mut r = ExecutionResult::pending("exe_1");
        r.stdout = "x".repeat(100_000);
        r.result = Some("42".into());
        r.stderr = "e".repeat(100);
        r.error_message = Some("m".repeat(50_000));
        let shares = Shares::of(&r, OutputBudget::default());
        assert_eq!(
            shares,
            Shares {
                stdout: DEFAULT_STDOUT_BYTES - 2,
                value: 2,
                outputs: 0,
                stderr: 100,
                message: DEFAULT_STDERR_BYTES - 100
            }
        );
    }

    #[test]
    fn short_text_is_whole() {
        let c = head_and_tail("abc\n", 4, note);
        assert_eq!((c.text.as_ref(), c.left_out), ("abc\n", 0));
        assert!(matches!(c.text, Cow::Borrowed(_)));
    }

    #[test]
    fn long_text_keeps_its_start_and_end_within_the_budget() {
        let lines: String = (0..10_000).map(|n| format!("line {n:05}\n")).collect();
        let c = head_and_tail(&lines, 1000, note);
        assert!(c.text.starts_with("line 00000\nline 00001\n"), "{}", &c.text[..40]);
        assert!(c.text.ends_with("line 09998\nline 09999\n"));
        assert_eq!(c.left_out + c.kept.0 + c.kept.1, lines.len());
        assert!(c.kept.0 + c.kept.1 <= 1000, "{:?}", c.kept);
        assert!(c.kept.0 >= 250 && c.kept.1 >= 250, "most of the budget is used: {:?}", c.kept);
        let note_line = format!("[... {} bytes left out ...]\n", c.left_out);
        assert!(c.text.contains(&format!("\n{note_line}line ")), "whole lines around the note: {}", c.text);
        assert_eq!(c.text.lines().filter(|l| l.len() == 10).count(), (c.kept.0 + c.kept.1) / 11);
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let text = "é".repeat(1000);
        for max in [0, 1, 2, 3, 7, 100, 1999] {
            let c = head_and_tail(&text, max, note);
            assert!(c.kept.0 + c.kept.1 <= max, "{max}: {:?}", c.kept);
            assert_eq!(c.left_out + c.kept.0 + c.kept.1, text.len());
        }
        let c = head_and_tail("x".repeat(100).as_str(), 0, note).text.into_owned();
        assert_eq!(c, "[... 100 bytes left out ...]\n");
    }
}
