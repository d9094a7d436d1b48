"""`trainops up` / `status` / `down` as a user runs them."""

from __future__ import annotations

import socket
from pathlib import Path

import psutil
import yaml

from tests.agent.conftest import trainops


def services(home: Path) -> dict[str, dict]:
    import json

    found = {}
    for name in ("mlflow", "prometheus"):
        record = home / "stack" / name / "service.json"
        if record.exists():
            found[name] = json.loads(record.read_text())
    return found


def test_up_twice_is_one_stack_and_down_stops_exactly_it(tmp_path: Path) -> None:
    # Without Prometheus installed, MLflow still starts and the reply says how to install it.
    partial = trainops(tmp_path, "up", TRAINOPS_STACK__PROMETHEUS_BINARY="/nonexistent/prometheus")
    assert partial.returncode == 0, partial.stderr
    assert "Prometheus is not installed" in partial.stdout and "apt-get install" in partial.stdout
    assert set(services(tmp_path)) == {"mlflow"}
    mlflow = services(tmp_path)["mlflow"]

    first = trainops(tmp_path, "up")
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("already running") == 1  # MLflow; Prometheus starts now
    started = services(tmp_path)
    assert set(started) == {"mlflow", "prometheus"} and started["mlflow"] == mlflow
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert config["mlflow_tracking_uri"] == started["mlflow"]["url"]
    assert config["prometheus_url"] == started["prometheus"]["url"]
    assert (tmp_path / "prometheus" / "targets").is_dir()

    second = trainops(tmp_path, "up")
    assert second.returncode == 0 and second.stdout.count("already running") == 2
    assert services(tmp_path) == started

    status = trainops(tmp_path, "status")
    assert status.returncode == 0 and status.stdout.count("running") == 2
    assert started["mlflow"]["url"] in status.stdout

    down = trainops(tmp_path, "down")
    assert down.returncode == 0
    for record in started.values():
        assert (
            not psutil.pid_exists(record["pid"])
            or psutil.Process(record["pid"]).status() == "zombie"
        )
    assert services(tmp_path) == {}
    assert "mlflow_tracking_uri" not in (
        yaml.safe_load((tmp_path / "config.yaml").read_text()) or {}
    )
    assert trainops(tmp_path, "status").stdout.count("stopped") == 2


def test_bad_config_is_one_line_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("stack:\n  scrape_interval: often\n")
    result = trainops(tmp_path, "up")
    assert result.returncode == 2
    assert "stack.scrape_interval" in result.stderr and "Traceback" not in result.stderr
    assert services(tmp_path) == {}


def test_down_keeps_urls_it_did_not_write(tmp_path: Path) -> None:
    config = "mlflow_tracking_uri: https://mlflow.example.com\n"
    (tmp_path / "config.yaml").write_text(config)
    down = trainops(tmp_path, "down")
    assert down.returncode == 0, down.stderr
    assert (tmp_path / "config.yaml").read_text() == config


def test_a_port_in_use_is_refused_not_mistaken_for_our_server(tmp_path: Path) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = trainops(tmp_path, "up", TRAINOPS_STACK__MLFLOW_PORT=str(port))
    assert result.returncode == 2, result.stdout
    assert f"port {port} for mlflow is in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert "mlflow" not in services(tmp_path)
    trainops(tmp_path, "down")
