"""OCI image references, by the grammar of distribution/reference (what `docker pull` takes)."""

from __future__ import annotations

import re
from typing import Final

_COMPONENT: Final = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN: Final = rf"(?:{_COMPONENT}(?:\.{_COMPONENT})*(?::[0-9]{{1,5}})?)"
_PATH: Final = r"(?:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)"
_TAG: Final = r"(?:[\w][\w.-]{0,127})"
_DIGEST: Final = r"(?:[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})"
IMAGE_REFERENCE: Final = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?"
)
MAX_REFERENCE_LENGTH: Final = 255 + 128 + 80


def is_image_reference(value: str) -> bool:
    """Whether `value` is one well-formed reference (no spaces, newlines, `..` or shell)."""
    return len(value) <= MAX_REFERENCE_LENGTH and IMAGE_REFERENCE.fullmatch(value) is not None


def image_name(value: str) -> str:
    """The repository of a well-formed reference, without its tag or digest."""
    match = IMAGE_REFERENCE.fullmatch(value)
    if match is None:
        raise ValueError(f"not an image reference: {value!r}")
    return match.group("name")
