"""Prometheus MCP server: bounded PromQL, targets, and the utilisation of a training job.

`python -m mcp_servers.prometheus` (stdio) or `--transport streamable-http --port N`.
"""

from __future__ import annotations

import ast
import contextlib
import json
import math
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from mcp.server.fastmcp import Context
from pydantic import Field

from common.errors import ErrorKind, InvalidArgument, TrainopsError, Unavailable
from common.settings import Settings
from common.telemetry import PromLabel, PromMetric, counter_total
from common.vocabulary import MAX_LABEL_LENGTH, RFC1123_LABEL, is_label
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
MAX_RESOLUTION = 11_000
"""Points per series Prometheus returns at most for a range query."""
_DURATION = re.compile(r"^\d{1,9}(ms|s|m|h|d)$")

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
    _register_tools(mcp, settings)
    return mcp


@contextlib.contextmanager
def _prometheus_errors(prometheus: Upstream[Any]) -> Iterator[None]:
    import requests
    from prometheus_api_client.exceptions import PrometheusApiClientException

    try:
        yield
    except requests.exceptions.Timeout:
        raise Unavailable(
            f"Prometheus at {prometheus.url} did not answer within {REQUEST_TIMEOUT_S} s; ask "
            "for less (a shorter range, a coarser step, fewer series) or retry"
        ) from None
    except requests.exceptions.RequestException as e:
        raise prometheus.unreachable(e) from None
    except PrometheusApiClientException as e:
        raise _refusal(str(e)) from None


def _refusal(text: str) -> TrainopsError:
    """Prometheus's own answer, by its errorType: bad_data is the caller's to fix (the PromQL,
    or a parameter), timeout and the rest are Prometheus's trouble."""
    body = _error_body(text)
    error_type = str(body.get("errorType", "bad_data"))
    message = " ".join(str(body.get("error", text)).split())[:300]
    if error_type == "timeout":
        return Unavailable(
            f"the query timed out after {REQUEST_TIMEOUT_S} s in Prometheus ({message}); ask "
            "for less: a shorter range, a coarser step, fewer series"
        )
    if error_type == "bad_data":
        if "parse error" in message or "unexpected" in message:
            return InvalidArgument(
                f"Prometheus could not parse the query: {message}; fix the PromQL"
            )
        return InvalidArgument(f"Prometheus refused the request: {message}")
    if error_type == "execution":
        return InvalidArgument(f"Prometheus could not run the query: {message}; ask for less")
    return Unavailable(f"Prometheus failed ({error_type}): {message}")


