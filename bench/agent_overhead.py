"""What the agent costs on top of the training it launches, measured in one run.

- wall(`trainops ask "Train a CNN on digits for N epochs" --yes`) / wall(the same training run by
  torchrun directly, with the same MLflow telemetry): the end-to-end overhead ratio;
- the median of a warm MCP tool call over the agent's persistent sessions;
- `trainops --help` start-up time.

    python bench/agent_overhead.py [--epochs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.stack import LocalStack
from agent.tools import Toolbox
from common.settings import Settings, load_settings
from mcp_servers.kubernetes.schemas import TRAINING_JOBS_LIST

REPO = Path(__file__).resolve().parent.parent


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{command[:4]} failed: {result.stderr[-2000:]}")
    return time.perf_counter() - started


async def warm_call_ms(settings: Settings, calls: int) -> float:
    async with Toolbox(settings) as tools:
        await tools.call(TRAINING_JOBS_LIST, limit=5)
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await tools.call(TRAINING_JOBS_LIST, limit=5)
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="about 2.5 s each on 2 CPU cores")
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="trainops-bench-"))
    env = {**os.environ, "TRAINOPS_HOME": str(home)}
    os.environ["TRAINOPS_HOME"] = str(home)
    stack = LocalStack(Settings(home=home))
    states = {s.name: s for s in stack.up()}
    try:
        settings = load_settings()
        agent_s = timed(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "ask",
                f"Train a CNN on digits for {args.epochs} epochs",
                "--yes",
                "--json",
            ],
            env,
        )
        direct_env = {
            **env,
            "MLFLOW_TRACKING_URI": states["mlflow"].url,
            "TRAINOPS_JOB_ID": "bench-direct",
        }
        direct_s = timed(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nnodes",
                "1",
                "--nproc-per-node",
                "1",
                "-m",
                "training.train",
                "--model",
                "cnn",
                "--dataset",
                "digits",
                "--epochs",
                str(args.epochs),
                "--checkpoint-dir",
                str(home / "direct-checkpoints"),
            ],
            direct_env,
        )
        call_ms = asyncio.run(warm_call_ms(settings, args.calls))
        help_s = statistics.median(
            timed([sys.executable, "-m", "agent.cli", "--help"], env) for _ in range(5)
        )
    finally:
        stack.down()
    print(f"{'measure':<44}{'value':>12}")
    print(f"{'trainops ask, end to end (s)':<44}{agent_s:>12.2f}")
    print(f"{'the same training by torchrun directly (s)':<44}{direct_s:>12.2f}")
    print(f"{'overhead ratio (ask / direct)':<44}{agent_s / direct_s:>12.2f}")
    print(f"{'warm MCP call, median (ms)':<44}{call_ms:>12.1f}")
    print(f"{'trainops --help (s)':<44}{help_s:>12.2f}")
    print(
        json.dumps(
            {
                "bench": "agent_overhead",
                "epochs": args.epochs,
                "ask_s": agent_s,
                "direct_s": direct_s,
                "ratio": agent_s / direct_s,
                "warm_call_ms": call_ms,
                "cli_help_s": help_s,
            }
        )
    )


if __name__ == "__main__":
    main()
