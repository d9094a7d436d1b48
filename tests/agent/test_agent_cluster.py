"""The agent end to end on the cluster backend: the same requests as on the local backend, with
the Kubernetes MCP server applying them to the test API server (tests/kube_api), whose kubelet
runs the pods' commands, so the real training code reports to the session's MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from agent.runner import Agent
from tests.agent.conftest import home_settings, trainops
from tests.kube_api.fixture import KubeApi
from tests.support import wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture()
def cluster_home(agent_home: Path, kube_api: KubeApi, stack) -> Path:
    """agent_home with `backend: cluster` and the test API server's kubeconfig in config.yaml."""
    config_file = agent_home / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["backend"] = "cluster"
    # The pods are processes of this machine: they reach its MLflow, not an in-cluster one.
    config["cluster"] = {
        "kubeconfig": str(kube_api.kubeconfig),
        "job_mlflow_tracking_uri": stack.mlflow_url,
    }
    config_file.write_text(yaml.safe_dump(config))
    return agent_home


def jobs_on(api: KubeApi) -> list[str]:
    kinds = [
        ("batch", "jobs"),
        ("kubeflow.org", "pytorchjobs"),
        ("trainer.kubeflow.org", "trainjobs"),
    ]
    return sorted(o["metadata"]["name"] for g, p in kinds for o in api.objects(g, p))


def test_the_seed_request_succeeds_and_is_priced_and_reported_as_locally(
    cluster_home: Path, kube_api: KubeApi, stack
) -> None:
    result = trainops(
        cluster_home,
        "ask",
        "Train a CNN on MNIST with 3 epochs",
        "--yes",
        "--json",
        "--fallback-dataset",
        "digits",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout)
    assert facts["phase"] == "Succeeded", facts
    assert jobs_on(kube_api) == [facts["job_id"]]
    run = MlflowClient(stack.mlflow_url).get_run(facts["mlflow_run_id"])
    for key, value in facts["metrics"].items():
        assert run.data.metrics[key] == value
    assert run.data.tags["dataset.used"] == "digits"  # offline: the fallback, and said so
    assert facts["cost_usd"] > 0 and run.data.metrics["cost_usd"] == facts["cost_usd"]
    assert facts["duration_s"] > 0
    job = kube_api.get("batch", "jobs", facts["job_id"])
    assert (
        job is not None and job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "trainops"
    )


async def test_follow_ups_and_a_cancel_that_leaves_no_pods(
    cluster_home: Path, kube_api: KubeApi
) -> None:
    async with Agent(home_settings(cluster_home), detach=True) as agent:
        launched = await agent.ask("c1", "Train an MLP on digits for 500 epochs")
        job_id = launched.facts["job_id"]
        assert "Launched Job" in launched.answer

        def training() -> bool:
            going = [
                p for p in kube_api.objects("", "pods") if p["status"].get("phase") == "Running"
            ]
            return bool(going)

        wait_for(training, timeout=120, what="the pod running")
        going = await agent.ask("c1", "how is it going?")
        assert going.facts["job_id"] == job_id and going.facts["phase"] in ("Pending", "Running")
        cancelled = await agent.ask("c1", "cancel it")
        assert cancelled.facts["phase"] == "Cancelled"
        assert kube_api.objects("", "pods") == [] and kube_api.processes() == []
        after = await agent.ask("c1", "how is it going?")
        assert after.facts["phase"] == "Cancelled"


def test_a_gpu_job_no_node_will_take_is_explained_from_the_scheduler(
    cluster_home: Path, kube_api: KubeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scheduler's own words are the point here: the servers speak as they do for users.
    monkeypatch.delenv("REWORD_SERVER_MESSAGES", raising=False)
    # The policy pins GPU jobs to a node pool this cluster does not have.
    config_file = cluster_home / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["kubernetes"] = {"gpu_node_selector": {"cloud.google.com/gke-nodepool": "a100-spot"}}
    config_file.write_text(yaml.safe_dump(config))
    result = trainops(
        cluster_home, "ask", "Train a CNN on digits for 2 epochs on 2 GPUs", "--yes", "--json"
    )
    facts = json.loads(result.stdout)
    assert facts["phase"] == "Pending", facts
    assert "0/3 nodes are available" in facts["answer"]
    assert "didn't match Pod's node affinity/selector" in facts["answer"]
    assert "cannot start" in facts["answer"]
    assert facts["cost_usd"] is None  # it never ran on a node: nothing to price
    assert [p["spec"].get("nodeName") for p in kube_api.objects("", "pods")] == [None]


async def test_why_a_job_failed_is_answered_after_its_objects_are_gone(
    cluster_home: Path, kube_api: KubeApi, stack
) -> None:
    async with Agent(home_settings(cluster_home)) as agent:
        failed = await agent.ask("pm", "Train a CNN on MNIST for 1 epoch")  # offline: no MNIST
        assert failed.facts["phase"] == "Failed"
        job_id = failed.facts["job_id"]
        # ttlSecondsAfterFinished passes: the Job and its pods go, as the TTL controller does it.
        job = kube_api.get("batch", "jobs", job_id)
        assert job is not None
        kube_api.registry.delete_object(("batch", "jobs", "trainops", job_id), job, "Background")
        wait_for(lambda: not kube_api.objects("", "pods"), timeout=30, what="the pods to go")

        why = await agent.ask("pm", f"why did {job_id} fail?")
        assert why.facts["job_id"] == job_id
        assert why.facts["findings"][0]["problem"] == "dataset unavailable"
        assert "mnist" in why.facts["findings"][0]["evidence"]
    # The run the post-mortem went to, made for it: the job failed before it reached MLflow.
    runs = MlflowClient(stack.mlflow_url).search_runs(
        [e.experiment_id for e in MlflowClient(stack.mlflow_url).search_experiments()],
        f"tags.`trainops.job_id` = '{job_id}'",
    )
    assert [r.info.status for r in runs] == ["FAILED"]
