"""The runner of a python-executor Pod (Kubernetes backend).

One file, three roles, chosen by the first argument:

  receive   (init container) read a tar archive from standard input (streamed by the operator through the
            attach API, so the Pod needs no network), check its SHA-256, unpack it safely into the workspace.
  install   (init container) pip-install the requirements into the dependencies directory; the only container
            whose egress reaches the package index.
  run       (main container) copy inline sources into the workspace, wait for the operator's go-ahead (it comes once
            the program's NetworkPolicy exists), check that the network fence holds (nothing the program must not
            reach answers), run the pre-commands and the program under the timeout, and report everything on
            standard output as framed lines that the operator parses (pyexec_core::pod). When run.json asks for
            them (files_max_bytes), the files the program created or changed in the workspace are reported too:
            a program whose entrypoint is a file then runs under the eval runner (with --no-eval unless it
            evaluates its last expression, as on the embedded backend), which writes their tar to a pipe.
            In a warm pool's idle Pod (CLAIM_ENV) there is no run.json and no source yet: the runner waits on
            standard input for the claim (one JSON line: the run configuration, sources, stdin and environment that
            a cold Pod's ConfigMap and spec would hold), which is also the go-ahead, then goes on exactly as above.

Frames keep the program's stdout, stderr and the pre-commands' output apart on the one container log:
`<FRAME_MARKER> <nonce> <kind> <seq> <base64>`. The nonce comes from the Pod spec, is removed from the environment
before anything untrusted runs, and this process makes itself non-dumpable so that the program (same uid) can neither
read the nonce from /proc nor write to this process's descriptors: lines without the nonce are ignored. `seq` numbers
the frames from 0 (the start frame), so that a reader that follows the log again after a dropped stream skips the
frames it has and notices the ones it missed.
"""

import base64
import errno
import hashlib
import ipaddress
import json
import os
import re
import selectors
import socket
import stat
import struct
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

# ---------------------------------------------------------------------------------------------------- protocol
# Every name this runner shares with the operator and the API server. They are defined once, in Rust
# (pyexec_core::pod::protocol); a test there compares this block with them name by name, both ways, so change
# both together. One `NAME = literal` per line: strings, integers, tuples of strings.
# BEGIN PROTOCOL
ROLE_RECEIVE = "receive"
ROLE_INSTALL = "install"
ROLE_RUN = "run"
WORK_DIR = "/work"
RUN_DIR = "/opt/pyexec"
DEPS_DIR = "/deps"
SOURCE_DIR = "/opt/pyexec-source"
WORK_DIR_ENV = "PYEXEC_WORK"
RUN_DIR_ENV = "PYEXEC_RUN_DIR"
DEPS_DIR_ENV = "PYEXEC_DEPS"
SOURCE_DIR_ENV = "PYEXEC_USER_SOURCE"
RUN_CONFIG_FILE = "run.json"
EVAL_RUNNER_FILE = "eval_runner.py"
STDIN_FILE = "stdin"
REQUIREMENTS_FILE = "requirements.txt"
INSTALLED_FILE = ".pyexec-installed.json"
SKIPPED_FILE = ".pyexec-skipped.json"
DETECTED_MARKER = "# pyexec: detected"
OPTIONAL_MARKER = "# pyexec: optional"
SKIP_NOT_FOUND = "not found in the package index"
SKIP_NOT_INSTALLABLE = "no release of it installs on this interpreter (no binary wheel for it)"
RECEIVING_DIR = ".pyexec-receiving"
NONCE_ENV = "PYEXEC_FRAME_NONCE"
GATE_ENV = "PYEXEC_GATE"
ARCHIVE_SHA256_ENV = "PYEXEC_ARCHIVE_SHA256"
ALLOW_SDIST_ENV = "PYEXEC_ALLOW_SDIST"
RESULT_FD_ENV = "PYEXEC_RESULT_FD"
NO_EVAL_FLAG = "--no-eval"
FILES_FD_ENV = "PYEXEC_FILES_FD"
FILES_MAX_BYTES_ENV = "PYEXEC_FILES_MAX_BYTES"
FILES_MAX_COUNT_ENV = "PYEXEC_FILES_MAX_COUNT"
FILES_ROOT_ENV = "PYEXEC_FILES_ROOT"
FILES_ENTRY_OVERHEAD_BYTES = 8192
FILES_ARCHIVE_OVERHEAD_BYTES = 20480
FLAG_ON = "1"
GO_AHEAD = "go\n"
CLAIM_ENV = "PYEXEC_CLAIM"
CLAIM_FIELDS = ("run", "sources", "stdin", "env")
FENCE_BUDGET_MS = 300
FENCE_GRACE_SECONDS = 3
FENCE_FIELDS = ("tcp", "resolv_conf")
FENCE_TARGET_FIELDS = ("what", "host", "port")
FRAME_MARKER = "\x1fpyexec"
FRAME_STDOUT = "o"
FRAME_STDERR = "e"
FRAME_PRE_OUTPUT = "p"
FRAME_END = "x"
FRAME_START = "s"
FRAME_FILES = "f"
CGROUP_MEMORY_EVENTS = "/sys/fs/cgroup/memory.events"
CGROUP_V1_OOM_CONTROL = "/sys/fs/cgroup/memory/memory.oom_control"
OOM_EVENTS_ENV = "PYEXEC_OOM_EVENTS"
DISK_FREE_ENV = "PYEXEC_DISK_FREE"
DISK_FULL_FREE_BYTES = 1048576
RESULT_LIMIT_BYTES = 10485760
EXIT_TIMEOUT = 124
RUN_CONFIG_FIELDS = ("entrypoint", "args", "eval_last_expr", "pre_commands", "timeout_seconds", "output_limit_bytes", "files", "fence", "disk_mb", "files_max_bytes", "files_max_count")
END_FRAME_FIELDS = ("exit", "signal", "timed_out", "pre_failed", "result", "installed", "skipped", "stdout_truncated", "stderr_truncated", "fence_open", "oom_killed", "frames", "disk_full", "files_bytes", "files_truncated")
# END PROTOCOL

