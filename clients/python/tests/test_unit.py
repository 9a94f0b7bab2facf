"""The Python client against a fake server (no network): sessions, files out, rich outputs, errors.

A `requests` transport adapter mounted on the client's session answers from a table and records what was sent.
"""

import asyncio
import base64
import io
import json
import tarfile
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from python_executor_client import (
    AsyncPythonExecutorClient,
    ExecutionResult,
    ExecutionStatus,
    FileInfo,
    NotFoundError,
    Output,
    PythonExecutorClient,
    SessionBusyError,
    SessionInfo,
    TooManyRequestsError,
    quote_path,
)

BASE = "http://fake.invalid"
PNG = b"\x89PNG\r\n\x1a\nfake image"
SESSION = {
    "session_id": "ses_1", "state": "idle", "python_version": "3.12",
    "created_at": "2026-12-06T22:50:01.120Z", "last_used_at": "2026-12-06T22:51:13.004Z",
    "expires_at": "2026-12-06T23:01:13.004Z", "calls": 3, "restarts": 0, "memory_mb": 1024, "disk_mb": 1024,
    "network_disabled": True, "idle_timeout_seconds": 600,
}
RESULT = {
    "execution_id": "exe_1", "status": "completed", "stdout": "", "exit_code": 0, "result": "42",
    "session_id": "ses_1",
    "outputs": [{"type": "image/png", "data": base64.b64encode(PNG).decode()},
                {"type": "image/svg+xml", "data": "<svg/>"}, {"type": "text/html", "data": "<b>x</b>"}],
    "files": [{"path": "out/plot.png", "size": 18, "sha256": "ab" * 32}],
}


class Sent:
    def __init__(self, request: requests.PreparedRequest) -> None:
        self.method = request.method
        parts = urlsplit(request.url)
        self.path = parts.path
        self.query = parts.query
        self.headers = request.headers
        body = request.body
        self.streamed = hasattr(body, "read")
        if self.streamed:
            body = body.read()
        self.body = body.encode() if isinstance(body, str) else (body or b"")

    def json(self) -> Any:
        return json.loads(self.body)


class FakeServer(BaseAdapter):
    """Answers `(method, path)` from `routes` with `(status, body, headers)`; unknown routes are 404."""

    def __init__(self, routes: Dict[Tuple[str, str], Tuple[int, Any, Dict[str, str]]]) -> None:
        super().__init__()
        self.routes = routes
        self.sent: List[Sent] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        sent = Sent(request)
        self.sent.append(sent)
        status, body, headers = self.routes.get((sent.method, sent.path), (404, {"error": "not found"}, {}))
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 201: "Created", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
                           400: "Bad Request"}.get(status, "")
        response.headers = CaseInsensitiveDict(headers)
        response.raw = io.BytesIO(content)
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def fake_client(routes, api_key: Optional[str] = "k") -> Tuple[PythonExecutorClient, FakeServer]:
    client = PythonExecutorClient(BASE, timeout=5, api_key=api_key)
    server = FakeServer(routes)
    client.session.mount(BASE, server)
    return client, server


def ok(body: Any, status: int = 200, **headers: str) -> Tuple[int, Any, Dict[str, str]]:
    return status, body, headers


