"""python-executor eval runner: python eval_runner.py FILE [ARGS...] | python eval_runner.py --warm

Runs FILE as the __main__ module in a namespace of its own, exactly as `python FILE ARGS...` would, and reports
what it showed: the repr of a final expression whose value is not None, and rich display items (matplotlib
figures, `display(obj)`, a final value with `_repr_png_` / `_repr_svg_` / `_repr_html_`). The report is one JSON
object, `{"result": repr-or-null, "outputs": [{"type": mime, "data": str}, ...]}`, written to the file descriptor
named by PYEXEC_RESULT_FD when set, else as one `___PYEXEC_RESULT___<json>` line on standard output; nothing is
written when there is neither a value nor an output. Tracebacks show the user's frames only, so line numbers refer
to FILE, never to this runner.

When PYEXEC_FILES_FD is set, the regular files the program created or changed under /work (PYEXEC_FILES_ROOT) are
written as a tar to that descriptor when the program ends by itself or by an exception, at most
PYEXEC_FILES_MAX_BYTES of content and PYEXEC_FILES_MAX_COUNT files; a final empty `.pyexec-truncated` member says
that some were left out. These variables are removed before the program starts.

With --warm the interpreter starts ahead of demand in a sandbox of a warm pool: it imports the modules named in
PYEXEC_PREIMPORT (output silenced), says "ready" on the descriptor named by PYEXEC_CONTROL_FD, then reads its work
from standard input: one line with the byte length of a JSON header, the header (environment, arguments, whether
to evaluate, the files of /work), then the files' bytes; whatever follows is the program's own standard input. It
writes the files, takes the environment and arguments, reseeds every random generator already imported, and runs
FILE as above (or plainly, without evaluating, when asked). A failure to write the files is reported on the
control descriptor ("nospace" or "error") before exiting.

A session runner imports this file (`import eval_runner`) and uses install_display, take_outputs, run_cell,
_report, snapshot_work, changed_files and write_tar: keep their names and signatures.
"""

import sys

MARKER = "___PYEXEC_RESULT___"
MAX_RESULT_CHARS = 1_000_000

# Bounds on the display items of one run (docs/sessions.md, "Rich outputs").
MAX_OUTPUTS = 16
MAX_OUTPUT_BYTES = 4 << 20
MAX_OUTPUTS_BYTES = 8 << 20
OUTPUTS_TRUNCATED = "[... more outputs truncated]"
# The pod runner keeps at most this much of what is written on the result descriptor (its RESULT_LIMIT_BYTES); a
# report cut there would not parse, so outputs are dropped until the report fits.
MAX_REPORT_BYTES = 10 << 20

# The harvest of changed files (docs/sessions.md, "Files out").
FILES_ROOT = "/work"
FILES_DEFAULT_MAX_BYTES = 64 << 20
FILES_DEFAULT_MAX_COUNT = 1000
FILES_TRUNCATED_MEMBER = ".pyexec-truncated"
# Files modified this recently when a snapshot is taken get their mtime moved back by this much: file timestamps
# come from a coarse clock (a jiffy on most file systems, a second on some), so a write in the same tick would leave
# size and mtime as they were and the change would go unseen.
SETTLE_NS = 2_000_000_000


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


# --- Rich outputs -----------------------------------------------------------------------------------------------

# Display items shown so far and not yet taken: {"items": [...], "bytes": total data size, "dropped": bool}.
_shown = {"items": [], "bytes": 0, "dropped": False}
_display_installed = []


def _clean(text):
    """text as valid UTF-8 (a lone surrogate, which a __repr__ may return, becomes "?"), and its size in bytes."""
    if text.isascii():
        return text, len(text)
    try:
        return text, len(text.encode("utf-8"))
    except UnicodeEncodeError:
        data = text.encode("utf-8", "replace")
        return data.decode("utf-8"), len(data)


def _room():
    return len(_shown["items"]) < MAX_OUTPUTS


