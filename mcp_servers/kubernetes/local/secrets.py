"""This machine's Secrets, as the local backend hands them to jobs: one folder per Secret under
`$TRAINOPS_HOME/secrets/`, one file per key (like a mounted Secret volume). A job's spec and
manifest hold only the reference; the value is read when a replica starts.
"""

from __future__ import annotations

from pathlib import Path

from common.errors import NotFound


class SecretMissing(NotFound):
    """A job references a Secret key this machine does not have."""


def secret_path(root: Path, secret: str, key: str) -> Path:
    return root / secret / key


def read_secret(root: Path, secret: str, key: str) -> str:
    path = secret_path(root, secret, key)
    try:
        return path.read_text().rstrip("\n")
    except (FileNotFoundError, NotADirectoryError):
        raise SecretMissing(
            f"secret {secret!r} has no key {key!r}: write its value to {path} (chmod 600), as "
            f"`kubectl create secret generic {secret} --from-literal={key}=...` would on a cluster"
        ) from None


def known_values(root: Path, refs: list[tuple[str, str]]) -> list[str]:
    """The values of the referenced keys that exist (for redacting them from outputs)."""
    values = []
    for secret, key in refs:
        try:
            value = read_secret(root, secret, key)
        except SecretMissing:
            continue
        if len(value) >= 4:  # shorter ones would redact ordinary text
            values.append(value)
    return values
