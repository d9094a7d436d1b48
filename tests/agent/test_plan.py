"""plan: a Request becomes a job spec; GPUs split over nodes as asked, the batch fits the ranks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.capacity import never_fits
from agent.context import AgentContext
from agent.nodes.plan import PlanRefused, ask_back, job_spec
from agent.request import Request
from common.settings import load_settings
from mcp_servers.kubernetes.schemas import (
    Capacity,
    NodeCapacity,
    ResourceAmounts,
    TrainingJobSpec,
)


@pytest.fixture()
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AgentContext:
    monkeypatch.setenv("TRAINOPS_HOME", str(tmp_path))
    return AgentContext(settings=load_settings(home=tmp_path), tools=None)  # type: ignore[arg-type]


def request(**slots) -> Request:
    return Request(intent="train", model="resnet18", dataset="cifar10", **slots)


@pytest.mark.parametrize(
    ("slots", "nodes", "per_node"),
    [
        ({"gpus": 4}, 1, 4),
        ({"gpus": 16}, 2, 8),
        ({"gpus": 8, "nodes": 2}, 2, 4),
        ({"nodes": 2, "gpus_per_node": 8}, 2, 8),
        ({}, 1, 0),
    ],
)
def test_gpus_become_nodes_times_gpus_per_node(ctx, slots, nodes, per_node) -> None:
    spec = job_spec(request(**slots), ctx)
    assert (spec.nodes, spec.gpus_per_node) == (nodes, per_node)


@pytest.mark.parametrize(
    ("slots", "hint"),
    [({"gpus": 3, "nodes": 2}, "3 GPUs don't split evenly over 2 nodes"), ({"gpus": 9}, "of 2")],
)
def test_gpus_that_do_not_split_are_refused_not_rounded(ctx, slots, hint) -> None:
    with pytest.raises(PlanRefused, match=hint):
        job_spec(request(**slots), ctx)


def test_the_default_batch_fits_the_ranks_and_an_asked_one_is_kept(ctx) -> None:
    assert job_spec(request(gpus=3), ctx).batch_size == 255
    fits = job_spec(request(gpus=4), ctx)
    assert fits.batch_size == 256 and "batch_size" not in fits.model_fields_set  # the default
    assert job_spec(request(gpus=3, batch_size=96), ctx).batch_size == 96


def test_a_gpu_type_without_a_count_is_one_gpu_of_it_and_with_none_is_refused(ctx) -> None:
    spec = job_spec(request(gpu_type="A100"), ctx)
    assert (spec.gpus_per_node, spec.gpu_type) == (1, "A100")
    assert job_spec(request(gpu_type="H100", gpus=4), ctx).gpu_type == "H100"
    with pytest.raises(PlanRefused, match="H100 GPUs and no GPUs can't both be honoured"):
        job_spec(request(gpu_type="H100", gpus=0), ctx)


def test_cpus_memory_and_a_fallback_dataset_asked_for_are_in_the_spec(ctx) -> None:
    spec = job_spec(request(cpus=4, memory="8Gi", fallback_dataset="digits"), ctx)
    assert (spec.cpus, spec.memory, spec.fallback_dataset) == (4, "8Gi", "digits")


def test_a_train_request_missing_its_subject_asks_one_question() -> None:
    question = ask_back(Request(intent="train", dataset="mnist", epochs=3))
    assert question is not None and question.startswith("Train on mnist with which model")
    assert "cnn" in question and question.count("?") == 1
    assert ask_back(Request(intent="train", model="cnn", dataset="mnist")) is None


def capacity(backend: str, *nodes: tuple[str, float, float, int, str | None]) -> Capacity:
    return Capacity(
        backend=backend,
        nodes=[
            NodeCapacity(
                name=name,
                allocatable=ResourceAmounts(cpus=cpus, memory_bytes=int(gib * 2**30), gpus=gpus),
                free=ResourceAmounts(cpus=cpus, memory_bytes=int(gib * 2**30), gpus=gpus),
                gpu_type=gpu_type,
            )
            for name, cpus, gib, gpus, gpu_type in nodes
        ],
    )


def test_a_job_no_node_can_ever_hold_is_known_before_launch() -> None:
    laptop = capacity("local", ("laptop", 8, 16, 0, None))
    gpu_job = TrainingJobSpec(model="cnn", dataset="mnist", gpus_per_node=1, cpus=4, memory="8Gi")
    problem = never_fits(gpu_job, laptop)
    assert problem is not None and "needs 4 CPUs, 8.0 GiB, 1 GPUs" in problem
    assert "laptop: 8 CPUs, 16.0 GiB, 0 GPUs" in problem
    assert never_fits(TrainingJobSpec(model="cnn", dataset="mnist"), laptop) is None

    cluster = capacity(
        "cluster", ("a", 32, 128, 8, "NVIDIA-L4"), ("b", 32, 128, 8, "NVIDIA-A100-SXM4-80GB")
    )
    a100 = gpu_job.model_copy(update={"gpu_type": "A100", "gpus_per_node": 8, "nodes": 1})
    assert never_fits(a100, cluster) is None
    two_a100_nodes = a100.model_copy(update={"nodes": 2})
    problem = never_fits(two_a100_nodes, cluster)
    assert problem is not None and "on A100 nodes" in problem and "8 NVIDIA-L4 GPUs" in problem
    h100 = a100.model_copy(update={"gpu_type": "H100"})
    assert never_fits(h100, cluster) is not None


def test_two_readings_are_asked_about_not_guessed() -> None:
    question = ask_back(
        Request(intent="train", model="cnn", choices={"dataset": ["mnist", "cifar10"]})
    )
    assert question == "Which dataset: mnist or cifar10?"


def test_a_time_limit_becomes_the_jobs_deadline(ctx) -> None:
    assert job_spec(request(max_seconds=7200), ctx).active_deadline_seconds == 7200
    assert job_spec(request(), ctx).active_deadline_seconds is None
