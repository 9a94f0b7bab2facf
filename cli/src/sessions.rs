//! `session ...` and `files`: sessions (an interpreter that keeps its state between calls) and the files runs
//! wrote under `/work` (docs/sessions.md).

use std::io::IsTerminal;
use std::path::Path;

use pyexec_client::{Client, EvalRequest, ExecutionConfig, NewSession, SessionConfig};
use tokio::io::AsyncWrite;

use crate::cli::{Cli, FilesArgs, OutputFormat, SessionCommand, SessionEvalArgs, SessionNewArgs};
use crate::fail::Failure;
use crate::input::{self, Fail, env_vars};
use crate::output;
use crate::screen::Spinner;

/// Runs a `session` command; returns the exit code.
pub async fn session(cli: &Cli, client: Client, command: &SessionCommand) -> Result<i32, Failure> {
    let json = cli.output == OutputFormat::Json;
    match command {
        SessionCommand::New(args) => {
            let request = new_session(cli, args)?;
            let spinner = Spinner::start(cli, "starting the session");
            let session = client.create_session(&request).await;
            spinner.stop();
            let session = session?;
            if json {
                output::json(&session);
            } else {
                println!("{}", session.session_id);
                if cli.verbose {
                    eprintln!(
                        "Python {}, {} MiB memory, {} MiB disk, network {}, idle timeout {}s, expires at {}",
                        session.python_version,
                        session.memory_mb,
                        session.disk_mb,
                        if session.network_disabled { "off" } else { "on" },
                        session.idle_timeout_seconds,
                        session.expires_at
                    );
                }
            }
            Ok(0)
        }
        SessionCommand::Eval(args) => session_eval(cli, client, args).await,
        SessionCommand::Rm { id } => {
            let session = client.delete_session(id).await?;
            if json {
                output::json(&session);
            } else if !cli.quiet {
                println!("Session {} ended", session.session_id);
            }
            Ok(0)
        }
        SessionCommand::Ls => {
            let sessions = client.list_sessions().await?;
            if json {
                output::json(&serde_json::json!({ "sessions": sessions }));
            } else {
                print!("{}", output::sessions_table(&sessions));
            }
            Ok(0)
        }
        SessionCommand::Upload { id, local, remote } => {
            let remote = match remote {
                Some(r) => r.clone(),
                None => default_remote(local)?,
            };
            let stored = client.session_upload(id, &remote, local).await?;
            if json {
                output::json(&stored);
            } else if !cli.quiet {
                println!("Uploaded {} ({} bytes)", stored.path, stored.size);
            }
            Ok(0)
        }
        SessionCommand::Files(args) => files(cli, &client, Owner::Session, args).await,
    }
}

/// The remote name of an upload without one: the local file's name.
fn default_remote(local: &Path) -> Result<String, Fail> {
    local
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: give the path under /work as a third argument", local.display()))
}

/// The body of `session new`: its flags, with `--memory`, `--disk`, `--cpu` and `--network` of the global flags.
pub fn new_session(cli: &Cli, args: &SessionNewArgs) -> Result<NewSession, Fail> {
    let requirements = match &args.requirements {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?),
        None => None,
    };
    let env = env_vars(&args.env)?;
    let set = |v: i64| (v > 0).then_some(v);
    Ok(NewSession {
        python_version: args.python_version.clone(),
        requirements_txt: requirements,
        env_vars: (!env.is_empty()).then_some(env),
        config: Some(SessionConfig {
            memory_mb: args.memory_mb.and_then(set).or(set(cli.memory)),
            disk_mb: args.disk_mb.and_then(set).or(set(cli.disk)),
            cpu_shares: set(cli.cpu),
            network_disabled: Some(!cli.network),
            idle_timeout_seconds: args.idle_timeout.and_then(set),
        }),
    })
}

/// The code of `session eval`: the argument, `-f FILE`, or stdin (`-` or nothing).
fn code_of(args: &SessionEvalArgs) -> Result<String, Fail> {
    input::code(args.code.as_deref(), args.file.as_deref(), "pass it as an argument, with -f FILE, or on stdin")
}

