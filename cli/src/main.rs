//! `python-executor`: the command line of python-executor.
//!
//! Compatible with the original CLI (commands, flags, input precedence, entrypoint detection, output and exit
//! codes), plus: live `follow` through the server's event stream, `get`, `list`, sessions (`session ...`), the
//! files of runs (`files`), display outputs (`--save-outputs`), `--output json`, shell completions, a spinner on
//! terminals, streamed directory uploads, and exit code 124 on timeout.

mod cli;
mod input;
mod mcp;
mod output;
mod sessions;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command, OutputFormat};
use pyexec_client::{Client, EvalRequest, ExecutionResult, ListQuery};

fn exit_with(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(code) => exit_with(code),
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::from(1)
        }
    }
}

fn client(cli: &Cli) -> Result<Client, String> {
    Client::new(&cli.server).map(|c| c.api_key(cli.api_key.clone())).map_err(|e| e.to_string())
}

/// Runs the command; returns the process exit code.
async fn run(cli: &Cli) -> Result<i32, String> {
    match &cli.command {
        Command::Mcp => {
            mcp::serve(client(cli)?).await?;
            Ok(0)
        }
        Command::Version => {
            if cli.output == OutputFormat::Json {
                output::json(&serde_json::json!({"name": "python-executor", "version": env!("CARGO_PKG_VERSION")}));
            } else {
                println!("python-executor v{}", env!("CARGO_PKG_VERSION"));
            }
            Ok(0)
        }
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "python-executor", &mut std::io::stdout());
            Ok(0)
        }
        Command::Run(args) | Command::Submit(args) => {
            let submit = matches!(cli.command, Command::Submit(_)) || cli.run_async;
            let archive = input::archive(args).await?;
            let entrypoint = match (&args.entrypoint, &archive.entrypoint) {
                (Some(e), _) | (None, Some(e)) => e.clone(),
                (None, None) => return Err("no Python files found in archive".into()),
            };
            let metadata = input::metadata(cli, args, entrypoint)?;
            let client = client(cli)?;
            if submit {
                let id = client.exec_async(archive, &metadata).await.map_err(|e| e.to_string())?;
                match cli.output {
                    OutputFormat::Json => output::json(&serde_json::json!({"execution_id": id})),
                    OutputFormat::Text => println!("{id}"),
                }
                return Ok(0);
            }
            let spinner = output::Spinner::start(cli, "running");
            let result = client.exec_sync(archive, &metadata).await;
            spinner.stop();
            let result = result.map_err(|e| e.to_string())?;
            output::result(output::Print::of(cli), &result, false, false);
            Ok(result.exit_code)
        }
        Command::Follow { id } => follow(cli, id).await,
        Command::Kill { id } => {
            let status = client(cli)?.kill(id).await.map_err(|e| e.to_string())?;
            match cli.output {
                OutputFormat::Json => output::json(&serde_json::json!({"status": status})),
                OutputFormat::Text if !cli.quiet => match status {
                    pyexec_client::ExecutionStatus::Killed => println!("Execution killed"),
                    other => println!("Execution already {other}"),
                },
                OutputFormat::Text => {}
            }
            Ok(0)
        }
        Command::Eval(args) => {
            // `eval -` is code `-` here, as in the original CLI: only a missing argument reads stdin.
            let code = match args.code.first() {
                Some(code) => code.clone(),
                None => input::code(None, None, "pass it as an argument or pipe it via stdin")?,
            };
            if code.trim().is_empty() {
                return Err("no code provided: pass it as an argument or pipe it via stdin".into());
            }
            let config = input::config(cli, cli.network);
            let request = EvalRequest {
                code: Some(code),
                python_version: args.python.clone(),
                eval_last_expr: Some(!args.no_result),
                config: Some(config),
                ..Default::default()
            };
            let spinner = output::Spinner::start(cli, "running");
            let result = client(cli)?.eval(&request).await;
            spinner.stop();
            let result = result.map_err(|e| e.to_string())?;
            let saved = match &args.save_outputs {
                Some(dir) => output::save_outputs(&result, dir)?,
                None => output::Saved { files: Vec::new(), can_save: true },
            };
            output::result_with_outputs(output::Print::of(cli), &result, true, false, &saved);
            Ok(result.exit_code)
        }
        Command::Session(command) => sessions::session(cli, client(cli)?, command).await,
        Command::Files(args) => sessions::files(cli, &client(cli)?, sessions::Owner::Execution, args).await,
        Command::Get { id } => {
            let result = client(cli)?.get(id).await.map_err(|e| e.to_string())?;
            if cli.output == OutputFormat::Text && !cli.quiet {
                eprintln!("Execution ID: {}\nStatus: {}", result.execution_id, result.status);
                if result.duration_ms > 0 {
                    eprintln!("Duration: {}ms", result.duration_ms);
                }
                eprintln!("Exit code: {}\n---", result.exit_code);
            }
            output::result(output::Print { verbose: false, ..output::Print::of(cli) }, &result, true, false);
            Ok(0)
        }
        Command::List(args) => {
            let status = args.status.as_deref().map(str::parse).transpose()?;
            let query = ListQuery { status, limit: Some(args.limit), cursor: args.cursor.clone() };
            let page = client(cli)?.list(&query).await.map_err(|e| e.to_string())?;
            if cli.output == OutputFormat::Json {
                output::json(&page);
                return Ok(0);
            }
            println!("{:<40}  {:<9}  {:>4}  {:>9}  STARTED", "EXECUTION ID", "STATUS", "EXIT", "DURATION");
            for r in &page.executions {
                let started = r.started_at.map(|t| t.to_string()).unwrap_or_else(|| "-".into());
                println!(
                    "{:<40}  {:<9}  {:>4}  {:>7}ms  {started}",
                    r.execution_id,
                    r.status.to_string(),
                    r.exit_code,
                    r.duration_ms
                );
            }
            if let Some(next) = &page.next_cursor {
                eprintln!("(more: --cursor {next})");
            }
            Ok(0)
        }
    }
}

/// `follow`: live output through the event stream (polling against servers without one), then the result.
async fn follow(cli: &Cli, id: &str) -> Result<i32, String> {
    let client = client(cli)?;
    if !cli.quiet && cli.output == OutputFormat::Text {
        eprintln!("Following execution {id}...");
    }
    // Quiet and JSON output need the final result before printing anything.
    let live = !cli.quiet && cli.output == OutputFormat::Text;
    let spinner = output::Spinner::start(cli, "running");
    let result: ExecutionResult = client
        .follow(id, Duration::from_secs(1), |stream, data| {
            if live {
                spinner.suspend(|| {
                    use std::io::Write;
                    if stream == "stderr" {
                        eprint!("{data}");
                    } else {
                        print!("{data}");
                        let _ = std::io::stdout().flush();
                    }
                });
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    spinner.stop();
    output::result(output::Print::of(cli), &result, false, live);
    Ok(result.exit_code)
}
