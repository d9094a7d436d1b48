"""Sweeps on the local backend through real MCP sessions: a RayJob run by a real local Ray, its
driver killed and resumed, cancelled without a Ray process left, bad sweeps refused."""

from __future__ import annotations

import os
import signal

import psutil
import pytest
import yaml
from mlflow import MlflowClient

from common.errors import ErrorKind
from common.telemetry import ProgressEvent
from mcp_servers.kubernetes.local.processes import REPLICA_MARKER
from mcp_servers.kubernetes.server import build_server
from tests.k8s.manifests import validate
from tests.mcp_servers.kubernetes.test_server import wait_until
from tests.mcp_servers.support import call, call_failure, memory_session
from tests.support import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def sweep_spec(**overrides) -> dict:
    return {
        "model": "mlp",
        "dataset": "digits",
        "epochs": 3,
        "smoke_test": True,
        "params": {"lr": {"low": 1e-3, "high": 1e-1, "scale": "log"}},
        "trials": 3,
        "max_concurrent": 1,
        "cpus_per_trial": 1,
        "memory_per_trial": "1Gi",
    } | overrides


def ray_processes_of(job_id: str) -> list[psutil.Process]:
    """Every process of the job's (the driver, the local Ray's daemons, its trial workers):
    the local backend marks each in its environment."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(REPLICA_MARKER, "").startswith(f"{job_id}/"):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


async def test_a_sweep_renders_a_valid_rayjob_and_bad_sweeps_are_refused(settings_for) -> None:
    async with memory_session(build_server, settings_for()) as session:
        rendered = await call(session, "manifests_render", sweep=sweep_spec(gpus_per_trial=1))
        body = yaml.safe_load(rendered["yaml"])
        assert rendered["kind"] == "RayJob"
        validate(body)  # against the RayJob CRD's schema
        spec = body["spec"]
        assert spec["entrypoint"].startswith("python -m training.tune ")
        assert spec["shutdownAfterJobFinishes"] and spec["backoffLimit"] >= 0
        group = spec["rayClusterSpec"]["workerGroupSpecs"][0]
        worker = group["template"]["spec"]["containers"][0]
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert group["replicas"] == 1
        assert "MLFLOW_TRACKING_URI" in yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"] or (
            settings_for().mlflow_tracking_uri is None
        )
        for bad, words in [
            ({"params": {"lr": {"low": 0.1, "high": 0.001}}}, "inverted"),
            ({"params": {"lr": {"low": 0.1, "high": 0.1}}}, "empty"),
            ({"params": {"momentum": {"values": [0.9]}}}, "not a parameter the trainer has"),
            ({"params": {"lr": {"low": 1e-3, "high": 1e-1}}, "search": "grid"}, "grid"),
            ({"metric": "f1"}, "not a metric a trial reports"),
            ({"trials": -3}, "trials"),
        ]:
            kind, text = await call_failure(
                session, "training_sweeps_create", spec=sweep_spec(**bad)
            )
            assert kind == ErrorKind.INVALID_ARGUMENT and words in text, text
        kind, text = await call_failure(
            session,
            "training_sweeps_create",
            spec=sweep_spec(trials=40, max_concurrent=40, gpus_per_trial=1),
        )
        assert kind == ErrorKind.REFUSED and "run fewer trials at once" in text
        listed = await call(session, "training_jobs_list")
        assert listed["jobs"] == []  # nothing was launched


@pytest.mark.nightly  # minutes of Ray on 2 cores; make test runs the cluster backend's retry
async def test_a_killed_driver_resumes_the_sweep_without_rerunning_finished_trials(
    settings_for, mlflow_url: str
) -> None:
    settings = settings_for(mlflow_tracking_uri=mlflow_url)
    async with memory_session(build_server, settings) as session:
        created = await call(
            session, "training_sweeps_create", spec=sweep_spec(name="resume-sweep", backoff_limit=2)
        )
        job_id = created["job_id"]

        def a_trial_finished() -> bool:
            status = backend_get(settings, job_id)
            sweep = status.sweep
            return sweep is not None and any(
                t.state in ("terminated", "stopped") for t in sweep.trials
            )

        wait_for(a_trial_finished, timeout=240, what="a first trial to end")
        before = backend_get(settings, job_id).sweep
        assert before is not None
        ended = {t.name: t.epochs for t in before.trials if t.state in ("terminated", "stopped")}
        driver = next(
            p for p in ray_processes_of(job_id) if "training.tune" in " ".join(p.cmdline())
        )
        os.kill(driver.pid, signal.SIGKILL)

        done = await wait_until(session, job_id, {"Succeeded"}, timeout=400)
        assert done["restarts"] == 1
        sweep = done["sweep"]
        assert sweep["finished"] and sweep["trials_total"] == 3
        assert sum(sweep["counts"].values()) == 3 and "errored" not in sweep["counts"], sweep
        log = await call(session, "training_jobs_logs", job_id=job_id, tail_lines=2000)
        restart = max(i for i, line in enumerate(log["lines"]) if line.startswith("--- restart"))
        for line in log["lines"][restart:]:
            # A trial that ended before the kill trains no epoch again (Tune may restore it from
            # its last checkpoint, which only reports what it had).
            event = ProgressEvent.from_line(line)
            if event is not None and event.details.get("trial") in ended and event.epoch:
                assert event.epoch >= ended[event.details["trial"]], line

        client = MlflowClient(mlflow_url)
        parents = client.search_runs(
            [client.get_experiment_by_name("trainops").experiment_id],
            filter_string=f"tags.`trainops.job_id` = '{job_id}' and tags.`trainops.kind` = 'sweep'",
        )
        assert len(parents) == 1 and parents[0].info.run_id == done["mlflow_run_id"]
        children = client.search_runs(
            [parents[0].info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{done['mlflow_run_id']}'",
        )
        assert sorted(r.data.tags["trainops.trial"] for r in children) == [
            "trial-0",
            "trial-1",
            "trial-2",
        ]
        total = sum(r.data.metrics["cost_usd"] for r in children)
        assert total == pytest.approx(parents[0].data.metrics["cost_usd"], rel=1e-9)
        assert sweep["cost_usd"] == pytest.approx(total, abs=1e-7)

        trial = await call(session, "training_jobs_logs", job_id=job_id, replica="trial-0")
        assert trial["replica"] == "trial-0" and "trial-0" in trial["replicas"]
        assert trial["lines"] and all("trial-1" not in line for line in trial["lines"])
    wait_for(lambda: not ray_processes_of(job_id), timeout=60, what="the sweep's processes gone")


async def test_a_cancelled_sweep_leaves_no_ray_process(settings_for) -> None:
    async with memory_session(build_server, settings_for()) as session:
        spec = sweep_spec(name="cancel-sweep", epochs=200, trials=2, smoke_test=False)
        job_id = (await call(session, "training_sweeps_create", spec=spec))["job_id"]

        def trial_running() -> bool:
            sweep = backend_get(settings_for(), job_id).sweep
            return sweep is not None and sweep.counts.get("running", 0) >= 1

        wait_for(trial_running, timeout=180, what="a trial running")
        assert any("ray" in " ".join(p.cmdline()) for p in ray_processes_of(job_id))
        cancelled = await call(session, "training_jobs_delete", job_id=job_id)
        assert cancelled["phase"] == "Cancelled"
        assert ray_processes_of(job_id) == []
        again = await call(session, "training_jobs_get", job_id=job_id)
        assert again["phase"] == "Cancelled"


def backend_get(settings, job_id: str):
    from mcp_servers.kubernetes.local.backend import LocalBackend

    return LocalBackend(settings).get(job_id)
