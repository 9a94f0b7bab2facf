"""The MCP server at /mcp through the official MCP Python SDK over streamable HTTP (PYEXEC_SERVER, with
PYEXEC_API_KEY when the server wants one): tool answers sized for a model (docs/agents.md#output-in-tool-results).

The SDK reads one answer as one server-sent event of at most 1 MiB: before output was cut to a budget and sent once,
a run that printed about 600 KB (its stdout in both the text and the structured content) failed in the client.
"""

import asyncio
import os

import pytest

pytest.importorskip("mcp", reason="the official MCP SDK (scripts/test.sh installs the pinned version)")

import httpx2  # noqa: E402  (the SDK's HTTP client, installed with it)
from mcp import Client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402
from mcp.types import TextContent  # noqa: E402

SERVER = os.environ.get("PYEXEC_SERVER", "http://localhost:8080")

# 1024 lines of 1024 bytes: 1 MiB of stdout, the server's whole output cap.
A_MEBIBYTE = "import sys\nfor n in range(1024):\n    sys.stdout.write(f'{n:04d} ' + 'x' * 1018 + '\\n')\n"


async def call(tool: str, arguments: dict):
    headers = {}
    if os.environ.get("PYEXEC_API_KEY"):
        headers["Authorization"] = "Bearer " + os.environ["PYEXEC_API_KEY"]
    timeout = httpx2.Timeout(30, read=300)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        async with Client(streamable_http_client(SERVER + "/mcp", http_client=http)) as client:
            return await client.call_tool(tool, arguments)


def text_of(answer) -> str:
    return "".join(block.text for block in answer.content if isinstance(block, TextContent))


def test_a_mebibyte_of_stdout_comes_back_cut_with_a_note():
    answer = asyncio.run(call("run_python", {"code": A_MEBIBYTE}))
    assert not answer.is_error, text_of(answer)[:2000]
    structured = answer.structured_content
    assert structured["status"] == "completed" and structured["exit_code"] == 0
    assert structured["stdout_bytes"] == 1 << 20
    assert "stdout" not in structured, "stdout is sent once, in the text"

    text = text_of(answer)
    assert len(text.encode()) < 70_000, "within the default budget of 64 KiB"
    assert text.count("0000 xxxx") == 1 and "1023 xxxx" in text, "its start and its end"
    note = f"bytes of stdout left out here; the whole output is in GET /api/v1/executions/{structured['execution_id']}"
    assert note in text, text[32_000:34_000]


def test_small_output_is_whole_and_the_value_is_structured():
    answer = asyncio.run(call("run_python", {"code": "print('hello')\n6 * 7"}))
    assert not answer.is_error
    assert answer.structured_content["result"] == "42"
    assert answer.structured_content["stdout_bytes"] == len("hello")
    assert "--- stdout ---\nhello" in text_of(answer) and "left out" not in text_of(answer)
