"""The Python client against a fake server (no network): sessions, files out, rich outputs, errors.

A `requests` transport adapter mounted on the client's session (an `httpx.MockTransport` for the asyncio client)
answers from a table and records what was sent.
"""

import asyncio
import base64
import inspect
import io
import json
import tarfile
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ReadTimeoutError

from python_executor_client import (
    AsyncPythonExecutorClient,
    AsyncSession,
    ExecutionConfig,
    ExecutionResult,
    ExecutionStatus,
    FileInfo,
    Metadata,
    NotFoundError,
    Output,
    PythonExecutorClient,
    Session,
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
    def __init__(self, request: requests.PreparedRequest, timeout: Any = None) -> None:
        self.method = request.method
        parts = urlsplit(request.url)
        self.path = parts.path
        self.query = parts.query
        self.headers = request.headers
        self.timeout = timeout
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
        sent = Sent(request, timeout)
        self.sent.append(sent)
        route = self.routes.get((sent.method, sent.path), (404, {"error": "not found"}, {}))
        status, body, headers = route(request) if callable(route) else route
        content = body if isinstance(body, bytes) or hasattr(body, "stream") else json.dumps(body).encode()
        response = requests.Response()
        response.status_code = status
        response.reason = {200: "OK", 201: "Created", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
                           400: "Bad Request"}.get(status, "")
        response.headers = CaseInsensitiveDict(headers)
        response.encoding = requests.utils.get_encoding_from_headers(response.headers)
        response.raw = content if hasattr(content, "stream") else io.BytesIO(content)
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass


def fake_client(routes, api_key: Optional[str] = "k", **options: Any) -> Tuple[PythonExecutorClient, FakeServer]:
    client = PythonExecutorClient(BASE, api_key=api_key, **{"timeout": 5, **options})
    server = FakeServer(routes)
    client.session.mount(BASE, server)
    return client, server


def ok(body: Any, status: int = 200, **headers: str) -> Tuple[int, Any, Dict[str, str]]:
    return status, body, headers


class AsyncSent(Sent):
    """What the asyncio client sent (an `httpx.Request`, its body already read)."""

    def __init__(self, request: httpx.Request, body: bytes, streamed: bool) -> None:
        self.method = request.method
        self.path = request.url.path
        self.query = request.url.query.decode()
        self.headers = request.headers
        self.timeout = request.extensions.get("timeout")
        self.streamed = streamed
        self.body = body


class AsyncFakeServer(httpx.AsyncBaseTransport):
    """`FakeServer` for the asyncio client, as its `transport`: answers from `routes`, where a route may also be a
    function of the request returning an `httpx.Response` (for streams)."""

    def __init__(self, routes: Dict[Tuple[str, str], Any]) -> None:
        self.routes = routes
        self.sent: List[AsyncSent] = []
        self.transport = self

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        streamed = not isinstance(request.stream, httpx.ByteStream)
        sent = AsyncSent(request, await request.aread(), streamed)
        self.sent.append(sent)
        route = self.routes.get((sent.method, sent.path), (404, {"error": "not found"}, {}))
        if callable(route):
            return route(request)
        status, body, headers = route
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers)


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
    assert plain.install_ms is None, "absent when nothing was installed"
    installed = ExecutionResult.from_dict({"execution_id": "exe_4", "status": "completed", "exit_code": 0,
                                           "duration_ms": 40, "install_ms": 1250})
    assert (installed.duration_ms, installed.install_ms) == (40, 1250)
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
        server = AsyncFakeServer(routes)
        async with AsyncPythonExecutorClient(BASE, api_key="k", transport=server.transport) as client:
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


# -- HTTP timeouts of calls that wait for a run ------------------------------------------------------------------

RUN_ROUTES = {
    ("POST", "/api/v1/eval"): ok(RESULT),
    ("POST", "/api/v1/exec/sync"): ok(RESULT),
    ("POST", "/api/v1/exec/async"): ok({"execution_id": "exe_1"}, 202),
    ("POST", "/api/v1/sessions/ses_1/eval"): ok(RESULT),
    ("GET", "/health"): ok({"status": "ok"}),
}


