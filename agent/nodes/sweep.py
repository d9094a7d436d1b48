"""A sweep request as a Ray Tune sweep: its spec, its estimate, its cost and its report.

The estimate prices the trial-epochs the scheduler is expected to run (ASHA stops most trials
early), and says so. Once it ran, the cost is the driver's own count per trial (the one MLflow
holds), and what early stopping saved beside it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent.context import AgentContext
from agent.pricing import money
from agent.request import ParamChoice, Request
from agent.state import Estimate
from common.telemetry import MlflowMetric, higher_is_better
from common.validation import validation_error_line
from mcp_servers.kubernetes.schemas import JobStatus, SweepSpec, SweepStatus, TrialStatus
from training.search_space import SCHEDULER_NAMES, expected_epoch_fraction

DEFAULT_SPACE: dict[str, Any] = {"lr": {"low": 1e-4, "high": 1e-1, "scale": "log"}}
"""What a sweep searches when the request names no parameter: the learning rate."""
DEFAULT_TRIALS = 8
DEFAULT_CONCURRENT = 2


class SweepRefused(ValueError):
    """The request can't become a sweep as asked; the message says what to ask instead."""


def sweep_spec(request: Request, ctx: AgentContext) -> tuple[SweepSpec, list[str]]:
    """The sweep a request asks for, and notes on the defaults it was given."""
    agent = ctx.settings.agent
    notes: list[str] = []
    if request.scheduler is not None and request.scheduler not in SCHEDULER_NAMES:
        raise SweepRefused(
            f"the {request.scheduler} scheduler is not supported; ask for "
            f"{', '.join(SCHEDULER_NAMES)} (ASHA is the default)"
        )
    if request.nodes and request.nodes > 1:
        raise SweepRefused(
            f"a trial runs on one node, so {request.nodes} nodes per trial can't be honoured; "
            'ask for more trials at once instead (e.g. "4 at a time")'
        )
    params: dict[str, Any] = {}
    if request.params:
        params = {name: p.model_dump() for name, p in request.params.items()}
    else:
        params = dict(DEFAULT_SPACE)
        notes.append("no parameter named: searching lr log-uniformly over 1e-4..1e-1")
    trials = request.trials or DEFAULT_TRIALS
    if request.search == "grid":
        trials = _grid_repeats(request)
    gpus_per_trial = request.gpus_per_node or 0
    concurrent = request.max_concurrent
    if request.gpus and not request.gpus_per_node:
        # "on 4 GPUs": that many trials at once, a GPU each.
        gpus_per_trial = 1
        concurrent = concurrent or request.gpus
        if concurrent * gpus_per_trial > request.gpus:
            raise SweepRefused(
                f"{concurrent} trials at once with a GPU each is more than the {request.gpus} "
                f"GPUs asked for; ask for {request.gpus} at a time or more GPUs"
            )
    if request.gpu_type is not None and not gpus_per_trial:
        gpus_per_trial = 1
    concurrent = concurrent or min(trials, DEFAULT_CONCURRENT)
    metric = request.metric or MlflowMetric.VAL_ACCURACY
    fields: dict[str, Any] = {
        "model": request.model,
        "dataset": request.dataset,
        "params": params,
        "epochs": request.epochs or agent.default_epochs,
        "trials": trials,
        "max_concurrent": concurrent,
        "metric": metric,
        "mode": request.mode or ("max" if higher_is_better(metric) else "min"),
        "gpus_per_trial": gpus_per_trial,
        "cpus_per_trial": request.cpus
        or (agent.cpus_per_gpu * gpus_per_trial if gpus_per_trial else agent.cpus_per_replica),
        "memory_per_trial": request.memory
        or (
            f"{agent.gib_per_gpu * gpus_per_trial}Gi"
            if gpus_per_trial
            else agent.memory_per_replica
        ),
    }
    if request.scheduler is not None:
        fields["scheduler"] = request.scheduler
    if request.search is not None:
        fields["search"] = request.search
    for slot in ("batch_size", "lr", "name", "namespace", "gpu_type", "budget_usd"):
        if (value := getattr(request, slot)) is not None:
            fields[slot] = value
    if request.max_seconds is not None:
        fields["max_seconds"] = request.max_seconds
    fallback = request.fallback_dataset or ctx.fallback_dataset
    if fallback and fallback != fields["dataset"]:
        fields["fallback_dataset"] = fallback
    try:
        return SweepSpec.model_validate(fields), notes
    except ValidationError as e:
        raise SweepRefused(validation_error_line(e)) from None


def _grid_repeats(request: Request) -> int:
    """How often a grid runs each point: once, unless the trials asked for are a multiple."""
    points = 1
    for param in (request.params or {}).values():
        points *= len(param.values) if isinstance(param, ParamChoice) else 1
    if request.trials is None:
        return 1
    if request.trials % points:
        raise SweepRefused(
            f"a grid of {points} points runs {points} trials per pass; ask for a multiple of "
            f"{points} trials, or drop the trial count to run each point once"
        )
    return request.trials // points


