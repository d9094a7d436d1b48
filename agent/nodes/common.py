"""Helpers the nodes share: which job "it" is, reading a job's MLflow run, pricing a job."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.context import AgentContext
from agent.pricing import BilledResources, cost_breakdown
from agent.state import AgentState
from agent.tools import ToolCallError
from common.telemetry import MlflowTag
from mcp_servers.kubernetes.schemas import TRAINING_JOBS_LIST, JobStatus
from mcp_servers.mlflow.schemas import RUNS_GET, CostBreakdown, RunDetail
from mcp_servers.prometheus.schemas import JOBS_UTILIZATION, JobUtilization


class NoJob(LookupError):
    """There is no job to talk about (none launched in this thread, none listed)."""


async def resolve_job(state: AgentState, ctx: AgentContext, job: str | None) -> str:
    """An explicit id as is; "latest" is this thread's last job, else the newest one listed."""
    if job and job != "latest":
        return job
    if state.get("last_job_id"):
        return state["last_job_id"]
    listed = await ctx.tools.call(TRAINING_JOBS_LIST, limit=1)
    if not listed.jobs:
        raise NoJob('there are no jobs yet; start one, e.g. "Train a CNN on MNIST for 3 epochs"')
    return listed.jobs[0].job_id


def wall_seconds(job: JobStatus) -> float:
    if job.start_time is None:
        return 0.0
    end = job.completion_time or datetime.now(UTC)
    return max(0.0, (end - job.start_time).total_seconds())


def duration_seconds(job: JobStatus) -> float | None:
    """How long a finished job ran, as its status records it."""
    if job.start_time is None or job.completion_time is None:
        return None
    return (job.completion_time - job.start_time).total_seconds()


def resources_of(job: JobStatus, gpu_type: str | None = None) -> BilledResources:
    return BilledResources.of(
        nodes=job.nodes or 1,
        gpus_per_node=job.gpus_per_node or 0,
        cpus=job.cpus or 1.0,
        memory=job.memory or "2Gi",
        gpu_type=gpu_type,
    )


async def gpu_type_of(ctx: AgentContext, job: JobStatus, warnings: list[str]) -> str | None:
    """The GPU model the job ran on (its MLflow run's device tag, else its node's GPU product),
    else the type it asked for, for per-type GPU rates."""
    if not job.gpus_per_node:
        return None
    run = await mlflow_run(ctx, job.mlflow_run_id, warnings) if job.mlflow_run_id else None
    return (run.tags.get(MlflowTag.DEVICE) if run else None) or job.gpu_product or job.gpu_type


async def mlflow_run(
    ctx: AgentContext, run_id: str | None, warnings: list[str]
) -> RunDetail | None:
    if not run_id:
        return None
    try:
        return await ctx.tools.call(RUNS_GET, run_id=run_id)
    except ToolCallError as e:
        warnings.append(f"MLflow ({e.kind}): {e.message}")
        return None


async def utilization_of(
    ctx: AgentContext, job: JobStatus, warnings: list[str]
) -> JobUtilization | None:
    """jobs_utilization over the job's run time; None (with a warning) when Prometheus can't say."""
    if job.start_time is None:
        return None
    end = job.completion_time or datetime.now(UTC)
    resources = resources_of(job)
    try:
        usage = await ctx.tools.call(
            JOBS_UTILIZATION,
            job_id=job.job_id,
            namespace=job.namespace,
            start=job.start_time.isoformat(),
            end=end.isoformat(),
            cpus_requested=resources.replicas * resources.cpus,
        )
    except ToolCallError as e:
        warnings.append(f"utilisation unknown ({e.kind}): {e.message}")
        return None
    if usage.no_data:
        warnings.append(f"utilisation unknown (no data): {usage.note}")
    return usage


def price(
    ctx: AgentContext,
    job: JobStatus,
    usage: JobUtilization | None,
    gpu_type: str | None = None,
) -> CostBreakdown:
    gpu_utilization = usage.gpu.mean_utilization if usage else None
    if job.sweep is not None:
        # One trial's resources (the status's per-replica figures) for its trials' wall time.
        breakdown = cost_breakdown(
            resources_of(job, gpu_type),
            job.sweep.trial_seconds,
            ctx.settings.rates,
            gpu_utilization=gpu_utilization,
        )
        breakdown.cost_usd = job.sweep.cost_usd  # the driver's count, the one MLflow holds
        return breakdown
    epochs = (job.progress.epoch if job.progress else None) or job.epochs
    return cost_breakdown(
        resources_of(job, gpu_type),
        wall_seconds(job),
        ctx.settings.rates,
        gpu_utilization=gpu_utilization,
        epochs=epochs,
    )


def mlflow_url(ctx: AgentContext, run: RunDetail | None) -> str | None:
    uri = ctx.settings.mlflow_tracking_uri
    if not run or not uri or not uri.startswith("http"):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
