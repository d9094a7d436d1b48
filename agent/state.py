"""The agent's state: one thread's memory, checkpointed after every node (plain JSON values)."""

from __future__ import annotations

from typing import Any, TypedDict


class AgentState(TypedDict, total=False):
    text: str
    """This turn's message."""
    preset: dict[str, Any] | None
    """A Request given directly (CLI shortcuts such as `trainops logs JOB`); parse uses it as is."""
    request: dict[str, Any]
    """This turn's parsed Request."""
    turn: int
    """Turns taken in this thread; part of the launch idempotency key."""
    plan: dict[str, Any]
    """The job spec, its estimate, and whether it needs approval (or why it is refused)."""
    decision: str
    """approved / denied / auto, from the approval step."""
    job_id: str
    """The job this turn launched or is about."""
    last_job_id: str
    """The thread's most recent job: what "it" and "latest" mean in follow-ups."""
    detached: bool
    """Launched without watching: the report says so and follow-ups take over."""
    job: dict[str, Any]
    """The job's latest status, as training_jobs_get returns it."""
    utilization: dict[str, Any] | None
    cost: dict[str, Any] | None
    answer: str
    """The reply for a person."""
    facts: dict[str, Any]
    """The same facts as JSON (every number as MLflow, Prometheus or the job status hold it)."""
    warnings: list[str]
