"""One line a person can act on, distilled from a job's phase, reason and progress."""

from __future__ import annotations

from datetime import datetime

from common.telemetry import HEADLINE_METRICS
from mcp_servers.kubernetes.schemas import TrainingProgress


def job_message(
    phase: str,
    reason: str,
    detail: str,
    progress: TrainingProgress | None,
    restarts: int,
    start: datetime | None,
    end: datetime | None,
) -> str:
    if phase == "Pending":
        return f"Pending: {detail}" if detail else "Pending: waiting to be scheduled"
    if phase == "Running":
        parts = ["Running"]
        if progress is not None and progress.epoch is not None and progress.event == "epoch":
            parts.append(f"epoch {progress.epoch}/{progress.epochs}")
            parts += _metrics(progress)
        else:
            parts.append("starting")
        if restarts:
            parts.append(f"after {restarts} restart{'s' if restarts > 1 else ''}")
        return ", ".join(parts[:1]) + ": " + ", ".join(parts[1:])
    if phase == "Succeeded":
        took = f" in {_duration(start, end)}" if start and end else ""
        metrics = _metrics(progress) if progress else []
        return f"Succeeded{took}" + (": " + ", ".join(metrics) if metrics else "")
    if phase == "Cancelled":
        return "Cancelled on request"
    return f"Failed ({reason}): {detail}" if detail else f"Failed ({reason})"


def _metrics(progress: TrainingProgress) -> list[str]:
    return [f"{k} {progress.metrics[k]:.4g}" for k in HEADLINE_METRICS if k in progress.metrics][:2]


def _duration(start: datetime, end: datetime) -> str:
    seconds = int((end - start).total_seconds())
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"
