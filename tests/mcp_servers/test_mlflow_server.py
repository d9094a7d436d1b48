"""The MLflow MCP server over real sessions, checked against MlflowClient on a real server."""

from __future__ import annotations

import math
import os
from pathlib import Path

import anyio
import pytest
from mlflow.entities import Metric

from common.errors import ErrorKind
from common.net import free_port
from mcp_servers.mlflow.server import build_server
from tests.mcp_servers.support import (
    assert_matches_golden,
    call,
    call_error,
    call_failure,
    memory_session,
    server_env,
    stdio_session,
    tool_snapshot,
)

pytestmark = pytest.mark.anyio
# The session's finished job is run once per test process: its tests share one (pytest-xdist).
SHARES_THE_FINISHED_JOB = pytest.mark.xdist_group("finished_job")
MODULE = "mcp_servers.mlflow"


def env_for(tmp_path: Path, url: str) -> dict[str, str]:
    return server_env(tmp_path, MLFLOW_TRACKING_URI=url)


async def test_tool_list_matches_the_golden_snapshot(
    settings_for, tmp_path: Path, mlflow_url: str
) -> None:
    async with memory_session(
        build_server, settings_for(mlflow_tracking_uri=mlflow_url)
    ) as session:
        snapshot = await tool_snapshot(session)
    assert_matches_golden("mlflow_tools", snapshot, update=bool(os.environ.get("UPDATE_GOLDEN")))


@SHARES_THE_FINISHED_JOB
async def test_the_jobs_run_reads_as_mlflow_holds_it(
    tmp_path: Path, mlflow_url: str, mlflow_client, finished_job
) -> None:
    run = mlflow_client.get_run(finished_job.run_id)
    async with stdio_session(MODULE, env_for(tmp_path, mlflow_url)) as session:
        experiments = await call(session, "experiments_list")
        assert "trainops" in [e["name"] for e in experiments["experiments"]]

        page = await call(
            session,
            "runs_search",
            experiment="trainops",
            filter=f"tags.`trainops.job_id` = '{finished_job.job_id}'",
        )
        assert [r["run_id"] for r in page["runs"]] == [finished_job.run_id]
        assert page["runs"][0]["metrics"] == run.data.metrics
        assert page["runs"][0]["tags"]["dataset.used"] == "digits"

        detail = await call(session, "runs_get", run_id=finished_job.run_id)
        assert detail["params"] == run.data.params
        assert detail["status"] == "FINISHED"
        assert detail["duration_s"] == pytest.approx(
            (run.info.end_time - run.info.start_time) / 1000
        )

        history = await call(
            session, "runs_metric_history", run_id=finished_job.run_id, key="val_accuracy"
        )
        expected = mlflow_client.get_metric_history(finished_job.run_id, "val_accuracy")
        assert [(p["step"], p["value"]) for p in history["points"]] == [
            (m.step, m.value) for m in sorted(expected, key=lambda m: m.step)
        ]
        summary = history["summary"]
        assert summary["count"] == 4 and not history["downsampled"]
        assert summary["last"] == run.data.metrics["val_accuracy"]
        assert summary["max"] == max(m.value for m in expected)

        best = await call(session, "runs_best", experiment="trainops", metric="val_accuracy")
        best_expected = max(
            (
                r
                for r in mlflow_client.search_runs([run.info.experiment_id])
                if "val_accuracy" in r.data.metrics
            ),
            key=lambda r: r.data.metrics["val_accuracy"],
        )
        assert best["metrics"]["val_accuracy"] == best_expected.data.metrics["val_accuracy"]


@pytest.mark.parametrize("count", [20_000, pytest.param(100_000, marks=pytest.mark.nightly)])
async def test_a_long_metric_comes_back_within_max_points(
    count: int, settings_for, tmp_path: Path, mlflow_url: str, mlflow_client
) -> None:
    experiment = mlflow_client.create_experiment(f"bounds-{os.getpid()}-{tmp_path.name}")
    run_id = mlflow_client.create_run(experiment).info.run_id
    values = [2.0 * math.exp(-step / (count / 5)) + 0.01 * math.sin(step) for step in range(count)]
    dip = count * 731 // 1000
    values[dip] = 0.0005  # a dip the downsampling must not lose

    def log(start: int) -> None:
        points = [
            Metric("loss", values[i], 1_700_000_000_000 + i, i) for i in range(start, start + 1000)
        ]
        mlflow_client.log_batch(run_id, metrics=points)

    for start in range(0, len(values), 1000):  # MLflow takes 1000 points a batch
        log(start)
    async with memory_session(
        build_server, settings_for(mlflow_tracking_uri=mlflow_url)
    ) as session:
        history = await call(
            session, "runs_metric_history", run_id=run_id, key="loss", max_points=200
        )
    assert len(history["points"]) == 200 and history["downsampled"]
    steps = [p["step"] for p in history["points"]]
    assert steps[0] == 0 and steps[-1] == count - 1 and dip in steps
    summary = history["summary"]
    assert summary["count"] == count
    assert summary["min"] == 0.0005 and summary["min_at"] == dip
    assert summary["first"] == values[0] and summary["last"] == values[-1]
    assert not summary["nonfinite"]


