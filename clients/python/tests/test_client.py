"""The Python client against a live server (PYEXEC_SERVER, with PYEXEC_API_KEY when the server wants one)."""

import asyncio
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from python_executor_client import (
    AsyncPythonExecutorClient,
    ExecutionConfig,
    ExecutionResult,
    ExecutionStatus,
    Metadata,
    NotFoundError,
    PythonExecutorClient,
    SessionBusyError,
)

SERVER = os.environ.get("PYEXEC_SERVER", "http://localhost:8080")


@pytest.fixture
def client():
    with PythonExecutorClient(SERVER, timeout=60) as c:
        yield c


def test_eval_returns_the_trailing_expression(client):
    r = client.eval("x = 5\ny = 10\nx + y")
    assert isinstance(r, ExecutionResult)
    assert r.status == ExecutionStatus.COMPLETED
    assert r.result == "15"
    assert r.exit_code == 0
    assert isinstance(r.started_at, datetime) and isinstance(r.finished_at, datetime)
    r = client.eval("print('hi')", eval_last_expr=False)
    assert (r.stdout, r.result) == ("hi\n", None)


def test_structured_errors(client):
    r = client.eval("def f():\n    return 1 / 0\n\nf()")
    assert (r.exit_code, r.error_type, r.error_line) == (1, "ZeroDivisionError", 4)
    assert r.error_message == "division by zero"


def test_execute_sync_from_a_dict_a_file_a_directory_and_a_tar(client, tmp_path):
    r = client.execute_sync(files={"main.py": "print('Hello, World!')"})
    assert r.stdout == "Hello, World!\n"
    script = tmp_path / "single.py"
    script.write_text("print('from a path')")
    assert client.execute_sync(files=script).stdout == "from a path\n"
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "main.py").write_text("from pkg.calc import add\nprint(add(7, 8))")
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "calc.py").write_text("def add(a, b):\n    return a + b")
    assert client.execute_sync(files=project).stdout == "15\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(project), arcname=".")
    assert client.execute_sync(tar_data=buffer.getvalue(), entrypoint="main.py").stdout == "15\n"


def test_metadata_and_config(client):
    meta = Metadata(
        entrypoint="main.py",
        script_args=["--verbose", "a b"],
        env_vars=["GREETING=hi"],
        stdin="Hello from stdin!",
        config=ExecutionConfig(timeout_seconds=30, memory_mb=256),
    )
    code = "import os, sys\nprint(sys.argv[1:], os.environ['GREETING'], len(sys.stdin.read()))"
    r = client.execute_sync(files={"main.py": code}, metadata=meta)
    assert r.stdout == "['--verbose', 'a b'] hi 17\n"
    assert Metadata(entrypoint="x.py").to_dict() == {"entrypoint": "x.py"}
    r = client.execute_sync(files={"main.py": "import sys; sys.exit(42)"}, timeout_seconds=30)
    assert (r.status, r.exit_code) == (ExecutionStatus.COMPLETED, 42)
    with pytest.raises(TypeError):
        client.execute_sync(files={"main.py": "1"}, no_such_option=1)


def test_dependencies_and_pre_commands(client):
    r = client.eval("import six\nsix.PY3")
    assert (r.status, r.result) == (ExecutionStatus.COMPLETED, "True")
    assert [p.split("==")[0] for p in r.installed_packages] == ["six"]
    r = client.execute_sync(files={"main.py": "import six; print(six.__version__)"}, requirements_txt="six==1.16.0",
                            pre_commands=["echo preparing"])
    assert (r.stdout, r.pre_commands_output, r.installed_packages) == ("1.16.0\n", "preparing\n", ["six==1.16.0"])
    r = client.execute_sync(files={"main.py": "print('never')"}, pre_commands=["exit 3"])
    assert (r.status, r.exit_code, r.error) == (ExecutionStatus.FAILED, 3, "pre_commands[0] failed with exit code 3: exit 3")


def test_timeouts_are_failed_with_124(client):
    r = client.eval("import time\nprint('before', flush=True)\ntime.sleep(10)", timeout_seconds=1)
    assert (r.status, r.exit_code, r.error) == (ExecutionStatus.FAILED, 124, "execution timeout after 1s")
    assert r.stdout == "before\n"


