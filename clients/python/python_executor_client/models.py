"""Data types of the python-executor API, as the original client defined them, plus the fields our server adds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Dict, List, Optional


class ExecutionStatus(str, Enum):
    """Lifecycle of an execution: pending -> running -> completed | failed; pending | running -> killed."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"

    @property
    def is_terminal(self) -> bool:
        return self in (ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.KILLED)


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


@dataclass
class ExecutionResult:
    """The state and outcome of an execution.

    The first fields are the original's; `error_type`, `error_line`, `error_message`, `stdout_truncated`,
    `stderr_truncated`, `oom_killed`, `installed_packages`, `pre_commands_output` are ours (they default to empty
    when a server does not send them).
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
        )


@dataclass
class Event:
    """One event of an execution's live stream: `output` (with `stream` and `data`), `status`, or `result`."""

    kind: str
    stream: Optional[str] = None
    data: Optional[str] = None
    status: Optional[ExecutionStatus] = None
    result: Optional[ExecutionResult] = None
