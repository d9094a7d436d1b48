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
from pydantic import ValidationError

from agent.capacity import never_fits, sweep_never_fits
from agent.context import AgentContext
from agent.nodes.sweep import SweepRefused, estimate_sweep, sweep_spec
from agent.pricing import BilledResources, money
from agent.request import Request
from agent.state import AgentState, Estimate, Plan
from agent.tools import ToolCallError
from common.errors import ErrorKind
from common.telemetry import MlflowMetric, MlflowParam, MlflowTag
from common.validation import validation_error_line
from common.vocabulary import (
    DATASETS,
    DEFAULT_BATCH_SIZE,
    MODELS,
    SINGLE_NODE_GPUS,
    batch_splits,
    fitted_batch_size,
    ranks,
)
from mcp_servers.kubernetes.schemas import CLUSTER_CAPACITY, MANIFESTS_RENDER, TrainingJobSpec
from mcp_servers.mlflow.schemas import RUNS_SEARCH


class PlanRefused(ValueError):
    """The request can't become a job as asked; the message says what to ask instead."""


def job_spec(request: Request, ctx: AgentContext) -> TrainingJobSpec:
    """The job a train request asks for: GPUs split over nodes as said, defaults for the rest."""
    agent = ctx.settings.agent
    gpus, nodes, per_node = request.gpus, request.nodes, request.gpus_per_node
    if request.gpu_type is not None and gpus is None and per_node is None:
        per_node = 1  # "on A100s": a GPU of that type per node
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
    fields: dict[str, Any] = {
        "model": request.model,
        "dataset": request.dataset,
        "epochs": request.epochs or agent.default_epochs,
        "nodes": nodes,
        "gpus_per_node": per_node,
        "cpus": agent.cpus_per_gpu * per_node if per_node else agent.cpus_per_replica,
        "memory": f"{agent.gib_per_gpu * per_node}Gi" if per_node else agent.memory_per_replica,
    }
    if request.gpu_type is not None and not per_node:
        raise PlanRefused(
            f"{request.gpu_type} GPUs and no GPUs can't both be honoured; ask for e.g. "
            f'"1 {request.gpu_type}", or drop the GPU type to train on CPU'
        )
    for slot in ("batch_size", "lr", "name", "namespace", "gpu_type", "cpus", "memory"):
        if (value := getattr(request, slot)) is not None:
            fields[slot] = value
    if request.max_seconds is not None:
        fields["active_deadline_seconds"] = request.max_seconds
    world_size = ranks(nodes, per_node)
    if "batch_size" not in fields and not batch_splits(DEFAULT_BATCH_SIZE, world_size):
        fields["batch_size"] = fitted_batch_size(world_size)
    fallback = request.fallback_dataset or ctx.fallback_dataset
    if fallback and fallback != fields["dataset"]:
        fields["fallback_dataset"] = fallback
    try:
        return TrainingJobSpec.model_validate(fields)
    except ValidationError as e:
        raise PlanRefused(validation_error_line(e)) from None


def ask_back(request: Request) -> str | None:
    """The one question a train request needs answered before it can be planned, if any."""
    if request.choices:
        slot, named = next(iter(request.choices.items()))
        return f"Which {slot}: {' or '.join(named)}?"
    missing = [slot for slot in ("model", "dataset") if not getattr(request, slot)]
    if not missing:
        return None
    have = " ".join(
        filter(None, (request.model, "on " + request.dataset if request.dataset else None))
    )
    options = {"model": ", ".join(MODELS), "dataset": ", ".join(DATASETS)}
    asked = " and ".join(f"which {slot} ({options[slot]})" for slot in missing)
    verb = "Sweep" if request.intent == "sweep" else "Train"
    return f"{verb} {have + ' ' if have else ''}with {asked}?"


