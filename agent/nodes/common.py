"""Helpers the nodes share: which job "it" is, reading a job's MLflow run, pricing a job."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agent.context import AgentContext
from agent.pricing import Resources, cost_breakdown
from agent.state import AgentState
from agent.tools import ToolCallError

TERMINAL = frozenset({"Succeeded", "Failed", "Cancelled"})


class NoJob(LookupError):
    """There is no job to talk about (none launched in this thread, none listed)."""


async def resolve_job(state: AgentState, ctx: AgentContext, job: str | None) -> str:
    """An explicit id as is; "latest" is this thread's last job, else the newest one listed."""
    if job and job != "latest":
        return job
    if state.get("last_job_id"):
        return state["last_job_id"]
    listed = await ctx.tools.call("kubernetes", "training_jobs_list", limit=1)
    if not listed.get("jobs"):
        raise NoJob('there are no jobs yet; start one, e.g. "Train a CNN on MNIST for 3 epochs"')
    return listed["jobs"][0]["job_id"]


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def wall_seconds(job: dict[str, Any]) -> float:
    start = parse_time(job.get("start_time"))
    if start is None:
        return 0.0
    end = parse_time(job.get("completion_time")) or datetime.now(UTC)
    return max(0.0, (end - start).total_seconds())


def resources_of(job: dict[str, Any], gpu_type: str | None = None) -> Resources:
    return Resources.of(
        nodes=job.get("nodes") or 1,
        gpus_per_node=job.get("gpus_per_node") or 0,
        cpus=job.get("cpus") or 1.0,
        memory=job.get("memory") or "2Gi",
        gpu_type=gpu_type,
    )


async def gpu_type_of(ctx: AgentContext, job: dict[str, Any], warnings: list[str]) -> str | None:
    """The GPU model the job ran on (its MLflow run's device tag), for per-type GPU rates."""
    if not job.get("gpus_per_node") or not job.get("mlflow_run_id"):
        return None
    run = await mlflow_run(ctx, job["mlflow_run_id"], warnings)
    return (run or {}).get("tags", {}).get("trainops.device")


async def mlflow_run(
    ctx: AgentContext, run_id: str | None, warnings: list[str]
) -> dict[str, Any] | None:
    if not run_id:
        return None
    try:
        return await ctx.tools.call("mlflow", "runs_get", run_id=run_id)
    except ToolCallError as e:
        warnings.append(f"MLflow: {e}")
        return None


async def utilization_of(
    ctx: AgentContext, job: dict[str, Any], warnings: list[str]
) -> dict[str, Any] | None:
    """jobs_utilization over the job's run time; None (with a warning) when Prometheus can't say."""
    start, end = parse_time(job.get("start_time")), parse_time(job.get("completion_time"))
    if start is None:
        return None
    end = end or datetime.now(UTC)
    resources = resources_of(job)
    try:
        usage = await ctx.tools.call(
            "prometheus",
            "jobs_utilization",
            job_id=job["job_id"],
            start=start.isoformat(),
            end=end.isoformat(),
            cpus_requested=resources.replicas * resources.cpus,
        )
    except ToolCallError as e:
        warnings.append(f"utilisation unknown: {e}")
        return None
    if usage.get("no_data"):
        warnings.append(f"utilisation unknown: {usage.get('note')}")
    return usage


def price(
    ctx: AgentContext,
    job: dict[str, Any],
    usage: dict[str, Any] | None,
    gpu_type: str | None = None,
) -> dict[str, Any]:
    gpu_utilization = ((usage or {}).get("gpu") or {}).get("mean_utilization")
    epochs = (job.get("progress") or {}).get("epoch") or job.get("epochs")
    return cost_breakdown(
        resources_of(job, gpu_type),
        wall_seconds(job),
        ctx.settings.rates,
        gpu_utilization=gpu_utilization,
        epochs=epochs,
    )


def mlflow_url(ctx: AgentContext, run: dict[str, Any] | None) -> str | None:
    uri = ctx.settings.mlflow_tracking_uri
    if not run or not uri or not uri.startswith("http"):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"


def money(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"${value:.2f}" if value >= 0.01 else f"${value:.6f}"
