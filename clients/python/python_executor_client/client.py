"""The synchronous client, API-compatible with the original `PythonExecutorClient`.

The request building, timeouts and event-stream parsing here are shared with the asyncio client (`aio.py`).
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import (IO, Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union,
                    overload)
from urllib.parse import quote

import requests
from urllib3.exceptions import ReadTimeoutError

from .errors import error_for
from .models import (
    Event,
    ExecutionConfig,
    ExecutionResult,
    ExecutionStatus,
    FileInfo,
    FileList,
    Metadata,
    SessionInfo,
)
from .sessions import Session

FileSpec = Union[Mapping[str, Union[str, bytes]], str, Path, None]
# Where a download goes: a local path, or a binary file object.
Destination = Union[str, "os.PathLike[str]", IO[bytes]]
# What an upload sends: bytes, text (UTF-8), a local file given as a `pathlib.Path`, or a binary file object.
UploadData = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", IO[bytes]]
# Files of an eval: a list of {"name", "content"} or a dict of name -> text.
EvalFiles = Union[Sequence[Mapping[str, str]], Mapping[str, str], None]
# An HTTP timeout: seconds, `(connect, read)` seconds, or None (no limit).
Timeout = Union[None, float, Tuple[Optional[float], Optional[float]]]
EnvVars = Optional[Union[Sequence[str], Mapping[str, str]]]

_CONFIG_KEYS = {f for f in ExecutionConfig.__dataclass_fields__}
_METADATA_KEYS = ("entrypoint", "docker_image", "requirements_txt", "pre_commands", "stdin", "env_vars",
                  "script_args", "python_version")
_CHUNK = 1 << 16

#: The server's default `timeout_seconds` (`PYEXEC_DEFAULT_TIMEOUT`, 300 s): the run time assumed for a call that
#: sets none.
DEFAULT_RUN_TIMEOUT = 300
#: What a call that waits for a run may take beyond the run's own timeout: queueing, installing dependencies,
#: starting the sandbox, transferring the answer.
DEFAULT_TIMEOUT_MARGIN = 30.0
# Event streams that break (not time-outs) this many times in a row, with nothing received between, are given up.
_MAX_STREAM_DROPS = 3
_DROP_PAUSE = 0.5


def quote_path(path: Union[str, "os.PathLike[str]"]) -> str:
    """A file path relative to `/work`, URL-encoded per segment (`/` kept). `ValueError` for the paths the server
    refuses anyway (empty, a leading `/`, an empty, `.` or `..` component, a NUL byte), which also keeps a path
    from reaching another endpoint."""
    text = os.fspath(path)
    if not text or "\0" in text or text.startswith("/"):
        raise ValueError(f"invalid file path {text!r}: must be relative to /work")
    segments = text.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(f"invalid file path {text!r}: empty, '.' and '..' components are not allowed")
    return "/".join(quote(segment, safe="") for segment in segments)


def _id(value: str) -> str:
    return quote(str(value), safe="")


def _eval_files(files: EvalFiles) -> Optional[List[Dict[str, str]]]:
    if not files:
        return None
    if isinstance(files, Mapping):
        return [{"name": name, "content": content} for name, content in files.items()]
    return [dict(f) for f in files]


def _copy(response: requests.Response, out: IO[bytes]) -> int:
    written = 0
    for chunk in response.iter_content(chunk_size=_CHUNK):
        out.write(chunk)
        written += len(chunk)
    return written


def _add_bytes(tar: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name=name)
    info.size = len(content)
    info.mode = 0o644
    info.mtime = 0
    tar.addfile(info, io.BytesIO(content))


def build_tar(files: FileSpec) -> bytes:
    """A tar of `files`: a dict of name -> text or bytes, a file path (stored under its base name) or a
    directory (its files, recursively, under their relative paths)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        if isinstance(files, Mapping):
            for name, content in files.items():
                _add_bytes(tar, name, content.encode() if isinstance(content, str) else content)
        elif files is not None:
            path = Path(files)
            if path.is_dir():
                for item in sorted(path.rglob("*")):
                    if item.is_file():
                        tar.add(str(item), arcname=str(item.relative_to(path)))
            elif path.is_file():
                tar.add(str(path), arcname=path.name)
            else:
                raise FileNotFoundError(str(path))
    return buffer.getvalue()


