"""Every tool of every server, fuzzed over a real stdio session: arguments drawn from the tool's
own input schema and from arbitrary JSON. Whatever comes in, the reply is a result in the
published model or one line `kind: message` with a kind in _meta; the server lives on; and a
call that fails writes nothing.

`make test` draws a few seeded examples per tool; `make fuzz` (the nightly suite) draws 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from mcp import ClientSession
from mcp.types import CallToolResult, TextContent

from common.errors import ERROR_KIND_META, ErrorKind
from mcp_servers.kubernetes import schemas as kubernetes
from mcp_servers.mlflow import schemas as mlflow
from mcp_servers.prometheus import schemas as prometheus
from mcp_servers.toolref import ToolRef
from tests.mcp_servers.support import server_env, stdio_session

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
HOSTILE_TEXT = st.sampled_from(
    ["--help", "-h", "../../etc/passwd", "\x00", "$(id)", "a\nb", "9" * 400, "", " ", "NaN"]
)


@dataclass
class Live:
    """A server process and the session to it, driven from synchronous hypothesis tests."""

    portal: anyio.from_thread.BlockingPortal
    session: ClientSession
    tools: dict[str, dict[str, Any]]
    home: Path

    def call(self, tool: str, arguments: Any) -> CallToolResult:
        return self.portal.call(_call, self.session, tool, arguments)


async def _call(session: ClientSession, tool: str, arguments: Any) -> CallToolResult:
    with anyio.fail_after(120):  # a guard against a hang, not a speed requirement
        return await session.call_tool(tool, arguments)


@pytest.fixture(scope="module")
def portal() -> Iterator[anyio.from_thread.BlockingPortal]:
    with anyio.from_thread.start_blocking_portal() as running:
        yield running


def _live(portal, module: str, home: Path, **env: str) -> Iterator[Live]:
    context = portal.wrap_async_context_manager(stdio_session(module, server_env(home, **env)))
    with context as session:
        listed = portal.call(session.list_tools)
        yield Live(portal, session, {t.name: t.inputSchema for t in listed.tools}, home)


@pytest.fixture(scope="module")
def live_kubernetes(portal, tmp_path_factory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("fuzz-kubernetes")
    yield from _live(portal, "mcp_servers.kubernetes", home)


@pytest.fixture(scope="module")
def live_mlflow(portal, tmp_path_factory, mlflow_url) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("fuzz-mlflow")
    yield from _live(portal, "mcp_servers.mlflow", home, MLFLOW_TRACKING_URI=mlflow_url)


@pytest.fixture(scope="module")
def live_prometheus(portal, tmp_path_factory, stack) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("fuzz-prometheus")
    yield from _live(
        portal, "mcp_servers.prometheus", home, TRAINOPS_PROMETHEUS_URL=stack.prometheus_url
    )


def arguments_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    keys = list(schema.get("properties", {}))
    hostile = st.dictionaries(st.sampled_from([*keys, "bogus"]), JSON | HOSTILE_TEXT)
    anything = st.dictionaries(st.text(max_size=12), JSON)  # (the client sends objects only)
    return st.one_of(from_schema(schema), hostile, anything)


def files_of(home: Path) -> set[str]:
    """What a failed call could have left: a job folder, an idempotency record, any file outside
    the folders of jobs that ran before (whose supervisors write on their own)."""
    jobs = home / "jobs"
    running = {p for p in jobs.iterdir() if p.is_dir()} if jobs.is_dir() else set()
    return {
        str(p.relative_to(home))
        for p in home.rglob("*")
        if p.suffix != ".lock"
        and not any(r in p.parents for r in running)
        and "prometheus" not in p.parts
    } | {str(r.relative_to(home)) for r in running}


def check_reply(tool: ToolRef[Any], result: CallToolResult) -> None:
    if result.isError:
        kind = (result.meta or {}).get(ERROR_KIND_META)
        assert kind in set(ErrorKind), result
        text = " ".join(b.text for b in result.content if isinstance(b, TextContent))
        assert text.startswith(f"{kind}: ") and "\n" not in text, text
        assert "Traceback" not in text, text
    else:
        tool.result.model_validate(result.structuredContent)


def fuzz(live: Live, tool: ToolRef[Any], arguments: Any, on_success=None) -> None:
    before = files_of(live.home)
    result = live.call(tool.name, arguments)
    check_reply(tool, result)
    if result.isError:
        assert files_of(live.home) == before, f"{tool.name} failed but wrote: {arguments!r}"
    elif on_success is not None:
        on_success(result)


# One test process drives the three server sessions (pytest-xdist keeps the group together).
pytestmark = pytest.mark.xdist_group("fuzz")
FUZZ = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize("tool", kubernetes.TOOLS, ids=lambda t: t.name)
def test_kubernetes_tools_answer_every_input_cleanly(live_kubernetes: Live, tool) -> None:
    def cancel(result: CallToolResult) -> None:  # a fuzzed spec that launches is stopped
        if tool in (kubernetes.TRAINING_JOBS_CREATE, kubernetes.TRAINING_SWEEPS_CREATE):
            job_id = result.structuredContent["job_id"]
            check_reply(
                kubernetes.TRAINING_JOBS_DELETE,
                live_kubernetes.call("training_jobs_delete", {"job_id": job_id}),
            )

    @FUZZ
    @given(arguments_for(live_kubernetes.tools[tool.name]))
    def run(arguments: Any) -> None:
        fuzz(live_kubernetes, tool, arguments, cancel)

    run()
    check_reply(kubernetes.CLUSTER_CAPACITY, live_kubernetes.call("cluster_capacity", {}))


@pytest.mark.parametrize("tool", mlflow.TOOLS, ids=lambda t: t.name)
def test_mlflow_tools_answer_every_input_cleanly(live_mlflow: Live, tool) -> None:
    @FUZZ
    @given(arguments_for(live_mlflow.tools[tool.name]))
    def run(arguments: Any) -> None:
        fuzz(live_mlflow, tool, arguments)

    run()
    check_reply(mlflow.EXPERIMENTS_LIST, live_mlflow.call("experiments_list", {}))


@pytest.mark.parametrize("tool", prometheus.TOOLS, ids=lambda t: t.name)
def test_prometheus_tools_answer_every_input_cleanly(live_prometheus: Live, tool) -> None:
    @FUZZ
    @given(arguments_for(live_prometheus.tools[tool.name]))
    def run(arguments: Any) -> None:
        fuzz(live_prometheus, tool, arguments)

    run()
    check_reply(prometheus.METRICS_LIST, live_prometheus.call("metrics_list", {}))
