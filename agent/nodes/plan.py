"""plan and approve: the Request becomes a job spec with a cost estimate; over-budget asks first.

plan has no side effects (the manifest is only rendered, as a dry run), so re-running it on a
resumed thread is harmless; approve interrupts, and runs again on resume.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.context import AgentContext
from agent.pricing import Resources
from agent.state import AgentState
from agent.tools import ToolCallError

SINGLE_NODE_GPUS = 8
DEFAULT_BATCH_SIZE = 256


class PlanRefused(ValueError):
    """The request can't become a job as asked; the message says what to ask instead."""


def job_spec(request: dict[str, Any], ctx: AgentContext) -> dict[str, Any]:
    agent = ctx.settings.agent
    gpus = request.get("gpus")
    nodes = request.get("nodes")
    per_node = request.get("gpus_per_node")
    if per_node is None and gpus:
        if not nodes:
            nodes = max(1, math.ceil(gpus / SINGLE_NODE_GPUS))
        if gpus % nodes:
            # Never round: fewer GPUs than asked is slower, more is billed; ask instead.
            raise PlanRefused(
                f"{gpus} GPUs don't split evenly over {nodes} nodes; ask for a multiple of "
                f"{nodes} GPUs (e.g. {nodes * max(1, gpus // nodes)}) or another node count"
            )
        per_node = gpus // nodes
    nodes = nodes or 1
    per_node = per_node or 0
    ranks = nodes * max(per_node, 1)
    spec: dict[str, Any] = {
        "model": request["model"],
        "dataset": request["dataset"],
        "epochs": request.get("epochs") or agent.default_epochs,
        "nodes": nodes,
        "gpus_per_node": per_node,
        "cpus": agent.cpus_per_gpu * per_node if per_node else agent.cpus_per_replica,
        "memory": f"{agent.gib_per_gpu * per_node}Gi" if per_node else agent.memory_per_replica,
    }
    for slot in ("batch_size", "lr", "name", "namespace"):
        if request.get(slot) is not None:
            spec[slot] = request[slot]
    if "batch_size" not in spec and DEFAULT_BATCH_SIZE % ranks:
        spec["batch_size"] = ranks * max(1, round(DEFAULT_BATCH_SIZE / ranks))
    if ctx.fallback_dataset and ctx.fallback_dataset != spec["dataset"]:
        spec["fallback_dataset"] = ctx.fallback_dataset
    return spec


async def plan(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    request = state["request"]
    missing = [slot for slot in ("model", "dataset") if not request.get(slot)]
    if missing:
        return {
            "plan": {
                "refused": (
                    f'Which {" and ".join(missing)}? e.g. "Train a CNN on MNIST for 3 epochs" '
                    "(models: cnn, mlp, resnet18, gpt; datasets: mnist, fashion-mnist, cifar10, "
                    "digits, synthetic)."
                )
            }
        }
    try:
        spec = job_spec(request, ctx)
    except PlanRefused as e:
        return {"plan": {"refused": f"Not launched: {e}"}}
    try:  # a dry run: the server's own validation and caps answer for the spec
        rendered = await ctx.tools.call("kubernetes", "manifests_render", spec=spec)
    except ToolCallError as e:
        return {"plan": {"spec": spec, "refused": f"Not launched: {e}"}}
    warnings = list(state.get("warnings", []))
    estimate = await estimate_cost(spec, ctx, warnings)
    budget = request.get("budget_usd") or ctx.settings.agent.default_budget_usd
    reasons = []
    if estimate["cost_usd"] > budget:
        reasons.append(f"the estimate ${estimate['cost_usd']:.2f} is over the budget ${budget:.2f}")
    total_gpus = spec["nodes"] * spec["gpus_per_node"]
    if total_gpus > ctx.settings.agent.soft_max_gpus:
        reasons.append(
            f"{total_gpus} GPUs is more than {ctx.settings.agent.soft_max_gpus} without approval"
        )
    return {
        "plan": {
            "spec": spec,
            "kind": rendered["kind"],
            "namespace": rendered["namespace"],
            "estimate": estimate,
            "budget_usd": budget,
            "reasons": reasons,
            "needs_approval": bool(reasons),
        },
        "warnings": warnings,
    }


async def estimate_cost(
    spec: dict[str, Any], ctx: AgentContext, warnings: list[str]
) -> dict[str, Any]:
    """Duration and cost from comparable finished MLflow runs, else a stated conservative guess."""
    agent = ctx.settings.agent
    world = spec["nodes"] * max(spec["gpus_per_node"], 1)
    per_epoch: list[float] = []
    try:
        page = await ctx.tools.call(
            "mlflow",
            "runs_search",
            experiment=agent.experiment,
            max_results=50,
            filter=(
                f"params.model = '{spec['model']}' and params.dataset = '{spec['dataset']}' "
                "and attributes.status = 'FINISHED'"
            ),
        )
        for run in page.get("runs", []):
            if "epoch_seconds" in run["metrics"]:
                # Throughput scales (at best) with the ranks; fewer ranks take longer.
                run_world = int(run["tags"].get("trainops.world_size", "1"))
                per_epoch.append(run["metrics"]["epoch_seconds"] * run_world / world)
    except ToolCallError as e:
        if "no experiment" not in str(e):  # a first run has no history: not worth a warning
            warnings.append(f"no history for the estimate ({e})")
    if per_epoch:
        seconds = statistics.median(per_epoch) * spec["epochs"]
        basis = f"median of {len(per_epoch)} finished {spec['model']}/{spec['dataset']} runs"
    else:
        assumed = (
            agent.assumed_epoch_seconds_gpu
            if spec["gpus_per_node"]
            else agent.assumed_epoch_seconds_cpu
        )
        seconds = assumed * spec["epochs"]
        basis = f"no comparable finished runs; assumed {assumed:.0f}s per epoch"
    resources = Resources.of(spec["nodes"], spec["gpus_per_node"], spec["cpus"], spec["memory"])
    cost = resources.per_hour(ctx.settings.rates) * seconds / 3600
    return {
        "duration_s": round(seconds, 1),
        "cost_usd": round(cost, 6),
        "basis": basis,
        "usd_per_hour": round(resources.per_hour(ctx.settings.rates), 6),
    }


def route_plan(state: AgentState) -> Literal["approve", "trigger", "report"]:
    plan = state["plan"]
    if plan.get("refused"):
        return "report"
    return "approve" if plan.get("needs_approval") else "trigger"


async def approve(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    plan = state["plan"]
    if not plan.get("needs_approval"):
        return {"decision": "auto"}
    answer = interrupt(
        {
            "question": "Launch anyway?",
            "reasons": plan["reasons"],
            "estimate": plan["estimate"],
            "spec": plan["spec"],
        }
    )
    approved = str(answer).strip().lower() in ("approve", "approved", "yes", "y", "true")
    return {"decision": "approved" if approved else "denied"}


def route_approval(state: AgentState) -> Literal["trigger", "report"]:
    return "trigger" if state.get("decision") in ("approved", "auto") else "report"