def test_results_parse_outputs_files_and_session_fields():
    r = ExecutionResult.from_dict(RESULT)
    assert r.session_id == "ses_1" and r.session_restarted is False and r.files_truncated is False
    assert r.files == [FileInfo("out/plot.png", 18, "ab" * 32)]
    assert [o.type for o in r.outputs] == ["image/png", "image/svg+xml", "text/html"]
    assert r.images() == [PNG]
    assert r.images("image/svg+xml") == [b"<svg/>"]
    assert r.outputs[0].is_image and not r.outputs[0].is_text and r.outputs[2].decode() == b"<b>x</b>"
    assert Output("text/plain", "[1, 2]").decode() == b"[1, 2]"
    # An answer of the original server has none of them.
    plain = ExecutionResult.from_dict({"execution_id": "exe_2", "status": "failed", "exit_code": 124})
    assert (plain.outputs, plain.files, plain.files_truncated, plain.session_id, plain.session_restarted) == (
        [], [], False, None, False)
    assert plain.images() == []
    # A status this client does not know (sessions.md: "timeout") still parses, and is terminal.
    timeout = ExecutionResult.from_dict({"execution_id": "exe_3", "status": "timeout", "exit_code": 124,
                                         "error_type": "KeyboardInterrupt", "session_restarted": True,
                                         "files_truncated": True})
    assert timeout.status == "timeout" and timeout.status.value == "timeout" and timeout.status.is_terminal
    assert timeout.session_restarted and timeout.files_truncated
    assert not ExecutionStatus.RUNNING.is_terminal and ExecutionStatus.KILLED.is_terminal


def test_session_lifecycle_requests():
    ended = dict(SESSION, state="ended")
    client, server = fake_client({
        ("POST", "/api/v1/sessions"): ok(SESSION, 201),
        ("GET", "/api/v1/sessions"): ok({"sessions": [SESSION, dict(SESSION, session_id="ses_0")]}),
        ("GET", "/api/v1/sessions/ses_1"): ok(SESSION),
        ("DELETE", "/api/v1/sessions/ses_1"): ok(ended),
        ("POST", "/api/v1/sessions/ses_1/eval"): ok(RESULT),
        ("GET", "/api/v1/sessions/ses_1/files"): ok({"files": [{"path": "a.txt", "size": 1, "sha256": "00"}],
                                                      "truncated": True}),
    })
    info = client.create_session("3.12", "pandas\nmatplotlib", {"MODE": "test"}, memory_mb=512,
                                 network_disabled=True, idle_timeout_seconds=60)
    assert isinstance(info, SessionInfo) and info.session_id == "ses_1" and info.calls == 3
    assert info.expires_at is not None and info.expires_at.minute == 1
    assert server.sent[-1].json() == {
        "python_version": "3.12", "requirements_txt": "pandas\nmatplotlib", "env_vars": ["MODE=test"],
        "config": {"memory_mb": 512, "network_disabled": True, "idle_timeout_seconds": 60},
    }
    assert server.sent[-1].headers["Authorization"] == "Bearer k"
    client.create_session()
    assert server.sent[-1].json() == {}
    assert [s.session_id for s in client.list_sessions()] == ["ses_1", "ses_0"]
    assert client.get_session("ses_1").state == "idle"

    r = client.session_eval("ses_1", "6 * 7")
    assert (r.result, r.session_id) == ("42", "ses_1")
    assert server.sent[-1].json() == {"code": "6 * 7", "eval_last_expr": True}
    client.session_eval("ses_1", "print(open('d.csv').read())", files={"d.csv": "a,b"}, stdin="in",
                        eval_last_expr=False, timeout_seconds=5)
    assert server.sent[-1].json() == {"code": "print(open('d.csv').read())", "eval_last_expr": False,
                                      "files": [{"name": "d.csv", "content": "a,b"}], "stdin": "in",
                                      "config": {"timeout_seconds": 5}}
    files = client.session_files("ses_1")
    assert files.truncated and files.paths == ["a.txt"] and len(files) == 1 and list(files)[0].size == 1
    assert client.delete_session("ses_1").state == "ended"
    assert [s.method for s in server.sent] == ["POST", "POST", "GET", "GET", "POST", "POST", "GET", "DELETE"]


