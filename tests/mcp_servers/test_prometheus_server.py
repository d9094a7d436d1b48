"""The Prometheus MCP server over real sessions, checked against raw PromQL on a real Prometheus."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from common.errors import ErrorKind
from common.net import free_port
from mcp_servers.prometheus.server import build_server
from tests.mcp_servers.support import (
    assert_matches_golden,
    call,
    call_failure,
    http_session,
    memory_session,
    server_env,
    stdio_session,
    tool_snapshot,
)
from tests.mcp_servers.support import (
    start_http_server as start_mcp_http_server,
)
from tests.support import promql, register_scrape_target, wait_for

pytestmark = pytest.mark.anyio
# The session's finished job is run once per test process: its tests share one (pytest-xdist).
SHARES_THE_FINISHED_JOB = pytest.mark.xdist_group("finished_job")
MODULE = "mcp_servers.prometheus"


def env_for(tmp_path: Path, url: str) -> dict[str, str]:
    return server_env(tmp_path, TRAINOPS_PROMETHEUS_URL=url)


def window(finished_job) -> dict[str, str]:
    status = finished_job.status
    return {
        "start": (status.created_at - timedelta(minutes=1)).isoformat(),
        "end": (status.completion_time + timedelta(minutes=1)).isoformat(),
    }


async def test_tool_list_matches_the_golden_snapshot(settings_for, tmp_path: Path, stack) -> None:
    async with memory_session(
        build_server, settings_for(prometheus_url=stack.prometheus_url)
    ) as session:
        snapshot = await tool_snapshot(session)
    assert_matches_golden(
        "prometheus_tools", snapshot, update=bool(os.environ.get("UPDATE_GOLDEN"))
    )


@SHARES_THE_FINISHED_JOB
async def test_job_utilization_matches_raw_promql(tmp_path: Path, stack, finished_job) -> None:
    span = window(finished_job)
    async with stdio_session(MODULE, env_for(tmp_path, stack.prometheus_url)) as session:
        usage = await call(
            session, "jobs_utilization", job_id=finished_job.job_id, cpus_requested=2, **span
        )
        assert not usage["no_data"] and usage["samples"] > 0
        assert "process_cpu_seconds_total" in usage["metrics_answered"]
        assert usage["gpu"]["metric"] is None and "no GPU metrics" in usage["note"]

        end = usage["end"]
        seconds = int((anyio_time(usage["end"]) - anyio_time(usage["start"])).total_seconds())
        raw = promql(
            stack.prometheus_url,
            f'avg_over_time(sum(rate(process_cpu_seconds_total{{job_id="{finished_job.job_id}"}}[1m]))'
            f"[{seconds}s:])",
            time=end,
        )
        cores = float(raw[0]["value"][1])
        assert usage["cpu"]["mean_cores_used"] == pytest.approx(cores)
        assert usage["cpu"]["mean_utilization"] == pytest.approx(cores / 2)
        assert usage["peak_rss_bytes"] > 10_000_000  # a torch process

        # The job is over (its series went stale), so ask for the peak over the window.
        selector = f'trainops_train_steps_total{{job_id="{finished_job.job_id}"}}'
        steps_query = f"max_over_time({selector}[{seconds}s])"
        steps = await call(session, "prometheus_query", promql=steps_query, time=end)
        expected = promql(stack.prometheus_url, steps_query, time=end)
        assert sorted(s["value"] for s in steps["series"]) == sorted(
            float(r["value"][1]) for r in expected
        )
        assert {s["labels"]["replica"] for s in steps["series"]} == {"master-0", "worker-0"}
        assert all(s["value"] > 0 for s in steps["series"])

        ranged = await call(
            session,
            "prometheus_query_range",
            promql=f'trainops_train_loss{{job_id="{finished_job.job_id}"}}',
            step="1s",
            max_points=5,
            **span,
        )
        assert ranged["total_series"] == 2
        assert all(len(s["points"]) <= 5 for s in ranged["series"])

        names = await call(session, "metrics_list", match="trainops_train_")
        assert {"trainops_train_steps_total", "trainops_train_loss"} <= set(names["names"])

        nothing = await call(session, "jobs_utilization", job_id="never-ran-0000", **span)
        assert nothing["no_data"] and nothing["samples"] == 0 and "no samples" in nothing["note"]


def anyio_time(value: str):
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture()
def wide_exporter(stack) -> Iterator[int]:
    """The port of an exporter of 10,000 series, scraped by the stack's Prometheus."""
    registry = CollectorRegistry()
    gauge = Gauge("trainops_test_wide", "10k series", ["shard"], registry=registry)
    for i in range(10_000):
        gauge.labels(shard=str(i)).set(i)
    port = free_port()
    server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
    target = register_scrape_target(stack.targets_dir, f"wide-{port}", [port])
    try:
        wait_for(
            lambda: (
                promql(stack.prometheus_url, "count(trainops_test_wide)")
                and float(promql(stack.prometheus_url, "count(trainops_test_wide)")[0]["value"][1])
                == 10_000
            ),
            timeout=60,
            what="10,000 series in Prometheus",
        )
        yield port
    finally:
        target.unlink()
        server.shutdown()