async def plan(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    ctx = runtime.context
    request = state["request"]
    if question := ask_back(request):
        # One short question; the answer (next turn, same thread) completes this request.
        return {
            "plan": Plan(refused=question, refused_kind=ErrorKind.INVALID_ARGUMENT, asks=True),
            "pending": request,
        }
    if request.intent == "sweep":
        return await plan_sweep(request, ctx)
    try:
        spec = job_spec(request, ctx)
    except PlanRefused as e:
        return {"plan": Plan(refused=f"Not launched: {e}", refused_kind=ErrorKind.INVALID_ARGUMENT)}
    try:  # a dry run: the server's own validation and caps answer for the spec
        rendered = await ctx.tools.call(MANIFESTS_RENDER, spec=spec)
    except ToolCallError as e:
        return {"plan": Plan(spec=spec, refused=f"Not launched: {e.message}", refused_kind=e.kind)}
    warnings: list[str] = []
    try:
        capacity = await ctx.tools.call(CLUSTER_CAPACITY)
    except ToolCallError as e:
        warnings.append(f"capacity unknown ({e.kind}): {e.message}; the job may wait for room")
    else:
        if problem := never_fits(spec, capacity):
            return {
                "plan": Plan(
                    spec=spec,
                    refused=f"Not launched: {problem}.",
                    refused_kind=ErrorKind.REFUSED,
                )
            }
    estimate = await estimate_cost(spec, ctx, warnings)
    budget = request.budget_usd or ctx.settings.agent.default_budget_usd
    reasons = approval_reasons(estimate, budget, spec.total_gpus, ctx)
    if request.max_seconds is not None and estimate.duration_s > request.max_seconds:
        reasons.append(
            f"the estimate {estimate.duration_s:.0f}s is over the time limit "
            f"{request.max_seconds}s (the job is stopped there)"
        )
    return {
        "plan": Plan(
            spec=spec,
            kind=rendered.kind,
            namespace=rendered.namespace,
            estimate=estimate,
            budget_usd=budget,
            reasons=reasons,
        ),
        "warnings": warnings,
    }


async def plan_sweep(request: Request, ctx: AgentContext) -> dict[str, Any]:
    """plan, for a sweep: the SweepSpec, the server's dry run, capacity, the estimate."""
    try:
        spec, notes = sweep_spec(request, ctx)
    except SweepRefused as e:
        return {"plan": Plan(refused=f"Not launched: {e}", refused_kind=ErrorKind.INVALID_ARGUMENT)}
    try:
        rendered = await ctx.tools.call(MANIFESTS_RENDER, sweep=spec)
    except ToolCallError as e:
        return {"plan": Plan(sweep=spec, refused=f"Not launched: {e.message}", refused_kind=e.kind)}
    warnings = list(notes)
    try:
        capacity = await ctx.tools.call(CLUSTER_CAPACITY)
    except ToolCallError as e:
        warnings.append(f"capacity unknown ({e.kind}): {e.message}; the sweep may wait for room")
    else:
        if problem := sweep_never_fits(spec, capacity):
            return {
                "plan": Plan(
                    sweep=spec, refused=f"Not launched: {problem}.", refused_kind=ErrorKind.REFUSED
                )
            }
    seconds, basis = await epoch_seconds(
        spec.model, spec.dataset, 1, bool(spec.gpus_per_trial), ctx, warnings
    )
    rate = spec.trial_resources().per_hour(ctx.settings.rates)
    estimate = estimate_sweep(spec, seconds, basis, rate)
    budget = request.budget_usd or ctx.settings.agent.default_budget_usd
    # A sweep's time budget is where it stops itself, not a reason to ask.
    reasons = approval_reasons(estimate, budget, spec.total_gpus, ctx)
    return {
        "plan": Plan(
            sweep=spec,
            kind=rendered.kind,
            namespace=rendered.namespace,
            estimate=estimate,
            budget_usd=budget,
            reasons=reasons,
        ),
        "warnings": warnings,
    }


def approval_reasons(estimate: Estimate, budget: float, gpus: int, ctx: AgentContext) -> list[str]:
    """Why a person must say yes first: over the budget, or more GPUs than the soft cap."""
    reasons = []
    if estimate.cost_usd > budget:
        reasons.append(
            f"the estimate {money(estimate.cost_usd)} is over the budget {money(budget)}"
        )
    if gpus > ctx.settings.agent.soft_max_gpus:
        reasons.append(
            f"{gpus} GPUs at once is more than {ctx.settings.agent.soft_max_gpus} without approval"
        )
    return reasons


async def epoch_seconds(
    model: str, dataset: str, world: int, gpus: bool, ctx: AgentContext, warnings: list[str]
) -> tuple[float, str]:
    """Seconds per epoch at `world` ranks from comparable finished MLflow runs, else a stated
    conservative guess; and where the figure comes from."""
    agent = ctx.settings.agent
    per_epoch: list[float] = []
    try:
        page = await ctx.tools.call(
            RUNS_SEARCH,
            experiment=agent.experiment,
            max_results=50,
            filter=(
                f"params.{MlflowParam.MODEL} = '{model}' and "
                f"params.{MlflowParam.DATASET} = '{dataset}' "
                "and attributes.status = 'FINISHED'"
            ),
        )
        for run in page.runs:
            if MlflowMetric.EPOCH_SECONDS in run.metrics:
                # Throughput scales (at best) with the ranks; fewer ranks take longer.
                run_world = int(run.tags.get(MlflowTag.WORLD_SIZE, "1"))
                per_epoch.append(run.metrics[MlflowMetric.EPOCH_SECONDS] * run_world / world)
    except ToolCallError as e:
        if e.kind != ErrorKind.NOT_FOUND:  # a first run has no experiment yet: no history
            warnings.append(f"no history for the estimate ({e.kind}: {e.message})")
    if per_epoch:
        return statistics.median(per_epoch), (
            f"median of {len(per_epoch)} finished {model}/{dataset} runs"
        )
    assumed = agent.assumed_epoch_seconds_gpu if gpus else agent.assumed_epoch_seconds_cpu
    return assumed, f"no comparable finished runs; assumed {assumed:.0f}s per epoch"


async def estimate_cost(spec: TrainingJobSpec, ctx: AgentContext, warnings: list[str]) -> Estimate:
    """Duration and cost from comparable finished MLflow runs, else a stated conservative guess."""
    world = ranks(spec.nodes, spec.gpus_per_node)
    per_epoch, basis = await epoch_seconds(
        spec.model, spec.dataset, world, bool(spec.gpus_per_node), ctx, warnings
    )
    seconds = per_epoch * spec.epochs
    resources = BilledResources.of(
        spec.nodes, spec.gpus_per_node, spec.cpus, spec.memory, spec.gpu_type
    )
    usd_per_hour = resources.per_hour(ctx.settings.rates)
    return Estimate(
        duration_s=round(seconds, 1),
        cost_usd=round(usd_per_hour * seconds / 3600, 6),
        basis=basis,
        usd_per_hour=round(usd_per_hour, 6),
    )


def route_plan(state: AgentState) -> Literal["approve", "trigger", "report"]:
    plan = state["plan"]
    if plan is None or plan.refused:
        return "report"
    return "approve" if plan.needs_approval else "trigger"


async def approve(state: AgentState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    plan = state["plan"]
    if plan is None or not plan.needs_approval:
        return {"decision": "auto"}
    answer = interrupt(
        {
            "question": "Launch anyway?",
            "reasons": plan.reasons,
            "estimate": plan.estimate.model_dump() if plan.estimate else None,
            "spec": plan.spec.model_dump(mode="json", exclude_unset=True) if plan.spec else None,
        }
    )
    approved = str(answer).strip().lower() in ("approve", "approved", "yes", "y", "true")
    return {"decision": "approved" if approved else "denied"}


def route_approval(state: AgentState) -> Literal["trigger", "report"]:
    return "trigger" if state.get("decision") in ("approved", "auto") else "report"