def test_error_classes():
    client, _ = fake_client({
        ("POST", "/api/v1/sessions/ses_1/eval"): ok({"error": "session ses_1 is busy with another call"}, 409),
        ("POST", "/api/v1/sessions"): ok({"error": "too many sessions"}, 429, **{"Retry-After": "3"}),
    })
    with pytest.raises(SessionBusyError) as busy:
        client.session_eval("ses_1", "1")
    assert busy.value.status_code == 409 and busy.value.message == "session ses_1 is busy with another call"
    assert str(busy.value) == "409 Conflict: session ses_1 is busy with another call"
    with pytest.raises(TooManyRequestsError) as full:
        client.create_session()
    assert full.value.retry_after == 3.0
    with pytest.raises(NotFoundError):
        client.get_session("ses_gone")
    # Every error is still the original's requests.HTTPError, with the response.
    with pytest.raises(requests.HTTPError) as missing:
        client.get_execution("exe_x")
    assert missing.value.response.status_code == 404 and isinstance(missing.value, NotFoundError)


def test_paths_are_quoted_per_segment_and_checked():
    assert quote_path("plot.png") == "plot.png"
    assert quote_path("out dir/ü#?%.txt") == "out%20dir/%C3%BC%23%3F%25.txt"
    client, server = fake_client({
        ("GET", "/api/v1/sessions/ses_1/files/out%20dir/r%C3%A9sum%C3%A9%231.txt"): ok(b"cv"),
    })
    assert client.session_download("ses_1", "out dir/résumé#1.txt") == b"cv"
    for bad in ("", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", "a\0b"):
        with pytest.raises(ValueError):
            client.session_download("ses_1", bad)
        with pytest.raises(ValueError):
            client.download_file("exe_1", bad)
    assert len(server.sent) == 1, "an invalid path sends nothing"
    with pytest.raises(NotFoundError):
        client.get_session("ses/../x")
    assert server.sent[-1].path == "/api/v1/sessions/ses%2F..%2Fx"


def test_uploads_send_raw_bytes_and_stream_files(tmp_path):
    stored = {"path": "data/in.csv", "size": 3, "sha256": "cd" * 32}
    client, server = fake_client({("PUT", "/api/v1/sessions/ses_1/files/data/in.csv"): ok(stored, 201)})
    assert client.session_upload("ses_1", "data/in.csv", b"a,b") == FileInfo("data/in.csv", 3, "cd" * 32)
    assert (server.sent[-1].body, server.sent[-1].headers["Content-Type"]) == (b"a,b", "application/octet-stream")
    client.session_upload("ses_1", "data/in.csv", "é")
    assert server.sent[-1].body == "é".encode()
    client.session_upload("ses_1", "data/in.csv", bytearray(b"xyz"))
    assert server.sent[-1].body == b"xyz"
    local = tmp_path / "big.bin"
    local.write_bytes(b"\0" * 100_000)
    client.session_upload("ses_1", "data/in.csv", local)
    sent = server.sent[-1]
    assert sent.streamed and sent.body == b"\0" * 100_000 and sent.headers["Content-Length"] == "100000"
    with open(local, "rb") as f:
        client.session_upload("ses_1", "data/in.csv", f)
    assert server.sent[-1].streamed and len(server.sent[-1].body) == 100_000


def test_execution_files_and_downloads(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("plot.png")
        info.size = len(PNG)
        tar.addfile(info, io.BytesIO(PNG))
    archive = buffer.getvalue()
    client, server = fake_client({
        ("GET", "/api/v1/executions/exe_1/files"): ok(archive),
        ("GET", "/api/v1/executions/exe_1/files/plot.png"): ok(PNG, **{"Content-Type": "image/png"}),
    })
    assert client.download_file("exe_1", "plot.png") == PNG
    target = tmp_path / "plot.png"
    assert client.download_file("exe_1", "plot.png", target) == len(PNG) and target.read_bytes() == PNG
    sink = io.BytesIO()
    assert client.download_file("exe_1", "plot.png", sink) == len(PNG) and sink.getvalue() == PNG
    assert client.download_files_tar("exe_1", str(tmp_path / "all.tar")) == len(archive)
    assert server.sent[-1].query == "format=tar"
    with tarfile.open(tmp_path / "all.tar") as tar:
        assert tar.getnames() == ["plot.png"]
    assert client.download_files_tar("exe_1") == archive
    with pytest.raises(NotFoundError):
        client.download_file("exe_1", "missing.txt", tmp_path / "missing.txt")
    assert not (tmp_path / "missing.txt").exists()

    client, _ = fake_client({("GET", "/api/v1/executions/exe_1/files"): ok(
        {"files": [{"path": "plot.png", "size": 20412, "sha256": "9f2c"}], "truncated": False})})
    listed = client.execution_files("exe_1")
    assert listed.files == [FileInfo("plot.png", 20412, "9f2c")] and not listed.truncated


def test_the_session_handle():
    routes = {
        ("POST", "/api/v1/sessions"): ok(SESSION, 201),
        ("POST", "/api/v1/sessions/ses_1/eval"): ok(RESULT),
        ("PUT", "/api/v1/sessions/ses_1/files/a.txt"): ok({"path": "a.txt", "size": 1, "sha256": "00"}, 201),
        ("GET", "/api/v1/sessions/ses_1/files/a.txt"): ok(b"x"),
        ("GET", "/api/v1/sessions/ses_1/files"): ok({"files": [{"path": "a.txt", "size": 1, "sha256": "00"}]}),
        ("GET", "/api/v1/sessions/ses_1"): ok(SESSION),
        ("DELETE", "/api/v1/sessions/ses_1"): ok(dict(SESSION, state="ended")),
    }
    client, server = fake_client(routes)
    with client.open_session(requirements_txt="six", memory_mb=256) as s:
        assert s.id == "ses_1" and s.info.state == "idle"
        assert server.sent[-1].json() == {"requirements_txt": "six", "config": {"memory_mb": 256}}
        assert s.eval("6 * 7", timeout_seconds=3).result == "42"
        assert s.upload("a.txt", b"x").size == 1
        assert s.download("a.txt") == b"x"
        assert s.files().paths == ["a.txt"]
        assert s.refresh().session_id == "ses_1"
    assert s.closed and s.info.state == "ended" and server.sent[-1].method == "DELETE"
    s.close()
    assert server.sent[-1].method == "DELETE" and sum(x.method == "DELETE" for x in server.sent) == 1
    # A session that already ended on the server closes quietly.
    del routes[("DELETE", "/api/v1/sessions/ses_1")]
    client, _ = fake_client(routes)
    with client.open_session() as s:
        pass
    assert s.closed


def test_the_asyncio_session_handle():
    routes = {
        ("POST", "/api/v1/sessions"): ok(SESSION, 201),
        ("POST", "/api/v1/sessions/ses_1/eval"): ok(RESULT),
        ("GET", "/api/v1/sessions/ses_1/files/a.txt"): ok(b"x"),
        ("DELETE", "/api/v1/sessions/ses_1"): ok(dict(SESSION, state="ended")),
        ("GET", "/api/v1/executions/exe_1/files"): ok({"files": []}),
    }

    async def main():
        async with AsyncPythonExecutorClient(BASE, api_key="k") as client:
            server = FakeServer(routes)
            client._sync.session.mount(BASE, server)
            async with client.open_session("3.12", memory_mb=256) as s:
                assert s.id == "ses_1"
                assert server.sent[-1].json() == {"python_version": "3.12", "config": {"memory_mb": 256}}
                assert (await s.eval("6 * 7")).images() == [PNG]
                assert await s.download("a.txt") == b"x"
            assert s.closed and s.info.state == "ended"
            other = await client.open_session()
            assert other.id == "ses_1"
            await other.close()
            assert len(await client.execution_files("exe_1")) == 0
            with pytest.raises(SessionBusyError):
                routes[("POST", "/api/v1/sessions/ses_1/eval")] = ok({"error": "busy"}, 409)
                await client.session_eval("ses_1", "1")

    asyncio.run(main())
