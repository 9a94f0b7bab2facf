#!/usr/bin/env bash
# Builds and starts the API server on the embedded backend, listening on :8080 (PYEXEC_PORT). Run as root for full
# isolation (per-run host uids, cgroup limits). Every setting: docs/configuration.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p pyexec-apiserver
exec target/release/pyexec-apiserver "$@"
