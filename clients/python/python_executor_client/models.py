"""Data types of the python-executor API, as the original client defined them, plus the fields our server adds."""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Dict, Iterator, List, Optional


class ExecutionStatus(str, Enum):
    """Lifecycle of an execution: pending -> running -> completed | failed; pending | running -> killed.

    A status this client does not know (sent by a newer server) is kept as a member of its own rather than
    failing the whole answer; every status but `pending` and `running` counts as terminal.
    """

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"

    @classmethod
    def _missing_(cls, value: object) -> Optional["ExecutionStatus"]:
        if not isinstance(value, str) or not value:
            return None
        member = str.__new__(cls, value)
        member._name_ = value.upper()
        member._value_ = value
        return member

    @property
    def is_terminal(self) -> bool:
        return self not in (ExecutionStatus.PENDING, ExecutionStatus.RUNNING)


@dataclass
class ExecutionConfig:
    """Limits of one execution. The defaults are the original client's (network off)."""

    timeout_seconds: int = 300
    network_disabled: bool = True
    memory_mb: int = 1024
    disk_mb: int = 2048
    cpu_shares: int = 1024

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Metadata:
    """The `metadata` part of /exec/sync and /exec/async. Empty fields are not sent."""

    entrypoint: str = ""
    docker_image: str = ""
    requirements_txt: str = ""
    pre_commands: List[str] = field(default_factory=list)
    stdin: str = ""
    env_vars: List[str] = field(default_factory=list)
    script_args: List[str] = field(default_factory=list)
    config: Optional[ExecutionConfig] = None
    python_version: str = ""

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "config":
                if value is not None:
                    out["config"] = value.to_dict()
            elif value:
                out[f.name] = value
        return out


def _parse_time(value: Optional[str]) -> Optional[datetime]:
    if not value:
        return None
    # The server sends RFC 3339 UTC with 6 fractional digits, which every Python >= 3.7 parses.
    return datetime.fromisoformat(value.rstrip("Z"))


# Output types whose `data` is text; every other type (image/png, ...) is base64.
_TEXT_TYPES = ("application/json", "application/javascript")


@dataclass
class Output:
    """One display item of a run (`outputs`): a matplotlib figure, a `_repr_png_`/`_repr_svg_`/`_repr_html_` object
    or a `display()`ed value. `data` is base64 for binary types (`image/png`) and text otherwise."""

    type: str
    data: str = ""

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Output":
        return cls(type=str(data.get("type", "")), data=str(data.get("data", "")))

    @property
    def is_text(self) -> bool:
        return self.type.startswith("text/") or self.type.endswith("+xml") or self.type in _TEXT_TYPES

    @property
    def is_image(self) -> bool:
        return self.type.startswith("image/")

    def decode(self) -> bytes:
        """The item's bytes: base64-decoded for binary types, UTF-8 for text types (`image/svg+xml`, `text/*`)."""
        if self.is_text:
            return self.data.encode()
        return base64.b64decode(self.data)


@dataclass
class FileInfo:
    """A file under `/work` of an execution or a session: `path` (relative to `/work`), `size`, `sha256` (hex)."""

    path: str
    size: int = 0
    sha256: str = ""

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "FileInfo":
        return cls(path=str(data["path"]), size=int(data.get("size") or 0), sha256=str(data.get("sha256") or ""))


@dataclass
class FileList:
    """The answer of `GET .../files`: the files, and whether some were left out (`truncated`). Iterable."""

    files: List[FileInfo] = field(default_factory=list)
    truncated: bool = False

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "FileList":
        return cls(files=[FileInfo.from_dict(f) for f in data.get("files") or []],
                   truncated=bool(data.get("truncated", False)))

    @property
    def paths(self) -> List[str]:
        return [f.path for f in self.files]

    def __iter__(self) -> Iterator[FileInfo]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


