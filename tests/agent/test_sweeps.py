"""Sweeps through the agent: a real Ray Tune sweep on the local backend, priced per trial, its
report's numbers the ones MLflow holds; follow-ups on it; bad sweeps launch nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from agent.runner import Agent
from tests.agent.conftest import home_settings, jobs_in

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_an_asha_sweep_is_planned_run_priced_and_reported(agent_home: Path, stack) -> None:
    # A grid, coarse to fine: the two first trials learn, the later two (lr 1e-5, 1e-6) can't
    # in one epoch, so ASHA stops them at its first rung.
    request = (
        "Grid search lr over 0.003, 0.01, 0.00001 and 0.000001 for an mlp on digits, "
        "4 epochs, 2 at a time, ASHA"
    )
    async with Agent(home_settings(agent_home)) as agent:
        done = await agent.ask("sweep-1", request, approve=lambda question: "approve")
        facts = done.facts
        assert facts["phase"] == "Succeeded", done.answer
        sweep = facts["sweep"]
        assert sweep["trials_total"] == 4 and len(sweep["trials"]) == 4
        assert sweep["counts"].get("stopped", 0) >= 1, sweep  # ASHA stopped a trial early
        assert sum(t["cost_usd"] for t in sweep["trials"]) == pytest.approx(
            sweep["cost_usd"], abs=1e-7
        )
        assert facts["cost_usd"] == sweep["cost_usd"] > 0
        assert sweep["saved_usd"] > 0
        assert "ASHA is expected to run" in facts["estimate"]["basis"]
        assert "Best: " in done.answer and "early stopping saved" in done.answer

        client = MlflowClient(stack.mlflow_url)
        parent = client.get_run(facts["mlflow_run_id"])
        assert parent.data.tags["trainops.kind"] == "sweep"
        assert (
            parent.data.params["scheduler"] == "asha" and "lr" in parent.data.params["search_space"]
        )
        assert parent.data.metrics["cost_usd"] == pytest.approx(facts["cost_usd"], abs=1e-8)
        children = {
            run.data.tags["trainops.trial"]: run
            for run in client.search_runs(
                [parent.info.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
            )
        }
        assert set(children) == {t["trial"] for t in sweep["trials"]}
        for trial in sweep["trials"]:  # every number in the report is the one MLflow holds
            run = children[trial["trial"]]
            assert run.data.metrics["cost_usd"] == pytest.approx(trial["cost_usd"], abs=1e-8)
            assert run.data.metrics["epochs_reached"] == trial["epochs"]
            assert run.data.metrics["val_accuracy"] == trial["metric"]
            assert run.data.tags["trainops.trial.state"] == trial["state"]
        best = sweep["best"]
        assert parent.data.tags["trainops.sweep.best_trial"] == best["trial"]
        assert (
            parent.data.metrics["best_val_accuracy"]
            == best["metric"]
            == max(t["metric"] for t in sweep["trials"])
        )

        going = await agent.ask("sweep-1", "how is the sweep going?")
        assert going.facts["job_id"] == facts["job_id"] and going.facts["phase"] == "Succeeded"
        assert going.facts["sweep"]["best"] == best and "Best: " in going.answer
        spent = await agent.ask("sweep-1", "what did it cost?")
        assert spent.facts["cost_usd"] == pytest.approx(facts["cost_usd"], abs=1e-8)
        logs = await agent.ask("sweep-1", "show the logs of trial 0")
        assert logs.facts["replica"] == "trial-0" and logs.facts["lines"], logs.answer
        registered = await agent.ask("sweep-1", "register the best model from the sweep")
        version = registered.facts["model_version"]
        assert version["run_id"] == best["mlflow_run_id"], registered.answer
    assert jobs_in(agent_home) == [facts["job_id"]]


async def test_bad_sweeps_are_refused_and_launch_nothing(agent_home: Path) -> None:
    async with Agent(home_settings(agent_home)) as agent:
        for text, words in [
            ("sweep lr from 1e-3 to 1e-3 for a cnn on digits", "empty"),
            ("sweep momentum between 0.8 and 0.99 for a cnn on digits", "lr, batch_size"),
            ("tune lr for a cnn on digits with pbt", "pbt scheduler is not supported"),
            ("tune lr for a cnn on digits, 100000 trials", "Not launched"),
            ("tune lr for a cnn on digits, 40 trials, 40 at a time on 40 GPUs", "Not launched"),
        ]:
            refused = await agent.ask("bad-sweeps", text)
            assert refused.facts.get("launched") is False, (text, refused.answer)
            assert words in refused.answer, (text, refused.answer)
    assert jobs_in(agent_home) == []
