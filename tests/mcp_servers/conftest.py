from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from common.settings import Settings, load_settings
from common.vocabulary import TERMINAL_PHASES
from mcp_servers.kubernetes.local.backend import LocalBackend
from mcp_servers.kubernetes.manifests import RenderContext, new_job_id, render
from mcp_servers.kubernetes.schemas import JobStatus, TrainingJobSpec
from tests.support import clean_env


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture()
def settings_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings for a server object run in this process, with a home of the test's own and the
    environment a test server process would get (jobs it starts inherit it)."""
    for name in list(os.environ):
        if name.startswith(("TRAINOPS_", "MLFLOW_", "AWS_", "PET_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TRAINOPS_HOME", str(tmp_path))
    for name, value in clean_env().items():
        if os.environ.get(name) != value:
            monkeypatch.setenv(name, value)
    # What the MLflow server sets for itself, restored after the test.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")

    def make(**overrides: Any) -> Settings:
        return load_settings(home=tmp_path, **overrides)

    return make


@dataclass(frozen=True)
class FinishedJob:
    job_id: str
    run_id: str
    status: JobStatus


@pytest.fixture(scope="session")
def finished_job(stack) -> FinishedJob:
    """A 2-replica smoke job run on the local backend against the session's stack, so that
    MLflow holds its run and Prometheus its scraped metrics."""
    settings = stack.settings.model_copy(update={"mlflow_tracking_uri": stack.mlflow_url})
    backend = LocalBackend(settings)
    spec = TrainingJobSpec(
        model="cnn", dataset="digits", epochs=4, smoke_test=True, nodes=2, batch_size=32
    )
    context = RenderContext(settings.kubernetes, settings.mlflow_tracking_uri)
    manifest = render(spec, new_job_id(spec), settings.namespace, context)
    backend.create(manifest, spec)

    async def follow() -> JobStatus:
        status = backend.get(manifest.job_id)
        while status.phase not in TERMINAL_PHASES:
            status = await backend.wait(manifest.job_id, 120)
        return status

    status = anyio.run(follow)
    assert status.phase == "Succeeded", status.message
    return FinishedJob(manifest.job_id, status.mlflow_run_id, status)
