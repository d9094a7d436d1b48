"""A published tool: which server has it, its name, and the model its result validates into.

Each server's `schemas` module lists its tools in a ToolCatalog; clients call them by ref and
get the typed result back (a test holds every ref to the tool the server really registers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from pydantic import BaseModel

ServerName = Literal["kubernetes", "mlflow", "prometheus"]
SERVERS: tuple[ServerName, ...] = ("kubernetes", "mlflow", "prometheus")
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class ToolRef(Generic[R]):
    server: ServerName
    name: str
    result: type[R]


class ToolCatalog:
    """The tools one server publishes, listed as they are declared."""

    def __init__(self, server: ServerName) -> None:
        self.server = server
        self.refs: list[ToolRef[BaseModel]] = []

    def ref(self, name: str, result: type[R]) -> ToolRef[R]:
        tool = ToolRef(self.server, name, result)
        self.refs.append(tool)  # type: ignore[arg-type]  # a ToolRef[R] is a ToolRef[BaseModel]
        return tool
