//! Runs one command in a sandbox and prints what happened: `sandbox-run [--network] PROGRAM [ARGS...]`.
//! A debugging aid for operators and for checking a host's support.

use std::time::Duration;

use pyexec_sandbox::{Network, RunLimits, RunSpec, Sandbox, SandboxConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let network = args.first().is_some_and(|a| a == "--network");
    if network {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("usage: sandbox-run [--network] PROGRAM [ARGS...]");
        std::process::exit(2);
    }
    let state = std::env::temp_dir().join("pyexec-sandbox-run");
    let sandbox = Sandbox::new(SandboxConfig::new(state)).await?;
    eprintln!("{:#?}", sandbox.report());
    let mut spec = RunSpec::new(args.remove(0));
    spec.args = args;
    spec.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
    spec.network = if network { Network::Internet } else { Network::None };
    spec.limits = RunLimits { timeout: Duration::from_secs(30), ..RunLimits::default() };
    let outcome = sandbox.run(spec, None, Default::default()).await?;
    print!("{}", String::from_utf8_lossy(&outcome.stdout.bytes));
    eprint!("{}", String::from_utf8_lossy(&outcome.stderr.bytes));
    eprintln!(
        "status={:?} timed_out={} oom={} duration={:?}",
        outcome.status, outcome.timed_out, outcome.oom_killed, outcome.duration
    );
    Ok(())
}
