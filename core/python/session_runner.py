"""python-executor session runner: python session_runner.py [--mux]

Keeps one interpreter, and the __main__ namespace of its calls, alive for a session (docs/sessions.md), serving
requests from standard input until it ends. Requests and replies are frames: a line with the byte length of a JSON
header, the header, then as many raw bytes as the header's "n" says (0 when absent).

Requests (header "op"):
- "eval": run a cell. Header: code, eval (evaluate the last expression), files ([{p, n, m}] written into /work
  first, their bytes first in the payload), stdin_n (the call's standard input, after the files' bytes), nonce,
  files_max_bytes, files_max_count. When the cell ends, standard output and error each get the end marker
  ___PYEXEC_CALL_END_<nonce>___ (so the backend knows where the call's output ends), then the reply: exit (0, 1
  for an exception, 130 when interrupted, a SystemExit's code), result_n bytes of the eval report (the eval
  runner's result object, JSON) and files_n bytes of a tar of the files the cell created or changed.
- "interrupt": raises KeyboardInterrupt in the running cell (no reply; ignored between cells).
- "list": the regular files under /work with size and sha256 (at most max_count; "truncated" beyond).
- "get": one file's bytes (path; at most max bytes).
- "put": the payload becomes the file at path (parent directories created).
Paths are relative to /work; no component may be a link (nothing is followed out of /work).

A reader thread takes the requests: it serves files and interrupts itself and queues cells for the main thread,
where they run (and where signals arrive: SIGINT, the embedded backend's interrupt, raises KeyboardInterrupt in a
cell and is ignored between cells). The requests arrive on a private copy of standard input: descriptor 0 reads
/dev/null, so programs a cell starts never read them.

Replies go to the descriptor named by PYEXEC_CONTROL_FD, which first gets "ready". With --mux (a Pod, whose only
output is its attached standard output) everything goes to standard output as frames naming their stream,
{"s": "out" | "err" | "ctl", "n": N}: what the program writes to descriptors 1 and 2 (pumped from pipes) and the
replies.

The gate (--mux with PYEXEC_GATE=1: a Kubernetes session Pod, started isolated with python -I). The Pod may start
before its NetworkPolicy is enforced, and after an install its network first reaches the package index: like an
execution's runner, this one runs nothing of the session's until the operator closed the network and said so. It
reads one line from standard input, which must be the go-ahead ("go"; anything else, or standard input closed, and
it exits without running anything), checks the network fence of FENCE_FILE (next to this file) with the Pod
runner's probe (an answering target: it exits, nothing run), writes READY_MARKER and {"installed": [...]} as one line
to standard error (the container log, where the operator reads it; never the mux stream), and then replaces itself
with a plain interpreter serving the session: the session's variables in force, the installed packages (the
install container's /deps) on PYTHONPATH and their scripts on PATH, as an execution's program gets them. A go-ahead
repeated by an operator that did not see its first one arrive is skipped by the serving interpreter.
"""

import os as _os
import sys

# What the gate shares with the operator (pyexec_core::session and pyexec_core::pod::protocol; a test there compares).
GATE_ENV = "PYEXEC_GATE"
FLAG_ON = "1"
GO_AHEAD = "go\n"
READY_MARKER = "\x1fpyexec-session-ready "
FENCE_FILE = "fence.json"
WORK_ENV = "PYEXEC_WORK_DIR"

