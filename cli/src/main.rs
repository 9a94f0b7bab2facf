//! `python-executor`: the command line of python-executor.
//!
//! Compatible with the original CLI (commands, flags, input precedence, entrypoint detection, output and exit
//! codes), plus: live `follow` through the server's event stream, `get`, `list`, sessions (`session ...`), the
//! files of runs (`files`), display outputs (`--save-outputs`), `--output json` (errors included), shell
//! completions, live output of `run`, a spinner on terminals, streamed directory uploads, a line saying why a run
//! was stopped (out of memory, killed), and exit code 124 on timeout.

mod cli;
mod fail;
mod input;
mod mcp;
mod output;
mod screen;
mod sessions;

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command, OutputFormat};
use fail::Failure;
use pyexec_client::{Client, EvalRequest, ExecutionResult, ListQuery};
use screen::{Spinner, Stream};

/// The name the binary is installed under (and completes as).
const BIN: &str = "python-executor";

fn exit_with(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code.clamp(0, 255)).unwrap_or(1))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(code) => exit_with(code),
        Err(failure) => {
            failure.print(cli.output);
            ExitCode::from(1)
        }
    }
}

fn client(cli: &Cli) -> Result<Client, Failure> {
    Ok(Client::new(&cli.server).map(|c| c.api_key(cli.api_key.clone()))?)
}

/// Runs the command; returns the process exit code.
async fn run(cli: &Cli) -> Result<i32, Failure> {
    match &cli.command {
        Command::Mcp(args) => {
            let budget =
                pyexec_mcp::OutputBudget { stdout_bytes: args.max_stdout_bytes, stderr_bytes: args.max_stderr_bytes };
            mcp::serve(client(cli)?, budget).await?;
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
            use std::io::Write;
            let script = completions(*shell);
            std::io::stdout().write_all(script.as_bytes()).map_err(|e| format!("writing the script: {e}"))?;
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
                let id = client.exec_async(archive, &metadata).await?;
                match cli.output {
                    OutputFormat::Json => output::json(&serde_json::json!({"execution_id": id})),
                    OutputFormat::Text => println!("{id}"),
                }
                return Ok(0);
            }
            if cli.quiet || cli.output == OutputFormat::Json {
                // Quiet and JSON output print nothing before the result: the synchronous request is enough (and
                // the server stops the run if this process goes away).
                let result = client.exec_sync(archive, &metadata).await?;
                output::result(output::Print::of(cli), &result, false, false);
                return Ok(result.exit_code);
            }
            // For people: submit, then show the output as it is produced (the event stream).
            let spinner = Spinner::start(cli, "running");
            let id = client.exec_async(archive, &metadata).await?;
            tokio::select! {
                code = show_live(cli, &client, &id, &spinner, RUN_POLL) => code,
                signal = stop_signal() => {
                    spinner.finish();
                    // The synchronous request stopped the run when the client went away; do the same.
                    let killed = tokio::time::timeout(Duration::from_secs(5), client.kill(&id)).await;
                    let how = match killed {
                        Ok(Ok(_)) => "killed",
                        _ => "could not be killed: stop it with python-executor kill",
                    };
                    eprintln!("\npython-executor: {}; execution {id} {how}", signal.name);
                    Ok(signal.exit_code)
                }
            }
        }
        Command::Follow { id } => follow(cli, id).await,
        Command::Kill { id } => {
            let client = client(cli)?;
            // The server answers `killed` both for a run this request stopped and for one killed earlier, so the
            // state is read first: only an execution still pending or running is this command's to kill.
            let before = client.get(id).await?.status;
            let status = if before.is_terminal() { before } else { client.kill(id).await? };
            let killed_now = !before.is_terminal() && status == pyexec_client::ExecutionStatus::Killed;
            match cli.output {
                OutputFormat::Json => output::json(&serde_json::json!({"status": status})),
                OutputFormat::Text if !cli.quiet && killed_now => println!("Execution killed"),
                OutputFormat::Text if !cli.quiet => println!("Execution already {status}"),
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
            let spinner = Spinner::start(cli, "running");
            let result = client(cli)?.eval(&request).await;
            spinner.stop();
            let result = result?;
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
            let result = client(cli)?.get(id).await?;
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
            let page = client(cli)?.list(&query).await?;
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

/// How often `run` asks for the result where the server has no event stream (the original's): short runs should
/// not wait long for it.
const RUN_POLL: Duration = Duration::from_millis(250);

/// `follow`: live output through the event stream (polling against servers without one), then the result.
async fn follow(cli: &Cli, id: &str) -> Result<i32, Failure> {
    let client = client(cli)?;
    if !cli.quiet && cli.output == OutputFormat::Text {
        eprintln!("Following execution {id}...");
    }
    if cli.quiet || cli.output == OutputFormat::Json {
        // Quiet and JSON output need the final result before printing anything.
        let result = client.follow(id, Duration::from_secs(1), |_, _| {}).await?;
        output::result(output::Print::of(cli), &result, false, false);
        return Ok(result.exit_code);
    }
    // Interrupting `follow` leaves the execution running: it was submitted apart, and may be followed again.
    show_live(cli, &client, id, &Spinner::start(cli, "running"), Duration::from_secs(1)).await
}

/// Shows an execution's output as it is produced (with the spinner on terminals), then the rest of its result;
/// returns its exit code.
async fn show_live(cli: &Cli, client: &Client, id: &str, spinner: &Spinner, poll: Duration) -> Result<i32, Failure> {
    let mut shown = Shown::default();
    let result: ExecutionResult = client
        .follow(id, poll, |stream, data| {
            let stream = Stream::of(stream);
            spinner.output(stream, data);
            shown.add(stream, data);
        })
        .await?;
    // Where the event stream broke and the result came from polling, its output is not all on screen yet.
    for stream in [Stream::Stdout, Stream::Stderr] {
        spinner.output(stream, shown.rest(stream, &result));
    }
    spinner.finish();
    output::result(output::Print::of(cli), &result, false, true);
    Ok(result.exit_code)
}

/// The output shown live so far, per stream.
#[derive(Debug, Default)]
struct Shown {
    stdout: String,
    stderr: String,
}

impl Shown {
    fn add(&mut self, stream: Stream, data: &str) {
        match stream {
            Stream::Stdout => self.stdout.push_str(data),
            Stream::Stderr => self.stderr.push_str(data),
        }
    }

    /// What the result has beyond what was shown: nothing, unless what was shown is a strict start of it (output
    /// the live stream did not deliver). Output the stream showed beyond the server's cap is not "missing".
    fn rest<'r>(&self, stream: Stream, result: &'r ExecutionResult) -> &'r str {
        let (shown, whole) = match stream {
            Stream::Stdout => (&self.stdout, &result.stdout),
            Stream::Stderr => (&self.stderr, &result.stderr),
        };
        whole.strip_prefix(shown.as_str()).unwrap_or_default()
    }
}

/// A signal that ends the command while it waits.
struct StopSignal {
    name: &'static str,
    exit_code: i32,
}

/// Resolves on Ctrl-C (SIGINT), SIGTERM or SIGHUP.
async fn stop_signal() -> StopSignal {
    use tokio::signal::unix::{SignalKind, signal};
    let wait = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without the handler the signal keeps its default action (the process ends): nothing to wait for.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = wait(SignalKind::interrupt()) => StopSignal { name: "interrupted", exit_code: 130 },
        () = wait(SignalKind::terminate()) => StopSignal { name: "terminated", exit_code: 143 },
        () = wait(SignalKind::hangup()) => StopSignal { name: "hung up", exit_code: 129 },
    }
}