@SHARES_THE_FINISHED_JOB
async def test_compare_cost_log_report_and_register(
    settings_for, tmp_path: Path, mlflow_url: str, mlflow_client, finished_job
) -> None:
    job_run = mlflow_client.get_run(finished_job.run_id)
    other = mlflow_client.create_run(job_run.info.experiment_id, tags={"model": "mlp"})
    mlflow_client.log_param(other.info.run_id, "model", "mlp")
    mlflow_client.log_metric(other.info.run_id, "val_accuracy", 0.01)
    mlflow_client.set_terminated(other.info.run_id)
    breakdown = {
        "cost_usd": 0.42,
        "cost_gpu_usd": 0.0,
        "cost_cpu_usd": 0.4,
        "cost_memory_usd": 0.02,
        "gpu_hours": 0.0,
        "cpu_hours": 8.0,
        "rate_card": "default",
    }
    async with memory_session(
        build_server, settings_for(mlflow_tracking_uri=mlflow_url)
    ) as session:
        comparison = await call(
            session, "runs_compare", run_ids=[finished_job.run_id, other.info.run_id]
        )
        assert comparison["differing_params"]["model"] == {
            finished_job.run_id: "cnn",
            other.info.run_id: "mlp",
        }
        assert comparison["best"]["val_accuracy"] == finished_job.run_id

        first = await call(
            session, "runs_cost_log", run_id=finished_job.run_id, breakdown=breakdown
        )
        second = await call(
            session, "runs_cost_log", run_id=finished_job.run_id, breakdown=breakdown
        )
        assert first == second
        history = mlflow_client.get_metric_history(finished_job.run_id, "cost_usd")
        assert [m.value for m in history] == [0.42]  # the same call twice: the same state
        tags = mlflow_client.get_run(finished_job.run_id).data.tags
        assert tags["trainops.cost.rate_card"] == "default"

        report = await call(session, "costs_report", experiment="trainops", group_by="model")
        runs = mlflow_client.search_runs([job_run.info.experiment_id], max_results=5000)
        priced = [r for r in runs if "cost_usd" in r.data.metrics]
        expected: dict[str, float] = {}
        for r in priced:
            model = r.data.tags.get("model") or r.data.params.get("model", "unknown")
            expected[model] = expected.get(model, 0.0) + r.data.metrics["cost_usd"]
        by_model = {g["key"]: g["cost_usd"] for g in report["groups"]}
        assert by_model == pytest.approx(expected, abs=1e-6)  # the report rounds to 6 places
        assert by_model["cnn"] >= 0.42
        assert report["total_cost_usd"] == pytest.approx(sum(expected.values()), abs=1e-6)
        assert report["runs_with_cost"] == len(priced)
        assert report["runs_without_cost"] == len(runs) - len(priced) >= 1  # the mlp run

        version = await call(
            session,
            "models_register",
            run_id=finished_job.run_id,
            name="trainops-cnn",
            alias="champion",
        )
        registered = mlflow_client.get_model_version_by_alias("trainops-cnn", "champion")
        assert registered.version == version["version"] and registered.run_id == finished_job.run_id
        error = await call_error(session, "models_register", run_id=other.info.run_id, name="x")
        assert "logged no model" in error


async def test_bad_arguments_and_unknown_runs_are_one_line_errors(
    settings_for, tmp_path: Path, mlflow_url: str
) -> None:
    async with memory_session(
        build_server, settings_for(mlflow_tracking_uri=mlflow_url)
    ) as session:
        missing = "0" * 32
        cases = [
            ("runs_get", {"run_id": missing}, ErrorKind.NOT_FOUND, "runs_search lists what"),
            ("runs_get", {"run_id": "not-a-run"}, ErrorKind.INVALID_ARGUMENT, "run_id"),
            ("runs_search", {"max_results": 5000}, ErrorKind.INVALID_ARGUMENT, "max_results"),
            ("runs_search", {"experiment": "nope"}, ErrorKind.NOT_FOUND, "no experiment 'nope'"),
            (
                "runs_search",
                {"filter": "metrics.x >>> 1"},
                ErrorKind.INVALID_ARGUMENT,
                "comparator",
            ),
            ("costs_report", {"since": "last tuesday"}, ErrorKind.INVALID_ARGUMENT, "ISO date"),
            ("costs_report", {"since": "99999999999w"}, ErrorKind.INVALID_ARGUMENT, "ISO date"),
            ("costs_report", {"since": "9999999w"}, ErrorKind.INVALID_ARGUMENT, "at most"),
            ("costs_report", {"since": "0001-01-01"}, ErrorKind.INVALID_ARGUMENT, "between"),
            (
                "runs_cost_log",
                {"run_id": missing, "breakdown": {"cost_usd": "inf"}},
                ErrorKind.INVALID_ARGUMENT,
                "finite",
            ),
            ("no_such_tool", {}, ErrorKind.NOT_FOUND, "unknown tool"),
        ]
        for tool, arguments, kind, text in cases:
            got_kind, error = await call_failure(session, tool, **arguments)
            assert (got_kind, text in error) == (kind, True), (tool, arguments, error)


