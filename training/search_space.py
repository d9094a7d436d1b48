"""A sweep's search space and settings: what may be tuned, over what values, with which scheduler.

Torch-free and Ray-free (the Kubernetes server checks a sweep with it before anything runs);
`training.tune` turns it into Ray Tune's own sampling objects.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from common.vocabulary import MAX_TRIALS
from training.config import TrainConfig, build_parser
from training.errors import ConfigError

ParamKind = Literal["float", "int"]
TUNABLE: Final[dict[str, ParamKind]] = {
    "lr": "float",
    "batch_size": "int",
    "weight_decay": "float",
    "warmup_fraction": "float",
}
"""The Trainer's hyperparameters a sweep may search, and their type."""
SchedulerName = Literal["asha", "hyperband", "median", "fifo"]
SCHEDULER_NAMES: Final[tuple[SchedulerName, ...]] = get_args(SchedulerName)
SearchName = Literal["random", "grid", "optuna"]
SEARCH_NAMES: Final[tuple[SearchName, ...]] = get_args(SearchName)
MAX_GRID_POINTS: Final = 10_000
MAX_CHOICES: Final = 100


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    scale: Literal["linear", "log"] = "linear"


@dataclass(frozen=True)
class Choice:
    values: tuple[float | int | str, ...]


Param = Range | Choice


