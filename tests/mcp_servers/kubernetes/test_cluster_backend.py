"""The Kubernetes MCP server's cluster backend, over real MCP sessions and the real kubernetes
client, against the test API server of tests/kube_api (schemas validated, controllers and a
kubelet that runs the pods' commands as processes, or scripted faults)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from common.errors import ErrorKind, NotFound
from mcp_servers.kubernetes.schemas import POST_MORTEM_ARTIFACT, PostMortem
from mcp_servers.kubernetes.server import build_server
from tests.kube_api.fixture import KubeApi, Outcome
from tests.kube_api.rbac import Rbac
from tests.mcp_servers.kubernetes.test_server import smoke_spec, wait_until
from tests.mcp_servers.support import (
    call,
    call_failure,
    memory_session,
    server_env,
    stdio_session,
)
from tests.support import REPO
from training.errors import CONFIG_ERROR_EXIT

pytestmark = pytest.mark.anyio
MODULE = "mcp_servers.kubernetes"
ROLE = REPO / "k8s" / "base" / "rbac.yaml"


def cluster_env(home: Path, api: KubeApi, mlflow_url: str | None = None) -> dict[str, str]:
    extra = {"TRAINOPS_BACKEND": "cluster", "KUBECONFIG": str(api.kubeconfig)}
    if mlflow_url:  # the pods are processes here: they reach this machine's MLflow
        extra |= {"MLFLOW_TRACKING_URI": mlflow_url}
        extra |= {"TRAINOPS_CLUSTER__JOB_MLFLOW_TRACKING_URI": mlflow_url}
    return server_env(home, **extra)


@pytest.fixture()
def on_cluster(settings_for, kube_api: KubeApi) -> Callable[..., Any]:
    """A session to an in-process server whose backend is the test API server."""

    def session(api: KubeApi = kube_api, **overrides: Any) -> Any:
        cluster = {"kubeconfig": api.kubeconfig} | overrides.pop("cluster", {})
        settings = settings_for(backend="cluster", cluster=cluster, **overrides)
        return memory_session(build_server, settings)

    return session


def role_rules() -> tuple[list[dict], list[dict]]:
    """The rules of k8s/base's Role and ClusterRole for the server."""
    documents = [d for d in yaml.safe_load_all(ROLE.read_text()) if d]
    role = [r for d in documents if d["kind"] == "Role" for r in d["rules"]]
    cluster_role = [r for d in documents if d["kind"] == "ClusterRole" for r in d["rules"]]
    return role, cluster_role


def pods_of(api: KubeApi, job_id: str) -> list[dict]:
    return [p for p in api.objects("", "pods") if p["metadata"]["name"].startswith(f"{job_id}-")]


