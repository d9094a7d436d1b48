"""What every trainops MCP server shares: one-line errors, hints, --read-only, the CLI."""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

from mcp.server.fastmcp import FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import ContentBlock, ToolAnnotations
from pydantic import ValidationError

from mcp_servers.settings import Settings, SettingsError, load_settings

# Added to pydantic's message where the fix is not obvious from it.
_FIX_HINTS = {
    "string_pattern_mismatch": "use lowercase letters, digits and '-', starting and ending "
    "with a letter or digit",
    "literal_error": "pick one of the values listed",
    "extra_forbidden": "remove it; the tool's schema lists the fields it takes",
}


class TrainopsMCP(FastMCP):
    """FastMCP whose tool errors are one line that says the fix, not a pydantic dump, and whose
    tool descriptions are docstrings without their source indentation."""

    def add_tool(self, fn: Any, *args: Any, description: str | None = None, **kwargs: Any) -> None:
        description = description or inspect.cleandoc(fn.__doc__ or "")
        super().add_tool(fn, *args, description=description, **kwargs)

    async def call_tool(
        self, name: str, arguments: dict[str, Any]
    ) -> Sequence[ContentBlock] | dict[str, Any]:
        try:
            return await super().call_tool(name, arguments)
        except ToolError as e:
            cause = e.__cause__
            if isinstance(cause, ValidationError):
                raise ToolError(one_line(cause)) from None
            if isinstance(cause, ToolError):  # a tool's own message, without FastMCP's prefix
                raise ToolError(str(cause)) from None
            raise


def one_line(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        message = item["msg"].removeprefix("Value error, ")
        got = item.get("input")
        text = f"{where}: {message}"
        if item["type"] not in ("missing", "value_error") and not isinstance(got, dict | list):
            text += f" (got {got!r})"
        if hint := _FIX_HINTS.get(item["type"]):
            text += f"; {hint}"
        problems.append(text)
    return "invalid arguments: " + "; ".join(problems)


def hints(
    title: str, *, read_only: bool, destructive: bool = False, idempotent: bool = False
) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        readOnlyHint=read_only,
        destructiveHint=destructive,
        idempotentHint=idempotent,
        openWorldHint=False,
    )


def hide_mutating_tools(server: FastMCP) -> None:
    """--read-only: drop every tool not marked readOnlyHint, so it can't even be listed."""
    for tool in server._tool_manager.list_tools():
        if not (tool.annotations and tool.annotations.readOnlyHint):
            server.remove_tool(tool.name)


def serve(
    build: Callable[[Settings], FastMCP], *, description: str, argv: list[str] | None = None
) -> None:
    """The CLI of a server: stdio by default, --transport streamable-http --port N for remote."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--read-only", action="store_true", help="hide tools that change anything")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        server = build(settings)
    except SettingsError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.read_only:
        hide_mutating_tools(server)
    server.settings.host = args.host
    server.settings.port = args.port
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        # FastMCP only guards localhost against DNS rebinding; beyond it, put auth in front.
        server.settings.transport_security = TransportSecuritySettings(
            enable_dns_rebinding_protection=False
        )
    server.run(transport=args.transport)
