from __future__ import annotations

from dataclasses import dataclass

import anyio
import pytest

from mcp_servers.kubernetes.local.backend import LocalBackend
from mcp_servers.kubernetes.manifests import RenderContext, new_job_id, render
from mcp_servers.kubernetes.schemas import TERMINAL_PHASES, JobStatus, TrainingJobSpec


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


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
