"""The progress a job's log shows, as training writes it (NaN included: JSON has none)."""

from __future__ import annotations

import io
from pathlib import Path

from common.telemetry import ProgressEvent
from mcp_servers.kubernetes.progress import last_progress
from training.telemetry.progress import ProgressWriter


def test_what_training_writes_the_server_reads_with_a_nan_loss_named(tmp_path: Path) -> None:
    out = io.StringIO()
    writer = ProgressWriter(enabled=True, stream=out)
    writer.emit("start", epochs=3, mlflow_run_id="a" * 32, device="cpu")
    writer.notice("WARNING: a line for people")
    writer.emit(
        "epoch", epoch=2, epochs=3, step=20, metrics={"train_loss": float("nan"), "lr": 0.1}
    )
    log = tmp_path / "master-0.log"
    log.write_text("noise\n" + out.getvalue() + '{"event": "epoch", "epo')  # cut by a crash
    progress, run_id = last_progress(log)
    assert run_id == "a" * 32
    assert progress.event == "epoch" and (progress.epoch, progress.epochs) == (2, 3)
    assert progress.metrics == {"lr": 0.1}
    assert progress.nonfinite_metrics == {"train_loss": "nan"}
    assert "NaN" not in out.getvalue() and "NaN" not in progress.model_dump_json()


def test_an_event_reads_back_as_it_was_written() -> None:
    event = ProgressEvent(
        event="done",
        time=1.5,
        epoch=4,
        epochs=4,
        step=80,
        metrics={"val_loss": float("inf"), "val_accuracy": 0.9},
        mlflow_run_id="b" * 32,
        details={"warnings": ["w"], "duration_s": float("nan")},
    )
    back = ProgressEvent.from_line(event.to_line())
    assert back is not None
    assert back.metrics["val_accuracy"] == 0.9 and back.metrics["val_loss"] == float("inf")
    assert back.details == {"warnings": ["w"], "duration_s": "nan"}
    assert ProgressEvent.from_line('{"event": "rumour", "time": 1}') is None
    assert ProgressEvent.from_line("not json") is None


LOGS = Path(__file__).parent / "logs"


def test_a_worker_killed_by_a_signal_is_named_not_torchruns_banner(tmp_path: Path) -> None:
    """torchrun's summary after its worker was SIGKILLed (a real log, paths shortened)."""
    from mcp_servers.kubernetes.progress import last_error_line

    log = LOGS / "torchrun_worker_sigkilled.log"
    assert last_error_line(log) == "worker rank 0 was killed by signal 9 (SIGKILL)"
    config_error = tmp_path / "master-0.log"
    config_error.write_text(log.read_text() + "error: --lr 99 is out of range\n")
    assert last_error_line(config_error) == "error: --lr 99 is out of range"