/// The body of a `session eval` call: the session owns every setting but the call's timeout (`--timeout`).
pub fn session_call(cli: &Cli, args: &SessionEvalArgs, code: String) -> EvalRequest {
    EvalRequest {
        code: Some(code),
        eval_last_expr: Some(!args.no_result),
        config: (cli.timeout > 0)
            .then(|| ExecutionConfig { timeout_seconds: Some(cli.timeout), ..ExecutionConfig::default() }),
        ..EvalRequest::default()
    }
}

async fn session_eval(cli: &Cli, client: Client, args: &SessionEvalArgs) -> Result<i32, Failure> {
    let request = session_call(cli, args, code_of(args)?);
    let spinner = Spinner::start(cli, "running");
    let result = client.session_eval(&args.id, &request).await;
    spinner.stop();
    let result = result?;
    let saved = match &args.save_outputs {
        Some(dir) => output::save_outputs(&result, dir)?,
        None => output::Saved { files: Vec::new(), can_save: true },
    };
    output::result_with_outputs(output::Print::of(cli), &result, true, false, &saved);
    Ok(result.exit_code)
}

/// Whose files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Execution,
    Session,
}

/// `files` and `session files`: the list (a table, or JSON), one file's bytes, or a tar.
pub async fn files(cli: &Cli, client: &Client, owner: Owner, args: &FilesArgs) -> Result<i32, Failure> {
    let json = cli.output == OutputFormat::Json;
    let id = args.id.as_str();
    if args.tar || args.path.is_some() {
        if args.output_file.is_none() && args.tar && std::io::stdout().is_terminal() {
            return Err("not writing a tar to a terminal: give -o FILE, or redirect stdout".into());
        }
        let path = args.path.as_deref();
        let written = match &args.output_file {
            Some(file) => {
                let mut out = tokio::fs::File::create(file).await.map_err(|e| format!("{}: {e}", file.display()))?;
                let written = download(client, owner, id, path, &mut out).await;
                if written.is_err() {
                    // Leave no partial file behind.
                    drop(out);
                    let _ = std::fs::remove_file(file);
                }
                written?
            }
            None => download(client, owner, id, path, &mut tokio::io::stdout()).await?,
        };
        if let Some(file) = &args.output_file {
            if json {
                output::json(&serde_json::json!({"path": path, "bytes": written, "output_file": file}));
            } else if cli.verbose {
                eprintln!("Wrote {written} bytes to {}", file.display());
            }
        }
        return Ok(0);
    }
    let list = match owner {
        Owner::Execution => client.execution_files(id).await,
        Owner::Session => client.session_files(id).await,
    }?;
    if json {
        output::json(&list);
        return Ok(0);
    }
    print!("{}", output::files_table(&list));
    if list.truncated {
        eprintln!("(some files were left out: over the server's size or count limit)");
    }
    Ok(0)
}