def detect_entrypoint(tar_data: bytes) -> str:
    """`main.py` > `__main__.py` > the first `.py` member, as the original client chose."""
    with tarfile.open(fileobj=io.BytesIO(tar_data)) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    for wanted in ("main.py", "__main__.py"):
        for name in names:
            if name == wanted or name.endswith("/" + wanted):
                return name[2:] if name.startswith("./") else name
    for name in names:
        if name.endswith(".py"):
            return name[2:] if name.startswith("./") else name
    raise ValueError("no Python files found in archive")


# -- shared by the synchronous and the asyncio client -----------------------------------------------------------


def _run_http_timeout(base: Timeout, run_seconds: float, margin: float) -> Timeout:
    """The HTTP timeout of a call that waits for a run of at most `run_seconds`: the client's `base` timeout, but
    never less than the run's timeout plus `margin` (a run that uses its whole timeout still gets its answer).
    Only the read part of a `(connect, read)` pair is raised; None (no limit) stays None."""
    floor = float(run_seconds) + float(margin)
    if base is None:
        return None
    if isinstance(base, tuple):
        connect, read = base
        return (connect, None if read is None else max(float(read), floor))
    return max(float(base), floor)


def _build_metadata(tar_data: bytes, metadata: Optional[Metadata], kwargs: Dict[str, Any]) -> Metadata:
    if metadata is None:
        metadata = Metadata()
        config_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_KEYS}
        for key in _METADATA_KEYS:
            if key in kwargs:
                setattr(metadata, key, kwargs.pop(key))
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        if config_kwargs:
            metadata.config = ExecutionConfig(**config_kwargs)
    if not metadata.entrypoint:
        metadata.entrypoint = detect_entrypoint(tar_data)
    return metadata


def _exec_request(files: FileSpec, tar_data: Optional[bytes], metadata: Optional[Metadata],
                  kwargs: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[int]]:
    """The multipart parts of /exec/sync and /exec/async, and the run's `timeout_seconds` (None: the server's)."""
    if tar_data is None:
        tar_data = build_tar(files)
    meta = _build_metadata(tar_data, metadata, dict(kwargs))
    parts = {
        "tar": ("code.tar", tar_data, "application/octet-stream"),
        "metadata": (None, json.dumps(meta.to_dict()).encode(), "application/json"),
    }
    run_timeout = meta.config.timeout_seconds if meta.config is not None and meta.config.timeout_seconds else None
    return parts, run_timeout


def _eval_body(code: str, files: Optional[List[Dict[str, str]]], entrypoint: Optional[str], stdin: Optional[str],
               python_version: Optional[str], timeout_seconds: Optional[int], eval_last_expr: bool,
               requirements_txt: Optional[str], network_disabled: Optional[bool]) -> Dict[str, Any]:
    body: Dict[str, Any] = {"eval_last_expr": eval_last_expr}
    if files:
        body["files"] = files
    else:
        body["code"] = code
    if entrypoint:
        body["entrypoint"] = entrypoint
    if stdin:
        body["stdin"] = stdin
    if python_version:
        body["python_version"] = python_version
    if requirements_txt:
        body["requirements_txt"] = requirements_txt
    config: Dict[str, Any] = {}
    if timeout_seconds:
        config["timeout_seconds"] = timeout_seconds
    if network_disabled is not None:
        config["network_disabled"] = network_disabled
    if config:
        body["config"] = config
    return body


def _list_params(status: Optional[Union[str, ExecutionStatus]], limit: int, cursor: Optional[str]) -> Dict[str, Any]:
    params: Dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = ExecutionStatus(status).value
    if cursor:
        params["cursor"] = cursor
    return params


