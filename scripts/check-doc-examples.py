#!/usr/bin/env python3
"""Runs the examples of the user documentation against a live server ($PYEXEC_SERVER).

    check-doc-examples.py [--bin-dir DIR] DOC.md...

Fenced blocks tagged `sh` run with bash (`set -euo pipefail`, the CLI from --bin-dir on PATH), `python` with this
interpreter (which must have the client installed), `go` as a whole program in a scratch module that uses
clients/go, and `json` blocks must parse. Any other block is illustration. Exits 1 when an example fails, showing its output.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", default=str(REPO / "target" / "debug"))
    parser.add_argument("docs", nargs="+")
    args = parser.parse_args()
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