def test_runs_get_an_http_timeout_beyond_their_own_timeout():
    client, server = fake_client(RUN_ROUTES)  # timeout=5: shorter than any run below

    def timeout_of(call, *args, **kwargs):
        call(*args, **kwargs)
        return server.sent[-1].timeout

    # The run's timeout plus the margin (30 s); the server's default (300 s) when the request sets none.
    assert timeout_of(client.eval, "1", timeout_seconds=100) == 130
    assert timeout_of(client.eval, "1") == 330
    assert timeout_of(client.execute_sync, files={"main.py": "1"}, timeout_seconds=60) == 90
    meta = Metadata(config=ExecutionConfig(timeout_seconds=10))
    assert timeout_of(client.execute_sync, files={"main.py": "1"}, metadata=meta) == 40
    assert timeout_of(client.execute_sync, files={"main.py": "1"}) == 330
    assert timeout_of(client.session_eval, "ses_1", "1", timeout_seconds=20) == 50
    # The client's timeout is a floor, and stays the timeout of calls that do not wait for a run.
    assert timeout_of(client.eval, "1", timeout_seconds=1) == 31
    assert timeout_of(client.health) == 5
    assert timeout_of(client.execute_async, files={"main.py": "1"}) == 5
    # A timeout given for the call wins, whatever the run's.
    assert timeout_of(client.eval, "1", timeout_seconds=100, http_timeout=7) == 7
    assert timeout_of(client.execute_sync, files={"main.py": "1"}, timeout_seconds=60, http_timeout=(1, 2)) == (1, 2)
    assert timeout_of(client.session_eval, "ses_1", "1", timeout_seconds=20, http_timeout=3) == 3

    client, server = fake_client(RUN_ROUTES, timeout=600)
    client.eval("1", timeout_seconds=10)
    assert server.sent[-1].timeout == 600
    client, server = fake_client(RUN_ROUTES, timeout=(2, 5), timeout_margin=10, default_run_timeout=20)
    client.eval("1")
    assert server.sent[-1].timeout == (2, 30), "only the read timeout grows"
    client, server = fake_client(RUN_ROUTES, timeout=None)
    client.eval("1", timeout_seconds=10)
    assert server.sent[-1].timeout is None, "no limit stays no limit"


def test_the_asyncio_client_gives_runs_the_same_http_timeouts():
    server = AsyncFakeServer(RUN_ROUTES)

    async def main():
        async with AsyncPythonExecutorClient(BASE, timeout=5, transport=server.transport) as client:
            await client.eval("1", timeout_seconds=100)
            assert server.sent[-1].timeout["read"] == 130
            await client.execute_sync(files={"main.py": "1"})
            assert server.sent[-1].timeout["read"] == 330
            await client.session_eval("ses_1", "1", timeout_seconds=20)
            assert server.sent[-1].timeout["read"] == 50
            await client.eval("1", timeout_seconds=100, http_timeout=7)
            assert server.sent[-1].timeout["read"] == 7
            await client.health()
            assert server.sent[-1].timeout == {"connect": 5, "read": 5, "write": 5, "pool": 5}
        async with AsyncPythonExecutorClient(BASE, timeout=httpx.Timeout(5, read=8), transport=server.transport) as c:
            await c.eval("1", timeout_seconds=100)
            assert server.sent[-1].timeout == {"connect": 5, "read": 130, "write": 5, "pool": 5}

    asyncio.run(main())


# -- event streams that time out ---------------------------------------------------------------------------------


def sse(*events: Tuple[str, Any]) -> bytes:
    return "".join(f"event: {kind}\ndata: {json.dumps(data)}\n\n" for kind, data in events).encode()


def out(data: str, stream: str = "stdout") -> Tuple[str, Any]:
    return "output", {"stream": stream, "data": data}


DONE = dict(RESULT, stdout="début\nfin\n", stderr="warn\n", outputs=[], files=[])
SSE_HEADERS = {"Content-Type": "text/event-stream"}
# Three connections: output then silence (a read time-out); the replay, silence again; the replay in other pieces,
# new output and the result.
STREAMS = [
    [b": keep-alive\n\n" + sse(("status", {"status": "running"}), out("début\n")), None],
    [sse(out("début\n")), None],
    [sse(out("dé"), out("but\nfin\n"), out("warn\n", "stderr"), ("result", DONE))],
]
EXPECTED_OUTPUT = [("stdout", "début\n"), ("stdout", "fin\n"), ("stderr", "warn\n")]


