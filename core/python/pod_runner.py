"""The runner of a python-executor Pod (Kubernetes backend).

One file, three roles, chosen by the first argument:

  receive   (init container) read a tar archive from standard input (streamed by the operator through the
            attach API, so the Pod needs no network), check its SHA-256, unpack it safely into the workspace.
  install   (init container) pip-install the requirements into the dependencies directory; the only container
            whose egress reaches the package index.
  run       (main container) copy inline sources into the workspace, wait for the operator's go-ahead when the
            Pod's network was opened for the install, run the pre-commands and the program under the timeout, and
            report everything on standard output as framed lines that the operator parses (pyexec_core::pod).

Frames keep the program's stdout, stderr and the pre-commands' output apart on the one container log:
`\x1fpyexec <nonce> <kind> <base64>`. The nonce comes from the Pod spec, is removed from the environment before
anything untrusted runs, and this process makes itself non-dumpable so that the program (same uid) can neither read
the nonce from /proc nor write to this process's descriptors: lines without the nonce are ignored.
"""

import base64
import hashlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tarfile
import time

WORK = os.environ.get("PYEXEC_WORK", "/work")
RUN_DIR = os.environ.get("PYEXEC_RUN_DIR", "/opt/pyexec")
DEPS = os.environ.get("PYEXEC_DEPS", "/deps")
USER_SOURCE = os.environ.get("PYEXEC_USER_SOURCE", "/opt/pyexec-source")
RESULT_FD_ENV = "PYEXEC_RESULT_FD"
# Variables for the runner alone, never passed to the program.
RUNNER_ONLY = {"PYEXEC_FRAME_NONCE", "PYEXEC_GATE", RESULT_FD_ENV}
CHUNK = 65536


def main():
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == "receive":
        receive()
    elif role == "install":
        install()
    elif role == "run":
        sys.exit(run())
    else:
        sys.exit("usage: pod_runner.py receive|install|run")


# ---------------------------------------------------------------------------------------------------- receive


def receive():
    expected = os.environ.get("PYEXEC_ARCHIVE_SHA256", "")
    digest = hashlib.sha256()

    class Hashing:
        def __init__(self, raw):
            self.raw = raw

        def read(self, n=-1):
            data = self.raw.read(n)
            digest.update(data)
            return data

    source = Hashing(sys.stdin.buffer)
    staging = os.path.join(WORK, ".pyexec-receiving")
    os.makedirs(staging, exist_ok=True)
    with tarfile.open(fileobj=source, mode="r|*") as archive:
        for member in archive:
            check_member(member)
            extract(archive, member, staging)
    while source.read(CHUNK):  # the digest covers the whole stream, padding included
        pass
    if expected and digest.hexdigest() != expected:
        shutil.rmtree(staging, ignore_errors=True)
        sys.exit(f"the archive's SHA-256 is {digest.hexdigest()}, expected {expected}")
    for name in os.listdir(staging):
        os.replace(os.path.join(staging, name), os.path.join(WORK, name))
    os.rmdir(staging)
    print("received", flush=True)


def check_member(member):
    name = member.name
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts:
        sys.exit(f"refusing archive entry {name!r}: outside the workspace")
    if not (member.isfile() or member.isdir()):
        sys.exit(f"refusing archive entry {name!r}: only files and directories are accepted")


def extract(archive, member, root):
    # The API server checked the archive already; the data filter (or its equivalent on old interpreters) keeps this
    # safe on its own: no absolute paths, no links, no devices, no special permission bits.
    if hasattr(tarfile, "data_filter"):
        archive.extract(member, root, filter="data")
    else:
        member.mode &= 0o755
        archive.extract(member, root, set_attrs=False)


# ---------------------------------------------------------------------------------------------------- install


def install():
    requirements = os.path.join(RUN_DIR, "requirements.txt")
    if not os.path.exists(requirements):
        requirements = os.path.join(WORK, "requirements.txt")
    if not os.path.exists(requirements):
        print("no requirements", flush=True)
        return
    command = [
        sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
        "--no-input", "--target", DEPS, "-r", requirements,
    ]
    if os.environ.get("PYEXEC_ALLOW_SDIST", "false") != "true":
        command += ["--only-binary", ":all:"]
    print("+ " + " ".join(command), flush=True)
    status = subprocess.call(command, stdin=subprocess.DEVNULL)
    if status != 0:
        sys.exit(status)
    installed = sorted(installed_distributions(DEPS), key=str.lower)
    with open(os.path.join(DEPS, ".pyexec-installed.json"), "w") as f:
        json.dump(installed, f)


def installed_distributions(site):
    out = []
    for name in os.listdir(site) if os.path.isdir(site) else []:
        if name.endswith(".dist-info") and "-" in name:
            dist, version = name[: -len(".dist-info")].split("-", 1)
            out.append(f"{dist.replace('_', '-')}=={version}")
    return out


# ---------------------------------------------------------------------------------------------------- run


class Frames:
    """Writes frames to the container log, and keeps the per-stream byte budget."""

    def __init__(self, nonce, limit):
        self.nonce = nonce
        self.limit = limit
        self.sent = {"o": 0, "e": 0, "p": 0}
        self.truncated = {"o": False, "e": False, "p": False}
        self.out = os.fdopen(os.dup(1), "wb", buffering=0)

    def frame(self, kind, data):
        line = b"\x1fpyexec " + self.nonce.encode() + b" " + kind.encode() + b" " + base64.b64encode(data) + b"\n"
        self.out.write(line)

    def output(self, kind, data):
        room = self.limit - self.sent[kind]
        if len(data) > room:
            self.truncated[kind] = True
            data = data[: max(room, 0)]
        if data:
            self.sent[kind] += len(data)
            self.frame(kind, data)

    def end(self, **fields):
        fields["stdout_truncated"] = self.truncated["o"]
        fields["stderr_truncated"] = self.truncated["e"]
        self.frame("x", json.dumps(fields).encode())