def _list_page(page: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "executions": [ExecutionResult.from_dict(e) for e in page.get("executions", [])],
        "next_cursor": page.get("next_cursor"),
    }


def _session_body(python_version: Optional[str], requirements_txt: Optional[str], env_vars: EnvVars,
                  memory_mb: Optional[int], disk_mb: Optional[int], cpu_shares: Optional[int],
                  network_disabled: Optional[bool], idle_timeout_seconds: Optional[int]) -> Dict[str, Any]:
    body: Dict[str, Any] = {}
    if python_version:
        body["python_version"] = python_version
    if requirements_txt:
        body["requirements_txt"] = requirements_txt
    if env_vars:
        body["env_vars"] = ([f"{k}={v}" for k, v in env_vars.items()] if isinstance(env_vars, Mapping)
                            else list(env_vars))
    config = {k: v for k, v in (("memory_mb", memory_mb), ("disk_mb", disk_mb), ("cpu_shares", cpu_shares),
                                ("network_disabled", network_disabled),
                                ("idle_timeout_seconds", idle_timeout_seconds)) if v is not None}
    if config:
        body["config"] = config
    return body


def _session_eval_body(code: str, files: EvalFiles, stdin: Optional[str], eval_last_expr: bool,
                       timeout_seconds: Optional[int]) -> Dict[str, Any]:
    body: Dict[str, Any] = {"code": code, "eval_last_expr": eval_last_expr}
    listed = _eval_files(files)
    if listed:
        body["files"] = listed
    if stdin:
        body["stdin"] = stdin
    if timeout_seconds:
        body["config"] = {"timeout_seconds": timeout_seconds}
    return body


class _EventDecoder:
    """Server-Sent Events, one line at a time (without its line break) -> events. Comments (`: keep-alive`),
    `id:` and `retry:` lines and events of unknown kinds are skipped."""

    def __init__(self) -> None:
        self.kind = "message"
        self.data: List[str] = []

    def feed(self, line: Optional[str]) -> Optional[Event]:
        if line is None:
            return None
        if line == "":
            return self.flush()
        if line.startswith("event:"):
            self.kind = line[6:].strip()
        elif line.startswith("data:"):
            value = line[5:]
            self.data.append(value[1:] if value.startswith(" ") else value)
        return None

    def flush(self) -> Optional[Event]:
        kind, data = self.kind, self.data
        self.kind, self.data = "message", []
        return _decode(kind, "\n".join(data)) if data else None


class _OutputCursor:
    """Resuming an event stream: how much output of each stream was handed out, so that the output the server
    replays to a new follower (everything so far) is not handed out twice."""

    def __init__(self) -> None:
        self.delivered: Dict[str, int] = {}
        self.skip: Dict[str, int] = {}

    def reconnect(self) -> None:
        self.skip = dict(self.delivered)

    def admit(self, event: Event) -> Optional[Event]:
        if event.kind != "output":
            return event
        stream, data = event.stream or "stdout", event.data or ""
        skip = self.skip.get(stream, 0)
        if skip:
            cut = min(skip, len(data))
            self.skip[stream] = skip - cut
            data = data[cut:]
            if not data:
                return None
            event = Event(kind="output", stream=event.stream, data=data)
        self.delivered[stream] = self.delivered.get(stream, 0) + len(data)
        return event


def _is_read_timeout(error: BaseException) -> bool:
    """`requests` raises a read time-out while a body streams as a `ConnectionError` around urllib3's error."""
    if isinstance(error, requests.exceptions.ReadTimeout):
        return True
    return any(isinstance(arg, ReadTimeoutError) for arg in getattr(error, "args", ()))


