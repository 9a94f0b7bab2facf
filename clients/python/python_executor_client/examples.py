"""Demonstrations: python -m python_executor_client.examples [SERVER_URL] (default $PYEXEC_SERVER or localhost)."""

import os
import sys

from . import ExecutionConfig, Metadata, PythonExecutorClient


def main() -> int:
    server = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PYEXEC_SERVER", "http://localhost:8080")
    client = PythonExecutorClient(server)

    print("1. eval with a result:", client.eval("sum(range(101))").result)

    r = client.execute_sync(files={"main.py": "print('Hello, World!')"})
    print("2. execute_sync:", r.status.value, repr(r.stdout))

    r = client.execute_sync(
        files={"main.py": "import sys\nprint(sys.argv[1:])"},
        metadata=Metadata(script_args=["--verbose", "a b"], config=ExecutionConfig(timeout_seconds=30)),
    )
    print("3. script arguments:", r.stdout.strip())

    r = client.execute_sync(files={"main.py": "from helper import add\nprint(add(7, 8))", "helper.py": "def add(a, b):\n    return a + b"})
    print("4. multiple files:", r.stdout.strip())

    execution_id = client.execute_async(files={"main.py": "print('Async complete!')"})
    print("5. async:", execution_id, client.wait_for_completion(execution_id, poll_interval=0.2).stdout.strip())

    r = client.eval("print(undefined)")
    print("6. structured error:", r.error_type, "at line", r.error_line)

    r = client.eval("import time\ntime.sleep(5)", timeout_seconds=1)
    print("7. timeout:", r.status.value, r.exit_code, r.error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