/// One file (`path`) or the tar of all, into `out`.
async fn download<W>(client: &Client, owner: Owner, id: &str, path: Option<&str>, out: &mut W) -> Result<u64, Failure>
where
    W: AsyncWrite + Unpin,
{
    match (owner, path) {
        (Owner::Execution, Some(path)) => client.download_file_to(id, path, out).await,
        (Owner::Session, Some(path)) => client.session_download_to(id, path, out).await,
        (Owner::Execution, None) => client.download_files_tar(id, out).await,
        (Owner::Session, None) => client.session_download_tar(id, out).await,
    }
    .map_err(Failure::from)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Command;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("python-executor").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn session_new_takes_its_flags_and_the_global_limits() {
        let dir = tempfile::tempdir().unwrap();
        let reqs = dir.path().join("requirements.txt");
        std::fs::write(&reqs, "pandas\n").unwrap();
        let cli = parse(&[
            "--memory",
            "256",
            "--network",
            "session",
            "new",
            "--python-version",
            "3.11",
            "--requirements",
            reqs.to_str().unwrap(),
            "--env",
            "MODE=test",
            "-e",
            "B=2",
            "--disk-mb",
            "64",
            "--idle-timeout",
            "120",
        ]);
        let Command::Session(SessionCommand::New(args)) = &cli.command else { panic!("{cli:?}") };
        let body = serde_json::to_value(new_session(&cli, args).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"python_version": "3.11", "requirements_txt": "pandas\n", "env_vars": ["MODE=test", "B=2"],
                "config": {"memory_mb": 256, "disk_mb": 64, "network_disabled": false, "idle_timeout_seconds": 120}})
        );
        let cli = parse(&["session", "new", "--memory-mb", "512", "--python", "3.12"]);
        let Command::Session(SessionCommand::New(args)) = &cli.command else { panic!("{cli:?}") };
        let body = serde_json::to_value(new_session(&cli, args).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"python_version": "3.12", "config": {"memory_mb": 512, "network_disabled": true}})
        );
        let cli = parse(&["session", "new", "--requirements", "/surely/missing.txt"]);
        let Command::Session(SessionCommand::New(args)) = &cli.command else { panic!("{cli:?}") };
        assert!(new_session(&cli, args).unwrap_err().starts_with("/surely/missing.txt: "));
    }

    #[test]
    fn session_eval_reads_code_from_an_argument_or_a_file() {
        let cli = parse(&["--timeout", "5", "session", "eval", "ses_1", "x + 1", "--save-outputs", "out"]);
        let Command::Session(SessionCommand::Eval(args)) = &cli.command else { panic!("{cli:?}") };
        assert_eq!((args.id.as_str(), args.save_outputs.as_deref()), ("ses_1", Some(Path::new("out"))));
        let body = serde_json::to_value(session_call(&cli, args, code_of(args).unwrap())).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": "x + 1", "config": {"timeout_seconds": 5}, "eval_last_expr": true})
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cell.py");
        std::fs::write(&file, "import math\nmath.pi\n").unwrap();
        let cli = parse(&["session", "eval", "ses_1", "-f", file.to_str().unwrap(), "--no-result"]);
        let Command::Session(SessionCommand::Eval(args)) = &cli.command else { panic!("{cli:?}") };
        let body = serde_json::to_value(session_call(&cli, args, code_of(args).unwrap())).unwrap();
        assert_eq!(body, serde_json::json!({"code": "import math\nmath.pi\n", "eval_last_expr": false}));

        let both = Cli::try_parse_from(["python-executor", "session", "eval", "ses_1", "1", "-f", "x.py"]);
        assert!(both.is_err(), "code or a file, not both");
        let cli = parse(&["session", "eval", "ses_1", "-"]);
        let Command::Session(SessionCommand::Eval(args)) = &cli.command else { panic!("{cli:?}") };
        assert_eq!(args.code.as_deref(), Some("-"));
    }

    #[test]
    fn the_other_session_and_files_commands_parse() {
        let cli = parse(&["session", "upload", "ses_1", "data/in.csv"]);
        let Command::Session(SessionCommand::Upload { id, local, remote }) = &cli.command else { panic!() };
        assert_eq!((id.as_str(), remote), ("ses_1", &None));
        assert_eq!(default_remote(local).unwrap(), "in.csv");
        let cli = parse(&["session", "upload", "ses_1", "in.csv", "raw/in.csv"]);
        assert!(
            matches!(&cli.command, Command::Session(SessionCommand::Upload { remote: Some(r), .. }) if r == "raw/in.csv")
        );
        assert!(matches!(parse(&["session", "rm", "ses_1"]).command, Command::Session(SessionCommand::Rm { .. })));
        assert!(matches!(parse(&["session", "delete", "ses_1"]).command, Command::Session(SessionCommand::Rm { .. })));
        assert!(matches!(parse(&["session", "ls"]).command, Command::Session(SessionCommand::Ls)));
        assert!(matches!(parse(&["session", "list"]).command, Command::Session(SessionCommand::Ls)));

        let cli = parse(&["files", "exe_1", "out/plot.png", "-o", "plot.png"]);
        let Command::Files(args) = &cli.command else { panic!() };
        assert_eq!(
            (args.path.as_deref(), args.output_file.as_deref()),
            (Some("out/plot.png"), Some(Path::new("plot.png")))
        );
        let cli = parse(&["--output", "json", "files", "exe_1", "--tar", "--output-file", "all.tar"]);
        let Command::Files(args) = &cli.command else { panic!() };
        assert!(args.tar && cli.output == OutputFormat::Json);
        assert!(Cli::try_parse_from(["python-executor", "files", "exe_1", "a.txt", "--tar"]).is_err());
        let cli = parse(&["session", "files", "ses_1"]);
        assert!(matches!(&cli.command, Command::Session(SessionCommand::Files(a)) if a.path.is_none() && !a.tar));
    }
}