class PythonExecutorClient:
    """Client of a python-executor server.

    `api_key` (or the `PYEXEC_API_KEY` environment variable) is sent as `Authorization: Bearer <key>`.
    Every call raises `requests.HTTPError` on a non-2xx answer; the server's message is in the exception. 404,
    409 and 429 raise its subclasses `NotFoundError`, `SessionBusyError` and `TooManyRequestsError` (see
    `python_executor_client.errors`).

    Timeouts: `timeout` is the HTTP timeout of every call (seconds, a `(connect, read)` pair, or None for none).
    A call that waits for a run (`eval`, `execute_sync`, `session_eval`) waits at least the run's timeout
    (its `timeout_seconds`, else `default_run_timeout`, the server's default) plus `timeout_margin`, so a run that
    uses its whole time is not cut by the client (which would also kill it on the server); their `http_timeout`
    argument sets that call's HTTP timeout exactly. Event streams (`stream_events`, `follow`) use `timeout` as the
    longest wait for the next bytes, and pick up again after a read time-out, so a run that prints nothing for a
    long time is followed to its end.
    """

    def __init__(self, base_url: str, timeout: Timeout = 300, api_key: Optional[str] = None, *,
                 timeout_margin: float = DEFAULT_TIMEOUT_MARGIN,
                 default_run_timeout: float = DEFAULT_RUN_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.timeout_margin = timeout_margin
        self.default_run_timeout = default_run_timeout
        self.session = requests.Session()
        key = api_key if api_key is not None else os.environ.get("PYEXEC_API_KEY")
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    # -- plumbing --------------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def _run_timeout(self, timeout_seconds: Optional[float], http_timeout: Timeout = None) -> Timeout:
        """The HTTP timeout of a call waiting for a run whose `timeout_seconds` is given (None: the server's)."""
        if http_timeout is not None:
            return http_timeout
        return _run_http_timeout(self.timeout, timeout_seconds or self.default_run_timeout, self.timeout_margin)

    @staticmethod
    def _check(response: requests.Response) -> requests.Response:
        if response.status_code >= 400:
            raise error_for(response)
        return response

    def _json(self, method: str, path: str, timeout: Timeout = None, **kwargs: Any) -> Any:
        timeout = self.timeout if timeout is None else timeout
        return self._check(self.session.request(method, self._url(path), timeout=timeout, **kwargs)).json()

    def _download(self, path: str, dest: Optional[Destination], params: Optional[Dict[str, str]] = None
                  ) -> Union[bytes, int]:
        """The body of GET `path`: its bytes, or streamed into `dest` (a path or a binary file) with the number of
        bytes written. A partly written local file is removed when the download fails."""
        with self.session.get(self._url(path), params=params, stream=True, timeout=self.timeout) as response:
            self._check(response)
            if dest is None:
                return response.content
            if hasattr(dest, "write"):
                return _copy(response, dest)  # type: ignore[arg-type]
            target = Path(dest)  # type: ignore[arg-type]
            try:
                with open(target, "wb") as out:
                    return _copy(response, out)
            except BaseException:
                target.unlink(missing_ok=True)
                raise

    def _metadata(self, tar_data: bytes, metadata: Optional[Metadata], kwargs: Dict[str, Any]) -> Metadata:
        return _build_metadata(tar_data, metadata, kwargs)

    # -- the original API ------------------------------------------------------------------------------------

    def execute_sync(self, files: FileSpec = None, tar_data: Optional[bytes] = None,
                     metadata: Optional[Metadata] = None, *, http_timeout: Timeout = None,
                     **kwargs: Any) -> ExecutionResult:
        """Uploads files (or a ready tar), runs them and waits. Keyword arguments: `entrypoint`, `docker_image`,
        `requirements_txt`, `pre_commands`, `stdin`, `env_vars`, `script_args`, `python_version`, and the fields of
        `ExecutionConfig` (any of them sends a full config with the client's defaults). `http_timeout` replaces
        the HTTP timeout derived from the run's timeout (see the class)."""
        parts, run_timeout = _exec_request(files, tar_data, metadata, kwargs)
        response = self.session.post(self._url("/api/v1/exec/sync"), files=parts,
                                     timeout=self._run_timeout(run_timeout, http_timeout))
        return ExecutionResult.from_dict(self._check(response).json())

    def execute_async(self, files: FileSpec = None, tar_data: Optional[bytes] = None,
                      metadata: Optional[Metadata] = None, **kwargs: Any) -> str:
        """Like `execute_sync`, but returns the execution id at once."""
        parts, _ = _exec_request(files, tar_data, metadata, kwargs)
        response = self._check(self.session.post(self._url("/api/v1/exec/async"), files=parts, timeout=self.timeout))
        return str(response.json()["execution_id"])

    def get_execution(self, execution_id: str) -> ExecutionResult:
        return ExecutionResult.from_dict(self._json("GET", f"/api/v1/executions/{execution_id}"))

    def kill(self, execution_id: str) -> None:
        self.kill_execution(execution_id)

    def wait_for_completion(self, execution_id: str, poll_interval: float = 2.0,
                            max_wait: Optional[float] = None) -> ExecutionResult:
        """Polls until the execution ends; `TimeoutError` after `max_wait` seconds."""
        started = time.monotonic()
        while True:
            result = self.get_execution(execution_id)
            if result.status.is_terminal:
                return result
            if max_wait is not None and time.monotonic() - started >= max_wait:
                raise TimeoutError(f"execution {execution_id} did not finish within {max_wait}s")
            time.sleep(poll_interval)

    def eval(self, code: str, *, files: Optional[List[Dict[str, str]]] = None, entrypoint: Optional[str] = None,
             stdin: Optional[str] = None, python_version: Optional[str] = None,
             timeout_seconds: Optional[int] = None, eval_last_expr: bool = True,
             requirements_txt: Optional[str] = None, network_disabled: Optional[bool] = None,
             http_timeout: Timeout = None) -> ExecutionResult:
        """Runs code through /api/v1/eval. With `eval_last_expr` (the default), `result` holds the repr of a
        trailing expression. `requirements_txt="-"` turns off import detection. `http_timeout` replaces the HTTP
        timeout derived from the run's timeout (see the class)."""
        body = _eval_body(code, files, entrypoint, stdin, python_version, timeout_seconds, eval_last_expr,
                          requirements_txt, network_disabled)
        return ExecutionResult.from_dict(self._json("POST", "/api/v1/eval", json=body,
                                                    timeout=self._run_timeout(timeout_seconds, http_timeout)))

    # -- additions -------------------------------------------------------------------------------------------

    def kill_execution(self, execution_id: str) -> ExecutionStatus:
        """Kills a pending or running execution; returns its status after the request."""
        return ExecutionStatus(self._json("DELETE", f"/api/v1/executions/{execution_id}")["status"])

    def list_executions(self, status: Optional[Union[str, ExecutionStatus]] = None, limit: int = 50,
                        cursor: Optional[str] = None) -> Dict[str, Any]:
        """One page of executions, newest first: `{"executions": [ExecutionResult...], "next_cursor": ...}`."""
        return _list_page(self._json("GET", "/api/v1/executions", params=_list_params(status, limit, cursor)))

    def health(self) -> Dict[str, Any]:
        return dict(self._json("GET", "/health"))

    def stream_events(self, execution_id: str, resume: bool = True) -> Iterator[Event]:
        """Live events of an execution: `output` as it is produced, `status`, then `result` (the last).

        With `resume` (the default), a stream that times out (nothing received within the client's `timeout`:
        the program prints nothing and no keep-alive came) or breaks is opened again, and the output the server
        replays to the new follower is not handed out twice; without it, those errors are raised."""
        cursor = _OutputCursor()
        drops = 0
        while True:
            cursor.reconnect()
            connected = False
            try:
                with self.session.get(self._url(f"/api/v1/executions/{execution_id}/events"), stream=True,
                                      headers={"Accept": "text/event-stream"}, timeout=self.timeout) as response:
                    connected = True
                    self._check(response)
                    response.encoding = "utf-8"  # SSE is always UTF-8; without a charset requests assumes Latin-1
                    decoder = _EventDecoder()
                    for line in response.iter_lines(decode_unicode=True):
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
                    return  # the stream ended (with no result: `follow` polls)
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ReadTimeout) as e:
                if not resume:
                    raise
                if _is_read_timeout(e):
                    continue  # nothing came for `timeout` seconds: the run is quiet, ask again
                if not connected:
                    raise  # the server cannot be reached: not a stream to pick up
                drops += 1
                if drops > _MAX_STREAM_DROPS:
                    raise
                time.sleep(_DROP_PAUSE)

    def follow(self, execution_id: str, on_output: Optional[Callable[[str, str], None]] = None,
               poll_interval: float = 1.0) -> ExecutionResult:
        """Waits for the end of an execution, however long it stays silent, handing live output to
        `on_output(stream, text)`; polls against servers without an event stream."""
        try:
            for event in self.stream_events(execution_id):
                if event.kind == "output" and on_output is not None:
                    on_output(event.stream or "stdout", event.data or "")
                elif event.kind == "result" and event.result is not None:
                    return event.result
        except requests.HTTPError as e:
            if e.response is None or e.response.status_code != 404:
                raise
        return self.wait_for_completion(execution_id, poll_interval=poll_interval)

    # -- files out -------------------------------------------------------------------------------------------

    def execution_files(self, execution_id: str) -> FileList:
        """The files the execution created or changed under `/work` (no bytes)."""
        return FileList.from_dict(self._json("GET", f"/api/v1/executions/{_id(execution_id)}/files"))

    @overload
    def download_file(self, execution_id: str, path: str) -> bytes: ...
    @overload
    def download_file(self, execution_id: str, path: str, dest: Destination) -> int: ...

    def download_file(self, execution_id: str, path: str, dest: Optional[Destination] = None) -> Union[bytes, int]:
        """One file of an execution (`path` relative to `/work`): its bytes, or, given `dest` (a local path or a
        binary file), streamed there, returning the number of bytes."""
        return self._download(f"/api/v1/executions/{_id(execution_id)}/files/{quote_path(path)}", dest)

    @overload
    def download_files_tar(self, execution_id: str) -> bytes: ...
    @overload
    def download_files_tar(self, execution_id: str, dest: Destination) -> int: ...

    def download_files_tar(self, execution_id: str, dest: Optional[Destination] = None) -> Union[bytes, int]:
        """All the execution's files as one tar: its bytes, or streamed into `dest` (returns the byte count)."""
        return self._download(f"/api/v1/executions/{_id(execution_id)}/files", dest, params={"format": "tar"})

    # -- sessions --------------------------------------------------------------------------------------------

    def create_session(self, python_version: Optional[str] = None, requirements_txt: Optional[str] = None,
                       env_vars: EnvVars = None, *,
                       memory_mb: Optional[int] = None, disk_mb: Optional[int] = None,
                       cpu_shares: Optional[int] = None, network_disabled: Optional[bool] = None,
                       idle_timeout_seconds: Optional[int] = None) -> SessionInfo:
        """Starts a session: one interpreter that keeps its state between calls. Unset options take the server's
        defaults; `requirements_txt` is installed once, at the start. `env_vars` is a list of `KEY=value` or a
        dict. 429 (`TooManyRequestsError`) when the server runs as many sessions as it may."""
        body = _session_body(python_version, requirements_txt, env_vars, memory_mb, disk_mb, cpu_shares,
                             network_disabled, idle_timeout_seconds)
        return SessionInfo.from_dict(self._json("POST", "/api/v1/sessions", json=body))

    def open_session(self, python_version: Optional[str] = None, requirements_txt: Optional[str] = None,
                     env_vars: EnvVars = None, **config: Any) -> Session:
        """`create_session`, returned as a `Session` handle (`with client.open_session() as s: s.eval(...)`; the
        session is deleted when the block ends)."""
        return Session(self, self.create_session(python_version, requirements_txt, env_vars, **config))

    def get_session(self, session_id: str) -> SessionInfo:
        """A session's state; `NotFoundError` once it ended (deleted, expired, or the server restarted)."""
        return SessionInfo.from_dict(self._json("GET", f"/api/v1/sessions/{_id(session_id)}"))

    def list_sessions(self) -> List[SessionInfo]:
        """The server's sessions, newest first."""
        return [SessionInfo.from_dict(s) for s in self._json("GET", "/api/v1/sessions").get("sessions") or []]

    def delete_session(self, session_id: str) -> SessionInfo:
        """Ends a session (its processes are gone when this returns); answers its state, `ended`."""
        return SessionInfo.from_dict(self._json("DELETE", f"/api/v1/sessions/{_id(session_id)}"))

    def session_eval(self, session_id: str, code: str, files: EvalFiles = None, stdin: Optional[str] = None,
                     eval_last_expr: bool = True, timeout_seconds: Optional[int] = None, *,
                     http_timeout: Timeout = None) -> ExecutionResult:
        """Runs `code` as the session's next cell: what it defines stays for the next call. `files` (a dict of
        name -> text, or a list of {"name", "content"}) are written into `/work` first. With `eval_last_expr`,
        `result` is the repr of the last expression. One call at a time: `SessionBusyError` (409) while another
        runs. At the timeout the code is interrupted; `session_restarted` tells when the session had to start
        over (earlier state lost). `http_timeout` replaces the HTTP timeout derived from the call's timeout."""
        body = _session_eval_body(code, files, stdin, eval_last_expr, timeout_seconds)
        return ExecutionResult.from_dict(self._json("POST", f"/api/v1/sessions/{_id(session_id)}/eval", json=body,
                                                    timeout=self._run_timeout(timeout_seconds, http_timeout)))

    def session_files(self, session_id: str) -> FileList:
        """The regular files in the session's `/work` now."""
        return FileList.from_dict(self._json("GET", f"/api/v1/sessions/{_id(session_id)}/files"))

    @overload
    def session_download(self, session_id: str, path: str) -> bytes: ...
    @overload
    def session_download(self, session_id: str, path: str, dest: Destination) -> int: ...

    def session_download(self, session_id: str, path: str, dest: Optional[Destination] = None) -> Union[bytes, int]:
        """A file of the session's `/work`: its bytes, or streamed into `dest` (returns the byte count)."""
        return self._download(f"/api/v1/sessions/{_id(session_id)}/files/{quote_path(path)}", dest)

    def session_upload(self, session_id: str, path: str, data: UploadData) -> FileInfo:
        """Writes a file into the session's `/work` (parent directories are created). `data` is bytes, text
        (sent as UTF-8), a local file given as a `pathlib.Path` (or any `os.PathLike`), or a binary file object;
        files are streamed, not read into memory. 413 beyond the server's upload limit."""
        url = self._url(f"/api/v1/sessions/{_id(session_id)}/files/{quote_path(path)}")
        headers = {"Content-Type": "application/octet-stream"}
        if isinstance(data, os.PathLike):
            with open(data, "rb") as file:
                response = self.session.put(url, data=file, headers=headers, timeout=self.timeout)
        else:
            body: Any
            if isinstance(data, str):
                body = data.encode()
            elif isinstance(data, (bytearray, memoryview)):
                body = bytes(data)
            else:
                body = data
            response = self.session.put(url, data=body, headers=headers, timeout=self.timeout)
        return FileInfo.from_dict(self._check(response).json())

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "PythonExecutorClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def parse_events(lines: Iterable[Optional[str]]) -> Iterator[Event]:
    """Server-Sent Events lines -> events."""
    decoder = _EventDecoder()
    for line in lines:
        event = decoder.feed(line)
        if event is not None:
            yield event
    event = decoder.flush()
    if event is not None:
        yield event


def _decode(kind: str, data: str) -> Optional[Event]:
    if kind not in ("output", "status", "result"):
        return None
    payload = json.loads(data)
    if kind == "output":
        return Event(kind="output", stream=payload.get("stream"), data=payload.get("data"))
    if kind == "status":
        return Event(kind="status", status=ExecutionStatus(payload["status"]))
    return Event(kind="result", result=ExecutionResult.from_dict(payload))