WORK = os.environ.get(WORK_DIR_ENV, WORK_DIR)
RUN = os.environ.get(RUN_DIR_ENV, RUN_DIR)
DEPS = os.environ.get(DEPS_DIR_ENV, DEPS_DIR)
USER_SOURCE = os.environ.get(SOURCE_DIR_ENV, SOURCE_DIR)
# Variables for the runner alone, never passed to the program (the eval runner's descriptors and caps are the
# runner's to set: a user's variable of those names must not point the eval runner elsewhere).
RUNNER_ONLY = {
    NONCE_ENV, GATE_ENV, CLAIM_ENV, RESULT_FD_ENV, OOM_EVENTS_ENV, DISK_FREE_ENV, FILES_FD_ENV, FILES_MAX_BYTES_ENV,
    FILES_MAX_COUNT_ENV, FILES_ROOT_ENV,
}
CHUNK = 65536


def main():
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role == ROLE_RECEIVE:
        receive()
    elif role == ROLE_INSTALL:
        install()
    elif role == ROLE_RUN:
        sys.exit(run())
    else:
        sys.exit(f"usage: pod_runner.py {ROLE_RECEIVE}|{ROLE_INSTALL}|{ROLE_RUN}")


# ---------------------------------------------------------------------------------------------------- receive


def receive():
    expected = os.environ.get(ARCHIVE_SHA256_ENV, "")
    digest = hashlib.sha256()

    class Hashing:
        def __init__(self, raw):
            self.raw = raw

        def read(self, n=-1):
            data = self.raw.read(n)
            digest.update(data)
            return data

    source = Hashing(sys.stdin.buffer)
    staging = os.path.join(WORK, RECEIVING_DIR)
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
    requirements = os.path.join(RUN, REQUIREMENTS_FILE)
    if not os.path.exists(requirements):
        requirements = os.path.join(WORK, REQUIREMENTS_FILE)
    if not os.path.exists(requirements):
        print("no requirements", flush=True)
        return
    # Isolated (-I: no script or working directory on sys.path, no PYTHON* variables, no user site) and from a
    # neutral directory, so that uploaded files in the workspace cannot shadow pip or anything it imports.
    command = [
        sys.executable, "-I", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
        "--no-input", "--target", DEPS,
    ]
    binary = [] if os.environ.get(ALLOW_SDIST_ENV) == FLAG_ON else ["--only-binary", ":all:"]
    explicit, detected = split_requirements(requirements)
    skipped = []
    if not detected:
        # Only what the user listed: any failure fails the execution, with pip's reason.
        full = command + ["-r", requirements] + binary
        print("+ " + " ".join(full), flush=True)
        status = subprocess.call(full, stdin=subprocess.DEVNULL, cwd="/")
        if status != 0:
            sys.exit(status)
    else:
        skipped = install_detected(command + binary, explicit, detected)
    installed = sorted(installed_distributions(DEPS), key=str.lower)
    with open(os.path.join(DEPS, INSTALLED_FILE), "w") as f:
        json.dump(installed, f)
    with open(os.path.join(DEPS, SKIPPED_FILE), "w") as f:
        json.dump(skipped, f)


