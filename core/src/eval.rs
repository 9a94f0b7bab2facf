//! Eval (REPL) mode: the runner that executes the user's file and reports the value of a trailing expression.
//!
//! The runner is one small Python file, [`EVAL_RUNNER_SOURCE`], placed read-only at [`EVAL_RUNNER_PATH`] in every
//! sandbox and Pod and started as `python EVAL_RUNNER_PATH /work/<entrypoint> <args...>` (or, in the embedded
//! backend's warm sandboxes, as `python EVAL_RUNNER_PATH --warm`, waiting for that work on standard input). It
//! runs the user's file as `__main__` in a clean namespace (unlike the original's wrapper, whose globals leaked into
//! user code), strips its own frames from tracebacks, and reports `repr(value)` either out of band (a pipe whose descriptor is given in
//! [`RESULT_FD_ENV`]) or, where no pipe can be given, as the original's marker line on standard output.

/// The runner's source, embedded in every binary that places it.
pub const EVAL_RUNNER_SOURCE: &str = include_str!("../python/eval_runner.py");

/// Where the runner lives inside a sandbox or Pod (outside `/work`, so no user file can shadow it).
pub const EVAL_RUNNER_PATH: &str = "/opt/pyexec/eval_runner.py";

/// Environment variable naming the descriptor the runner writes the JSON-encoded result to.
pub const RESULT_FD_ENV: &str = "PYEXEC_RESULT_FD";

/// The original's marker, kept for the stdout fallback.
pub const RESULT_MARKER: &str = "___PYEXEC_RESULT___";

/// Splits the result marker out of `stdout`, as the original's `parseResultFromStdout`: the last marker, a JSON
/// string up to the next newline; the marker line is removed and then one trailing newline is trimmed. Without a
/// (valid) marker `stdout` is returned unchanged and there is no result.
pub fn split_result_marker(stdout: &str) -> (String, Option<String>) {
    let Some(idx) = stdout.rfind(RESULT_MARKER) else {
        return (stdout.to_owned(), None);
    };
    let after = &stdout[idx + RESULT_MARKER.len()..];
    let (json, rest) = match after.find('\n') {
        Some(nl) => (&after[..nl], &after[nl + 1..]),
        None => (after, ""),
    };
    let Ok(value) = serde_json::from_str::<String>(json) else {
        return (stdout.to_owned(), None);
    };
    let mut cleaned = format!("{}{}", &stdout[..idx], rest);
    if cleaned.ends_with('\n') {
        cleaned.pop();
    }
    (cleaned, Some(value))
}

/// Decodes what the runner wrote to the result descriptor. When there is a result, one trailing newline of
/// `stdout` is trimmed, exactly as the marker path does, so both paths answer the same.
pub fn apply_result_channel(stdout: &mut String, channel: &[u8]) -> Option<String> {
    let value: String = serde_json::from_slice(channel).ok()?;
    if stdout.ends_with('\n') {
        stdout.pop();
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_vectors_of_the_original() {
        let cases = [
            ("___PYEXEC_RESULT___\"4\"\n", "", Some("4")),
            ("hello world\n___PYEXEC_RESULT___\"15\"\n", "hello world", Some("15")),
            ("hello world\n", "hello world\n", None),
            ("___PYEXEC_RESULT___\"42\"", "", Some("42")),
            ("line1\nline2\nline3\n___PYEXEC_RESULT___\"result\"\n", "line1\nline2\nline3", Some("result")),
            ("computing...\n___PYEXEC_RESULT___\"1024\"\n", "computing...", Some("1024")),
        ];
        for (stdout, want_out, want_result) in cases {
            let (out, result) = split_result_marker(stdout);
            assert_eq!(out, want_out, "{stdout:?}");
            assert_eq!(result.as_deref(), want_result, "{stdout:?}");
        }
    }

    #[test]
    fn the_last_marker_wins_and_bad_json_is_ignored() {
        let (out, result) = split_result_marker("___PYEXEC_RESULT___\"fake\"\nx\n___PYEXEC_RESULT___\"'real'\"\n");
        assert_eq!(result.as_deref(), Some("'real'"));
        assert_eq!(out, "___PYEXEC_RESULT___\"fake\"\nx");
        let (out, result) = split_result_marker("___PYEXEC_RESULT___not json\n");
        assert_eq!(result, None);
        assert_eq!(out, "___PYEXEC_RESULT___not json\n");
    }

    #[test]
    fn result_channel_trims_like_the_marker() {
        let mut out = String::from("computing...\n");
        assert_eq!(apply_result_channel(&mut out, b"\"1024\"").as_deref(), Some("1024"));
        assert_eq!(out, "computing...");
        let mut out = String::from("x\n");
        assert_eq!(apply_result_channel(&mut out, b""), None);
        assert_eq!(out, "x\n");
    }

    #[test]
    fn runner_source_is_embedded() {
        assert!(EVAL_RUNNER_SOURCE.contains("def main(evaluate=True)"));
        assert!(EVAL_RUNNER_SOURCE.contains("def warm()"), "the warm pools' mode");
        assert!(EVAL_RUNNER_SOURCE.contains(RESULT_MARKER));
        assert!(EVAL_RUNNER_SOURCE.contains(RESULT_FD_ENV));
    }
}