async def test_a_10000_series_result_is_cut_with_a_note(
    settings_for, tmp_path: Path, stack, wide_exporter
) -> None:
    async with memory_session(
        build_server, settings_for(prometheus_url=stack.prometheus_url)
    ) as session:
        result = await call(session, "prometheus_query", promql="trainops_test_wide", max_series=25)
        targets = await call(session, "targets_list")
    assert len(result["series"]) == 25 and result["total_series"] == 10_000
    assert result["truncated"] and "showing 25 of 10000 series" in result["note"]
    # Under load a later scrape of 10k series may time out: the target is listed either way,
    # and a down one says why.
    (wide,) = [t for t in targets["targets"] if t["instance"].endswith(f":{wide_exporter}")]
    assert wide["health"] == "up" or wide["last_error"]


async def test_bad_promql_and_a_down_prometheus_are_tool_errors(
    settings_for, tmp_path: Path, stack
) -> None:
    async with memory_session(
        build_server, settings_for(prometheus_url=stack.prometheus_url)
    ) as session:
        kind, error = await call_failure(session, "prometheus_query", promql="sum(rate(")
        assert kind == ErrorKind.INVALID_ARGUMENT and "fix the PromQL" in error
        kind, error = await call_failure(
            session, "prometheus_query", promql="up", time="yesterday-ish"
        )
        assert kind == ErrorKind.INVALID_ARGUMENT and "use ISO 8601" in error
    url = f"http://127.0.0.1:{free_port()}"
    async with memory_session(build_server, settings_for(prometheus_url=url)) as session:
        with anyio.fail_after(60):  # a guard against hanging, not a speed requirement
            kind, error = await call_failure(session, "jobs_utilization", job_id="cnn-mnist-0000")
    assert kind == ErrorKind.UNAVAILABLE and url in error and "trainops up" in error


async def test_one_session_over_streamable_http(tmp_path: Path, stack) -> None:
    service, url = start_mcp_http_server(
        MODULE, env_for(tmp_path, stack.prometheus_url), tmp_path / "server.log"
    )
    try:
        async with http_session(url) as session:
            up = await call(session, "prometheus_query", promql="up")
            assert up["total_series"] >= 0 and up["result_type"] == "vector"
    finally:
        service.stop()


async def test_queries_of_every_result_type_and_absurd_times_read_as_they_should(
    settings_for, stack
) -> None:
    async with memory_session(
        build_server, settings_for(prometheus_url=stack.prometheus_url)
    ) as session:
        scalar = await call(session, "prometheus_query", promql="time()")
        assert scalar["result_type"] == "scalar" and scalar["series"][0]["value"] > 1.7e9
        also = await call(session, "prometheus_query", promql="scalar(vector(2))")
        assert also["series"][0]["value"] == 2
        string = await call(session, "prometheus_query", promql='"hello"')
        assert string["result_type"] == "string" and string["series"][0]["text"] == "hello"
        nan = await call(session, "prometheus_query", promql="vector(0) / 0")
        assert nan["series"][0]["value"] is None and nan["series"][0]["text"] == "NaN"
        ranged = await call(session, "prometheus_query", promql="up[5m]")
        assert ranged["result_type"] in ("matrix", "vector")
        for time in ("9" * 400, "0001-01-01T00:00:00Z", "1e30", "yesterday-ish", "-5"):
            kind, error = await call_failure(session, "prometheus_query", promql="up", time=time)
            assert kind == ErrorKind.INVALID_ARGUMENT and "time" in error, (time, error)
            assert "PromQL" not in error
        kind, error = await call_failure(
            session,
            "prometheus_query_range",
            promql="up",
            start="2026-01-01T00:00:00Z",
            end="2026-12-01T00:00:00Z",
            step="1s",
        )
        assert kind == ErrorKind.INVALID_ARGUMENT and "coarser step" in error
        kind, error = await call_failure(
            session, "prometheus_query_range", promql="up", start="1", end="100", step="0s"
        )
        assert kind == ErrorKind.INVALID_ARGUMENT and "longer than zero" in error