async def test_a_job_runs_on_the_cluster_to_success_with_what_the_local_backend_reports(
    kube_api: KubeApi, tmp_path: Path, mlflow_url: str, mlflow_client
) -> None:
    env = cluster_env(tmp_path / "home", kube_api, mlflow_url)
    async with stdio_session(MODULE, env) as session:
        spec = smoke_spec(idempotency_key="seed-1")
        created = await call(session, "training_jobs_create", spec=spec)
        assert (created["backend"], created["kind"], created["created"]) == ("cluster", "Job", True)
        job_id = created["job_id"]
        again = await call(session, "training_jobs_create", spec=spec)  # a retry: the same job
        assert (again["job_id"], again["created"]) == (job_id, False)

        done = await wait_until(session, job_id, {"Succeeded"}, timeout=120)
        assert done["message"].startswith("Succeeded in")
        assert done["replicas"] == [
            {
                "name": "trainer-0",
                "type": "Trainer",
                "index": 0,
                "phase": "Succeeded",
                "restarts": 0,
                "exit_code": 0,
                "reason": "Completed",
            }
        ]
        assert done["progress"]["event"] == "done" and done["mlflow_run_id"]
        assert (done["model"], done["dataset"], done["epochs"]) == ("cnn", "digits", 2)
        assert done["start_time"] and done["completion_time"]

        logs = await call(session, "training_jobs_logs", job_id=job_id, contains='"event": "epoch"')
        assert len(logs["lines"]) == 2 and logs["replicas"] == ["trainer-0"]
        events = (await call(session, "training_jobs_events", job_id=job_id))["events"]
        reasons = [e["reason"] for e in events]
        assert {"SuccessfulCreate", "Scheduled", "Started", "Completed"} <= set(reasons)
        listed = await call(session, "training_jobs_list", phase="Succeeded")
        assert [j["job_id"] for j in listed["jobs"]] == [job_id]
        capacity = await call(session, "cluster_capacity")
        assert [n["name"] for n in capacity["nodes"]] == ["node-cpu-0", "node-gpu-0", "node-gpu-1"]
        assert capacity["nodes"][1]["gpu_type"] == "NVIDIA-A100-SXM4-80GB"

        taken = await call_failure(session, "training_jobs_create", spec=smoke_spec(name=job_id))
        assert taken[0] == ErrorKind.CONFLICT

    # What the API server holds: applied by trainops, with the key as a selectable label.
    job = kube_api.get("batch", "jobs", job_id)
    assert job is not None
    assert {m["manager"] for m in job["metadata"]["managedFields"]} >= {"trainops"}
    assert job["metadata"]["annotations"]["trainops.io/idempotency-key"] == "seed-1"
    run = mlflow_client.get_run(done["mlflow_run_id"])
    assert run.data.tags["trainops.job_id"] == job_id
    local = mlflow_client.download_artifacts(run.info.run_id, POST_MORTEM_ARTIFACT, str(tmp_path))
    post_mortem = PostMortem.model_validate_json(Path(local).read_text())
    assert post_mortem.status.phase == "Succeeded"
    assert any('"event": "done"' in line for line in post_mortem.logs["trainer-0"])


async def test_pytorchjob_and_trainjob_run_their_replicas_to_success(
    on_cluster, kube_api: KubeApi
) -> None:
    async with on_cluster() as session:
        pytorch = await call(session, "training_jobs_create", spec=smoke_spec(nodes=2))
        train = await call(
            session, "training_jobs_create", spec=smoke_spec(nodes=2, kind="TrainJob")
        )
        assert (pytorch["kind"], train["kind"]) == ("PyTorchJob", "TrainJob")
        done = await wait_until(session, pytorch["job_id"], {"Succeeded"}, timeout=180)
        # cleanPodPolicy Running: a worker still finishing when the master succeeded is removed.
        assert [r["name"] for r in done["replicas"]][:1] == ["master-0"]
        assert done["progress"]["event"] == "done"
        trained = await wait_until(session, train["job_id"], {"Succeeded"}, timeout=180)
        assert [r["name"] for r in trained["replicas"]] == ["node-0", "node-1"]
        worker = await call(session, "training_jobs_logs", job_id=train["job_id"], replica="node-1")
        assert worker["replica"] == "node-1" and worker["replicas"] == ["node-0", "node-1"]


async def test_a_gpu_request_no_node_can_hold_is_unschedulable_from_the_schedulers_event(
    on_cluster, kube_api: KubeApi
) -> None:
    # The nodes have 8 GPUs each; 12 on one pod never fits.
    async with on_cluster() as session:
        spec = smoke_spec(gpus_per_node=12, batch_size=48)
        job_id = (await call(session, "training_jobs_create", spec=spec))["job_id"]
        started = time.monotonic()
        status = await call(session, "training_jobs_wait", job_id=job_id, timeout_s=60)
        assert time.monotonic() - started < 30  # woke when the scheduler gave up, not at 60 s
        assert status["phase"] == "Pending"
        assert status["conditions"][-1]["reason"] == "Unschedulable"
        assert "Insufficient nvidia.com/gpu" in status["message"]
        events = (await call(session, "training_jobs_events", job_id=job_id))["events"]
        assert any(e["reason"] == "FailedScheduling" for e in events)
        # Busy, not too big: waiting, not unschedulable for good.
        kube_api.script("gpu-hog-*", Outcome.hold())
        hog = smoke_spec(name="gpu-hog-1", gpus_per_node=8, batch_size=64, nodes=2)
        await call(session, "training_jobs_create", spec=hog)
        held = await wait_until(session, "gpu-hog-1", {"Running"}, timeout=60)
        # Priced by what it runs on: the GPU product of its nodes.
        assert held["gpu_product"] == "NVIDIA-A100-SXM4-80GB"
        wanted = smoke_spec(name="wants-gpus", gpus_per_node=4, batch_size=64)
        await call(session, "training_jobs_create", spec=wanted)
        with anyio.fail_after(60):
            waiting = await call(session, "training_jobs_get", job_id="wants-gpus")
            while "nodes are available" not in waiting["message"]:
                await anyio.sleep(0.3)
                waiting = await call(session, "training_jobs_get", job_id="wants-gpus")
        assert waiting["phase"] == "Pending"
        assert not any(c["reason"] == "Unschedulable" for c in waiting["conditions"])
        for job in (job_id, "gpu-hog-1", "wants-gpus"):
            await call(session, "training_jobs_delete", job_id=job)


