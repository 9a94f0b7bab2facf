//! Command-line syntax: the original's commands, flags and defaults, plus `get`, `list`, `completions` and
//! `--output json`.

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
    /// Serve the Model Context Protocol on stdin/stdout for AI agents (tools: run_python, submit_python,
    /// get_execution, kill_execution), running code on the server.
    Mcp,
    /// Print the version.
    Version,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
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
        for command in std::iter::once(&root).chain(root.get_subcommands()) {
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