def run():
    config = load_json(os.path.join(RUN_DIR, "run.json"), {})
    nonce = os.environ.pop("PYEXEC_FRAME_NONCE", "")
    make_undumpable()
    copy_sources(config)
    if os.environ.pop("PYEXEC_GATE", "") == "1":
        # The Pod's network was opened for the install: wait until the operator has closed it again.
        sys.stdin.readline()
    frames = Frames(nonce, int(config.get("output_limit_bytes", 1 << 20)))
    env = {k: v for k, v in os.environ.items() if k not in RUNNER_ONLY}
    if os.path.isdir(DEPS):
        env["PYTHONPATH"] = DEPS + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PATH"] = os.path.join(DEPS, "bin") + os.pathsep + env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    installed = load_json(os.path.join(DEPS, ".pyexec-installed.json"), [])
    deadline = time.monotonic() + float(config.get("timeout_seconds", 300))

    for index, command in enumerate(config.get("pre_commands", [])):
        status, timed_out = supervise(["/bin/sh", "-c", command], env, None, frames, {"o": "p", "e": "p"}, None, deadline)
        if timed_out:
            frames.end(exit=124, signal=None, timed_out=True, installed=installed)
            return 124
        if status != 0:
            frames.end(exit=status, signal=None, pre_failed=[index, status], installed=installed)
            return status

    argv = [sys.executable]
    if config.get("eval_last_expr"):
        argv.append(os.path.join(RUN_DIR, "eval_runner.py"))
    argv.append(os.path.join(WORK, config["entrypoint"]) if config.get("entrypoint") else WORK)
    argv += config.get("args", [])
    stdin_path = os.path.join(RUN_DIR, "stdin")
    result_read, result_write = os.pipe() if config.get("eval_last_expr") else (None, None)
    if result_write is not None:
        env[RESULT_FD_ENV] = str(result_write)
    result = bytearray()
    status, timed_out = supervise(
        argv, env, stdin_path if os.path.exists(stdin_path) else None, frames, {"o": "o", "e": "e"},
        (result_read, result_write, result), deadline,
    )
    if timed_out:
        frames.end(exit=124, signal=None, timed_out=True, installed=installed)
        return 124
    code, sig = (128 - status, -status) if status < 0 else (status, None)
    frames.end(exit=code, signal=sig, result=base64.b64encode(bytes(result)).decode(), installed=installed)
    return code


def supervise(argv, env, stdin_path, frames, kinds, result, deadline):
    """Runs argv in its own process group, frames its output, kills the group at the deadline.
    Returns (status as subprocess reports it, timed_out)."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    pass_fds = (result[1],) if result and result[1] is not None else ()
    child = subprocess.Popen(
        argv, env=env, cwd=WORK, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        pass_fds=pass_fds, start_new_session=True,
    )
    if stdin_path:
        stdin.close()
    if pass_fds:
        os.close(result[1])
    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ, kinds["o"])
    selector.register(child.stderr, selectors.EVENT_READ, kinds["e"])
    if result and result[0] is not None:
        selector.register(result[0], selectors.EVENT_READ, "r")
    timed_out = False
    while selector.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            kill_group(child.pid)
            break
        for key, _ in selector.select(timeout=min(remaining, 1.0)):
            fd = key.fd if isinstance(key.fileobj, int) else key.fileobj.fileno()
            data = os.read(fd, CHUNK)
            if not data:
                selector.unregister(key.fileobj)
                if isinstance(key.fileobj, int):
                    os.close(key.fileobj)
                continue
            if key.data == "r":
                result[2].extend(data[: (1 << 20) - len(result[2])])
            else:
                frames.output(key.data, data)
    if timed_out:
        # Keep what was already written; drain briefly so output produced right before the kill is not lost.
        for key in list(selector.get_map().values()):
            drain(key, frames)
    try:
        status = child.wait(timeout=max(deadline - time.monotonic(), 0) + 5)
    except subprocess.TimeoutExpired:
        kill_group(child.pid)
        status = child.wait()
    # Whatever the program left behind in its group goes with it.
    kill_group(child.pid)
    return status, timed_out


def drain(key, frames):
    fd = key.fd if isinstance(key.fileobj, int) else key.fileobj.fileno()
    os.set_blocking(fd, False)
    try:
        while True:
            data = os.read(fd, CHUNK)
            if not data:
                break
            if key.data != "r":
                frames.output(key.data, data)
    except BlockingIOError:
        pass


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def copy_sources(config):
    # Inline files come from this Pod's ConfigMap as keys src-N (ConfigMap keys cannot hold '/'), a user's
    # ConfigMap as its own keys; ConfigMap volumes keep their data behind "..data" links, which are skipped.
    for key, path in config.get("files", {}).items():
        place(os.path.join(RUN_DIR, key), path)
    if os.path.isdir(USER_SOURCE):
        for name in sorted(os.listdir(USER_SOURCE)):
            if not name.startswith(".."):
                place(os.path.join(USER_SOURCE, name), name)


def place(source, relative):
    target = os.path.join(WORK, relative)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)


def make_undumpable():
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception as error:  # pragma: no cover - a libc without prctl
        print(f"pyexec: cannot make the runner non-dumpable: {error}", file=sys.stderr)


def load_json(path, default):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


if __name__ == "__main__":
    main()
