"""The agent's only way out: persistent MCP sessions to trainops' three servers.

langchain-mcp-adapters opens a session (spawning a stdio server) per call by default; here each
server's session is opened once per agent run and reused by every node, so a tool call costs a
round trip, not a process start.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from langchain_core.tools import BaseTool
from langchain_mcp_adapters.client import MultiServerMCPClient
from langchain_mcp_adapters.tools import load_mcp_tools
from mcp import ClientSession

from mcp_servers.settings import Settings
from training.errors import one_line

SERVERS = ("kubernetes", "mlflow", "prometheus")


class ToolCallError(RuntimeError):
    """A tool answered with an error (bad arguments, an unreachable backend, ...)."""

    def __init__(self, server: str, tool: str, message: str) -> None:
        super().__init__(message)
        self.server = server
        self.tool = tool


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
    """Open sessions to the MCP servers for the life of one agent run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = MultiServerMCPClient(connections(settings))
        self._stack = contextlib.AsyncExitStack()
        self.sessions: dict[str, ClientSession] = {}

    async def __aenter__(self) -> Toolbox:
        for name in SERVERS:
            try:
                self.sessions[name] = await self._stack.enter_async_context(
                    self._client.session(name)
                )
            except Exception as e:  # an ExceptionGroup from the transport's task group, too
                await self._stack.aclose()
                url = self.settings.agent.mcp_urls.get(name)
                where = f"at {url}" if url else "over stdio (its own error, if any, is above)"
                raise ServerUnavailable(
                    f"the {name} MCP server did not start {where}: {_first_cause(e)}"
                ) from None
            except BaseException:
                await self._stack.aclose()
                raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def call(self, server: str, tool: str, **arguments: Any) -> dict[str, Any]:
        """A tool's structured result; a ToolCallError carrying the tool's one-line message."""
        arguments = {k: v for k, v in arguments.items() if v is not None}
        result = await self.sessions[server].call_tool(tool, arguments)
        if result.isError:
            text = " ".join(getattr(block, "text", "") for block in result.content).strip()
            raise ToolCallError(server, tool, text or f"{tool} failed")
        return result.structuredContent or {}

    async def read_only_tools(self, servers: tuple[str, ...] = SERVERS) -> list[BaseTool]:
        """LangChain tools for the tools that change nothing (for an LLM sub-agent)."""
        tools: list[BaseTool] = []
        for name in servers:
            for tool in await load_mcp_tools(self.sessions[name], server_name=name):
                if (tool.metadata or {}).get("readOnlyHint"):
                    tools.append(tool)
        return tools


def _first_cause(error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return one_line(error) or type(error).__name__
