//! Printing results the way the original CLI did (stdout to stdout, stderr to stderr, `Error:` lines), a spinner
//! while waiting (only on a terminal), and `--output json`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use pyexec_client::ExecutionResult;

use crate::cli::{Cli, OutputFormat};

/// A spinner with the elapsed time on stderr, shown only to people (a terminal, text output, not quiet).
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn start(cli: &Cli, message: &str) -> Spinner {
        if cli.quiet || cli.output != OutputFormat::Text || !std::io::stderr().is_terminal() {
            return Spinner(None);
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// Runs `f` with the spinner hidden (for live output).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.0 {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    pub fn stop(self) {
        if let Some(bar) = self.0 {
            bar.finish_and_clear();
        }
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy)]
pub struct Print {
    pub quiet: bool,
    pub verbose: bool,
    pub json: bool,
}

impl Print {
    pub fn of(cli: &Cli) -> Print {
        Print { quiet: cli.quiet, verbose: cli.verbose, json: cli.output == OutputFormat::Json }
    }
}

/// Prints a result. `live` means stdout and stderr were already shown as they came; `eval` adds the result value.
pub fn result(print: Print, r: &ExecutionResult, eval: bool, live: bool) {
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
    if eval && let Some(value) = &r.result {
        // The server trims the newline before a result; keep the value on a line of its own.
        if !r.stdout.is_empty() && !r.stdout.ends_with('\n') {
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "{value}");
    }
    let _ = out.flush();
    if !live {
        eprint!("{}", r.stderr);
    }
    if r.stdout_truncated || r.stderr_truncated {
        eprintln!("(output truncated by the server's limit)");
    }
    if let Some(error) = &r.error {
        eprintln!("Error: {error}");
    }
}

/// One JSON document on stdout.
pub fn json(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("Error: {e}"),
    }
}