# This file's directory: the eval runner (and, at the gate, the Pod runner) are imported from it. A Pod starts the
# runner isolated (-I), so that the session's variables and packages play no part before the gate: the directory is
# then not on sys.path by itself.
_HERE = _os.path.dirname(_os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from eval_runner import _read_exact  # noqa: E402

# /work in every sandbox and Pod; tests that run the runner on its own point it elsewhere.
WORK = _os.environ.pop(WORK_ENV, "/work")
CHUNK = 1 << 20


def _read_header(fd):
    import json
    import os

    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            raise EOFError("the backend went away")
        if len(line) > 20:
            raise ValueError("bad frame")
        line += byte
        if line == GO_AHEAD.encode():
            # The operator's go-ahead, sent again because it did not see the first one arrive: no request.
            line = b""
    return json.loads(_read_exact(fd, int(line)))


def _write_all(fd, data):
    import os

    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _reply(control, header, payload=b""):
    import json

    header["n"] = len(payload)
    body = json.dumps(header).encode()
    with control.lock:
        control.write(b"%d\n" % len(body) + body)
        if payload:
            control.write(payload)


class _Descriptor:
    """Replies written to a descriptor of their own (the embedded backend's control pipe)."""

    def __init__(self, fd, lock):
        self.fd, self.lock = fd, lock

    def write(self, data):
        with self.lock:
            _write_all(self.fd, data)


class _Piece:
    """One stream of the mux: its bytes go out as frames `{"s": stream, "n": N}` on the shared descriptor."""

    CHUNK = 64 * 1024

    def __init__(self, fd, stream, lock):
        self.fd, self.stream, self.lock = fd, stream, lock

    def write(self, data):
        import json

        view = memoryview(data)
        while view:
            chunk, view = view[: self.CHUNK], view[self.CHUNK :]
            body = json.dumps({"s": self.stream, "n": len(chunk)}).encode()
            with self.lock:
                _write_all(self.fd, b"%d\n" % len(body) + body)
                _write_all(self.fd, chunk)


def _pump(fd, piece):
    """Moves what the program writes to `fd` (its standard output or error) into the mux."""
    import os

    while True:
        try:
            data = os.read(fd, _Piece.CHUNK)
        except OSError:
            return
        if not data:
            return
        try:
            piece.write(data)
        except OSError:
            return


def _parts(path):
    parts = path.split("/")
    if not path or path.startswith("/") or "\0" in path or any(p in ("", ".", "..") for p in parts):
        raise ValueError("invalid path %r" % path)
    return parts


def _open_dir(parts, create):
    """The directory holding the last of `parts`, walked from /work one component at a time, never through a
    link."""
    import os

    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(WORK, flags)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_file(path, write):
    import os

    parts = _parts(path)
    parent = _open_dir(parts, create=write)
    try:
        if write:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(parts[-1], flags, 0o644, dir_fd=parent)
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=parent)
        import errno
        import stat

        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, "a directory")
            raise FileNotFoundError(errno.ENOENT, "not a regular file")
        return fd
    finally:
        os.close(parent)


def _why(exc):
    import errno

    # A link (ELOOP with O_NOFOLLOW) or a file where a directory should be is not a file of /work either.
    if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) in (errno.ELOOP, errno.ENOTDIR):
        return "not_found"
    if getattr(exc, "errno", None) == errno.EISDIR:
        return "is_directory"
    if isinstance(exc, ValueError):
        return "invalid_path"
    if isinstance(exc, OSError) and exc.errno in (28, 122):
        return "no_space"
    return "error: %s" % (getattr(exc, "strerror", None) or exc)


def _sha256_of(fd):
    import hashlib
    import os

    h = hashlib.sha256()
    while True:
        chunk = os.read(fd, CHUNK)
        if not chunk:
            return h.hexdigest()
        h.update(chunk)


