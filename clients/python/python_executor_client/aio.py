"""The asyncio client: the methods of `PythonExecutorClient`, awaitable, on `httpx.AsyncClient`.

Natively asynchronous: requests, downloads, uploads and event streams run on the event loop (no worker threads),
so any number of calls can wait at once. Errors are those of the synchronous client (`requests.HTTPError` and its
subclasses, whose `response` is here an `httpx.Response`); transport failures raise `httpx` exceptions
(`httpx.TimeoutException`, `httpx.ConnectError`, ...).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import stat
from pathlib import Path
from typing import IO, Any, AsyncGenerator, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Union

import httpx
import requests

from .client import (
    _CHUNK,
    _DROP_PAUSE,
    _MAX_STREAM_DROPS,
    DEFAULT_RUN_TIMEOUT,
    DEFAULT_TIMEOUT_MARGIN,
    Destination,
    EnvVars,
    EvalFiles,
    FileSpec,
    Timeout,
    UploadData,
    _eval_body,
    _EventDecoder,
    _exec_request,
    _id,
    _list_page,
    _list_params,
    _OutputCursor,
    _run_http_timeout,
    _session_body,
    _session_eval_body,
    quote_path,
)
from .errors import error_for
from .models import Event, ExecutionResult, ExecutionStatus, FileInfo, FileList, Metadata, SessionInfo
from .sessions import AsyncSession

_UPLOAD_CHUNK = 1 << 20
# A timeout as the synchronous client takes it, or an `httpx.Timeout`.
AnyTimeout = Union[Timeout, httpx.Timeout]


def _httpx_timeout(timeout: AnyTimeout) -> httpx.Timeout:
    """`requests`-style timeouts (seconds, `(connect, read)`, None) as an `httpx.Timeout` (kept as it is)."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if isinstance(timeout, tuple):
        connect, read = timeout
        return httpx.Timeout(read, connect=connect)
    return httpx.Timeout(timeout)


def _upload_size(data: Any) -> Optional[int]:
    """The bytes left in a binary file object, when that can be known without reading it."""
    try:
        info = os.fstat(data.fileno())
        if stat.S_ISREG(info.st_mode):
            return max(info.st_size - int(data.tell()), 0)
    except (AttributeError, OSError, ValueError):
        pass
    try:
        here = int(data.tell())
        end = int(data.seek(0, os.SEEK_END))
        data.seek(here)
        return max(end - here, 0)
    except (AttributeError, OSError, ValueError):
        return None


async def _chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    """A binary file's content, read off the event loop."""
    while True:
        chunk = await asyncio.to_thread(file.read, _UPLOAD_CHUNK)
        if not chunk:
            return
        yield chunk


