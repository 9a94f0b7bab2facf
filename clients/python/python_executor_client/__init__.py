"""Client of python-executor: run untrusted Python in sandboxes.

API-compatible with the original `python_executor_client` (`PythonExecutorClient`, `ExecutionResult`,
`ExecutionStatus`, `ExecutionConfig`, `Metadata`), plus an asyncio client, live event streams, listing, API keys
and the structured error fields of our server.
"""

from .aio import AsyncPythonExecutorClient
from .client import PythonExecutorClient, build_tar, detect_entrypoint
from .models import Event, ExecutionConfig, ExecutionResult, ExecutionStatus, Metadata

__version__ = "0.1.0"

__all__ = [
    "AsyncPythonExecutorClient",
    "Event",
    "ExecutionConfig",
    "ExecutionResult",
    "ExecutionStatus",
    "Metadata",
    "PythonExecutorClient",
    "build_tar",
    "detect_entrypoint",
    "__version__",
]
