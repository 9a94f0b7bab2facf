#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need, then checks formatting and
# lints, runs every test (the sandbox tests use the real sandbox and real CPython, the API tests a real server on
# 127.0.0.1, the /docs and console tests a real headless Chromium; run as root for full isolation, which CI does)
# and the benchmarks (which print ratios against baselines measured in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# The tests run cargo as root (the sandbox tests need it): under sudo, with the invoking user's toolchain.
. scripts/toolchain.sh
use_builders_toolchain

# Test-only dependencies: Chromium and Node.js for the /docs and console browser tests, Go for the Go client, venv for the
# Python client, systemd-analyze for the service unit, fontconfig for the sandbox's font set-up.
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v go >/dev/null 2>&1 || need+=(golang-go)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# sudo: scripts/quickstart_test.py starts serve.sh as `sudo` would and builds as the invoking user.
command -v sudo >/dev/null 2>&1 || need+=(sudo)
# fc-list: the sandbox's fontconfig set-up is checked with it.
command -v fc-list >/dev/null 2>&1 || need+=(fontconfig)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
(cd apiserver/tests/ui && npm ci --no-audit --no-fund --loglevel=error)
# The console's toolchain (console/package-lock.json): apiserver/tests/console.rs rebuilds the console with it and
# fails when the committed console/dist, which the binary embeds, is not what the sources build.
(cd console && npm ci --no-audit --no-fund --loglevel=error)
export PYEXEC_REQUIRE_BROWSER_TEST=1
# kubernetes-validate, helm and kubectl for the manifest and chart checks (under target/).
scripts/k8s/install-tools.sh
target/k8s-venv/bin/python -m pip install -q --disable-pip-version-check -r scripts/deploy-test-requirements.txt
export PYEXEC_REQUIRE_K8S_TOOLS=1
# openapi-spec-validator, which apiserver/tests/openapi.rs runs on the document the server serves at
# /docs/openapi.json (same venv: it needs the jsonschema and referencing pinned there).
target/k8s-venv/bin/python -m pip install -q --disable-pip-version-check "openapi-spec-validator==0.9.0"
export PYEXEC_REQUIRE_OPENAPI_VALIDATOR=1
# As root (CI), the sandbox tests must find full isolation (cgroups) and working egress: a test that would skip
# for want of either fails instead (see `pyexec_testkit::require`).
if [ "$(id -u)" -eq 0 ]; then
  export PYEXEC_REQUIRE_FULL_ISOLATION=1 PYEXEC_REQUIRE_EGRESS=1
else
  echo "!!! not root: the sandbox tests check reduced isolation; full isolation and egress are not required" >&2
fi

# A one-shot build on a machine whose disk may be small: no incremental state, and line tables (enough for
# backtraces) instead of full debug info, which keeps target/ to a few GiB instead of over ten.
export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=line-tables-only

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked
# The sandbox suites again, with every run that a warm sandbox can serve started in one from the pools (one test at
# a time, so that each run claims the sandbox its test waited for; see embedded/tests/common).
PYEXEC_TEST_WARM=1 cargo test --locked -p pyexec-embedded --test hostile --test execution --test leaks \
  --test dependencies -- --test-threads=1
# The manifest validator, the Helm chart (lint, templates, schemas, Pod Security, RBAC), the kustomize base, the
# Dockerfiles, compose, Nomad and GitOps files; the quick start's `sudo ./scripts/serve.sh` with a user's rustup.
target/k8s-venv/bin/python -m pytest -q -p no:cacheprovider scripts/k8s scripts/deploy_test.py \
  scripts/quickstart_test.py

echo "== clients against a live server"
cargo build --workspace --bins --locked
server=target/debug/pyexec-test-server
python3 -m venv target/py-venv
target/py-venv/bin/pip install --quiet --disable-pip-version-check ./clients/python "pytest>=8" "mcp==2.3.0"
$server --api-key test-key -- target/py-venv/bin/pytest -q clients/python/tests
export GOFLAGS=-mod=mod GOPROXY=off GOCACHE="$PWD/target/go-cache"
unformatted=$(cd clients/go && gofmt -l .)
if [ -n "$unformatted" ]; then echo "gofmt: $unformatted" >&2; exit 1; fi
(cd clients/go && go vet ./... && go test -count=1 ./...)
(cd clients/go && "../../$server" -- go test -count=1 -tags integration ./...)
$server -- target/py-venv/bin/python scripts/check-doc-examples.py docs/cli.md docs/python-client.md docs/go-client.md \
  docs/agents.md

echo "== benchmarks (ratios against same-run baselines)"
cargo build --release --locked -p pyexec-bench -p pyexec-apiserver
target/release/pyexec-bench sandbox --runs 100
target/release/pyexec-bench http --requests 100
target/release/pyexec-bench deps
cargo bench -p pyexec-operator --bench warm_claim --locked

echo "== the first hour (docs/first-hour.md), followed as a reader does: serve.sh, curl, the CLI, clients, MCP"
target/py-venv/bin/python scripts/check-doc-examples.py --walkthrough docs/first-hour.md
