"""ASHA against the full grid over the same space, seed and epochs, measured in one run.

Runs `python -m training.tune --search grid` twice on the same grid: with `--scheduler fifo`
(every trial runs every epoch: the baseline) and with `--scheduler asha`. For each: the
trial-epochs used (the sum over trials of the epochs each reached), the best validation accuracy
found, the sweep's wall seconds and its cost (`--usd-per-trial-hour` x trial wall hours). Then
ASHA/grid of the trial-epochs (goal: at most 0.40) and ASHA's best accuracy minus the grid's in
accuracy points, i.e. percentage points (goal: ASHA at most 0.5 points below the grid).

The grid's learning rates are listed coarse to fine (1e-3, 1e-2, 1e-4, ...), not in ascending
order: Tune runs a grid in the order it is given, and an asynchronous early stopper compares
each trial with those before it, so a grid ordered from worst to best lets every trial through.
`--space` runs any other grid, in its own order. ASHA's decisions depend on which trials have
reported when, so its trial-epochs vary a little from run to run (the first `--max-concurrent`
trials have nothing to be compared with and run every epoch). The defaults take about 16 minutes
on 2 busy CPU cores, three quarters of it the grid; `--quick` about 2.5.

    python bench/sweep_efficiency.py [--epochs 8] [--max-concurrent 2] [--model cnn]
        [--reduction-factor 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common.telemetry import ProgressEvent
from training.config import TrainConfig
from training.data import load_dataset
from training.search_space import SweepConfig, expected_epoch_fraction, parse_space

REPO = Path(__file__).resolve().parent.parent
METRIC = "val_accuracy"
MAX_EPOCH_RATIO = 0.40
"""Goal: ASHA uses at most this share of the grid's trial-epochs."""
MAX_SHORTFALL_POINTS = 0.5
"""Goal: ASHA's best accuracy is at most this many percentage points below the grid's."""

# 8 learning rates x 2 batch sizes = 16 points; learning rates coarse to fine (see above).
DEFAULT_SPACE = {
    "lr": {"values": [0.001, 0.01, 0.0001, 0.003, 0.0003, 0.03, 0.0006, 0.006]},
    "batch_size": {"values": [32, 64]},
}
QUICK_SPACE = {"lr": {"values": [0.001, 0.0001]}, "batch_size": {"values": [32, 64]}}


@dataclass
class SweepResult:
    scheduler: str
    trials: int = 0
    stopped: int = 0
    errored: int = 0
    trial_epochs: int = 0
    trial_seconds: float = 0.0
    best_metric: float | None = None
    best_trial: str | None = None
    best_config: dict = field(default_factory=dict)
    wall_s: float = 0.0
    cost_usd: float = 0.0
    saved_usd: float = 0.0


