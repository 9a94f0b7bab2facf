//! What the CLI's test suites share: running the binary against a server.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `python-executor ARGS` with `PYEXEC_SERVER=server_url` and `stdin`, to its end.
pub fn run_cli(server_url: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_python-executor"))
        .args(args)
        .env("PYEXEC_SERVER", server_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