class TimingOutBody:
    """A urllib3-like body: its chunks, then (for a None) the read time-out urllib3 raises when nothing comes."""

    def __init__(self, chunks: List[Optional[bytes]]) -> None:
        self.chunks = chunks

    def stream(self, amt: Any = None, decode_content: Any = None):
        for chunk in self.chunks:
            if chunk is None:
                raise ReadTimeoutError(None, "/events", "Read timed out.")
            yield chunk

    def close(self) -> None:
        pass


def test_follow_picks_up_a_stream_that_timed_out():
    connections = []

    def events(request):
        connections.append(request)
        return ok(TimingOutBody(STREAMS[min(len(connections), len(STREAMS)) - 1]), **SSE_HEADERS)

    client, _ = fake_client({("GET", "/api/v1/executions/exe_1/events"): events})
    seen = []
    result = client.follow("exe_1", on_output=lambda stream, data: seen.append((stream, data)))
    assert result.stdout == "début\nfin\n" and len(connections) == 3
    assert seen == EXPECTED_OUTPUT, "replayed output is not handed out twice; SSE is UTF-8"

    connections.clear()
    kinds = [e.kind for e in client.stream_events("exe_1")]
    assert kinds == ["status", "output", "output", "output", "result"]
    connections.clear()
    with pytest.raises(requests.ConnectionError):
        list(client.stream_events("exe_1", resume=False))


class TimingOutStream(httpx.AsyncByteStream):
    def __init__(self, chunks: List[Optional[bytes]]) -> None:
        self.chunks = chunks

    async def __aiter__(self):
        for chunk in self.chunks:
            if chunk is None:
                raise httpx.ReadTimeout("timed out")
            yield chunk


def test_the_asyncio_follow_picks_up_a_stream_that_timed_out():
    connections = []

    def events(request):
        connections.append(request)
        chunks = STREAMS[min(len(connections), len(STREAMS)) - 1]
        return httpx.Response(200, headers=SSE_HEADERS, stream=TimingOutStream(chunks))

    server = AsyncFakeServer({("GET", "/api/v1/executions/exe_1/events"): events})

    async def main():
        async with AsyncPythonExecutorClient(BASE, transport=server.transport) as client:
            seen = []

            async def collect(stream, data):
                seen.append((stream, data))

            result = await client.follow("exe_1", on_output=collect)
            assert result.stdout == "début\nfin\n" and len(connections) == 3
            assert seen == EXPECTED_OUTPUT
            connections.clear()
            with pytest.raises(httpx.ReadTimeout):
                [e async for e in client.stream_events("exe_1", resume=False)]

    asyncio.run(main())


# -- the asyncio client: natively async, and the same methods as the synchronous one --------------------------


def public_methods(cls: type) -> Dict[str, Any]:
    return {name: member for name, member in inspect.getmembers(cls, callable) if not name.startswith("_")}


def test_both_clients_have_the_same_methods_and_parameters():
    sync, aio = public_methods(PythonExecutorClient), public_methods(AsyncPythonExecutorClient)
    assert sorted(aio) == sorted(sync)
    for name, method in sync.items():
        assert list(inspect.signature(aio[name]).parameters) == list(inspect.signature(method).parameters), name
        if name == "open_session":
            assert not inspect.iscoroutinefunction(aio[name])  # a handle, awaited or used with `async with`
        elif name == "stream_events":
            assert inspect.isasyncgenfunction(aio[name])
        else:
            assert inspect.iscoroutinefunction(aio[name]), name
    handles, async_handles = public_methods(Session), public_methods(AsyncSession)
    assert sorted(set(async_handles) - {"open"}) == sorted(handles)
    for name, method in handles.items():
        assert list(inspect.signature(async_handles[name]).parameters) == list(inspect.signature(method).parameters)


def test_the_asyncio_client_is_natively_async():
    many = 64  # more than any thread pool would run at once

    async def main():
        arrived = []
        everyone = asyncio.Event()

        async def handle(request):  # answers once all the requests are in flight together
            arrived.append(request)
            if len(arrived) == many:
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 10)
            return httpx.Response(200, json=RESULT)

        async with AsyncPythonExecutorClient(BASE, transport=httpx.MockTransport(handle)) as client:
            assert isinstance(client.http, httpx.AsyncClient)
            results = await asyncio.gather(*(client.eval("6 * 7") for _ in range(many)))
        assert [r.result for r in results] == ["42"] * many

    asyncio.run(main())