async def test_the_kubelets_reasons_reach_the_status(on_cluster, kube_api: KubeApi) -> None:
    kube_api.script("pull-*", Outcome.image_pull_backoff())
    kube_api.script("oom-*", Outcome.oom_killed(at_epoch=1))
    kube_api.script("flaky-*", Outcome.exit_codes([1, 1]))
    kube_api.script("bad-*", Outcome.exit_code(CONFIG_ERROR_EXIT, "error: --lr is not a number"))
    async with on_cluster() as session:
        for name, extra in [
            ("pull-1", {}),
            ("oom-1", {"backoff_limit": 0, "epochs": 3}),
            ("flaky-1", {"backoff_limit": 2}),
            ("bad-1", {"backoff_limit": 3}),
        ]:
            await call(session, "training_jobs_create", spec=smoke_spec(name=name, **extra))

        with anyio.fail_after(60):
            pulling = await call(session, "training_jobs_get", job_id="pull-1")
            while "ImagePullBackOff" not in str(pulling["replicas"]):
                await anyio.sleep(0.3)
                pulling = await call(session, "training_jobs_get", job_id="pull-1")
        assert pulling["phase"] == "Pending" and "Back-off pulling image" in pulling["message"]

        oom = await wait_until(session, "oom-1", {"Failed"}, timeout=120)
        assert oom["replicas"][0]["reason"] == "OOMKilled"
        assert "OOMKilled" in oom["message"] and "more memory" in oom["message"]

        flaky = await wait_until(session, "flaky-1", {"Succeeded"}, timeout=120)
        assert flaky["restarts"] == 2

        bad = await wait_until(session, "bad-1", {"Failed"}, timeout=60)
        assert bad["restarts"] == 0  # podFailurePolicy: no retry burnt on bad flags
        assert "PodFailurePolicy" in bad["message"] and "--lr is not a number" in bad["message"]
        await call(session, "training_jobs_delete", job_id="pull-1")


async def test_a_restarted_container_shows_its_previous_log(on_cluster, kube_api_factory) -> None:
    # A back-off long enough to read the container while it waits to restart.
    api = kube_api_factory(restart_backoff_s=2.0)
    api.script("loop-*", Outcome.exit_codes([1] * 10))
    api.script("steady-*", Outcome.hold())
    async with on_cluster(api) as session:
        await call(session, "training_jobs_create", spec=smoke_spec(name="steady-1", nodes=2))
        await wait_until(session, "steady-1", {"Running"}, timeout=60)
        kind, _ = await call_failure(
            session, "training_jobs_logs", job_id="steady-1", replica="worker-0", previous=True
        )
        assert kind == ErrorKind.NOT_FOUND  # never restarted: no previous container
        await call(session, "training_jobs_delete", job_id="steady-1")

        spec = smoke_spec(name="loop-1", nodes=2, backoff_limit=10)
        await call(session, "training_jobs_create", spec=spec)
        with anyio.fail_after(60):
            while (await call(session, "training_jobs_get", job_id="loop-1"))["restarts"] < 2:
                await anyio.sleep(0.2)
        logs = await call(
            session, "training_jobs_logs", job_id="loop-1", replica="worker-0", previous=True
        )
        assert logs["previous"] and logs["replica"] == "worker-0"
        assert any("simulated failure" in line for line in logs["lines"])
        status = await call(session, "training_jobs_get", job_id="loop-1")
        assert status["restarts"] >= 1
        await call(session, "training_jobs_delete", job_id="loop-1")


