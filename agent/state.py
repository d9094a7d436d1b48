"""The agent's state: one thread's memory, checkpointed after every node.

Where a value is a contract between nodes it is the model its producer publishes: the parsed
Request, the Plan, the job's status as the Kubernetes server returns it, its utilisation as the
Prometheus server measures it, and its cost as the MLflow server stores it.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, Field

from agent.request import Request
from common.errors import ErrorKind
from mcp_servers.kubernetes.schemas import JobStatus, Kind, SweepSpec, TrainingJobSpec
from mcp_servers.mlflow.schemas import CostBreakdown
from mcp_servers.prometheus.schemas import JobUtilization

Decision = Literal["approved", "denied", "auto", ""]


class Estimate(BaseModel):
    """What a job will take, before it runs."""

    duration_s: float
    cost_usd: float
    basis: str = Field(description="Where the duration comes from (history, or an assumption).")
    usd_per_hour: float
    trial_epochs: float | None = Field(
        None, description="A sweep's expected trial-epochs (what its scheduler is expected to run)."
    )


class Plan(BaseModel):
    """A train request as a job: the spec, its estimate, and whether a person must approve it;
    or why it can't be launched as asked."""

    spec: TrainingJobSpec | None = None
    sweep: SweepSpec | None = None
    """A sweep request's spec (spec is None then)."""
    kind: Kind | None = None
    namespace: str | None = None
    estimate: Estimate | None = None
    budget_usd: float | None = None
    reasons: list[str] = []
    """Why it needs approval (over budget, many GPUs)."""
    refused: str | None = None
    """Why it is not launched, for a person; None when it may be."""
    refused_kind: ErrorKind | None = None
    """The error kind of the refusal, when a tool gave it."""
    asks: bool = False
    """The refusal is a question: the next turn's answer completes the request."""

    @property
    def needs_approval(self) -> bool:
        return bool(self.reasons)


class AgentState(TypedDict, total=False):
    text: str
    """This turn's message."""
    preset: Request | None
    """A Request given directly (CLI shortcuts such as `trainops logs JOB`); parse uses it as is."""
    request: Request
    """This turn's parsed Request."""
    turn: int
    """Turns taken in this thread; part of the launch idempotency key."""
    plan: Plan | None
    """The job this turn's train request became (or why it did not)."""
    decision: Decision
    """From the approval step."""
    job_id: str
    """The job this turn launched or is about."""
    last_job_id: str
    """The thread's most recent job: what "it" and "latest" mean in follow-ups."""
    last_request: Request | None
    """The thread's last train or sweep request: what "the same again" repeats."""
    pending: Request | None
    """A train request waiting for the answer to the question this turn asked."""
    detached: bool
    """Launched without watching: the report says so and follow-ups take over."""
    job: JobStatus | None
    """The job's latest status."""
    utilization: JobUtilization | None
    cost: CostBreakdown | None
    answer: str
    """The reply for a person."""
    facts: dict[str, Any]
    """The same facts as JSON (every number as MLflow, Prometheus or the job status hold it)."""
    warnings: Annotated[list[str], operator.add]
    """This turn's warnings; nodes add to them, a new turn starts them afresh."""


STATE_MODELS: tuple[type, ...] = (
    Request,
    Plan,
    JobStatus,
    JobUtilization,
    CostBreakdown,
    ErrorKind,
)
"""The models the state holds (the checkpointer is told it may rebuild them)."""