def split_requirements(path):
    """The user's lines of a requirements file, and the names import detection added ({normalized name: (name,
    optional)}), which the API server marked with DETECTED_MARKER or OPTIONAL_MARKER (pyexec_core::requirements)."""
    explicit, detected = [], {}
    # Undecodable bytes are replaced, not fatal: a file without marks is handed to pip as it is.
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f.read().splitlines():
            body, _, comment = line.partition(" #")
            marker = "#" + comment.rstrip()
            if body.strip() and marker in (DETECTED_MARKER, OPTIONAL_MARKER):
                name = body.strip()
                detected[normalize(name)] = (name, marker == OPTIONAL_MARKER)
            else:
                explicit.append(line)
    return explicit, detected


def normalize(name):
    """PEP 503: lower case, runs of -, _ and . become -."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


# pip's words for a requirement the index has nothing installable for (not there, or no file this interpreter takes).
NOT_FOUND_RE = re.compile(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)")


def install_detected(command, explicit, detected):
    """Installs the user's lines and the detected names in one pip run (so that they resolve together), skipping the
    detected names the package index lacks: pip fails the whole run for one missing name, so the run is repeated
    without each name it reports until it succeeds. An optional name (imported under an ImportError handler) is
    also skipped when the index has it but nothing that installs here. Anything else fails as pip says.
    Returns [{"name", "reason"}] of the skipped names (the reasons are pyexec_core::requirements's)."""
    fd, listed = tempfile.mkstemp(prefix="pyexec-requirements-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(explicit) + "\n")
    has_explicit = any(line.strip() and not line.strip().startswith("#") for line in explicit)
    remaining, skipped = dict(detected), []
    while True:
        if not has_explicit and not remaining:
            return skipped
        full = command + (["-r", listed] if has_explicit else []) + [name for name, _ in remaining.values()]
        print("+ " + " ".join(full), flush=True)
        status, output = call_echoing(full)
        if status == 0:
            return skipped
        missing = {normalize(m) for m in NOT_FOUND_RE.findall(output)}
        decided = []
        for key in sorted(missing):
            reason = skip_reason(*remaining[key]) if key in remaining else None
            if reason is None:
                # A requirement the user listed, a dependency, or a detected name the index has: fail as pip says.
                sys.exit(status)
            decided.append((key, reason))
        if not decided:
            sys.exit(status)
        for key, reason in decided:
            name, _ = remaining.pop(key)
            skipped.append({"name": name, "reason": reason})
            print(f"pyexec: skipped {name}: {reason}", flush=True)


def call_echoing(command):
    """Runs command, echoing its output to the container log (the operator reads pip's reason there); returns
    (status, output)."""
    child = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/",
    )
    lines = []
    for raw in child.stdout:
        text = raw.decode("utf-8", "replace")
        lines.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()
    return child.wait(), "".join(lines)


def skip_reason(name, optional):
    """Why the detected name pip found nothing for is skipped, or None when it must not be. pip's words are the same
    whether the index lacks the name or has nothing installable for it, so the index is asked which."""
    probe = [
        sys.executable, "-I", "-m", "pip", "index", "versions", "--no-cache-dir", "--disable-pip-version-check",
        "--no-input", name,
    ]
    result = subprocess.run(probe, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd="/")
    answer = result.stdout.decode("utf-8", "replace")
    if result.returncode != 0 and "No matching distribution found" in answer:
        return SKIP_NOT_FOUND
    if optional:
        return SKIP_NOT_INSTALLABLE
    return None


def load_skipped():
    """The install container's SKIPPED_FILE, kept to well-formed entries: the dependencies directory is written while
    package code may run (source builds), so its shape is not trusted."""
    entries = load_json(os.path.join(DEPS, SKIPPED_FILE), [])
    if not isinstance(entries, list):
        return []
    return [
        {"name": e["name"][:200], "reason": e["reason"][:500]}
        for e in entries[:100]
        if isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("reason"), str)
    ]


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
        self.prefix = FRAME_MARKER.encode() + b" " + nonce.encode() + b" "
        self.limit = limit
        self.sent = {FRAME_STDOUT: 0, FRAME_STDERR: 0, FRAME_PRE_OUTPUT: 0}
        self.truncated = {FRAME_STDOUT: False, FRAME_STDERR: False, FRAME_PRE_OUTPUT: False}
        self.out = os.fdopen(os.dup(1), "wb", buffering=0)
        self.written = 0

    def frame(self, kind, data):
        # The frame's sequence number is the count of frames before it: the end frame's is its `frames` field.
        seq = str(self.written).encode()
        self.written += 1
        self.out.write(self.prefix + kind.encode() + b" " + seq + b" " + base64.b64encode(data) + b"\n")

    def output(self, kind, data):
        room = self.limit - self.sent[kind]
        if len(data) > room:
            self.truncated[kind] = True
            data = data[: max(room, 0)]
        if data:
            self.sent[kind] += len(data)
            self.frame(kind, data)

    def start(self):
        """The first frame: a log whose frames lack it lost its beginning (rotated away by the kubelet)."""
        self.frame(FRAME_START, b"")

    def files(self, data):
        """The tar of changed files, in pieces (a line per piece keeps every frame line short); returns its size,
        which the end frame repeats so that a reader missing a piece knows."""
        for at in range(0, len(data), CHUNK):
            self.frame(FRAME_FILES, data[at : at + CHUNK])
        return len(data)

    def end(
        self, exit, *, signal=None, timed_out=False, pre_failed=None, result=None, installed=(), fence_open=None,
        oom_killed=False, disk_full=False, files_bytes=None, files_truncated=False,
    ):
        """The final frame: every field, always, so that a reader never guesses (an exit code of 124 alone does not
        mean a timeout; `timed_out` does). `result` is what the eval runner wrote to its pipe (None: no pipe);
        `files_bytes` how many bytes of file frames came before (None: no files pipe)."""
        fields = {
            "exit": exit,
            "signal": signal,
            "timed_out": timed_out,
            "pre_failed": pre_failed,
            "result": None if result is None else base64.b64encode(result).decode(),
            "installed": list(installed),
            # What the install container skipped: read here, the one place that writes the end frame.
            "skipped": load_skipped(),
            "stdout_truncated": self.truncated[FRAME_STDOUT],
            "stderr_truncated": self.truncated[FRAME_STDERR],
            "fence_open": fence_open,
            "oom_killed": oom_killed,
            "frames": self.written,
            "disk_full": disk_full,
            "files_bytes": files_bytes,
            "files_truncated": files_truncated,
        }
        assert tuple(fields) == END_FRAME_FIELDS
        self.frame(FRAME_END, json.dumps(fields).encode())


