"""Kubernetes resource quantities ("500m", "4Gi") as numbers."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
MEMORY_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"
"""A memory quantity as a job spec takes it."""
_BYTES = re.compile(r"([0-9.]+)([KMGT]i?)?")


def parse_cpu(quantity: str) -> float:
    """CPUs in a quantity: "2" -> 2.0, "500m" -> 0.5."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def parse_bytes(quantity: str) -> int:
    """Bytes in a quantity: "4Gi" -> 4294967296, "1G" -> 1000000000."""
    match = _BYTES.fullmatch(quantity.strip())
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2) or ""])
