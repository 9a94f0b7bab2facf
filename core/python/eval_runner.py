"""python-executor eval runner: python eval_runner.py FILE [ARGS...]

Runs FILE as the __main__ module in a namespace of its own, exactly as `python FILE ARGS...` would, and, when FILE
ends with an expression whose value is not None, reports repr(value) as the execution's result: on the file
descriptor named by PYEXEC_RESULT_FD when set, else as one `___PYEXEC_RESULT___<json>` line on standard output.
Tracebacks show the user's frames only, so line numbers refer to FILE, never to this runner.
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


def main():
    import ast
    import os
    import types

    if len(sys.argv) < 2:
        sys.stderr.write("usage: eval_runner.py FILE [ARGS...]\n")
        sys.exit(2)
    path = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    result_fd = os.environ.pop("PYEXEC_RESULT_FD", None)

    module = types.ModuleType("__main__")
    module.__file__ = path
    module.__cached__ = None
    sys.modules["__main__"] = module
    namespace = module.__dict__

    try:
        with open(path, "rb") as f:
            source = f.read()
        tree = ast.parse(source, filename=path)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
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


if __name__ == "__main__":
    main()
