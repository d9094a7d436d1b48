"""Rank 0's MLflow writer: one run per job, batched writes off the training thread, no loss.

Every write goes to the outbox first and leaves it only once MLflow acknowledged it, so an
unreachable server costs a warning, not metrics: they are sent, in order, when it is back: in
this process (which re-reads where MLflow is from TRAINOPS_MLFLOW_URI_FILE, should it move), in
the next attempt of the job, or by `python -m training.telemetry.drain` after the job ended (the
local backend's supervisor runs it), all of which find the outbox beside the checkpoints. The
final model waits there too, as a file, until MLflow has it.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import torch

from common.errors import first_line
from common.telemetry import MlflowTag
from training.storage import Storage
from training.telemetry.outbox import PENDING_MODEL_FILE, Outbox, RunRecord, storage_records

log = logging.getLogger(__name__)

RETRY_INTERVAL_S = 10.0
MAX_METRICS_PER_BATCH = 1000
_STOP = object()


class MlflowSink:
    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str,
        run_name: str,
        job_id: str | None,
        storage: Storage | None,
        uri_file: str | None = None,
    ) -> None:
        # Fail fast when the server is down; the outbox makes retries our job, not the client's.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        # stdout carries the job's JSON progress lines; keep MLflow's "View run" banner off it.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        import mlflow
        from mlflow.exceptions import MlflowException, RestException

        self._mlflow = mlflow
        self._errors = (MlflowException, OSError)
        self._rest_error = RestException
        self.client = mlflow.MlflowClient(tracking_uri)
        self.tracking_uri = tracking_uri
        self.uri_file = uri_file
        self.storage = storage
        self.experiment = experiment
        self.run_name = run_name
        self.job_id = job_id
        self.outbox = Outbox(storage)
        self.record = RunRecord(storage)
        self.warnings: list[str] = []
        self._reachable = True
        self._opened = False
        self._send_lock = threading.Lock()
        self._wake: queue.Queue[object] = queue.Queue()
        self._model: tuple[torch.nn.Module, torch.Tensor] | None = None
        self._thread = threading.Thread(target=self._worker, name="mlflow-sink", daemon=True)

    @property
    def run_id(self) -> str | None:
        return self.record.run_id

    def adopt_run(self, run_id: str) -> None:
        """Continue the run a checkpoint names (when run.json beside it was lost)."""
        if self.record.run_id is None:
            self.record.run_id = run_id

    @classmethod
    def resume(cls, tracking_uri: str, storage: Storage) -> MlflowSink:
        """A sink for the outbox a job left behind (whoever delivers it after the job ended)."""
        identity = next((r for r in storage_records(storage) if r["op"] == "run"), {})
        sink = cls(
            tracking_uri,
            experiment=identity.get("experiment", "trainops"),
            run_name=identity.get("run_name", "trainops"),
            job_id=identity.get("job_id"),
            storage=storage,
        )
        sink._opened = True
        return sink

    def open(self, params: dict[str, str], tags: dict[str, str]) -> str | None:
        """Queue the run's params and tags, try to deliver them now, and start the sender."""
        self._opened = True
        identity = {"experiment": self.experiment, "run_name": self.run_name, "job_id": self.job_id}
        self.outbox.append({"op": "run", **identity})  # who the run is, should a stranger send it
        self.outbox.append({"op": "status", "status": "RUNNING"})
        self.outbox.append({"op": "params", "params": params})
        self.outbox.append({"op": "tags", "tags": tags})
        self._drain()
        self._thread.start()
        return self.run_id

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.log_points([(key, value, step) for key, value in metrics.items()])

    def log_points(self, points: list[tuple[str, float, int]]) -> None:
        """Queue (key, value, step) points as one batch; the sender thread delivers it."""
        timestamp = int(time.time() * 1000)
        self.outbox.append({"op": "metrics", "points": points, "timestamp": timestamp})
        self._wake.put(None)

    def log_model(self, model: torch.nn.Module, input_example: torch.Tensor) -> None:
        """Log the final model once per job (a restarted, finished job does not log it twice).
        It waits as a file beside the outbox until MLflow has it."""
        if self.record.model_logged:
            return
        self._model = (model, input_example)
        if self.storage is not None:
            blob = io.BytesIO()
            torch.save({"model": model, "example": input_example}, blob)
            data = blob.getvalue()
            self.storage.write_atomic(PENDING_MODEL_FILE, lambda f: f.write(data))
        self.outbox.append({"op": "model"})
        self._wake.put(None)

    def drain(self) -> bool:
        """Send what the outbox holds now; True when nothing is left."""
        self._drain()
        return not len(self.outbox)

    def close(self, status: str, timeout_s: float = 120.0) -> list[str]:
        """Finish the run and wait (bounded) for everything queued to be delivered."""
        if not self._opened:  # the job stopped before it started: leave MLflow untouched
            return self.warnings
        self.outbox.append({"op": "status", "status": status, "timestamp": int(time.time() * 1000)})
        if self._thread.is_alive():
            self._wake.put(_STOP)
            self._thread.join(timeout_s)
        else:
            self._drain()
        if len(self.outbox):
            self.warnings.append(
                f"MLflow at {self.tracking_uri} did not take {len(self.outbox)} pending writes "
                f"(the final model among them); they wait in {self.outbox.where} and are sent "
                "once MLflow answers (the local backend delivers them after the job)"
            )
        self._model = None
        return self.warnings

    def _worker(self) -> None:
        while True:
            try:
                item = self._wake.get(timeout=RETRY_INTERVAL_S)
            except queue.Empty:
                item = None
            self._drain()
            if item is _STOP:
                return

    def _drain(self) -> bool:
        with self._send_lock:
            if not self._reachable:
                self._follow_uri()
            try:
                self._ensure_run()
            except self._errors as e:
                self._mark_unreachable(e)
                return False
            while (record := self.outbox.first()) is not None:
                try:
                    self._send(record)
                except self._errors as e:
                    if self._is_unreachable(e):
                        self._mark_unreachable(e)
                        return False
                    # MLflow refuses this write for good (e.g. a param changed on restart).
                    self._warn(f"MLflow rejected a {record['op']} write ({first_line(e)}); dropped")
                except RuntimeError as e:  # torch.export could not trace the model
                    self._warn(
                        f"the final model could not be exported for MLflow ({first_line(e)})"
                    )
                self.outbox.pop_first()
        if not self._reachable:
            log.warning(
                "MLflow at %s is reachable again; pending writes were sent", self.tracking_uri
            )
            self._reachable = True
        return True

    def _send(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param, RunTag

        run_id = self._run_id
        op = record["op"]
        if op == "metrics":
            metrics = [
                Metric(k, float(v), record["timestamp"], step) for k, v, step in record["points"]
            ]
            # MLflow takes at most 1000 metrics per batch; resending a chunk is harmless, since
            # MLflow ignores a point identical to one it already holds.
            for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                self.client.log_batch(
                    run_id, metrics=metrics[start : start + MAX_METRICS_PER_BATCH]
                )
        elif op == "params":
            params = [Param(k, v) for k, v in record["params"].items()]
            self.client.log_batch(run_id, params=params)
        elif op == "tags":
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in record["tags"].items()])
        elif op == "status" and record["status"] == "RUNNING":
            self.client.update_run(run_id, status="RUNNING")
        elif op == "status":
            self.client.set_terminated(run_id, record["status"], end_time=record["timestamp"])
        elif op == "model":
            self._send_pending_model()

    @property
    def _run_id(self) -> str:
        """The run writes go to (made by _ensure_run before anything is sent)."""
        assert self.record.run_id is not None
        return self.record.run_id

    def _send_pending_model(self) -> None:
        """The final model, from memory or from the file it waits in, unless MLflow has it."""
        if self.record.model_logged:
            return
        pending = self._model
        if pending is None and self.storage is not None and self.storage.exists(PENDING_MODEL_FILE):
            # Written by this job's own rank 0 (log_model): trusted, so not weights_only.
            saved = torch.load(
                io.BytesIO(self.storage.read_bytes(PENDING_MODEL_FILE)), weights_only=False
            )
            pending = (saved["model"], saved["example"])
        if pending is None:
            self._warn(
                "the final model was lost before MLflow could take it; it is in the checkpoint"
            )
            return
        self._send_model(*pending)
        self._model = None
        if self.storage is not None:
            self.storage.delete(PENDING_MODEL_FILE)

    def _follow_uri(self) -> None:
        """Where MLflow is now, when the launcher says so in a file (it may have moved)."""
        if self.uri_file is None:
            return
        try:
            uri = Path(self.uri_file).read_text().strip()
        except OSError:
            return
        if uri and uri != self.tracking_uri:
            log.warning("MLflow moved from %s to %s; sending there", self.tracking_uri, uri)
            self.tracking_uri = uri
            self.client = self._mlflow.MlflowClient(uri)

    def _is_unreachable(self, error: BaseException) -> bool:
        """Connection trouble or a server-side failure, worth retrying; anything else is final."""
        if isinstance(error, OSError):
            return True
        if isinstance(error, self._rest_error):
            return error.get_http_status_code() >= 500
        return str(error).startswith("API request to")

    def _warn(self, message: str) -> None:
        log.warning(message)
        self.warnings.append(message)

    def _send_model(self, model: torch.nn.Module, input_example: torch.Tensor) -> None:
        from mlflow.models import infer_signature

        with torch.no_grad():
            output = model(input_example)
        # log_model files the model under the fluent API's experiment: point it at the run's.
        run = self.client.get_run(self._run_id)
        self._mlflow.set_tracking_uri(self.tracking_uri)
        self._mlflow.set_experiment(experiment_id=run.info.experiment_id)
        self._mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=input_example,
            signature=infer_signature(input_example.numpy(), output.numpy()),
            serialization_format="pt2",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            run_id=self.record.run_id,
        )
        self.record.model_logged = True
        self.record.save()

    def _ensure_run(self) -> None:
        if self.record.run_id is not None:
            return
        experiment_id = self._experiment_id()
        run = None
        if self.job_id:
            found = self.client.search_runs(
                [experiment_id],
                filter_string=f"tags.`{MlflowTag.JOB_ID}` = '{self.job_id}'",
                max_results=1,
                order_by=["attributes.start_time DESC"],
            )
            run = found[0] if found else None
        if run is None:
            tags = {MlflowTag.JOB_ID: self.job_id} if self.job_id else {}
            run = self.client.create_run(experiment_id, run_name=self.run_name, tags=tags)
        self.record.run_id = run.info.run_id
        self.record.save()

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is not None:
            return experiment.experiment_id
        try:
            return self.client.create_experiment(self.experiment)
        except self._rest_error:
            # Another job created it in the meantime.
            experiment = self.client.get_experiment_by_name(self.experiment)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _mark_unreachable(self, error: BaseException) -> None:
        if self._reachable:
            message = (
                f"MLflow at {self.tracking_uri} is unreachable ({first_line(error)}); training "
                f"goes on and metrics wait in {self.outbox.where}"
            )
            self._warn(message)
        self._reachable = False
