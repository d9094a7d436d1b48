"""The local backend's on-disk state: one folder per job under `$TRAINOPS_HOME/jobs/`.

    <job_id>/manifest.yaml   what was rendered (the supervisor runs exactly this)
    <job_id>/spec.json       the request it came from
    <job_id>/status.json     written atomically by the supervisor (and by the server at creation)
    <job_id>/events.jsonl    one event per line
    <job_id>/logs/<replica>.log

Everything a server needs to answer lives here, so jobs outlive the server that started them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from common.files import write_atomic
from common.vocabulary import Phase
from mcp_servers.kubernetes.schemas import Condition, JobEvent, ReplicaStatus, ResourceAmounts

MANIFEST = "manifest.yaml"
SPEC = "spec.json"
STATUS = "status.json"
EVENTS = "events.jsonl"


def now() -> datetime:
    return datetime.now(UTC)


class ProcessRef(BaseModel):
    """A pid plus its start time, so a recycled pid is never mistaken for our process."""

    pid: int
    create_time: float


class LocalReplica(ReplicaStatus):
    process: ProcessRef | None = None
    metrics_ports: list[int] = []


class LocalJobState(BaseModel):
    job_id: str
    kind: Literal["Job", "PyTorchJob", "TrainJob"]
    namespace: str
    phase: Phase = "Pending"
    reason: str = "Created"
    message: str = "waiting to be scheduled"
    created_at: datetime
    start_time: datetime | None = None
    completion_time: datetime | None = None
    restarts: int = 0
    replicas: list[LocalReplica] = []
    reserved: ResourceAmounts | None = None
    gpu_ids: list[int] = []
    supervisor: ProcessRef | None = None
    conditions: list[Condition] = []

    def set_condition(
        self, type_: str, reason: str, message: str = "", at: datetime | None = None
    ) -> None:
        """Make `type_` the one true condition (like the Training Operator's job conditions)."""
        for condition in self.conditions:
            condition.status = "False"
        self.conditions = [c for c in self.conditions if c.type != type_]
        self.conditions.append(
            Condition(
                type=type_,
                status="True",
                reason=reason,
                message=message,
                last_transition_time=at or now(),
            )
        )


class JobDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def job_id(self) -> str:
        return self.path.name

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def log_file(self, replica: str) -> Path:
        return self.logs / f"{replica}.log"

    def exists(self) -> bool:
        return (self.path / STATUS).is_file()

    def read_state(self) -> LocalJobState:
        return LocalJobState.model_validate_json((self.path / STATUS).read_text())

    def state_written_at(self) -> datetime:
        """When status.json was last written (by the supervisor, or at creation)."""
        return datetime.fromtimestamp((self.path / STATUS).stat().st_mtime, UTC)

    def write_state(self, state: LocalJobState) -> None:
        write_atomic(self.path / STATUS, state.model_dump_json(indent=1))

    def read_manifest(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / MANIFEST).read_text())

    def read_spec(self) -> dict[str, Any]:
        return json.loads((self.path / SPEC).read_text())

    def add_event(self, type_: str, reason: str, message: str, replica: str | None = None) -> None:
        event = JobEvent(time=now(), type=type_, reason=reason, message=message, replica=replica)
        with open(self.path / EVENTS, "a") as f:
            f.write(event.model_dump_json() + "\n")

    def read_events(self, limit: int) -> list[JobEvent]:
        try:
            lines = (self.path / EVENTS).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [JobEvent.model_validate_json(line) for line in lines[-limit:] if line.strip()]


class JobStore:
    """All local jobs; creation and scheduling serialise on lock files in the jobs folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def job(self, job_id: str) -> JobDir:
        return JobDir(self.root / job_id)

    def jobs(self) -> list[JobDir]:
        if not self.root.is_dir():
            return []
        return [JobDir(p) for p in self.root.iterdir() if p.is_dir() and (p / STATUS).is_file()]

    @contextlib.contextmanager
    def lock(self, name: str = "create") -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _idempotency_file(self, namespace: str, key: str) -> Path:
        digest = hashlib.sha256(f"{namespace}\0{key}".encode()).hexdigest()
        return self.root / ".idempotency" / digest

    def find_by_idempotency_key(self, namespace: str, key: str) -> str | None:
        try:
            return self._idempotency_file(namespace, key).read_text().strip()
        except FileNotFoundError:
            return None

    def remember_idempotency_key(self, namespace: str, key: str, job_id: str) -> None:
        path = self._idempotency_file(namespace, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, job_id)

    def create(self, state: LocalJobState, manifest_yaml: str, spec_json: str) -> JobDir:
        job = self.job(state.job_id)
        staging = Path(tempfile.mkdtemp(prefix=f".{state.job_id}.", dir=self.root))
        (staging / "logs").mkdir()
        (staging / MANIFEST).write_text(manifest_yaml)
        (staging / SPEC).write_text(spec_json)
        JobDir(staging).write_state(state)
        JobDir(staging).add_event("Normal", "Created", f"{state.kind} {state.job_id} created")
        os.rename(staging, job.path)  # the job appears whole or not at all
        return job
