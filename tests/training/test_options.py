"""bf16 autocast, activation checkpointing and torch.compile run the real script."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import run_training, train_args


def test_gpt_with_bf16_and_activation_checkpointing(tmp_path: Path) -> None:
    run = run_training(
        train_args(
            "gpt",
            "synthetic",
            smoke_test=True,
            epochs=2,
            precision="bf16",
            activation_checkpointing=True,
        )
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.event("start")["precision"] == "bf16"
    epochs = [e for e in run.events if e["event"] == "epoch"]
    assert epochs[-1]["metrics"]["train_loss"] < epochs[0]["metrics"]["train_loss"]
    assert run.event("done")["metrics"]["val_perplexity"] < 256  # better than uniform guessing


@pytest.mark.slow
@pytest.mark.nightly
def test_compiled_training_checkpoints_resume_without_compile(tmp_path: Path) -> None:
    checkpoints = str(tmp_path / "ckpt")
    args = train_args("mlp", "digits", smoke_test=True, checkpoint_dir=checkpoints)
    compiled = run_training([*args, "--epochs", "1", "--compile"])
    assert compiled.returncode == 0, compiled.stderr[-3000:]
    eager = run_training([*args, "--epochs", "2"])
    assert eager.returncode == 0, eager.stderr[-3000:]
    assert eager.event("resumed")["from_epoch"] == 1
