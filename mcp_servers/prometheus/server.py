"""Prometheus MCP server: bounded PromQL, targets, and the utilisation of a training job.

`python -m mcp_servers.prometheus` (stdio) or `--transport streamable-http --port N`.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from mcp.server.fastmcp import Context
from pydantic import Field

from common.errors import ErrorKind, InvalidArgument
from common.settings import Settings
from common.telemetry import PromLabel, PromMetric, counter_total
from common.vocabulary import MAX_LABEL_LENGTH, RFC1123_LABEL
from mcp_servers.framework import TrainopsMCP, Upstream, hints, serve, tool, upstream
from mcp_servers.prometheus.schemas import (
    CpuUsage,
    GpuUsage,
    JobUtilization,
    MetricNames,
    QueryResult,
    RangeResult,
    RangeSeries,
    Sample,
    Target,
    TargetList,
)
from mcp_servers.series import downsample

REQUEST_TIMEOUT_S = 15
UNAVAILABLE = {ErrorKind.UNAVAILABLE: "Prometheus is down, unreachable or not configured"}
QUERY_ERRORS = {
    ErrorKind.INVALID_ARGUMENT: "Prometheus refused the PromQL, or a time is malformed",
    **UNAVAILABLE,
}
DEFAULT_WINDOW = timedelta(hours=6)
_DURATION = re.compile(r"^\d+(ms|s|m|h|d)$")

# -- settings and lifespan --------------------------------------------------------------------


def build_server(settings: Settings) -> TrainopsMCP:
    @asynccontextmanager
    async def lifespan(_: TrainopsMCP) -> AsyncIterator[Upstream[Any]]:
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        url = settings.prometheus_url
        client = (
            PrometheusConnect(url, retry=Retry(total=0), timeout=REQUEST_TIMEOUT_S) if url else None
        )
        yield Upstream(
            name="Prometheus",
            url=url,
            client=client,
            setting="TRAINOPS_PROMETHEUS_URL",
            errors=_prometheus_errors,
        )

    mcp = TrainopsMCP(
        "trainops-prometheus",
        instructions=(
            "Query Prometheus with bounded results, and ask jobs_utilization how busy a training "
            "job's GPUs and CPUs were."
        ),
        lifespan=lifespan,
        log_level="WARNING",
    )
    _register_tools(mcp)
    return mcp


@contextlib.contextmanager
def _prometheus_errors(prometheus: Upstream[Any]) -> Iterator[None]:
    import requests
    from prometheus_api_client.exceptions import PrometheusApiClientException

    try:
        yield
    except requests.exceptions.RequestException as e:
        raise prometheus.unreachable(e) from None
    except PrometheusApiClientException as e:
        raise InvalidArgument(
            f"Prometheus refused the query: {_prometheus_message(e)}; fix the PromQL"
        ) from None


def _prometheus_message(error: Exception) -> str:
    text = str(error)
    match = re.search(r'"error"\s*:\s*"([^"]+)"', text)
    return (match.group(1) if match else text).splitlines()[0][:300]


def _parse_time(value: str | None, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return datetime.fromtimestamp(float(value), UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"time {value!r}: use ISO 8601 (2026-11-22T10:00:00Z) or unix seconds"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# -- tools ------------------------------------------------------------------------------------


def _register_tools(mcp: TrainopsMCP) -> None:
    @tool(mcp, hints("PromQL instant query", read_only=True, idempotent=True), errors=QUERY_ERRORS)
    async def prometheus_query(
        promql: Annotated[str, Field(min_length=1, max_length=4000)],
        ctx: Context,
        time: Annotated[
            str | None, Field(description="ISO 8601 or unix seconds; default now.")
        ] = None,
        max_series: Annotated[int, Field(ge=1, le=500)] = 50,
    ) -> QueryResult:
        """An instant PromQL query; at most max_series series come back (a note says when cut)."""
        params = {"time": _parse_time(time, datetime.now(UTC)).timestamp()} if time else None

        def query(client: Any) -> QueryResult:
            result = client.custom_query(promql, params=params)
            if isinstance(result, list):
                series = [
                    Sample(labels=r.get("metric", {}), value=_number(r["value"][1])) for r in result
                ]
                kind = "vector"
            else:  # scalar or string: [time, value]
                series = [Sample(labels={}, value=_number(result[1]))]
                kind = "scalar"
            cut = len(series) > max_series
            return QueryResult(
                result_type=kind,
                series=series[:max_series],
                total_series=len(series),
                truncated=cut,
                note=(
                    f"showing {max_series} of {len(series)} series; aggregate "
                    "(e.g. sum by (job_id)) or add label filters to see them all"
                )
                if cut
                else None,
            )

        return await upstream(ctx).run(query)

    @tool(mcp, hints("PromQL range query", read_only=True, idempotent=True), errors=QUERY_ERRORS)
    async def prometheus_query_range(
        promql: Annotated[str, Field(min_length=1, max_length=4000)],
        start: str,
        end: str,
        ctx: Context,
        step: Annotated[str, Field(pattern=_DURATION.pattern, description="e.g. 15s, 1m.")] = "15s",
        max_series: Annotated[int, Field(ge=1, le=100)] = 20,
        max_points: Annotated[int, Field(ge=3, le=1000)] = 200,
    ) -> RangeResult:
        """A range query; series are capped at max_series and each downsampled to max_points."""
        begin = _parse_time(start, datetime.now(UTC))
        finish = _parse_time(end, datetime.now(UTC))
        if finish <= begin:
            raise InvalidArgument("end must be after start")

        def query(client: Any) -> RangeResult:
            result = client.custom_query_range(promql, start_time=begin, end_time=finish, step=step)
            out = []
            for series in result[:max_series]:
                points = [
                    (float(t), v) for t, raw in series["values"] if (v := _number(raw)) is not None
                ]
                out.append(
                    RangeSeries(
                        labels=series.get("metric", {}),
                        points=[points[i] for i in downsample(points, max_points)],
                        total_points=len(points),
                    )
                )
            cut = len(result) > max_series
            thinned = any(len(s.points) < s.total_points for s in out)
            notes = []
            if cut:
                notes.append(f"showing {max_series} of {len(result)} series; aggregate or filter")
            if thinned:
                notes.append(f"points downsampled to at most {max_points} per series")
            return RangeResult(
                series=out, total_series=len(result), truncated=cut, note="; ".join(notes) or None
            )

        return await upstream(ctx).run(query)

    @tool(mcp, hints("List metric names", read_only=True, idempotent=True), errors=UNAVAILABLE)
    async def metrics_list(
        ctx: Context,
        match: Annotated[
            str | None, Field(max_length=200, description="Substring to keep.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=1000)] = 200,
    ) -> MetricNames:
        """Metric names Prometheus knows, optionally those containing `match`."""

        def fetch(client: Any) -> MetricNames:
            names = sorted(n for n in client.all_metrics() if match is None or match in n)
            return MetricNames(names=names[:limit], total=len(names), truncated=len(names) > limit)

        return await upstream(ctx).run(fetch)

    @tool(mcp, hints("List scrape targets", read_only=True, idempotent=True), errors=UNAVAILABLE)
    async def targets_list(
        ctx: Context, limit: Annotated[int, Field(ge=1, le=1000)] = 100
    ) -> TargetList:
        """Active scrape targets with their health and last error."""

        def fetch(client: Any) -> TargetList:
            active = client.get_targets().get("activeTargets", [])
            return TargetList(
                total=len(active),
                targets=[
                    Target(
                        job=t.get("labels", {}).get("job", ""),
                        instance=t.get("labels", {}).get("instance", ""),
                        health=t.get("health", "unknown"),
                        last_scrape=t.get("lastScrape"),
                        last_error=t.get("lastError") or None,
                        labels=t.get("labels", {}),
                    )
                    for t in active[:limit]
                ],
            )

        return await upstream(ctx).run(fetch)

    @tool(mcp, hints("Job utilisation", read_only=True, idempotent=True), errors=UNAVAILABLE)
    async def jobs_utilization(
        job_id: Annotated[str, Field(pattern=RFC1123_LABEL, max_length=MAX_LABEL_LENGTH)],
        ctx: Context,
        start: Annotated[str | None, Field(description="Default: 6 hours before end.")] = None,
        end: Annotated[str | None, Field(description="Default: now.")] = None,
        cpus_requested: Annotated[
            float | None, Field(gt=0, description="For CPU utilisation.")
        ] = None,
    ) -> JobUtilization:
        """How busy a job's GPUs and CPUs were: mean and p95 GPU utilisation, peak GPU memory,
        mean CPU use (against cpus_requested), peak RSS, and which metrics answered.
        no_data=true means Prometheus holds nothing for the job (not an error)."""
        finish = _parse_time(end, datetime.now(UTC))
        begin = _parse_time(start, finish - DEFAULT_WINDOW)
        if finish <= begin:
            raise InvalidArgument("end must be after start")

        def measure(client: Any) -> JobUtilization:
            return _utilization(client, job_id, begin, finish, cpus_requested)

        return await upstream(ctx).run(measure)


def _utilization(
    client: Any, job_id: str, start: datetime, end: datetime, cpus_requested: float | None
) -> JobUtilization:
    window = f"{max(1, int((end - start).total_seconds()))}s"
    at = {"time": end.timestamp()}

    def scalar(promql: str) -> float | None:
        result = client.custom_query(promql, params=at)
        return _finite(_number(result[0]["value"][1])) if result else None

    answered: list[str] = []
    gpu = GpuUsage()
    ours = f'{{{PromLabel.JOB_ID}="{job_id}"}}'
    pods = f'{{pod=~"{job_id}-.*"}}'
    # Locally the job's own exporter reports NVML readings; on clusters DCGM's exporter does.
    sources = [
        (PromMetric.GPU_UTILIZATION, f"{PromMetric.GPU_UTILIZATION}{ours}", 1.0),
        (PromMetric.DCGM_GPU_UTIL, f"{PromMetric.DCGM_GPU_UTIL}{pods}", 100.0),
    ]
    for name, selector, scale in sources:
        mean = scalar(f"avg(avg_over_time({selector}[{window}]))")
        if mean is None:
            continue
        answered.append(name)
        p95 = scalar(f"max(quantile_over_time(0.95, {selector}[{window}]))")
        gpu = GpuUsage(
            mean_utilization=mean / scale,
            p95_utilization=p95 / scale if p95 is not None else None,
            metric=name,
        )
        break
    memory_sources = [
        (PromMetric.GPU_MEMORY, f"{PromMetric.GPU_MEMORY}{ours}"),
        (PromMetric.DCGM_FB_USED, f"{PromMetric.DCGM_FB_USED}{pods} * 1048576"),  # MiB
    ]
    for name, selector in memory_sources:
        peak = scalar(f"max(max_over_time(({selector})[{window}:]))")
        if peak is not None:
            gpu.peak_memory_bytes = peak
            answered.append(name)
            break

    cores = scalar(f"avg_over_time(sum(rate({PromMetric.PROCESS_CPU}{ours}[1m]))[{window}:])")
    cpu = CpuUsage()
    if cores is not None:
        answered.append(PromMetric.PROCESS_CPU)
        cpu = CpuUsage(
            mean_cores_used=cores,
            metric=PromMetric.PROCESS_CPU,
            mean_utilization=cores / cpus_requested if cpus_requested else None,
        )
    rss = scalar(f"max_over_time(sum({PromMetric.PROCESS_RSS}{ours})[{window}:])")
    if rss is not None:
        answered.append(PromMetric.PROCESS_RSS)
    # Every rank's exporter serves the step counter, so its sample count is the job's.
    steps = counter_total(PromMetric.TRAIN_STEPS)
    samples = scalar(f"sum(count_over_time({steps}{ours}[{window}]))") or 0.0
    no_data = samples == 0 and not answered
    note = None
    if no_data:
        note = (
            f"Prometheus holds no samples for job {job_id} between {start:%Y-%m-%d %H:%M} and "
            f"{end:%H:%M} UTC: it was not scraped (no TRAINOPS_METRICS_PORT?) or ran elsewhere"
        )
    elif gpu.metric is None:
        note = "no GPU metrics for this job (CPU-only, or no NVML/DCGM exporter)"
    return JobUtilization(
        job_id=job_id,
        start=start,
        end=end,
        gpu=gpu,
        cpu=cpu,
        peak_rss_bytes=rss,
        samples=int(samples),
        metrics_answered=answered,
        no_data=no_data,
        note=note,
    )


def main(argv: list[str] | None = None) -> None:
    serve(build_server, description=__doc__.splitlines()[0], argv=argv)


if __name__ == "__main__":
    main()
