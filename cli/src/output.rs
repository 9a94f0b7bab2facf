//! Printing results the way the original CLI did (stdout to stdout, stderr to stderr, `Error:` lines), why a run
//! was stopped, and `--output json`.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use pyexec_client::{DisplayOutput, ExecutionResult, ExecutionStatus, FileList, Session};

use crate::cli::{Cli, OutputFormat};

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Print {
    pub quiet: bool,
    pub verbose: bool,
    pub json: bool,
    /// The memory limit the run asked for (`--memory`), MiB, for the out-of-memory line.
    pub memory_mb: Option<i64>,
}

impl Print {
    pub fn of(cli: &Cli) -> Print {
        Print {
            quiet: cli.quiet,
            verbose: cli.verbose,
            json: cli.output == OutputFormat::Json,
            memory_mb: (cli.memory > 0).then_some(cli.memory),
        }
    }
}

/// Why a run ended that its output may not say: the memory limit, or a kill. (A timeout says so in the server's
/// `error`, printed as `Error: execution timeout after Ns`.) Without this line an out-of-memory kill printed
/// nothing at all: the program is killed mid-write and only the exit code, 137, told.
pub fn ending(r: &ExecutionResult, memory_mb: Option<i64>) -> Option<String> {
    if r.oom_killed {
        let limit = memory_mb.map_or_else(|| "over its memory limit".to_owned(), |m| format!("limit {m} MiB"));
        return Some(format!("python-executor: out of memory ({limit}); exit code {}", r.exit_code));
    }
    if r.status == ExecutionStatus::Killed && r.error.is_none() {
        return Some(format!(
            "python-executor: killed before it finished (python-executor kill, or the server stopped it); exit code {}",
            r.exit_code
        ));
    }
    None
}

/// What became of a result's display outputs (plots, images, HTML): where each was saved, by index, and whether the
/// command could have saved them (`--save-outputs`).
#[derive(Debug, Default)]
pub struct Saved {
    pub files: Vec<Option<PathBuf>>,
    pub can_save: bool,
}

impl Saved {
    /// Outputs of a command without `--save-outputs`.
    pub fn none() -> Saved {
        Saved::default()
    }
}

/// Whether a display output's data is base64 (binary images) rather than text.
fn is_base64(kind: &str) -> bool {
    kind.starts_with("image/") && kind != "image/svg+xml"
}

/// The file name extension of a display output.
fn extension(kind: &str) -> &'static str {
    match kind {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        "text/html" => "html",
        "text/markdown" => "md",
        "application/json" => "json",
        k if k.starts_with("text/") => "txt",
        _ => "bin",
    }
}

/// The size of a display output's content (decoded, for base64).
fn output_size(output: &DisplayOutput) -> usize {
    if is_base64(&output.kind) {
        BASE64.decode(output.data.trim()).map_or(output.data.len(), |b| b.len())
    } else {
        output.data.len()
    }
}

/// Saves the display outputs of `r` but text/plain (printed as text) into `dir` as `<execution id>-<n>.<ext>`.
pub fn save_outputs(r: &ExecutionResult, dir: &Path) -> Result<Saved, String> {
    let mut saved = Saved { files: Vec::new(), can_save: true };
    if r.outputs.iter().all(|o| o.kind == "text/plain") {
        return Ok(saved);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (n, output) in r.outputs.iter().enumerate() {
        if output.kind == "text/plain" {
            saved.files.push(None);
            continue;
        }
        let bytes = if is_base64(&output.kind) {
            BASE64
                .decode(output.data.trim())
                .map_err(|e| format!("display output {} of type {}: {e}", n + 1, output.kind))?
        } else {
            output.data.clone().into_bytes()
        };
        let path = dir.join(format!("{}-{}.{}", r.execution_id, n + 1, extension(&output.kind)));
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        saved.files.push(Some(path));
    }
    Ok(saved)
}

/// The one-line notes about display outputs that are not text: `[image/png output: 20412 bytes; saved to DIR/x.png]`.
pub fn output_notes(r: &ExecutionResult, saved: &Saved) -> Vec<String> {
    r.outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.kind != "text/plain")
        .map(|(n, o)| {
            let size = output_size(o);
            match (saved.files.get(n).and_then(Option::as_ref), saved.can_save) {
                (Some(path), _) => format!("[{} output: {size} bytes; saved to {}]", o.kind, path.display()),
                (None, true) => format!("[{} output: {size} bytes; --save-outputs DIR saves it]", o.kind),
                (None, false) => format!("[{} output: {size} bytes]", o.kind),
            }
        })
        .collect()
}

