from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from hypothesis import settings

from agent.stack import LocalStack
from common.settings import Settings, StackSettings
from mcp_servers.kubernetes.local.processes import job_processes, terminate
from mcp_servers.kubernetes.local.store import JobStore

# The test Kubernetes API server, for every package's tests (tests/kube_api).
pytest_plugins = ["tests.kube_api.fixture"]

# Fuzzing depth: a few seeded examples per tool in `make test`, 200 in the nightly suite
# (`pytest --hypothesis-profile nightly`, which `make fuzz` runs).
settings.register_profile("default", max_examples=15, derandomize=True)
settings.register_profile("nightly", max_examples=200, derandomize=False)
settings.load_profile("default")


@dataclass(frozen=True)
class Stack:
    """The session's local stack: what `trainops up` starts, in a home of its own."""

    home: Path
    settings: Settings
    mlflow_url: str
    prometheus_url: str

    @property
    def targets_dir(self) -> Path:
        return self.settings.prometheus_targets_dir


def stack_settings(home: Path, **overrides) -> Settings:
    return Settings(home=home, stack=StackSettings(scrape_interval="1s"), **overrides)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real MLflow server (sqlite) and a real Prometheus (file_sd) on free ports."""
    home = tmp_path_factory.mktemp("trainops-home")
    local = LocalStack(stack_settings(home))
    states = {s.name: s for s in local.up()}
    missing = [s.note for s in states.values() if not s.running]
    assert not missing, missing
    yield Stack(home, local.settings, states["mlflow"].url, states["prometheus"].url)
    local.down()


@pytest.fixture(scope="session")
def mlflow_url(stack: Stack) -> str:
    return stack.mlflow_url


@pytest.fixture()
def mlflow_client(mlflow_url: str):
    from mlflow import MlflowClient

    return MlflowClient(mlflow_url)


@pytest.fixture(autouse=True)
def no_job_outlives_its_test(tmp_path: Path) -> Iterator[None]:
    """A failed test must not leave supervisors and training processes running."""
    yield
    for job, state in JobStore(tmp_path / "jobs").readable():
        leftovers = job_processes(job.job_id)
        if state.supervisor is not None and psutil.pid_exists(state.supervisor.pid):
            try:
                supervisor = psutil.Process(state.supervisor.pid)
                if abs(supervisor.create_time() - state.supervisor.create_time) < 0.01:
                    leftovers.append(supervisor)
            except psutil.NoSuchProcess:
                pass
        terminate(leftovers, grace_s=5)
