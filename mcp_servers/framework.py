"""What every trainops MCP server is built from: tools whose errors carry a kind, hints,
--read-only, a client to the system behind the server, and the command line.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from io import TextIOWrapper
from typing import Any, Generic, TypeVar

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ContentBlock, Icon, TextContent, ToolAnnotations
from pydantic import ValidationError

from common.errors import (
    ERROR_KIND_MEANINGS,
    ERROR_KIND_META,
    ErrorKind,
    InvalidArgument,
    NotFound,
    TrainopsError,
    Unavailable,
    one_line,
)
from common.settings import Settings, SettingsError, load_settings
from common.validation import validation_error_line
from mcp_servers.redaction import redact, redact_text

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")
T = TypeVar("T")

ERROR_KINDS_META = "trainops.io/error-kinds"
"""The key of a tool's declared error kinds in its `_meta` (tools/list)."""
ANY_TOOL_ERRORS = (ErrorKind.INVALID_ARGUMENT, ErrorKind.INTERNAL)
ERRORS_NOTE = (
    "A failed call's text starts with its error kind (invalid_argument, not_found, conflict, "
    f"refused, unavailable, internal), which the result's _meta also holds under "
    f"{ERROR_KIND_META!r}; each tool's description says when it answers with which."
)
"""Kinds every tool may answer with: bad arguments, and a failure of the server itself."""


class TrainopsMCP(FastMCP):
    """FastMCP whose every tool error is one line with a kind (see `common.errors`), never a
    pydantic dump or a traceback, and whose tool descriptions name the kinds they can answer."""

    def __init__(self, name: str, *, instructions: str, **settings: Any) -> None:
        super().__init__(name, instructions=f"{instructions} {ERRORS_NOTE}", **settings)

    def add_tool(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
        icons: list[Icon] | None = None,
        meta: dict[str, Any] | None = None,
        structured_output: bool | None = None,
    ) -> None:
        super().add_tool(
            fn,
            name=name,
            title=title,
            description=description or inspect.cleandoc(fn.__doc__ or ""),
            annotations=annotations,
            icons=icons,
            meta=meta,
            structured_output=structured_output,
        )

    async def call_tool(  # type: ignore[override]  # an error is a result with a kind, not raised
        self, name: str, arguments: dict[str, Any]
    ) -> (
        Sequence[ContentBlock]
        | dict[str, Any]
        | tuple[Sequence[ContentBlock], dict[str, Any]]
        | CallToolResult
    ):
        try:
            if self._tool_manager.get_tool(name) is None:
                raise NotFound(f"unknown tool {name!r}; list the tools to see what this server has")
            if where := _nul_byte(arguments):
                raise InvalidArgument(f"{where} holds a NUL byte; remove it")
            result = await super().call_tool(name, arguments)
        except (Exception, SystemExit) as e:  # every failure is a result; none ends the server
            kind, message = classify(e, name)
            return error_result(kind, redact_text(message))
        if isinstance(result, tuple):  # (unstructured, structured), as FastMCP converts it
            structured = redact(result[1])
            return [TextContent(type="text", text=json.dumps(structured, indent=2))], structured
        return redact(result)


