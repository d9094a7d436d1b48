from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent.stack import LocalStack
from common.settings import Settings, load_settings
from mcp_servers.kubernetes.local.store import JobStore
from tests.conftest import stack_settings
from tests.support import REPO, clean_env

REWORDING = REPO / "tests" / "rewording"


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def servers_reword_their_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every agent test talks to MCP servers whose human text is reworded (error kinds and data
    kept), so the suite proves the agent routes on kinds and typed fields, never on wording.
    AGENT_TESTS_SERVER_WORDING=original runs it against the servers' own words instead."""
    if os.environ.get("AGENT_TESTS_SERVER_WORDING") == "original":
        return
    monkeypatch.setenv("REWORD_SERVER_MESSAGES", "1")
    paths = [str(REWORDING), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))


@pytest.fixture()
def agent_home(tmp_path: Path, stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TRAINOPS_HOME of the test's own: its jobs, a Prometheus watching them, and the session's
    MLflow server, all found through config.yaml as `trainops up` leaves it."""
    local = LocalStack(stack_settings(tmp_path))
    local.up(("prometheus",))
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["mlflow_tracking_uri"] = stack.mlflow_url
    config["agent"] = {"poll_seconds": 2}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("TRAINOPS_HOME", str(tmp_path))
    yield tmp_path
    local.down(("prometheus",))


def home_settings(home: Path) -> Settings:
    return load_settings(home=home)


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    return clean_env(TRAINOPS_HOME=str(home), COLUMNS="200", **extra)


def trainops(
    home: Path, *args: str, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    """`trainops ARGS` as a user runs it, with this home."""
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args],
        cwd=REPO,
        env=cli_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def jobs_in(home: Path) -> list[str]:
    return sorted(job.job_id for job in JobStore(home / "jobs").jobs())