def parse_space(text: str) -> dict[str, Param]:
    """`{"lr": {"low": 1e-4, "high": 0.1, "scale": "log"}, "batch_size": {"values": [32, 64]}}`
    to a checked space; every value must make a valid training config."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"--space is not JSON ({e.msg}); see python -m training.tune --help"
        ) from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError('--space must name at least one parameter, e.g. {"lr": {"low": ...}}')
    return {str(name): _param(str(name), spec) for name, spec in raw.items()}


def space_to_json(space: dict[str, Param]) -> str:
    return json.dumps({name: dataclasses.asdict(p) for name, p in space.items()})


def _param(name: str, spec: Any) -> Param:
    if name not in TUNABLE:
        raise ConfigError(
            f"{name!r} is not a parameter the trainer has to tune; tune {', '.join(TUNABLE)}"
        )
    if not isinstance(spec, dict):
        raise ConfigError(f"{name}: give a range {{low, high}} or {{values: [...]}}")
    if "values" in spec:
        if set(spec) != {"values"}:
            raise ConfigError(f"{name}: a choice takes only 'values'")
        values = spec["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{name}: give at least one value to choose from")
        if len(values) > MAX_CHOICES:
            raise ConfigError(f"{name}: {len(values)} values is too many; give at most 100")
        if len(set(map(str, values))) != len(values):
            raise ConfigError(f"{name}: a value is given twice; give each once")
        choice = Choice(tuple(_typed(name, v) for v in values))
        for value in choice.values:
            _check_value(name, value)
        return choice
    if set(spec) - {"low", "high", "scale"} or not {"low", "high"} <= set(spec):
        raise ConfigError(f"{name}: a range takes low, high and optionally scale (linear, log)")
    low, high = _number(name, spec["low"]), _number(name, spec["high"])
    scale = spec.get("scale", "linear")
    if scale not in ("linear", "log"):
        raise ConfigError(f"{name}: scale {scale!r} is not linear or log")
    if not low < high:
        what = "empty" if low == high else "inverted"
        raise ConfigError(
            f"{name}: the range {low:g}..{high:g} is {what}; give a low below the high"
        )
    if scale == "log" and low <= 0:
        raise ConfigError(f"{name}: a log range needs a low above 0, got {low:g}")
    if TUNABLE[name] == "int" and math.floor(high) - math.ceil(low) < 0:
        raise ConfigError(f"{name}: the range {low:g}..{high:g} holds no whole number")
    for bound in (low, high):
        _check_value(name, int(bound) if TUNABLE[name] == "int" else bound)
    return Range(low, high, scale)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name}: {value!r} is not a number")
    return float(value)


def _typed(name: str, value: Any) -> float | int:
    number = _number(name, value)
    if TUNABLE[name] == "int":
        if not number.is_integer():
            raise ConfigError(f"{name}: {value!r} is not a whole number")
        return int(number)
    return number


def _check_value(name: str, value: float | int | str) -> None:
    """A value is valid when a training config with it is (the trainer's own checks)."""
    try:
        dataclasses.replace(_PROBE, **{name: value})  # type: ignore[arg-type]
    except ConfigError as e:
        raise ConfigError(f"the space's {name} {value} would fail: {e}") from None


_PROBE = TrainConfig(model="mlp", dataset="synthetic", epochs=1, data_dir="s3://probe/data")


@dataclass(frozen=True, kw_only=True)
class SweepConfig:
    """How a sweep searches: trials, concurrency, scheduler, searcher, resources and budgets."""

    space: dict[str, Param]
    trials: int = 8
    max_concurrent: int = 2
    scheduler: SchedulerName = "asha"
    search: SearchName = "random"
    metric: str = "val_accuracy"
    mode: Literal["max", "min"] = "max"
    grace_period: int = 1
    """Epochs every trial runs before a scheduler may stop it."""
    reduction_factor: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: int = 0
    usd_per_trial_hour: float = 0.0
    """What one trial's resources cost per wall hour (the rate card, priced by the server)."""
    budget_usd: float | None = None
    """Stop the sweep when the trials' spend reaches this."""
    time_budget_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.trials, bool) or self.trials < 1 or self.trials > MAX_TRIALS:
            raise ConfigError(f"--trials {self.trials} is out of range; use 1..{MAX_TRIALS}")
        if self.max_concurrent < 1:
            raise ConfigError(f"--max-concurrent {self.max_concurrent} must be 1 or more")
        if self.scheduler not in SCHEDULER_NAMES:
            raise ConfigError(
                f"--scheduler {self.scheduler!r} is not known; choose {', '.join(SCHEDULER_NAMES)}"
            )
        if self.search not in SEARCH_NAMES:
            raise ConfigError(
                f"--search {self.search!r} is not known; choose {', '.join(SEARCH_NAMES)}"
            )
        if self.mode not in ("max", "min"):
            raise ConfigError(f"--mode {self.mode!r} must be max or min")
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise ConfigError("--grace-period must be 1 or more and --reduction-factor 2 or more")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ConfigError("--cpus-per-trial must be above 0 and --gpus-per-trial 0 or more")
        if self.gpus_per_trial > 1:
            # A trial is one Trainer process; several GPUs would be held and left idle.
            raise ConfigError(
                f"--gpus-per-trial {self.gpus_per_trial}: a trial trains on one GPU; ask for 1 "
                "GPU per trial and more trials at once (DDP within a trial is not supported)"
            )
        if self.usd_per_trial_hour < 0:
            raise ConfigError("--usd-per-trial-hour must be 0 or more")
        if self.budget_usd is not None and self.budget_usd <= 0:
            raise ConfigError(f"--budget-usd {self.budget_usd} must be above 0")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"--time-budget-s {self.time_budget_s} must be above 0")
        if self.search == "grid":
            if ranges := [n for n, p in self.space.items() if isinstance(p, Range)]:
                raise ConfigError(
                    f"a grid search needs values, not ranges, for {', '.join(ranges)}; "
                    "give values or use --search random"
                )
            if self.grid_points > MAX_GRID_POINTS:
                raise ConfigError(
                    f"the grid has {self.grid_points} points; give at most {MAX_GRID_POINTS}"
                )

    @property
    def grid_points(self) -> int:
        return math.prod(len(p.values) for p in self.space.values() if isinstance(p, Choice))

    @property
    def total_trials(self) -> int:
        """Trials the sweep runs: a grid runs every point `trials` times over."""
        return self.trials * self.grid_points if self.search == "grid" else self.trials


