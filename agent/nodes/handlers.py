"""Direct handlers: status, logs, cost, cancel, list, compare, register. Each goes straight to its
tools and answers; a tool's error becomes the answer (with its kind in the facts), never a
traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from langgraph.runtime import Runtime
from pydantic import BaseModel

from agent.context import AgentContext
from agent.nodes.common import (
    NoJob,
    gpu_type_of,
    mlflow_run,
    mlflow_url,
    price,
    resolve_job,
    utilization_of,
)
from agent.nodes.plan import PlanRefused, estimate_cost, job_spec
from agent.nodes.sweep import sweep_facts, sweep_text
from agent.pricing import money
from agent.request import Request
from agent.state import AgentState
from agent.tools import ToolCallError
from common.errors import ErrorKind
from common.telemetry import MlflowMetric, MlflowParam, MlflowTag, higher_is_better
from mcp_servers.kubernetes.schemas import (
    TRAINING_JOBS_DELETE,
    TRAINING_JOBS_GET,
    TRAINING_JOBS_LIST,
    TRAINING_JOBS_LOGS,
    JobStatus,
)
from mcp_servers.mlflow.schemas import (
    COSTS_REPORT,
    MODELS_REGISTER,
    RUNS_COMPARE,
    RUNS_COST_LOG,
    RUNS_METRIC_HISTORY,
    RUNS_SEARCH,
)
from mcp_servers.toolref import ToolRef

R = TypeVar("R", bound=BaseModel)
Handler = Callable[[AgentState, AgentContext, Request, list[str]], Awaitable[dict[str, Any]]]
Node = Callable[[AgentState, Runtime[AgentContext]], Awaitable[dict[str, Any]]]


def handler(fn: Handler) -> Node:
    """A node around a handler: request and warnings in; answer, facts and warnings out."""

    # Not functools.wraps: LangGraph reads the node's own signature to pass it the runtime.
    async def node(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        warnings: list[str] = []
        request = state["request"]
        try:
            update = await fn(state, runtime.context, request, warnings)
        except NoJob as e:
            update = _failed(str(e), ErrorKind.NOT_FOUND)
        except PlanRefused as e:
            update = _failed(str(e), ErrorKind.INVALID_ARGUMENT)
        except ToolCallError as e:
            update = _failed(e.message, e.kind)
        facts = {
            "intent": request.intent,
            "thread_id": runtime.context.thread_id,
            **update.pop("facts", {}),
            "warnings": [*state.get("warnings", []), *warnings],
        }
        return {**update, "facts": facts, "warnings": warnings}

    node.__name__ = node.__qualname__ = fn.__name__
    node.__doc__ = fn.__doc__
    return node


def _failed(message: str, kind: ErrorKind) -> dict[str, Any]:
    return {"answer": message, "facts": {"error": message, "error_kind": kind.value}}


async def job_call(ctx: AgentContext, tool: ToolRef[R], job_id: str, **arguments: Any) -> R:
    """A call about one job; a job that is not there is said so, with what to ask instead."""
    try:
        return await ctx.tools.call(tool, job_id=job_id, **arguments)
    except ToolCallError as e:
        if e.kind == ErrorKind.NOT_FOUND:
            raise NoJob(f'no job {job_id!r}; say "list jobs" to see the jobs there are') from None
        raise


async def get_job(ctx: AgentContext, job_id: str) -> JobStatus:
    return await job_call(ctx, TRAINING_JOBS_GET, job_id)


@handler
async def show_status(
    state: AgentState, ctx: AgentContext, request: Request, warnings: list[str]
) -> dict[str, Any]:
    """A job's phase and progress, and how its validation loss is trending."""
    job_id = await resolve_job(state, ctx, request.job)
    job = await get_job(ctx, job_id)
    if job.sweep is not None:
        return {
            "answer": sweep_text(job, job.sweep, None),
            "last_job_id": job_id,
            "job": job,
            "facts": {
                "job_id": job_id,
                "phase": job.phase,
                "message": job.message,
                "mlflow_run_id": job.mlflow_run_id,
                **sweep_facts(job),
            },
        }
    lines = [f"{job_id}: {job.message}"]
    trend = None
    if job.mlflow_run_id:
        try:
            history = await ctx.tools.call(
                RUNS_METRIC_HISTORY, run_id=job.mlflow_run_id, key=MlflowMetric.VAL_LOSS
            )
            trend = history.summary
            flag = " (diverging!)" if trend.diverging else (" (plateau)" if trend.plateau else "")
            last = f"{trend.last:.4g}" if trend.last is not None else "unknown"
            lines.append(f"val_loss {last} over {trend.count} epochs, {trend.trend}{flag}.")
        except ToolCallError as e:
            if e.kind != ErrorKind.NOT_FOUND:  # not found: no epoch has finished yet
                warnings.append(f"val_loss trend unknown ({e.kind}): {e.message}")
    return {
        "answer": "\n".join(lines),
        "last_job_id": job_id,
        "job": job,
        "facts": {
            "job_id": job_id,
            "phase": job.phase,
            "message": job.message,
            "progress": job.progress.model_dump(mode="json") if job.progress else None,
            "mlflow_run_id": job.mlflow_run_id,
            "val_loss_summary": trend.model_dump(mode="json") if trend else None,
        },
    }


