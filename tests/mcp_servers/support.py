"""Real MCP client sessions against our servers, over stdio or streamable HTTP."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.fastmcp import FastMCP
from mcp.shared.memory import create_connected_server_and_client_session

from common.errors import ERROR_KIND_META, ErrorKind
from common.net import free_port, http_ok
from common.settings import Settings
from tests.support import REPO, Service, clean_env, wait_for

GOLDEN = Path(__file__).parent / "golden"


def server_env(home: Path, **extra: str) -> dict[str, str]:
    return clean_env(TRAINOPS_HOME=str(home), **extra)


@asynccontextmanager
async def stdio_session(
    module: str, env: dict[str, str], *args: str
) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", module, *args], env=env, cwd=str(REPO)
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def memory_session(
    build: Callable[[Settings], FastMCP], settings: Settings, *, read_only: bool = False
) -> AsyncIterator[ClientSession]:
    """A client session to the server object in this process (the SDK's in-memory transport)."""
    from mcp_servers.framework import hide_mutating_tools

    server = build(settings)
    if read_only:
        hide_mutating_tools(server)
    async with create_connected_server_and_client_session(server) as session:
        yield session


@asynccontextmanager
async def http_session(url: str) -> AsyncIterator[ClientSession]:
    async with (
        streamable_http_client(url) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def start_http_server(
    module: str, env: dict[str, str], log: Path, *args: str
) -> tuple[Service, str]:
    port = free_port()
    service = Service(
        [
            sys.executable,
            "-m",
            module,
            "--transport",
            "streamable-http",
            "--port",
            str(port),
            *args,
        ],
        log=log,
        env=env,
        cwd=REPO,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    # Any HTTP answer (a 4xx for a bare GET included) means the server is listening.
    wait_for(
        lambda: service.check_alive() and _answers(url), timeout=30, what=f"{module} over HTTP"
    )
    return service, url


def _answers(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return http_ok(url)


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """The tool's structured result; fails the test if the tool reported an error."""
    result = await session.call_tool(tool, arguments)
    assert not result.isError, f"{tool} failed: {result.content[0].text}"
    return result.structuredContent


async def call_error(session: ClientSession, tool: str, **arguments: Any) -> str:
    """The error text of a call that must fail (`kind: message`, one line)."""
    return (await call_failure(session, tool, **arguments))[1]


async def call_failure(
    session: ClientSession, tool: str, **arguments: Any
) -> tuple[ErrorKind, str]:
    """The kind and text of a call that must fail; the text is one line that starts with it."""
    result = await session.call_tool(tool, arguments)
    assert result.isError, f"{tool} should have failed but returned {result.structuredContent}"
    text = result.content[0].text
    kind = ErrorKind((result.meta or {})[ERROR_KIND_META])
    assert text.startswith(f"{kind.value}: ") and "\n" not in text, text
    return kind, text


async def tool_snapshot(session: ClientSession) -> list[dict[str, Any]]:
    tools = (await session.list_tools()).tools
    return [
        {
            "name": t.name,
            "title": t.annotations.title if t.annotations else None,
            "description": t.description,
            "annotations": t.annotations.model_dump(exclude_none=True) if t.annotations else None,
            "inputSchema": t.inputSchema,
            "outputSchema": t.outputSchema,
            "meta": t.meta,
        }
        for t in sorted(tools, key=lambda t: t.name)
    ]


def assert_matches_golden(name: str, snapshot: Any, update: bool) -> None:
    path = GOLDEN / f"{name}.json"
    text = json.dumps(snapshot, indent=1, sort_keys=True) + "\n"
    if update:
        path.write_text(text)
    assert path.exists(), f"no {path.name}; run with UPDATE_GOLDEN=1 to create it"
    assert path.read_text() == text, (
        f"{path.name} changed: tool descriptions are prompts, review the diff and rerun with "
        "UPDATE_GOLDEN=1 to accept it"
    )
