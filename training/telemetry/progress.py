"""One JSON line per event on stdout, for the orchestrator that watches the job (rank 0 only)."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO


class Progress:
    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        line = json.dumps({"event": event, "time": round(time.time(), 3), **_finite(fields)})
        print(line, file=self.stream, flush=True)

    def notice(self, text: str) -> None:
        """A plain line for people reading the log (warnings that must not be missed)."""
        if self.enabled:
            print(text, file=self.stream, flush=True)


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: report them as strings rather than emit invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
