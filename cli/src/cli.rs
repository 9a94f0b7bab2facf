//! Command-line syntax: the original's commands, flags and defaults, plus `get`, `list`, `session`, `files`,
//! `completions` and `--output json`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Output format of every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// For people: the program's output, as if it ran here.
    Text,
    /// For scripts and agents: one JSON document on stdout.
    Json,
}

/// Run Python on a python-executor server.
#[derive(Debug, Parser)]
#[command(name = "python-executor", version, about, max_term_width = 110)]
pub struct Cli {
    /// Server URL.
    #[arg(long, global = true, env = "PYEXEC_SERVER", default_value = pyexec_client::DEFAULT_SERVER)]
    pub server: String,
    /// API key, when the server requires one.
    #[arg(long, global = true, env = "PYEXEC_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Timeout in seconds (0: the server's default).
    #[arg(long, global = true, default_value_t = 0)]
    pub timeout: i64,
    /// Memory limit in MiB (0: the server's default).
    #[arg(long, global = true, default_value_t = 0)]
    pub memory: i64,
    /// Workspace size in MiB (0: the server's default).
    #[arg(long, global = true, default_value_t = 0)]
    pub disk: i64,
    /// CPU shares, 1024 = one CPU (0: the server's default).
    #[arg(long, global = true, default_value_t = 0)]
    pub cpu: i64,
    /// Allow network access (egress to the public internet; off by default).
    #[arg(long, global = true)]
    pub network: bool,
    /// Container image (the embedded backend accepts python:3.X images).
    #[arg(long, global = true)]
    pub image: Option<String>,
    /// `run`: submit and print the execution id instead of waiting.
    #[arg(long = "async", global = true)]
    pub run_async: bool,
    /// Print only the program's stdout (and only when it succeeded).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Also print the execution id, status and duration (to stderr).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a file, a directory, a .tar or code from stdin, and wait for the result.
    Run(RunArgs),
    /// Submit like `run` and print the execution id.
    Submit(RunArgs),
    /// Follow an execution: its output as it is produced, then its result.
    Follow {
        /// Execution id.
        id: String,
    },
    /// Kill an execution.
    Kill {
        /// Execution id.
        id: String,
    },
    /// Evaluate code (an argument or stdin); prints the value of a trailing expression.
    Eval(EvalArgs),
    /// Show an execution's current state.
    Get {
        /// Execution id.
        id: String,
    },
    /// List executions, newest first.
    List(ListArgs),
    /// Sessions: a Python interpreter on the server that keeps its state between calls.
    #[command(subcommand)]
    Session(SessionCommand),
    /// The files an execution wrote under /work: a list, one file, or all of them as a tar.
    Files(FilesArgs),
    /// Serve the Model Context Protocol on stdin/stdout for AI agents (tools: run_python, submit_python,
    /// get_execution, kill_execution, create_session, session_run_python, close_session, list_files, get_file),
    /// running code on the server.
    Mcp(McpArgs),
    /// Print the version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Settings of `mcp`.
#[derive(Debug, Args)]
pub struct McpArgs {
    /// Bytes of a run's stdout in a tool result: longer output is cut to its start and its end, with a note saying
    /// how much was left out (also the cap of the last expression's value and of text display outputs).
    #[arg(long, env = "PYEXEC_MCP_MAX_STDOUT_BYTES", value_name = "BYTES", default_value_t = pyexec_mcp::DEFAULT_STDOUT_BYTES)]
    pub max_stdout_bytes: usize,
    /// Bytes of a run's stderr in a tool result, likewise (also the cap of the exception message).
    #[arg(long, env = "PYEXEC_MCP_MAX_STDERR_BYTES", value_name = "BYTES", default_value_t = pyexec_mcp::DEFAULT_STDERR_BYTES)]
    pub max_stderr_bytes: usize,
}

/// Input of `run` and `submit`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A Python file, a directory or a .tar; without one, code is read from stdin.
    pub input: Vec<String>,
    /// Arguments for the script, after `--`.
    #[arg(last = true)]
    pub script_args: Vec<String>,
    /// Files to send (stored by base name); repeatable or comma-separated.
    #[arg(long = "file", value_delimiter = ',')]
    pub files: Vec<PathBuf>,
    /// File to run (default: main.py, __main__.py or the first .py).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// A requirements.txt to install first.
    #[arg(long)]
    pub requirements: Option<PathBuf>,
    /// Environment variable for the program: VAR=value, or VAR to pass the local value.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Python version (3.10 to 3.13).
    #[arg(long)]
    pub python: Option<String>,
}

