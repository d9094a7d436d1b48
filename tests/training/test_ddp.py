"""Every model trains under torchrun with two gloo ranks, and both ranks end with one model."""

from __future__ import annotations

import pytest

from tests.support import run_training, train_args

SMOKE_CASES = [  # cnn and mlp also train under torchrun in the server and agent suites
    pytest.param("cnn", "digits", marks=pytest.mark.nightly),
    pytest.param("mlp", "digits", marks=pytest.mark.nightly),
    ("resnet18", "synthetic"),
    ("gpt", "synthetic"),
]


@pytest.mark.parametrize(("model", "dataset"), SMOKE_CASES)
def test_two_rank_smoke_run_ends_with_identical_weights(model: str, dataset: str, tmp_path) -> None:
    run = run_training(
        train_args(
            model,
            dataset,
            epochs=2,
            smoke_test=True,
            batch_size=64,
            checkpoint_dir=str(tmp_path / "ckpt"),
        ),
        nproc=2,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    start = run.event("start")
    assert start["world_size"] == 2
    assert start["backend"] == "gloo"
    epochs = [e for e in run.events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    done = run.event("done")
    assert done["epochs"] == 2
    assert len(done["weights_fingerprints"]) == 2
    assert done["weights_in_sync"] is True
    assert done["dataset_used"] == dataset
    for key in ("train_loss", "val_loss", "val_accuracy", "samples_per_sec", "epoch_seconds"):
        assert key in done["metrics"]
    if model == "gpt":
        assert done["metrics"]["val_perplexity"] > 1.0
    assert (tmp_path / "ckpt" / "ckpt-epoch-000002.pt").is_file()


def test_training_reduces_loss_and_beats_chance_on_digits(tmp_path) -> None:
    run = run_training(train_args("cnn", "digits", epochs=4, batch_size=64), nproc=2)
    assert run.returncode == 0, run.stderr[-3000:]
    epochs = [e for e in run.events if e["event"] == "epoch"]
    assert epochs[-1]["metrics"]["train_loss"] < epochs[0]["metrics"]["train_loss"]
    assert run.event("done")["metrics"]["val_accuracy"] > 0.9
