"""Test-only: an MCP server whose every human text is reworded, kinds and data kept.

With it the agent's suite proves that the agent decides on error kinds and typed fields, never on
what a server's message says: error messages, and the `message` and `note` fields of results,
become text that shares no word with the original.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

HUMAN_TEXT_FIELDS = frozenset({"message", "note"})
_counter = itertools.count()


def reworded() -> str:
    return f"zq{next(_counter)} reworded for the test"


def reword_fields(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: reworded() if k in HUMAN_TEXT_FIELDS and isinstance(v, str) else reword_fields(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [reword_fields(v) for v in value]
    return value


def install() -> None:
    from mcp.types import CallToolResult, TextContent

    from common.errors import ERROR_KIND_META
    from mcp_servers.framework import TrainopsMCP

    original = TrainopsMCP.call_tool

    async def call_tool(self: TrainopsMCP, name: str, arguments: dict[str, Any]) -> Any:
        result = await original(self, name, arguments)
        if isinstance(result, CallToolResult) and result.isError:
            kind = (result.meta or {}).get(ERROR_KIND_META, "internal")
            text = TextContent(type="text", text=f"{kind}: {reworded()}")
            return CallToolResult(content=[text], isError=True, _meta=result.meta)
        if isinstance(result, tuple):  # (unstructured, structured) of a structured tool
            structured = reword_fields(result[1])
            return [TextContent(type="text", text=json.dumps(structured))], structured
        if isinstance(result, dict):
            return reword_fields(result)
        return result

    TrainopsMCP.call_tool = call_tool  # type: ignore[method-assign]
