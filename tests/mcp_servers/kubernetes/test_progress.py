"""The progress a job's log shows, as training prints it (NaN included: JSON has none)."""

from __future__ import annotations

import json
from pathlib import Path

from mcp_servers.kubernetes.progress import last_progress


def test_a_nan_loss_is_named_and_the_status_still_serializes(tmp_path: Path) -> None:
    log = tmp_path / "master-0.log"
    lines = [
        {"event": "start", "mlflow_run_id": "a" * 32},
        {"event": "epoch", "epoch": 2, "epochs": 3, "train_loss": float("nan"), "lr": 0.1},
    ]
    log.write_text("noise\n" + "\n".join(json.dumps(line) for line in lines) + "\n")
    progress, run_id = last_progress(log)
    assert run_id == "a" * 32
    assert progress.epoch == 2 and progress.metrics == {"lr": 0.1}
    assert progress.nonfinite_metrics == {"train_loss": "nan"}
    assert "NaN" not in progress.model_dump_json()
