"""A program written for the ORIGINAL python-executor Python client, using only its documented API.

It must run unchanged against this server with this client: python original_program.py SERVER_URL
"""

import sys
import time

from python_executor_client import ExecutionConfig, ExecutionStatus, Metadata, PythonExecutorClient

server = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:8080"
client = PythonExecutorClient(server, timeout=120)

# Simple code execution
result = client.execute_sync(files={"main.py": "print('Hello, World!')"})
assert result.status == ExecutionStatus.COMPLETED, result
assert result.stdout == "Hello, World!\n"
assert result.exit_code == 0

# Execution with configuration
metadata = Metadata(
    entrypoint="main.py",
    script_args=["--input", "data.txt"],
    env_vars=["DEBUG=true"],
    config=ExecutionConfig(timeout_seconds=60, network_disabled=True, memory_mb=512),
)
result = client.execute_sync(
    files={"main.py": "import os, sys\nprint(sys.argv[1:], os.environ.get('DEBUG'))"},
    metadata=metadata,
)
assert result.stdout == "['--input', 'data.txt'] true\n", result

# Multi-file project
result = client.execute_sync(
    files={
        "main.py": "from utils import calculate\nprint(f'Result: {calculate(5, 10)}')",
        "utils.py": "def calculate(a, b):\n    return a + b",
    }
)
assert result.stdout == "Result: 15\n", result

# Async execution with polling
execution_id = client.execute_async(files={"main.py": "import time\ntime.sleep(0.5)\nprint('Async complete!')"})
assert execution_id.startswith("exe_")
final = client.wait_for_completion(execution_id, poll_interval=0.5)
assert final.status == ExecutionStatus.COMPLETED and "Async complete!" in final.stdout

# Manual polling with get_execution
execution_id = client.execute_async(files={"main.py": "print('polled')"})
while True:
    status = client.get_execution(execution_id)
    if status.status in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.KILLED):
        break
    time.sleep(0.2)
assert status.stdout == "polled\n"

# Kill a long-running execution
execution_id = client.execute_async(files={"main.py": "import time\ntime.sleep(60)"})
time.sleep(0.5)
client.kill(execution_id)

# Eval (REPL mode by default)
assert client.eval("2 + 2").result == "4"
assert client.eval("import math\nmath.sqrt(16)").result == "4.0"
r = client.eval("print('Hello from eval!')")
assert r.stdout == "Hello from eval!\n" and r.result is None
r = client.eval("import time\ntime.sleep(5)", timeout_seconds=1)
assert r.status == ExecutionStatus.FAILED

# Timestamps parse as datetimes
assert result.started_at is not None and result.finished_at >= result.started_at

print("all original examples passed")
