#!/usr/bin/env bash
# Installs what building and running python-executor needs on a Debian/Ubuntu machine. Idempotent.
#   - pasta (passt) and nftables: egress for runs that ask for network;
#   - python3: a CPython interpreter (any of 3.10-3.13 on PATH or in pyenv is used);
#   - util-linux: setpriv, used by the tests to run the sandbox as an unprivileged user;
#   - uv, pinned (scripts/install-uv.sh): installs the packages that executions ask for;
#   - the Rust toolchain's rustfmt and clippy components (cargo itself must already be installed, for this user or,
#     under sudo, for the user who ran sudo).
set -euo pipefail

need=()
command -v pasta >/dev/null 2>&1 || need+=(passt)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
ls /usr/bin/python3.1[0-3] >/dev/null 2>&1 || need+=(python3)
command -v curl >/dev/null 2>&1 || need+=(curl)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# cargo: on PATH, or the toolchain of the user who ran sudo (scripts/toolchain.sh says what to do without one).
. "$(dirname "$0")/toolchain.sh"
if as_builder sh -c 'command -v rustup' >/dev/null 2>&1; then
  as_builder cargo fmt --version >/dev/null 2>&1 || as_builder rustup component add rustfmt
  as_builder cargo clippy --version >/dev/null 2>&1 || as_builder rustup component add clippy
fi
"$(dirname "$0")/install-uv.sh"
echo "setup: done"
