//! `pyexec-test-server -- COMMAND [ARGS...]`: runs COMMAND with `PYEXEC_SERVER` pointing at a fresh
//! `pyexec-apiserver` on 127.0.0.1 (own data directory, stopped afterwards), and exits with COMMAND's status.
//! Used by the test command to run the Python and Go client tests and the documentation examples.

use std::process::Command;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).skip_while(|a| a == "--").collect();
    let Some((program, rest)) = args.split_first() else {
        eprintln!("usage: pyexec-test-server -- COMMAND [ARGS...]");
        std::process::exit(2);
    };
    let server = pyexec_testkit::Server::start().await;
    eprintln!("pyexec-test-server: server at {}", server.url);
    let status = Command::new(program).args(rest).env("PYEXEC_SERVER", &server.url).status();
    let code = match status {
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
