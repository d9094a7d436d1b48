"""MLflow MCP server: runs, metric histories as summaries, comparisons, costs, model registry.

`python -m mcp_servers.mlflow` (stdio) or `--transport streamable-http --port N`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.fastmcp import Context
from pydantic import Field

from common.errors import Conflict, ErrorKind, InvalidArgument, NotFound, Refused, first_line
from common.settings import Settings
from common.telemetry import MlflowParam, MlflowTag, higher_is_better, is_trainops_tag
from mcp_servers.framework import TrainopsMCP, Upstream, hints, serve, tool, upstream
from mcp_servers.mlflow.schemas import (
    COST_METRICS,
    ArtifactText,
    CostBreakdown,
    CostGroup,
    CostLogResult,
    CostReport,
    ExperimentInfo,
    ExperimentList,
    GroupBy,
    MetricHistory,
    MetricPoint,
    ModelVersionInfo,
    RunComparison,
    RunDetail,
    RunPage,
    RunSummary,
)
from mcp_servers.series import downsample, summarize

RunId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="MLflow run id (32 hex).")]
SEARCH_PAGE = 5000
_DURATION = re.compile(r"^(\d{1,9})([hdw])$")
MAX_SINCE_HOURS = 100 * 365 * 24
MAX_ARTIFACT_BYTES = 1_000_000
UNAVAILABLE = {ErrorKind.UNAVAILABLE: "MLflow is down, unreachable or not configured"}
NOT_FOUND_RUN = {ErrorKind.NOT_FOUND: "no run has this id"}

# -- lifespan ---------------------------------------------------------------------------------


def build_server(settings: Settings) -> TrainopsMCP:
    @asynccontextmanager
    async def lifespan(_: TrainopsMCP) -> AsyncIterator[Upstream[Any]]:
        # Fail fast when the server is down: an agent waiting minutes on retries learns nothing.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        import mlflow

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # stderr is the client's terminal
        uri = settings.mlflow_tracking_uri
        yield Upstream(
            name="MLflow",
            url=uri,
            client=mlflow.MlflowClient(uri) if uri else None,
            setting="MLFLOW_TRACKING_URI",
            errors=_mlflow_errors,
        )

    mcp = TrainopsMCP(
        "trainops-mlflow",
        instructions=(
            "Read MLflow runs as summaries: metric histories come downsampled with a summary "
            "(trend, divergence, plateau); compare runs; log and report costs; register models."
        ),
        lifespan=lifespan,
        log_level="WARNING",
    )
    _register_tools(mcp)
    return mcp


# MLflow's error codes, by the kind of trouble they mean.
_CODE_KINDS = {
    "RESOURCE_DOES_NOT_EXIST": NotFound,
    "INVALID_PARAMETER_VALUE": InvalidArgument,
    "BAD_REQUEST": InvalidArgument,
    "RESOURCE_ALREADY_EXISTS": Conflict,
    "PERMISSION_DENIED": Refused,
    "UNAUTHENTICATED": Refused,
}


@contextlib.contextmanager
def _mlflow_errors(mlflow: Upstream[Any]) -> Iterator[None]:
    """MLflow's exceptions as TrainopsErrors of the right kind, with what to do."""
    from mlflow.exceptions import MlflowException, RestException

    try:
        yield
    except RestException as e:
        if e.get_http_status_code() >= 500:
            raise mlflow.unreachable(e) from None
        raise _CODE_KINDS.get(e.error_code, Refused)(_mlflow_message(e)) from None
    except MlflowException as e:
        if str(e).startswith("API request to"):  # the client's own wording for no connection
            raise mlflow.unreachable(e) from None
        raise _CODE_KINDS.get(e.error_code, Refused)(_mlflow_message(e)) from None
    except OSError as e:
        raise mlflow.unreachable(e) from None


