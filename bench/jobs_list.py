"""training_jobs_list over many local jobs: the tool (an in-memory MCP session to the real server)
against a plain read of every job's status.json, in the same run.

Runs one real smoke job, copies its folder into N finished jobs, then times the tool's first
call (which reads every status once) and its later calls (which stat them) beside the plain loop.

    python bench/jobs_list.py [--jobs 200] [--calls 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import anyio
from mcp.shared.memory import create_connected_server_and_client_session

from common.settings import load_settings
from common.vocabulary import TERMINAL_PHASES
from mcp_servers.kubernetes.server import build_server

SPEC = {"model": "cnn", "dataset": "digits", "epochs": 1, "smoke_test": True, "batch_size": 64}


def plain_list(jobs: Path) -> int:
    folders = [p for p in sorted(jobs.iterdir()) if (p / "status.json").is_file()]
    statuses = [json.loads((p / "status.json").read_text()) for p in folders]
    return len(sorted(statuses, key=lambda s: s["created_at"], reverse=True)[:20])


async def measure(home: Path, count: int, calls: int) -> dict[str, float]:
    settings = load_settings(home=home)
    async with create_connected_server_and_client_session(build_server(settings)) as session:
        created = await session.call_tool("training_jobs_create", {"spec": SPEC})
        job_id = created.structuredContent["job_id"]
        while True:
            status = await session.call_tool("training_jobs_wait", {"job_id": job_id})
            if status.structuredContent["phase"] in TERMINAL_PHASES:
                break
        jobs = settings.jobs_dir
        for i in range(count - 1):
            copy = jobs / f"copy-{i:05d}"
            shutil.copytree(jobs / job_id, copy)
            status = json.loads((copy / "status.json").read_text())
            (copy / "status.json").write_text(json.dumps({**status, "job_id": copy.name}))

    async with create_connected_server_and_client_session(build_server(settings)) as session:
        started = time.perf_counter()
        await session.call_tool("training_jobs_list", {})
        first = time.perf_counter() - started
        warm = []
        for _ in range(calls):
            started = time.perf_counter()
            listed = await session.call_tool("training_jobs_list", {})
            warm.append(time.perf_counter() - started)
        assert listed.structuredContent["total"] == count
    plain = []
    for _ in range(calls):
        started = time.perf_counter()
        plain_list(jobs)
        plain.append(time.perf_counter() - started)
    return {
        "first_call_s": first,
        "tool_p50_s": statistics.median(warm),
        "plain_p50_s": statistics.median(plain),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainops-bench-") as home:
        os.environ["TRAINOPS_HOME"] = home
        result = anyio.run(measure, Path(home), args.jobs, args.calls)
    ratio = result["tool_p50_s"] / result["plain_p50_s"]
    print(f"training_jobs_list over {args.jobs} jobs")
    print(f"  first call (reads every status):  {result['first_call_s'] * 1000:8.1f} ms")
    print(f"  later calls, p50 (stats them):    {result['tool_p50_s'] * 1000:8.1f} ms")
    print(f"  plain read of every status, p50:  {result['plain_p50_s'] * 1000:8.1f} ms")
    print(f"  tool / plain: {ratio:.2f}x")
    print(json.dumps({"bench": "jobs_list", "jobs": args.jobs, **result, "ratio": ratio}))


if __name__ == "__main__":
    main()
