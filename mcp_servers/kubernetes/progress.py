"""Reading a job's output the way an agent needs it: bounded tails, progress, the error line."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from common.telemetry import ProgressEvent
from mcp_servers.kubernetes.schemas import TrainingProgress

MAX_TAIL_BYTES = 1 << 20
_RULE = re.compile(r"[=\-]{3,}")
_SUMMARY_RANK = re.compile(r"^rank\s*:\s*(\d+)")
_SUMMARY_EXIT = re.compile(r"^exitcode\s*:\s*(-?\d+)")
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


def last_progress(path: Path) -> tuple[TrainingProgress | None, str | None]:
    """The latest progress event of rank 0 and the MLflow run id it reported, from its log."""
    lines, _ = read_tail(path, max_lines=5000)
    events = [event for line in lines if (event := ProgressEvent.from_line(line)) is not None]
    run_id = next((e.mlflow_run_id for e in reversed(events) if e.mlflow_run_id), None)
    if not events:
        return None, run_id
    latest = events[-1]
    return (
        TrainingProgress(
            event=latest.event,
            epoch=latest.epoch,
            epochs=latest.epochs,
            metrics=latest.finite_metrics,
            nonfinite_metrics=latest.nonfinite_metrics,
            time=latest.time,
        ),
        run_id,
    )


def last_error_line(path: Path) -> str | None:
    """The line that best says why a replica failed: the job's own `error:` line, else the
    signal that torchrun reports killed a worker, else the exception line of a traceback (not
    torchrun's own ChildFailedError), else the last line that is not a rule."""
    lines, _ = read_tail(path, max_lines=400, max_bytes=256 * 1024)
    lines = [line.strip() for line in lines if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[:500]
    if killed := _killed_worker(lines):
        return killed
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line) and "ChildFailedError" not in line:
            return line[:500]
    meaningful = [line for line in lines if not _RULE.fullmatch(line)]
    return meaningful[-1][:500] if meaningful else None


def signal_name(number: int) -> str:
    """'killed by signal 9 (SIGKILL)'."""
    try:
        return f"killed by signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"killed by signal {number}"


def _killed_worker(lines: list[str]) -> str | None:
    """torchrun's failure summary, when a worker died of a signal: "exitcode : -9 (pid: N)"."""
    rank = None
    for line in lines:
        if match := _SUMMARY_RANK.match(line):
            rank = match.group(1)
        elif (match := _SUMMARY_EXIT.match(line)) and int(match.group(1)) < 0:
            who = f"worker rank {rank}" if rank is not None else "a worker"
            return f"{who} was {signal_name(-int(match.group(1)))}"
    return None
