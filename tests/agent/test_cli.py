"""The `trainops` command line: parse, eval, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

from tests.agent.conftest import trainops


def test_parse_prints_the_request_contract(tmp_path: Path) -> None:
    result = trainops(
        tmp_path,
        "parse",
        "Train a CNN on MNIST with 3 epochs on 2 GPUs, keep it under $5",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "intent": "train",
        "model": "cnn",
        "dataset": "mnist",
        "epochs": 3,
        "gpus": 2,
        "budget_usd": 5.0,
    }


def test_eval_reports_accuracy_per_intent_and_slot(tmp_path: Path) -> None:
    result = trainops(tmp_path, "eval", "--suite", "nl", "--min-accuracy", "0.95")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "accuracy per intent" in result.stdout and "accuracy per slot" in result.stdout
    assert "exact match:" in result.stdout


def test_bad_input_is_one_line_with_the_fix(tmp_path: Path) -> None:
    unknown_suite = trainops(tmp_path, "eval", "--suite", "vibes")
    assert unknown_suite.returncode == 2 and "unknown suite 'vibes'" in unknown_suite.stderr
    both = trainops(tmp_path, "resume", "t1", "--approve", "--deny")
    assert both.returncode == 2 and "pick one" in both.stderr
    (tmp_path / "config.yaml").write_text("agent:\n  poll_seconds: -1\n")
    bad_config = trainops(tmp_path, "parse", "list jobs")
    assert bad_config.returncode == 2 and "agent.poll_seconds" in bad_config.stderr
    assert bad_config.stderr.count("\n") == 1  # one line however narrow the terminal
    (tmp_path / "config.yaml").write_text("mlflow_tracking_url: http://127.0.0.1:5000\n")
    misspelt = trainops(tmp_path, "parse", "list jobs")
    assert misspelt.returncode == 2
    assert "unknown setting 'mlflow_tracking_url'" in misspelt.stderr
    assert "mlflow_tracking_uri" in misspelt.stderr
    (tmp_path / "config.yaml").write_text("agent:\n  poll_second: 3\n")
    misspelt_nested = trainops(tmp_path, "parse", "list jobs")
    assert misspelt_nested.returncode == 2 and "agent.poll_second" in misspelt_nested.stderr
    (tmp_path / "config.yaml").unlink()
    bad_rates = trainops(tmp_path, "parse", "list jobs", TRAINOPS_RATES="cheap")
    assert bad_rates.returncode == 2 and "TRAINOPS_RATES must be JSON" in bad_rates.stderr
    no_server = trainops(tmp_path, "jobs", TRAINOPS_BACKEND="cluster")
    assert no_server.returncode == 2 and "Traceback" not in no_server.stderr
    assert "set KUBECONFIG or cluster.kubeconfig" in no_server.stderr  # the server's own line
    assert "the kubernetes MCP server did not start" in no_server.stderr
    unknown_job = trainops(tmp_path, "logs", "nope-0000")
    assert unknown_job.returncode == 1, unknown_job.stderr
    assert "no job 'nope-0000'; say \"list jobs\"" in unknown_job.stdout
    for result in (misspelt, misspelt_nested, bad_rates):
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    bad_llm = trainops(tmp_path / "llm", "eval", "--suite", "nl", TRAINOPS_LLM="nonsense")
    assert bad_llm.returncode == 2 and "use provider:model" in bad_llm.stderr
    assert "Traceback" not in bad_config.stderr + both.stderr + unknown_suite.stderr
    assert "Traceback" not in bad_llm.stderr
