//! Eval (REPL) mode: the runner that executes the user's file and reports the value of a trailing expression.
//!
//! The runner is one small Python file, [`EVAL_RUNNER_SOURCE`], placed read-only at [`EVAL_RUNNER_PATH`] in every
//! sandbox and Pod and started as `python EVAL_RUNNER_PATH /work/<entrypoint> <args...>` (or, in the embedded
//! backend's warm sandboxes, as `python EVAL_RUNNER_PATH --warm`, waiting for that work on standard input). It
//! runs the user's file as `__main__` in a clean namespace (unlike the original's wrapper, whose globals leaked into
//! user code), strips its own frames from tracebacks, and reports `repr(value)` and the run's display items
//! ([`EvalReport`]) either out of band (a pipe whose descriptor is given in [`RESULT_FD_ENV`]) or, where no pipe can
//! be given, as the original's marker line on standard output. Reports of older runners (a bare JSON string, the
//! `repr` alone) are still understood.

use serde::Deserialize;

use crate::model::DisplayOutput;

/// The runner's source, embedded in every binary that places it.
pub const EVAL_RUNNER_SOURCE: &str = include_str!("../python/eval_runner.py");

/// Where the runner lives inside a sandbox or Pod (outside `/work`, so no user file can shadow it).
pub const EVAL_RUNNER_PATH: &str = "/opt/pyexec/eval_runner.py";

/// The runner's first argument for a program that runs without evaluating its last expression (hosted by the
/// runner only so that the files it writes are reported).
pub const NO_EVAL_FLAG: &str = "--no-eval";

/// Environment variable naming the descriptor the runner writes its JSON report to.
pub const RESULT_FD_ENV: &str = "PYEXEC_RESULT_FD";

/// The original's marker, kept for the stdout fallback.
pub const RESULT_MARKER: &str = "___PYEXEC_RESULT___";

/// Most display items a report may carry: the runner keeps 16 and then says that more were dropped.
pub const MAX_OUTPUTS: usize = 16;

/// What the runner reports about a run: the `repr` of the final expression, and the display items shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalReport {
    /// `repr()` of the final expression's value, when it was not `None`.
    pub result: Option<String>,
    /// Display items (figures, `display(obj)`, a rich final value), in the order shown.
    pub outputs: Vec<DisplayOutput>,
}

/// The runner's report as JSON: the current object form.
#[derive(Deserialize)]
struct ReportObject {
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    outputs: Vec<DisplayOutput>,
}

/// Decodes a report: the current object `{"result": ..., "outputs": [...]}`, or the older bare JSON string (the
/// `repr` alone, as the original's marker carried it). `None` when it is neither.
pub fn parse_report(json: &[u8]) -> Option<EvalReport> {
    // The bare string first: on an object it fails at the first byte.
    if let Ok(result) = serde_json::from_slice::<String>(json) {
        return Some(EvalReport { result: Some(result), outputs: Vec::new() });
    }
    let object: ReportObject = serde_json::from_slice(json).ok()?;
    let mut outputs = object.outputs;
    // The report comes from inside the sandbox, where the program could write its own: keep the runner's bound
    // (its items and the note that more were dropped).
    outputs.truncate(MAX_OUTPUTS + 1);
    Some(EvalReport { result: object.result, outputs })
}

/// Splits the report marker out of `stdout`, as the original's `parseResultFromStdout`: the last marker, JSON up to
/// the next newline; the marker line is removed and then, when the report has a result, one trailing newline is
/// trimmed (a report with outputs only leaves `stdout` as it would be without it). Without a (valid) marker
/// `stdout` is returned unchanged and there is no report.
pub fn split_report_marker(stdout: &str) -> (String, Option<EvalReport>) {
    let Some(idx) = stdout.rfind(RESULT_MARKER) else {
        return (stdout.to_owned(), None);
    };
    let after = &stdout[idx + RESULT_MARKER.len()..];
    let (json, rest) = match after.find('\n') {
        Some(nl) => (&after[..nl], &after[nl + 1..]),
        None => (after, ""),
    };
    let Some(report) = parse_report(json.as_bytes()) else {
        return (stdout.to_owned(), None);
    };
    let mut cleaned = format!("{}{}", &stdout[..idx], rest);
    if report.result.is_some() && cleaned.ends_with('\n') {
        cleaned.pop();
    }
    (cleaned, Some(report))
}

