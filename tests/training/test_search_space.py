"""The sweep's search space and settings: every bad one refused with the fix, before Ray starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO, clean_env
from training.config import TrainConfig
from training.errors import CONFIG_ERROR_EXIT, ConfigError
from training.search_space import (
    Choice,
    Range,
    SweepConfig,
    apply_trial,
    expected_epoch_fraction,
    parse_space,
)
from training.sweep_state import trial_name


def test_a_space_of_ranges_and_choices() -> None:
    space = parse_space(
        '{"lr": {"low": 1e-4, "high": 0.1, "scale": "log"}, "batch_size": {"values": [32, 64]}}'
    )
    assert space == {"lr": Range(1e-4, 0.1, "log"), "batch_size": Choice((32, 64))}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"lr": {"low": 0.1, "high": 0.01}}', "inverted"),
        ('{"lr": {"low": 0.1, "high": 0.1}}', "empty"),
        ('{"lr": {"low": 0, "high": 0.1, "scale": "log"}}', "log range needs a low above 0"),
        ('{"lr": {"low": 1e-3, "high": 20}}', "out of range"),
        ('{"momentum": {"values": [0.9]}}', "not a parameter the trainer has"),
        ('{"batch_size": {"values": [32.5]}}', "not a whole number"),
        ('{"batch_size": {"values": [0, 32]}}', "positive integer"),
        ('{"batch_size": {"values": [32, 32]}}', "given twice"),
        ('{"lr": {"values": []}}', "at least one value"),
        ('{"lr": {"low": "a", "high": 1}}', "not a number"),
        ("{}", "at least one parameter"),
        ("not json", "not JSON"),
    ],
)
def test_a_bad_space_says_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_space(text)


def test_a_grid_needs_values_and_counts_its_points() -> None:
    with pytest.raises(ConfigError, match="grid search needs values"):
        SweepConfig(space={"lr": Range(1e-3, 1e-1)}, search="grid")
    grid = SweepConfig(
        space={"lr": Choice((1e-3, 1e-2)), "batch_size": Choice((32, 64, 128))},
        search="grid",
        trials=2,
    )
    assert grid.grid_points == 6 and grid.total_trials == 12
    for bad in ({"trials": 0}, {"trials": 10**6}, {"max_concurrent": 0}, {"budget_usd": -1.0}):
        with pytest.raises(ConfigError):
            SweepConfig(space={"lr": Range(1e-3, 1e-1)}, **bad)  # type: ignore[arg-type]


def test_a_trial_config_is_the_base_with_its_sample() -> None:
    base = TrainConfig(model="mlp", dataset="digits", epochs=3, lr=0.01, batch_size=64)
    trial = apply_trial(base, {"lr": 0.002, "batch_size": 128.0, "other": 1}, seed=5)
    assert (trial.lr, trial.batch_size, trial.seed, trial.epochs) == (0.002, 128, 5, 3)


def test_the_expected_share_of_trial_epochs() -> None:
    assert expected_epoch_fraction("fifo", 12, 10) == 1.0
    assert expected_epoch_fraction("asha", 1, 10) == 1.0
    # rungs at 1, 2, 4, 8 epochs, half the trials going on at each
    share = expected_epoch_fraction("asha", 16, 8, grace_period=1, reduction_factor=2)
    assert share == pytest.approx((1 + 0.5 * 1 + 0.25 * 2 + 0.125 * 4) / 8)
    assert expected_epoch_fraction("asha", 16, 8, reduction_factor=4) < share


def test_trials_are_named_for_people() -> None:
    assert trial_name("a1b2c_00003") == "trial-3" and trial_name("x") == "trial-x"


def test_bad_sweep_flags_are_one_line_and_exit_2_before_ray_starts() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.tune",
            *("--model", "mlp", "--dataset", "digits", "--checkpoint-dir", "/tmp/nowhere"),
            *("--space", '{"lr": {"low": 0.1, "high": 0.001}}'),
        ],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == CONFIG_ERROR_EXIT
    assert result.stderr.strip().count("\n") == 0 and "inverted" in result.stderr
    assert result.stdout == ""