def test_async_wait_kill_and_list(client):
    execution_id = client.execute_async(files={"main.py": "print('Async complete!')"})
    assert execution_id.startswith("exe_")
    r = client.wait_for_completion(execution_id, poll_interval=0.1)
    assert (r.status, r.stdout) == (ExecutionStatus.COMPLETED, "Async complete!\n")
    slow = client.execute_async(files={"main.py": "import time\ntime.sleep(60)"})
    with pytest.raises(TimeoutError):
        client.wait_for_completion(slow, poll_interval=0.1, max_wait=0.5)
    assert client.kill_execution(slow) == ExecutionStatus.KILLED
    client.kill(slow)  # the original signature: returns None, killing a finished execution is fine
    assert client.get_execution(slow).status == ExecutionStatus.KILLED
    page = client.list_executions(limit=2)
    assert [e.execution_id for e in page["executions"]] == [slow, execution_id]
    with pytest.raises(requests.HTTPError) as missing:
        client.get_execution("exe_00000000-0000-4000-8000-000000000000")
    assert missing.value.response.status_code == 404


def test_live_events_and_follow(client):
    code = "import time\nfor i in range(3):\n    print('tick', i)\n    time.sleep(0.2)"
    execution_id = client.execute_async(files={"main.py": code})
    seen = []
    result = client.follow(execution_id, on_output=lambda stream, data: seen.append((stream, data)))
    assert "".join(d for s, d in seen if s == "stdout") == "tick 0\ntick 1\ntick 2\n"
    assert result.stdout == "tick 0\ntick 1\ntick 2\n"
    kinds = [e.kind for e in client.stream_events(execution_id)]
    assert kinds == ["result"], "a finished execution sends only its result"


def test_the_asyncio_client():
    async def main():
        async with AsyncPythonExecutorClient(SERVER) as c:
            results = await asyncio.gather(*(c.eval(f"{i} * 2") for i in range(5)))
            assert [r.result for r in results] == ["0", "2", "4", "6", "8"]
            execution_id = await c.execute_async(files={"main.py": "print('streamed')"})
            events = [e async for e in c.stream_events(execution_id)]
            assert events[-1].kind == "result" and events[-1].result.stdout == "streamed\n"

    asyncio.run(main())


def test_api_keys():
    if not os.environ.get("PYEXEC_API_KEY"):
        pytest.skip("the server under test does not require a key")
    with pytest.raises(requests.HTTPError) as denied:
        PythonExecutorClient(SERVER, api_key="").eval("1")
    assert denied.value.response.status_code == 401
    with pytest.raises(requests.HTTPError):
        PythonExecutorClient(SERVER, api_key="wrong").eval("1")
    assert PythonExecutorClient(SERVER).health()["status"] == "ok"


