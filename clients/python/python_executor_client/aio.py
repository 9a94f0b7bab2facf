"""The asyncio client: the same operations as `PythonExecutorClient`, awaitable.

Calls run the synchronous client on worker threads (`asyncio.to_thread`), so no extra dependency is needed and
the event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator, Callable, Dict, List, Optional

from .client import PythonExecutorClient
from .models import Event, ExecutionResult, ExecutionStatus, FileInfo, FileList, SessionInfo
from .sessions import AsyncSession


class AsyncPythonExecutorClient:
    """`await client.eval("6 * 7")`, `async for event in client.stream_events(id)`, ..."""

    def __init__(self, base_url: str, timeout: float = 300, api_key: Optional[str] = None) -> None:
        self._sync = PythonExecutorClient(base_url, timeout=timeout, api_key=api_key)

    async def eval(self, code: str, **kwargs: Any) -> ExecutionResult:
        return await asyncio.to_thread(self._sync.eval, code, **kwargs)

    async def execute_sync(self, files: Any = None, tar_data: Optional[bytes] = None, metadata: Any = None,
                           **kwargs: Any) -> ExecutionResult:
        return await asyncio.to_thread(self._sync.execute_sync, files, tar_data, metadata, **kwargs)

    async def execute_async(self, files: Any = None, tar_data: Optional[bytes] = None, metadata: Any = None,
                            **kwargs: Any) -> str:
        return await asyncio.to_thread(self._sync.execute_async, files, tar_data, metadata, **kwargs)

    async def get_execution(self, execution_id: str) -> ExecutionResult:
        return await asyncio.to_thread(self._sync.get_execution, execution_id)

    async def kill(self, execution_id: str) -> ExecutionStatus:
        return await asyncio.to_thread(self._sync.kill_execution, execution_id)

    async def list_executions(self, **kwargs: Any) -> Dict[str, Any]:
        return await asyncio.to_thread(self._sync.list_executions, **kwargs)

    async def wait_for_completion(self, execution_id: str, poll_interval: float = 1.0,
                                  max_wait: Optional[float] = None) -> ExecutionResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            result = await self.get_execution(execution_id)
            if result.status.is_terminal:
                return result
            if max_wait is not None and loop.time() - started >= max_wait:
                raise TimeoutError(f"execution {execution_id} did not finish within {max_wait}s")
            await asyncio.sleep(poll_interval)

    async def stream_events(self, execution_id: str) -> AsyncIterator[Event]:
        """Live events, read on a worker thread and handed to the event loop as they arrive."""
        loop = asyncio.get_running_loop()
        queue: "asyncio.Queue[Any]" = asyncio.Queue()
        done = object()

        def pump() -> None:
            try:
                for event in self._sync.stream_events(execution_id):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as e:  # handed to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, done)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            item = await queue.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def follow(self, execution_id: str, on_output: Optional[Callable[[str, str], None]] = None) -> ExecutionResult:
        async for event in self.stream_events(execution_id):
            if event.kind == "output" and on_output is not None:
                on_output(event.stream or "stdout", event.data or "")
            elif event.kind == "result" and event.result is not None:
                return event.result
        return await self.wait_for_completion(execution_id)

    # -- files out and sessions: the synchronous client's methods, on worker threads ---------------------------

    async def execution_files(self, execution_id: str) -> FileList:
        return await asyncio.to_thread(self._sync.execution_files, execution_id)

    async def download_file(self, execution_id: str, path: str, dest: Any = None) -> Any:
        """The file's bytes, or streamed into `dest` (a path or a binary file) with the byte count returned."""
        return await asyncio.to_thread(self._sync.download_file, execution_id, path, dest)

    async def download_files_tar(self, execution_id: str, dest: Any = None) -> Any:
        return await asyncio.to_thread(self._sync.download_files_tar, execution_id, dest)

    async def create_session(self, python_version: Optional[str] = None, requirements_txt: Optional[str] = None,
                             env_vars: Any = None, **config: Any) -> SessionInfo:
        return await asyncio.to_thread(self._sync.create_session, python_version, requirements_txt, env_vars,
                                       **config)

    def open_session(self, python_version: Optional[str] = None, requirements_txt: Optional[str] = None,
                     env_vars: Any = None, **config: Any) -> AsyncSession:
        """A session handle: `async with client.open_session() as s:` (deleted at the end of the block) or
        `s = await client.open_session()`. Takes the arguments of `create_session`."""
        create: Dict[str, Any] = dict(config, python_version=python_version, requirements_txt=requirements_txt,
                                      env_vars=env_vars)
        return AsyncSession(self, create=create)

    async def get_session(self, session_id: str) -> SessionInfo:
        return await asyncio.to_thread(self._sync.get_session, session_id)

    async def list_sessions(self) -> List[SessionInfo]:
        return await asyncio.to_thread(self._sync.list_sessions)

    async def delete_session(self, session_id: str) -> SessionInfo:
        return await asyncio.to_thread(self._sync.delete_session, session_id)

    async def session_eval(self, session_id: str, code: str, **kwargs: Any) -> ExecutionResult:
        """Keyword arguments: `files`, `stdin`, `eval_last_expr`, `timeout_seconds`."""
        return await asyncio.to_thread(self._sync.session_eval, session_id, code, **kwargs)

    async def session_files(self, session_id: str) -> FileList:
        return await asyncio.to_thread(self._sync.session_files, session_id)

    async def session_download(self, session_id: str, path: str, dest: Any = None) -> Any:
        return await asyncio.to_thread(self._sync.session_download, session_id, path, dest)

    async def session_upload(self, session_id: str, path: str, data: Any) -> FileInfo:
        return await asyncio.to_thread(self._sync.session_upload, session_id, path, data)

    async def close(self) -> None:
        self._sync.close()

    async def __aenter__(self) -> "AsyncPythonExecutorClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
