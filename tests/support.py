"""Real processes for tests: an MLflow server, Prometheus, torchrun jobs; all on free ports."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from common.net import free_port

REPO = Path(__file__).resolve().parent.parent


def train_args(model: str, dataset: str, **flags: object) -> list[str]:
    """`training.train` flags: train_args("cnn", "digits", epochs=2, smoke_test=True)."""
    args = ["--model", model, "--dataset", dataset]
    for name, value in flags.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not False and value is not None:
            args += [flag, str(value)]
    return args


def free_port_pair() -> int:
    """A port p such that p and p + 1 are both free (one exporter per local rank)."""
    while True:
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base


def wait_for(condition: Callable[[], Any], *, timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(every),
        retry=retry_if_result(lambda value: not value),
        retry_error_callback=lambda _: None,
    )
    result = retrying(condition)
    if not result:
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
    return result


def clean_env(*, gpus: bool = False, **extra: str) -> dict[str, str]:
    """The test process's environment without trainops/MLflow settings, plus `extra`. GPUs stay
    hidden unless asked for, so CPU tests train on the CPU on a GPU machine too."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRAINOPS_", "MLFLOW_", "AWS_", "PET_"))
        and k
        not in {
            "RANK",
            "LOCAL_RANK",
            "WORLD_SIZE",
            "LOCAL_WORLD_SIZE",
            "MASTER_ADDR",
            "MASTER_PORT",
        }
    }
    env.update(PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true")
    if not gpus:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


class Service:
    """A long-running server process, stopped with its whole process group."""

    def __init__(self, args: list[str], *, log: Path, env: dict[str, str] | None = None, cwd=None):
        self.log_path = log
        with open(log, "wb") as output:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                args,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )

    def check_alive(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.process.args[0]} exited: {self.log_path.read_text()[-2000:]}"
            )
        return True

    def stop(self, grace_s: float = 3.0) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def register_scrape_target(targets_dir: Path, name: str, ports: list[int], **labels: str) -> Path:
    """A Prometheus file_sd entry, as the local backend's supervisor writes for a replica."""
    targets_dir.mkdir(parents=True, exist_ok=True)
    path = targets_dir / f"{name}.json"
    entry = [{"targets": [f"127.0.0.1:{port}" for port in ports], "labels": labels}]
    path.write_text(json.dumps(entry))
    return path


def promql(url: str, query: str, time: str | None = None) -> list[dict[str, Any]]:
    """The result vector of an instant PromQL query (at `time`, RFC 3339, when given)."""
    params = {"query": query} | ({"time": time} if time else {})
    address = f"{url}/api/v1/query?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(address, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


class TrainingRun:
    """A `training.train` job (under torchrun when nproc > 1) whose JSON lines are collected."""

    def __init__(
        self,
        args: list[str],
        *,
        nproc: int = 1,
        env: dict[str, str] | None = None,
        torchrun_args: tuple[str, ...] = (),
    ) -> None:
        if nproc > 1 or torchrun_args:
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={nproc}",
                *torchrun_args,
                "-m",
                "training.train",
                *args,
            ]
        else:
            command = [sys.executable, "-m", "training.train", *args]
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env or clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.returncode: int | None = None
        self.events: list[dict[str, Any]] = []
        self.stdout_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()

    def _pump_stdout(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _pump_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def _take(self, line: str) -> dict[str, Any] | None:
        self.stdout_lines.append(line.rstrip("\n"))
        if line.startswith("{"):
            event = json.loads(line)
            self.events.append(event)
            return event
        return None

    def wait_for_event(self, name: str, timeout: float = 120) -> dict[str, Any]:
        """Block until the job prints an event called `name` (reads its stdout as it comes)."""
        for event in self.events:
            if event["event"] == name:
                return event
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            event = self._take(line)
            if event is not None and event["event"] == name:
                return event
        raise AssertionError(
            f"no {name!r} event; stdout={self.stdout_lines[-20:]} stderr={self.stderr[-3000:]}"
        )

    def finish(self, timeout: float = 300) -> int:
        """Wait for exit and collect everything it printed."""
        try:
            self.returncode = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        while (line := self._lines.get(timeout=10)) is not None:
            self._take(line)
        return self.returncode

    def event(self, name: str) -> dict[str, Any]:
        matches = [e for e in self.events if e["event"] == name]
        assert matches, (
            f"no {name!r} event in {self.stdout_lines[-20:]}; stderr={self.stderr[-3000:]}"
        )
        return matches[-1]

    def kill(self) -> None:
        """SIGKILL the job and every process under it (torchrun's workers have sessions of
        their own, so killing its process group alone would orphan them)."""
        if self.process.poll() is None:
            try:
                tree = psutil.Process(self.process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                tree = []
            os.killpg(self.process.pid, signal.SIGKILL)
            for child in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            psutil.wait_procs(tree, timeout=10)
            self.process.wait()


def run_training(
    args: list[str],
    *,
    nproc: int = 1,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    torchrun_args: tuple[str, ...] = (),
) -> TrainingRun:
    run = TrainingRun(args, nproc=nproc, env=env, torchrun_args=torchrun_args)
    run.finish(timeout)
    return run