async def test_unreachable_mlflow_is_a_tool_error_naming_the_url(
    settings_for, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with memory_session(build_server, settings_for(mlflow_tracking_uri=url)) as session:
        with anyio.fail_after(60):  # a guard against hanging, not a speed requirement
            kind, error = await call_failure(session, "experiments_list")
    assert kind == ErrorKind.UNAVAILABLE and url in error and "trainops up" in error


async def test_a_diverged_run_reads_with_its_nan_named_not_as_an_error(
    settings_for, tmp_path: Path, mlflow_url: str, mlflow_client
) -> None:
    """JSON has no NaN: a run whose loss went NaN still reads, with the metric named."""
    experiment = mlflow_client.create_experiment(f"nan-{os.getpid()}-{tmp_path.name}")
    run_id = mlflow_client.create_run(experiment).info.run_id
    losses = [2.0, 1.5, 3.0, float("nan")]
    mlflow_client.log_batch(
        run_id,
        metrics=[Metric("train_loss", v, 1_700_000_000_000 + i, i) for i, v in enumerate(losses)]
        + [Metric("val_accuracy", 0.5, 1_700_000_000_000, 0)],
    )
    async with memory_session(
        build_server, settings_for(mlflow_tracking_uri=mlflow_url)
    ) as session:
        run = await call(session, "runs_get", run_id=run_id)
        page = await call(session, "runs_search", experiment=str(experiment))
        history = await call(session, "runs_metric_history", run_id=run_id, key="train_loss")
    assert run["metrics"] == {"val_accuracy": 0.5}
    assert run["nonfinite_metrics"] == {"train_loss": "nan"}
    assert page["runs"][0]["nonfinite_metrics"] == {"train_loss": "nan"}
    assert [p["value"] for p in history["points"]] == [2.0, 1.5, 3.0, None]
    assert history["summary"]["nonfinite"] and history["summary"]["diverging"]
    assert history["summary"]["min"] == 1.5


async def test_repricing_a_run_makes_the_new_cost_its_latest_value(
    settings_for, tmp_path: Path, mlflow_url: str, mlflow_client
) -> None:
    experiment = mlflow_client.create_experiment(f"reprice-{os.getpid()}-{tmp_path.name}")
    run_id = mlflow_client.create_run(experiment).info.run_id
    async with memory_session(
        build_server, settings_for(mlflow_tracking_uri=mlflow_url)
    ) as session:
        for cost in (1.0, 1.0, 0.5):
            logged = await call(
                session, "runs_cost_log", run_id=run_id, breakdown={"cost_usd": cost}
            )
            assert logged["metrics"]["cost_usd"] == cost
        run = await call(session, "runs_get", run_id=run_id)
    assert (
        run["metrics"]["cost_usd"] == 0.5 == mlflow_client.get_run(run_id).data.metrics["cost_usd"]
    )
    history = mlflow_client.get_metric_history(run_id, "cost_usd")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5)]
    assert mlflow_client.get_run(run_id).data.tags["trainops.cost.usd"] == "0.500000"


async def test_a_text_artifact_reads_back_bounded_and_paths_stay_inside_the_run(
    settings_for, mlflow_url: str, mlflow_client
) -> None:
    experiment = mlflow_client.create_experiment(f"artifacts-{free_port()}")
    run_id = mlflow_client.create_run(experiment).info.run_id
    mlflow_client.log_text(run_id, "line one\nline two\n" * 100, "trainops/notes.txt")
    async with memory_session(
        build_server, settings_for(mlflow_tracking_uri=mlflow_url)
    ) as session:
        whole = await call(session, "runs_artifact_read", run_id=run_id, path="trainops/notes.txt")
        assert whole["text"].startswith("line one\nline two\n") and not whole["truncated"]
        assert whole["size_bytes"] == len("line one\nline two\n" * 100)
        cut = await call(
            session, "runs_artifact_read", run_id=run_id, path="trainops/notes.txt", max_bytes=8
        )
        assert (cut["text"], cut["truncated"]) == ("line one", True)
        for path, kind in [
            ("trainops/missing.txt", ErrorKind.NOT_FOUND),
            ("trainops", ErrorKind.NOT_FOUND),  # a folder is not a text artifact
            ("../../etc/passwd", ErrorKind.INVALID_ARGUMENT),
            ("trainops/../../x", ErrorKind.INVALID_ARGUMENT),
            ("/etc/passwd", ErrorKind.INVALID_ARGUMENT),
        ]:
            got, error = await call_failure(session, "runs_artifact_read", run_id=run_id, path=path)
            assert got == kind, (path, error)
        got, _ = await call_failure(
            session, "runs_artifact_read", run_id="0" * 32, path="trainops/notes.txt"
        )
        assert got == ErrorKind.NOT_FOUND