async def test_cancel_leaves_no_pods_and_the_job_reads_cancelled(
    on_cluster, kube_api: KubeApi
) -> None:
    kube_api.script("held-*", Outcome.hold())
    async with on_cluster() as session:
        await call(session, "training_jobs_create", spec=smoke_spec(name="held-1", nodes=2))
        await wait_until(session, "held-1", {"Running"}, timeout=60)
        assert kube_api.processes()
        cancelled = await call(session, "training_jobs_delete", job_id="held-1")
        assert cancelled["phase"] == "Cancelled"
        assert pods_of(kube_api, "held-1") == [] and kube_api.processes() == []
        assert kube_api.get("kubeflow.org", "pytorchjobs", "held-1") is None
        again = await call(session, "training_jobs_get", job_id="held-1")
        assert again["phase"] == "Cancelled"
        assert (await call(session, "training_jobs_delete", job_id="held-1"))[
            "phase"
        ] == "Cancelled"
        listed = await call(session, "training_jobs_list")
        assert [(j["job_id"], j["phase"]) for j in listed["jobs"]] == [("held-1", "Cancelled")]
        taken = await call_failure(session, "training_jobs_create", spec=smoke_spec(name="held-1"))
        assert taken[0] == ErrorKind.CONFLICT

    # A job trainops did not make is never touched.
    foreign = kube_api.seed(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "someone-elses", "namespace": "trainops"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox", "command": ["true"]}],
                    }
                }
            },
        }
    )
    assert foreign
    async with on_cluster() as session:
        kind, error = await call_failure(session, "training_jobs_delete", job_id="someone-elses")
        assert kind == ErrorKind.REFUSED and "not managed by trainops" in error
    assert kube_api.get("batch", "jobs", "someone-elses") is not None


async def test_wait_follows_the_watch_through_drops_410s_and_an_outage(
    on_cluster, kube_api: KubeApi
) -> None:
    kube_api.script("slow-*", Outcome.hold())
    async with on_cluster() as session:
        await call(session, "training_jobs_create", spec=smoke_spec(name="slow-1"))
        await wait_until(session, "slow-1", {"Running"}, timeout=60)

        async def change_later() -> None:
            await anyio.sleep(1.0)
            kube_api.drop_watches()
            kube_api.compact()  # the watch resumes from a resourceVersion now too old: 410
            await anyio.sleep(0.5)
            kube_api.down()
            await anyio.sleep(1.5)
            kube_api.up()
            await anyio.sleep(0.5)
            kube_api.patch("batch", "jobs", "slow-1", {"spec": {"suspend": True}})  # a change

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            group.start_soon(change_later)
            status = await call(session, "training_jobs_wait", job_id="slow-1", timeout_s=60)
        # It woke on the change, not at the timeout.
        assert time.monotonic() - started < 45, status
        assert status["phase"] == "Pending" and "suspended" in status["message"]
        await call(session, "training_jobs_delete", job_id="slow-1")


