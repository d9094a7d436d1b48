"""The Request: what a message asks for. The one contract between every parser and the graph."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Intent = Literal[
    "train",
    "sweep",
    "status",
    "logs",
    "cost",
    "cancel",
    "list",
    "compare",
    "register",
    "diagnose",
    "unknown",
]
INTENTS: tuple[str, ...] = Intent.__args__  # type: ignore[attr-defined]
ModelName = Literal["cnn", "mlp", "resnet18", "gpt"]
DatasetName = Literal["mnist", "fashion-mnist", "cifar10", "digits", "synthetic"]
Scheduler = Literal["asha", "hyperband", "median", "pbt", "fifo"]


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
    epochs: int | None = Field(None, ge=1, le=10_000)
    batch_size: int | None = Field(None, ge=1, le=1_000_000)
    lr: float | None = Field(None, gt=0, le=10)
    nodes: int | None = Field(None, ge=1, le=1024)
    gpus_per_node: int | None = Field(None, ge=0, le=64)
    gpus: int | None = Field(None, ge=0, le=100_000, description="Total GPUs asked for.")
    budget_usd: float | None = Field(None, gt=0)
    name: str | None = Field(None, max_length=52)
    namespace: str | None = Field(None, max_length=63)
    job: str | None = Field(None, description='"latest" or a job id.')
    lines: int | None = Field(None, ge=1, le=2000)
    experiment: str | None = None
    period: str | None = Field(None, description="e.g. 24h, 7d, 30d.")
    trials: int | None = Field(None, ge=1, le=10_000)
    max_concurrent: int | None = Field(None, ge=1, le=1000)
    scheduler: Scheduler | None = None
    metric: str | None = None
    mode: Literal["max", "min"] | None = None
    params: dict[str, ParamRange | ParamChoice] | None = None
    reply: str | None = Field(None, description="For unknown: what trainops can do instead.")

    def slots(self) -> dict[str, Any]:
        """The slots that were said, as plain JSON values."""
        return self.model_dump(exclude_none=True, exclude={"intent", "reply"})


CAPABILITIES = (
    'I can train a model (e.g. "Train a CNN on MNIST for 3 epochs on 2 GPUs, keep it under $5"), '
    "and show a job's status, logs or cost, cancel, list or compare jobs, register a model, or "
    "diagnose a failed job."
)
