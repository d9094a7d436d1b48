"""Sweeps on the cluster backend, over real MCP sessions, against the test API server: a RayJob
that KubeRay's emulation runs on a Ray cluster of its own, its driver (the submitter's pod) a real
`python -m training.tune` with a local Ray, its trials read out of the driver's log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import psutil
import pytest

from common.errors import ErrorKind
from mcp_servers.kubernetes.manifests import JOB_ID_LABEL
from tests.kube_api.fixture import KubeApi, Outcome
from tests.mcp_servers.kubernetes.test_cluster_backend import on_cluster
from tests.mcp_servers.kubernetes.test_server import smoke_spec, wait_until
from tests.mcp_servers.support import call, call_failure
from tests.support import wait_for

pytestmark = pytest.mark.anyio
__all__ = ["on_cluster"]
# A real driver with its own Ray: a minute or two on 2 busy cores; one at a time.
REAL_RAY = pytest.mark.xdist_group("cluster-sweeps")


def sweep_spec(**overrides: Any) -> dict[str, Any]:
    # Half a CPU a trial: the head's one and the submitter's fit beside it on the CPU node.
    return {
        "model": "mlp",
        "dataset": "digits",
        "epochs": 2,
        "smoke_test": True,
        "params": {"lr": {"low": 1e-3, "high": 1e-2, "scale": "log"}},
        "trials": 2,
        "max_concurrent": 1,
        "cpus_per_trial": 0.5,
        "memory_per_trial": "1Gi",
    } | overrides


def pods_of(api: KubeApi, job_id: str) -> list[dict[str, Any]]:
    return [
        p
        for p in api.objects("", "pods")
        if (p["metadata"].get("labels") or {}).get(JOB_ID_LABEL) == job_id
    ]


def processes_of(job_id: str) -> list[psutil.Process]:
    """The sweep's processes on this machine (the driver, its Ray's daemons and trial workers):
    each has the env the head gives the driver."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("TRAINOPS_JOB_ID") == job_id:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.slow
@REAL_RAY
async def test_a_sweep_retried_after_its_driver_failed_runs_its_trials_to_success(
    on_cluster: Callable[..., Any], kube_api: KubeApi, settings_for: Callable[..., Any]
) -> None:
    job_id = "retried-sweep"
    # The first driver fails before it starts the sweep; KubeRay's retry runs it for real.
    kube_api.script(job_id, Outcome.exit_codes([1]), pod=f"{job_id}-?????")
    async with on_cluster() as session:
        spec = sweep_spec(name=job_id, backoff_limit=1)
        created = await call(session, "training_sweeps_create", spec=spec)
        assert (created["kind"], created["backend"], created["created"]) == (
            "RayJob",
            "cluster",
            True,
        )
        done = await wait_until(session, job_id, {"Succeeded"}, timeout=300)
        assert done["restarts"] == 1, done["message"]
        sweep = done["sweep"]
        assert sweep["finished"] and sweep["trials_total"] == 2
        assert sorted(t["name"] for t in sweep["trials"]) == ["trial-0", "trial-1"]
        assert sum(sweep["counts"].values()) == 2 and "errored" not in sweep["counts"]
        assert sweep["best"] is not None and sweep["metric"] == "val_accuracy"
        # The driver's total, of the trials' costs as it rounds them (to 1e-8 USD).
        total = sum(t["cost_usd"] for t in sweep["trials"])
        assert total > 0 and sweep["cost_usd"] == pytest.approx(total, abs=1e-7)
        assert done["progress"]["event"] == "done"
        assert (done["model"], done["dataset"], done["cpus"], done["memory"]) == (
            "mlp",
            "digits",
            0.5,
            "1Gi",
        )
        assert done["replicas"][0]["name"] == "driver"
        assert done["replicas"][0]["phase"] == "Succeeded"

        trial = await call(session, "training_jobs_logs", job_id=job_id, replica="trial-0")
        assert trial["replica"] == "trial-0"
        assert trial["replicas"][0] == "driver" and {"trial-0", "trial-1"} <= set(trial["replicas"])
        assert trial["lines"] and not any('"trial": "trial-1"' in line for line in trial["lines"])
        driver = await call(session, "training_jobs_logs", job_id=job_id, tail_lines=2000)
        assert driver["replica"] == "driver"
        assert any('"event": "done"' in line for line in driver["lines"])
        kind, _ = await call_failure(
            session, "training_jobs_logs", job_id=job_id, replica="trial-0", previous=True
        )
        assert kind == ErrorKind.NOT_FOUND

        events = (await call(session, "training_jobs_events", job_id=job_id))["events"]
        reasons = {e["reason"] for e in events}
        assert {"CreatedRayCluster", "CreatedK8sJob", "CreatedHeadPod"} <= reasons
        listed = await call(session, "training_jobs_list")
        # The submitter is a batch/v1 Job of the sweep's name: not a job of its own.
        assert [(j["job_id"], j["kind"], j["phase"]) for j in listed["jobs"]] == [
            (job_id, "RayJob", "Succeeded")
        ]
        taken = await call_failure(session, "training_jobs_create", spec=smoke_spec(name=job_id))
        assert taken[0] == ErrorKind.CONFLICT

    # What the API server holds (validated against KubeRay's CRD when it was applied).
    body = kube_api.get("ray.io", "rayjobs", job_id)
    assert body is not None
    assert {m["manager"] for m in body["metadata"]["managedFields"]} >= {"trainops"}
    assert body["spec"]["entrypoint"].startswith("python -m training.tune ")
    assert body["spec"]["submissionMode"] == "K8sJobMode"
    assert body["status"]["failed"] == 1 and body["status"]["succeeded"] == 1
    # The driver ran as on the head: its checkpoints on the head's checkpoint volume.
    claim = settings_for().kubernetes.checkpoint_claim
    assert (kube_api.root / "volumes" / "trainops" / claim / job_id).is_dir()