def load_run_config():
    """run.json, which must have exactly the fields this runner knows (the operator that wrote it ships this file)."""
    path = os.path.join(RUN, RUN_CONFIG_FILE)
    return check_run_config(load_json(path, None), path)


def check_run_config(config, path):
    if not isinstance(config, dict) or set(config) != set(RUN_CONFIG_FIELDS):
        sys.exit(f"pyexec: {path} does not hold the fields {', '.join(RUN_CONFIG_FIELDS)}")
    fence = config["fence"]
    if (
        not isinstance(fence, dict) or set(fence) != set(FENCE_FIELDS)
        or any(not isinstance(t, dict) or set(t) != set(FENCE_TARGET_FIELDS) for t in fence["tcp"])
    ):
        sys.exit(f"pyexec: {path} has a malformed fence")
    return config


def run():
    claimed = os.environ.pop(CLAIM_ENV, "") == FLAG_ON
    nonce = os.environ.pop(NONCE_ENV, "")
    gated = os.environ.pop(GATE_ENV, "") == FLAG_ON
    make_undumpable()
    stdin_path = os.path.join(RUN, STDIN_FILE)
    extra_env = {}
    if claimed:
        # A warm Pod: everything comes with the claim, which is the go-ahead too (the Pod's NetworkPolicy existed
        # before the Pod).
        config, stdin_path, extra_env = receive_claim()
    else:
        config = load_run_config()
        copy_sources(config["files"])
        # Wait until the operator says the program's NetworkPolicy exists (after an install: replaced the install
        # stage's). Anything else (stdin closed without the word) runs nothing.
        if gated and sys.stdin.readline() != GO_AHEAD:
            sys.exit("pyexec: the operator's go-ahead did not come; nothing was run")
    frames = Frames(nonce, int(config["output_limit_bytes"]))
    frames.start()
    open_to = fence_open(config["fence"])
    if open_to is not None:
        frames.end(1, fence_open=open_to, installed=load_json(os.path.join(DEPS, INSTALLED_FILE), []))
        return 1
    env = {k: v for k, v in os.environ.items() if k not in RUNNER_ONLY}
    env.update((k, v) for k, v in extra_env.items() if k not in RUNNER_ONLY)
    if os.path.isdir(DEPS):
        env["PYTHONPATH"] = DEPS + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PATH"] = os.path.join(DEPS, "bin") + os.pathsep + env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    installed = load_json(os.path.join(DEPS, INSTALLED_FILE), [])
    deadline = time.monotonic() + float(config["timeout_seconds"])

    pre_kinds = {FRAME_STDOUT: FRAME_PRE_OUTPUT, FRAME_STDERR: FRAME_PRE_OUTPUT}
    for index, command in enumerate(config["pre_commands"]):
        status, timed_out = supervise(["/bin/sh", "-c", command], env, None, frames, pre_kinds, [], deadline)
        if timed_out:
            frames.end(EXIT_TIMEOUT, timed_out=True, installed=installed)
            return EXIT_TIMEOUT
        if status != 0:
            frames.end(status, pre_failed=[index, status], installed=installed)
            return status

    target = os.path.join(WORK, config["entrypoint"]) if config["entrypoint"] else WORK
    max_bytes, max_count = int(config["files_max_bytes"]), int(config["files_max_count"])
    # As on the embedded backend: the eval runner hosts the program when it evaluates its last expression and, so
    # that it reports the files the program writes, when the entrypoint is a regular file of the workspace (anything
    # else gets the interpreter's own message and exit code, which only a plain start gives).
    harvest = max_bytes > 0 and max_count > 0 and is_regular_file(target)
    argv = [sys.executable]
    if config["eval_last_expr"] or harvest:
        argv.append(os.path.join(RUN, EVAL_RUNNER_FILE))
        if not config["eval_last_expr"]:
            argv.append(NO_EVAL_FLAG)
    argv.append(target)
    argv += config["args"]
    # The eval runner's report (its result and display outputs) only matters when it evaluates: a run that does not
    # keeps no report, as on the embedded backend, and none travels through the log.
    result = Pipe(RESULT_LIMIT_BYTES) if config["eval_last_expr"] else None
    if result is not None:
        env[RESULT_FD_ENV] = str(result.write)
    files = None
    if harvest:
        # An honest eval runner writes at most this for these caps (pyexec_core::files_out::max_archive_bytes).
        files = Pipe(
            max_bytes + (max_count + 1) * FILES_ENTRY_OVERHEAD_BYTES + FILES_ARCHIVE_OVERHEAD_BYTES, strict=True,
        )
        env.update({
            FILES_FD_ENV: str(files.write), FILES_MAX_BYTES_ENV: str(max_bytes), FILES_MAX_COUNT_ENV: str(max_count),
            FILES_ROOT_ENV: WORK,
        })
    pipes = [p for p in (result, files) if p is not None]
    ooms_before = oom_kills()
    status, timed_out = supervise(
        argv, env, stdin_path if stdin_path and os.path.exists(stdin_path) else None, frames,
        {FRAME_STDOUT: FRAME_STDOUT, FRAME_STDERR: FRAME_STDERR}, pipes, deadline,
    )
    if timed_out:
        frames.end(EXIT_TIMEOUT, timed_out=True, installed=installed)
        return EXIT_TIMEOUT
    code, sig = (128 - status, -status) if status < 0 else (status, None)
    # The OOM killer may kill the program alone (cgroup v1, or v2 without group kill): the container then exits with
    # this runner's code and Kubernetes never says OOMKilled. SIGKILL while the cgroup's count rose says it.
    oom = sig == signal.SIGKILL and ooms_before is not None and (oom_kills() or 0) > ooms_before
    # A program that fills the workspace gets ENOSPC and fails, and the Pod need not be evicted for it (the kubelet
    # evicts only after it measured the emptyDir over its limit): a failure that left (almost) no free space says it.
    full = code != 0 and not oom and int(config["disk_mb"]) > 0 and work_free_bytes() < DISK_FULL_FREE_BYTES
    files_bytes, files_truncated = None, False
    if files is not None:
        if files.overflowed:
            # Not the eval runner's tar (the program wrote to the descriptor itself): nothing of it is sent.
            files_bytes, files_truncated = 0, True
        else:
            files_bytes = frames.files(bytes(files.data))
    frames.end(
        code, signal=sig, result=bytes(result.data) if result is not None else None, installed=installed,
        oom_killed=oom, disk_full=full, files_bytes=files_bytes, files_truncated=files_truncated,
    )
    return code