def _mlflow_message(error: BaseException) -> str:
    text = first_line(error)
    if getattr(error, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
        return f"{text}; runs_search lists what exists"
    return f"MLflow refused: {text}"


# -- helpers ----------------------------------------------------------------------------------


def _time(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC) if ms else None


def _summary(run: Any) -> RunSummary:
    info, data = run.info, run.data
    duration = (
        (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None
    )
    return RunSummary(
        run_id=info.run_id,
        run_name=info.run_name,
        experiment_id=info.experiment_id,
        status=info.status,
        start_time=_time(info.start_time),
        end_time=_time(info.end_time),
        duration_s=duration,
        metrics={k: v for k, v in data.metrics.items() if math.isfinite(v)},
        nonfinite_metrics={k: str(v) for k, v in data.metrics.items() if not math.isfinite(v)},
        tags={k: v for k, v in data.tags.items() if is_trainops_tag(k)},
    )


def _experiment_ids(client: Any, experiment: str | None) -> list[str]:
    if experiment is None:
        return [e.experiment_id for e in client.search_experiments(max_results=50000)]
    found = client.get_experiment_by_name(experiment)
    if found is None and experiment.isdigit():
        found = client.get_experiment(experiment)
    if found is None:
        raise NotFound(f"no experiment {experiment!r}; experiments_list shows what exists")
    return [found.experiment_id]


def _since_ms(since: str | None) -> int | None:
    if since is None:
        return None
    hint = f"since={since[:40]!r}: use an ISO date (2026-11-01) or a span like 24h, 7d, 2w"
    if match := _DURATION.match(since):
        amount, unit = int(match.group(1)), match.group(2)
        hours = amount * {"h": 1, "d": 24, "w": 24 * 7}[unit]
        if hours > MAX_SINCE_HOURS:
            raise InvalidArgument(f"{hint}, of at most {MAX_SINCE_HOURS // (24 * 365)} years")
        return int((datetime.now(UTC) - timedelta(hours=hours)).timestamp() * 1000)
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise InvalidArgument(hint) from None
    if not 1970 <= moment.year < 2200:
        raise InvalidArgument(f"{hint} between 1970 and 2200") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _all_runs(client: Any, experiment_ids: list[str], filter_string: str) -> Iterator[Any]:
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, filter_string, max_results=SEARCH_PAGE, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


# -- tools ------------------------------------------------------------------------------------


def _register_tools(mcp: TrainopsMCP) -> None:
    @tool(mcp, hints("List experiments", read_only=True, idempotent=True), errors=UNAVAILABLE)
    async def experiments_list(
        ctx: Context,
        name_contains: Annotated[str | None, Field(max_length=200)] = None,
        max_results: Annotated[int, Field(ge=1, le=1000)] = 100,
    ) -> ExperimentList:
        """Experiments, most recently created first."""

        def fetch(client: Any) -> ExperimentList:
            flt = f"name LIKE '%{name_contains.replace(chr(39), '')}%'" if name_contains else None
            found = client.search_experiments(
                filter_string=flt, max_results=max_results, order_by=["creation_time DESC"]
            )
            return ExperimentList(
                experiments=[
                    ExperimentInfo(
                        experiment_id=e.experiment_id,
                        name=e.name,
                        lifecycle_stage=e.lifecycle_stage,
                        created=_time(e.creation_time),
                        last_update=_time(e.last_update_time),
                    )
                    for e in found
                ]
            )

        return await upstream(ctx).run(fetch)

    @tool(
        mcp,
        hints("Search runs", read_only=True, idempotent=True),
        errors={ErrorKind.NOT_FOUND: "no experiment has this name or id", **UNAVAILABLE},
    )
    async def runs_search(
        ctx: Context,
        experiment: Annotated[
            str | None, Field(description="Name or id; all when omitted.")
        ] = None,
        filter: Annotated[
            str | None, Field(description='MLflow filter, e.g. "metrics.val_accuracy > 0.9".')
        ] = None,
        order_by: Annotated[
            list[str] | None, Field(description='e.g. ["metrics.val_accuracy DESC"].')
        ] = None,
        max_results: Annotated[int, Field(ge=1, le=1000)] = 50,
        page_token: str | None = None,
    ) -> RunPage:
        """Runs with their latest metrics and trainops tags, a page at a time."""

        def fetch(client: Any) -> RunPage:
            page = client.search_runs(
                _experiment_ids(client, experiment),
                filter or "",
                max_results=max_results,
                order_by=order_by or ["attributes.start_time DESC"],
                page_token=page_token,
            )
            return RunPage(runs=[_summary(r) for r in page], next_page_token=page.token or None)

        return await upstream(ctx).run(fetch)

    @tool(
        mcp,
        hints("Run details", read_only=True, idempotent=True),
        errors={**NOT_FOUND_RUN, **UNAVAILABLE},
    )
    async def runs_get(run_id: RunId, ctx: Context) -> RunDetail:
        """One run: status, duration, params, latest metrics, tags."""

        def fetch(client: Any) -> RunDetail:
            run = client.get_run(run_id)
            return RunDetail(
                **_summary(run).model_dump(),
                params=dict(run.data.params),
                all_tags={
                    k: v
                    for k, v in run.data.tags.items()
                    if not k.startswith("mlflow.") or k == "mlflow.runName"
                },
                artifact_uri=run.info.artifact_uri,
            )

        return await upstream(ctx).run(fetch)

    @tool(
        mcp,
        hints("Read a run's text artifact", read_only=True, idempotent=True),
        errors={
            ErrorKind.NOT_FOUND: "no run has this id, or it has no artifact at this path",
            ErrorKind.INVALID_ARGUMENT: "the path is not a relative path inside the run",
            **UNAVAILABLE,
        },
    )
    async def runs_artifact_read(
        run_id: RunId,
        path: Annotated[
            str,
            Field(
                min_length=1,
                max_length=500,
                pattern=r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$",
                description="Relative to the run's artifact root, e.g. trainops/post-mortem.json",
            ),
        ],
        ctx: Context,
        max_bytes: Annotated[int, Field(ge=1, le=MAX_ARTIFACT_BYTES)] = 256_000,
    ) -> ArtifactText:
        """A text artifact of a run (a job's post-mortem, a config), bounded to max_bytes."""
        if ".." in path.split("/"):
            raise InvalidArgument("the path may not leave the run's artifacts (no '..')")

        def fetch(client: Any) -> ArtifactText:
            client.get_run(run_id)  # a missing run is not_found, not a download error
            folder = path.rpartition("/")[0]
            listed = {a.path: a for a in client.list_artifacts(run_id, folder or None)}
            if path not in listed or listed[path].is_dir:
                raise NotFound(f"run {run_id} has no artifact {path!r}")
            with tempfile.TemporaryDirectory() as tmp:
                local = Path(client.download_artifacts(run_id, path, tmp))
                size = local.stat().st_size
                with open(local, "rb") as f:
                    data = f.read(max_bytes)
            return ArtifactText(
                run_id=run_id,
                path=path,
                text=data.decode(errors="replace"),
                truncated=size > max_bytes,
                size_bytes=size,
            )

        return await upstream(ctx).run(fetch)

    @tool(
        mcp,
        hints("Metric history", read_only=True, idempotent=True),
        errors={ErrorKind.NOT_FOUND: "no run has this id, or it has no such metric", **UNAVAILABLE},
    )
    async def runs_metric_history(
        run_id: RunId,
        key: Annotated[str, Field(min_length=1, max_length=250, description="e.g. val_loss")],
        ctx: Context,
        max_points: Annotated[int, Field(ge=3, le=2000)] = 200,
        recent_points: Annotated[
            int, Field(ge=3, le=1000, description="Points the trend uses.")
        ] = 20,
    ) -> MetricHistory:
        """A metric's history, downsampled to max_points (shape kept), with a summary: first, last,
        min and its step, max, trend over the recent points, NaN/divergence and plateau flags."""

        def fetch(client: Any) -> MetricHistory:
            history = sorted(
                client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)
            )
            if not history:
                run = client.get_run(run_id)  # raises if the run itself does not exist
                known = sorted(run.data.metrics)
                raise NotFound(f"run {run_id} has no metric {key!r}; it has {known[:50]}")
            points = [(float(m.step), m.value) for m in history]
            kept = downsample(points, max_points)
            return MetricHistory(
                run_id=run_id,
                key=key,
                downsampled=len(kept) < len(points),
                points=[
                    MetricPoint(
                        step=history[i].step,
                        value=history[i].value if math.isfinite(history[i].value) else None,
                        timestamp=history[i].timestamp,
                    )
                    for i in kept
                ],
                summary=summarize(points, recent=recent_points),
            )

        return await upstream(ctx).run(fetch)

    @tool(
        mcp,
        hints("Compare runs", read_only=True, idempotent=True),
        errors={ErrorKind.NOT_FOUND: "a run id names no run", **UNAVAILABLE},
    )
    async def runs_compare(
        run_ids: Annotated[list[str], Field(min_length=2, max_length=20)],
        ctx: Context,
        metrics: Annotated[list[str] | None, Field(max_length=50)] = None,
    ) -> RunComparison:
        """Runs side by side: their metrics, the params that differ, the best run per metric."""

        def fetch(client: Any) -> RunComparison:
            runs = [client.get_run(run_id) for run_id in run_ids]
            summaries = [_summary(r) for r in runs]
            if metrics:
                for summary in summaries:
                    summary.metrics = {k: v for k, v in summary.metrics.items() if k in metrics}
            keys = set().union(*(r.data.params for r in runs))
            differing = {
                k: {r.info.run_id: r.data.params.get(k, "") for r in runs}
                for k in sorted(keys)
                if len({r.data.params.get(k) for r in runs}) > 1
            }
            best = {}
            for key in sorted(set().union(*(s.metrics for s in summaries))):
                ranked = sorted(
                    (s for s in summaries if key in s.metrics), key=lambda s: s.metrics[key]
                )
                best[key] = (ranked[-1] if higher_is_better(key) else ranked[0]).run_id
            return RunComparison(runs=summaries, differing_params=differing, best=best)

        return await upstream(ctx).run(fetch)

    @tool(
        mcp,
        hints("Best run", read_only=True, idempotent=True),
        errors={
            ErrorKind.NOT_FOUND: "no such experiment, or no run of it has the metric",
            **UNAVAILABLE,
        },
    )
    async def runs_best(
        experiment: str,
        metric: Annotated[str, Field(min_length=1, max_length=250)],
        ctx: Context,
        mode: Literal["max", "min"] = "max",
        filter: str | None = None,
    ) -> RunSummary:
        """The run with the highest (mode=max) or lowest (mode=min) value of a metric."""

        def fetch(client: Any) -> RunSummary:
            order = f"metrics.`{metric}` {'DESC' if mode == 'max' else 'ASC'}"
            runs = client.search_runs(
                _experiment_ids(client, experiment), filter or "", max_results=1, order_by=[order]
            )
            if not runs or metric not in runs[0].data.metrics:
                raise NotFound(f"no run in {experiment!r} has the metric {metric!r}")
            return _summary(runs[0])

        return await upstream(ctx).run(fetch)

    @tool(
        mcp,
        hints("Log a run's cost", read_only=False, idempotent=True),
        errors={**NOT_FOUND_RUN, **UNAVAILABLE},
    )
    async def runs_cost_log(run_id: RunId, breakdown: CostBreakdown, ctx: Context) -> CostLogResult:
        """Write cost metrics (cost_usd, cost_gpu_usd, gpu_hours, idle_gpu_cost_usd, ...) and tags
        to a run. Idempotent: the same call twice leaves the same state."""

        def write(client: Any) -> CostLogResult:
            from mlflow.entities import Metric, RunTag

            run = client.get_run(run_id)
            stamp = run.info.end_time or run.info.start_time or 0
            values = {
                k: v
                for k, v in breakdown.model_dump().items()
                if k in COST_METRICS and v is not None
            }
            # Same figures again: nothing to write. New figures (other rates, utilisation that
            # came in later): the next revision's step, as MLflow's latest value is the one at
            # the highest step (at one step it would be the largest value, not the newest).
            unchanged = all(run.data.metrics.get(k) == float(v) for k, v in values.items())
            revision = int(run.data.tags.get(MlflowTag.COST_REVISION, "-1"))
            if not unchanged or revision < 0:
                revision += 1
            tags = {
                MlflowTag.COST_RATE_CARD: breakdown.rate_card,
                MlflowTag.COST_CURRENCY: breakdown.currency,
                MlflowTag.COST_USD: f"{breakdown.cost_usd:.6f}",
                MlflowTag.COST_REVISION: str(revision),
            }
            if not unchanged or any(run.data.tags.get(k) != v for k, v in tags.items()):
                client.log_batch(
                    run_id,
                    metrics=[Metric(k, float(v), stamp, revision) for k, v in values.items()],
                    tags=[RunTag(k, v) for k, v in tags.items()],
                )
            return CostLogResult(run_id=run_id, metrics=values, tags=tags)

        return await upstream(ctx).run(write)

    @tool(
        mcp,
        hints("Cost report", read_only=True, idempotent=True),
        errors={ErrorKind.NOT_FOUND: "no experiment has this name or id", **UNAVAILABLE},
    )
    async def costs_report(
        ctx: Context,
        experiment: str | None = None,
        since: Annotated[
            str | None, Field(description="ISO date or a span like 24h, 7d, 2w.")
        ] = None,
        group_by: GroupBy = "experiment",
        max_groups: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> CostReport:
        """Cost totals over many runs, grouped (by experiment, model, dataset, job, day, status)."""

        def fetch(client: Any) -> CostReport:
            ids = _experiment_ids(client, experiment)
            names = {e.experiment_id: e.name for e in client.search_experiments(max_results=50000)}
            start = _since_ms(since)
            flt = f"attributes.start_time >= {start}" if start is not None else ""
            groups: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0])
            without = 0
            for chunk in (ids[i : i + 100] for i in range(0, len(ids), 100)):
                for run in _all_runs(client, chunk, flt):
                    metrics = run.data.metrics
                    if "cost_usd" not in metrics:
                        without += 1
                        continue
                    key = _group_key(run, group_by, names)
                    group = groups[key]
                    group[0] += 1
                    group[1] += metrics["cost_usd"]
                    group[2] += metrics.get("gpu_hours", 0.0)
                    group[3] += metrics.get("idle_gpu_cost_usd", 0.0)
            ordered = sorted(groups.items(), key=lambda kv: kv[1][1], reverse=True)
            return CostReport(
                group_by=group_by,
                groups=[
                    CostGroup(
                        key=k,
                        runs=int(g[0]),
                        cost_usd=round(g[1], 6),
                        gpu_hours=round(g[2], 6),
                        idle_gpu_cost_usd=round(g[3], 6),
                    )
                    for k, g in ordered[:max_groups]
                ],
                total_cost_usd=round(sum(g[1] for g in groups.values()), 6),
                total_gpu_hours=round(sum(g[2] for g in groups.values()), 6),
                runs_with_cost=int(sum(g[0] for g in groups.values())),
                runs_without_cost=without,
                truncated=len(ordered) > max_groups,
            )

        return await upstream(ctx).run(fetch)

    @tool(
        mcp,
        hints("Register a model", read_only=False),
        errors={
            ErrorKind.NOT_FOUND: "no run has this id, or it logged no model yet",
            **UNAVAILABLE,
        },
    )
    async def models_register(
        run_id: RunId,
        name: Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[\w.\- ]+$")],
        ctx: Context,
        alias: Annotated[
            str | None,
            Field(
                pattern=r"^[A-Za-z_][\w-]*$",
                max_length=100,
                description="e.g. champion; moves to the new version.",
            ),
        ] = None,
    ) -> ModelVersionInfo:
        """Register the model a run logged as a new version of `name`, optionally under an alias."""

        def register(client: Any) -> ModelVersionInfo:
            from mlflow.exceptions import RestException

            run = client.get_run(run_id)
            logged = [
                m
                for m in client.search_logged_models(
                    experiment_ids=[run.info.experiment_id],
                    filter_string=f"source_run_id = '{run_id}'",
                )
                if m.name == "model"
            ]
            if not logged:
                raise NotFound(f"run {run_id} logged no model; it logs one when training finishes")
            model = logged[-1]
            with contextlib.suppress(RestException):
                client.create_registered_model(name)  # exists already: fine
            version = client.create_model_version(
                name, f"models:/{model.model_id}", run_id=run_id, model_id=model.model_id
            )
            if alias:
                client.set_registered_model_alias(name, alias, version.version)
            return ModelVersionInfo(
                name=name,
                version=str(version.version),
                source=version.source,
                run_id=run_id,
                alias=alias,
                status=str(version.status),
            )

        return await upstream(ctx).run(register)


def _group_key(run: Any, group_by: GroupBy, names: dict[str, str]) -> str:
    tags, params = run.data.tags, run.data.params
    if group_by == "experiment":
        return names.get(run.info.experiment_id, run.info.experiment_id)
    if group_by == "model":
        return tags.get(MlflowTag.MODEL) or params.get(MlflowParam.MODEL, "unknown")
    if group_by == "dataset":
        return tags.get(MlflowTag.DATASET_USED) or params.get(MlflowParam.DATASET, "unknown")
    if group_by == "job":
        return tags.get(MlflowTag.JOB_ID, run.info.run_id)
    if group_by == "day":
        return (_time(run.info.start_time) or datetime.now(UTC)).date().isoformat()
    return run.info.status


def main(argv: list[str] | None = None) -> None:
    serve(build_server, description=__doc__.splitlines()[0], argv=argv)


if __name__ == "__main__":
    main()