@handler
async def show_logs(
    state: AgentState, ctx: AgentContext, request: Request, warnings: list[str]
) -> dict[str, Any]:
    """The last lines of a job's output."""
    job_id = await resolve_job(state, ctx, request.job)
    if request.replica is not None:
        try:
            tail = await ctx.tools.call(
                TRAINING_JOBS_LOGS,
                job_id=job_id,
                tail_lines=request.lines or 40,
                replica=request.replica,
            )
        except ToolCallError as e:
            if e.kind != ErrorKind.NOT_FOUND:
                raise
            # The job or the replica is not there: the job's own tail says which.
            known = await job_call(ctx, TRAINING_JOBS_LOGS, job_id, tail_lines=1)
            return {
                "answer": f"{job_id} has no {request.replica}; its logs are those of "
                f"{', '.join(known.replicas)}.",
                "last_job_id": job_id,
                "facts": {"job_id": job_id, "replica": None, "replicas": known.replicas},
            }
    else:
        tail = await job_call(ctx, TRAINING_JOBS_LOGS, job_id, tail_lines=request.lines or 40)
    header = f"Last {len(tail.lines)} lines of {job_id}/{tail.replica}:"
    return {
        "answer": "\n".join([header, *tail.lines]),
        "last_job_id": job_id,
        "facts": {
            "job_id": job_id,
            "replica": tail.replica,
            "lines": tail.lines,
            "truncated": tail.truncated,
        },
    }


