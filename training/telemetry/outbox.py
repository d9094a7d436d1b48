"""A durable FIFO of MLflow writes that MLflow has not acknowledged yet.

It lives beside the checkpoints (mlflow_outbox.jsonl), so metrics survive an MLflow outage and a
restart of the job alike; `run.json` beside it remembers which MLflow run the job writes to.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from common.telemetry import MLFLOW_OUTBOX_FILE
from training.storage import Storage

OUTBOX_FILE = MLFLOW_OUTBOX_FILE
RUN_FILE = "mlflow_run.json"
PENDING_MODEL_FILE = "mlflow_pending_model.pt"
"""The final model, saved when training ends, until MLflow has it."""


def storage_records(storage: Storage) -> list[dict[str, Any]]:
    """The records of the outbox in `storage`, oldest first."""
    if not storage.exists(OUTBOX_FILE):
        return []
    lines = storage.read_bytes(OUTBOX_FILE).decode().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class Outbox:
    def __init__(self, storage: Storage | None) -> None:
        self.storage = storage
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        if storage is not None:
            self._records = storage_records(storage)

    @property
    def where(self) -> str:
        return (
            self.storage.describe(OUTBOX_FILE) if self.storage else "memory (no --checkpoint-dir)"
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def append(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(record)
            self._persist()

    def first(self) -> dict[str, Any] | None:
        with self._lock:
            return self._records[0] if self._records else None

    def pop_first(self) -> None:
        with self._lock:
            del self._records[:1]
            self._persist()

    def _persist(self) -> None:
        if self.storage is None:
            return
        if not self._records:
            self.storage.delete(OUTBOX_FILE)
            return
        blob = "".join(json.dumps(r) + "\n" for r in self._records).encode()
        self.storage.write_atomic(OUTBOX_FILE, lambda f: f.write(blob))


class RunRecord:
    """Which MLflow run this job writes to, and whether its final model was logged."""

    def __init__(self, storage: Storage | None) -> None:
        self.storage = storage
        self.run_id: str | None = None
        self.model_logged = False
        if storage is not None and storage.exists(RUN_FILE):
            data = json.loads(storage.read_bytes(RUN_FILE))
            self.run_id = data.get("run_id")
            self.model_logged = bool(data.get("model_logged", False))

    def save(self) -> None:
        if self.storage is None:
            return
        blob = json.dumps({"run_id": self.run_id, "model_logged": self.model_logged}).encode()
        self.storage.write_atomic(RUN_FILE, lambda f: f.write(blob))
