"""The cluster backend against a real cluster: `pytest -m cluster` with KUBECONFIG pointing at it
(for example kind with the Training Operator installed and k8s/overlays/dev applied, and the
trainer image loaded; README "On a cluster" gives the steps). Not run by make test or CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.mcp_servers.kubernetes.test_server import smoke_spec, wait_until
from tests.mcp_servers.support import call, server_env, stdio_session

pytestmark = [pytest.mark.cluster, pytest.mark.anyio]
MODULE = "mcp_servers.kubernetes"


@pytest.fixture()
def cluster_env(tmp_path: Path) -> dict[str, str]:
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    if not Path(kubeconfig.split(os.pathsep)[0]).is_file():
        pytest.skip("no kubeconfig: set KUBECONFIG to the cluster to test against")
    extra = {"TRAINOPS_BACKEND": "cluster", "KUBECONFIG": kubeconfig}
    if uri := os.environ.get("TRAINOPS_CLUSTER__JOB_MLFLOW_TRACKING_URI"):
        extra["TRAINOPS_CLUSTER__JOB_MLFLOW_TRACKING_URI"] = uri
    return server_env(tmp_path, **extra)


async def test_a_job_and_a_pytorchjob_succeed_and_a_cancel_leaves_no_pods(
    cluster_env: dict[str, str],
) -> None:
    async with stdio_session(MODULE, cluster_env) as session:
        capacity = await call(session, "cluster_capacity")
        assert capacity["backend"] == "cluster" and capacity["nodes"]

        job = await call(session, "training_jobs_create", spec=smoke_spec())
        pytorch = await call(session, "training_jobs_create", spec=smoke_spec(nodes=2))
        done = await wait_until(session, job["job_id"], {"Succeeded"}, timeout=900)
        assert done["progress"]["event"] == "done"
        ddp = await wait_until(session, pytorch["job_id"], {"Succeeded"}, timeout=900)
        assert [r["name"] for r in ddp["replicas"]] == ["master-0", "worker-0"]
        logs = await call(session, "training_jobs_logs", job_id=job["job_id"], tail_lines=5)
        assert logs["lines"]
        events = await call(session, "training_jobs_events", job_id=job["job_id"])
        assert any(e["reason"] == "Completed" for e in events["events"])

        long = await call(session, "training_jobs_create", spec=smoke_spec(epochs=500))
        await wait_until(session, long["job_id"], {"Running"}, timeout=600)
        cancelled = await call(session, "training_jobs_delete", job_id=long["job_id"])
        assert cancelled["phase"] == "Cancelled"
        again = await call(session, "training_jobs_get", job_id=long["job_id"])
        assert again["phase"] == "Cancelled"
