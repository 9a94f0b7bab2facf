"""Client of python-executor: run untrusted Python in sandboxes.

API-compatible with the original `python_executor_client` (`PythonExecutorClient`, `ExecutionResult`,
`ExecutionStatus`, `ExecutionConfig`, `Metadata`), plus a native asyncio client (httpx), live event streams,
listing, API keys and the structured error fields of our server; sessions (a stateful interpreter), the files a run
writes, and rich outputs (plots as PNG).
"""

from .aio import AsyncPythonExecutorClient
from .client import PythonExecutorClient, build_tar, detect_entrypoint, quote_path
from .errors import APIError, NotFoundError, SessionBusyError, TooManyRequestsError
from .models import (
    Event,
    ExecutionConfig,
    ExecutionResult,
    ExecutionStatus,
    FileInfo,
    FileList,
    Metadata,
    Output,
    SessionInfo,
)
from .sessions import AsyncSession, Session

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AsyncPythonExecutorClient",
    "AsyncSession",
    "Event",
    "ExecutionConfig",
    "ExecutionResult",
    "ExecutionStatus",
    "FileInfo",
    "FileList",
    "Metadata",
    "NotFoundError",
    "Output",
    "PythonExecutorClient",
    "Session",
    "SessionBusyError",
    "SessionInfo",
    "TooManyRequestsError",
    "build_tar",
    "detect_entrypoint",
    "quote_path",
    "__version__",
]