/// Prints a result. `live` means stdout and stderr were already shown as they came; `eval` adds the result value.
pub fn result(print: Print, r: &ExecutionResult, eval: bool, live: bool) {
    result_with_outputs(print, r, eval, live, &Saved::none());
}

/// Prints a result and notes about its display outputs: text/plain ones go to stdout (before the result value, as
/// in a notebook), the others are one line each on stderr.
pub fn result_with_outputs(print: Print, r: &ExecutionResult, eval: bool, live: bool, saved: &Saved) {
    if print.json {
        json(r);
        return;
    }
    let mut out = std::io::stdout().lock();
    if print.quiet {
        if r.exit_code == 0 {
            match (&r.result, eval) {
                (Some(value), true) => {
                    let _ = writeln!(out, "{value}");
                }
                _ => {
                    let _ = write!(out, "{}", r.stdout);
                }
            }
        }
        return;
    }
    if print.verbose {
        eprintln!("Execution ID: {}", r.execution_id);
        eprintln!("Status: {}", r.status);
        if r.duration_ms > 0 {
            eprintln!("Duration: {}ms", r.duration_ms);
        }
        eprintln!("---");
    }
    if !live {
        let _ = write!(out, "{}", r.stdout);
    }
    // The server trims the newline before a result; keep what follows on a line of its own.
    let mut at_line_start = live || r.stdout.is_empty() || r.stdout.ends_with('\n');
    for output in r.outputs.iter().filter(|o| o.kind == "text/plain") {
        if !at_line_start {
            let _ = writeln!(out);
        }
        let _ = write!(out, "{}", output.data);
        at_line_start = output.data.is_empty() || output.data.ends_with('\n');
    }
    if eval && let Some(value) = &r.result {
        if !at_line_start {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{value}");
    } else if !at_line_start && r.outputs.iter().any(|o| o.kind == "text/plain") {
        let _ = writeln!(out);
    }
    let _ = out.flush();
    if !live {
        eprint!("{}", r.stderr);
    }
    for note in output_notes(r, saved) {
        eprintln!("{note}");
    }
    if print.verbose && !r.files.is_empty() {
        let files: Vec<&str> = r.files.iter().map(|f| f.path.as_str()).collect();
        eprintln!("Files: {} (python-executor files {})", files.join(", "), r.execution_id);
    }
    if r.stdout_truncated || r.stderr_truncated {
        eprintln!("(output truncated by the server's limit)");
    }
    if r.session_restarted {
        eprintln!("(the session was restarted: what earlier calls defined is gone)");
    }
    if let Some(error) = &r.error {
        eprintln!("Error: {error}");
    }
    if let Some(reason) = ending(r, print.memory_mb) {
        eprintln!("{reason}");
    }
}

/// The `files` table: path, size, sha256.
pub fn files_table(list: &FileList) -> String {
    let width = list.files.iter().map(|f| f.path.chars().count()).max().unwrap_or(0).max(4);
    let mut out = format!("{:<width$}  {:>10}  SHA256\n", "PATH", "SIZE");
    for f in &list.files {
        out.push_str(&format!("{:<width$}  {:>10}  {}\n", f.path, f.size, f.sha256));
    }
    out
}

/// The `session ls` table.
pub fn sessions_table(sessions: &[Session]) -> String {
    let mut out = format!("{:<40}  {:<5}  {:<6}  {:>5}  EXPIRES\n", "SESSION ID", "STATE", "PYTHON", "CALLS");
    for s in sessions {
        let state = serde_json::to_value(s.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        out.push_str(&format!(
            "{:<40}  {state:<5}  {:<6}  {:>5}  {}\n",
            s.session_id, s.python_version, s.calls, s.expires_at
        ));
    }
    out
}

/// One JSON document on stdout.
pub fn json(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("Error: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use pyexec_client::OutputFile;

    use super::*;

    /// 1x1 PNG.
    const PNG: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

    fn with_outputs() -> ExecutionResult {
        let mut r = ExecutionResult::pending("exe_1");
        r.status = ExecutionStatus::Completed;
        r.outputs = vec![
            DisplayOutput { kind: "image/png".into(), data: PNG.into() },
            DisplayOutput { kind: "text/plain".into(), data: "<Thing>".into() },
            DisplayOutput { kind: "text/html".into(), data: "<b>hi</b>".into() },
        ];
        r
    }

    #[test]
    fn outputs_are_noted_and_saved() {
        let r = with_outputs();
        assert_eq!(
            output_notes(&r, &Saved { files: Vec::new(), can_save: true }),
            [
                "[image/png output: 70 bytes; --save-outputs DIR saves it]",
                "[text/html output: 9 bytes; --save-outputs DIR saves it]"
            ]
        );
        assert_eq!(output_notes(&r, &Saved::none()), ["[image/png output: 70 bytes]", "[text/html output: 9 bytes]"]);

        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plots");
        let saved = save_outputs(&r, &out).unwrap();
        let png = out.join("exe_1-1.png");
        assert_eq!(saved.files, vec![Some(png.clone()), None, Some(out.join("exe_1-3.html"))]);
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG\r\n"), "decoded from base64");
        assert_eq!(std::fs::read_to_string(out.join("exe_1-3.html")).unwrap(), "<b>hi</b>");
        assert_eq!(output_notes(&r, &saved)[0], format!("[image/png output: 70 bytes; saved to {}]", png.display()));

        let mut plain = ExecutionResult::pending("exe_2");
        plain.outputs = vec![DisplayOutput { kind: "text/plain".into(), data: "1".into() }];
        let nothing = dir.path().join("never");
        assert!(save_outputs(&plain, &nothing).unwrap().files.is_empty());
        assert!(!nothing.exists(), "no directory for text outputs alone");
        let mut bad = ExecutionResult::pending("exe_3");
        bad.outputs = vec![DisplayOutput { kind: "image/png".into(), data: "not base64!".into() }];
        assert!(save_outputs(&bad, &out).unwrap_err().contains("display output 1 of type image/png"));
    }

    #[test]
    fn out_of_memory_and_kills_say_so() {
        let mut r = ExecutionResult::pending("exe_1");
        r.status = ExecutionStatus::Completed;
        r.exit_code = 137;
        assert_eq!(ending(&r, None), None, "exit code 137 alone may be the program's own");
        r.oom_killed = true;
        assert_eq!(ending(&r, Some(128)).unwrap(), "python-executor: out of memory (limit 128 MiB); exit code 137");
        assert_eq!(ending(&r, None).unwrap(), "python-executor: out of memory (over its memory limit); exit code 137");
        r.oom_killed = false;
        r.status = ExecutionStatus::Killed;
        assert!(ending(&r, None).unwrap().starts_with("python-executor: killed before it finished"));
        r.status = ExecutionStatus::Failed;
        r.exit_code = 124;
        r.error = Some("execution timeout after 1s".into());
        assert_eq!(ending(&r, None), None, "the timeout is the Error: line");
    }

    #[test]
    fn tables_line_up() {
        let list = FileList {
            files: vec![
                OutputFile { path: "plot.png".into(), size: 20412, sha256: "9f2c".into() },
                OutputFile { path: "out/summary.csv".into(), size: 12, sha256: "77aa".into() },
            ],
            truncated: false,
        };
        assert_eq!(
            files_table(&list),
            "PATH                   SIZE  SHA256\n\
             plot.png              20412  9f2c\n\
             out/summary.csv          12  77aa\n"
        );
        assert_eq!(files_table(&FileList::default()), "PATH        SIZE  SHA256\n");
        let session: Session = serde_json::from_str(
            r#"{"session_id":"ses_1","state":"busy","python_version":"3.12","created_at":"2026-12-06T22:50:01.120Z",
                "last_used_at":"2026-12-06T22:51:13.004Z","expires_at":"2026-12-06T23:01:13.004Z","calls":3,
                "restarts":0,"memory_mb":1024,"disk_mb":1024,"network_disabled":true,"idle_timeout_seconds":600}"#,
        )
        .unwrap();
        let table = sessions_table(&[session]);
        let mut lines = table.lines();
        assert!(lines.next().unwrap().starts_with("SESSION ID"));
        let row = lines.next().unwrap();
        assert!(row.starts_with("ses_1 ") && row.contains("  busy   3.12        3  2026-12-06T23:01:13"), "{row}");
    }
}