def _add(kind, data):
    """Keeps one display item unless it is over the bounds (then it is dropped, and the outputs say so)."""
    data, size = _clean(data)
    if not _room() or size > MAX_OUTPUT_BYTES or _shown["bytes"] + size > MAX_OUTPUTS_BYTES:
        _shown["dropped"] = True
        return
    _shown["items"].append({"type": kind, "data": data})
    _shown["bytes"] += size


_REPRS = (("_repr_png_", "image/png"), ("_repr_svg_", "image/svg+xml"), ("_repr_html_", "text/html"))


def _rich(obj):
    """(mime, data) of the first rich repr obj has (PNG, SVG, HTML), or None. A repr that fails or returns
    something unusable counts as absent, as in IPython."""
    for method, kind in _REPRS:
        try:
            data = getattr(obj, method, None)
            if data is None or not callable(data):
                continue
            data = data()
        except Exception:
            continue
        if isinstance(data, tuple) and data:
            # IPython's protocol allows (data, metadata).
            data = data[0]
        if isinstance(data, (bytes, bytearray, memoryview)):
            if kind == "image/png":
                import base64

                data = base64.b64encode(data).decode("ascii")
            else:
                try:
                    data = bytes(data).decode("utf-8")
                except UnicodeDecodeError:
                    continue
        if isinstance(data, str):
            return kind, data
    return None


def _figure_png(obj):
    """A matplotlib Figure as base64 PNG (what `display(fig)` shows in a notebook), or None for anything else."""
    figure_module = sys.modules.get("matplotlib.figure")
    figure_type = getattr(figure_module, "Figure", None)
    if not isinstance(figure_type, type) or not isinstance(obj, figure_type):
        return None
    return _png_of(obj)


def _png_of(figure):
    import base64
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def display(*objs, **kwargs):
    """Shows each object in the run's outputs: its richest repr (PNG, SVG, HTML), a matplotlib figure as PNG, or
    else its repr as text/plain. Keyword arguments (IPython's include=, clear=, ...) are accepted and ignored."""
    for obj in objs:
        rich = _rich(obj)
        if rich is None:
            try:
                png = _figure_png(obj)
            except Exception as exc:
                _warn("could not render the figure: %s: %s" % (type(exc).__name__, exc))
                png = None
            rich = ("image/png", png) if png is not None else ("text/plain", repr(obj))
        _add(*rich)


def _warn(message):
    try:
        sys.stderr.write("pyexec: %s\n" % message)
    except Exception:
        pass


def _capture_figures(plt):
    """Every open figure as PNG into the outputs (as long as there is room), then closed."""
    try:
        numbers = list(plt.get_fignums())
    except Exception:
        return
    for number in numbers:
        try:
            if _room():
                _add("image/png", _png_of(plt.figure(number)))
            else:
                _shown["dropped"] = True
        except Exception as exc:
            _warn("could not render figure %s: %s: %s" % (number, type(exc).__name__, exc))
        finally:
            try:
                plt.close(number)
            except Exception:
                pass


def _patch_pyplot(plt):
    """Makes plt.show() capture the open figures instead of showing them: under the Agg backend the original only
    warns that it cannot show anything."""
    original = getattr(plt, "show", None)
    if not callable(original) or getattr(original, "_pyexec_original", None) is not None:
        return

    def show(*args, **kwargs):
        _capture_figures(plt)

    show.__doc__ = getattr(original, "__doc__", None)
    show.__name__ = "show"
    show.__qualname__ = "show"
    show.__module__ = getattr(original, "__module__", plt.__name__)
    show._pyexec_original = original
    try:
        plt.show = show
    except Exception:
        pass