@handler
async def show_cost(
    state: AgentState, ctx: AgentContext, request: Request, warnings: list[str]
) -> dict[str, Any]:
    """What a job would cost, what one cost (so far), or what many cost together."""
    if request.model and request.dataset:
        spec = job_spec(request, ctx)
        estimate = await estimate_cost(spec, ctx, warnings)
        return {
            "answer": (
                f"Estimated {money(estimate.cost_usd)} for {spec.epochs} epochs of "
                f"{spec.model} on {spec.dataset} ({estimate.duration_s:.0f}s at "
                f"{money(estimate.usd_per_hour)}/h; {estimate.basis}). Nothing was launched."
            ),
            "facts": {
                "estimate": estimate.model_dump(),
                "spec": spec.model_dump(mode="json", exclude_unset=True),
            },
        }
    if request.job:
        job_id = await resolve_job(state, ctx, request.job)
        job = await get_job(ctx, job_id)
        usage = await utilization_of(ctx, job, warnings)
        breakdown = price(ctx, job, usage, await gpu_type_of(ctx, job, warnings))
        if job.terminal and job.mlflow_run_id:
            await ctx.tools.call(RUNS_COST_LOG, run_id=job.mlflow_run_id, breakdown=breakdown)
        so_far = "" if job.terminal else " so far"
        return {
            "answer": (
                f"{job_id} ({job.phase}) cost {money(breakdown.cost_usd)}{so_far}: "
                f"{breakdown.cpu_hours:.3g} CPU-h, {breakdown.gpu_hours:.3g} GPU-h over "
                f"{breakdown.wall_seconds or 0:.0f}s."
            ),
            "last_job_id": job_id,
            "facts": {
                "job_id": job_id,
                "phase": job.phase,
                "cost_usd": breakdown.cost_usd,
                "cost_breakdown": breakdown.model_dump(exclude_none=True),
            },
        }
    report = await ctx.tools.call(
        COSTS_REPORT, experiment=request.experiment, since=request.period, group_by="model"
    )
    groups = ", ".join(f"{g.key} {money(g.cost_usd)} ({g.runs} runs)" for g in report.groups)
    period = f" in the last {request.period}" if request.period else ""
    return {
        "answer": (
            f"Total {money(report.total_cost_usd)}{period} over {report.runs_with_cost} "
            f"priced runs: {groups or 'none'}."
        ),
        "facts": {"cost_report": report.model_dump(mode="json"), "cost_usd": report.total_cost_usd},
    }


@handler
async def cancel_job(
    state: AgentState, ctx: AgentContext, request: Request, warnings: list[str]
) -> dict[str, Any]:
    """Cancel one job (a finished one is left as it is)."""
    job_id = await resolve_job(state, ctx, request.job)
    before = await get_job(ctx, job_id)
    if before.terminal:
        return {
            "answer": f"{job_id} already {before.phase}; nothing to cancel.",
            "last_job_id": job_id,
            "facts": {"job_id": job_id, "phase": before.phase},
        }
    after = await job_call(ctx, TRAINING_JOBS_DELETE, job_id)
    return {
        "answer": f"Cancelled {job_id}: {after.message}.",
        "last_job_id": job_id,
        "facts": {"job_id": job_id, "phase": after.phase},
    }


@handler
async def list_jobs(
    state: AgentState, ctx: AgentContext, request: Request, warnings: list[str]
) -> dict[str, Any]:
    """Recent jobs, newest first (of a model or dataset when one is named)."""
    listed = await ctx.tools.call(TRAINING_JOBS_LIST, limit=20)
    jobs = [
        j
        for j in listed.jobs
        if (not request.model or j.model == request.model)
        and (not request.dataset or j.dataset == request.dataset)
    ]
    if not jobs:
        return {"answer": "No jobs yet.", "facts": {"jobs": []}}
    rows = [f"{j.job_id:<28} {j.phase:<10} {j.message}" for j in jobs]
    return {
        "answer": "\n".join(rows),
        "facts": {"jobs": [j.model_dump(mode="json") for j in jobs], "total": listed.total},
    }


@handler
async def compare_runs(
    state: AgentState, ctx: AgentContext, request: Request, warnings: list[str]
) -> dict[str, Any]:
    """The jobs named, or the last N finished runs (5 when not said), side by side, with the
    best one by the metric asked for."""
    if request.jobs:
        run_ids = [await _run_of(ctx, job_id) for job_id in request.jobs]
        if len(run_ids) < 2:
            return {
                "answer": f'Name at least two jobs to compare, e.g. "compare {request.jobs[0]} '
                'and <another job id>", or say "compare the last 3 runs".',
                "facts": {"runs": run_ids},
            }
    else:
        wanted = request.count or DEFAULT_COMPARED
        page = await ctx.tools.call(
            RUNS_SEARCH,
            experiment=request.experiment or ctx.settings.agent.experiment,
            filter=_finished_runs(request),
            max_results=wanted,
        )
        run_ids = [r.run_id for r in page.runs]
        if len(run_ids) < 2 or (request.count and len(run_ids) < request.count):
            return {
                "answer": f"There are {len(run_ids)} finished runs to compare"
                + (f", not {request.count}." if request.count else "; two are needed."),
                "facts": {"runs": run_ids},
            }
    metric = request.metric or MlflowMetric.VAL_ACCURACY
    shown_metrics = {MlflowMetric.VAL_ACCURACY, MlflowMetric.VAL_LOSS, "cost_usd", metric}
    comparison = await ctx.tools.call(
        RUNS_COMPARE, run_ids=run_ids, metrics=[request.metric] if request.metric else None
    )
    lines = []
    for run in comparison.runs:
        shown = ", ".join(
            f"{k} {v:.4g}" for k, v in sorted(run.metrics.items()) if k in shown_metrics
        )
        lines.append(f"{run.tags.get(MlflowTag.JOB_ID, run.run_id)}: {shown}")
    if best := comparison.best.get(metric):
        lines.append(f"Best: {best}")
    return {"answer": "\n".join(lines), "facts": {"comparison": comparison.model_dump(mode="json")}}


