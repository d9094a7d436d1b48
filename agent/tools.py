"""The agent's only way out: persistent MCP sessions to trainops' three servers.

langchain-mcp-adapters opens a session (spawning a stdio server) per call by default; here each
server's session is opened once per agent run and reused by every node, so a tool call costs a
round trip, not a process start. Every result is validated here into the model its server
publishes, and every error arrives as a ToolCallError with the server's error kind.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, TypeVar

import anyio
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp import ClientSession
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ValidationError

from common.errors import ERROR_KIND_META, ErrorKind, one_line
from common.settings import Settings
from common.validation import validation_error_line
from mcp_servers.toolref import SERVERS, ServerName, ToolRef

R = TypeVar("R", bound=BaseModel)


class ToolCallError(RuntimeError):
    """A tool answered with an error: its kind (what nodes route on) and its message (what a
    person reads)."""

    def __init__(self, tool: ToolRef[Any], kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.server = tool.server
        self.tool = tool.name
        self.kind = kind
        self.message = message


class ServerUnavailable(RuntimeError):
    """An MCP server did not start or answer; the message names it and where it was."""


def connections(settings: Settings) -> dict[str, dict[str, Any]]:
    # The servers read settings the same way; hand them this run's, whatever their source.
    env = {
        **os.environ,
        "TRAINOPS_HOME": str(settings.home),
        "TRAINOPS_BACKEND": settings.backend,
        "TRAINOPS_NAMESPACE": settings.namespace,
    }
    if settings.mlflow_tracking_uri:
        env["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    if settings.prometheus_url:
        env["TRAINOPS_PROMETHEUS_URL"] = settings.prometheus_url
    out: dict[str, dict[str, Any]] = {}
    for name in SERVERS:
        url = settings.agent.mcp_urls.get(name)
        if url:
            out[name] = {"transport": "streamable_http", "url": url}
        else:
            out[name] = {
                "transport": "stdio",
                "command": sys.executable,
                "args": ["-m", f"mcp_servers.{name}"],
                "env": env,
            }
    return out


class Toolbox:
    """Open sessions to the MCP servers for the life of one agent run.

    The three servers start at once: each session lives in a task of its own, which enters it,
    says it is ready, and holds it until the toolbox closes (a session's transport must be left
    by the task that entered it).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = MultiServerMCPClient(connections(settings))  # type: ignore[arg-type]
        self._stack = contextlib.AsyncExitStack()
        self._closing = anyio.Event()
        self.sessions: dict[ServerName, ClientSession] = {}

    async def __aenter__(self) -> Toolbox:
        tasks = await self._stack.enter_async_context(anyio.create_task_group())
        failures: dict[ServerName, BaseException] = {}
        opened = [anyio.Event() for _ in SERVERS]
        for name, ready in zip(SERVERS, opened, strict=True):
            tasks.start_soon(self._hold, name, ready, failures)
        try:
            for ready in opened:
                await ready.wait()
        except BaseException:
            await self._close()
            raise
        if failures:
            await self._close()
            name = next(n for n in SERVERS if n in failures)
            url = self.settings.agent.mcp_urls.get(name)
            where = f"at {url}" if url else "over stdio (its own error, if any, is above)"
            raise ServerUnavailable(
                f"the {name} MCP server did not start {where}: {_first_cause(failures[name])}"
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    async def _close(self) -> None:
        self._closing.set()
        await self._stack.aclose()

    async def _hold(
        self, name: ServerName, ready: anyio.Event, failures: dict[ServerName, BaseException]
    ) -> None:
        try:
            async with self._client.session(name) as session:
                self.sessions[name] = session
                ready.set()
                await self._closing.wait()
        except Exception as e:  # an ExceptionGroup from the transport's task group, too
            failures[name] = e
        finally:
            ready.set()

    async def call(self, tool: ToolRef[R], **arguments: Any) -> R:
        """The tool's result as the model its server publishes; a ToolCallError with the kind."""
        sent = {
            k: v.model_dump(mode="json", exclude_unset=True) if isinstance(v, BaseModel) else v
            for k, v in arguments.items()
            if v is not None
        }
        result = await self.sessions[tool.server].call_tool(tool.name, sent)
        if result.isError:
            raise tool_error(tool, result)
        try:
            return tool.result.model_validate(result.structuredContent or {})
        except ValidationError as e:
            raise ToolCallError(
                tool,
                ErrorKind.INTERNAL,
                f"{tool.name} answered outside its published schema: {validation_error_line(e)}",
            ) from None

    async def read_only_tools(self, servers: tuple[ServerName, ...] = SERVERS) -> list[BaseTool]:
        """LangChain tools for the tools that change nothing (for an LLM sub-agent)."""
        tools: list[BaseTool] = []
        for name in servers:
            for tool in await load_mcp_tools(self.sessions[name], server_name=name):
                if (tool.metadata or {}).get("readOnlyHint"):
                    tools.append(tool)
        return tools


def tool_error(tool: ToolRef[Any], result: CallToolResult) -> ToolCallError:
    """The error a tool answered with: its kind from the result's _meta (a server that gives
    none failed in a way it did not classify: internal), its message from the text."""
    declared = (result.meta or {}).get(ERROR_KIND_META)
    kind = ErrorKind(declared) if declared in set(ErrorKind) else ErrorKind.INTERNAL
    text = " ".join(b.text for b in result.content if isinstance(b, TextContent)).strip()
    message = text.removeprefix(f"{kind.value}: ") or f"{tool.name} failed"
    return ToolCallError(tool, kind, message)


def _first_cause(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return one_line(error) or type(error).__name__
