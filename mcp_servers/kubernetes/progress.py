"""Reading a job's output the way an agent needs it: bounded tails, progress, the error line."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from common.telemetry import ProgressEvent
from mcp_servers.kubernetes.schemas import TrainingProgress

MAX_TAIL_BYTES = 1 << 20
MAX_LOG_CHARS = 64_000
CONTAINS_WINDOW_LINES = 20_000
"""How far back a `contains` filter looks."""
PROGRESS_WINDOW_LINES = 5000
SWEEP_WINDOW_LINES = 50_000
SWEEP_WINDOW_BYTES = 8 << 20
"""A sweep's driver log carries every trial's lines; its trial events are read from this much."""
ERROR_WINDOW_LINES = 400
_RULE = re.compile(r"[=\-]{3,}")
_SUMMARY_RANK = re.compile(r"^rank\s*:\s*(\d+)")
_SUMMARY_EXIT = re.compile(r"^exitcode\s*:\s*(-?\d+)")
# torchrun's failure summary: "rank      : 1 (local_rank: 1)", "[0]:", "Root Cause (...)", ...
_SUMMARY_LINE = re.compile(
    r"^(\w+\s*: |\[\d+\]:$|Root Cause|Failures:|Other Failures:|<NO_OTHER_FAILURES>|[\w.]+ FAILED$)"
)
_EXIT_CODE = re.compile(r"^exitcode\s*:\s*(-?\d+)")
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


def bounded(
    lines: list[str], truncated: bool, tail_lines: int, contains: str | None
) -> tuple[list[str], bool]:
    """The tail a log tool returns: filtered, at most `tail_lines` lines and MAX_LOG_CHARS."""
    if contains:
        matching = [line for line in lines if contains in line]
        truncated = truncated or len(matching) > tail_lines
        lines = matching
    if len(lines) > tail_lines:
        lines, truncated = lines[-tail_lines:], True
    while sum(len(line) + 1 for line in lines) > MAX_LOG_CHARS:
        lines = lines[1:]
        truncated = True
    return lines, truncated


def last_progress(path: Path) -> tuple[TrainingProgress | None, str | None]:
    """The latest progress event of rank 0 and the MLflow run id it reported, from its log."""
    lines, _ = read_tail(path, max_lines=PROGRESS_WINDOW_LINES)
    return progress_of(lines)


def progress_of(lines: list[str]) -> tuple[TrainingProgress | None, str | None]:
    """The latest progress event among a log's lines and the MLflow run id it reported."""
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
    lines, _ = read_tail(path, max_lines=ERROR_WINDOW_LINES, max_bytes=256 * 1024)
    return error_line_of(lines)


def error_line_of(lines: list[str]) -> str | None:
    """`last_error_line` over lines already read (a pod's log from the API)."""
    lines = [line.strip() for line in lines if line.strip()]
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[:500]
    if killed := _killed_worker(lines):
        return killed
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line) and "ChildFailedError" not in line:
            return line[:500]
    meaningful = [
        line for line in lines if not _RULE.fullmatch(line) and not _SUMMARY_LINE.match(line)
    ]
    if meaningful:
        return meaningful[-1][:500]
    codes = [int(m.group(1)) for line in lines if (m := _EXIT_CODE.match(line))]
    return f"a worker exited with code {codes[-1]}" if codes else None


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
