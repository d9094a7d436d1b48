"""plan: a Request becomes a job spec; GPUs split over nodes as asked, the batch fits the ranks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.context import AgentContext
from agent.nodes.plan import PlanRefused, job_spec
from agent.request import Request
from common.settings import load_settings


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
