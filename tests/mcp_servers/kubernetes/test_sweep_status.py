"""A sweep's status and trial logs, folded from its driver's log lines."""

from __future__ import annotations

import json

from common.telemetry import TRIAL_STARTS
from mcp_servers.kubernetes.schemas import MAX_TRIALS_SHOWN
from mcp_servers.kubernetes.sweeps import settled, sweep_of, trial_lines, trial_names

START = json.dumps(
    {
        "event": "start",
        "time": 1,
        "epochs": 4,
        "sweep": True,
        "trials": 60,
        "metric": "val_loss",
        "mode": "min",
    }
)


def trial(name: str, state: str, epoch: int, loss: float, pid: int = 7, cost: float = 0.01) -> str:
    return json.dumps(
        {
            "event": "trial",
            "time": 2,
            "epoch": epoch,
            "epochs": 4,
            "metrics": {"val_loss": loss},
            "trial": name,
            "state": state,
            "config": {"lr": 0.1},
            "cost_usd": cost,
            "wall_s": 3.0,
            "stop_reason": "scheduler" if state == "stopped" else None,
            "pid": pid,
        }
    )


def test_the_trials_fold_into_counts_the_best_and_a_bounded_list() -> None:
    lines = [START, "noise from ray", "(run_trial pid=7) a line"]
    for i in range(55):
        state = "running" if i >= 53 else ("stopped" if i % 2 else "terminated")
        lines.append(trial(f"trial-{i}", state, 1 if state == "stopped" else 4, loss=1 + i / 100))
    sweep = sweep_of(lines)
    assert sweep is not None and not sweep.finished
    assert sweep.counts == {"terminated": 27, "stopped": 26, "running": 2, "pending": 5}
    assert sweep.best is not None and sweep.best.name == "trial-0"  # mode min: the lowest loss
    assert len(sweep.trials) == MAX_TRIALS_SHOWN and sweep.trials_omitted == 5
    shown = {t.name for t in sweep.trials}
    assert {"trial-0", "trial-53", "trial-54"} <= shown  # the best and the running ones
    assert sweep.cost_usd == 0.55 and sweep.trial_seconds == 165.0
    assert sweep_of(["no sweep here"]) is None


def test_a_trials_lines_are_those_after_its_start_on_its_worker() -> None:
    lines = [
        START,
        f"(run_trial pid=7) {TRIAL_STARTS} trial-0",
        "(run_trial pid=7) epoch of zero",
        trial("trial-0", "terminated", 4, 0.5, pid=7),
        f"(run_trial pid=8) {TRIAL_STARTS} trial-1",
        "(run_trial pid=8) epoch of one",
        f"\x1b[36m(run_trial pid=7)\x1b[0m {TRIAL_STARTS} trial-2",  # the worker, reused
        "(run_trial pid=7, ip=10.0.0.3) epoch of two",
        trial("trial-2", "running", 1, 0.7, pid=7),
    ]
    zero = trial_lines(lines, "trial-0")
    assert zero[:2] == [f"{TRIAL_STARTS} trial-0", "epoch of zero"]
    assert not any("two" in line or "one" in line for line in zero)
    assert trial_lines(lines, "trial-2")[:2] == [f"{TRIAL_STARTS} trial-2", "epoch of two"]
    assert trial_names(lines) == ["trial-0", "trial-2"]


def test_a_cancelled_sweeps_running_trials_read_stopped() -> None:
    lines = [START, trial("trial-0", "terminated", 4, 0.5), trial("trial-1", "running", 2, 0.6)]
    sweep = sweep_of(lines)
    assert settled(sweep, "Running") is sweep
    cancelled = settled(sweep, "Cancelled")
    assert cancelled is not None
    assert [(t.name, t.state, t.stop_reason) for t in cancelled.trials] == [
        ("trial-0", "terminated", None),
        ("trial-1", "stopped", "cancelled"),
    ]
    assert "running" not in cancelled.counts and cancelled.counts["stopped"] == 1
