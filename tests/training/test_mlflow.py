"""A real `mlflow server` receives params, metrics, tags and the model; outages lose nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest

from common.net import free_port
from tests.support import TrainingRun, clean_env, run_training, train_args
from training.config import TrainConfig
from training.data import load_dataset


def job_env(tracking_uri: str, job_id: str) -> dict[str, str]:
    return clean_env(MLFLOW_TRACKING_URI=tracking_uri, TRAINOPS_JOB_ID=job_id)


def runs_of(client, job_id: str, experiment: str):
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs([found.experiment_id], f"tags.`trainops.job_id` = '{job_id}'")


def test_run_gets_config_metrics_tags_and_model(mlflow_url, mlflow_client, tmp_path: Path) -> None:
    job_id = f"cnn-digits-{uuid.uuid4().hex[:4]}"
    run = run_training(
        train_args(
            "cnn",
            "digits",
            epochs=2,
            smoke_test=True,
            batch_size=64,
            log_every=2,
            experiment="test-mlflow",
            checkpoint_dir=str(tmp_path / "ckpt"),
        ),
        nproc=2,
        env=job_env(mlflow_url, job_id),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    done = run.event("done")
    runs = runs_of(mlflow_client, job_id, "test-mlflow")
    assert [r.info.run_id for r in runs] == [done["mlflow_run_id"]]
    mlflow_run = runs[0]
    assert mlflow_run.info.status == "FINISHED"

    params = mlflow_run.data.params
    assert params["model"] == "cnn" and params["epochs"] == "2" and params["batch_size"] == "64"
    assert set(params) >= {"lr", "seed", "precision", "checkpoint_dir", "smoke_test"}

    tags = mlflow_run.data.tags
    assert tags["trainops.world_size"] == "2"
    assert tags["trainops.backend"] == "gloo"
    assert tags["trainops.device"] == "cpu"
    assert tags["dataset.used"] == "digits"
    assert tags["trainops.job_id"] == job_id

    epochs = [e for e in run.events if e["event"] == "epoch"]
    for key in ("train_loss", "val_loss", "val_accuracy", "samples_per_sec", "epoch_seconds"):
        history = mlflow_client.get_metric_history(mlflow_run.info.run_id, key)
        assert [m.step for m in history] == [1, 2]
        for point, event in zip(history, epochs, strict=True):
            assert abs(point.value - event["metrics"][key]) < 1e-5
    steps = mlflow_client.get_metric_history(mlflow_run.info.run_id, "train_loss_step")
    assert [m.step for m in steps] == list(range(2, 17, 2))  # 8 steps an epoch, every 2nd

    models = mlflow_client.search_logged_models(experiment_ids=[mlflow_run.info.experiment_id])
    logged = [m for m in models if m.source_run_id == mlflow_run.info.run_id]
    assert len(logged) == 1
    mlflow.set_tracking_uri(mlflow_url)
    model = mlflow.pytorch.load_model(f"models:/{logged[0].model_id}")
    digits = load_dataset(TrainConfig(model="cnn", dataset="digits", epochs=1)).dataset
    logits = model(digits.val.inputs[:5])
    assert logits.shape == (5, 10)


def train_with_mlflow_away(
    tmp_path: Path, experiment: str
) -> tuple[str, Path, list[str], TrainingRun]:
    """A two-epoch job whose MLflow never answers: its id, checkpoint folder, flags and run."""
    job_id = f"mlp-digits-{uuid.uuid4().hex[:4]}"
    checkpoints = tmp_path / "ckpt"
    args = train_args(
        "mlp",
        "digits",
        epochs=2,
        smoke_test=True,
        experiment=experiment,
        checkpoint_dir=str(checkpoints),
    )
    run = run_training(args, env=job_env(f"http://127.0.0.1:{free_port()}", job_id))
    return job_id, checkpoints, args, run


def test_unreachable_mlflow_keeps_every_metric_and_sends_it_later(
    mlflow_url, mlflow_client, tmp_path: Path
) -> None:
    job_id, checkpoints, args, down = train_with_mlflow_away(tmp_path, "test-outage")
    assert down.returncode == 0, down.stderr[-3000:]
    done = down.event("done")
    assert done["mlflow_run_id"] is None
    assert any("unreachable" in w for w in done["warnings"])
    assert (checkpoints / "mlflow_outbox.jsonl").is_file()

    # The job runs again (a restart) with MLflow back: the outbox is delivered, in order.
    back = run_training(args, env=job_env(mlflow_url, job_id))
    assert back.returncode == 0, back.stderr[-3000:]
    assert back.event("resumed")["from_epoch"] == 2
    assert not (checkpoints / "mlflow_outbox.jsonl").exists()
    runs = runs_of(mlflow_client, job_id, "test-outage")
    assert len(runs) == 1
    history = mlflow_client.get_metric_history(runs[0].info.run_id, "val_accuracy")
    recorded = [e["metrics"]["val_accuracy"] for e in down.events if e["event"] == "epoch"]
    assert [m.step for m in history] == [1, 2]
    assert [round(m.value, 6) for m in history] == recorded
    assert runs[0].info.status == "FINISHED"


@pytest.mark.nightly  # make test: the local backend runs this drain after a job (test_server)
def test_a_finished_jobs_outbox_is_delivered_by_the_drain_to_where_mlflow_is_now(
    mlflow_url, mlflow_client, tmp_path: Path
) -> None:
    """MLflow away for the whole job, then back at another address: the drain that the local
    backend runs after the job leaves the run complete (epochs, model) and closed."""
    job_id, checkpoints, _, away = train_with_mlflow_away(tmp_path, "test-drain")
    assert away.returncode == 0, away.stderr[-3000:]
    assert (checkpoints / "mlflow_outbox.jsonl").is_file()
    assert (checkpoints / "mlflow_pending_model.pt").is_file()

    drain = [sys.executable, "-m", "training.telemetry.drain", "--checkpoint-dir"]
    delivered = subprocess.run(
        [*drain, str(checkpoints), "--tracking-uri", mlflow_url],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert delivered.returncode == 0, delivered.stderr[-3000:]
    assert not (checkpoints / "mlflow_outbox.jsonl").exists()
    assert not (checkpoints / "mlflow_pending_model.pt").exists()
    (run,) = runs_of(mlflow_client, job_id, "test-drain")
    assert run.info.status == "FINISHED"
    history = mlflow_client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    models = mlflow_client.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert [m.source_run_id for m in models] == [run.info.run_id]


def test_a_job_follows_mlflow_to_a_new_address_from_its_uri_file(
    mlflow_url, mlflow_client, tmp_path: Path
) -> None:
    job_id = f"mlp-digits-{uuid.uuid4().hex[:4]}"
    where = tmp_path / "mlflow.uri"
    where.write_text(f"http://127.0.0.1:{free_port()}")  # where MLflow was: gone
    env = job_env(where.read_text(), job_id) | {"TRAINOPS_MLFLOW_URI_FILE": str(where)}
    args = train_args(
        "mlp",
        "digits",
        epochs=2,
        smoke_test=True,
        experiment="test-moved",
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    run = TrainingRun(args, env=env)
    run.wait_for_event("start")
    where.write_text(mlflow_url)  # MLflow is back, elsewhere
    assert run.finish(300) == 0, run.stderr[-3000:]
    (found,) = runs_of(mlflow_client, job_id, "test-moved")
    assert found.info.status == "FINISHED"
    assert [m.step for m in mlflow_client.get_metric_history(found.info.run_id, "train_loss")] == [
        1,
        2,
    ]
    assert not (tmp_path / "ckpt" / "mlflow_outbox.jsonl").exists()


def test_fallback_is_loud_on_stdout_in_the_done_line_and_on_the_run(
    mlflow_url, mlflow_client, tmp_path: Path
) -> None:
    job_id = f"cnn-mnist-{uuid.uuid4().hex[:4]}"
    run = run_training(
        train_args(
            "cnn",
            "mnist",
            data_dir=str(tmp_path),
            no_download=True,
            fallback_dataset="digits",
            smoke_test=True,
            experiment="test-fallback",
        ),
        env=job_env(mlflow_url, job_id),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    notices = [line for line in run.stdout_lines if line.startswith("WARNING: dataset mnist")]
    assert notices and "so this job trains on digits instead" in notices[0]
    done = run.event("done")
    assert done["dataset_used"] == "digits" and done["dataset_requested"] == "mnist"
    assert done["fallback"] is True
    assert any("mnist is not available" in w for w in done["warnings"])
    tags = mlflow_client.get_run(done["mlflow_run_id"]).data.tags
    assert tags["dataset.used"] == "digits" and tags["dataset.requested"] == "mnist"
    assert "mnist is not available" in tags["dataset.fallback_reason"]
    # The job was given a fallback: nothing tells it to pass the flag it already passed.
    assert not any("--fallback-dataset digits" in w for w in done["warnings"])
    assert "--fallback-dataset digits" not in tags["dataset.fallback_reason"]
