"""report: a short answer for a person, and the same facts as JSON."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from agent.context import AgentContext
from agent.nodes.common import TERMINAL, mlflow_url, money
from agent.nodes.run import job_summary_facts
from agent.request import CAPABILITIES
from agent.state import AgentState

HEADLINE = ("val_accuracy", "test_accuracy", "val_loss", "val_perplexity", "train_loss")


async def report(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    request = state["request"]
    warnings = list(state.get("warnings", []))
    plan = state.get("plan") or {}
    base = {"intent": request["intent"], "thread_id": ctx.thread_id}
    if request["intent"] == "unknown":
        return _answer(request.get("reply") or CAPABILITIES, base, warnings)
    if request["intent"] == "sweep":
        return _answer(
            "Sweeps need the Ray Tune backend, which this version does not have yet; I can train "
            'one configuration at a time (e.g. "Train a CNN on MNIST with lr 1e-3").',
            base,
            warnings,
        )
    if plan.get("refused"):
        return _answer(
            plan["refused"], {**base, "phase": None, "refused": plan["refused"]}, warnings
        )
    if state.get("decision") == "denied":
        estimate = plan["estimate"]
        return _answer(
            f"Not launched, as you decided ({'; '.join(plan['reasons'])}). "
            f"Estimate: {money(estimate['cost_usd'])} over {estimate['duration_s']:.0f}s "
            f"({estimate['basis']}).",
            {**base, "phase": None, "estimate": estimate, "launched": False},
            warnings,
        )
    if state.get("detached"):
        job = state["job"]
        return _answer(
            f"Launched {job['kind']} {job['job_id']} ({job['message']}). It runs on without me "
            'watching: ask "how is it going?", "show the logs" or "cancel it".',
            {
                **base,
                "job_id": job["job_id"],
                "phase": job["phase"],
                "estimate": plan.get("estimate"),
            },
            warnings,
        )
    facts = await job_summary_facts(state, ctx, warnings)
    run = facts.pop("run")
    tags = (run or {}).get("all_tags") or (run or {}).get("tags") or {}
    facts.update(base)
    facts["mlflow_url"] = mlflow_url(ctx, run)
    facts["dataset_used"] = tags.get("dataset.used")
    if tags.get("dataset.fallback_reason"):
        warnings.append(
            f"dataset {tags.get('dataset.requested')} could not be used; trained on "
            f"{tags.get('dataset.used')} instead: {tags['dataset.fallback_reason']}"
        )
    return _answer(_job_text(facts, state), facts, warnings)


def _job_text(facts: dict[str, Any], state: AgentState) -> str:
    job = state.get("job") or {}
    lines = []
    if facts["phase"] in TERMINAL and facts.get("duration_s") is not None:
        lines.append(
            f"Job {facts['job_id']} {facts['phase']} in {facts['duration_s']:.0f}s "
            f"({job.get('kind')}, {job.get('nodes') or 1} replica(s))."
        )
    else:
        lines.append(f"Job {facts['job_id']}: {facts.get('message')}")
    if facts.get("dataset_used"):
        lines.append(f"Dataset: {facts['dataset_used']}.")
    metrics = facts.get("metrics") or {}
    shown = [f"{k} {metrics[k]:.4g}" for k in HEADLINE if k in metrics]
    if shown:
        lines.append("Metrics (MLflow): " + ", ".join(shown) + ".")
    cost = facts.get("cost_breakdown")
    if cost:
        parts = [f"GPU {money(cost['cost_gpu_usd'])}"] if cost.get("gpu_hours") else []
        parts += [f"CPU {money(cost['cost_cpu_usd'])}", f"memory {money(cost['cost_memory_usd'])}"]
        lines.append(
            f"Cost: {money(cost['cost_usd'])} ({', '.join(parts)}; "
            f"{cost['gpu_hours']:.3g} GPU-h, {cost['cpu_hours']:.3g} CPU-h)."
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
    if job.get("phase") == "Pending":
        lines.append('It cannot start here; cancel it ("cancel it") or ask for fewer resources.')
    if job.get("phase") == "Failed":
        lines.append('Ask "why did it fail?" for a diagnosis.')
    return "\n".join(lines)


def _answer(text: str, facts: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    return {"answer": text, "facts": {**facts, "warnings": warnings}, "warnings": warnings}