DEFAULT_COMPARED = 5


def _finished_runs(request: Request) -> str:
    clauses = ["attributes.status = 'FINISHED'"]
    if request.model:
        clauses.append(f"params.{MlflowParam.MODEL} = '{request.model}'")
    if request.dataset:
        clauses.append(f"params.{MlflowParam.DATASET} = '{request.dataset}'")
    return " and ".join(clauses)


async def _run_of(ctx: AgentContext, job_id: str) -> str:
    job = await get_job(ctx, job_id)
    if not job.mlflow_run_id:
        raise NoJob(f"{job_id} has no MLflow run to compare ({job.phase}: {job.message})")
    return job.mlflow_run_id


async def _best_run(ctx: AgentContext, request: Request) -> tuple[str, str]:
    """The finished run that is best by the metric asked for (val_accuracy when not said):
    its job id and run id."""
    metric = request.metric or MlflowMetric.VAL_ACCURACY
    mode = request.mode or ("max" if higher_is_better(metric) else "min")
    page = await ctx.tools.call(
        RUNS_SEARCH,
        experiment=request.experiment or ctx.settings.agent.experiment,
        filter=f"{_finished_runs(request)} and metrics.{metric} >= 0",
        order_by=[f"metrics.{metric} {'DESC' if mode == 'max' else 'ASC'}"],
        max_results=1,
    )
    if not page.runs:
        raise NoJob(f"no finished run has {metric} yet; train one first")
    run = page.runs[0]
    return run.tags.get(MlflowTag.JOB_ID, run.run_id), run.run_id


@handler
async def register_model(
    state: AgentState, ctx: AgentContext, request: Request, warnings: list[str]
) -> dict[str, Any]:
    """Register the model a job's run logged (or the best run's, by the metric asked for), as a
    candidate version."""
    if request.job == "best":
        job_id, _ = await _best_run(ctx, request)
    else:
        job_id = await resolve_job(state, ctx, request.job)
    job = await get_job(ctx, job_id)
    if not job.mlflow_run_id:
        return {
            "answer": f"{job_id} has no MLflow run to register a model from.",
            "facts": {"job_id": job_id},
        }
    name = request.name or f"{job.model}-{job.dataset}"
    run_id = job.mlflow_run_id
    if job.sweep is not None:
        # A sweep's run holds no model; its best trial's run does.
        best = job.sweep.best
        if best is None or not best.mlflow_run_id:
            return {
                "answer": f"Sweep {job_id} has no best trial with a model to register yet.",
                "facts": {"job_id": job_id},
            }
        run_id = best.mlflow_run_id
    version = await ctx.tools.call(MODELS_REGISTER, run_id=run_id, name=name, alias="candidate")
    run = await mlflow_run(ctx, run_id, warnings)
    return {
        "answer": (
            f"Registered {name} version {version.version} (alias candidate) from {job_id}. "
            f"{mlflow_url(ctx, run) or ''}"
        ).strip(),
        "last_job_id": job_id,
        "facts": {"job_id": job_id, "model_version": version.model_dump()},
    }