class _PyplotHook:
    """A meta path finder that only acts on `matplotlib.pyplot`: it lets the other finders find it, and patches
    the module (see _patch_pyplot) once it has been executed. For every other import it costs one comparison."""

    def __init__(self):
        self._busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "matplotlib.pyplot" or self._busy:
            return None
        self._busy = True
        try:
            spec = None
            for finder in list(sys.meta_path):
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy = False
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def patched_exec_module(module):
            exec_module(module)
            _patch_pyplot(module)

        try:
            # On the instance (each module gets a loader of its own), so the loader keeps its type.
            loader.exec_module = patched_exec_module
        except Exception:
            pass
        return spec


def install_display():
    """Makes `display(*objs)` a built-in, selects matplotlib's Agg backend unless the run chose one, and makes
    plt.show() capture figures, whether pyplot is imported later (a meta path hook) or already was. Idempotent."""
    if _display_installed:
        return
    _display_installed.append(True)
    import builtins
    import os

    builtins.display = display
    os.environ.setdefault("MPLBACKEND", "Agg")
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        _patch_pyplot(plt)
    # Also when pyplot is already loaded: a reload, or its removal from sys.modules, imports it afresh.
    if not any(isinstance(finder, _PyplotHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PyplotHook())


def take_outputs(value=None):
    """The display items of the run so far, and clears them: what display() showed, then every matplotlib figure
    still open (closed afterwards), then the richest repr of value. Bounded (MAX_OUTPUTS items, MAX_OUTPUT_BYTES
    each, MAX_OUTPUTS_BYTES in all); when something was dropped the last item says so."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        _capture_figures(plt)
    if value is not None:
        rich = _rich(value)
        if rich is not None:
            _add(*rich)
    items, dropped = _shown["items"], _shown["dropped"]
    _shown.update(items=[], bytes=0, dropped=False)
    if dropped:
        items.append({"type": "text/plain", "data": OUTPUTS_TRUNCATED})
    return items


def _result_text(value):
    text = repr(value)
    if len(text) > MAX_RESULT_CHARS:
        text = text[:MAX_RESULT_CHARS] + "...[truncated]"
    return _clean(text)[0]


def _report_bytes(text, outputs, ascii_only):
    """The JSON report; outputs are dropped from the end (and the last item says so) until it fits the limit."""
    import json

    marker = {"type": "text/plain", "data": OUTPUTS_TRUNCATED}
    while True:
        data = json.dumps({"result": text, "outputs": outputs}, ensure_ascii=ascii_only).encode("utf-8")
        real = [item for item in outputs if item != marker]
        if len(data) <= MAX_REPORT_BYTES or not real:
            return data
        outputs = real[:-1] + [marker]


def _emit(text, outputs, result_fd):
    """Writes the report: on result_fd when given (UTF-8), else as a marker line on standard output (ASCII, as
    stdout's encoding is unknown). Nothing when there is neither a result nor an output."""
    import os

    if text is None and not outputs:
        return
    if result_fd is not None:
        payload = _report_bytes(text, outputs, False)
        try:
            with os.fdopen(int(result_fd), "wb") as out:
                out.write(payload)
        except (OSError, ValueError):
            pass
        return
    payload = _report_bytes(text, outputs, True).decode("ascii")
    try:
        sys.stdout.flush()
    except Exception:
        pass
    out = sys.__stdout__
    if out is not None and not out.closed:
        out.write(MARKER + payload + "\n")
        out.flush()


# --- Files out --------------------------------------------------------------------------------------------------

# (fd, root, snapshot, max_bytes, max_count) while the host waits for the files this run changes, else None.
_files_out = [None]


def snapshot_work(root=FILES_ROOT, settle=True):
    """{relative path: (size, mtime_ns, inode)} of the regular files under root (no link followed; unreadable
    directories skipped). With settle, files modified within SETTLE_NS get their mtime moved back by SETTLE_NS
    first, so that a later write always changes it (see SETTLE_NS)."""
    import os
    import time

    now = time.time_ns() if settle else None
    found = {}
    pending = [("", root)]
    while pending:
        prefix, directory = pending.pop()
        try:
            entries = os.scandir(directory)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((prefix + entry.name + "/", entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        if now is not None and st.st_mtime_ns > now - SETTLE_NS:
                            st = _settle(entry.path, st)
                        found[prefix + entry.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
                except OSError:
                    continue
    return found


def _settle(path, st):
    import os

    try:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - SETTLE_NS), follow_symlinks=False)
        return os.stat(path, follow_symlinks=False)
    except (OSError, NotImplementedError):
        return st


def changed_files(before, root=FILES_ROOT):
    """The regular files under root that are not in the snapshot before, or differ from it, sorted."""
    after = snapshot_work(root, settle=False)
    return sorted(path for path, signature in after.items() if before.get(path) != signature)


class _Exactly:
    """Reads exactly size bytes of fd, cut or zero-padded: a file that a leftover process still changes must not
    break the archive, whose header already declared the size."""

    def __init__(self, fd, size):
        self.fd = fd
        self.left = size

    def read(self, n=-1):
        import os

        if n is None or n < 0 or n > self.left:
            n = self.left
        chunks, got = [], 0
        while got < n:
            try:
                chunk = os.read(self.fd, n - got)
            except OSError:
                chunk = b""
            if not chunk:
                chunks.append(bytes(n - got))
                break
            chunks.append(chunk)
            got += len(chunk)
        self.left -= n
        return b"".join(chunks)


def write_tar(fileobj, root, paths, max_bytes, max_count):
    """Writes a tar (streamed, so fileobj may be a pipe) of the regular files paths (relative to root): opened
    without following links, at most max_count files and max_bytes of content; a file that does not fit, is not
    regular any more, or is not named in UTF-8 is left out. When anything was left out, a final empty member
    FILES_TRUNCATED_MEMBER says so. Nothing at all is written when there is nothing to write. Returns (the paths
    written, whether something was left out)."""
    import os
    import stat

    written, dropped, used = [], False, 0
    archive = None
    tarfile = None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        for path in paths:
            if len(written) >= max_count:
                dropped = True
                break
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                dropped = True
                continue
            if path == FILES_TRUNCATED_MEMBER:
                # The marker's name is reserved: a file of that name would read as the marker.
                dropped = True
                continue
            try:
                fd = os.open(os.path.join(root, path), flags)
            except OSError:
                # Gone, or a link now: not a regular file to keep.
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if used + st.st_size > max_bytes:
                    dropped = True
                    continue
                if archive is None:
                    import tarfile

                    archive = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
                info = tarfile.TarInfo(path)
                info.size = st.st_size
                info.mtime = int(st.st_mtime)
                info.mode = stat.S_IMODE(st.st_mode) & 0o777
                archive.addfile(info, _Exactly(fd, st.st_size))
                used += st.st_size
                written.append(path)
            finally:
                os.close(fd)
        if dropped:
            if archive is None:
                import tarfile

                archive = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
            archive.addfile(tarfile.TarInfo(FILES_TRUNCATED_MEMBER))
    finally:
        if archive is not None:
            archive.close()
    return written, dropped


def _int_env(value, default):
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number >= 0 else default


def _files_begin():
    """Takes the host's request for the files this run changes out of the environment (the program never sees
    it) and, when there is one, the snapshot to compare with at the end."""
    import os

    environ = os.environ
    fd = environ.pop("PYEXEC_FILES_FD", None)
    max_bytes = environ.pop("PYEXEC_FILES_MAX_BYTES", None)
    max_count = environ.pop("PYEXEC_FILES_MAX_COUNT", None)
    root = environ.pop("PYEXEC_FILES_ROOT", None) or FILES_ROOT
    if fd is None:
        return
    try:
        fd = int(fd)
        # Not into programs the run starts: a leftover child holding it open would keep the host waiting.
        os.set_inheritable(fd, False)
    except (OSError, ValueError):
        return
    try:
        before = snapshot_work(root)
    except Exception:
        try:
            os.close(fd)
        except OSError:
            pass
        return
    max_bytes = _int_env(max_bytes, FILES_DEFAULT_MAX_BYTES)
    max_count = _int_env(max_count, FILES_DEFAULT_MAX_COUNT)
    _files_out[0] = (fd, root, before, max_bytes, max_count)


def _files_end():
    """Writes the tar of the changed files to the host's descriptor and closes it. Never fails."""
    state, _files_out[0] = _files_out[0], None
    if state is None:
        return
    import os

    fd, root, before, max_bytes, max_count = state
    out = None
    try:
        paths = changed_files(before, root)
        out = os.fdopen(fd, "wb")
        if paths:
            write_tar(out, root, paths, max_bytes, max_count)
    except BaseException:
        pass
    try:
        if out is not None:
            out.close()
        else:
            os.close(fd)
    except BaseException:
        pass


# --- Running ----------------------------------------------------------------------------------------------------


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
    their objects are finalized and files they left open are flushed and closed, cycles are collected, the files
    the run changed are sent to the host when it asked for them (now that they are complete), and standard output
    and error are flushed (a failed flush of stdout exits 120, as Python does). What is skipped is tearing down
    the interpreter's and the libraries' modules: milliseconds on every run, and nothing a program may rely on
    (Python never guarantees ``__del__`` for objects still alive at exit).
    """
    import atexit
    import gc
    import os

    # Held in locals: emptying the modules below may empty this one's namespace too (when it lies in home).
    collect, exit_now, files_end = gc.collect, os._exit, _files_end
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
    files_end()
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


def run_cell(source, filename, namespace, evaluate=True):
    """Compiles source (str or bytes) as filename and executes it in namespace. With evaluate, a final expression
    statement is evaluated and its value returned; otherwise (or without one) None. The user's exceptions
    propagate unchanged."""
    # The C-level `_ast` (built in) rather than the `ast` module, which would import enum, contextlib and more
    # into every run: milliseconds of start-up and of shutdown.
    import _ast

    tree = compile(source, filename, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
    last = None
    if evaluate and tree.body and isinstance(tree.body[-1], _ast.Expr):
        last = _ast.Expression(tree.body.pop().value)
    exec(compile(tree, filename, "exec", dont_inherit=True), namespace)
    if last is None:
        return None
    return eval(compile(last, filename, "eval", dont_inherit=True), namespace)


def _emit_quietly(result_fd):
    """The outputs shown before the program failed or exited, reported as today's failures are: no result."""
    try:
        _emit(None, take_outputs(), result_fd)
    except BaseException:
        pass


def main(evaluate=True):
    import os

    if len(sys.argv) < 2:
        sys.stderr.write("usage: eval_runner.py FILE [ARGS...]\n")
        sys.exit(2)
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    result_fd = os.environ.pop("PYEXEC_RESULT_FD", None)
    _files_begin()
    install_display()
    # Without evaluation and without a result descriptor nobody reads a report: a marker line would only end up
    # in the program's output.
    report = evaluate or result_fd is not None

    module = type(sys)("__main__")
    module.__file__ = path
    module.__cached__ = None
    sys.modules["__main__"] = module
    namespace = module.__dict__

    try:
        with open(path, "rb") as f:
            source = f.read()
        value = run_cell(source, path, namespace, evaluate)
        if report:
            _emit(None if value is None else _result_text(value), take_outputs(value), result_fd)
    except SystemExit:
        if report:
            _emit_quietly(result_fd)
        raise
    except BaseException as exc:
        if report:
            _emit_quietly(result_fd)
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
    elif sys.argv[1:2] == ["--no-eval"]:
        # The program runs as `python FILE` would, hosted only so that the files it writes are reported.
        del sys.argv[1]
        run_and_finish(evaluate=False)
    else:
        run_and_finish()
