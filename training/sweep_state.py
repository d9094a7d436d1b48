"""What a sweep's driver remembers across restarts: its MLflow parent run and each trial's
state, wall time and cost. One JSON file beside the sweep's checkpoints, written atomically."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common.files import write_atomic
from common.vocabulary import StopReason, TrialState

STATE_FILE = "sweep.json"
_INDEX = re.compile(r"_(\d+)$")


def trial_name(trial_id: str) -> str:
    """Tune's trial id `a1b2c_00003` as a person reads it: `trial-3`."""
    match = _INDEX.search(trial_id)
    return f"trial-{int(match.group(1))}" if match else f"trial-{trial_id}"


@dataclass
class TrialRecord:
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    state: TrialState = "pending"
    epochs: int = 0
    """Epochs reached."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The latest epoch's."""
    wall_s: float = 0.0
    """Wall time of its ended runs (a resumed trial runs more than once)."""
    running_since: float | None = None
    mlflow_run_id: str | None = None
    stop_reason: StopReason | None = None
    error: str | None = None
    pid: int | None = None

    def wall_seconds(self, now: float | None = None) -> float:
        open_part = ((now or time.time()) - self.running_since) if self.running_since else 0.0
        return self.wall_s + max(open_part, 0.0)

    def close(self, now: float | None = None) -> None:
        self.wall_s = self.wall_seconds(now)
        self.running_since = None


@dataclass
class SweepState:
    path: Path
    parent_run_id: str | None = None
    trials: dict[str, TrialRecord] = field(default_factory=dict)
    """By Tune's trial id."""
    restarts: int = 0

    @classmethod
    def load(cls, storage: str) -> SweepState:
        path = Path(storage) / STATE_FILE
        if not path.exists():
            return cls(path=path)
        data = json.loads(path.read_text())
        trials = {tid: TrialRecord(**record) for tid, record in data.get("trials", {}).items()}
        for record in trials.values():
            # The driver that ran them is gone: their open time ended when it last saved.
            if record.running_since is not None:
                record.wall_s += max(
                    data.get("saved_at", record.running_since) - record.running_since, 0
                )
                record.running_since = None
        return cls(
            path=path,
            parent_run_id=data.get("parent_run_id"),
            trials=trials,
            restarts=int(data.get("restarts", 0)) + 1,
        )

    def trial(self, trial_id: str) -> TrialRecord:
        if trial_id not in self.trials:
            self.trials[trial_id] = TrialRecord(name=trial_name(trial_id))
        return self.trials[trial_id]

    def save(self) -> None:
        data = {
            "parent_run_id": self.parent_run_id,
            "restarts": self.restarts,
            "saved_at": time.time(),
            "trials": {tid: asdict(record) for tid, record in self.trials.items()},
        }
        os.makedirs(self.path.parent, exist_ok=True)
        write_atomic(self.path, json.dumps(data, indent=1))
