"""Checkpoints are atomic: whatever instant a writer dies, the latest checkpoint loads."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.support import REPO, clean_env
from training.checkpoint import CheckpointManager, checkpoint_name


def test_save_then_load_round_trips_and_keeps_the_newest(tmp_path: Path) -> None:
    manager = CheckpointManager(str(tmp_path), keep=2)
    for epoch in (1, 2, 3):
        manager.save(epoch, {"epoch": epoch, "weights": torch.full((4,), float(epoch))})
    assert manager.epochs() == [2, 3]
    epoch, state = manager.load_latest()
    assert epoch == 3 and torch.equal(state["weights"], torch.full((4,), 3.0))
    assert not list(tmp_path.glob(".*.partial"))


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path, caplog) -> None:
    manager = CheckpointManager(str(tmp_path), keep=3)
    manager.save(1, {"epoch": 1})
    manager.save(2, {"epoch": 2})
    newest = tmp_path / checkpoint_name(2)
    newest.write_bytes(newest.read_bytes()[:100])  # e.g. a disk that lost the tail
    (tmp_path / checkpoint_name(7)).write_bytes(b"not a checkpoint")
    epoch, state = manager.load_latest()
    assert (epoch, state["epoch"]) == (1, 1)
    assert "does not load" in caplog.text


def test_nothing_to_resume_from_is_none(tmp_path: Path) -> None:
    assert CheckpointManager(str(tmp_path / "absent")).load_latest() is None


def test_kill_during_checkpoint_writes_never_leaves_an_unloadable_latest(tmp_path: Path) -> None:
    rng = random.Random(1234)
    killed_mid_write = 0
    env = clean_env(PYTHONPATH=str(REPO))
    for _ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-m", "tests.training.checkpoint_writer", str(tmp_path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout.readline().strip() == "ready"
        # The random delay is the point here: it picks the instant of the kill.
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        killed_mid_write += any(tmp_path.glob(".*.partial"))
        found = CheckpointManager(str(tmp_path)).load_latest()
        assert found is not None
        epoch, state = found
        assert state["epoch"] == epoch
        assert torch.equal(state["payload"], torch.full((2_000_000,), float(epoch)))
    assert killed_mid_write > 0, "no kill landed inside a write; the test proved nothing"
