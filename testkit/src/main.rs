//! `pyexec-test-server [--api-key KEY] -- COMMAND [ARGS...]`: runs COMMAND with `PYEXEC_SERVER` pointing at a
//! fresh `pyexec-apiserver` on 127.0.0.1 (own data directory, stopped afterwards), and exits with COMMAND's
//! status. With `--api-key`, the server requires that key and COMMAND gets it in `PYEXEC_API_KEY`. Used by the
//! test command to run the Python and Go client tests and the documentation examples.

use std::process::Command;

#[tokio::main]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut api_key = None;
    if args.first().is_some_and(|a| a == "--api-key") && args.len() > 1 {
        api_key = Some(args[1].clone());
        args.drain(..2);
    }
    let args: Vec<String> = args.into_iter().skip_while(|a| a == "--").collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: pyexec-test-server [--api-key KEY] -- COMMAND [ARGS...]");
        std::process::exit(2);
    };
    let env: Vec<(&str, &str)> = api_key.as_deref().map(|k| vec![("PYEXEC_API_KEYS", k)]).unwrap_or_default();
    let server = pyexec_testkit::Server::start_with(&env).await;
    eprintln!("pyexec-test-server: server at {}", server.url);
    let mut command = Command::new(program);
    command.args(rest).env("PYEXEC_SERVER", &server.url);
    if let Some(key) = &api_key {
        command.env("PYEXEC_API_KEY", key);
    }
    let code = match command.status() {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            eprintln!("pyexec-test-server: cannot run {program}: {e}");
            127
        }
    };
    if code != 0 {
        eprintln!("--- server log ---\n{}", server.log_text());
    }
    drop(server);
    std::process::exit(code);
}