def apply_trial(base: TrainConfig, config: dict[str, Any], **overrides: Any) -> TrainConfig:
    """A trial's training config: the sweep's base with the trial's sampled values."""
    values = {k: config[k] for k in TUNABLE if k in config}
    if "batch_size" in values:
        values["batch_size"] = round(values["batch_size"])
    return dataclasses.replace(base, **values, **overrides)


def expected_epoch_fraction(
    scheduler: str, trials: int, epochs: int, grace_period: int = 1, reduction_factor: int = 2
) -> float:
    """The share of trials x epochs a scheduler is expected to run: FIFO runs them all; ASHA
    (and the other early stoppers, conservatively) keep 1/reduction_factor of the trials at each
    rung grace, grace*rf, grace*rf^2, ... up to the last epoch."""
    if scheduler == "fifo" or epochs <= grace_period or trials <= 1:
        return 1.0
    rungs = []
    rung = grace_period
    while rung < epochs:
        rungs.append(rung)
        rung *= reduction_factor
    run, start, surviving = 0.0, 0, 1.0
    for r in rungs:
        run += surviving * (r - start)
        start, surviving = r, surviving / reduction_factor
    run += surviving * (epochs - start)
    return min(1.0, run / epochs)


# -- the sweep entry point's flags ---------------------------------------------------------------


def build_tune_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    parser.prog = "python -m training.tune"
    parser.description = "Search a training job's hyperparameters with Ray Tune."
    add = parser.add_argument
    add("--space", required=True, help='JSON: {"lr": {"low": 1e-4, "high": 0.1, "scale": "log"}}')
    add("--trials", type=int, default=SweepConfig.trials, help="samples (grid: repeats)")
    add("--max-concurrent", type=int, default=SweepConfig.max_concurrent)
    add("--scheduler", default="asha", choices=SCHEDULER_NAMES)
    add("--search", default="random", choices=SEARCH_NAMES)
    add("--metric", default=SweepConfig.metric)
    add("--mode", default="max", choices=("max", "min"))
    add("--grace-period", type=int, default=SweepConfig.grace_period, help="epochs")
    add("--reduction-factor", type=int, default=SweepConfig.reduction_factor)
    add("--cpus-per-trial", type=float, default=SweepConfig.cpus_per_trial)
    add("--gpus-per-trial", type=int, default=SweepConfig.gpus_per_trial)
    add("--usd-per-trial-hour", type=float, default=0.0, help="one trial's resources, per hour")
    add("--budget-usd", type=float, default=None, help="stop when the trials' spend reaches it")
    add("--time-budget-s", type=float, default=None)
    add("--sweep-id", default=None, help="the sweep's job id (default: TRAINOPS_JOB_ID)")
    return parser


SWEEP_FLAGS: Final = tuple(f.name for f in dataclasses.fields(SweepConfig) if f.name != "seed")
"""The entry point's flags that make the SweepConfig (its seed is the training config's)."""


def parse_sweep(argv: list[str]) -> tuple[TrainConfig, SweepConfig, str]:
    """Flags to the trials' base config, the sweep's settings and its id; ConfigError if bad."""
    args = vars(build_tune_parser().parse_args(argv))
    sweep_id = args.pop("sweep_id") or os.environ.get("TRAINOPS_JOB_ID") or "sweep"
    sweep_args = {name: args.pop(name) for name in SWEEP_FLAGS}
    sweep_args["space"] = parse_space(sweep_args["space"])
    base = TrainConfig(**args)
    if base.checkpoint_dir is None:
        raise ConfigError("--checkpoint-dir is needed: the sweep keeps its state and trials there")
    sweep = SweepConfig(**sweep_args, seed=base.seed)
    if sweep.metric not in _metrics_of(base):
        raise ConfigError(
            f"--metric {sweep.metric} is not a metric a trial reports; use one of "
            f"{', '.join(sorted(_metrics_of(base)))}"
        )
    return base, sweep, sweep_id


def _metrics_of(cfg: TrainConfig) -> set[str]:
    metrics = {"val_loss", "val_accuracy", "train_loss"}
    return metrics | ({"val_perplexity"} if cfg.model == "gpt" else set())
