#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need, then checks formatting and
# lints, runs every test (the sandbox tests use the real sandbox and real CPython; run as root for full
# isolation, which CI does) and the sandbox benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked

echo "== benchmark: sandboxed print(1) against bare CPython, measured in the same run"
cargo run --release --locked -p pyexec-bench -- --runs 100