def is_regular_file(path):
    """Whether path is a regular file itself (a link is not: the embedded backend's rule)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def receive_claim():
    """A warm Pod's claim: one JSON line on stdin with exactly CLAIM_FIELDS. Writes the sources into the workspace and
    stdin into a private file; returns (run configuration, stdin path or None, the program's extra variables).
    Anything else (stdin closed first, a malformed claim) runs nothing."""
    line = sys.stdin.readline()
    try:
        claim = json.loads(line) if line.endswith("\n") else None
    except ValueError:
        claim = None
    if not isinstance(claim, dict) or set(claim) != set(CLAIM_FIELDS):
        sys.exit("pyexec: no well-formed claim came from the operator; nothing was run")
    config = check_run_config(claim["run"], "the claim's run configuration")
    sources, env = claim["sources"], claim["env"]
    if not isinstance(sources, dict) or not isinstance(env, dict) or set(config["files"]) - set(sources):
        sys.exit("pyexec: the claim's sources or environment are malformed; nothing was run")
    for key, relative in config["files"].items():
        target = os.path.join(WORK, relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(sources[key])
    stdin_path = None
    if claim["stdin"] is not None:
        fd, stdin_path = tempfile.mkstemp(prefix="pyexec-stdin-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(claim["stdin"])
    return config, stdin_path, {str(k): str(v) for k, v in env.items()}


def work_free_bytes():
    """The bytes of the workspace's filesystem still free to the program (DISK_FREE_ENV replaces it in tests); a
    workspace that cannot be read is not full."""
    override = os.environ.get(DISK_FREE_ENV)
    try:
        if override:
            with open(override) as f:
                return int(f.read().strip())
        st = os.statvfs(WORK)
        return st.f_bavail * st.f_frsize
    except (OSError, ValueError):
        return DISK_FULL_FREE_BYTES


def oom_kills():
    """The memory cgroup's `oom_kill` count (v2, else v1; OOM_EVENTS_ENV replaces both in tests); None: unknown."""
    override = os.environ.get(OOM_EVENTS_ENV)
    for path in [override] if override else [CGROUP_MEMORY_EVENTS, CGROUP_V1_OOM_CONTROL]:
        try:
            with open(path) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == "oom_kill" and parts[1].isdigit():
                        return int(parts[1])
            return 0
        except OSError:
            continue
    return 0 if override else None


# ---------------------------------------------------------------------------------------------------- fence


def fence_open(fence):
    """What answers that the program must not reach (None: the fence holds). A NetworkPolicy is enforced some time
    after it is created, so a target that answers is tried again for FENCE_GRACE_SECONDS before this gives up."""
    give_up = time.monotonic() + FENCE_GRACE_SECONDS
    while True:
        reached = probe(fence)
        if reached is None or time.monotonic() >= give_up:
            return reached
        time.sleep(0.25)


def fence_targets(fence):
    targets = [(t["what"], t["host"], int(t["port"])) for t in fence["tcp"]]
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if host and port.isdigit():
        targets.append(("the Kubernetes API", host, int(port)))
    return targets


def resolve(host, port, deadline):
    """The socket addresses of host; a name is resolved within the deadline (unresolved: unreachable)."""
    try:
        ip = ipaddress.ip_address(host)
        return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, (host, port))]
    except ValueError:
        pass
    found = []

    def lookup():
        try:
            found.extend((f, a[:2]) for f, _, _, _, a in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError:
            pass

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(max(deadline - time.monotonic(), 0))
    return [] if worker.is_alive() else list(found)


def name_servers(path):
    servers = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    servers.append(parts[1].split("%")[0])
    except OSError:
        pass
    return servers


def probe(fence):
    """One round: non-blocking connects to every target (and DNS queries to the name servers when the program has
    no network), all within FENCE_BUDGET_MS. Refused or silent means fenced; an accepted connection or an answer
    means open. Returns what answered first, or None."""
    deadline = time.monotonic() + FENCE_BUDGET_MS / 1000
    targets = fence_targets(fence)
    if fence["resolv_conf"]:
        for server in name_servers(fence["resolv_conf"]):
            targets.append((f"the DNS server {server} (TCP)", server, 53))
    selector = selectors.DefaultSelector()
    sockets = []
    try:
        for what, host, port in targets:
            for family, address in resolve(host, port, deadline):
                s = socket.socket(family, socket.SOCK_STREAM)
                sockets.append(s)
                s.setblocking(False)
                code = s.connect_ex(address)
                if code == 0:
                    return what
                if code in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
                    selector.register(s, selectors.EVENT_WRITE, (what, False))
        if fence["resolv_conf"]:
            query = struct.pack(">HHHHHH", int.from_bytes(os.urandom(2), "big"), 0x0100, 1, 0, 0, 0)
            query += b"\x00" + struct.pack(">HH", 2, 1)  # the root's name servers
            for server in name_servers(fence["resolv_conf"]):
                try:
                    ip = ipaddress.ip_address(server)
                    s = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM)
                    sockets.append(s)
                    s.setblocking(False)
                    s.connect((server, 53))
                    s.send(query)
                except (OSError, ValueError):
                    continue
                selector.register(s, selectors.EVENT_READ, (f"the DNS server {server} (UDP)", True))
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            for key, _ in selector.select(timeout=remaining):
                what, datagram = key.data
                selector.unregister(key.fileobj)
                if datagram:
                    try:
                        if key.fileobj.recv(512):
                            return what
                    except OSError:
                        pass
                elif key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    return what
        return None
    finally:
        selector.close()
        for s in sockets:
            s.close()


