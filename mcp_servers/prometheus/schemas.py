"""What the Prometheus MCP server returns: bounded query results and a job's utilisation."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from mcp_servers.toolref import ToolCatalog


class Sample(BaseModel):
    labels: dict[str, str]
    value: float | None = Field(
        description="The value (a range vector's latest); None for a string, NaN or infinity."
    )
    text: str | None = Field(
        None, description="The value as Prometheus wrote it, when it is not a finite number."
    )


class QueryResult(BaseModel):
    result_type: Literal["vector", "matrix", "scalar", "string"]
    series: list[Sample]
    total_series: int
    truncated: bool
    note: str | None = None


class RangeSeries(BaseModel):
    labels: dict[str, str]
    points: list[tuple[float, float]] = Field(description="(unix time, value), downsampled.")
    total_points: int


class RangeResult(BaseModel):
    series: list[RangeSeries]
    total_series: int
    truncated: bool
    note: str | None = None


class MetricNames(BaseModel):
    names: list[str]
    total: int
    truncated: bool


class Target(BaseModel):
    job: str
    instance: str
    health: str
    last_scrape: str | None = None
    last_error: str | None = None
    labels: dict[str, str]


class TargetList(BaseModel):
    targets: list[Target]
    total: int


class GpuUsage(BaseModel):
    mean_utilization: float | None = Field(None, description="0..1, mean over samples and GPUs.")
    p95_utilization: float | None = Field(None, description="0..1, the busiest GPU's p95.")
    peak_memory_bytes: float | None = Field(None, description="The fullest GPU's peak.")
    metric: str | None = Field(
        None, description="Which metric answered: the job's exporter's, or DCGM's."
    )


class CpuUsage(BaseModel):
    mean_cores_used: float | None = Field(None, description="Mean CPU-seconds per second.")
    cores_requested: float | None = Field(
        None,
        description="cpus_requested, or else the pods' CPU requests from kube-state-metrics.",
    )
    mean_utilization: float | None = Field(
        None, description="mean_cores_used / cores_requested, when a request is known."
    )
    metric: str | None = Field(
        None, description="Which metric answered: the job's exporter's, or cAdvisor's."
    )


class JobUtilization(BaseModel):
    job_id: str
    namespace: str = Field(description="Where the cluster's series of the job's pods were read.")
    start: datetime
    end: datetime
    gpu: GpuUsage
    cpu: CpuUsage
    peak_rss_bytes: float | None = Field(
        None,
        description="Peak of the job's summed memory: its processes' RSS, or else its "
        "containers' working set (cAdvisor).",
    )
    samples: int = Field(description="Samples of the job's own metrics in the window.")
    metrics_answered: list[str] = Field(description="The series each figure above came from.")
    no_data: bool = Field(description="True when Prometheus holds nothing for this job here.")
    note: str | None = None


# -- the tools this server publishes ---------------------------------------------------------

CATALOG = ToolCatalog("prometheus")
PROMETHEUS_QUERY = CATALOG.ref("prometheus_query", QueryResult)
PROMETHEUS_QUERY_RANGE = CATALOG.ref("prometheus_query_range", RangeResult)
METRICS_LIST = CATALOG.ref("metrics_list", MetricNames)
TARGETS_LIST = CATALOG.ref("targets_list", TargetList)
JOBS_UTILIZATION = CATALOG.ref("jobs_utilization", JobUtilization)
TOOLS = tuple(CATALOG.refs)
