"""Secrets never leave a server in clear: values of secret-looking names (`API_TOKEN=...`,
`"password": "..."`), passwords in URLs, and the values of a job's own Secrets are redacted in
every tool output."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any, Final

REDACTED: Final = "[redacted]"
_SECRET_WORDS: Final = frozenset(
    {
        "SECRET",
        "SECRETS",
        "TOKEN",
        "PASSWORD",
        "PASSWD",
        "PASSPHRASE",
        "PWD",
        "APIKEY",
        "CREDENTIAL",
        "CREDENTIALS",
        "AUTH",
        "COOKIE",
        "PRIVATE",
    }
)
_KEY_WORDS: Final = frozenset(
    {"API", "ACCESS", "PRIVATE", "SECRET", "SESSION", "SIGNING", "CLIENT"}
)


def is_secret_name(name: str) -> bool:
    """Whether a variable of this name holds a secret (AWS_SECRET_ACCESS_KEY, HF_TOKEN,
    DB_PASSWORD, OPENAI_API_KEY; not TOKENIZERS_PARALLELISM): its value travels as a reference
    and is redacted in every output."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+|(?<=[a-z])(?=[A-Z])", name) if w]
    upper = [w.upper() for w in words]
    if any(w in _SECRET_WORDS for w in upper):
        return True
    return any(a in _KEY_WORDS and b in ("KEY", "ID") for a, b in itertools.pairwise(upper))


_ASSIGNMENT: Final = re.compile(
    r"""(?P<name>["']?(?P<bare>[A-Za-z_][A-Za-z0-9_.-]*)["']?)"""
    r"""(?P<sep>\s*(?:=|:)\s*["']?)(?P<value>[^\s"',;}\]]+)"""
)
_URL_PASSWORD: Final = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:)[^@\s/]+@")


def redact_text(text: str, known: Iterable[str] = ()) -> str:
    for value in known:
        text = text.replace(value, REDACTED)

    def assignment(match: re.Match[str]) -> str:
        if not is_secret_name(match.group("bare")) or match.group("value") == REDACTED:
            return match.group(0)
        return f"{match.group('name')}{match.group('sep')}{REDACTED}"

    text = _ASSIGNMENT.sub(assignment, text)
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)


def redact(value: Any, known: Iterable[str] = ()) -> Any:
    """`value` (a tool's JSON output) with every string redacted; secret-named keys too."""
    known = list(known)
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, dict):
        return {
            k: REDACTED
            if isinstance(v, str) and isinstance(k, str) and is_secret_name(k)
            else redact(v, known)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v, known) for v in value]
    return value
