"""costs_report over many runs: the MCP tool (through a real stdio session) against a plain loop.

Starts a throwaway local stack, fills MLflow with N runs carrying cost metrics, then times
`costs_report(group_by="model")` beside the plain way (MlflowClient.search_runs with its default
page size, summing in Python), in the same run.

    python bench/costs_report.py [--runs 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from rich.progress import track

from agent.stack import LocalStack
from common.settings import Settings


def populate(client: MlflowClient, runs: int) -> str:
    experiment = client.create_experiment("costs-bench")

    def one(i: int) -> None:
        run = client.create_run(
            experiment, tags={"model": ("cnn", "mlp", "resnet18", "gpt")[i % 4]}
        )
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("cost_usd", 0.01 * (i % 100), 0, 0), Metric("gpu_hours", 0.1, 0, 0)],
            params=[Param("epochs", "3")],
            tags=[RunTag("trainops.job_id", f"job-{i:05d}")],
        )

    with ThreadPoolExecutor(8) as pool:
        list(track(pool.map(one, range(runs)), total=runs, description=f"creating {runs} runs"))
    return experiment


def plain_report(client: MlflowClient, experiment_id: str) -> float:
    total, token = 0.0, None
    while True:
        page = client.search_runs([experiment_id], page_token=token)  # default page size
        total += sum(r.data.metrics.get("cost_usd", 0.0) for r in page)
        token = page.token
        if not token:
            return total


async def tool_report(env: dict[str, str]) -> tuple[dict, float]:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_servers.mlflow"], env=env
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        started = time.perf_counter()
        result = await session.call_tool(
            "costs_report", {"experiment": "costs-bench", "group_by": "model"}
        )
        return result.structuredContent, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="trainops-bench-"))
    stack = LocalStack(Settings(home=home))
    url = stack.up(("mlflow",))[0].url
    try:
        client = MlflowClient(url)
        experiment = populate(client, args.runs)
        started = time.perf_counter()
        plain_total = plain_report(client, experiment)
        plain_s = time.perf_counter() - started
        env = {**os.environ, "TRAINOPS_HOME": str(home), "MLFLOW_TRACKING_URI": url}
        report, tool_s = anyio.run(tool_report, env)
    finally:
        stack.down()
    assert abs(report["total_cost_usd"] - plain_total) < 1e-6, (
        report["total_cost_usd"],
        plain_total,
    )
    print(f"runs: {args.runs}; total cost ${plain_total:.2f}")
    print(f"{'path':<34}{'seconds':>10}")
    print(f"{'plain search_runs (default page)':<34}{plain_s:>10.2f}")
    print(f"{'costs_report tool (stdio)':<34}{tool_s:>10.2f}")
    print(f"ratio plain/tool: {plain_s / tool_s:.2f}x")
    print(
        json.dumps(
            {
                "bench": "costs_report",
                "runs": args.runs,
                "plain_s": plain_s,
                "tool_s": tool_s,
                "ratio": plain_s / tool_s,
            }
        )
    )


if __name__ == "__main__":
    main()
