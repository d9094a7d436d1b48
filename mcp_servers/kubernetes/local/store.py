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
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel

from common.errors import ErrorKind, TrainopsError, one_line
from common.files import write_atomic
from common.vocabulary import Phase
from mcp_servers.kubernetes.schemas import (
    Condition,
    JobEvent,
    Kind,
    ReplicaStatus,
    ResourceAmounts,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

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


def restart_marker(restart: int) -> str:
    """The line a replica's log gets before each restarted instance's output."""
    return f"--- restart {restart} ---"


RESTART_MARKER = re.compile(r"^--- restart \d+ ---$")


class LocalReplica(ReplicaStatus):
    process: ProcessRef | None = None
    metrics_ports: list[int] = []


class LocalJobState(BaseModel):
    job_id: str
    kind: Kind
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
        return self._read(STATUS, LocalJobState.model_validate_json)

    def _read(self, name: str, parse: Callable[[str], T]) -> T:
        """A record of the job, parsed; a missing or damaged one is this job's problem alone."""
        path = self.path / name
        try:
            return parse(path.read_text())
        except (OSError, ValueError, yaml.YAMLError) as e:
            raise DamagedRecord(
                f"job {self.job_id}'s {name} is unreadable ({one_line(e)[:160]}); restore it, or "
                f"remove {self.path} to forget the job"
            ) from None

    def state_written_at(self) -> datetime:
        """When status.json was last written (by the supervisor, or at creation)."""
        return datetime.fromtimestamp((self.path / STATUS).stat().st_mtime, UTC)

    def write_state(self, state: LocalJobState) -> None:
        write_atomic(self.path / STATUS, state.model_dump_json(indent=1))

    def read_manifest(self) -> dict[str, Any]:
        return self._read(MANIFEST, _mapping(yaml.safe_load))

    def read_spec(self) -> dict[str, Any]:
        return self._read(SPEC, _mapping(json.loads))

    def add_event(self, type_: str, reason: str, message: str, replica: str | None = None) -> None:
        event = JobEvent(time=now(), type=type_, reason=reason, message=message, replica=replica)
        with open(self.path / EVENTS, "a") as f:
            f.write(event.model_dump_json() + "\n")

    def read_events(self, limit: int) -> list[JobEvent]:
        try:
            lines = (self.path / EVENTS).read_text().splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines[-limit:]:
            try:
                events.append(JobEvent.model_validate_json(line))
            except ValueError:
                continue  # a torn or hand-edited line: the other events still stand
        return events


class DamagedRecord(TrainopsError):
    """A job's files on disk are missing or unreadable: that job's problem, not the caller's."""

    kind = ErrorKind.INTERNAL


def _mapping(parse: Callable[[str], Any]) -> Callable[[str], dict[str, Any]]:
    def parsed(text: str) -> dict[str, Any]:
        value = parse(text)
        if not isinstance(value, dict):
            raise ValueError("not a mapping")
        return value

    return parsed


class JobStore:
    """All local jobs; creation and scheduling serialise on lock files in the jobs folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Reads are cached by the file's identity: a listing of many jobs stats their status
        # files and parses only those written since (a finished job's is never written again).
        self._states: dict[Path, tuple[tuple[int, int, int], LocalJobState]] = {}
        self._specs: dict[Path, dict[str, Any]] = {}

    def job(self, job_id: str) -> JobDir:
        return JobDir(self.root / job_id)

    def jobs(self) -> list[JobDir]:
        """Every job folder (not the staging folders of jobs being created)."""
        if not self.root.is_dir():
            return []
        return [
            JobDir(p)
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / STATUS).is_file()
        ]

    def state(self, job: JobDir) -> LocalJobState:
        """The job's recorded state (shared: callers read it and never change it)."""
        try:
            stat = (job.path / STATUS).stat()
        except OSError as e:
            raise DamagedRecord(f"job {job.job_id}'s status is gone ({one_line(e)})") from None
        identity = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        cached = self._states.get(job.path)
        if cached is not None and cached[0] == identity:
            return cached[1]
        state = job.read_state()
        if state.job_id != job.job_id:
            raise DamagedRecord(
                f"job {job.job_id}'s status.json is of job {state.job_id}; restore it, or remove "
                f"{job.path} to forget the job"
            )
        self._states[job.path] = (identity, state)
        return state

    def spec(self, job: JobDir) -> dict[str, Any]:
        """The spec the job was created from (written once, at creation)."""
        if job.path not in self._specs:
            self._specs[job.path] = job.read_spec()
        return self._specs[job.path]

    def readable(self) -> list[tuple[JobDir, LocalJobState]]:
        """Every job whose records read; a damaged one is left out here and reported when it is
        asked for by name."""
        out = []
        for job in self.jobs():
            try:
                out.append((job, self.state(job)))
            except DamagedRecord as e:
                log.warning("%s", e)
        return out

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
