"""python-executor eval runner: python eval_runner.py FILE [ARGS...] | python eval_runner.py --warm

Runs FILE as the __main__ module in a namespace of its own, exactly as `python FILE ARGS...` would, and, when FILE
ends with an expression whose value is not None, reports repr(value) as the execution's result: on the file
descriptor named by PYEXEC_RESULT_FD when set, else as one `___PYEXEC_RESULT___<json>` line on standard output.
Tracebacks show the user's frames only, so line numbers refer to FILE, never to this runner.

With --warm the interpreter starts ahead of demand in a sandbox of a warm pool: it imports the modules named in
PYEXEC_PREIMPORT (output silenced), says "ready" on the descriptor named by PYEXEC_CONTROL_FD, then reads its work
from standard input: one line with the byte length of a JSON header, the header (environment, arguments, whether
to evaluate, the files of /work), then the files' bytes; whatever follows is the program's own standard input. It
writes the files, takes the environment and arguments, reseeds every random generator already imported, and runs
FILE as above (or plainly, without evaluating, when asked). A failure to write the files is reported on the
control descriptor ("nospace" or "error") before exiting.
"""

import sys

MARKER = "___PYEXEC_RESULT___"
MAX_RESULT_CHARS = 1_000_000


def _report(exc, path):
    import traceback

    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != path:
        tb = tb.tb_next
    try:
        sys.stdout.flush()
    except Exception:
        pass
    traceback.print_exception(type(exc), exc, tb)


def _emit(value, result_fd):
    import json
    import os

    text = repr(value)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + "...[truncated]"
    payload = json.dumps(text)
    if result_fd is not None:
        try:
            with os.fdopen(int(result_fd), "w", encoding="utf-8") as out:
                out.write(payload)
        except (OSError, ValueError):
            pass
        return
    try:
        sys.stdout.flush()
    except Exception:
        pass
    out = sys.__stdout__
    if out is not None and not out.closed:
        out.write(MARKER + payload + "\n")
        out.flush()


