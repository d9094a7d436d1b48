"""What the graph streams while it works (LangGraph custom stream events), for live displays."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from common.vocabulary import Phase
from mcp_servers.kubernetes.schemas import Kind


class Launched(BaseModel):
    type: Literal["launched"] = "launched"
    job_id: str
    kind: Kind
    created: bool
    """False when a retried launch found the job its idempotency key made before."""


class ProgressUpdate(BaseModel):
    type: Literal["progress"] = "progress"
    job_id: str
    phase: Phase
    message: str
    epoch: int | None = None
    epochs: int | None = None
    train_loss: float | None = None
    val_accuracy: float | None = None
    eta_s: float | None = None
    cost_so_far_usd: float = 0.0


Event = Launched | ProgressUpdate