def _error_body(text: str) -> dict[str, Any]:
    """The JSON body of a refused request, from the client's "HTTP Status Code N (b'...')"."""
    match = re.search(r"\((b'.*'|b\".*\")\)\s*$", text, re.DOTALL)
    try:
        body = json.loads(ast.literal_eval(match.group(1))) if match else {}
    except (ValueError, SyntaxError):
        return {}
    return body if isinstance(body, dict) else {}


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _parse_time(value: str | None, default: datetime) -> datetime:
    if value is None:
        return default
    hint = "use ISO 8601 (2026-11-22T10:00:00Z) or unix seconds"
    try:
        if re.fullmatch(r"\d{1,12}(\.\d{1,9})?", value):
            moment = datetime.fromtimestamp(float(value), UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(f"time {value[:40]!r} is not a time; {hint}") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not EARLIEST <= moment < LATEST:
        raise InvalidArgument(
            f"time {value[:40]!r} is outside {EARLIEST:%Y}-{LATEST:%Y}; {hint}"
        ) from None
    return moment


def instant_result(
    result: Any,
) -> tuple[Literal["vector", "matrix", "scalar", "string"], list[Sample]]:
    """An instant query's result, whatever its type: a vector or a range vector (a list of
    series), or a scalar or string ([time, value])."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        number = _finite(_number(result[1]))
        kind: Literal["scalar", "string"] = "scalar" if _number(result[1]) is not None else "string"
        text = None if number is not None else str(result[1])
        return kind, [Sample(labels={}, value=number, text=text)]
    series = []
    matrix = False
    for item in result or []:
        if "values" in item:
            matrix = True
            raw = item["values"][-1][1] if item["values"] else None
        else:
            raw = item.get("value", [None, None])[1]
        number = _finite(_number(raw))
        text = None if number is not None or raw is None else str(raw)
        series.append(Sample(labels=item.get("metric", {}), value=number, text=text))
    return ("matrix" if matrix else "vector"), series


def _step_seconds(step: str) -> float:
    match = _DURATION.match(step)
    assert match is not None  # the argument's pattern holds
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(step[: -len(match.group(1))]) * units[match.group(1)]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# -- tools ------------------------------------------------------------------------------------


def _register_tools(mcp: TrainopsMCP, settings: Settings) -> None:
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
        params: dict[str, Any] = {"timeout": f"{REQUEST_TIMEOUT_S}s"}
        if time:
            params["time"] = _parse_time(time, datetime.now(UTC)).timestamp()

        def query(client: Any) -> QueryResult:
            kind, series = instant_result(client.custom_query(promql, params=params))
            cut = len(series) > max_series
            notes = []
            if cut:
                notes.append(
                    f"showing {max_series} of {len(series)} series; aggregate "
                    "(e.g. sum by (job_id)) or add label filters to see them all"
                )
            if kind == "matrix":
                notes.append(
                    "a range vector: each series' latest value; prometheus_query_range "
                    "gives the points"
                )
            return QueryResult(
                result_type=kind,
                series=series[:max_series],
                total_series=len(series),
                truncated=cut,
                note="; ".join(notes) or None,
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
        seconds = _step_seconds(step)
        if seconds <= 0:
            raise InvalidArgument(f"step {step!r} must be longer than zero, e.g. 15s")
        if (finish - begin).total_seconds() / seconds > MAX_RESOLUTION:
            raise InvalidArgument(
                f"{step} steps from {begin:%Y-%m-%d %H:%M} to {finish:%Y-%m-%d %H:%M} are more "
                f"than Prometheus' {MAX_RESOLUTION} points per series; use a coarser step"
            )

        def query(client: Any) -> RangeResult:
            result = client.custom_query_range(
                promql,
                start_time=begin,
                end_time=finish,
                step=step,
                params={"timeout": f"{REQUEST_TIMEOUT_S}s"},
            )
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
            float | None,
            Field(
                gt=0,
                description="For CPU utilisation. Default: the pods' CPU requests, where "
                "kube-state-metrics knows them.",
            ),
        ] = None,
        namespace: Annotated[
            str | None,
            Field(
                pattern=RFC1123_LABEL,
                max_length=MAX_LABEL_LENGTH,
                description="The job's namespace on a cluster. Default: the server's "
                "(TRAINOPS_NAMESPACE).",
            ),
        ] = None,
    ) -> JobUtilization:
        """How busy a job's GPUs and CPUs were: mean and p95 GPU utilisation, peak GPU memory,
        mean CPU use (against cpus_requested or the pods' requests), peak memory, and which
        metrics answered: the job's own exporter where it was scraped, else the cluster's
        (DCGM, cAdvisor, kube-state-metrics) for the job's pods in `namespace`.
        no_data=true means Prometheus holds nothing for the job (not an error)."""
        finish = _parse_time(end, datetime.now(UTC))
        begin = _parse_time(start, finish - DEFAULT_WINDOW)
        if finish <= begin:
            raise InvalidArgument("end must be after start")
        series = JobSeries(job_id, namespace or settings.namespace)

        def measure(client: Any) -> JobUtilization:
            return _utilization(client, series, begin, finish, cpus_requested)

        return await upstream(ctx).run(measure)


# -- a job's series ---------------------------------------------------------------------------

OWN_RATE_RANGE = "1m"
"""rate()'s range for the job's own exporter, which Prometheus scrapes every 15 s or faster."""
CLUSTER_RATE_RANGE = "2m"
"""irate()'s range for cAdvisor's counters: it must hold two samples, and kubelets are often
scraped every 30 s to 1 min. irate, not rate: rate divides by its whole range, so it reads a
pod low for a range's length after it starts, and short jobs are common."""
POD_LABELS = (
    ("pod", "namespace", "container"),
    ("exported_pod", "exported_namespace", "exported_container"),
)
"""How a cluster exporter's series name the pod (and container) they measure: `pod`,
`namespace`, `container`; or, when Prometheus scraped the exporter without honor_labels and
gave the target labels of those names (a ServiceMonitor or the scrape annotations do), the
same names with `exported_` before them, while `pod` is the exporter's own pod."""
MIB = 1024 * 1024


@dataclass(frozen=True)
class JobSeries:
    """Selectors of one job's series: its own exporter's (labelled job_id, wherever it ran) and
    the cluster exporters' about its pods (labelled with the pod and its namespace).

    The job id and namespace go into PromQL strings and regexes, so only RFC 1123 labels are
    taken: [a-z0-9-] needs no escaping in either.
    """

    job_id: str
    namespace: str

    def __post_init__(self) -> None:
        for what, value in (("job id", self.job_id), ("namespace", self.namespace)):
            if not is_label(value):
                raise InvalidArgument(
                    f"{what} {value[:80]!r} is not an RFC 1123 label; use lower-case letters, "
                    "digits and '-'"
                )

    def own(self, metric: str) -> list[str]:
        return [f'{metric}{{{PromLabel.JOB_ID}="{self.job_id}"}}']

    def pods(self, metric: str, *matchers: str, containers: bool = False) -> list[str]:
        """`metric` of the job's pods, one selector per way of naming the pod (POD_LABELS);
        `containers` keeps cAdvisor's containers only: not the pod's own cgroup
        (container="", the sum of the others) nor the pause container ("POD").

        Every controller names a job's pods `<job id>-<suffix>`: Job `<id>-x7k2p`, PyTorchJob
        `<id>-master-0` and `<id>-worker-0`, TrainJob `<id>-node-0-0-x7k2p`, RayJob
        `<id>-x7k2p-head-b9sqd`. Prometheus anchors the regex, so job `a` never counts the pods
        of job `ab`. What a name can't tell apart: the pods of a job named `<id>-<more>` by hand
        (generated ids, `<model>-<dataset>-<4 hex>`, are never another one plus '-'). A series
        that carries job_id (a scrape config that copies the pods' trainops.io/job-id label)
        settles it: one of another job is left out.
        """
        ours = f'{PromLabel.JOB_ID}=~"{self.job_id}|"'  # this job's, or unlabelled
        selectors = []
        for pod_label, namespace_label, container_label in POD_LABELS:
            where = [
                f'{namespace_label}="{self.namespace}"',
                f'{pod_label}=~"{self.job_id}-.+"',
                ours,
                *matchers,
            ]
            if containers:
                where += [f'{container_label}!=""', f'{container_label}!="POD"']
            selectors.append(f"{metric}{{{', '.join(where)}}}")
        return selectors


def _any(expressions: Iterable[str]) -> str:
    """One PromQL expression over every way the job's series may be named."""
    return " or ".join(expressions)


def _utilization(
    client: Any, series: JobSeries, start: datetime, end: datetime, cpus_requested: float | None
) -> JobUtilization:
    window = f"{max(1, int((end - start).total_seconds()))}s"
    at = {"time": end.timestamp()}

    def scalar(promql: str) -> float | None:
        result = client.custom_query(promql, params=at)
        return _finite(_number(result[0]["value"][1])) if result else None

    answered: list[str] = []
    # In order of preference: the job's own exporter (NVML where it runs, psutil's process
    # figures), then the cluster's. DCGM's engine-active ratio is the truer "busy" on
    # A100/H100; GPU_UTIL (percent, any kernel running) is what older GPUs have.
    gpu = GpuUsage()
    gpu_sources = [
        (PromMetric.GPU_UTILIZATION, series.own(PromMetric.GPU_UTILIZATION), 1.0),
        (PromMetric.DCGM_GR_ENGINE_ACTIVE, series.pods(PromMetric.DCGM_GR_ENGINE_ACTIVE), 1.0),
        (PromMetric.DCGM_GPU_UTIL, series.pods(PromMetric.DCGM_GPU_UTIL), 0.01),
    ]
    for name, selectors, scale in gpu_sources:
        means = _any(f"avg_over_time({s}[{window}])" for s in selectors)
        mean = scalar(f"avg({means})")
        if mean is None:
            continue
        answered.append(name)
        p95s = _any(f"quantile_over_time(0.95, {s}[{window}])" for s in selectors)
        p95 = scalar(f"max({p95s})")
        gpu = GpuUsage(
            mean_utilization=mean * scale,
            p95_utilization=p95 * scale if p95 is not None else None,
            metric=name,
        )
        break
    memory_sources = [
        (PromMetric.GPU_MEMORY, series.own(PromMetric.GPU_MEMORY), 1.0),
        (PromMetric.DCGM_FB_USED, series.pods(PromMetric.DCGM_FB_USED), float(MIB)),
    ]
    for name, selectors, scale in memory_sources:
        peaks = _any(f"max_over_time({s}[{window}])" for s in selectors)
        if (peak := scalar(f"max({peaks})")) is not None:
            gpu.peak_memory_bytes = peak * scale
            answered.append(name)
            break

    cpu = CpuUsage()
    own_cpu = series.own(PromMetric.PROCESS_CPU)
    pods_cpu = series.pods(PromMetric.CONTAINER_CPU, containers=True)
    cpu_sources = [
        (PromMetric.PROCESS_CPU, _any(f"rate({s}[{OWN_RATE_RANGE}])" for s in own_cpu)),
        (PromMetric.CONTAINER_CPU, _any(f"irate({s}[{CLUSTER_RATE_RANGE}])" for s in pods_cpu)),
    ]
    for name, rates in cpu_sources:
        if (cores := scalar(f"avg_over_time(sum({rates})[{window}:])")) is not None:
            answered.append(name)
            cpu = CpuUsage(mean_cores_used=cores, metric=name)
            break
    requested = cpus_requested
    if requested is None:
        requests = series.pods(PromMetric.KUBE_POD_REQUESTS, 'resource="cpu"')
        requested = scalar(f"max_over_time(sum({_any(requests)})[{window}:])")
        if requested is not None:
            answered.append(PromMetric.KUBE_POD_REQUESTS)
    cpu.cores_requested = requested
    if cpu.mean_cores_used is not None and requested:
        cpu.mean_utilization = cpu.mean_cores_used / requested

    rss: float | None = None
    rss_sources = [
        (PromMetric.PROCESS_RSS, series.own(PromMetric.PROCESS_RSS)),
        (PromMetric.CONTAINER_MEMORY, series.pods(PromMetric.CONTAINER_MEMORY, containers=True)),
    ]
    for name, selectors in rss_sources:
        if (rss := scalar(f"max_over_time(sum({_any(selectors)})[{window}:])")) is not None:
            answered.append(name)
            break

    # Every rank's exporter serves the step counter, so its sample count is the job's.
    steps = series.own(counter_total(PromMetric.TRAIN_STEPS))[0]
    samples = scalar(f"sum(count_over_time({steps}[{window}]))") or 0.0
    no_data = samples == 0 and not answered
    note = None
    if no_data:
        note = (
            f"Prometheus holds no samples for job {series.job_id} between "
            f"{start:%Y-%m-%d %H:%M} and {end:%H:%M} UTC: neither its exporter (no "
            "TRAINOPS_METRICS_PORT?) nor the cluster's (DCGM, cAdvisor) for pods "
            f"{series.job_id}-* in namespace {series.namespace} were scraped, or it ran elsewhere"
        )
    elif gpu.metric is None:
        note = "no GPU metrics for this job (CPU-only, or no NVML/DCGM exporter)"
    return JobUtilization(
        job_id=series.job_id,
        namespace=series.namespace,
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