@dataclass
class SessionInfo:
    """A session as the server describes it. `state` is `idle`, `busy` or `ended` (only in the answer to a
    delete); `expires_at` is when it ends unless a call comes first."""

    session_id: str
    state: str = ""
    python_version: Optional[str] = None
    created_at: Optional[datetime] = None
    last_used_at: Optional[datetime] = None
    expires_at: Optional[datetime] = None
    calls: int = 0
    restarts: int = 0
    memory_mb: Optional[int] = None
    disk_mb: Optional[int] = None
    network_disabled: Optional[bool] = None
    idle_timeout_seconds: Optional[int] = None

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "SessionInfo":
        return cls(
            session_id=data["session_id"],
            state=data.get("state", ""),
            python_version=data.get("python_version"),
            created_at=_parse_time(data.get("created_at")),
            last_used_at=_parse_time(data.get("last_used_at")),
            expires_at=_parse_time(data.get("expires_at")),
            calls=int(data.get("calls") or 0),
            restarts=int(data.get("restarts") or 0),
            memory_mb=data.get("memory_mb"),
            disk_mb=data.get("disk_mb"),
            network_disabled=data.get("network_disabled"),
            idle_timeout_seconds=data.get("idle_timeout_seconds"),
        )


@dataclass
class ExecutionResult:
    """The state and outcome of an execution.

    The first fields are the original's; `error_type`, `error_line`, `error_message`, `stdout_truncated`,
    `stderr_truncated`, `oom_killed`, `installed_packages`, `pre_commands_output`, `outputs`, `files`,
    `files_truncated`, `session_id`, `session_restarted`, `install_ms` are ours (they default to empty when a
    server does not send them). `install_ms`: milliseconds spent installing the dependencies before the program
    started (`duration_ms` does not count them); `None` when nothing was installed for this execution.
    """

    execution_id: str
    status: ExecutionStatus
    stdout: str = ""
    stderr: str = ""
    exit_code: Optional[int] = None
    error: Optional[str] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    duration_ms: Optional[int] = None
    result: Optional[str] = None
    error_type: Optional[str] = None
    error_line: Optional[int] = None
    error_message: Optional[str] = None
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    oom_killed: bool = False
    installed_packages: List[str] = field(default_factory=list)
    pre_commands_output: Optional[str] = None
    outputs: List[Output] = field(default_factory=list)
    files: List[FileInfo] = field(default_factory=list)
    files_truncated: bool = False
    session_id: Optional[str] = None
    session_restarted: bool = False
    install_ms: Optional[int] = None

    def images(self, type: str = "image/png") -> List[bytes]:
        """The decoded bytes of the `outputs` of that type (PNG figures by default), in the order shown."""
        return [o.decode() for o in self.outputs if o.type == type]

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ExecutionResult":
        return cls(
            execution_id=data["execution_id"],
            status=ExecutionStatus(data["status"]),
            stdout=data.get("stdout", ""),
            stderr=data.get("stderr", ""),
            exit_code=data.get("exit_code"),
            error=data.get("error"),
            started_at=_parse_time(data.get("started_at")),
            finished_at=_parse_time(data.get("finished_at")),
            duration_ms=data.get("duration_ms"),
            result=data.get("result"),
            error_type=data.get("error_type"),
            error_line=data.get("error_line"),
            error_message=data.get("error_message"),
            stdout_truncated=bool(data.get("stdout_truncated", False)),
            stderr_truncated=bool(data.get("stderr_truncated", False)),
            oom_killed=bool(data.get("oom_killed", False)),
            installed_packages=list(data.get("installed_packages") or []),
            pre_commands_output=data.get("pre_commands_output"),
            outputs=[Output.from_dict(o) for o in data.get("outputs") or []],
            files=[FileInfo.from_dict(f) for f in data.get("files") or []],
            files_truncated=bool(data.get("files_truncated", False)),
            session_id=data.get("session_id"),
            session_restarted=bool(data.get("session_restarted", False)),
            install_ms=data.get("install_ms"),
        )


@dataclass
class Event:
    """One event of an execution's live stream: `output` (with `stream` and `data`), `status`, or `result`."""

    kind: str
    stream: Optional[str] = None
    data: Optional[str] = None
    status: Optional[ExecutionStatus] = None
    result: Optional[ExecutionResult] = None
