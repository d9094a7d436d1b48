"""Kubernetes MCP server: launch, watch and cancel training jobs; render manifests; see capacity.

`python -m mcp_servers.kubernetes` (stdio) or `--transport streamable-http --port N`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import anyio
from mcp.server.fastmcp import Context
from mcp.server.fastmcp.exceptions import ToolError
from pydantic import Field

from mcp_servers.common import TrainopsMCP, hints, serve
from mcp_servers.kubernetes.backend import Backend, JobError, JobExists
from mcp_servers.kubernetes.manifests import RenderContext, new_job_id, render
from mcp_servers.kubernetes.policy import admit
from mcp_servers.kubernetes.schemas import (
    Capacity,
    CreateResult,
    JobEvents,
    JobList,
    JobStatus,
    LogTail,
    Phase,
    RenderedManifest,
    TrainingJobSpec,
)
from mcp_servers.settings import RFC1123_LABEL, Settings, SettingsError

JobId = Annotated[
    str,
    Field(pattern=RFC1123_LABEL, max_length=63, description="Job id, e.g. cnn-mnist-3f2a."),
]

# -- lifespan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    backend: Backend
    render: RenderContext


def build_backend(settings: Settings) -> Backend:
    if settings.backend == "local":
        from mcp_servers.kubernetes.local.backend import LocalBackend

        return LocalBackend(settings)
    raise SettingsError(
        "backend 'cluster' is not available in this version; set TRAINOPS_BACKEND=local"
    )


def build_server(settings: Settings) -> TrainopsMCP:
    backend = build_backend(settings)  # fail at start-up, not on the first call

    @asynccontextmanager
    async def lifespan(_: TrainopsMCP) -> AsyncIterator[AppContext]:
        yield AppContext(
            settings=settings,
            backend=backend,
            render=RenderContext(settings.kubernetes, settings.mlflow_tracking_uri),
        )

    mcp = TrainopsMCP(
        "trainops-kubernetes",
        instructions=(
            "Launch and watch distributed training jobs (Job / PyTorchJob / TrainJob) on "
            f"the {settings.backend} backend. Create with training_jobs_create, then "
            "training_jobs_wait until the phase changes; logs and events explain failures."
        ),
        lifespan=lifespan,
        log_level="WARNING",
    )
    _register_tools(mcp)
    return mcp


GENERATED_ID_ATTEMPTS = 8  # generated ids have 4 hex digits: a clash is rare, not impossible


def _app(ctx: Context) -> AppContext:
    return ctx.request_context.lifespan_context


def _prepare(spec: TrainingJobSpec, app: AppContext):
    try:
        namespace = admit(spec, app.settings)
    except JobError as e:
        raise ToolError(str(e)) from None
    return render(spec, new_job_id(spec), namespace, app.render)


async def _call(fn, *args):
    """Run a blocking backend call off the event loop; its JobErrors become ToolErrors."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except JobError as e:
        raise ToolError(str(e)) from None


# -- tools ------------------------------------------------------------------------------------


def _register_tools(mcp: TrainopsMCP) -> None:
    @mcp.tool(annotations=hints("Launch a training job", read_only=False))
    async def training_jobs_create(spec: TrainingJobSpec, ctx: Context) -> CreateResult:
        """Launch a training job: one replica renders a batch/v1 Job, more a PyTorchJob.

        Returns at once with the job id (phase Pending); follow it with training_jobs_wait.
        Pass an idempotency_key to make retries safe: the same key returns the same job.
        """
        app = _app(ctx)
        for _ in range(GENERATED_ID_ATTEMPTS):
            manifest = _prepare(spec, app)
            try:
                return await anyio.to_thread.run_sync(app.backend.create, manifest, spec)
            except JobExists as e:
                if spec.name is not None:  # the caller's own name: theirs to change
                    raise ToolError(str(e)) from None
            except JobError as e:
                raise ToolError(str(e)) from None
        raise ToolError("could not find a free job id; pass a name")

    @mcp.tool(annotations=hints("Render manifests (dry run)", read_only=True, idempotent=True))
    async def manifests_render(spec: TrainingJobSpec, ctx: Context) -> RenderedManifest:
        """Show the manifest training_jobs_create would apply for this spec, creating nothing."""
        manifest = _prepare(spec, _app(ctx))
        return RenderedManifest(
            job_id=manifest.job_id,
            kind=manifest.kind,
            namespace=manifest.namespace,
            yaml=manifest.yaml,
        )

    @mcp.tool(annotations=hints("Job status", read_only=True, idempotent=True))
    async def training_jobs_get(job_id: JobId, ctx: Context) -> JobStatus:
        """Phase, a one-line message, replicas, latest training progress and MLflow run id."""
        return await _call(_app(ctx).backend.get, job_id)

    @mcp.tool(annotations=hints("Wait for a phase change", read_only=True, idempotent=True))
    async def training_jobs_wait(
        job_id: JobId,
        ctx: Context,
        timeout_s: Annotated[float, Field(ge=0, le=3600, description="Longest wait.")] = 300,
    ) -> JobStatus:
        """Block until the job's phase changes (or timeout_s passes); returns the status."""
        try:
            return await _app(ctx).backend.wait(job_id, timeout_s)
        except JobError as e:
            raise ToolError(str(e)) from None

    @mcp.tool(annotations=hints("List jobs", read_only=True, idempotent=True))
    async def training_jobs_list(
        ctx: Context,
        phase: Annotated[Phase | None, Field(description="Only jobs in this phase.")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> JobList:
        """Jobs, newest first, with their phase and a one-line message."""
        return await _call(_app(ctx).backend.list, phase, limit)

    @mcp.tool(annotations=hints("Job events", read_only=True, idempotent=True))
    async def training_jobs_events(
        job_id: JobId, ctx: Context, limit: Annotated[int, Field(ge=1, le=500)] = 50
    ) -> JobEvents:
        """Scheduling, start, restart, failure and completion events, oldest first."""
        return await _call(_app(ctx).backend.events, job_id, limit)

    @mcp.tool(annotations=hints("Job logs", read_only=True, idempotent=True))
    async def training_jobs_logs(
        job_id: JobId,
        ctx: Context,
        replica: Annotated[
            str | None, Field(description="e.g. master-0, worker-1; default: rank 0's replica.")
        ] = None,
        tail_lines: Annotated[int, Field(ge=1, le=2000)] = 100,
        contains: Annotated[
            str | None, Field(max_length=200, description="Only lines containing this text.")
        ] = None,
    ) -> LogTail:
        """The last lines of one replica's output (bounded), optionally filtered."""
        return await _call(_app(ctx).backend.logs, job_id, replica, tail_lines, contains)

    @mcp.tool(annotations=hints("Cancel a job", read_only=False, destructive=True, idempotent=True))
    async def training_jobs_delete(job_id: JobId, ctx: Context) -> JobStatus:
        """Cancel a job: every replica's processes are stopped and the phase becomes Cancelled."""
        try:
            return await _app(ctx).backend.delete(job_id)
        except JobError as e:
            raise ToolError(str(e)) from None

    @mcp.tool(annotations=hints("Cluster capacity", read_only=True, idempotent=True))
    async def cluster_capacity(ctx: Context) -> Capacity:
        """Allocatable and free GPUs, CPUs and memory per node (local: this machine)."""
        return await _call(_app(ctx).backend.capacity)


def main(argv: list[str] | None = None) -> None:
    serve(build_server, description=__doc__.splitlines()[0], argv=argv)


if __name__ == "__main__":
    main()
