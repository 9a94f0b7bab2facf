"""The synchronous client, API-compatible with the original `PythonExecutorClient`."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union, overload
from urllib.parse import quote

import requests

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
_CONFIG_KEYS = {f for f in ExecutionConfig.__dataclass_fields__}
_CHUNK = 1 << 16


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


class PythonExecutorClient:
    """Client of a python-executor server.

    `api_key` (or the `PYEXEC_API_KEY` environment variable) is sent as `Authorization: Bearer <key>`.
    Every call raises `requests.HTTPError` on a non-2xx answer; the server's message is in the exception. 404,
    409 and 429 raise its subclasses `NotFoundError`, `SessionBusyError` and `TooManyRequestsError` (see
    `python_executor_client.errors`).
    """

    def __init__(self, base_url: str, timeout: float = 300, api_key: Optional[str] = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        key = api_key if api_key is not None else os.environ.get("PYEXEC_API_KEY")
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    # -- plumbing --------------------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @staticmethod
    def _check(response: requests.Response) -> requests.Response:
        if response.status_code >= 400:
            raise error_for(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._check(self.session.request(method, self._url(path), timeout=self.timeout, **kwargs)).json()

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
        if metadata is None:
            metadata = Metadata()
            config_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _CONFIG_KEYS}
            for key in ("entrypoint", "docker_image", "requirements_txt", "pre_commands", "stdin", "env_vars",
                        "script_args", "python_version"):
                if key in kwargs:
                    setattr(metadata, key, kwargs.pop(key))
            if kwargs:
                raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
            if config_kwargs:
                metadata.config = ExecutionConfig(**config_kwargs)
        if not metadata.entrypoint:
            metadata.entrypoint = detect_entrypoint(tar_data)
        return metadata

    def _post_exec(self, path: str, files: FileSpec, tar_data: Optional[bytes], metadata: Optional[Metadata],
                   kwargs: Dict[str, Any]) -> requests.Response:
        if tar_data is None:
            tar_data = build_tar(files)
        meta = self._metadata(tar_data, metadata, kwargs)
        parts = {
            "tar": ("code.tar", tar_data, "application/octet-stream"),
            "metadata": (None, json.dumps(meta.to_dict()), "application/json"),
        }
        return self._check(self.session.post(self._url(path), files=parts, timeout=self.timeout))

    # -- the original API ------------------------------------------------------------------------------------

    def execute_sync(self, files: FileSpec = None, tar_data: Optional[bytes] = None,
                     metadata: Optional[Metadata] = None, **kwargs: Any) -> ExecutionResult:
        """Uploads files (or a ready tar), runs them and waits. Keyword arguments: `entrypoint`, `docker_image`,
        `requirements_txt`, `pre_commands`, `stdin`, `env_vars`, `script_args`, `python_version`, and the fields of
        `ExecutionConfig` (any of them sends a full config with the client's defaults)."""
        response = self._post_exec("/api/v1/exec/sync", files, tar_data, metadata, kwargs)
        return ExecutionResult.from_dict(response.json())

    def execute_async(self, files: FileSpec = None, tar_data: Optional[bytes] = None,
                      metadata: Optional[Metadata] = None, **kwargs: Any) -> str:
        """Like `execute_sync`, but returns the execution id at once."""
        response = self._post_exec("/api/v1/exec/async", files, tar_data, metadata, kwargs)
        return str(response.json()["execution_id"])

    def get_execution(self, execution_id: str) -> ExecutionResult:
        response = self._check(self.session.get(self._url(f"/api/v1/executions/{execution_id}"), timeout=self.timeout))
        return ExecutionResult.from_dict(response.json())

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
             requirements_txt: Optional[str] = None, network_disabled: Optional[bool] = None) -> ExecutionResult:
        """Runs code through /api/v1/eval. With `eval_last_expr` (the default), `result` holds the repr of a
        trailing expression. `requirements_txt="-"` turns off import detection."""
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
        response = self._check(self.session.post(self._url("/api/v1/eval"), json=body, timeout=self.timeout))
        return ExecutionResult.from_dict(response.json())

    # -- additions -------------------------------------------------------------------------------------------

    def kill_execution(self, execution_id: str) -> ExecutionStatus:
        """Kills a pending or running execution; returns its status after the request."""
        response = self._check(self.session.delete(self._url(f"/api/v1/executions/{execution_id}"), timeout=self.timeout))
        return ExecutionStatus(response.json()["status"])

    def list_executions(self, status: Optional[Union[str, ExecutionStatus]] = None, limit: int = 50,
                        cursor: Optional[str] = None) -> Dict[str, Any]:
        """One page of executions, newest first: `{"executions": [ExecutionResult...], "next_cursor": ...}`."""
        params: Dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = ExecutionStatus(status).value
        if cursor:
            params["cursor"] = cursor
        response = self._check(self.session.get(self._url("/api/v1/executions"), params=params, timeout=self.timeout))
        page = response.json()
        return {
            "executions": [ExecutionResult.from_dict(e) for e in page.get("executions", [])],
            "next_cursor": page.get("next_cursor"),
        }

    def health(self) -> Dict[str, Any]:
        return dict(self._check(self.session.get(self._url("/health"), timeout=self.timeout)).json())

    def stream_events(self, execution_id: str) -> Iterator[Event]:
        """Live events of an execution: `output` as it is produced, `status`, then `result` (the last)."""
        with self.session.get(self._url(f"/api/v1/executions/{execution_id}/events"), stream=True,
                              headers={"Accept": "text/event-stream"}, timeout=self.timeout) as response:
            self._check(response)
            yield from parse_events(response.iter_lines(decode_unicode=True))

    def follow(self, execution_id: str, on_output: Optional[Callable[[str, str], None]] = None,
               poll_interval: float = 1.0) -> ExecutionResult:
        """Waits for the end of an execution, handing live output to `on_output(stream, text)`; polls against
        servers without an event stream."""
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
                       env_vars: Optional[Union[Sequence[str], Mapping[str, str]]] = None, *,
                       memory_mb: Optional[int] = None, disk_mb: Optional[int] = None,
                       cpu_shares: Optional[int] = None, network_disabled: Optional[bool] = None,
                       idle_timeout_seconds: Optional[int] = None) -> SessionInfo:
        """Starts a session: one interpreter that keeps its state between calls. Unset options take the server's
        defaults; `requirements_txt` is installed once, at the start. `env_vars` is a list of `KEY=value` or a
        dict. 429 (`TooManyRequestsError`) when the server runs as many sessions as it may."""
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
        return SessionInfo.from_dict(self._json("POST", "/api/v1/sessions", json=body))

    def open_session(self, python_version: Optional[str] = None, requirements_txt: Optional[str] = None,
                     env_vars: Optional[Union[Sequence[str], Mapping[str, str]]] = None, **config: Any) -> Session:
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
                     eval_last_expr: bool = True, timeout_seconds: Optional[int] = None) -> ExecutionResult:
        """Runs `code` as the session's next cell: what it defines stays for the next call. `files` (a dict of
        name -> text, or a list of {"name", "content"}) are written into `/work` first. With `eval_last_expr`,
        `result` is the repr of the last expression. One call at a time: `SessionBusyError` (409) while another
        runs. At the timeout the code is interrupted; `session_restarted` tells when the session had to start
        over (earlier state lost)."""
        body: Dict[str, Any] = {"code": code, "eval_last_expr": eval_last_expr}
        listed = _eval_files(files)
        if listed:
            body["files"] = listed
        if stdin:
            body["stdin"] = stdin
        if timeout_seconds:
            body["config"] = {"timeout_seconds": timeout_seconds}
        return ExecutionResult.from_dict(self._json("POST", f"/api/v1/sessions/{_id(session_id)}/eval", json=body))

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
            with open(data, "rb") as body:
                response = self.session.put(url, data=body, headers=headers, timeout=self.timeout)
        else:
            if isinstance(data, str):
                body: Any = data.encode()
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


def parse_events(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events lines -> events."""
    kind, data = "message", []
    for line in lines:
        if line is None:
            continue
        if line == "":
            if data:
                event = _decode(kind, "\n".join(data))
                if event is not None:
                    yield event
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        event = _decode(kind, "\n".join(data))
        if event is not None:
            yield event


def _decode(kind: str, data: str) -> Optional[Event]:
    payload = json.loads(data)
    if kind == "output":
        return Event(kind="output", stream=payload.get("stream"), data=payload.get("data"))
    if kind == "status":
        return Event(kind="status", status=ExecutionStatus(payload["status"]))
    if kind == "result":
        return Event(kind="result", result=ExecutionResult.from_dict(payload))
    return None
