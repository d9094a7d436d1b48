"""Kubernetes MCP server: launch, watch and cancel training jobs; render manifests; see capacity.

`python -m mcp_servers.kubernetes` (stdio) or `--transport streamable-http --port N`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.fastmcp import Context
from pydantic import Field

from common.errors import ErrorKind, InvalidArgument
from common.settings import Settings, SettingsError
from common.vocabulary import MAX_LOG_LINES
from mcp_servers.framework import TrainopsMCP, hints, serve, tool
from mcp_servers.kubernetes.backend import Backend, JobExists
from mcp_servers.kubernetes.job_env import operator_env_problem
from mcp_servers.kubernetes.manifests import (
    Manifest,
    RenderContext,
    new_job_id,
    render,
    render_sweep,
)
from mcp_servers.kubernetes.policy import admit, admit_sweep
from mcp_servers.kubernetes.postmortem import PostMortems, collect
from mcp_servers.kubernetes.schemas import (
    Capacity,
    CreateResult,
    JobEvents,
    JobId,
    JobList,
    JobStatus,
    LogTail,
    Phase,
    RenderedManifest,
    SweepSpec,
    TrainingJobSpec,
)

T = TypeVar("T")
NOT_FOUND_JOB = {ErrorKind.NOT_FOUND: "no job has this id; training_jobs_list shows them"}
UNAVAILABLE = {ErrorKind.UNAVAILABLE: "the cluster did not answer"}
SPEC_ERRORS = {
    ErrorKind.INVALID_ARGUMENT: "the spec is malformed, or the training command it renders "
    "would fail (bad flags, a batch that does not split over the ranks)",
    ErrorKind.REFUSED: "policy forbids it: namespace, image registry, GPU or replica caps",
}

# -- lifespan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppContext:
    settings: Settings
    backend: Backend
    render: RenderContext
    post_mortems: PostMortems


def build_backend(settings: Settings) -> Backend:
    if settings.backend == "local":
        from mcp_servers.kubernetes.local.backend import LocalBackend

        return LocalBackend(settings)
    from mcp_servers.kubernetes.cluster.backend import ClusterBackend

    return ClusterBackend(settings)


def job_mlflow_uri(settings: Settings) -> str | None:
    """MLflow as the job's processes reach it: this machine's locally, the in-cluster service
    on a cluster (where the agent's own URI is usually a port-forward)."""
    if settings.backend == "cluster":
        return settings.cluster.job_mlflow_tracking_uri
    return settings.mlflow_tracking_uri


def build_server(settings: Settings) -> TrainopsMCP:
    for name in settings.kubernetes.job_env:
        if problem := operator_env_problem(name):
            raise SettingsError(f"setting kubernetes.job_env: {problem}")
    backend = build_backend(settings)  # fail at start-up, not on the first call

    @asynccontextmanager
    async def lifespan(_: TrainopsMCP) -> AsyncIterator[AppContext]:
        yield AppContext(
            settings=settings,
            backend=backend,
            render=RenderContext(settings.kubernetes, job_mlflow_uri(settings), settings.rates),
            post_mortems=PostMortems(settings.mlflow_tracking_uri),
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


def _prepare(spec: TrainingJobSpec | SweepSpec, app: AppContext) -> Manifest:
    if isinstance(spec, SweepSpec):
        namespace = admit_sweep(spec, app.settings)
        return render_sweep(spec, new_job_id(spec), namespace, app.render)
    namespace = admit(spec, app.settings)
    return render(spec, new_job_id(spec), namespace, app.render)


async def _create(spec: TrainingJobSpec | SweepSpec, app: AppContext) -> CreateResult:
    for _ in range(GENERATED_ID_ATTEMPTS):
        manifest = _prepare(spec, app)
        try:
            return await _call(app.backend.create, manifest, spec)
        except JobExists:
            if spec.name is not None:  # the caller's own name: theirs to change
                raise
    raise JobExists("could not find a free job id; pass a name")


async def _call(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking backend call off the event loop (its TrainopsErrors carry their kind)."""
    return await anyio.to_thread.run_sync(fn, *args)


async def _seen(app: AppContext, status: JobStatus) -> JobStatus:
    """A status on its way out: an ended job's post-mortem goes to MLflow the first time."""
    if app.post_mortems.wanted(status):
        post_mortem = await _call(collect, app.backend, status)
        await _call(app.post_mortems.attach, post_mortem)
    return status


# -- tools ------------------------------------------------------------------------------------


def _register_tools(mcp: TrainopsMCP) -> None:
    @tool(
        mcp,
        hints("Launch a training job", read_only=False),
        errors={
            **SPEC_ERRORS,
            ErrorKind.REFUSED: "policy forbids it: namespace, image registry, GPU or replica "
            "caps, or the cap on jobs active at once",
            ErrorKind.CONFLICT: "a job with the name given exists already",
            **UNAVAILABLE,
        },
    )
    async def training_jobs_create(spec: TrainingJobSpec, ctx: Context) -> CreateResult:
        """Launch a training job: one replica renders a batch/v1 Job, more a PyTorchJob.

        Returns at once with the job id (phase Pending); follow it with training_jobs_wait.
        Pass an idempotency_key to make retries safe: the same key returns the same job.
        """
        return await _create(spec, _app(ctx))

    @tool(
        mcp,
        hints("Launch a Ray Tune sweep", read_only=False),
        errors={
            ErrorKind.INVALID_ARGUMENT: "the spec is malformed, or the sweep would fail (an "
            "empty or inverted range, a parameter the trainer lacks, a grid over a range)",
            ErrorKind.REFUSED: "policy forbids it: namespace, image registry, the GPU or "
            "replica caps on its concurrent trials, or the cap on jobs active at once",
            ErrorKind.CONFLICT: "a job with the name given exists already",
            **UNAVAILABLE,
        },
    )
    async def training_sweeps_create(spec: SweepSpec, ctx: Context) -> CreateResult:
        """Launch a hyperparameter sweep (Ray Tune, ASHA by default) as a ray.io/v1 RayJob.

        Follow it like a job (training_jobs_wait/get: its trials and the best so far; logs
        with replica=trial-N). Pass an idempotency_key to make retries safe.
        """
        return await _create(spec, _app(ctx))

    @tool(
        mcp,
        hints("Render manifests (dry run)", read_only=True, idempotent=True),
        errors=SPEC_ERRORS,
    )
    async def manifests_render(
        ctx: Context,
        spec: Annotated[
            TrainingJobSpec | None, Field(description="A job, as training_jobs_create takes.")
        ] = None,
        sweep: Annotated[
            SweepSpec | None, Field(description="A sweep, as training_sweeps_create takes.")
        ] = None,
    ) -> RenderedManifest:
        """Show the manifest a create would apply for a job spec or a sweep, creating nothing."""
        if (spec is None) == (sweep is None):
            raise InvalidArgument("give exactly one of spec (a job) or sweep")
        chosen: TrainingJobSpec | SweepSpec | None = spec if spec is not None else sweep
        assert chosen is not None
        manifest = _prepare(chosen, _app(ctx))
        return RenderedManifest(
            job_id=manifest.job_id,
            kind=manifest.kind,
            namespace=manifest.namespace,
            yaml=manifest.yaml,
        )

    @tool(
        mcp,
        hints("Job status", read_only=True, idempotent=True),
        errors={**NOT_FOUND_JOB, **UNAVAILABLE},
    )
    async def training_jobs_get(job_id: JobId, ctx: Context) -> JobStatus:
        """Phase, a one-line message, replicas, latest training progress and MLflow run id."""
        app = _app(ctx)
        return await _seen(app, await _call(app.backend.get, job_id))

    @tool(
        mcp,
        hints("Wait for a phase change", read_only=True, idempotent=True),
        errors={**NOT_FOUND_JOB, **UNAVAILABLE},
    )
    async def training_jobs_wait(
        job_id: JobId,
        ctx: Context,
        timeout_s: Annotated[float, Field(ge=0, le=3600, description="Longest wait.")] = 300,
        phase: Annotated[
            Phase | None,
            Field(
                description="The phase you last saw: returns at once if the job has moved on. "
                "Default: its phase when the call arrives."
            ),
        ] = None,
    ) -> JobStatus:
        """Block until the job's phase changes (or timeout_s passes); returns the status."""
        app = _app(ctx)
        return await _seen(app, await app.backend.wait(job_id, timeout_s, phase))

    @tool(mcp, hints("List jobs", read_only=True, idempotent=True), errors=UNAVAILABLE)
    async def training_jobs_list(
        ctx: Context,
        phase: Annotated[Phase | None, Field(description="Only jobs in this phase.")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> JobList:
        """Jobs, newest first, with their phase and a one-line message."""
        return await _call(_app(ctx).backend.list, phase, limit)

    @tool(
        mcp,
        hints("Job events", read_only=True, idempotent=True),
        errors={**NOT_FOUND_JOB, **UNAVAILABLE},
    )
    async def training_jobs_events(
        job_id: JobId, ctx: Context, limit: Annotated[int, Field(ge=1, le=500)] = 50
    ) -> JobEvents:
        """Scheduling, start, restart, failure and completion events, oldest first."""
        return await _call(_app(ctx).backend.events, job_id, limit)

    @tool(
        mcp,
        hints("Job logs", read_only=True, idempotent=True),
        errors={
            ErrorKind.NOT_FOUND: "no job has this id, it has no such replica, or (previous) the "
            "replica has not restarted",
            **UNAVAILABLE,
        },
    )
    async def training_jobs_logs(
        job_id: JobId,
        ctx: Context,
        replica: Annotated[
            str | None, Field(description="e.g. master-0, worker-1; default: rank 0's replica.")
        ] = None,
        tail_lines: Annotated[int, Field(ge=1, le=MAX_LOG_LINES)] = 100,
        contains: Annotated[
            str | None, Field(max_length=200, description="Only lines containing this text.")
        ] = None,
        previous: Annotated[
            bool,
            Field(description="The replica's output before its last restart (why it crashed)."),
        ] = False,
    ) -> LogTail:
        """The last lines of one replica's output (bounded), optionally filtered."""
        return await _call(_app(ctx).backend.logs, job_id, replica, tail_lines, contains, previous)

    @tool(
        mcp,
        hints("Cancel a job", read_only=False, destructive=True, idempotent=True),
        errors={
            **NOT_FOUND_JOB,
            ErrorKind.REFUSED: "the job is not managed by trainops",
            **UNAVAILABLE,
        },
    )
    async def training_jobs_delete(job_id: JobId, ctx: Context) -> JobStatus:
        """Cancel a job: every replica's processes are stopped and the phase becomes Cancelled."""
        app = _app(ctx)
        before = await _call(app.backend.get, job_id)
        # The pods go with the job: what they said is collected first.
        post_mortem = None if before.terminal else await _call(collect, app.backend, before)
        status = await app.backend.delete(job_id)
        if post_mortem is not None and app.post_mortems.wanted(status):
            post_mortem.status = status
            await _call(app.post_mortems.attach, post_mortem)
            return status
        return await _seen(app, status)

    @tool(mcp, hints("Cluster capacity", read_only=True, idempotent=True), errors=UNAVAILABLE)
    async def cluster_capacity(ctx: Context) -> Capacity:
        """Allocatable and free GPUs, CPUs and memory per node (local: this machine)."""
        return await _call(_app(ctx).backend.capacity)


def main(argv: list[str] | None = None) -> None:
    serve(build_server, description=__doc__.splitlines()[0], argv=argv)


if __name__ == "__main__":
    main()
