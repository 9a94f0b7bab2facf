//! Benchmarks of python-executor. Each prints its result next to a baseline measured in the same run, interleaved
//! where possible, because only same-run comparisons mean anything on shared machines.
//!
//! - `pyexec-bench sandbox`: sandboxed `print(1)` against bare CPython;
//! - `pyexec-bench http`: the REST API (round trip and throughput at several concurrencies) against the sandbox
//!   alone and bare CPython, plus the server's idle memory and its memory during a 1 GiB upload;
//! - `pyexec-bench deps`: an eval needing numpy (cold and warm environment cache) against pip on every request.

mod deps;
mod http;
mod sandbox;
mod server;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "python-executor benchmarks, measured against same-run baselines")]
struct Cli {
    #[command(subcommand)]
    command: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Sandbox start-up against bare CPython.
    Sandbox(sandbox::Args),
    /// HTTP round trip, throughput and server memory.
    Http(http::Args),
    /// Dependencies: cached environments against pip on every request.
    Deps(deps::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Bench::Sandbox(args) => sandbox::run(args).await,
        Bench::Http(args) => http::run(args).await,
        Bench::Deps(args) => deps::run(args).await,
    }
}