/// The completion script for `shell`. clap_complete's bash script names its functions after the binary with `-`
/// replaced, but in two different ways (`python__executor` where it finds the subcommand, `python__subcmd__executor`
/// where it lists each subcommand's flags), so that in bash no subcommand ever matched and
/// `python-executor run --me<TAB>` completed nothing: the second spelling is put right.
fn completions(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    if shell == clap_complete::Shell::Bash {
        script.replace(&BIN.replace('-', "__subcmd__"), &BIN.replace('-', "__"))
    } else {
        script
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bash_script_names_each_subcommand_the_same_way() {
        let script = completions(clap_complete::Shell::Bash);
        assert!(!script.contains("python__subcmd__executor"), "the mangled name is gone");
        assert!(script.contains("cmd=\"python__executor__subcmd__run\""));
        assert!(script.contains("\n        python__executor__subcmd__run)\n"), "the flags of run are found");
        assert!(script.contains("complete -F _python__executor"));
    }

    #[test]
    fn output_shown_live_is_not_shown_twice() {
        let mut result = ExecutionResult::pending("exe_1");
        result.stdout = "one\ntwo\n".into();
        result.stderr = "warn\n".into();
        let mut shown = Shown::default();
        shown.add(Stream::Stdout, "one\n");
        assert_eq!((shown.rest(Stream::Stdout, &result), shown.rest(Stream::Stderr, &result)), ("two\n", "warn\n"));
        shown.add(Stream::Stdout, "two\n");
        shown.add(Stream::Stderr, "warn\n");
        assert_eq!((shown.rest(Stream::Stdout, &result), shown.rest(Stream::Stderr, &result)), ("", ""));
        shown.add(Stream::Stdout, "three (past the server's cap)\n");
        assert_eq!(shown.rest(Stream::Stdout, &result), "");
    }
}
