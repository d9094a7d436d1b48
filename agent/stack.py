"""The local stack: an MLflow tracking server and Prometheus that see every local job.

`trainops up` starts them detached (pid files and logs under `$TRAINOPS_HOME/stack/`) and records
their URLs in `$TRAINOPS_HOME/config.yaml`, so MCP servers, the agent and local jobs find them
with no environment variables. `up` twice is one stack; `down` stops exactly what `up` started.
The test fixtures use this same code.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil
import yaml
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from common.files import write_atomic
from common.net import free_port, http_ok, port_free
from common.settings import CONFIG_FILE, Settings

ServiceName = Literal["mlflow", "prometheus"]
SERVICES: tuple[ServiceName, ...] = ("mlflow", "prometheus")
CONFIG_KEYS: dict[ServiceName, str] = {
    "mlflow": "mlflow_tracking_uri",
    "prometheus": "prometheus_url",
}
PROMETHEUS_INSTALL_HINT = (
    "Prometheus is not installed: `sudo apt-get install prometheus` (Debian/Ubuntu) or put the "
    "binary from https://prometheus.io/download on PATH; `make test` unpacks it into .venv"
)


class StackError(RuntimeError):
    """A service did not start (or stop); the message says why and where its log is."""


@dataclass(frozen=True)
class ServiceState:
    name: ServiceName
    running: bool
    url: str | None = None
    pid: int | None = None
    log: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class _Record:
    pid: int
    create_time: float
    port: int
    url: str


class LocalStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.home / "stack"

    # -- public ----------------------------------------------------------------------------

    def up(self, services: tuple[ServiceName, ...] = SERVICES) -> list[ServiceState]:
        states = []
        for name in services:
            states.append(self._ensure(name))
        self._record_urls(states)
        return states

    def down(self, services: tuple[ServiceName, ...] = SERVICES) -> list[ServiceState]:
        states = []
        started_urls = {}
        for name in services:
            if (recorded := self._recorded(name)) is not None:
                started_urls[name] = recorded.url
            record = self._running(name)
            if record is not None:
                proc = psutil.Process(record.pid)
                with contextlib.suppress(psutil.NoSuchProcess):
                    os.killpg(record.pid, signal.SIGTERM)
                    try:
                        proc.wait(5)
                    except psutil.TimeoutExpired:
                        os.killpg(record.pid, signal.SIGKILL)
                        proc.wait(5)
            self._pid_file(name).unlink(missing_ok=True)
            states.append(
                ServiceState(name, running=False, note="stopped" if record else "not running")
            )
        self._forget_urls(started_urls)
        return states

    def status(self) -> list[ServiceState]:
        states = []
        for name in SERVICES:
            record = self._running(name)
            if record is None:
                states.append(ServiceState(name, running=False, log=str(self._log(name))))
            else:
                healthy = _answers(self._health_url(name, record.url), within_s=10)
                states.append(
                    ServiceState(
                        name,
                        running=healthy,
                        url=record.url,
                        pid=record.pid,
                        log=str(self._log(name)),
                        note=None if healthy else "not answering",
                    )
                )
        return states

    # -- services --------------------------------------------------------------------------

    def _ensure(self, name: ServiceName) -> ServiceState:
        record = self._running(name)
        # Our own process, alive: give it time to answer (a busy machine slows MLflow down)
        # before taking it for a hung one and replacing it.
        if record is not None and _answers(self._health_url(name, record.url), within_s=30):
            return ServiceState(
                name,
                running=True,
                url=record.url,
                pid=record.pid,
                log=str(self._log(name)),
                note="already running",
            )
        if record is not None:  # alive but not answering: replace it
            self.down((name,))
        command_and_port = self._command(name)
        if command_and_port is None:
            return ServiceState(name, running=False, note=PROMETHEUS_INSTALL_HINT)
        command, port = command_and_port
        if not port_free(port):  # its health check would pass against whoever holds it
            raise StackError(
                f"port {port} for {name} is in use by another process; choose another "
                f"--{name}-port (or stack.{name}_port in config.yaml), or omit it for a free one"
            )
        url = f"http://127.0.0.1:{port}"
        workdir = self.root / name
        workdir.mkdir(parents=True, exist_ok=True)
        with open(self._log(name), "ab") as log:
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        record = _Record(proc.pid, psutil.Process(proc.pid).create_time(), port, url)
        self._pid_file(name).write_text(json.dumps(record.__dict__))
        timeout = 120 if name == "mlflow" else 60
        health = self._health_url(name, url)
        ready = Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(0.25),
            retry=retry_if_result(lambda answer: answer is None),
            retry_error_callback=lambda _: False,
        )(lambda: False if proc.poll() is not None else (http_ok(health) or None))
        if not ready:
            exited = proc.poll()
            self.down((name,))
            what = (
                f"exited with code {exited}"
                if exited is not None
                else f"did not become ready at {url} within {timeout}s"
            )
            raise StackError(f"{name} {what}; see {self._log(name)}: {_tail(self._log(name))}")
        return ServiceState(name, running=True, url=url, pid=proc.pid, log=str(self._log(name)))

    def _command(self, name: ServiceName) -> tuple[list[str], int] | None:
        stack = self.settings.stack
        if name == "mlflow":
            port = stack.mlflow_port or free_port()
            data = self.root / "mlflow"
            data.mkdir(parents=True, exist_ok=True)
            mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
            return [
                mlflow,
                "server",
                "--backend-store-uri",
                f"sqlite:///{data / 'mlflow.db'}",
                "--artifacts-destination",
                str(data / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
            ], port
        wanted = stack.prometheus_binary
        binary = shutil.which(wanted) or shutil.which(wanted, path=str(Path(sys.executable).parent))
        if binary is None:
            return None
        port = stack.prometheus_port or free_port()
        data = self.root / "prometheus"
        data.mkdir(parents=True, exist_ok=True)
        config = data / "prometheus.yml"
        config.write_text(yaml.safe_dump(self._prometheus_config(), sort_keys=False))
        return [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={data / 'tsdb'}",
            f"--storage.tsdb.retention.time={stack.retention}",
            f"--storage.tsdb.retention.size={stack.retention_size}",
            f"--web.listen-address=127.0.0.1:{port}",
        ], port

    def _prometheus_config(self) -> dict:
        interval = self.settings.stack.scrape_interval
        targets = self.settings.prometheus_targets_dir
        targets.mkdir(parents=True, exist_ok=True)
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": "trainops-jobs",
                    "file_sd_configs": [
                        {"files": [str(targets / "*.json")], "refresh_interval": interval}
                    ],
                }
            ],
        }

    @staticmethod
    def _health_url(name: ServiceName, url: str) -> str:
        return f"{url}/health" if name == "mlflow" else f"{url}/-/ready"

    # -- records ---------------------------------------------------------------------------

    def _pid_file(self, name: ServiceName) -> Path:
        return self.root / name / "service.json"

    def _log(self, name: ServiceName) -> Path:
        return self.root / name / f"{name}.log"

    def _recorded(self, name: ServiceName) -> _Record | None:
        """What `up` recorded of the service it started, alive or not."""
        try:
            return _Record(**json.loads(self._pid_file(name).read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def _running(self, name: ServiceName) -> _Record | None:
        """The service this stack started, if it is still that very process."""
        if (record := self._recorded(name)) is None:
            return None
        try:
            if abs(psutil.Process(record.pid).create_time() - record.create_time) < 0.01:
                return record
        except psutil.NoSuchProcess:
            pass
        return None

    @property
    def config_path(self) -> Path:
        return self.settings.home / CONFIG_FILE

    def _record_urls(self, states: list[ServiceState]) -> None:
        config = self._read_config()
        for state in states:
            if state.running and state.url:
                config[CONFIG_KEYS[state.name]] = state.url
        self._write_config(config)

    def _forget_urls(self, started_urls: dict[ServiceName, str]) -> None:
        """Drop the URLs `up` wrote; a URL someone set to another server stays."""
        config = self._read_config()
        forget = [
            CONFIG_KEYS[name]
            for name, url in started_urls.items()
            if config.get(CONFIG_KEYS[name]) == url
        ]
        if forget:
            for key in forget:
                del config[key]
            self._write_config(config)

    def _read_config(self) -> dict:
        try:
            return yaml.safe_load(self.config_path.read_text()) or {}
        except FileNotFoundError:
            return {}

    def _write_config(self, config: dict) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.config_path, yaml.safe_dump(config, sort_keys=True))


def _answers(url: str, *, within_s: float) -> bool:
    """Whether the service at `url` answers its health check within `within_s` seconds."""
    return bool(
        Retrying(
            stop=stop_after_delay(within_s),
            wait=wait_fixed(0.5),
            retry=retry_if_result(lambda ok: not ok),
            retry_error_callback=lambda _: False,
        )(lambda: http_ok(url, timeout_s=5))
    )


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
