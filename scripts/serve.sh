#!/usr/bin/env bash
# Builds and starts the API server on the embedded backend, listening on :8080 (PYEXEC_PORT). Every setting:
# docs/configuration.md.
#
# Run it as root (`sudo ./scripts/serve.sh`) for full isolation: the server gives each run its own unprivileged
# host uid and a cgroup with memory, CPU and process limits. Started with sudo, it builds as the user who ran sudo,
# with that user's Rust toolchain, and only the server runs as root. Without root it still runs, with reduced
# isolation (every run shares the server's uid and has no cgroup limits); /health says which level it has.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. scripts/toolchain.sh
as_builder cargo build --release --locked -p pyexec-apiserver
if [ "$(id -u)" -ne 0 ]; then
  echo "serve: not root: runs get reduced isolation (no per-run uid, no cgroup limits); use sudo for full isolation" >&2
fi
exec target/release/pyexec-apiserver "$@"