def op_list(control, header):
    import os
    import stat

    max_count = int(header.get("max_count", 1000))
    files, truncated = [], False
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = sorted(os.scandir(os.path.join(WORK, rel)), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = rel + entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(path + "/")
            elif stat.S_ISREG(st.st_mode):
                if len(files) >= max_count:
                    truncated = True
                    continue
                try:
                    fd = _open_file(path, write=False)
                    try:
                        digest = _sha256_of(fd)
                    finally:
                        os.close(fd)
                except OSError:
                    continue
                files.append({"path": path, "size": st.st_size, "sha256": digest})
    files.sort(key=lambda f: f["path"])
    _reply(control, {"files": files, "truncated": truncated})


def op_get(control, header):
    import os

    try:
        fd = _open_file(header["path"], write=False)
    except (OSError, ValueError) as exc:
        _reply(control, {"error": _why(exc)})
        return
    try:
        size = os.fstat(fd).st_size
        if size > int(header.get("max", 1 << 62)):
            _reply(control, {"error": "too_large", "size": size})
            return
        data = _read_exact(fd, size) if size else b""
    except (OSError, EOFError) as exc:
        _reply(control, {"error": _why(exc)})
        return
    finally:
        os.close(fd)
    _reply(control, {"ok": True}, data)


def op_put(control, requests, header):
    import hashlib
    import os

    remaining = int(header.get("n", 0))
    h = hashlib.sha256()
    failure = None
    fd = None
    try:
        fd = _open_file(header["path"], write=True)
    except (OSError, ValueError) as exc:
        failure = exc
    while remaining > 0:
        chunk = _read_exact(requests, min(remaining, CHUNK))
        remaining -= len(chunk)
        if failure is None:
            try:
                _write_all(fd, chunk)
                h.update(chunk)
            except OSError as exc:
                failure = exc
    if fd is not None:
        os.close(fd)
    if failure is not None:
        _reply(control, {"error": _why(failure)})
    else:
        _reply(control, {"ok": True, "size": int(header.get("n", 0)), "sha256": h.hexdigest()})


def _write_call_files(entries, data):
    import os

    offset = 0
    for entry in entries:
        size = int(entry["n"])
        fd = _open_file(entry["p"], write=True)
        try:
            _write_all(fd, memoryview(data)[offset : offset + size])
            os.fchmod(fd, int(entry.get("m", 0o644)) & 0o777)
        finally:
            os.close(fd)
        offset += size


def _flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except BaseException:
            pass


def op_eval(control, header, payload, namespace, count, runner, running):
    import io
    import json
    import linecache
    import os
    import signal

    files = header.get("files", [])
    files_n = sum(int(f["n"]) for f in files)
    data, stdin = payload[:files_n], payload[files_n:]
    nonce = header["nonce"]
    try:
        _write_call_files(files, data)
    except (OSError, ValueError) as exc:
        _reply(control, {"nonce": nonce, "write_error": _why(exc)})
        return
    del data
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors="replace")
    before = runner.snapshot_work(WORK)

    filename = "<cell-%d>" % count
    source = header["code"]
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    value, code, interrupted = None, 0, False
    signal.signal(signal.SIGINT, signal.default_int_handler)
    running.set()
    try:
        try:
            value = runner.run_cell(source, filename, namespace, bool(header.get("eval", True)))
        finally:
            running.clear()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    except SystemExit as exc:
        code = runner._exit_code(exc)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        code = 130 if interrupted else 1
        try:
            runner._report(exc, filename)
        except BaseException:
            pass
    try:
        outputs = runner.take_outputs(value)
    except BaseException:
        outputs = []
    result = None
    if value is not None and code == 0:
        try:
            result = repr(value)
        except BaseException as exc:
            result = "<repr failed: %s>" % type(exc).__name__
        if len(result) > runner.MAX_RESULT_CHARS:
            result = result[: runner.MAX_RESULT_CHARS] + "...[truncated]"
    channel = b""
    if result is not None or outputs:
        channel = json.dumps({"result": result, "outputs": outputs}).encode()
    archive = b""
    try:
        changed = runner.changed_files(before, WORK)
        if changed and int(header.get("files_max_count", 0)) > 0:
            buf = io.BytesIO()
            runner.write_tar(
                buf, WORK, changed, int(header.get("files_max_bytes", 0)), int(header.get("files_max_count", 0))
            )
            archive = buf.getvalue()
    except BaseException:
        archive = b""
    _flush()
    marker = ("___PYEXEC_CALL_END_%s___" % nonce).encode()
    for fd in (1, 2):
        try:
            _write_all(fd, marker)
        except OSError:
            pass
    _reply(
        control,
        {
            "nonce": nonce, "exit": code, "interrupted": interrupted, "result_n": len(channel),
            "files_n": len(archive), "memory": _memory_used(),
        },
        channel + archive,
    )


# The memory count of this process's cgroup: cgroup v2 (a container's own, with its cgroup namespace), then v1.
MEMORY_COUNTERS = ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes")


def _memory_used():
    """Bytes the session's cgroup uses now, or None where this process sees no cgroup counter."""
    for path in MEMORY_COUNTERS:
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            continue
    return None


