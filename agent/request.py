"""The Request: what a message asks for. The one contract between every parser and the graph."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from common.gpus import GpuType
from common.quantities import MEMORY_QUANTITY
from common.vocabulary import (
    MAX_BATCH_SIZE,
    MAX_CPUS_PER_REPLICA,
    MAX_DEADLINE_SECONDS,
    MAX_EPOCHS,
    MAX_GPUS_PER_NODE,
    MAX_JOB_NAME_LENGTH,
    MAX_LABEL_LENGTH,
    MAX_LOG_LINES,
    MAX_LR,
    MAX_NODES,
    MAX_TRIALS,
    DatasetName,
    Intent,
    ModelName,
    Scheduler,
)

RefusedPart = Literal[
    "image",
    "node",
    "namespace",
    "env",
    "host_path",
    "privileges",
    "network",
    "flags",
    "name",
    "range",
    "setting",
]
"""The kinds of request part trainops refuses rather than drop (agent/parsing/refusals.py)."""


class ParamRange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    low: float
    high: float
    scale: Literal["linear", "log"] = "linear"


class ParamChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    values: list[float | int | str] = Field(min_length=1)


class Request(BaseModel):
    """A parsed message: an intent and the slots that apply to it (None when not said)."""

    model_config = ConfigDict(extra="forbid")

    intent: Intent
    model: ModelName | None = None
    dataset: DatasetName | None = None
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS)
    batch_size: int | None = Field(None, ge=1, le=MAX_BATCH_SIZE)
    lr: float | None = Field(None, gt=0, le=MAX_LR)
    nodes: int | None = Field(None, ge=1, le=MAX_NODES)
    gpus_per_node: int | None = Field(None, ge=0, le=MAX_GPUS_PER_NODE)
    gpus: int | None = Field(None, ge=0, le=100_000, description="Total GPUs asked for.")
    gpu_type: GpuType | None = None
    cpus: float | None = Field(None, gt=0, le=MAX_CPUS_PER_REPLICA, description="Per replica.")
    memory: str | None = Field(None, pattern=MEMORY_QUANTITY, description="Per replica, e.g. 8Gi.")
    budget_usd: float | None = Field(None, gt=0)
    max_seconds: int | None = Field(
        None, ge=60, le=MAX_DEADLINE_SECONDS, description="Wall-time limit: the job's deadline."
    )
    name: str | None = Field(None, max_length=MAX_JOB_NAME_LENGTH)
    namespace: str | None = Field(None, max_length=MAX_LABEL_LENGTH)
    fallback_dataset: DatasetName | None = Field(
        None, description="Trained on instead, loudly, when the dataset can't be had."
    )
    same_as_previous: bool | None = Field(
        None, description="The thread's previous train or sweep request, with these slots changed."
    )
    job: str | None = Field(
        None, description='"latest", "best" (by the metric, for register) or a job id.'
    )
    jobs: list[str] | None = Field(None, description="Job ids named, in order (compare).")
    count: int | None = Field(None, ge=2, le=50, description='"the last N runs" (compare).')
    lines: int | None = Field(None, ge=1, le=MAX_LOG_LINES)
    replica: str | None = Field(
        None,
        pattern=r"^(?:trial|master|worker|node|trainer)-\d{1,5}$|^driver$",
        description="Whose logs (logs): a sweep's trial-3, a job's worker-1, the driver.",
    )
    experiment: str | None = None
    period: str | None = Field(None, description="e.g. 24h, 7d, 30d.")
    trials: int | None = Field(None, ge=1, le=MAX_TRIALS)
    max_concurrent: int | None = Field(None, ge=1, le=1000)
    scheduler: Scheduler | None = None
    search: Literal["random", "grid", "optuna"] | None = Field(
        None, description="How a sweep picks configurations: random, every grid point, Optuna."
    )
    metric: str | None = None
    mode: Literal["max", "min"] | None = None
    params: dict[str, ParamRange | ParamChoice] | None = None
    choices: dict[Literal["model", "dataset"], list[str]] | None = Field(
        None, description="Two readings of a slot (train/sweep): the reply asks which."
    )
    refused: list[RefusedPart] | None = Field(
        None, description="For unknown: the parts of the request that can't be honoured."
    )
    reply: str | None = Field(None, description="For unknown: what trainops can do instead.")

    def slots(self) -> dict[str, Any]:
        """The slots that were said, as plain JSON values."""
        return self.model_dump(exclude_none=True, exclude={"intent", "reply"})


CAPABILITIES = (
    'I can train a model (e.g. "Train a CNN on MNIST for 3 epochs on 2 GPUs, keep it under $5"), '
    'sweep its hyperparameters (e.g. "Tune lr between 1e-4 and 1e-1 for the cnn on MNIST, 8 '
    "trials, ASHA\"), and show a job's status, logs or cost, cancel, list or compare jobs, "
    "register a model, or diagnose a failed job."
)