def test_a_program_written_for_the_original_client_runs_unchanged():
    program = Path(__file__).with_name("original_program.py")
    out = subprocess.run([sys.executable, str(program), SERVER], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("all original examples passed")


def test_the_examples_module_runs():
    out = subprocess.run([sys.executable, "-m", "python_executor_client.examples", SERVER], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "1. eval with a result: 5050" in out.stdout
    assert "7. timeout: failed 124" in out.stdout


# -- sessions, files out, rich outputs (docs/sessions.md) -------------------------------------------------------

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def test_sessions_keep_state_and_files(client, tmp_path):
    with client.open_session(env_vars={"MODE": "test"}, idle_timeout_seconds=120) as s:
        assert s.id.startswith("ses_") and s.info.state == "idle" and s.info.idle_timeout_seconds == 120
        first = s.eval("import os\nx = 21\nos.environ['MODE']")
        assert (first.status, first.result, first.session_id) == (ExecutionStatus.COMPLETED, "'test'", s.id)
        assert s.eval("x * 2").result == "42"
        stored = s.upload("data/in.csv", "a,b\n1,2\n")
        assert (stored.path, stored.size) == ("data/in.csv", 8)
        assert stored.sha256 == hashlib.sha256(b"a,b\n1,2\n").hexdigest()
        local = tmp_path / "blob.bin"
        local.write_bytes(os.urandom(3 << 20))
        assert s.upload("data/blob one.bin", local).size == 3 << 20  # a local file, streamed
        r = s.eval("import csv\nrows = list(csv.reader(open('/work/data/in.csv')))\n"
                   "open('/work/out.txt', 'w').write(str(len(rows)))\nlen(rows)")
        assert r.result == "2", r
        assert "out.txt" in [f.path for f in r.files]
        assert s.download("out.txt") == b"2"
        assert s.download("data/blob one.bin", tmp_path / "back.bin") == 3 << 20
        assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
        assert {"data/in.csv", "data/blob one.bin", "out.txt"} <= set(s.files().paths)
        assert s.id in [info.session_id for info in client.list_sessions()]
        assert client.get_session(s.id).calls >= 3
        assert client.get_execution(r.execution_id).session_id == s.id
        with pytest.raises(NotFoundError):
            s.download("no/such/file")
        with pytest.raises(ValueError):
            s.download("../etc/passwd")
    assert s.info.state == "ended"
    with pytest.raises(NotFoundError):
        client.get_session(s.id)


def test_session_calls_are_one_at_a_time_and_survive_timeouts(client):
    with client.open_session() as s:
        s.eval("kept = 'yes'")
        slow = threading.Thread(target=s.eval, args=("import time\ntime.sleep(3)",))
        slow.start()
        time.sleep(1)
        with pytest.raises(SessionBusyError) as busy:
            s.eval("1")
        assert busy.value.status_code == 409
        slow.join()
        r = s.eval("import time\ntime.sleep(30)", timeout_seconds=1)
        # sessions.md: the call ends at its timeout (status "timeout"), interrupted; the session keeps its state.
        assert r.status.is_terminal and r.status != ExecutionStatus.COMPLETED, r
        assert (r.error_type, r.session_restarted) == ("KeyboardInterrupt", False), r
        assert s.eval("kept").result == "'yes'"
        r = s.eval("import os\nos._exit(3)")
        assert r.session_restarted, r
        assert s.eval("'kept' in globals()").result == "False"


def test_execution_files_and_downloads(client, tmp_path):
    code = ("import os\nos.makedirs('/work/out', exist_ok=True)\n"
            "open('/work/out/a b.txt', 'w').write('hello')\nopen('/work/n.bin', 'wb').write(bytes(range(256)))")
    r = client.eval(code)
    assert r.status == ExecutionStatus.COMPLETED, r
    paths = {f.path: f for f in r.files}
    assert {"out/a b.txt", "n.bin"} <= set(paths) and not r.files_truncated
    assert paths["n.bin"].sha256 == hashlib.sha256(bytes(range(256))).hexdigest()
    listed = client.execution_files(r.execution_id)
    assert {f.path for f in listed} == set(paths) and not listed.truncated
    assert client.download_file(r.execution_id, "out/a b.txt") == b"hello"
    assert client.download_file(r.execution_id, "n.bin", tmp_path / "n.bin") == 256
    assert client.download_files_tar(r.execution_id, tmp_path / "all.tar") > 0
    with tarfile.open(tmp_path / "all.tar") as tar:
        names = {name[2:] if name.startswith("./") else name for name in tar.getnames()}
    assert {"out/a b.txt", "n.bin"} <= names
    with pytest.raises(NotFoundError):
        client.download_file(r.execution_id, "missing.txt")


def test_rich_outputs(client):
    code = (f"class Png:\n    def _repr_png_(self):\n        return {PNG!r}\n"
            "class Html:\n    def _repr_html_(self):\n        return '<b>hi</b>'\n"
            "display(Html())\ndisplay(42)\nPng()")
    r = client.eval(code)
    assert [o.type for o in r.outputs] == ["text/html", "text/plain", "image/png"], r
    assert (r.outputs[0].data, r.outputs[1].data) == ("<b>hi</b>", "42")
    assert r.images() == [PNG]
    r = client.eval("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()")
    assert len(r.images()) == 1 and r.images()[0].startswith(b"\x89PNG"), r


def test_asyncio_sessions():
    async def main():
        async with AsyncPythonExecutorClient(SERVER) as c:
            async with c.open_session() as s:
                await s.eval("a = 20")
                assert (await s.eval("a + 22")).result == "42"
                await s.upload("x.txt", b"x")
                assert await s.download("x.txt") == b"x"
            assert s.info.state == "ended"
            other = await c.open_session()
            assert (await c.get_session(other.id)).state == "idle"
            await other.close()

    asyncio.run(main())


# -- timeouts: runs that use their whole time, silent runs (the client's timeout is shorter than both) ----------

SILENT = "print('start', flush=True)\nimport time\ntime.sleep(5)\nprint('end é')"


def test_synchronous_runs_may_use_their_whole_timeout(client):
    # A call that waits for a run gets the run's timeout plus a margin, whatever the client's (shorter) timeout.
    with PythonExecutorClient(SERVER, timeout=2) as short:
        r = short.eval("import time\ntime.sleep(3)\n'slept'", timeout_seconds=4)
        assert (r.status, r.result) == (ExecutionStatus.COMPLETED, "'slept'"), r
        r = short.execute_sync(files={"main.py": "import time\nprint('started', flush=True)\ntime.sleep(30)"},
                               timeout_seconds=3)
        assert (r.status, r.exit_code, r.stdout) == (ExecutionStatus.FAILED, 124, "started\n"), r
        with client.open_session() as s:
            r = short.session_eval(s.id, "import time\ntime.sleep(3)\n'slept'", timeout_seconds=4)
            assert (r.status, r.result) == (ExecutionStatus.COMPLETED, "'slept'"), r
        # A timeout given for the call wins.
        with pytest.raises(requests.exceptions.Timeout):
            short.eval("import time\ntime.sleep(3)", timeout_seconds=4, http_timeout=1)


def test_follow_waits_through_silence_longer_than_the_read_timeout(client):
    execution_id = client.execute_async(files={"main.py": SILENT})
    seen = []
    with PythonExecutorClient(SERVER, timeout=2) as short:  # reads time out after 2 s; the run is silent for 5
        result = short.follow(execution_id, on_output=lambda stream, data: seen.append((stream, data)))
    assert (result.status, result.stdout) == (ExecutionStatus.COMPLETED, "start\nend é\n"), result
    assert "".join(d for s, d in seen if s == "stdout") == "start\nend é\n", seen


def test_the_asyncio_client_waits_for_long_and_silent_runs():
    async def main():
        async with AsyncPythonExecutorClient(SERVER, timeout=2) as short:
            quiet = await short.execute_async(files={"main.py": SILENT})
            seen = []
            slept, whole, followed = await asyncio.gather(
                short.eval("import time\ntime.sleep(3)\n'slept'", timeout_seconds=4),
                short.execute_sync(files={"main.py": "import time\ntime.sleep(30)"}, timeout_seconds=3),
                short.follow(quiet, on_output=lambda stream, data: seen.append(data)),
            )
            assert (slept.status, slept.result) == (ExecutionStatus.COMPLETED, "'slept'"), slept
            assert (whole.status, whole.exit_code) == (ExecutionStatus.FAILED, 124), whole
            assert followed.stdout == "start\nend é\n" and "".join(seen) == "start\nend é\n", (followed, seen)

    asyncio.run(main())


def test_the_asyncio_client_against_the_server(tmp_path):
    async def main():
        async with AsyncPythonExecutorClient(SERVER, timeout=60) as c:
            assert (await c.health())["status"] == "ok"
            r = await c.execute_sync(files={"main.py": "import sys\nprint(sys.argv[1:])"}, script_args=["-v"])
            assert (r.status, r.stdout) == (ExecutionStatus.COMPLETED, "['-v']\n"), r
            r = await c.eval("open('/work/out.txt', 'w').write('hello')\n6 * 7")
            assert r.result == "42" and "out.txt" in [f.path for f in r.files], r
            assert "out.txt" in (await c.execution_files(r.execution_id)).paths
            assert await c.download_file(r.execution_id, "out.txt") == b"hello"
            assert await c.download_files_tar(r.execution_id, tmp_path / "all.tar") > 0
            with tarfile.open(tmp_path / "all.tar") as tar:
                assert any(name.endswith("out.txt") for name in tar.getnames())
            with pytest.raises(NotFoundError):
                await c.download_file(r.execution_id, "missing.txt")

            slow = await c.execute_async(files={"main.py": "import time\ntime.sleep(60)"})
            with pytest.raises(TimeoutError):
                await c.wait_for_completion(slow, poll_interval=0.1, max_wait=0.3)
            assert await c.kill_execution(slow) == ExecutionStatus.KILLED
            assert (await c.get_execution(slow)).status == ExecutionStatus.KILLED
            page = await c.list_executions(limit=1)
            assert [e.execution_id for e in page["executions"]] == [slow]
            with pytest.raises(requests.HTTPError) as missing:
                await c.get_execution("exe_00000000-0000-4000-8000-000000000000")
            assert missing.value.response.status_code == 404

            async with c.open_session(env_vars={"MODE": "aio"}) as s:
                local = tmp_path / "blob.bin"
                local.write_bytes(os.urandom(1 << 20))
                assert (await s.upload("data/blob.bin", local)).size == 1 << 20  # streamed from the file
                assert (await c.session_upload(s.id, "note.txt", "é")).size == 2
                assert await c.session_download(s.id, "data/blob.bin", tmp_path / "back.bin") == 1 << 20
                assert (tmp_path / "back.bin").read_bytes() == local.read_bytes()
                assert {"data/blob.bin", "note.txt"} <= set((await s.files()).paths)
                r = await c.session_eval(s.id, "import os\nlen(open('/work/data/blob.bin', 'rb').read()), "
                                               "os.environ['MODE']")
                assert r.result == f"({1 << 20}, 'aio')", r
                assert s.id in [info.session_id for info in await c.list_sessions()]
                assert (await s.refresh()).calls >= 1
            assert s.info.state == "ended"
            with pytest.raises(NotFoundError):
                await c.get_session(s.id)

    asyncio.run(main())