/// Input of `eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The code; without it, code is read from stdin.
    pub code: Vec<String>,
    /// Do not report the value of a trailing expression.
    #[arg(long)]
    pub no_result: bool,
    /// Python version (3.10 to 3.13).
    #[arg(long)]
    pub python: Option<String>,
    /// Save display outputs (plots, images, HTML) into this directory, as <execution id>-<n>.<ext>.
    #[arg(long, value_name = "DIR")]
    pub save_outputs: Option<PathBuf>,
}

/// `session` commands.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a session and print its id (with `--output json`: the session). `--network`, `--cpu` and, as
    /// defaults of the flags below, `--memory` and `--disk` apply.
    New(SessionNewArgs),
    /// Run code in a session (an argument, `-f FILE`, or `-`/nothing for stdin); prints like `eval`.
    Eval(SessionEvalArgs),
    /// End a session (its processes and files are gone).
    #[command(alias = "delete")]
    Rm {
        /// Session id.
        id: String,
    },
    /// List the live sessions, newest first.
    #[command(alias = "list")]
    Ls,
    /// Upload a local file into the session's /work (streamed; parent directories are created).
    Upload {
        /// Session id.
        id: String,
        /// The local file.
        local: PathBuf,
        /// Path under /work (default: the local file's name).
        remote: Option<String>,
    },
    /// The files in the session's /work now: a list, one file, or all of them as a tar.
    Files(FilesArgs),
}

/// Settings of `session new`.
#[derive(Debug, Args)]
pub struct SessionNewArgs {
    /// Python version (3.10 to 3.13).
    #[arg(long, visible_alias = "python")]
    pub python_version: Option<String>,
    /// A requirements.txt, installed once when the session starts (imports are not detected in sessions).
    #[arg(long, value_name = "FILE")]
    pub requirements: Option<PathBuf>,
    /// Environment variable of the session: VAR=value, or VAR to pass the local value.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Memory limit of the whole session, MiB (default: `--memory`, else the server's).
    #[arg(long, value_name = "N")]
    pub memory_mb: Option<i64>,
    /// Size of the session's /work, MiB (default: `--disk`, else the server's).
    #[arg(long, value_name = "N")]
    pub disk_mb: Option<i64>,
    /// End the session after this many seconds without a call (default: the server's, 600).
    #[arg(long, value_name = "SECS")]
    pub idle_timeout: Option<i64>,
}

/// Input of `session eval`.
#[derive(Debug, Args)]
pub struct SessionEvalArgs {
    /// Session id.
    pub id: String,
    /// The code; `-` or nothing reads it from stdin.
    #[arg(conflicts_with = "file")]
    pub code: Option<String>,
    /// Read the code from this file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Do not report the value of a trailing expression.
    #[arg(long)]
    pub no_result: bool,
    /// Save display outputs (plots, images, HTML) into this directory, as <execution id>-<n>.<ext>.
    #[arg(long, value_name = "DIR")]
    pub save_outputs: Option<PathBuf>,
}

/// Arguments of `files` and `session files`.
#[derive(Debug, Args)]
pub struct FilesArgs {
    /// Execution id (`files`) or session id (`session files`).
    pub id: String,
    /// A file's path under /work: its bytes go to stdout (or `-o`). Without it: the list.
    pub path: Option<String>,
    /// Write the file (or the tar) here instead of stdout.
    #[arg(short = 'o', long = "output-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// All the files as one tar archive.
    #[arg(long, conflicts_with = "path")]
    pub tar: bool,
}

/// Filters of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status (pending, running, completed, failed, killed).
    #[arg(long)]
    pub status: Option<String>,
    /// How many.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Cursor from a previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

#[cfg(test)]
mod docs {
    use clap::CommandFactory;

    /// Every flag of every command, and every variable, is in docs/cli.md.
    #[test]
    fn every_flag_is_documented() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap_or_default();
        let root = super::Cli::command();
        let mut missing = Vec::new();
        let nested = root.get_subcommands().flat_map(|c| c.get_subcommands());
        for command in std::iter::once(&root).chain(root.get_subcommands()).chain(nested) {
            for arg in command.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if matches!(long, "help" | "version") {
                    continue;
                }
                if !doc.contains(&format!("`--{long}")) && !doc.contains(&format!("/`--{long}`")) {
                    missing.push(format!("{} --{long}", command.get_name()));
                }
                if let Some(env) = arg.get_env() {
                    let env = env.to_string_lossy();
                    if !doc.contains(&format!("`{env}`")) {
                        missing.push(env.into_owned());
                    }
                }
            }
        }
        missing.dedup();
        assert!(missing.is_empty(), "undocumented in docs/cli.md: {missing:?}");
    }
}
