"""The interface every place that runs training jobs implements: this machine, or a cluster."""

from __future__ import annotations

from typing import Protocol

from common.errors import Conflict, NotFound, Refused
from common.vocabulary import Phase
from mcp_servers.kubernetes.manifests import Manifest
from mcp_servers.kubernetes.schemas import (
    BackendName,
    Capacity,
    CreateResult,
    JobEvents,
    JobList,
    JobStatus,
    LogTail,
    SweepSpec,
    TrainingJobSpec,
)


class JobExists(Conflict):
    """A job with this id exists already (and no idempotency key matched it)."""


class JobNotFound(NotFound):
    """No job has this id (in the namespaces this server manages)."""


class JobRefused(Refused):
    """Policy forbids the job (namespace, image, caps, concurrent jobs, not managed by trainops)."""


class Backend(Protocol):
    """Every failure is a `common.errors.TrainopsError` whose kind the tools pass on."""

    name: BackendName

    def create(self, manifest: Manifest, spec: TrainingJobSpec | SweepSpec) -> CreateResult:
        """Apply the manifest; with an idempotency key already used, return that job instead."""
        ...

    def get(self, job_id: str) -> JobStatus: ...

    async def wait(self, job_id: str, timeout_s: float, seen: Phase | None = None) -> JobStatus:
        """Return as soon as the job's phase is not `seen` (default: its phase now), or when the
        timeout passes."""
        ...

    def list(self, phase: Phase | None, limit: int) -> JobList: ...

    def events(self, job_id: str, limit: int) -> JobEvents: ...

    def logs(
        self,
        job_id: str,
        replica: str | None,
        tail_lines: int,
        contains: str | None,
        previous: bool = False,
    ) -> LogTail:
        """`previous`: the replica's container before its last restart (NotFound if none)."""
        ...

    async def delete(self, job_id: str) -> JobStatus:
        """Cancel the job and stop every replica; only objects trainops manages."""
        ...

    def capacity(self) -> Capacity: ...