def run_sweep(scheduler: str, args: argparse.Namespace, space: str, workdir: Path) -> SweepResult:
    """One grid sweep in a child process, with a fresh checkpoint dir (a used one resumes)."""
    command = [
        sys.executable,
        "-m",
        "training.tune",
        *("--model", args.model, "--dataset", args.dataset, "--epochs", str(args.epochs)),
        *("--data-dir", str(workdir / "data"), "--checkpoint-dir", str(workdir / scheduler)),
        *("--val-fraction", str(args.val_fraction), "--seed", str(args.seed)),
        *("--space", space, "--search", "grid", "--trials", "1", "--scheduler", scheduler),
        *("--max-concurrent", str(args.max_concurrent), "--metric", METRIC, "--mode", "max"),
        *("--grace-period", str(args.grace_period)),
        *("--reduction-factor", str(args.reduction_factor)),
        *("--usd-per-trial-hour", f"{args.usd_per_trial_hour:g}"),
        *("--sweep-id", f"bench-{scheduler}"),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    print(f"running the {scheduler} sweep ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the {scheduler} sweep exited {proc.returncode}: {proc.stderr[-3000:]}")
    last: dict[str, ProgressEvent] = {}
    done: ProgressEvent | None = None
    for line in proc.stdout.splitlines():
        event = ProgressEvent.from_line(line)
        if event is None:
            continue
        if event.event == "trial":
            last[str(event.details["trial"])] = event
        elif event.event == "done":
            done = event
    if done is None:
        raise SystemExit(f"the {scheduler} sweep printed no done line: {proc.stderr[-3000:]}")
    states = [str(e.details.get("state")) for e in last.values()]
    best = done.details.get("best_metric")
    return SweepResult(
        scheduler=scheduler,
        trials=len(last),
        stopped=states.count("stopped"),
        errored=states.count("errored"),
        trial_epochs=sum(e.epoch or 0 for e in last.values()),
        trial_seconds=sum(float(e.details.get("wall_s") or 0.0) for e in last.values()),
        best_metric=float(best) if best is not None else None,
        best_trial=done.details.get("best_trial"),
        best_config=done.details.get("best_config") or {},
        wall_s=wall,
        cost_usd=float(done.details.get("total_cost_usd") or 0.0),
        saved_usd=float(done.details.get("saved_usd") or 0.0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn", choices=["cnn", "mlp"])
    parser.add_argument("--dataset", default="digits", help="digits is bundled: no download")
    parser.add_argument("--epochs", type=int, default=None, help="default 8 (--quick: 3)")
    parser.add_argument("--max-concurrent", type=int, default=2)
    parser.add_argument("--grace-period", type=int, default=1, help="epochs")
    parser.add_argument("--reduction-factor", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="the same for both sweeps")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="0.2 of digits is 359 samples: one sample is 0.28 accuracy points",
    )
    parser.add_argument("--usd-per-trial-hour", type=float, default=0.1)
    parser.add_argument("--space", default=None, help="a grid as JSON (default: 8 lr x 2 batch)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a 4-point grid, 3 epochs: a smoke run (too short to meet the epochs goal)",
    )
    args = parser.parse_args()
    args.epochs = args.epochs or (3 if args.quick else 8)
    space = args.space or json.dumps(QUICK_SPACE if args.quick else DEFAULT_SPACE)
    grid_points = SweepConfig(space=parse_space(space), search="grid").grid_points
    base = TrainConfig(
        model=args.model,
        dataset=args.dataset,
        epochs=args.epochs,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    val_samples = len(load_dataset(base).dataset.val)
    expected = expected_epoch_fraction(
        "asha", grid_points, args.epochs, args.grace_period, args.reduction_factor
    )

    with tempfile.TemporaryDirectory(prefix="trainops-sweep-bench-") as tmp:
        grid = run_sweep("fifo", args, space, Path(tmp))
        asha = run_sweep("asha", args, space, Path(tmp))

    epoch_ratio = asha.trial_epochs / grid.trial_epochs
    diff_points = (
        (asha.best_metric - grid.best_metric) * 100
        if asha.best_metric is not None and grid.best_metric is not None
        else None
    )
    epochs_met = epoch_ratio <= MAX_EPOCH_RATIO
    metric_met = diff_points is not None and diff_points >= -MAX_SHORTFALL_POINTS

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    def best(r: SweepResult) -> str:
        return f"{r.best_metric:.4f}" if r.best_metric is not None else "none"

    print(
        f"{args.model} on {args.dataset} ({val_samples} val samples: one is "
        f"{100 / val_samples:.2f} points); grid of {grid_points} points x {args.epochs} epochs, "
        f"seed {args.seed}, {args.max_concurrent} at a time; ASHA grace {args.grace_period}, "
        f"reduction factor {args.reduction_factor} (expected share of epochs {expected:.2f})"
    )
    print(f"{'measure':<30}{'grid (fifo)':>14}{'asha':>14}{'asha/grid':>14}  goal")
    rows = [
        (
            "trials (stopped early)",
            f"{grid.trials} ({grid.stopped})",
            f"{asha.trials} ({asha.stopped})",
            "",
            "",
        ),
        ("trials errored", str(grid.errored), str(asha.errored), "", ""),
        (
            "trial-epochs",
            str(grid.trial_epochs),
            str(asha.trial_epochs),
            f"{epoch_ratio:.2f}x",
            f"<= {MAX_EPOCH_RATIO:.2f}x: {'met' if epochs_met else 'missed'}",
        ),
        (
            f"best {METRIC}",
            best(grid),
            best(asha),
            f"{diff_points:+.2f} pts" if diff_points is not None else "-",
            f">= -{MAX_SHORTFALL_POINTS} pts: {'met' if metric_met else 'missed'}",
        ),
        (
            "wall seconds",
            f"{grid.wall_s:.1f}",
            f"{asha.wall_s:.1f}",
            ratio(asha.wall_s, grid.wall_s),
            "",
        ),
        (
            "trial seconds (summed)",
            f"{grid.trial_seconds:.1f}",
            f"{asha.trial_seconds:.1f}",
            ratio(asha.trial_seconds, grid.trial_seconds),
            "",
        ),
        (
            "cost (usd)",
            f"{grid.cost_usd:.6f}",
            f"{asha.cost_usd:.6f}",
            ratio(asha.cost_usd, grid.cost_usd),
            "",
        ),
    ]
    for label, a, b, c, goal in rows:
        print(f"{label:<30}{a:>14}{b:>14}{c:>14}  {goal}".rstrip())
    print(f"best config: grid {json.dumps(grid.best_config)}, asha {json.dumps(asha.best_config)}")
    print(
        json.dumps(
            {
                "bench": "sweep_efficiency",
                "model": args.model,
                "dataset": args.dataset,
                "val_samples": val_samples,
                "epochs": args.epochs,
                "grid_points": grid_points,
                "space": json.loads(space),
                "seed": args.seed,
                "max_concurrent": args.max_concurrent,
                "grace_period": args.grace_period,
                "reduction_factor": args.reduction_factor,
                "metric": METRIC,
                "grid": vars(grid),
                "asha": vars(asha),
                "expected_epoch_ratio": expected,
                "trial_epochs_ratio": epoch_ratio,
                "best_metric_diff_points": diff_points,
                "goals": {
                    "trial_epochs_ratio_max": MAX_EPOCH_RATIO,
                    "trial_epochs_ratio_met": epochs_met,
                    "best_metric_shortfall_points_max": MAX_SHORTFALL_POINTS,
                    "best_metric_met": metric_met,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