def _serve_requests(requests, control, cells, running):
    """The reader thread: file requests are served here, interrupts sent to the running cell, and cells queued
    for the main thread (where signals arrive and where user code expects to run)."""
    import os
    import signal
    import threading

    main = threading.main_thread().ident
    while True:
        try:
            header = _read_header(requests)
            op = header.get("op")
            if op == "eval":
                cells.put((header, _read_exact(requests, int(header.get("n", 0)))))
            elif op == "interrupt":
                _read_exact(requests, int(header.get("n", 0)))
                if running.is_set():
                    signal.pthread_kill(main, signal.SIGINT)
            elif op == "list":
                op_list(control, header)
            elif op == "get":
                op_get(control, header)
            elif op == "put":
                op_put(control, requests, header)
            else:
                _read_exact(requests, int(header.get("n", 0)))
                _reply(control, {"error": "unknown op %r" % op})
        except (EOFError, ValueError, OSError):
            # The backend went away (or spoke garbage): nothing is left to serve.
            os._exit(0)


def _pass_gate():
    """The first stage of a gated Pod (see the module's documentation): returns only by replacing the process."""
    import json
    import os

    import pod_runner as pod

    os.environ.pop(GATE_ENV, None)
    # Byte by byte: what follows the go-ahead on standard input is the serving interpreter's.
    line = b""
    while not line.endswith(b"\n") and len(line) <= len(GO_AHEAD):
        byte = os.read(0, 1)
        if not byte:
            break
        line += byte
    if line != GO_AHEAD.encode():
        sys.exit("pyexec: the operator's go-ahead did not come; nothing was run")
    fence = pod.load_json(os.path.join(_HERE, FENCE_FILE), None)
    if (
        not isinstance(fence, dict) or set(fence) != set(pod.FENCE_FIELDS)
        or not isinstance(fence["tcp"], list)
        or any(not isinstance(t, dict) or set(t) != set(pod.FENCE_TARGET_FIELDS) for t in fence["tcp"])
    ):
        sys.exit("pyexec: %s does not hold a well-formed fence; nothing was run" % FENCE_FILE)
    # The execution runner's check, unchanged: NetworkPolicies are enforced asynchronously, so it looks again for a
    # few seconds before it gives up.
    reached = pod.fence_open(fence)
    if reached is not None:
        sys.exit("pyexec: the network fence is open: %s answered; nothing was run" % reached)
    installed = pod.load_json(os.path.join(pod.DEPS, pod.INSTALLED_FILE), [])
    installed = [str(name) for name in installed] if isinstance(installed, list) else []
    _write_all(2, (READY_MARKER + json.dumps({"installed": installed}) + "\n").encode())
    env = dict(os.environ)
    env[WORK_ENV] = WORK
    if os.path.isdir(pod.DEPS):
        # As the Pod runner gives them to an execution's program.
        env["PYTHONPATH"] = pod.DEPS + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PATH"] = os.path.join(pod.DEPS, "bin") + os.pathsep + env.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    python = sys.executable or "python"
    os.execve(python, [python, os.path.abspath(__file__), "--mux"], env)


def main():
    import builtins
    import os
    import queue
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    mux = sys.argv[1:] == ["--mux"]
    if mux and os.environ.get(GATE_ENV) == FLAG_ON:
        _pass_gate()
    requests = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    lock = threading.RLock()
    if mux:
        # One stream out (a Pod's attached standard output): the program's output and error are pumped into it
        # as frames, and so are the replies.
        out = os.dup(1)
        control = _Piece(out, "ctl", lock)
        for fd, stream in ((1, "out"), (2, "err")):
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            threading.Thread(target=_pump, args=(r, _Piece(out, stream, lock)), daemon=True).start()
    else:
        fd = int(os.environ.pop("PYEXEC_CONTROL_FD"))
        os.set_inheritable(fd, False)
        control = _Descriptor(fd, lock)

    import eval_runner as runner

    runner.install_display()
    # The cells' own modules come from /work, as a script's come from its directory.
    sys.path[0] = WORK
    os.chdir(WORK)
    module = type(sys)("__main__")
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    namespace = module.__dict__
    cells, running = queue.Queue(), threading.Event()
    threading.Thread(target=_serve_requests, args=(requests, control, cells, running), daemon=True).start()
    if not mux:
        control.write(b"ready\n")

    count = 0
    while True:
        header, payload = cells.get()
        count += 1
        op_eval(control, header, payload, namespace, count, runner, running)


if __name__ == "__main__":
    main()
