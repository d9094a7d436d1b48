"""The local backend: rendered manifests run as processes on this machine, one supervisor per job.

The server is stateless: each call reads the job folders the supervisors keep up to date, so a
restarted server (or a second one) sees every job as it is. A job's status is its supervisor's
to write; the server writes a job folder only when it creates the job or cancels it, and reads
change nothing (a job whose supervisor died is reported Failed, as it stands on disk).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import watchfiles

from common.errors import NotFound
from common.settings import Settings
from common.vocabulary import TERMINAL_PHASES, Phase
from mcp_servers.kubernetes.backend import JobExists, JobNotFound, JobRefused
from mcp_servers.kubernetes.local.capacity import (
    SUPERVISOR_MODULE,
    alive,
    is_supervisor_of,
    node_capacity,
)
from mcp_servers.kubernetes.local.processes import job_processes, terminate
from mcp_servers.kubernetes.local.secrets import known_values
from mcp_servers.kubernetes.local.store import (
    RESTART_MARKER,
    STATUS,
    DamagedRecord,
    JobDir,
    JobStore,
    LocalJobState,
    now,
)
from mcp_servers.kubernetes.manifests import Manifest
from mcp_servers.kubernetes.progress import (
    CONTAINS_WINDOW_LINES,
    SWEEP_WINDOW_BYTES,
    SWEEP_WINDOW_LINES,
    bounded,
    last_progress,
    progress_of,
    read_tail,
)
from mcp_servers.kubernetes.schemas import (
    BackendName,
    Capacity,
    CreateResult,
    JobEvent,
    JobEvents,
    JobList,
    JobStatus,
    JobSummary,
    LogTail,
    ReplicaStatus,
    SweepSpec,
    TrainingJobSpec,
    TrainingProgress,
)
from mcp_servers.kubernetes.summary import job_message
from mcp_servers.kubernetes.sweeps import (
    TRIAL_REPLICA,
    settled,
    sweep_message,
    sweep_of,
    trial_lines,
    trial_names,
)
from mcp_servers.redaction import redact_text

CANCEL_TIMEOUT_S = 30.0
Lines = list[str]
SUPERVISOR_LOST = "SupervisorLost"
# A supervisor that has not recorded itself this long after creation did not start.
SUPERVISOR_START_TIMEOUT_S = 60.0


class LocalBackend:
    name: BackendName = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = JobStore(settings.jobs_dir)
        self._supervisors: list[subprocess.Popen[bytes]] = []

    # -- create ----------------------------------------------------------------------------

    def create(self, manifest: Manifest, spec: TrainingJobSpec | SweepSpec) -> CreateResult:
        key = spec.idempotency_key
        with self.store.lock():
            if key is not None:
                existing = self.store.find_by_idempotency_key(manifest.namespace, key)
                if existing is not None and self.store.job(existing).exists():
                    status = self.get(existing)
                    return CreateResult(
                        job_id=existing,
                        kind=status.kind,
                        namespace=status.namespace,
                        backend="local",
                        phase=status.phase,
                        created=False,
                    )
            if self.store.job(manifest.job_id).exists():
                raise JobExists(
                    f"a job named {manifest.job_id} already exists; choose another name or omit it"
                )
            active = sum(
                1
                for job, recorded in self.store.readable()
                if self._effective(job, recorded).phase not in TERMINAL_PHASES
            )
            cap = self.settings.kubernetes.max_concurrent_jobs
            if active >= cap:
                raise JobRefused(
                    f"{active} jobs are already active and the cap is {cap}; wait for one to "
                    "finish or cancel one with training_jobs_delete"
                )
            state = LocalJobState(
                job_id=manifest.job_id,
                kind=manifest.kind,
                namespace=manifest.namespace,
                created_at=now(),
            )
            job = self.store.create(state, manifest.yaml, spec.model_dump_json(indent=1))
            if key is not None:
                self.store.remember_idempotency_key(manifest.namespace, key, manifest.job_id)
        self._start_supervisor(job)
        return CreateResult(
            job_id=manifest.job_id,
            kind=manifest.kind,
            namespace=manifest.namespace,
            backend="local",
            phase="Pending",
            created=True,
        )

    def _start_supervisor(self, job: JobDir) -> None:
        self._reap()
        with open(job.path / "supervisor.log", "ab") as log:
            self._supervisors.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        SUPERVISOR_MODULE,
                        str(job.path),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    # The supervisor reads settings itself; it must see this server's home.
                    env={**os.environ, "TRAINOPS_HOME": str(self.settings.home)},
                    start_new_session=True,  # outlives this server
                )
            )

    def _reap(self) -> None:
        self._supervisors = [p for p in self._supervisors if p.poll() is None]

    # -- read ------------------------------------------------------------------------------

    def _job(self, job_id: str) -> JobDir:
        job = self.store.job(job_id)
        if not job.exists():
            raise JobNotFound(f"no job {job_id!r}; training_jobs_list shows the jobs there are")
        return job

    def _state(self, job: JobDir) -> LocalJobState:
        return self._effective(job, self.store.state(job))

    def _effective(self, job: JobDir, state: LocalJobState) -> LocalJobState:
        """The recorded state; a job whose supervisor died before finishing it reads as Failed
        (derived, not written: the folder stays as the supervisor left it)."""
        if state.phase in TERMINAL_PHASES:
            return state
        started_long_ago = (now() - state.created_at).total_seconds() > SUPERVISOR_START_TIMEOUT_S
        if alive(state.supervisor) or (state.supervisor is None and not started_long_ago):
            return state
        lost = state.model_copy(deep=True)
        lost.phase = "Failed"
        lost.reason = SUPERVISOR_LOST
        lost.message = f"the job's supervisor stopped; see {job.path / 'supervisor.log'}"
        lost.completion_time = job.state_written_at()
        lost.set_condition("Failed", lost.reason, lost.message, at=lost.completion_time)
        return lost

    def get(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        state = self._state(job)
        spec = self.store.spec(job)
        master = state.replicas[0].name if state.replicas else "trainer-0"
        sweep = None
        if state.kind == "RayJob":
            lines, _ = read_tail(job.log_file(master), SWEEP_WINDOW_LINES, SWEEP_WINDOW_BYTES)
            progress, run_id = progress_of(lines)
            sweep = settled(sweep_of(lines), state.phase)
        else:
            progress, run_id = last_progress(job.log_file(master))
        return JobStatus(
            job_id=state.job_id,
            kind=state.kind,
            namespace=state.namespace,
            backend="local",
            phase=state.phase,
            message=sweep_message(sweep)
            if sweep is not None and state.phase == "Running"
            else _message(state, progress),
            conditions=state.conditions,
            replicas=[
                ReplicaStatus(**r.model_dump(include=set(ReplicaStatus.model_fields)))
                for r in state.replicas
            ],
            restarts=state.restarts,
            created_at=state.created_at,
            start_time=state.start_time,
            completion_time=state.completion_time,
            progress=progress,
            mlflow_run_id=run_id,
            model=spec.get("model"),
            dataset=spec.get("dataset"),
            epochs=spec.get("epochs"),
            nodes=spec.get("nodes"),
            gpus_per_node=spec.get("gpus_per_node", spec.get("gpus_per_trial")),
            gpu_type=spec.get("gpu_type"),
            cpus=spec.get("cpus", spec.get("cpus_per_trial")),
            memory=spec.get("memory", spec.get("memory_per_trial")),
            sweep=sweep,
        )

    async def wait(self, job_id: str, timeout_s: float, seen: Phase | None = None) -> JobStatus:
        job = self._job(job_id)
        first = self.get(job_id)
        if first.phase in TERMINAL_PHASES or (seen is not None and first.phase != seen):
            return first
        with anyio.move_on_after(timeout_s):
            # inotify on the job folder: wakes when status.json is replaced, not on a timer; the
            # periodic timeout only re-checks that the supervisor is still alive.
            async for _ in watchfiles.awatch(
                job.path,
                watch_filter=lambda _, path: Path(path).name == STATUS,
                recursive=False,
                yield_on_timeout=True,
                rust_timeout=5000,
            ):
                status = self.get(job_id)
                if status.phase != first.phase:
                    return status
        return self.get(job_id)

    def list(self, phase: Phase | None, limit: int) -> JobList:
        jobs = [(job, self._effective(job, state)) for job, state in self.store.readable()]
        jobs = [(job, state) for job, state in jobs if phase is None or state.phase == phase]
        jobs.sort(key=lambda pair: pair[1].created_at, reverse=True)
        summaries = []
        for job, state in jobs[:limit]:
            try:
                spec = self.store.spec(job)
            except DamagedRecord:
                spec = {}  # the listing still shows the job; its get says what is damaged
            summaries.append(
                JobSummary(
                    job_id=state.job_id,
                    kind=state.kind,
                    namespace=state.namespace,
                    phase=state.phase,
                    model=spec.get("model"),
                    dataset=spec.get("dataset"),
                    created_at=state.created_at,
                    message=_message(state, None),
                )
            )
        return JobList(jobs=summaries, total=len(jobs))

    def events(self, job_id: str, limit: int) -> JobEvents:
        job = self._job(job_id)
        secrets = self._secret_values(job)
        events = [
            e.model_copy(update={"message": redact_text(e.message, secrets)})
            for e in job.read_events(limit)
        ]
        state = self._state(job)
        if state.reason == SUPERVISOR_LOST and state.completion_time is not None:
            lost = JobEvent(
                time=state.completion_time,
                type="Warning",
                reason=SUPERVISOR_LOST,
                message=state.message,
            )
            events = [*events, lost][-limit:]
        return JobEvents(job_id=job_id, events=events)

    def logs(
        self,
        job_id: str,
        replica: str | None,
        tail_lines: int,
        contains: str | None,
        previous: bool = False,
    ) -> LogTail:
        job = self._job(job_id)
        state = self._state(job)
        names = [r.name for r in state.replicas]
        replica = replica or (names[0] if names else "trainer-0")
        window = CONTAINS_WINDOW_LINES if contains else tail_lines
        driver_lines: Lines = []
        cut = False
        if state.kind == "RayJob" and names:  # a sweep: its trials' lines are in the driver's
            driver_lines, cut = read_tail(
                job.log_file(names[0]), SWEEP_WINDOW_LINES, SWEEP_WINDOW_BYTES
            )
            names = names + trial_names(driver_lines)
        if replica not in names:
            raise NotFound(f"job {job_id} has no replica {replica!r}; its replicas are {names}")
        if TRIAL_REPLICA.match(replica) and driver_lines:
            if previous:
                raise NotFound(
                    f"{replica} has no previous container: a trial's output is one stream in "
                    "the driver's log; ask without previous"
                )
            picked = trial_lines(driver_lines, replica)
            lines, truncated = picked[-window:], cut or len(picked) > window
        elif previous:
            lines, truncated = self._previous_instance(job, replica, window)
        else:
            lines, truncated = read_tail(job.log_file(replica), max_lines=window)
        secrets = self._secret_values(job)
        lines, truncated = bounded(
            [redact_text(line, secrets) for line in lines], truncated, tail_lines, contains
        )
        return LogTail(
            job_id=job_id,
            replica=replica,
            lines=lines,
            truncated=truncated,
            replicas=names,
            previous=previous,
        )

    def _previous_instance(self, job: JobDir, replica: str, window: int) -> tuple[Lines, bool]:
        """The output between the replica's last two restart markers (its log is one file)."""
        lines, cut = read_tail(job.log_file(replica), max_lines=CONTAINS_WINDOW_LINES)
        markers = [i for i, line in enumerate(lines) if RESTART_MARKER.match(line)]
        if not markers:
            raise NotFound(f"replica {replica} of job {job.job_id} has not restarted")
        start = markers[-2] + 1 if len(markers) > 1 else 0
        instance = lines[start : markers[-1]]
        truncated = len(instance) > window or (len(markers) < 2 and cut)
        return instance[-window:], truncated

    def _secret_values(self, job: JobDir) -> Sequence[str]:
        """The values of the Secrets a job references, so that no output shows them."""
        refs = self.store.spec(job).get("secret_env", {}).values()
        return known_values(self.settings.secrets_dir, [(r["secret"], r["key"]) for r in refs])

    def capacity(self) -> Capacity:
        return Capacity(backend="local", nodes=[node_capacity(self.store)])

    # -- delete ----------------------------------------------------------------------------

    async def delete(self, job_id: str) -> JobStatus:
        job = self._job(job_id)
        labels = job.read_manifest().get("metadata", {}).get("labels", {})
        if labels.get("app.kubernetes.io/managed-by") != "trainops":
            raise JobRefused(f"job {job_id} is not managed by trainops; it is left alone")
        state = self._state(job)
        if state.phase not in TERMINAL_PHASES:
            if state.supervisor is not None and is_supervisor_of(state.supervisor, job.path):
                os.kill(state.supervisor.pid, signal.SIGTERM)
                await self._wait_until_finished(job_id, CANCEL_TIMEOUT_S)
            await anyio.to_thread.run_sync(self._force_cancel, job)
        # Whatever the phase, nothing of the job may keep running.
        leftovers = job_processes(job_id)
        if leftovers:
            await anyio.to_thread.run_sync(terminate, leftovers, 5.0)
        return self.get(job_id)

    async def _wait_until_finished(self, job_id: str, timeout_s: float) -> None:
        with anyio.move_on_after(timeout_s):
            while (await self.wait(job_id, timeout_s)).phase not in TERMINAL_PHASES:
                pass

    def _force_cancel(self, job: JobDir) -> None:
        """Cancel without the supervisor (it is gone or did not answer): stop and record."""
        with self.store.lock():
            state = job.read_state()
            if state.phase in TERMINAL_PHASES:
                return
            terminate(job_processes(job.job_id), 5.0)
            state.phase = "Cancelled"
            state.reason = "Cancelled"
            state.message = "cancelled on request"
            state.completion_time = now()
            state.reserved = None
            state.set_condition("Cancelled", "Cancelled", state.message)
            job.write_state(state)
            job.add_event(
                "Warning", "Cancelled", "cancelled on request (supervisor did not answer)"
            )
        (self.settings.prometheus_targets_dir / f"{job.job_id}.json").unlink(missing_ok=True)


def _message(state: LocalJobState, progress: TrainingProgress | None) -> str:
    return job_message(
        state.phase,
        state.reason,
        state.message,
        progress,
        state.restarts,
        state.start_time,
        state.completion_time,
    )
