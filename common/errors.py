"""Error kinds: the stable, documented reason a tool call failed, which clients route on.

A person reads an error's message; a program reads its kind. Every tool error of every trainops
MCP server carries one of these kinds (in the result's `_meta` under `ERROR_KIND_META` and at the
head of its text, `kind: message`), and the agent decides on the kind alone, never on wording.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class ErrorKind(StrEnum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    REFUSED = "refused"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


ERROR_KIND_MEANINGS: Final[dict[ErrorKind, str]] = {
    ErrorKind.INVALID_ARGUMENT: "the arguments are malformed or inconsistent; fix them and retry",
    ErrorKind.NOT_FOUND: "what the arguments name does not exist (a job, run, metric or model)",
    ErrorKind.CONFLICT: "it clashes with what exists (a name already taken); choose another",
    ErrorKind.REFUSED: "a policy forbids it (namespace, image, caps, concurrency); ask within it",
    ErrorKind.UNAVAILABLE: "a system behind the server (MLflow, Prometheus, the cluster) is "
    "down, unreachable or not configured; retry once it is back",
    ErrorKind.INTERNAL: "the server failed unexpectedly; the message says where",
}
ERROR_KIND_META: Final = "trainops.io/error-kind"
"""The key of a tool error's kind in the MCP result's `_meta`."""


class TrainopsError(Exception):
    """An expected failure: a kind for programs, a one-line message that says the fix for people."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, *, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind

    @property
    def message(self) -> str:
        return str(self)


class InvalidArgument(TrainopsError):
    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(TrainopsError):
    kind = ErrorKind.NOT_FOUND


class Conflict(TrainopsError):
    kind = ErrorKind.CONFLICT


class Refused(TrainopsError):
    kind = ErrorKind.REFUSED


class Unavailable(TrainopsError):
    kind = ErrorKind.UNAVAILABLE


def one_line(error: BaseException | str) -> str:
    """An error's message on one line (library errors often span several)."""
    return " ".join(str(error).split())


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an error's message (a library's summary, without its dump)."""
    lines = str(getattr(error, "message", None) or error).strip().splitlines()
    return lines[0][:limit] if lines else type(error).__name__