class AsyncPythonExecutorClient:
    """`await client.eval("6 * 7")`, `async for event in client.stream_events(id)`, ...

    Same arguments, methods and timeouts as `PythonExecutorClient` (`timeout` may also be an `httpx.Timeout`).
    `transport` (an `httpx.AsyncBaseTransport`)
    replaces the network, e.g. `httpx.MockTransport` in tests; `http` is the underlying `httpx.AsyncClient`.
    Close the client (`await client.close()` or `async with`) on the event loop that used it.
    """

    def __init__(self, base_url: str, timeout: AnyTimeout = 300, api_key: Optional[str] = None, *,
                 timeout_margin: float = DEFAULT_TIMEOUT_MARGIN, default_run_timeout: float = DEFAULT_RUN_TIMEOUT,
                 transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.timeout_margin = timeout_margin
        self.default_run_timeout = default_run_timeout
        headers: Dict[str, str] = {}
        key = api_key if api_key is not None else os.environ.get("PYEXEC_API_KEY")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.http = httpx.AsyncClient(headers=headers, timeout=_httpx_timeout(timeout), transport=transport,
                                      follow_redirects=True)

    # -- plumbing --------------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _run_timeout(self, timeout_seconds: Optional[float], http_timeout: AnyTimeout = None) -> AnyTimeout:
        if http_timeout is not None:
            return http_timeout
        run = timeout_seconds or self.default_run_timeout
        if isinstance(self.timeout, httpx.Timeout):
            read = self.timeout.read
            return httpx.Timeout(connect=self.timeout.connect, write=self.timeout.write, pool=self.timeout.pool,
                                 read=None if read is None else max(read, run + self.timeout_margin))
        return _run_http_timeout(self.timeout, run, self.timeout_margin)

    @staticmethod
    async def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            await response.aread()
            raise error_for(response)
        return response

    async def _json(self, method: str, path: str, timeout: AnyTimeout = None, **kwargs: Any) -> Any:
        timeout = self.timeout if timeout is None else timeout
        response = await self.http.request(method, self._url(path), timeout=_httpx_timeout(timeout), **kwargs)
        return (await self._check(response)).json()

    async def _download(self, path: str, dest: Optional[Destination], params: Optional[Dict[str, str]] = None
                        ) -> Union[bytes, int]:
        async with self.http.stream("GET", self._url(path), params=params,
                                    timeout=_httpx_timeout(self.timeout)) as response:
            await self._check(response)
            if dest is None:
                return await response.aread()
            if hasattr(dest, "write"):
                return await self._copy(response, dest)  # type: ignore[arg-type]
            target = Path(dest)  # type: ignore[arg-type]
            try:
                with open(target, "wb") as out:
                    return await self._copy(response, out)
            except BaseException:
                target.unlink(missing_ok=True)
                raise

    @staticmethod
    async def _copy(response: httpx.Response, out: IO[bytes]) -> int:
        written = 0
        async for chunk in response.aiter_bytes(_CHUNK):
            out.write(chunk)
            written += len(chunk)
        return written

    # -- the original API ------------------------------------------------------------------------------------

    async def execute_sync(self, files: FileSpec = None, tar_data: Optional[bytes] = None,
                           metadata: Optional[Metadata] = None, *, http_timeout: AnyTimeout = None,
                           **kwargs: Any) -> ExecutionResult:
        parts, run_timeout = _exec_request(files, tar_data, metadata, kwargs)
        return ExecutionResult.from_dict(await self._json("POST", "/api/v1/exec/sync", files=parts,
                                                          timeout=self._run_timeout(run_timeout, http_timeout)))

    async def execute_async(self, files: FileSpec = None, tar_data: Optional[bytes] = None,
                            metadata: Optional[Metadata] = None, **kwargs: Any) -> str:
        parts, _ = _exec_request(files, tar_data, metadata, kwargs)
        return str((await self._json("POST", "/api/v1/exec/async", files=parts))["execution_id"])

    async def get_execution(self, execution_id: str) -> ExecutionResult:
        return ExecutionResult.from_dict(await self._json("GET", f"/api/v1/executions/{execution_id}"))

    async def kill(self, execution_id: str) -> ExecutionStatus:
        """`kill_execution` (this client's `kill` has always returned the status)."""
        return await self.kill_execution(execution_id)

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

    async def eval(self, code: str, *, files: Optional[List[Dict[str, str]]] = None,
                   entrypoint: Optional[str] = None, stdin: Optional[str] = None,
                   python_version: Optional[str] = None, timeout_seconds: Optional[int] = None,
                   eval_last_expr: bool = True, requirements_txt: Optional[str] = None,
                   network_disabled: Optional[bool] = None, http_timeout: AnyTimeout = None) -> ExecutionResult:
        body = _eval_body(code, files, entrypoint, stdin, python_version, timeout_seconds, eval_last_expr,
                          requirements_txt, network_disabled)
        return ExecutionResult.from_dict(await self._json("POST", "/api/v1/eval", json=body,
                                                          timeout=self._run_timeout(timeout_seconds, http_timeout)))

    # -- additions -------------------------------------------------------------------------------------------

    async def kill_execution(self, execution_id: str) -> ExecutionStatus:
        return ExecutionStatus((await self._json("DELETE", f"/api/v1/executions/{execution_id}"))["status"])

    async def list_executions(self, status: Optional[Union[str, ExecutionStatus]] = None, limit: int = 50,
                              cursor: Optional[str] = None) -> Dict[str, Any]:
        return _list_page(await self._json("GET", "/api/v1/executions", params=_list_params(status, limit, cursor)))

    async def health(self) -> Dict[str, Any]:
        return dict(await self._json("GET", "/health"))

    async def stream_events(self, execution_id: str, resume: bool = True) -> AsyncGenerator[Event, None]:
        """Live events (`output`, `status`, then `result`), read on the event loop. With `resume`, a stream
        that times out or breaks is opened again without handing out the replayed output twice."""
        cursor = _OutputCursor()
        drops = 0
        while True:
            cursor.reconnect()
            connected = False
            try:
                async with self.http.stream("GET", self._url(f"/api/v1/executions/{execution_id}/events"),
                                            headers={"Accept": "text/event-stream"},
                                            timeout=_httpx_timeout(self.timeout)) as response:
                    connected = True
                    await self._check(response)
                    response.encoding = "utf-8"
                    decoder = _EventDecoder()
                    async for line in response.aiter_lines():
                        drops = 0
                        event = decoder.feed(line)
                        if event is not None:
                            event = cursor.admit(event)
                        if event is not None:
                            yield event
                            if event.kind == "result":
                                return
                    event = decoder.flush()
                    if event is not None:
                        event = cursor.admit(event)
                    if event is not None:
                        yield event
                    return
            except httpx.ReadTimeout:
                if not resume:
                    raise
            except httpx.TransportError:
                if not resume or not connected:
                    raise
                drops += 1
                if drops > _MAX_STREAM_DROPS:
                    raise
                await asyncio.sleep(_DROP_PAUSE)

    async def follow(self, execution_id: str,
                     on_output: Optional[Callable[[str, str], Optional[Awaitable[None]]]] = None,
                     poll_interval: float = 1.0) -> ExecutionResult:
        """Waits for the end of an execution, however long it stays silent, handing live output to
        `on_output(stream, text)` (a function or a coroutine function); polls against servers without an event
        stream."""
        events = self.stream_events(execution_id)
        try:
            async for event in events:
                if event.kind == "output" and on_output is not None:
                    outcome = on_output(event.stream or "stdout", event.data or "")
                    if inspect.isawaitable(outcome):
                        await outcome
                elif event.kind == "result" and event.result is not None:
                    return event.result
        except requests.HTTPError as e:  # what error answers raise (`APIError`)
            if e.response is None or e.response.status_code != 404:
                raise
        finally:
            await events.aclose()  # the connection goes back now, not when the generator is collected
        return await self.wait_for_completion(execution_id, poll_interval=poll_interval)

    # -- files out -------------------------------------------------------------------------------------------

    async def execution_files(self, execution_id: str) -> FileList:
        return FileList.from_dict(await self._json("GET", f"/api/v1/executions/{_id(execution_id)}/files"))

    async def download_file(self, execution_id: str, path: str, dest: Optional[Destination] = None
                            ) -> Union[bytes, int]:
        """The file's bytes, or streamed into `dest` (a path or a binary file) with the byte count returned."""
        return await self._download(f"/api/v1/executions/{_id(execution_id)}/files/{quote_path(path)}", dest)

    async def download_files_tar(self, execution_id: str, dest: Optional[Destination] = None) -> Union[bytes, int]:
        return await self._download(f"/api/v1/executions/{_id(execution_id)}/files", dest,
                                    params={"format": "tar"})

    # -- sessions --------------------------------------------------------------------------------------------

    async def create_session(self, python_version: Optional[str] = None, requirements_txt: Optional[str] = None,
                             env_vars: EnvVars = None, *, memory_mb: Optional[int] = None,
                             disk_mb: Optional[int] = None, cpu_shares: Optional[int] = None,
                             network_disabled: Optional[bool] = None,
                             idle_timeout_seconds: Optional[int] = None) -> SessionInfo:
        body = _session_body(python_version, requirements_txt, env_vars, memory_mb, disk_mb, cpu_shares,
                             network_disabled, idle_timeout_seconds)
        return SessionInfo.from_dict(await self._json("POST", "/api/v1/sessions", json=body))

    def open_session(self, python_version: Optional[str] = None, requirements_txt: Optional[str] = None,
                     env_vars: EnvVars = None, **config: Any) -> AsyncSession:
        """A session handle: `async with client.open_session() as s:` (deleted at the end of the block) or
        `s = await client.open_session()`. Takes the arguments of `create_session`."""
        create: Dict[str, Any] = dict(config, python_version=python_version, requirements_txt=requirements_txt,
                                      env_vars=env_vars)
        return AsyncSession(self, create=create)

    async def get_session(self, session_id: str) -> SessionInfo:
        return SessionInfo.from_dict(await self._json("GET", f"/api/v1/sessions/{_id(session_id)}"))

    async def list_sessions(self) -> List[SessionInfo]:
        return [SessionInfo.from_dict(s) for s in (await self._json("GET", "/api/v1/sessions")).get("sessions") or []]

    async def delete_session(self, session_id: str) -> SessionInfo:
        return SessionInfo.from_dict(await self._json("DELETE", f"/api/v1/sessions/{_id(session_id)}"))

    async def session_eval(self, session_id: str, code: str, files: EvalFiles = None, stdin: Optional[str] = None,
                           eval_last_expr: bool = True, timeout_seconds: Optional[int] = None, *,
                           http_timeout: AnyTimeout = None) -> ExecutionResult:
        body = _session_eval_body(code, files, stdin, eval_last_expr, timeout_seconds)
        return ExecutionResult.from_dict(await self._json("POST", f"/api/v1/sessions/{_id(session_id)}/eval",
                                                          json=body,
                                                          timeout=self._run_timeout(timeout_seconds, http_timeout)))

    async def session_files(self, session_id: str) -> FileList:
        return FileList.from_dict(await self._json("GET", f"/api/v1/sessions/{_id(session_id)}/files"))

    async def session_download(self, session_id: str, path: str, dest: Optional[Destination] = None
                               ) -> Union[bytes, int]:
        return await self._download(f"/api/v1/sessions/{_id(session_id)}/files/{quote_path(path)}", dest)

    async def session_upload(self, session_id: str, path: str, data: UploadData) -> FileInfo:
        """Bytes, text (UTF-8), a local file as a `pathlib.Path` or a binary file object; files are streamed."""
        target = f"/api/v1/sessions/{_id(session_id)}/files/{quote_path(path)}"
        if isinstance(data, os.PathLike):
            with open(data, "rb") as file:
                return await self._put_file(target, file)
        if isinstance(data, str):
            content: Any = data.encode()
        elif isinstance(data, (bytes, bytearray, memoryview)):
            content = bytes(data)
        else:
            return await self._put_file(target, data)
        return FileInfo.from_dict(await self._json("PUT", target, content=content,
                                                   headers={"Content-Type": "application/octet-stream"}))

    async def _put_file(self, path: str, file: IO[bytes]) -> FileInfo:
        """Streams a binary file, with its length when it is known (chunked otherwise)."""
        headers = {"Content-Type": "application/octet-stream"}
        size = _upload_size(file)
        if size is not None:
            headers["Content-Length"] = str(size)
        return FileInfo.from_dict(await self._json("PUT", path, content=_chunks(file), headers=headers))

    async def close(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> "AsyncPythonExecutorClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
