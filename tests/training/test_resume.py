"""A rank killed mid-epoch under `torchrun --max-restarts`: the job resumes and finishes once."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import psutil

from tests.support import TrainingRun, clean_env, train_args, wait_for


def rank_process(torchrun_pid: int, rank: int) -> psutil.Process | None:
    for child in psutil.Process(torchrun_pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank) and "training.train" in child.cmdline():
                return child
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def test_sigkilled_rank_resumes_from_checkpoint_into_the_same_mlflow_run(
    mlflow_url, mlflow_client, tmp_path: Path
) -> None:
    job_id = f"cnn-digits-{uuid.uuid4().hex[:4]}"
    env = clean_env(MLFLOW_TRACKING_URI=mlflow_url, TRAINOPS_JOB_ID=job_id)
    run = TrainingRun(
        train_args(
            "cnn",
            "digits",
            epochs=4,
            batch_size=64,
            experiment="test-resume",
            checkpoint_dir=str(tmp_path / "ckpt"),
        ),
        nproc=2,
        env=env,
        torchrun_args=("--max-restarts=1",),
    )
    first_epoch = run.wait_for_event("epoch")
    assert first_epoch["checkpoint"].endswith("ckpt-epoch-000001.pt")
    victim = wait_for(lambda: rank_process(run.process.pid, 1), timeout=10, what="rank 1")
    victim.send_signal(signal.SIGKILL)  # mid-way through epoch 2

    assert run.finish(timeout=300) == 0, run.stderr[-3000:]
    resumed = run.event("resumed")
    assert resumed["from_epoch"] >= 1
    starts = [e for e in run.events if e["event"] == "start"]
    assert [s["restart_count"] for s in starts] == [0, 1]
    epochs_after_restart = [
        e["epoch"] for e in run.events[run.events.index(resumed) :] if e["event"] == "epoch"
    ]
    assert epochs_after_restart == list(range(resumed["from_epoch"] + 1, 5))
    done = run.event("done")
    assert done["epochs"] == 4 and done["weights_in_sync"]

    experiment = mlflow_client.get_experiment_by_name("test-resume")
    runs = mlflow_client.search_runs(
        [experiment.experiment_id], f"tags.`trainops.job_id` = '{job_id}'"
    )
    assert [r.info.run_id for r in runs] == [done["mlflow_run_id"]]
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["trainops.restarts"] == "1"
    steps = {m.step for m in mlflow_client.get_metric_history(runs[0].info.run_id, "val_accuracy")}
    assert steps == {1, 2, 3, 4}