# ---------------------------------------------------------------------------------------------------- supervise


class Pipe:
    """A pipe the eval runner writes a report to (its result, or the tar of changed files). It is read while the
    program runs, so that a writer never blocks on a full pipe; at most `limit` bytes are kept. With `strict`, more
    than that keeps nothing and marks it `overflowed` (a tar cut short would be a corrupt one); the rest is still
    read, and dropped."""

    def __init__(self, limit, strict=False):
        self.read, self.write = os.pipe()
        self.limit = limit
        self.data = bytearray()
        self.strict = strict
        self.overflowed = False

    def take(self, chunk):
        room = self.limit - len(self.data)
        if len(chunk) > room and self.strict:
            self.overflowed, self.data, self.limit = True, bytearray(), 0
            return
        self.data.extend(chunk[: max(room, 0)])


def supervise(argv, env, stdin_path, frames, kinds, pipes, deadline):
    """Runs argv in its own process group, frames its output, reads `pipes` (their write ends go to the program),
    kills the group at the deadline. Returns (status as subprocess reports it, whether this runner stopped it at the
    deadline)."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    pass_fds = tuple(p.write for p in pipes)
    child = subprocess.Popen(
        argv, env=env, cwd=WORK, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        pass_fds=pass_fds, start_new_session=True,
    )
    if stdin_path:
        stdin.close()
    for fd in pass_fds:
        os.close(fd)
    selector = selectors.DefaultSelector()
    selector.register(child.stdout, selectors.EVENT_READ, kinds[FRAME_STDOUT])
    selector.register(child.stderr, selectors.EVENT_READ, kinds[FRAME_STDERR])
    for pipe in pipes:
        selector.register(pipe.read, selectors.EVENT_READ, pipe)
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
            if isinstance(key.data, Pipe):
                key.data.take(data)
            else:
                frames.output(key.data, data)
    if timed_out:
        # Keep what was already written; drain briefly so output produced right before the kill is not lost.
        for key in list(selector.get_map().values()):
            drain(key, frames)
    try:
        # A program that closed its output early still gets no more than its deadline.
        status = child.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        timed_out = True
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
            if not isinstance(key.data, Pipe):
                frames.output(key.data, data)
    except BlockingIOError:
        pass


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def copy_sources(files):
    # Inline files come from this Pod's ConfigMap as keys that run.json maps to paths (ConfigMap keys cannot hold
    # '/'), a user's ConfigMap as its own keys; ConfigMap volumes keep their data behind "..data" links, which are
    # skipped.
    for key, path in files.items():
        place(os.path.join(RUN, key), path)
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
