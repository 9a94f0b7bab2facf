"""The Python client against a live server (PYEXEC_SERVER, with PYEXEC_API_KEY when the server wants one)."""

import asyncio
import io
import os
import subprocess
import sys
import tarfile
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
    PythonExecutorClient,
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
