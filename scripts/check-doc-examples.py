#!/usr/bin/env python3
"""Runs the examples of the user documentation against a live server ($PYEXEC_SERVER).

    check-doc-examples.py [--bin-dir DIR] DOC.md...
    check-doc-examples.py --walkthrough [--only-cluster] DOC.md

Fenced blocks tagged `sh` run with bash (`set -euo pipefail`, the CLI from --bin-dir on PATH), `python` with this
interpreter (which must have the client installed), `go` as a whole program in a scratch module that uses
clients/go, and `json` blocks must parse. Any other block is illustration. Exits 1 when an example fails, showing its output.

A walk-through (docs/first-hour.md) is followed as a reader follows it: its `sh` blocks run in order from the root of
the checkout, with no server given; the block marked `<!-- walkthrough: server -->` starts the server in the
background (the next blocks run once it answers on :8080, and it is stopped at the end), and blocks marked
`<!-- walkthrough: cluster -->` need a Kubernetes cluster and Docker: they are skipped, loudly, unless
PYEXEC_WALKTHROUGH_CLUSTER=1 (scripts/e2e-kind.sh), and `--only-cluster` runs just them.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!-- walkthrough: (server|cluster) -->\s*$")
WALKTHROUGH_SERVER = "http://localhost:8080"


def run(lang: str, code: str, env: dict, workdir: Path) -> subprocess.CompletedProcess:
    if lang == "sh":
        return subprocess.run(["bash", "-c", "set -euo pipefail\n" + code], cwd=workdir, env=env,
                              capture_output=True, text=True, timeout=300)
    if lang == "python":
        script = workdir / "example.py"
        script.write_text(code)
        return subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=300)
    module = workdir / "gomod"
    module.mkdir(exist_ok=True)
    (module / "go.mod").write_text(
        "module example.com/docexample\n\ngo 1.19\n\n"
        "require github.com/geraldthewes/python-executor v0.0.0\n\n"
        f"replace github.com/geraldthewes/python-executor => {REPO / 'clients' / 'go'}\n"
    )
    (module / "main.go").write_text(code)
    go_env = dict(env, GOFLAGS="-mod=mod", GOPROXY="off", GOCACHE=env.get("GOCACHE", str(workdir / "gocache")))
    return subprocess.run(["go", "run", "."], cwd=module, env=go_env, capture_output=True, text=True, timeout=300)


def marker(text: str, start: int):
    """`server` or `cluster` when the line before the block at `start` marks it so."""
    found = MARKER.search(text[:start].rstrip("\n").rsplit("\n", 1)[-1])
    return found.group(1) if found else None


def wait_for_server(server: subprocess.Popen, log: Path) -> None:
    """Returns once the walk-through's server answers; fails when it exits first (a build can take minutes)."""
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server block exited {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(WALKTHROUGH_SERVER + "/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)  # between polls of /health; the loop ends on an answer or the server's exit
    raise RuntimeError(f"the server did not answer on {WALKTHROUGH_SERVER} within 30 minutes:\n{log.read_text()}")


def walkthrough(doc: str, only_cluster: bool) -> int:
    """Follows `doc` block by block as a reader does; see the module's documentation."""
    text = Path(doc).read_text()
    # The reader's environment: the server the page starts, no key, and their own PATH. The CLI's install reuses the
    # checkout's build directory, which changes nothing but the time it takes.
    env = {k: v for k, v in os.environ.items() if k not in ("PYEXEC_SERVER", "PYEXEC_API_KEY")}
    env["CARGO_TARGET_DIR"] = str(REPO / "target")
    with_cluster = only_cluster or os.environ.get("PYEXEC_WALKTHROUGH_CLUSTER") == "1"
    server = None
    log = Path(tempfile.mkdtemp()) / "server.log"
    failures = 0
    try:
        for match in FENCE.finditer(text):
            lang, code = match.group(1), match.group(2)
            line = text[: match.start()].count("\n") + 1
            label = f"{doc}:{line} ({lang})"
            kind = marker(text, match.start())
            if lang == "json" and not only_cluster:
                json.loads(code)
                print(f"ok    {label}")
                continue
            if lang != "sh" or (only_cluster and kind != "cluster"):
                continue
            if kind == "cluster" and not with_cluster:
                print(f"!!! SKIPPED {label}: needs a Kubernetes cluster and Docker (scripts/e2e-kind.sh runs it)")
                continue
            if kind == "server":
                try:
                    with urllib.request.urlopen(WALKTHROUGH_SERVER + "/health", timeout=2):
                        raise RuntimeError(f"something already answers on {WALKTHROUGH_SERVER}: stop it first")
                except OSError:
                    pass
                with open(log, "w") as out:
                    server = subprocess.Popen(["bash", "-c", "set -euo pipefail\n" + code], cwd=REPO, env=env,
                                              stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
                wait_for_server(server, log)
                print(f"ok    {label}: the server answers on {WALKTHROUGH_SERVER}")
                continue
            result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + code], cwd=REPO, env=env,
                                    capture_output=True, text=True, timeout=1800)
            if result.returncode == 0:
                print(f"ok    {label}")
            else:
                failures += 1
                print(f"FAIL  {label} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
                break
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
    if failures:
        print(f"--- server log\n{log.read_text() if log.exists() else ''}")
        print(f"the walk-through {doc} failed", file=sys.stderr)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", default=str(REPO / "target" / "debug"))
    parser.add_argument("--walkthrough", action="store_true", help="follow one page in order (see above)")
    parser.add_argument("--only-cluster", action="store_true", help="with --walkthrough: only the cluster blocks")
    parser.add_argument("docs", nargs="+")
    args = parser.parse_args()
    if args.walkthrough:
        return max(walkthrough(doc, args.only_cluster) for doc in args.docs)
    if "PYEXEC_SERVER" not in os.environ:
        print("PYEXEC_SERVER must point at a running server", file=sys.stderr)
        return 2
    env = dict(os.environ, PATH=f"{args.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    failures = 0
    for doc in args.docs:
        text = Path(doc).read_text()
        for number, match in enumerate(FENCE.finditer(text), 1):
            lang, code = match.group(1), match.group(2)
            if lang == "json":
                try:
                    json.loads(code)
                except ValueError as e:
                    failures += 1
                    print(f"FAIL  {doc}:{text[: match.start()].count(chr(10)) + 1} (json): {e}")
                continue
            if lang not in ("sh", "python", "go"):
                continue
            line = text[: match.start()].count("\n") + 1
            with tempfile.TemporaryDirectory() as tmp:
                result = run(lang, code, env, Path(tmp))
            label = f"{doc}:{line} ({lang})"
            if result.returncode == 0:
                print(f"ok    {label}")
            else:
                failures += 1
                print(f"FAIL  {label} exited {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    if failures:
        print(f"{failures} documentation example(s) failed", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