async def test_api_failures_are_one_line_errors_of_their_kind_and_create_nothing(
    on_cluster, kube_api_factory, kube_api: KubeApi
) -> None:
    async with on_cluster() as session:
        kube_api.fail_next("PATCH", r"/jobs/", 409)
        kind, _ = await call_failure(session, "training_jobs_create", spec=smoke_spec(name="c-1"))
        assert kind == ErrorKind.CONFLICT
        kube_api.fail_next("PATCH", r"/jobs/", 422, "Invalid")
        kind, _ = await call_failure(session, "training_jobs_create", spec=smoke_spec(name="c-2"))
        assert kind == ErrorKind.INVALID_ARGUMENT
        kube_api.fail_next("GET", r"/pods", 401)
        kind, error = await call_failure(session, "cluster_capacity")
        assert kind == ErrorKind.UNAVAILABLE and "401" in error
        kind, _ = await call_failure(session, "training_jobs_get", job_id="no-such-job")
        assert kind == ErrorKind.NOT_FOUND
        assert kube_api.objects("batch", "jobs") == []

    # RBAC that lacks a verb: a 403 names the verb, resource and namespace.
    role, cluster_role = role_rules()
    for rule in role:
        if rule["apiGroups"] == ["batch"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "patch"]
    narrow = kube_api_factory(rbac=Rbac.from_rules(role, cluster_role))
    async with on_cluster(narrow) as session:
        kind, error = await call_failure(session, "training_jobs_create", spec=smoke_spec())
        assert kind == ErrorKind.REFUSED
        assert "patch jobs.batch in namespace trainops" in error and "rbac.yaml" in error

    # A kind whose operator is not installed names the operator.
    bare = kube_api_factory(crds=("kubeflow.org",))
    async with on_cluster(bare) as session:
        kind, error = await call_failure(
            session, "training_jobs_create", spec=smoke_spec(kind="TrainJob")
        )
        assert kind == ErrorKind.UNAVAILABLE and "Kubeflow Trainer" in error

    # A slow API server: bounded, not a hang.
    kube_api.latency(3.0)
    async with on_cluster(cluster={"request_timeout_s": 1.0}) as session:
        started = time.monotonic()
        kind, error = await call_failure(session, "training_jobs_list")
        assert kind == ErrorKind.UNAVAILABLE
        assert time.monotonic() - started < 30
    kube_api.latency(0)


def test_the_role_grants_exactly_what_the_backend_uses(kube_api: KubeApi, settings_for) -> None:
    """Every (verb, resource) the backend sends, against k8s/base's Role and ClusterRole."""
    from mcp_servers.kubernetes.cluster.backend import ClusterBackend
    from mcp_servers.kubernetes.manifests import RenderContext, new_job_id, render, render_sweep
    from mcp_servers.kubernetes.schemas import SweepSpec, TrainingJobSpec

    kube_api.script("*", Outcome.hold())
    settings = settings_for(backend="cluster", cluster={"kubeconfig": kube_api.kubeconfig})
    backend = ClusterBackend(settings)
    context = RenderContext(settings.kubernetes)
    ids = []
    for kind, nodes in [("Job", 1), ("PyTorchJob", 2), ("TrainJob", 2)]:
        spec = TrainingJobSpec(
            model="mlp", dataset="digits", epochs=1, smoke_test=True, nodes=nodes, kind=kind
        )
        manifest = render(spec, new_job_id(spec), "trainops", context)
        backend.create(manifest, spec)
        ids.append(manifest.job_id)
    sweep = SweepSpec(
        model="mlp",
        dataset="digits",
        params={"lr": {"low": 1e-3, "high": 1e-2}},
        trials=1,
        cpus_per_trial=0.5,
        smoke_test=True,
    )
    manifest = render_sweep(sweep, new_job_id(sweep), "trainops", context)
    backend.create(manifest, sweep)
    ids.append(manifest.job_id)
    for job_id in ids:
        # The CPU node holds two of them at most: the others stay Pending, watched till then.
        anyio.run(backend.wait, job_id, 5.0, "Pending")
        anyio.run(backend.wait, job_id, 1.0, "Running")  # no change: the watches run
        backend.events(job_id, 10)
        backend.logs(job_id, None, 10, None)
        with contextlib.suppress(NotFound):  # never restarted
            backend.logs(job_id, None, 10, None, previous=True)
    backend.list(None, 10)
    backend.capacity()
    for job_id in ids:
        assert anyio.run(backend.delete, job_id).phase == "Cancelled"

    used = set()
    for r in kube_api.requests:
        if r.code >= 400 or r.resource is None:  # None: discovery, which every user may read
            continue
        used.add((r.verb, r.api_group, r.resource))
        if r.verb == "patch" and r.code == 201:  # server-side apply that created the object
            used.add(("create", r.api_group, r.resource))
    granted = set()
    for rule in [rule for rules in role_rules() for rule in rules]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted |= {(verb, group, resource) for verb in rule["verbs"]}
    assert used - granted == set(), "the backend uses what the Role does not grant"
    assert granted - used == set(), "the Role grants what the backend never uses"
