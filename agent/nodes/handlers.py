"""Direct handlers: status, logs, cost, cancel, list, compare, register. Each goes straight to its
tools and answers; a tool's error becomes the answer, never a traceback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.runtime import Runtime

from agent.context import AgentContext
from agent.nodes.common import (
    TERMINAL,
    NoJob,
    gpu_type_of,
    mlflow_run,
    mlflow_url,
    money,
    price,
    resolve_job,
    utilization_of,
)
from agent.nodes.plan import PlanRefused, estimate_cost, job_spec
from agent.state import AgentState
from agent.tools import ToolCallError

Handler = Callable[[AgentState, AgentContext, dict[str, Any], list[str]], Awaitable[dict[str, Any]]]


def handler(fn: Handler):
    """A node around a handler: request and warnings in; answer, facts and warnings out."""

    # Not functools.wraps: LangGraph reads the node's own signature to pass it the runtime.
    async def node(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        warnings = list(state.get("warnings", []))
        request = state["request"]
        try:
            update = await fn(state, runtime.context, request, warnings)
        except (NoJob, ToolCallError, PlanRefused) as e:
            message = str(e)
            if isinstance(e, ToolCallError) and message.startswith("no job "):
                # The server's hint names its list tool; a person asks for the list instead.
                message = message.split(";")[0] + '; say "list jobs" to see the jobs there are'
            update = {"answer": message, "facts": {"error": message}}
        facts = {
            "intent": request["intent"],
            "thread_id": runtime.context.thread_id,
            **update.pop("facts", {}),
            "warnings": warnings,
        }
        return {**update, "facts": facts, "warnings": warnings}

    node.__name__ = node.__qualname__ = fn.__name__
    node.__doc__ = fn.__doc__
    return node


@handler
async def status(state, ctx, request, warnings):
    job_id = await resolve_job(state, ctx, request.get("job"))
    job = await ctx.tools.call("kubernetes", "training_jobs_get", job_id=job_id)
    lines = [f"{job_id}: {job['message']}"]
    trend = None
    if job.get("mlflow_run_id"):
        try:
            history = await ctx.tools.call(
                "mlflow", "runs_metric_history", run_id=job["mlflow_run_id"], key="val_loss"
            )
            summary = history["summary"]
            trend = summary
            flag = (
                " (diverging!)"
                if summary["diverging"]
                else (" (plateau)" if summary["plateau"] else "")
            )
            lines.append(
                f"val_loss {summary['last']:.4g} over {summary['count']} epochs, "
                f"{summary['trend']}{flag}."
            )
        except ToolCallError:
            pass  # no epoch finished yet
    return {
        "answer": "\n".join(lines),
        "last_job_id": job_id,
        "job": job,
        "facts": {
            "job_id": job_id,
            "phase": job["phase"],
            "message": job["message"],
            "progress": job.get("progress"),
            "mlflow_run_id": job.get("mlflow_run_id"),
            "val_loss_summary": trend,
        },
    }


@handler
async def logs(state, ctx, request, warnings):
    job_id = await resolve_job(state, ctx, request.get("job"))
    tail = await ctx.tools.call(
        "kubernetes", "training_jobs_logs", job_id=job_id, tail_lines=request.get("lines") or 40
    )
    header = f"Last {len(tail['lines'])} lines of {job_id}/{tail['replica']}:"
    return {
        "answer": "\n".join([header, *tail["lines"]]),
        "last_job_id": job_id,
        "facts": {
            "job_id": job_id,
            "replica": tail["replica"],
            "lines": tail["lines"],
            "truncated": tail["truncated"],
        },
    }


@handler
async def cost(state, ctx, request, warnings):
    if request.get("model") and request.get("dataset"):
        spec = job_spec(request, ctx)
        estimate = await estimate_cost(spec, ctx, warnings)
        return {
            "answer": (
                f"Estimated {money(estimate['cost_usd'])} for {spec['epochs']} epochs of "
                f"{spec['model']} on {spec['dataset']} ({estimate['duration_s']:.0f}s at "
                f"{money(estimate['usd_per_hour'])}/h; {estimate['basis']}). Nothing was launched."
            ),
            "facts": {"estimate": estimate, "spec": spec},
        }
    if request.get("job"):
        job_id = await resolve_job(state, ctx, request["job"])
        job = await ctx.tools.call("kubernetes", "training_jobs_get", job_id=job_id)
        usage = await utilization_of(ctx, job, warnings)
        breakdown = price(ctx, job, usage, await gpu_type_of(ctx, job, warnings))
        if job["phase"] in TERMINAL and job.get("mlflow_run_id"):
            await ctx.tools.call(
                "mlflow", "runs_cost_log", run_id=job["mlflow_run_id"], breakdown=breakdown
            )
        so_far = "" if job["phase"] in TERMINAL else " so far"
        return {
            "answer": (
                f"{job_id} ({job['phase']}) cost {money(breakdown['cost_usd'])}{so_far}: "
                f"{breakdown['cpu_hours']:.3g} CPU-h, {breakdown['gpu_hours']:.3g} GPU-h over "
                f"{breakdown['wall_seconds']:.0f}s."
            ),
            "last_job_id": job_id,
            "facts": {
                "job_id": job_id,
                "phase": job["phase"],
                "cost_usd": breakdown["cost_usd"],
                "cost_breakdown": breakdown,
            },
        }
    report = await ctx.tools.call(
        "mlflow",
        "costs_report",
        experiment=request.get("experiment"),
        since=request.get("period"),
        group_by="model",
    )
    groups = ", ".join(
        f"{g['key']} {money(g['cost_usd'])} ({g['runs']} runs)" for g in report["groups"]
    )
    period = f" in the last {request['period']}" if request.get("period") else ""
    return {
        "answer": (
            f"Total {money(report['total_cost_usd'])}{period} over {report['runs_with_cost']} "
            f"priced runs: {groups or 'none'}."
        ),
        "facts": {"cost_report": report, "cost_usd": report["total_cost_usd"]},
    }


@handler
async def cancel(state, ctx, request, warnings):
    job_id = await resolve_job(state, ctx, request.get("job"))
    before = await ctx.tools.call("kubernetes", "training_jobs_get", job_id=job_id)
    if before["phase"] in TERMINAL:
        return {
            "answer": f"{job_id} already {before['phase']}; nothing to cancel.",
            "last_job_id": job_id,
            "facts": {"job_id": job_id, "phase": before["phase"]},
        }
    after = await ctx.tools.call("kubernetes", "training_jobs_delete", job_id=job_id)
    return {
        "answer": f"Cancelled {job_id}: {after['message']}.",
        "last_job_id": job_id,
        "facts": {"job_id": job_id, "phase": after["phase"]},
    }


@handler
async def list_jobs(state, ctx, request, warnings):
    listed = await ctx.tools.call("kubernetes", "training_jobs_list", limit=20)
    jobs = [
        j
        for j in listed["jobs"]
        if (not request.get("model") or j.get("model") == request["model"])
        and (not request.get("dataset") or j.get("dataset") == request["dataset"])
    ]
    if not jobs:
        return {"answer": "No jobs yet.", "facts": {"jobs": []}}
    rows = [f"{j['job_id']:<28} {j['phase']:<10} {j['message']}" for j in jobs]
    return {"answer": "\n".join(rows), "facts": {"jobs": jobs, "total": listed["total"]}}


@handler
async def compare(state, ctx, request, warnings):
    agent = ctx.settings.agent
    clauses = ["attributes.status = 'FINISHED'"]
    if request.get("model"):
        clauses.append(f"params.model = '{request['model']}'")
    if request.get("dataset"):
        clauses.append(f"params.dataset = '{request['dataset']}'")
    page = await ctx.tools.call(
        "mlflow",
        "runs_search",
        experiment=request.get("experiment") or agent.experiment,
        filter=" and ".join(clauses),
        max_results=5,
    )
    run_ids = [r["run_id"] for r in page["runs"]]
    if len(run_ids) < 2:
        return {
            "answer": "There are fewer than two finished runs to compare.",
            "facts": {"runs": run_ids},
        }
    metrics = [request["metric"]] if request.get("metric") else None
    comparison = await ctx.tools.call("mlflow", "runs_compare", run_ids=run_ids, metrics=metrics)
    lines = []
    for run in comparison["runs"]:
        shown = ", ".join(
            f"{k} {v:.4g}"
            for k, v in sorted(run["metrics"].items())
            if k in ("val_accuracy", "val_loss", "cost_usd", request.get("metric"))
        )
        lines.append(f"{run['tags'].get('trainops.job_id', run['run_id'])}: {shown}")
    best = comparison["best"].get(request.get("metric") or "val_accuracy")
    if best:
        lines.append(f"Best: {best}")
    return {"answer": "\n".join(lines), "facts": {"comparison": comparison}}


@handler
async def register(state, ctx, request, warnings):
    job_id = await resolve_job(state, ctx, request.get("job"))
    job = await ctx.tools.call("kubernetes", "training_jobs_get", job_id=job_id)
    if not job.get("mlflow_run_id"):
        return {
            "answer": f"{job_id} has no MLflow run to register a model from.",
            "facts": {"job_id": job_id},
        }
    name = request.get("name") or f"{job.get('model')}-{job.get('dataset')}"
    version = await ctx.tools.call(
        "mlflow", "models_register", run_id=job["mlflow_run_id"], name=name, alias="candidate"
    )
    run = await mlflow_run(ctx, job["mlflow_run_id"], warnings)
    return {
        "answer": (
            f"Registered {name} version {version['version']} (alias candidate) from {job_id}. "
            f"{mlflow_url(ctx, run) or ''}"
        ).strip(),
        "last_job_id": job_id,
        "facts": {"job_id": job_id, "model_version": version},
    }
