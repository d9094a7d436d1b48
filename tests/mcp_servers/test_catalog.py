"""The published tool catalogs hold to what each server really registers."""

from __future__ import annotations

import pytest

from mcp_servers.kubernetes import schemas as kubernetes
from mcp_servers.kubernetes.server import build_server as build_kubernetes
from mcp_servers.mlflow import schemas as mlflow
from mcp_servers.mlflow.server import build_server as build_mlflow
from mcp_servers.prometheus import schemas as prometheus
from mcp_servers.prometheus.server import build_server as build_prometheus
from tests.mcp_servers.support import memory_session

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("build", "catalog"),
    [
        (build_kubernetes, kubernetes.TOOLS),
        (build_mlflow, mlflow.TOOLS),
        (build_prometheus, prometheus.TOOLS),
    ],
    ids=["kubernetes", "mlflow", "prometheus"],
)
async def test_every_published_tool_is_registered_with_the_published_result_model(
    settings_for, build, catalog
) -> None:
    async with memory_session(build, settings_for()) as session:
        registered = {t.name: t for t in (await session.list_tools()).tools}
    assert sorted(ref.name for ref in catalog) == sorted(registered)
    for ref in catalog:
        schema = ref.result.model_json_schema(mode="serialization")
        assert registered[ref.name].outputSchema == schema, ref.name