def estimate_sweep(
    spec: SweepSpec, epoch_seconds: float, basis: str, usd_per_trial_hour: float
) -> Estimate:
    """Trial-epochs the scheduler is expected to run, priced per trial-hour; the sweep's wall
    time is those spread over the concurrent trials."""
    fraction = expected_epoch_fraction(
        spec.scheduler, spec.total_trials, spec.epochs, spec.grace_period, spec.reduction_factor
    )
    trial_epochs = spec.total_trials * spec.epochs * fraction
    trial_seconds = trial_epochs * epoch_seconds
    cost = trial_seconds / 3600 * usd_per_trial_hour
    if spec.budget_usd is not None:
        cost = min(cost, spec.budget_usd)  # the sweep stops itself there
    how = (
        f"{spec.scheduler.upper()} is expected to run {fraction:.0%} of the "
        f"{spec.total_trials} x {spec.epochs} trial-epochs"
        if fraction < 1
        else f"{spec.scheduler.upper()} runs all {spec.total_trials} x {spec.epochs} trial-epochs"
    )
    return Estimate(
        duration_s=round(trial_seconds / spec.concurrent, 1),
        cost_usd=round(cost, 6),
        basis=f"{how}; {basis}",
        usd_per_hour=round(usd_per_trial_hour * spec.concurrent, 6),
        trial_epochs=round(trial_epochs, 2),
    )


def trial_row(trial: TrialStatus, metric: str | None) -> dict[str, Any]:
    return {
        "trial": trial.name,
        "state": trial.state,
        "stop_reason": trial.stop_reason,
        "epochs": trial.epochs,
        "metric": trial.metrics.get(metric) if metric else None,
        "cost_usd": trial.cost_usd,
        "config": trial.config,
        "mlflow_run_id": trial.mlflow_run_id,
        "error": trial.error,
    }


def sweep_facts(job: JobStatus) -> dict[str, Any]:
    sweep = job.sweep
    if sweep is None:
        return {"sweep": None}
    best = sweep.best
    return {
        "sweep": {
            "trials_total": sweep.trials_total,
            "counts": sweep.counts,
            "metric": sweep.metric,
            "mode": sweep.mode,
            "best": trial_row(best, sweep.metric) if best else None,
            "trials": [trial_row(t, sweep.metric) for t in sweep.trials],
            "trials_omitted": sweep.trials_omitted,
            "cost_usd": sweep.cost_usd,
            "saved_usd": sweep.saved_usd,
            "budget_hit": sweep.budget_hit,
        }
    }


def sweep_text(job: JobStatus, sweep: SweepStatus, mlflow_url: str | None) -> str:
    """The report of a sweep: the best trial, a table of trials, the money."""
    metric = sweep.metric or "metric"
    lines = []
    ended = ", ".join(f"{n} {state}" for state, n in sweep.counts.items())
    lines.append(f"Sweep {job.job_id} {job.phase} ({sweep.trials_total} trials: {ended}).")
    if sweep.best is not None:
        best = sweep.best
        value = best.metrics.get(metric)
        lines.append(
            f"Best: {best.name} ({_config(best.config)}): {metric} "
            f"{value:.4g} after {best.epochs} epoch(s)."
            if value is not None
            else f"Best: {best.name}."
        )
    lines.append(f"{'trial':<10} {'ended':<22} {'epochs':>6} {metric:>14} {'cost':>10}  config")
    for trial in sweep.trials:
        value = trial.metrics.get(metric)
        ended_as = trial.state + (f" ({_reason(trial)})" if trial.stop_reason else "")
        shown = f"{value:.4g}" if value is not None else "-"
        lines.append(
            f"{trial.name:<10} {ended_as:<22} {trial.epochs:>3}/{job.epochs or '?':<2} "
            f"{shown:>14} {money(trial.cost_usd):>10}  {_config(trial.config)}"
        )
    if sweep.trials_omitted:
        lines.append(
            f"... and {sweep.trials_omitted} more trials (the best and running are shown)."
        )
    money_line = f"Cost: {money(sweep.cost_usd)} for the trials"
    if sweep.saved_usd is not None:
        money_line += f"; early stopping saved {money(sweep.saved_usd)}"
    if sweep.budget_hit:
        money_line += "; the budget was reached and the sweep stopped there"
    lines.append(money_line + ".")
    if mlflow_url:
        lines.append(f"MLflow sweep run: {mlflow_url}")
    if job.phase == "Failed":
        lines.append('Ask "why did it fail?" for a diagnosis.')
    return "\n".join(lines)


def _reason(trial: TrialStatus) -> str:
    return {"scheduler": "early", "budget": "budget", "time_budget": "time", "cancelled": "cancel"}[
        trial.stop_reason or "scheduler"
    ]


def _config(config: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in config.items()
    )
