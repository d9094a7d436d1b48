"""Reading a job's output the way an agent needs it: bounded tails, progress, the error line."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from mcp_servers.kubernetes.schemas import Progress

MAX_TAIL_BYTES = 1 << 20
_EXCEPTION_LINE = re.compile(r"^(\[rank\d+\]: )?[A-Za-z_.]*(Error|Exception|Interrupt)\b.*: ")


def read_tail(
    path: Path, max_lines: int, max_bytes: int = MAX_TAIL_BYTES
) -> tuple[list[str], bool]:
    """The last `max_lines` lines (at most `max_bytes` read), and whether older lines exist."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return [], False
    lines = data.decode(errors="replace").splitlines()
    if start > 0 and lines:
        lines = lines[1:]  # the first line was cut by the byte window
    truncated = start > 0 or len(lines) > max_lines
    return lines[-max_lines:] if max_lines else [], truncated


def progress_events(lines: list[str]) -> list[dict[str, Any]]:
    events = []
    for line in lines:
        if line.startswith('{"event"'):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def last_progress(path: Path) -> tuple[Progress | None, str | None]:
    """The latest progress event of rank 0 and the MLflow run id it reported, from its log."""
    lines, _ = read_tail(path, max_lines=5000)
    events = progress_events(lines)
    run_id = next((e["mlflow_run_id"] for e in reversed(events) if e.get("mlflow_run_id")), None)
    latest = next(
        (e for e in reversed(events) if e["event"] in ("epoch", "done", "start", "resumed")), None
    )
    if latest is None:
        return None, run_id
    metrics = latest.get("metrics") if latest["event"] == "done" else latest
    numbers = {
        k: float(v)
        for k, v in (metrics or {}).items()
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and k not in ("epoch", "epochs", "time", "step", "world_size", "restart_count")
    }
    return (
        Progress(
            event=latest["event"],
            epoch=latest.get("epoch") or latest.get("epochs"),
            epochs=latest.get("epochs"),
            metrics={k: v for k, v in numbers.items() if math.isfinite(v)},
            nonfinite_metrics={k: str(v) for k, v in numbers.items() if not math.isfinite(v)},
            time=latest.get("time"),
        ),
        run_id,
    )


def last_error_line(path: Path) -> str | None:
    """The line that best says why a replica failed: the job's own `error:` line, else the
    exception line of a traceback, else the last line."""
    lines, _ = read_tail(path, max_lines=400, max_bytes=256 * 1024)
    lines = [line.strip() for line in lines if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[:500]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line[:500]
    return lines[-1][:500] if lines else None