def _exit_code(exc):
    """The exit status Python gives an uncaught SystemExit (printing a non-integer code, as it does)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(str(code) + "\n")
    except Exception:
        pass
    return 1


def _finish(code, home):
    """Ends the interpreter the way Python's shutdown does what a program can see, then exits at once.

    Non-daemon threads are joined, atexit handlers run (logging's among them), the program's own modules
    (``__main__`` first, then the modules loaded from its directory ``home``, newest first) are emptied so that
    their objects are finalized and files they left open are flushed and closed, cycles are collected, and
    standard output and error are flushed (a failed flush of stdout exits 120, as Python does). What is skipped
    is tearing down the interpreter's and the libraries' modules: milliseconds on every run, and nothing a
    program may rely on (Python never guarantees ``__del__`` for objects still alive at exit).
    """
    import atexit
    import gc
    import os

    collect, exit_now = gc.collect, os._exit
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:
            pass
    atexit._run_exitfuncs()
    prefix = os.path.join(home, "")
    own = [
        m
        for m in reversed(list(sys.modules.values()))
        if isinstance(getattr(m, "__file__", None), str) and m.__file__.startswith(prefix)
    ]
    for module in [sys.modules.get("__main__")] + own:
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            try:
                namespace.clear()
            except BaseException:
                pass
    collect()
    try:
        sys.stdout.flush()
    except BaseException as exc:
        code = code or 120
        try:
            sys.stderr.write("Exception ignored in: %r\n%s: %s\n" % (sys.stdout, type(exc).__name__, exc))
        except BaseException:
            pass
    try:
        sys.stderr.flush()
    except BaseException:
        pass
    exit_now(code)


def run_and_finish(evaluate=True):
    """[`main`], then [`_finish`] with the status Python would have exited with."""
    import os

    home = os.path.dirname(os.path.abspath(sys.argv[1])) if len(sys.argv) > 1 else "/work"
    try:
        main(evaluate)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    _finish(code, home)


def main(evaluate=True):
    # The C-level `_ast` (built in) rather than the `ast` module, which would import enum, contextlib and more
    # into every run: milliseconds of start-up and of shutdown.
    import _ast
    import os

    if len(sys.argv) < 2:
        sys.stderr.write("usage: eval_runner.py FILE [ARGS...]\n")
        sys.exit(2)
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    result_fd = os.environ.pop("PYEXEC_RESULT_FD", None)

    module = type(sys)("__main__")
    module.__file__ = path
    module.__cached__ = None
    sys.modules["__main__"] = module
    namespace = module.__dict__

    try:
        with open(path, "rb") as f:
            source = f.read()
        tree = compile(source, path, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
        last = None
        if evaluate and tree.body and isinstance(tree.body[-1], _ast.Expr):
            last = _ast.Expression(tree.body.pop().value)
        exec(compile(tree, path, "exec", dont_inherit=True), namespace)
        value = None
        if last is not None:
            value = eval(compile(last, path, "eval", dont_inherit=True), namespace)
        if value is not None:
            _emit(value, result_fd)
    except SystemExit:
        raise
    except BaseException as exc:
        _report(exc, path)
        sys.exit(130 if isinstance(exc, KeyboardInterrupt) else 1)


def _read_exact(fd, n):
    import os

    chunks = []
    while n > 0:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the work ended early")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_line(fd):
    import os

    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte or len(line) > 20:
            raise EOFError("no work header")
        line += byte
    return line


def _silenced(call):
    """Runs call() with descriptors 1 and 2 on /dev/null, so nothing it prints reaches the program's output."""
    import os

    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        call()
    finally:
        for fd, old in zip((1, 2), saved):
            os.dup2(old, fd)
            os.close(old)
        os.close(null)


def _preimport(names):
    import importlib

    if names == "*":
        try:
            from importlib.metadata import packages_distributions

            names = ",".join(sorted(packages_distributions()))
        except Exception:
            names = ""
    for name in filter(None, names.split(",")):
        if name.startswith("_") or not name.replace(".", "_").isidentifier():
            continue
        try:
            importlib.import_module(name)
        except BaseException:
            pass


def _write_files(entries, data):
    import os

    offset = 0
    for entry in entries:
        path = entry["p"]
        parts = path.split("/")
        if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError("bad path in the work: %r" % path)
        target = "/work/" + path
        kind = entry["t"]
        if kind == "d":
            os.mkdir(target, 0o755)
        elif kind == "l":
            os.symlink(entry["to"], target)
        else:
            size = entry["n"]
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)[offset : offset + size]
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, entry["m"] & 0o777)
            finally:
                os.close(fd)
            offset += size


def _reseed():
    """Every generator the preimports created gets fresh entropy: nothing random is shared or predictable."""
    rnd = sys.modules.get("random")
    if rnd is not None:
        rnd.seed()
    np_random = sys.modules.get("numpy.random")
    if np_random is not None:
        try:
            np_random.seed()
        except Exception:
            pass


def warm():
    # What taking the work and running it needs is paid for before the claim (`_ast` alone builds a hundred
    # classes: over a millisecond).
    import _ast  # noqa: F401
    import errno
    import json
    import os

    control = int(os.environ.pop("PYEXEC_CONTROL_FD"))
    preimport = os.environ.pop("PYEXEC_PREIMPORT", "")

    if preimport:
        _silenced(lambda: _preimport(preimport))
    # Everything imported so far lives as long as the interpreter: moved out of the collector's sight, the
    # collections at exit skip it (about half the cost of shutting down). Objects the program creates are
    # collected as usual.
    import gc

    gc.collect()
    gc.freeze()
    os.write(control, b"ready\n")

    header = json.loads(_read_exact(0, int(_read_line(0))))
    data = _read_exact(0, sum(e.get("n", 0) for e in header["files"] if e["t"] == "f"))
    try:
        _write_files(header["files"], data)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        os.write(control, b"nospace\n" if full else ("error %s\n" % exc.strerror).encode())
        os._exit(1)
    del data
    os.close(control)

    os.environ.clear()
    os.environ.update(dict(header["env"]))
    if "PYEXEC_RESULT_FD" not in os.environ:
        try:
            os.close(3)
        except OSError:
            pass
    os.chdir("/work")
    _reseed()
    sys.argv = [sys.argv[0]] + header["argv"]
    run_and_finish(evaluate=header["eval"])


if __name__ == "__main__":
    if sys.argv[1:] == ["--warm"]:
        warm()
    else:
        run_and_finish()
