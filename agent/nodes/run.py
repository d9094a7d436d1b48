"""trigger, monitor, cost: launch once, watch for as long as it takes, price what ran."""

from __future__ import annotations

import hashlib
import time
from typing import Any, Literal

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from agent.context import AgentContext
from agent.nodes.common import (
    TERMINAL,
    gpu_type_of,
    mlflow_run,
    parse_time,
    price,
    utilization_of,
)
from agent.pricing import Resources
from agent.state import AgentState
from agent.tools import ToolCallError

# One monitor step watches this long, then checkpoints; the graph loops back. Hours of
# training are a handful of steps, far below any recursion limit.
MONITOR_SLICE_S = 600.0


def idempotency_key(thread_id: str, turn: int, text: str) -> str:
    """The same thread and turn always launch the same job, however often it is resumed."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{thread_id}/{turn}/{digest}"


async def trigger(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    spec = dict(state["plan"]["spec"])
    spec["idempotency_key"] = idempotency_key(
        ctx.thread_id, state.get("turn", 0), state.get("text", "")
    )
    try:
        created = await ctx.tools.call("kubernetes", "training_jobs_create", spec=spec)
    except ToolCallError as e:
        return {"plan": {**state["plan"], "refused": f"Not launched: {e}"}}
    get_stream_writer()(
        {
            "type": "launched",
            "job_id": created["job_id"],
            "kind": created["kind"],
            "created": created["created"],
        }
    )
    job = await ctx.tools.call("kubernetes", "training_jobs_get", job_id=created["job_id"])
    return {
        "job_id": created["job_id"],
        "last_job_id": created["job_id"],
        "job": job,
        "detached": ctx.detach,
    }


def route_trigger(state: AgentState) -> Literal["monitor", "report"]:
    return "monitor" if state.get("job_id") and not state.get("detached") else "report"


async def monitor(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Follow the job (event-driven waits) and stream its progress; returns at a terminal phase,
    when the job can never be scheduled here, or after one slice, to be checkpointed."""
    ctx = runtime.context
    write = get_stream_writer()
    job_id = state["job_id"]
    spec = state.get("plan", {}).get("spec", {})
    rate = Resources.of(
        spec.get("nodes", 1),
        spec.get("gpus_per_node", 0),
        spec.get("cpus", 1.0),
        spec.get("memory", "2Gi"),
    ).per_hour(ctx.settings.rates)
    deadline = time.monotonic() + MONITOR_SLICE_S
    status = await ctx.tools.call("kubernetes", "training_jobs_get", job_id=job_id)
    while True:
        write(_progress_event(status, rate))
        if status["phase"] in TERMINAL or _unschedulable(status) or time.monotonic() >= deadline:
            return {"job": status}
        status = await ctx.tools.call(
            "kubernetes",
            "training_jobs_wait",
            job_id=job_id,
            timeout_s=min(ctx.settings.agent.poll_seconds, max(1.0, deadline - time.monotonic())),
        )


def _unschedulable(status: dict[str, Any]) -> bool:
    return status["phase"] == "Pending" and "never fits" in status.get("message", "")


def _progress_event(status: dict[str, Any], usd_per_hour: float) -> dict[str, Any]:
    progress = status.get("progress") or {}
    metrics = progress.get("metrics") or {}
    start = parse_time(status.get("start_time"))
    elapsed = (time.time() - start.timestamp()) if start else 0.0
    epoch, epochs = progress.get("epoch"), progress.get("epochs") or status.get("epochs")
    eta = None
    if progress.get("event") == "epoch" and epoch and epochs and elapsed:
        eta = elapsed / epoch * (epochs - epoch)
    return {
        "type": "progress",
        "job_id": status["job_id"],
        "phase": status["phase"],
        "message": status.get("message", ""),
        "epoch": epoch,
        "epochs": epochs,
        "train_loss": metrics.get("train_loss"),
        "val_accuracy": metrics.get("val_accuracy"),
        "eta_s": eta,
        "cost_so_far_usd": usd_per_hour * elapsed / 3600,
    }


def route_monitor(state: AgentState) -> Literal["cost", "monitor"]:
    job = state.get("job") or {}
    return "cost" if job.get("phase") in TERMINAL or _unschedulable(job) else "monitor"


async def cost(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Price the job from what it requested and how long it ran; write it to its MLflow run."""
    ctx = runtime.context
    job = state["job"]
    warnings = list(state.get("warnings", []))
    if not job.get("start_time"):
        return {"cost": None, "utilization": None, "warnings": warnings}
    usage = await utilization_of(ctx, job, warnings)
    breakdown = price(ctx, job, usage, await gpu_type_of(ctx, job, warnings))
    if job.get("mlflow_run_id"):
        try:
            await ctx.tools.call(
                "mlflow", "runs_cost_log", run_id=job["mlflow_run_id"], breakdown=breakdown
            )
        except ToolCallError as e:
            warnings.append(f"cost not written to MLflow: {e}")
    else:
        warnings.append("the job reported no MLflow run; cost not written to MLflow")
    return {"cost": breakdown, "utilization": usage, "warnings": warnings}


async def job_summary_facts(
    state: AgentState, ctx: AgentContext, warnings: list[str]
) -> dict[str, Any]:
    """What the report states about a job, each number as its source holds it."""
    job = state.get("job") or {}
    run = await mlflow_run(ctx, job.get("mlflow_run_id"), warnings)
    start, end = parse_time(job.get("start_time")), parse_time(job.get("completion_time"))
    usage = state.get("utilization") or {}
    return {
        "job_id": job.get("job_id"),
        "phase": job.get("phase"),
        "message": job.get("message"),
        "metrics": (run or {}).get("metrics") or ((job.get("progress") or {}).get("metrics") or {}),
        "duration_s": (end - start).total_seconds() if start and end else None,
        "cost_usd": (state.get("cost") or {}).get("cost_usd"),
        "cost_breakdown": state.get("cost"),
        "gpu_utilization": (usage.get("gpu") or {}).get("mean_utilization"),
        "cpu_utilization": (usage.get("cpu") or {}).get("mean_utilization"),
        "mlflow_run_id": job.get("mlflow_run_id"),
        "run": run,
    }
