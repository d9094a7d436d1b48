"""The launcher: torchrun, exiting with the code that tells a controller whether to retry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO
from training.errors import CONFIG_ERROR_EXIT


def launch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training.launch", "--standalone", "--nnodes", "1", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("worker_exit", "launcher_exit"), [(CONFIG_ERROR_EXIT, 2), (3, 1), (0, 0)])
def test_the_first_failure_decides_the_exit_code(worker_exit: int, launcher_exit: int) -> None:
    # Rank 0 fails at once; rank 1 would run on and is stopped by torchrun.
    script = f'[ "$RANK" = 0 ] && exit {worker_exit}; [ {worker_exit} = 0 ] && exit 0; sleep 30'
    done = launch("--nproc-per-node", "2", "--no-python", "sh", "-c", script)
    assert done.returncode == launcher_exit, done.stderr[-2000:]
    if launcher_exit:
        assert "Root Cause (first observed failure)" in done.stderr  # torchrun's summary stays


def test_a_bad_flag_of_the_training_entry_point_is_the_config_error_code() -> None:
    done = launch(
        "--nproc-per-node",
        "1",
        "-m",
        "training.train",
        "--model",
        "cnn",
        "--dataset",
        "digits",
        "--epochs",
        "0",
    )
    assert done.returncode == CONFIG_ERROR_EXIT
    assert "error: --epochs must be a positive integer" in done.stderr
