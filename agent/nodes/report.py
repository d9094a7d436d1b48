"""report: a short answer for a person, and the same facts as JSON."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import AgentContext
from agent.nodes.common import duration_seconds, mlflow_run, mlflow_url
from agent.nodes.sweep import sweep_facts, sweep_text
from agent.pricing import money
from agent.request import CAPABILITIES
from agent.state import AgentState
from common.telemetry import HEADLINE_METRICS, MlflowTag
from mcp_servers.kubernetes.schemas import JobStatus
from mcp_servers.mlflow.schemas import CostBreakdown, RunDetail


async def report(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    request = state["request"]
    warnings: list[str] = []
    seen = list(state.get("warnings", []))
    plan = state.get("plan")
    base: dict[str, Any] = {"intent": request.intent, "thread_id": ctx.thread_id}
    if request.intent == "unknown":
        facts = {**base, "refused_parts": request.refused or [], "launched": False}
        return _answer(request.reply or CAPABILITIES, facts, seen, warnings)
    if plan is not None and plan.refused:
        refusal = {
            **base,
            "phase": None,
            "refused": plan.refused,
            "error_kind": plan.refused_kind.value if plan.refused_kind else None,
            "question": plan.asks,
            "launched": False,
        }
        return _answer(plan.refused, refusal, seen, warnings)
    if state.get("decision") == "denied" and plan is not None and plan.estimate is not None:
        estimate = plan.estimate
        return _answer(
            f"Not launched, as you decided ({'; '.join(plan.reasons)}). "
            f"Estimate: {money(estimate.cost_usd)} over {estimate.duration_s:.0f}s "
            f"({estimate.basis}).",
            {**base, "phase": None, "estimate": estimate.model_dump(), "launched": False},
            seen,
            warnings,
        )
    job = state.get("job")
    assert job is not None  # every other route to report launched a job
    if state.get("detached"):
        return _answer(
            f"Launched {job.kind} {job.job_id} ({job.message}). It runs on without me "
            'watching: ask "how is it going?", "show the logs" or "cancel it".',
            {
                **base,
                "job_id": job.job_id,
                "phase": job.phase,
                "estimate": plan.estimate.model_dump() if plan and plan.estimate else None,
            },
            seen,
            warnings,
        )
    run = await mlflow_run(ctx, job.mlflow_run_id, warnings)
    facts = {**base, **job_facts(state, job, run)}
    facts["mlflow_url"] = mlflow_url(ctx, run)
    if job.sweep is not None:
        facts.update(sweep_facts(job))
        facts["metrics"] = job.sweep.best.metrics if job.sweep.best else {}
        if plan is not None and plan.estimate is not None:
            facts["estimate"] = plan.estimate.model_dump()
        return _answer(sweep_text(job, job.sweep, facts["mlflow_url"]), facts, seen, warnings)
    tags = run.all_tags if run else {}
    facts["dataset_used"] = tags.get(MlflowTag.DATASET_USED)
    if reason := tags.get(MlflowTag.DATASET_FALLBACK_REASON):
        warnings.append(
            f"dataset {tags.get(MlflowTag.DATASET_REQUESTED)} could not be used; trained on "
            f"{tags.get(MlflowTag.DATASET_USED)} instead: {reason}"
        )
    return _answer(_job_text(facts, job, state.get("cost")), facts, seen, warnings)


def job_facts(state: AgentState, job: JobStatus, run: RunDetail | None) -> dict[str, Any]:
    """What the report states about a job, each number as its source holds it."""
    usage = state.get("utilization")
    cost = state.get("cost")
    progress_metrics = job.progress.metrics if job.progress else {}
    return {
        "job_id": job.job_id,
        "phase": job.phase,
        "message": job.message,
        "metrics": (run.metrics if run else None) or progress_metrics,
        "duration_s": duration_seconds(job),
        "cost_usd": cost.cost_usd if cost else None,
        "cost_breakdown": cost.model_dump(exclude_none=True) if cost else None,
        "gpu_utilization": usage.gpu.mean_utilization if usage else None,
        "cpu_utilization": usage.cpu.mean_utilization if usage else None,
        "mlflow_run_id": job.mlflow_run_id,
    }


def _job_text(facts: dict[str, Any], job: JobStatus, cost: CostBreakdown | None) -> str:
    lines = []
    if job.terminal and facts.get("duration_s") is not None:
        lines.append(
            f"Job {job.job_id} {job.phase} in {facts['duration_s']:.0f}s "
            f"({job.kind}, {job.nodes or 1} replica(s))."
        )
    else:
        lines.append(f"Job {job.job_id}: {job.message}")
    if facts.get("dataset_used"):
        lines.append(f"Dataset: {facts['dataset_used']}.")
    metrics = facts.get("metrics") or {}
    shown = [f"{k} {metrics[k]:.4g}" for k in HEADLINE_METRICS if k in metrics]
    if shown:
        lines.append("Metrics (MLflow): " + ", ".join(shown) + ".")
    if cost:
        parts = [f"GPU {money(cost.cost_gpu_usd)}"] if cost.gpu_hours else []
        parts += [f"CPU {money(cost.cost_cpu_usd)}", f"memory {money(cost.cost_memory_usd)}"]
        lines.append(
            f"Cost: {money(cost.cost_usd)} ({', '.join(parts)}; "
            f"{cost.gpu_hours:.3g} GPU-h, {cost.cpu_hours:.3g} CPU-h)."
        )
    gpu, cpu = facts.get("gpu_utilization"), facts.get("cpu_utilization")
    usage = []
    if gpu is not None:
        usage.append(f"GPU {gpu:.0%}")
    if cpu is not None:
        usage.append(f"CPU {cpu:.0%} of requested")
    lines.append("Utilisation: " + (", ".join(usage) if usage else "unknown") + ".")
    if facts.get("mlflow_url"):
        lines.append(f"MLflow run: {facts['mlflow_url']}")
    if job.phase == "Pending":
        lines.append('It cannot start here; cancel it ("cancel it") or ask for fewer resources.')
    if job.phase == "Failed":
        lines.append('Ask "why did it fail?" for a diagnosis.')
    return "\n".join(lines)


def _answer(
    text: str, facts: dict[str, Any], seen: list[str], warnings: list[str]
) -> dict[str, Any]:
    return {
        "answer": text,
        "facts": {**facts, "warnings": [*seen, *warnings]},
        "warnings": warnings,
    }
