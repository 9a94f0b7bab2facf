"""Handles on a session: `client.open_session()` (sync) and `async_client.open_session()` (asyncio)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Generator, Optional

from .errors import NotFoundError
from .models import ExecutionResult, FileInfo, FileList, SessionInfo

if TYPE_CHECKING:  # pragma: no cover
    from .aio import AsyncPythonExecutorClient
    from .client import PythonExecutorClient


class Session:
    """A running session of a `PythonExecutorClient`: a stateful interpreter.

        with client.open_session(requirements_txt="pandas") as s:
            s.eval("import pandas as pd\\ndf = pd.DataFrame({'a': [1, 2]})")
            s.eval("df.a.sum()").result  # '3'

    Leaving the `with` block (or `close()`) deletes the session; a session that already ended is fine.
    """

    def __init__(self, client: "PythonExecutorClient", info: SessionInfo) -> None:
        self.client = client
        self.info = info
        self.closed = False

    @property
    def id(self) -> str:
        return self.info.session_id

    def eval(self, code: str, **kwargs: Any) -> ExecutionResult:
        """`client.session_eval(self.id, code, ...)`: `files`, `stdin`, `eval_last_expr`, `timeout_seconds`,
        `http_timeout`."""
        return self.client.session_eval(self.id, code, **kwargs)

    def upload(self, path: str, data: Any) -> FileInfo:
        """Writes a file into the session's `/work`: bytes, text, a `pathlib.Path` (streamed) or a binary file."""
        return self.client.session_upload(self.id, path, data)

    def download(self, path: str, dest: Any = None) -> Any:
        """A file of the session's `/work`: its bytes, or streamed into `dest` (returns the byte count)."""
        return self.client.session_download(self.id, path, dest)

    def files(self) -> FileList:
        return self.client.session_files(self.id)

    def refresh(self) -> SessionInfo:
        """Fetches the session's state again (`NotFoundError` once it ended)."""
        self.info = self.client.get_session(self.id)
        return self.info

    def close(self) -> None:
        """Deletes the session (once; a session that already ended on the server is not an error)."""
        if self.closed:
            return
        try:
            self.info = self.client.delete_session(self.id)
        except NotFoundError:
            pass
        self.closed = True

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session({self.id!r}, state={self.info.state!r})"


class AsyncSession:
    """The asyncio handle: `async with client.open_session() as s: await s.eval("1 + 1")`, or
    `s = await client.open_session()` then `await s.close()`. The session is created when the handle is awaited or
    entered."""

    def __init__(self, client: "AsyncPythonExecutorClient", info: Optional[SessionInfo] = None,
                 create: Optional[Dict[str, Any]] = None) -> None:
        self.client = client
        self.info: Optional[SessionInfo] = info
        self.closed = False
        self._create = create or {}

    @property
    def id(self) -> str:
        if self.info is None:
            raise RuntimeError("the session is not open yet: await the handle or use `async with`")
        return self.info.session_id

    async def open(self) -> "AsyncSession":
        if self.info is None:
            self.info = await self.client.create_session(**self._create)
        return self

    def __await__(self) -> Generator[Any, None, "AsyncSession"]:
        return self.open().__await__()

    async def eval(self, code: str, **kwargs: Any) -> ExecutionResult:
        """`await client.session_eval(self.id, code, ...)`: `files`, `stdin`, `eval_last_expr`, `timeout_seconds`,
        `http_timeout`."""
        return await self.client.session_eval(self.id, code, **kwargs)

    async def upload(self, path: str, data: Any) -> FileInfo:
        return await self.client.session_upload(self.id, path, data)

    async def download(self, path: str, dest: Any = None) -> Any:
        return await self.client.session_download(self.id, path, dest)

    async def files(self) -> FileList:
        return await self.client.session_files(self.id)

    async def refresh(self) -> SessionInfo:
        self.info = await self.client.get_session(self.id)
        return self.info

    async def close(self) -> None:
        if self.closed or self.info is None:
            return
        try:
            self.info = await self.client.delete_session(self.id)
        except NotFoundError:
            pass
        self.closed = True

    async def __aenter__(self) -> "AsyncSession":
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = self.info.state if self.info is not None else "not open"
        return f"AsyncSession({self.info.session_id if self.info else None!r}, state={state!r})"