@pytest.mark.slow
@REAL_RAY
async def test_a_cancelled_sweep_leaves_no_ray_cluster_pod_or_process(
    on_cluster: Callable[..., Any], kube_api: KubeApi
) -> None:
    job_id = "cancelled-sweep"
    async with on_cluster() as session:
        spec = sweep_spec(name=job_id, epochs=200, smoke_test=False)
        await call(session, "training_sweeps_create", spec=spec)
        await wait_until(session, job_id, {"Running"}, timeout=120)
        with anyio.fail_after(180):
            status = await call(session, "training_jobs_get", job_id=job_id)
            while not (status["sweep"] or {}).get("counts", {}).get("running"):
                await anyio.sleep(0.5)
                status = await call(session, "training_jobs_get", job_id=job_id)
        cluster = kube_api.get("ray.io", "rayjobs", job_id)["status"]["rayClusterName"]
        assert any("ray" in " ".join(p.cmdline()) for p in processes_of(job_id))

        cancelled = await call(session, "training_jobs_delete", job_id=job_id)
        assert cancelled["phase"] == "Cancelled"
        assert kube_api.get("ray.io", "rayjobs", job_id) is None
        assert kube_api.get("ray.io", "rayclusters", cluster) is None
        assert kube_api.get("batch", "jobs", job_id) is None  # the submitter
        assert pods_of(kube_api, job_id) == [] and kube_api.processes() == []
        wait_for(
            lambda: not processes_of(job_id),
            timeout=30,
            what="the sweep's processes gone",
        )
        again = await call(session, "training_jobs_get", job_id=job_id)
        assert again["phase"] == "Cancelled" and again["kind"] == "RayJob"
        assert again["sweep"]["trials_total"] == 2  # as it stood when it was cancelled


async def test_a_sweep_whose_driver_fails_on_every_attempt_says_why(
    on_cluster: Callable[..., Any], kube_api: KubeApi
) -> None:
    # No Ray runs: the drivers (the submitters' pods, not the Ray nodes') exit at once.
    message = "error: no space left for checkpoints"
    kube_api.script("broken-1", Outcome.exit_code(1, message), pod="broken-1-?????")
    async with on_cluster() as session:
        spec = sweep_spec(name="broken-1", backoff_limit=1)
        await call(session, "training_sweeps_create", spec=spec)
        failed = await wait_until(session, "broken-1", {"Failed"}, timeout=120)
        assert failed["restarts"] == 1  # two attempts, each on a Ray cluster of its own
        assert failed["message"].startswith("Failed (AppFailed): driver exited with code 1")
        assert message in failed["message"]
        assert failed["sweep"] is None  # the driver never started the sweep
        assert kube_api.get("ray.io", "rayjobs", "broken-1")["status"]["failed"] == 2


async def test_a_sweep_past_its_deadline_failed_saying_so_and_is_not_retried(
    on_cluster: Callable[..., Any], kube_api: KubeApi
) -> None:
    kube_api.script("late-1", Outcome.hold())  # a driver that runs on
    async with on_cluster() as session:
        spec = sweep_spec(name="late-1", backoff_limit=2)
        await call(session, "training_sweeps_create", spec=spec)
        running = await wait_until(session, "late-1", {"Running"}, timeout=120)
        # The submitter's pod is the driver; the Ray cluster's pods are replicas too.
        assert [(r["name"], r["type"]) for r in running["replicas"]] == [
            ("driver", "Driver"),
            ("head", "Head"),
            ("worker-0", "Worker"),
        ]
        logs = await call(session, "training_jobs_logs", job_id="late-1")
        assert (logs["replica"], logs["replicas"]) == ("driver", ["driver", "head", "worker-0"])
        # An administrator shortens its deadline: it has passed.
        kube_api.patch("ray.io", "rayjobs", "late-1", {"spec": {"activeDeadlineSeconds": 1}})
        late = await wait_until(session, "late-1", {"Failed"}, timeout=60)
        assert late["restarts"] == 0
        assert "Failed (DeadlineExceeded): the sweep ran past its deadline" in late["message"]
        assert late["conditions"][-1]["type"] == "Failed"
