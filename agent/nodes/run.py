"""trigger, monitor, analyze_cost: launch once, watch for as long as it takes, price what ran."""

from __future__ import annotations

import hashlib
import time
from typing import Any, Literal

from langgraph.config import get_stream_writer
from langgraph.runtime import Runtime

from agent.context import AgentContext
from agent.events import Launched, ProgressUpdate
from agent.nodes.common import gpu_type_of, price, utilization_of
from agent.pricing import BilledResources
from agent.state import AgentState
from agent.tools import ToolCallError
from common.telemetry import MlflowMetric
from mcp_servers.kubernetes.schemas import (
    TRAINING_JOBS_CREATE,
    TRAINING_JOBS_GET,
    TRAINING_JOBS_WAIT,
    TRAINING_SWEEPS_CREATE,
    JobStatus,
    SweepStatus,
)
from mcp_servers.mlflow.schemas import RUNS_COST_LOG

# One monitor step watches this long, then checkpoints; the graph loops back. Hours of
# training are a handful of steps, far below any recursion limit.
MONITOR_SLICE_S = 600.0


def idempotency_key(thread_id: str, turn: int, text: str) -> str:
    """The same thread and turn always launch the same job, however often it is resumed."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return f"{thread_id}/{turn}/{digest}"


async def trigger(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    plan = state["plan"]
    # route_plan sends only launchable plans: a job's spec or a sweep's.
    assert plan is not None and (plan.spec is not None or plan.sweep is not None)
    key = idempotency_key(ctx.thread_id, state.get("turn", 0), state.get("text", ""))
    try:
        if plan.sweep is not None:
            sweep = plan.sweep.model_copy(update={"idempotency_key": key})
            created = await ctx.tools.call(TRAINING_SWEEPS_CREATE, spec=sweep)
        else:
            assert plan.spec is not None
            spec = plan.spec.model_copy(update={"idempotency_key": key})
            created = await ctx.tools.call(TRAINING_JOBS_CREATE, spec=spec)
    except ToolCallError as e:
        return {
            "plan": plan.model_copy(
                update={"refused": f"Not launched: {e.message}", "refused_kind": e.kind}
            )
        }
    get_stream_writer()(Launched(job_id=created.job_id, kind=created.kind, created=created.created))
    job = await ctx.tools.call(TRAINING_JOBS_GET, job_id=created.job_id)
    return {
        "job_id": created.job_id,
        "last_job_id": created.job_id,
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
    plan = state.get("plan")
    spec = plan.spec if plan else None
    rate = (
        BilledResources.of(spec.nodes, spec.gpus_per_node, spec.cpus, spec.memory).per_hour(
            ctx.settings.rates
        )
        if spec
        else 0.0
    )  # a sweep's spend so far is its driver's own count
    deadline = time.monotonic() + MONITOR_SLICE_S
    status = await ctx.tools.call(TRAINING_JOBS_GET, job_id=job_id)
    while True:
        write(progress_event(status, rate))
        if settled(status) or time.monotonic() >= deadline:
            return {"job": status}
        status = await ctx.tools.call(
            TRAINING_JOBS_WAIT,
            job_id=job_id,
            phase=status.phase,
            timeout_s=min(ctx.settings.agent.poll_seconds, max(1.0, deadline - time.monotonic())),
        )


def settled(job: JobStatus | None) -> bool:
    """Nothing more to watch: the job ended, or it can never be scheduled as asked."""
    return job is not None and (job.terminal or job.unschedulable)


def progress_event(status: JobStatus, usd_per_hour: float) -> ProgressUpdate:
    """What the live display shows of a job: phase, epoch, loss, accuracy, ETA, dollars so far."""
    if status.sweep is not None:
        return _sweep_progress(status, status.sweep)
    progress = status.progress
    metrics = progress.metrics if progress else {}
    elapsed = (time.time() - status.start_time.timestamp()) if status.start_time else 0.0
    epoch = progress.epoch if progress else None
    epochs = (progress.epochs if progress else None) or status.epochs
    eta = None
    if progress and progress.event == "epoch" and epoch and epochs and elapsed:
        eta = elapsed / epoch * (epochs - epoch)
    return ProgressUpdate(
        job_id=status.job_id,
        phase=status.phase,
        message=status.message,
        epoch=epoch,
        epochs=epochs,
        train_loss=metrics.get(MlflowMetric.TRAIN_LOSS),
        val_accuracy=metrics.get(MlflowMetric.VAL_ACCURACY),
        eta_s=eta,
        cost_so_far_usd=usd_per_hour * elapsed / 3600,
    )


def _sweep_progress(status: JobStatus, sweep: SweepStatus) -> ProgressUpdate:
    """A sweep on the live display: how many trials ran and how, the best so far, the spend."""
    best = sweep.best
    metric = sweep.metric or MlflowMetric.VAL_ACCURACY
    counts = ", ".join(f"{n} {state}" for state, n in sweep.counts.items())
    lead = (
        f"; best {metric} {best.metrics[metric]:.4g} ({best.name})"
        if best and metric in best.metrics
        else ""
    )
    return ProgressUpdate(
        job_id=status.job_id,
        phase=status.phase,
        message=f"trials: {counts}{lead}" if counts else status.message,
        epoch=None,
        epochs=None,
        val_accuracy=best.metrics.get(MlflowMetric.VAL_ACCURACY) if best else None,
        cost_so_far_usd=sweep.cost_usd,
    )


def route_monitor(state: AgentState) -> Literal["analyze_cost", "monitor"]:
    return "analyze_cost" if settled(state.get("job")) else "monitor"


async def analyze_cost(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Price the job from what it requested and how long it ran; write it to its MLflow run."""
    ctx = runtime.context
    job = state["job"]
    assert job is not None  # monitor leaves the job's last status
    warnings: list[str] = []
    if job.start_time is None:
        return {"cost": None, "utilization": None}
    usage = await utilization_of(ctx, job, warnings)
    breakdown = price(ctx, job, usage, await gpu_type_of(ctx, job, warnings))
    if job.sweep is not None:
        # The sweep's driver wrote each trial's cost and the total to MLflow itself.
        return {"cost": breakdown, "utilization": usage, "warnings": warnings}
    if job.mlflow_run_id:
        try:
            await ctx.tools.call(RUNS_COST_LOG, run_id=job.mlflow_run_id, breakdown=breakdown)
        except ToolCallError as e:
            warnings.append(f"cost not written to MLflow ({e.kind}): {e.message}")
    else:
        warnings.append("the job reported no MLflow run; cost not written to MLflow")
    return {"cost": breakdown, "utilization": usage, "warnings": warnings}
