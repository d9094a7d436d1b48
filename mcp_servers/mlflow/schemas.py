"""What the MLflow MCP server returns: run summaries an agent can use, bounded."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mcp_servers.series import SeriesSummary
from mcp_servers.toolref import ToolCatalog

GroupBy = Literal["experiment", "model", "dataset", "job", "day", "status"]


class ExperimentInfo(BaseModel):
    experiment_id: str
    name: str
    lifecycle_stage: str
    created: datetime | None = None
    last_update: datetime | None = None


class ExperimentList(BaseModel):
    experiments: list[ExperimentInfo]


class RunSummary(BaseModel):
    run_id: str
    run_name: str | None = None
    experiment_id: str
    status: str
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration_s: float | None = None
    metrics: dict[str, float] = Field(description="Latest value of each finite metric.")
    nonfinite_metrics: dict[str, str] = Field(
        default_factory=dict,
        description="Metrics whose latest value is NaN or infinite ('nan', 'inf', '-inf'); "
        "JSON has no number for them.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="trainops tags only.")


class RunPage(BaseModel):
    runs: list[RunSummary]
    next_page_token: str | None = None


class RunDetail(RunSummary):
    params: dict[str, str]
    all_tags: dict[str, str]
    artifact_uri: str | None = None


class ArtifactText(BaseModel):
    run_id: str
    path: str
    text: str
    truncated: bool = Field(description="True when the file is longer than max_bytes.")
    size_bytes: int


class MetricPoint(BaseModel):
    step: int
    value: float | None = Field(description="None where the value is NaN or infinite.")
    timestamp: int


class MetricHistory(BaseModel):
    run_id: str
    key: str
    points: list[MetricPoint]
    downsampled: bool = Field(description="True when the points are a shape-keeping sample.")
    summary: SeriesSummary


class RunComparison(BaseModel):
    runs: list[RunSummary]
    differing_params: dict[str, dict[str, str]] = Field(
        description="param -> {run_id: value}, for params whose values differ."
    )
    best: dict[str, str] = Field(
        default_factory=dict,
        description="metric -> run_id with the best value (max for accuracy, min else).",
    )


class CostBreakdown(BaseModel):
    """Cost figures of one run (DESIGN: requested resources x wall time x rate card)."""

    model_config = ConfigDict(allow_inf_nan=False)  # a cost is a finite number of dollars

    cost_usd: float = Field(ge=0)
    cost_gpu_usd: float = Field(0, ge=0)
    cost_cpu_usd: float = Field(0, ge=0)
    cost_memory_usd: float = Field(0, ge=0)
    gpu_hours: float = Field(0, ge=0)
    cpu_hours: float = Field(0, ge=0)
    idle_gpu_cost_usd: float | None = Field(None, ge=0)
    utilization_weighted_cost_usd: float | None = Field(None, ge=0)
    cost_per_epoch_usd: float | None = Field(None, ge=0)
    gpu_utilization: float | None = Field(None, ge=0, le=1)
    wall_seconds: float | None = Field(None, ge=0)
    rate_card: str = Field("default", max_length=200, description="Which rates were used.")
    currency: Literal["USD"] = "USD"


COST_METRICS: tuple[str, ...] = tuple(
    name
    for name, info in CostBreakdown.model_fields.items()
    if info.annotation in (float, float | None)
)
"""The breakdown's numbers, each logged to the run as a metric of that name."""


class CostLogResult(BaseModel):
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]


class CostGroup(BaseModel):
    key: str
    runs: int
    cost_usd: float
    gpu_hours: float
    idle_gpu_cost_usd: float


class CostReport(BaseModel):
    group_by: GroupBy
    groups: list[CostGroup]
    total_cost_usd: float
    total_gpu_hours: float
    runs_with_cost: int
    runs_without_cost: int = Field(description="Runs in range that have no cost_usd logged yet.")
    truncated: bool = Field(False, description="More groups exist than are shown.")


class ModelVersionInfo(BaseModel):
    name: str
    version: str
    source: str
    run_id: str
    alias: str | None = None
    status: str


# -- the tools this server publishes ---------------------------------------------------------

CATALOG = ToolCatalog("mlflow")
EXPERIMENTS_LIST = CATALOG.ref("experiments_list", ExperimentList)
RUNS_SEARCH = CATALOG.ref("runs_search", RunPage)
RUNS_GET = CATALOG.ref("runs_get", RunDetail)
RUNS_ARTIFACT_READ = CATALOG.ref("runs_artifact_read", ArtifactText)
RUNS_METRIC_HISTORY = CATALOG.ref("runs_metric_history", MetricHistory)
RUNS_COMPARE = CATALOG.ref("runs_compare", RunComparison)
RUNS_BEST = CATALOG.ref("runs_best", RunSummary)
RUNS_COST_LOG = CATALOG.ref("runs_cost_log", CostLogResult)
COSTS_REPORT = CATALOG.ref("costs_report", CostReport)
MODELS_REGISTER = CATALOG.ref("models_register", ModelVersionInfo)
TOOLS = tuple(CATALOG.refs)
