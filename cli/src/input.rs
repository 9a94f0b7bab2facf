//! From command-line input to an archive and metadata, as the original CLI built them.

use std::io::Read;
use std::path::{Path, PathBuf};

use pyexec_client::{Archive, ExecutionConfig, Metadata};

use crate::cli::{Cli, RunArgs};

/// An error for the user, printed as `Error: ...`.
pub type Fail = String;

/// The archive to upload, by the original's precedence: `--file`s, a `.tar`, a directory, a file, stdin.
pub async fn archive(args: &RunArgs) -> Result<Archive, Fail> {
    if !args.files.is_empty() {
        return Archive::from_files(&args.files).map_err(|e| e.to_string());
    }
    match args.input.as_slice() {
        [] => {
            let mut code = String::new();
            std::io::stdin().read_to_string(&mut code).map_err(|e| format!("reading stdin: {e}"))?;
            if code.is_empty() {
                return Err("no input provided: either specify a file/directory argument or pipe code via stdin".into());
            }
            Archive::from_memory(&[("main.py", code.as_bytes())]).map_err(|e| e.to_string())
        }
        [one] => {
            let path = Path::new(one);
            if is_tar(one) {
                Archive::from_tar_file(path).await.map_err(|e| e.to_string())
            } else if path.is_dir() {
                Archive::from_dir(path).map_err(|e| e.to_string())
            } else if path.is_file() {
                Archive::from_files(&[PathBuf::from(one)]).map_err(|e| e.to_string())
            } else {
                Err(format!("{one}: no such file or directory"))
            }
        }
        _ => Err("invalid arguments: give one file, directory or .tar (script arguments go after --)".into()),
    }
}

fn is_tar(name: &str) -> bool {
    [".tar", ".tar.gz", ".tgz"].iter().any(|ext| name.ends_with(ext))
}

/// `-e VAR=value` verbatim; `-e VAR` takes the local value.
/// Code to run: `arg` (unless it is `-`), else the file, else standard input; `hint` says where code may come
/// from when there is none.
pub fn code(arg: Option<&str>, file: Option<&Path>, hint: &str) -> Result<String, Fail> {
    let code = match (arg, file) {
        (Some(code), _) if code != "-" => code.to_owned(),
        (_, Some(file)) => std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?,
        _ => {
            let mut code = String::new();
            std::io::stdin().read_to_string(&mut code).map_err(|e| format!("reading stdin: {e}"))?;
            code
        }
    };
    if code.trim().is_empty() {
        return Err(format!("no code provided: {hint}"));
    }
    Ok(code)
}

pub fn env_vars(entries: &[String]) -> Result<Vec<String>, Fail> {
    entries
        .iter()
        .map(|e| {
            if e.contains('=') {
                Ok(e.clone())
            } else {
                std::env::var(e).map(|v| format!("{e}={v}")).map_err(|_| format!("environment variable {e:?} not set"))
            }
        })
        .collect()
}

/// `config` from the global flags: zero means "the server's default"; the CLI's default is no network.
pub fn config(cli: &Cli, network: bool) -> ExecutionConfig {
    let set = |v: i64| (v > 0).then_some(v);
    ExecutionConfig {
        timeout_seconds: set(cli.timeout),
        network_disabled: Some(!network),
        memory_mb: set(cli.memory),
        disk_mb: set(cli.disk),
        cpu_shares: set(cli.cpu),
    }
}

/// The metadata of `run` and `submit`. Unlike the original CLI, `--requirements` does not turn network on: the
/// server installs packages in its own sandbox, and the program keeps running without network.
pub fn metadata(cli: &Cli, args: &RunArgs, entrypoint: String) -> Result<Metadata, Fail> {
    let requirements = match &args.requirements {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?),
        None => None,
    };
    let env = env_vars(&args.env)?;
    Ok(Metadata {
        entrypoint: Some(entrypoint),
        docker_image: cli.image.clone(),
        python_version: args.python.clone(),
        requirements_txt: requirements,
        env_vars: (!env.is_empty()).then_some(env),
        script_args: (!args.script_args.is_empty()).then(|| args.script_args.clone()),
        config: Some(config(cli, cli.network)),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_entries_pass_through_or_are_looked_up() {
        // SAFETY: test-only, single-threaded use of this variable.
        unsafe { std::env::set_var("PYEXEC_CLI_TEST_VAR", "local") };
        assert_eq!(
            env_vars(&["A=b=c".into(), "PYEXEC_CLI_TEST_VAR".into()]).unwrap(),
            vec!["A=b=c", "PYEXEC_CLI_TEST_VAR=local"]
        );
        assert_eq!(
            env_vars(&["PYEXEC_CLI_MISSING".into()]).unwrap_err(),
            "environment variable \"PYEXEC_CLI_MISSING\" not set"
        );
    }

    #[test]
    fn tar_names() {
        assert!(is_tar("x.tar") && is_tar("x.tar.gz") && is_tar("x.tgz"));
        assert!(!is_tar("x.py"));
    }
}