/// Decodes what the runner wrote to the result descriptor. When there is a result, one trailing newline of
/// `stdout` is trimmed, exactly as the marker path does, so both paths answer the same.
pub fn apply_report_channel(stdout: &mut String, channel: &[u8]) -> Option<EvalReport> {
    let report = parse_report(channel)?;
    if report.result.is_some() && stdout.ends_with('\n') {
        stdout.pop();
    }
    Some(report)
}

/// [`split_report_marker`], keeping the result alone.
pub fn split_result_marker(stdout: &str) -> (String, Option<String>) {
    let (cleaned, report) = split_report_marker(stdout);
    (cleaned, report.and_then(|r| r.result))
}

/// [`apply_report_channel`], keeping the result alone.
pub fn apply_result_channel(stdout: &mut String, channel: &[u8]) -> Option<String> {
    apply_report_channel(stdout, channel).and_then(|r| r.result)
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
    fn reports_carry_outputs_and_old_reports_still_parse() {
        let png = DisplayOutput { kind: "image/png".into(), data: "iVBORw0KGgo=".into() };
        let json = br#"{"result": "42", "outputs": [{"type": "image/png", "data": "iVBORw0KGgo="}]}"#;
        let report = parse_report(json).unwrap();
        assert_eq!(report, EvalReport { result: Some("42".into()), outputs: vec![png.clone()] });
        assert_eq!(parse_report(b"\"4\"").unwrap(), EvalReport { result: Some("4".into()), outputs: vec![] });
        let outputs_only =
            parse_report(br#"{"result": null, "outputs": [{"type": "image/png", "data": "iVBORw0KGgo="}]}"#);
        assert_eq!(outputs_only.unwrap(), EvalReport { result: None, outputs: vec![png] });
        assert_eq!(parse_report(br#"{}"#).unwrap(), EvalReport::default());
        assert_eq!(parse_report(br#"{"outputs": [{"type": 1}]}"#), None);
        assert_eq!(parse_report(b"[1]"), None);
        assert_eq!(parse_report(b""), None);
    }

    #[test]
    fn outputs_only_leave_stdout_as_it_was() {
        let stdout = "hello\n___PYEXEC_RESULT___{\"result\": null, \"outputs\": [{\"type\": \"text/plain\", \"data\": \"1\"}]}\n";
        let (out, report) = split_report_marker(stdout);
        assert_eq!(out, "hello\n");
        assert_eq!(report.unwrap().outputs.len(), 1);
        assert_eq!(split_result_marker(stdout), ("hello\n".to_owned(), None));

        let (out, report) = split_report_marker("hi\n___PYEXEC_RESULT___{\"result\": \"3\", \"outputs\": []}\n");
        assert_eq!((out.as_str(), report.unwrap().result.as_deref()), ("hi", Some("3")));

        let mut out = String::from("x\n");
        let report =
            apply_report_channel(&mut out, br#"{"result": null, "outputs": [{"type": "text/html", "data": "<b>"}]}"#);
        assert_eq!(out, "x\n");
        assert_eq!(report.unwrap().outputs[0].kind, "text/html");
        let mut out = String::from("x\n");
        assert_eq!(apply_result_channel(&mut out, br#"{"result": "'a'", "outputs": []}"#).as_deref(), Some("'a'"));
        assert_eq!(out, "x");
    }

    #[test]
    fn a_forged_report_keeps_the_runners_bound() {
        let item = r#"{"type": "text/plain", "data": "x"}"#;
        let json = format!(r#"{{"outputs": [{}]}}"#, vec![item; 1000].join(","));
        assert_eq!(parse_report(json.as_bytes()).unwrap().outputs.len(), MAX_OUTPUTS + 1);
    }

    #[test]
    fn runner_source_is_embedded() {
        assert!(EVAL_RUNNER_SOURCE.contains("def main(evaluate=True)"));
        assert!(EVAL_RUNNER_SOURCE.contains("def warm()"), "the warm pools' mode");
        assert!(EVAL_RUNNER_SOURCE.contains(RESULT_MARKER));
        assert!(EVAL_RUNNER_SOURCE.contains(RESULT_FD_ENV));
    }
}
