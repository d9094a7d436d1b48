"""The agent's tool calls: results are the models the servers publish; errors carry a kind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.tools import Toolbox, ToolCallError
from common.errors import ErrorKind
from common.settings import load_settings
from mcp_servers.kubernetes.schemas import (
    CLUSTER_CAPACITY,
    MANIFESTS_RENDER,
    TRAINING_JOBS_GET,
    Capacity,
    TrainingJobSpec,
)

pytestmark = pytest.mark.anyio


async def test_results_are_published_models_and_errors_carry_their_kind_not_their_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINOPS_HOME", str(tmp_path))
    async with Toolbox(load_settings(home=tmp_path)) as tools:
        capacity = await tools.call(CLUSTER_CAPACITY)
        assert isinstance(capacity, Capacity) and capacity.nodes[0].allocatable.cpus > 0
        with pytest.raises(ToolCallError) as missing:
            await tools.call(TRAINING_JOBS_GET, job_id="nope-0000")
        spec = TrainingJobSpec(model="cnn", dataset="digits", namespace="kube-system")
        with pytest.raises(ToolCallError) as refused:
            await tools.call(MANIFESTS_RENDER, spec=spec)
    assert missing.value.kind == ErrorKind.NOT_FOUND
    assert refused.value.kind == ErrorKind.REFUSED
    if os.environ.get("REWORD_SERVER_MESSAGES") == "1":  # the suite's servers reword themselves
        assert "nope-0000" not in missing.value.message
        assert "kube-system" not in refused.value.message
        assert capacity.nodes[0].name  # data is kept as it is
