"""The agent end to end: real MCP servers over stdio, the local backend, MLflow, Prometheus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from agent.runner import Agent
from common.net import free_port
from common.settings import load_settings
from mcp_servers.kubernetes.local.backend import LocalBackend
from tests.agent.conftest import cli_env, home_settings, jobs_in, trainops
from tests.support import REPO, wait_for

pytestmark = pytest.mark.anyio


def test_a_train_request_ends_with_mlflows_numbers_and_its_cost(agent_home: Path, stack) -> None:
    result = trainops(agent_home, "ask", "Train an MLP on digits for 3 epochs", "--yes", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    facts = json.loads(result.stdout)
    assert facts["phase"] == "Succeeded", facts
    run = MlflowClient(stack.mlflow_url).get_run(facts["mlflow_run_id"])
    for key, value in facts["metrics"].items():
        assert run.data.metrics[key] == value  # every number is the one MLflow holds
    assert facts["metrics"]["val_accuracy"] > 0.5
    assert facts["cost_usd"] > 0
    assert run.data.metrics["cost_usd"] == facts["cost_usd"]
    assert run.data.tags["trainops.cost.rate_card"] == "default"
    status = LocalBackend(home_settings(agent_home)).get(facts["job_id"])
    assert facts["duration_s"] == (status.completion_time - status.start_time).total_seconds()
    assert facts["cpu_utilization"] > 0 and facts["gpu_utilization"] is None
    assert facts["mlflow_url"].endswith(f"/runs/{facts['mlflow_run_id']}")
    assert jobs_in(agent_home) == [facts["job_id"]]


async def test_follow_ups_in_one_thread(agent_home: Path) -> None:
    async with Agent(home_settings(agent_home), detach=True) as agent:
        launched = await agent.ask("t1", "Train an MLP on digits for 500 epochs")
        job_id = launched.facts["job_id"]
        assert "Launched Job" in launched.answer

        def training() -> bool:
            return "epoch" in LocalBackend(home_settings(agent_home)).get(job_id).message

        wait_for(training, timeout=120, what="the first epoch")
        going = await agent.ask("t1", "how is it going?")
        assert going.facts["job_id"] == job_id and going.facts["phase"] == "Running"
        assert going.facts["progress"]["event"] == "epoch" and going.facts["progress"]["epoch"] >= 1
        assert going.answer.startswith(f"{job_id}: ")
        spent = await agent.ask("t1", "what did it cost?")
        assert spent.facts["cost_usd"] > 0 and "so far" in spent.answer
        logs = await agent.ask("t1", "show the last 2 lines of the logs")
        assert len(logs.facts["lines"]) == 2 and '"event": "epoch"' in logs.facts["lines"][-1]
        cancelled = await agent.ask("t1", "cancel it")
        assert cancelled.facts["phase"] == "Cancelled"
        after = await agent.ask("t1", "how is it going?")
        assert after.facts["phase"] == "Cancelled"
    assert jobs_in(agent_home) == [job_id]


async def test_over_budget_asks_first_deny_launches_nothing_approve_launches_once(
    agent_home: Path,
) -> None:
    request = "Train an MLP on digits for 2 epochs, keep it under $0.000001"
    asked: list[dict] = []

    def deny(question: dict) -> str:
        asked.append(question)
        return "deny"

    async with Agent(home_settings(agent_home)) as agent:
        denied = await agent.ask("budget-deny", request, approve=deny)
        assert asked and "over the budget" in asked[0]["reasons"][0]
        assert denied.facts["launched"] is False and "Not launched" in denied.answer
        assert jobs_in(agent_home) == []

        waiting = await agent.ask(
            "budget-ok", request
        )  # nobody answers: it waits, launches nothing
        assert waiting.pending_approval is not None and "trainops resume" in waiting.answer
        assert jobs_in(agent_home) == []
        done = await agent.resume("budget-ok", approve=lambda question: "approve")
        assert done.facts["phase"] == "Succeeded"
        again = await agent.resume("budget-ok", approve=lambda question: "approve")
        assert again.facts["job_id"] == done.facts["job_id"]
    assert jobs_in(agent_home) == [done.facts["job_id"]]


def test_agent_killed_mid_monitor_resumes_to_exactly_one_job(agent_home: Path) -> None:
    ask = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "ask",
            "Train an MLP on digits for 12 epochs",
            "--yes",
            "--json",
            "--thread",
            "crash-1",
        ],
        cwd=REPO,
        env=cli_env(agent_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    backend = LocalBackend(home_settings(agent_home))
    wait_for(lambda: jobs_in(agent_home), timeout=120, what="the launch")
    job_id = jobs_in(agent_home)[0]
    wait_for(lambda: "epoch" in backend.get(job_id).message, timeout=120, what="training")
    os.killpg(ask.pid, signal.SIGKILL)  # the agent and its MCP servers die; the job does not
    ask.communicate()
    assert backend.get(job_id).phase == "Running"

    resumed = trainops(agent_home, "resume", "crash-1", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    facts = json.loads(resumed.stdout)
    assert facts["job_id"] == job_id and facts["phase"] == "Succeeded"
    assert facts["cost_usd"] > 0
    assert jobs_in(agent_home) == [job_id]


async def test_out_of_scope_and_hard_caps_launch_nothing(agent_home: Path) -> None:
    async with Agent(home_settings(agent_home)) as agent:
        refused = await agent.ask("safety", "delete the namespace")
        assert (
            refused.facts["intent"] == "unknown" and "outside what trainops does" in refused.answer
        )
        capped = await agent.ask("safety", "Train a CNN on MNIST for 3 epochs on 10000 GPUs")
        assert capped.facts["error_kind"] == "refused" and capped.facts["phase"] is None
        vague = await agent.ask("safety", "train something for 3 epochs")
        assert "with which model" in vague.answer and "which dataset" in vague.answer
        sweep = await agent.ask(
            "safety", "sweep lr from 1e-4 to 1e-1 for a cnn on mnist on 10000 GPUs"
        )
        assert sweep.facts["launched"] is False and "Not launched" in sweep.answer
        nothing = await agent.ask("safety", "why did it fail?")
        assert "there are no jobs yet" in nothing.answer
    assert jobs_in(agent_home) == []


async def test_prometheus_down_still_prices_and_a_failed_job_is_diagnosed(agent_home: Path) -> None:
    config = yaml.safe_load((agent_home / "config.yaml").read_text())
    config["kubernetes"] = {"backoff_limit": 0}  # fail on the first error, no retries
    (agent_home / "config.yaml").write_text(yaml.safe_dump(config))
    settings = load_settings(home=agent_home, prometheus_url=f"http://127.0.0.1:{free_port()}")
    async with Agent(settings) as agent:
        done = await agent.ask("ops", "Train an MLP on digits for 1 epoch")
        assert done.facts["phase"] == "Succeeded" and done.facts["cost_usd"] > 0
        assert done.facts["cpu_utilization"] is None
        assert any("utilisation unknown (unavailable)" in w for w in done.facts["warnings"])
        assert "Utilisation: unknown." in done.answer

        failed = await agent.ask("ops", "Train a CNN on MNIST for 1 epoch")  # offline: no MNIST
        assert failed.facts["phase"] == "Failed"
        why = await agent.ask("ops", "why did it fail?")
        assert why.facts["job_id"] == failed.facts["job_id"]
        assert why.facts["findings"][0]["problem"] == "dataset unavailable"
        assert "fallback dataset" in why.answer