def test_the_asyncio_client_requests(tmp_path):
    stored = {"path": "in.bin", "size": 3, "sha256": "cd" * 32}
    server = AsyncFakeServer({
        ("GET", "/health"): ok({"status": "ok"}),
        ("POST", "/api/v1/exec/sync"): ok(RESULT),
        ("POST", "/api/v1/exec/async"): ok({"execution_id": "exe_1"}, 202),
        ("GET", "/api/v1/executions/exe_1"): ok(RESULT),
        ("DELETE", "/api/v1/executions/exe_1"): ok({"status": "killed"}),
        ("GET", "/api/v1/executions"): ok({"executions": [RESULT], "next_cursor": "c2"}),
        ("GET", "/api/v1/executions/exe_1/files/plot.png"): ok(PNG),
        ("GET", "/api/v1/sessions"): ok({"sessions": [SESSION]}),
        ("PUT", "/api/v1/sessions/ses_1/files/in.bin"): ok(stored, 201),
        ("POST", "/api/v1/sessions"): ok({"error": "too many sessions"}, 429, **{"Retry-After": "3"}),
    })

    async def main():
        async with AsyncPythonExecutorClient(BASE, api_key="k", transport=server.transport) as client:
            assert (await client.health())["status"] == "ok"
            assert server.sent[-1].headers["Authorization"] == "Bearer k"
            r = await client.execute_sync(files={"main.py": "print(1)"}, script_args=["-v"], timeout_seconds=9)
            assert r.result == "42"
            body = server.sent[-1].body
            assert b'name="tar"; filename="code.tar"' in body
            assert b'{"entrypoint": "main.py", "script_args": ["-v"], "config": {"timeout_seconds": 9' in body
            with pytest.raises(TypeError):
                await client.execute_sync(files={"main.py": "1"}, no_such_option=1)
            assert await client.execute_async(files={"main.py": "1"}) == "exe_1"
            assert (await client.wait_for_completion("exe_1")).status == ExecutionStatus.COMPLETED
            assert await client.kill_execution("exe_1") == ExecutionStatus.KILLED
            assert await client.kill("exe_1") == ExecutionStatus.KILLED
            page = await client.list_executions(status="failed", limit=2)
            assert page["next_cursor"] == "c2" and page["executions"][0].execution_id == "exe_1"
            assert server.sent[-1].query == "limit=2&status=failed"
            assert await client.download_file("exe_1", "plot.png") == PNG
            assert await client.download_file("exe_1", "plot.png", tmp_path / "p.png") == len(PNG)
            assert (tmp_path / "p.png").read_bytes() == PNG
            sink = io.BytesIO()
            assert await client.download_file("exe_1", "plot.png", sink) == len(PNG) and sink.getvalue() == PNG
            with pytest.raises(NotFoundError) as missing:
                await client.download_file("exe_1", "gone.txt", tmp_path / "gone.txt")
            assert missing.value.response.status_code == 404 and not (tmp_path / "gone.txt").exists()
            with pytest.raises(ValueError):
                await client.download_file("exe_1", "../x")
            assert [s.session_id for s in await client.list_sessions()] == ["ses_1"]

            assert await client.session_upload("ses_1", "in.bin", "é") == FileInfo("in.bin", 3, "cd" * 32)
            assert server.sent[-1].body == "é".encode() and not server.sent[-1].streamed
            local = tmp_path / "big.bin"
            local.write_bytes(b"\1" * 3_000_000)
            await client.session_upload("ses_1", "in.bin", local)
            sent = server.sent[-1]
            assert sent.streamed and sent.body == local.read_bytes() and sent.headers["Content-Length"] == "3000000"
            assert sent.headers["Content-Type"] == "application/octet-stream"
            await client.session_upload("ses_1", "in.bin", io.BytesIO(b"xyz"))
            assert server.sent[-1].body == b"xyz" and server.sent[-1].headers["Content-Length"] == "3"

            with pytest.raises(TooManyRequestsError) as full:
                await client.create_session()
            assert full.value.retry_after == 3.0 and str(full.value) == "429 Too Many Requests: too many sessions"
            assert isinstance(full.value, requests.HTTPError)

    asyncio.run(main())