def _nul_byte(value: Any, where: str = "arguments") -> str | None:
    """Where a NUL byte hides in a tool's arguments (no path, name or flag may hold one)."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_byte(str(key), where) or _nul_byte(item, f"{where}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            if found := _nul_byte(item, f"{where}[{i}]"):
                return found
    return None


def classify(error: BaseException, tool: str) -> tuple[ErrorKind, str]:
    """The kind and the one-line message of what a tool call raised."""
    cause = error.__cause__ if isinstance(error, ToolError) and error.__cause__ else error
    if isinstance(cause, TrainopsError):
        return cause.kind, one_line(cause.message)
    if isinstance(cause, ValidationError):
        return ErrorKind.INVALID_ARGUMENT, validation_error_line(cause)
    if isinstance(cause, ToolError):
        return ErrorKind.INTERNAL, one_line(cause)
    log.warning("tool %s failed unexpectedly", tool, exc_info=cause)
    return ErrorKind.INTERNAL, f"{tool} failed: {type(cause).__name__}: {one_line(cause)}"


def error_result(kind: ErrorKind, message: str) -> CallToolResult:
    """A tool error: `kind: message` as text for people and models, the kind in `_meta`."""
    return CallToolResult(
        content=[TextContent(type="text", text=f"{kind.value}: {message}")],
        isError=True,
        _meta={ERROR_KIND_META: kind.value},
    )


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


def tool(
    mcp: FastMCP, annotations: ToolAnnotations, *, errors: Mapping[ErrorKind, str]
) -> Callable[[F], F]:
    """Register a tool whose description ends with the error kinds it answers with, and when."""

    def register(fn: F) -> F:
        declared = {**errors}
        lines = [f"- {kind.value}: {when}" for kind, when in declared.items()]
        lines += [
            f"- {kind.value}: {ERROR_KIND_MEANINGS[kind]}"
            for kind in ANY_TOOL_ERRORS
            if kind not in declared
        ]
        description = inspect.cleandoc(fn.__doc__ or "") + "\n\nErrors (kind: when):\n"
        kinds = sorted({*declared, *ANY_TOOL_ERRORS})
        mcp.add_tool(
            fn,
            description=description + "\n".join(lines),
            annotations=annotations,
            meta={ERROR_KINDS_META: [kind.value for kind in kinds]},
        )
        return fn

    return register


def hide_mutating_tools(server: FastMCP) -> None:
    """--read-only: drop every tool not marked readOnlyHint, so it can't even be listed."""
    for listed in server._tool_manager.list_tools():
        if not (listed.annotations and listed.annotations.readOnlyHint):
            server.remove_tool(listed.name)


# -- the system behind a server ----------------------------------------------------------------


@dataclass(frozen=True)
class Upstream(Generic[C]):
    """The client of the system a server wraps (MLflow, Prometheus), and how its failures read.

    `errors` maps the client library's exceptions to TrainopsErrors; calls run off the event
    loop, since the clients block.
    """

    name: str
    url: str | None
    client: C | None
    setting: str
    """What to set when no URL is configured, e.g. MLFLOW_TRACKING_URI."""
    errors: Callable[[Upstream[C]], AbstractContextManager[None]]

    def unreachable(self, error: BaseException) -> Unavailable:
        return Unavailable(
            f"{self.name} at {self.url} is unreachable ({one_line(error)[:200]}); start it with "
            f"`trainops up` or point {self.setting} at a running server"
        )

    async def run(self, fn: Callable[[C], T]) -> T:
        client = self.client
        if client is None:
            raise Unavailable(
                f"no {self.name} is configured; run `trainops up` or set {self.setting}"
            )

        def call() -> T:
            with self.errors(self):
                return fn(client)

        return await anyio.to_thread.run_sync(call)


def upstream(ctx: Context[Any, Any, Any]) -> Upstream[Any]:
    """The server's Upstream, from the tool call's context (what the lifespan yielded)."""
    return ctx.request_context.lifespan_context


# -- the command line ----------------------------------------------------------------------------


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
    if args.transport == "stdio":
        anyio.run(serve_stdio, server)
    else:
        server.run(transport=args.transport)


async def serve_stdio(server: FastMCP) -> None:
    """stdio with the protocol on a channel of its own: stdout is JSON-RPC, so whatever else in
    this process (a library, a child) writes to stdout lands on stderr instead."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    out = anyio.wrap_file(TextIOWrapper(protocol, encoding="utf-8", write_through=True))
    async with stdio_server(stdout=out) as (read_stream, write_stream):
        low = server._mcp_server
        await low.run(read_stream, write_stream, low.create_initialization_options())
