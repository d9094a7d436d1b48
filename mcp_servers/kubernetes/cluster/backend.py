"""The cluster backend: the rendered manifests applied to a real Kubernetes API.

Stateless like the local backend: every answer is read from the cluster (the job objects, their
pods, events and logs), so restarted or parallel servers agree. What outlives a job's objects is
kept on the cluster too: a cancelled job leaves a small ConfigMap with its final status.

A sweep is a RayJob: its submitter pod is the driver replica, whose log is the driver's (KubeRay's
`ray job submit` follows it), and its trials are read out of that log as the local backend reads
them out of its driver's file.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anyio

from common.errors import ErrorKind, NotFound, TrainopsError, Unavailable
from common.settings import Settings
from common.vocabulary import TERMINAL_PHASES, Phase
from mcp_servers.kubernetes.backend import JobExists, JobNotFound, JobRefused
from mcp_servers.kubernetes.cluster import status as reading
from mcp_servers.kubernetes.cluster.connection import ApiCall, Connection, api_call, connect
from mcp_servers.kubernetes.cluster.kinds import (
    KINDS,
    LOOKUP_ORDER,
    KindInfo,
    replica_name,
    replicas_of,
)
from mcp_servers.kubernetes.cluster.nodes import capacities, could_ever_fit, gpu_product_of
from mcp_servers.kubernetes.cluster.watching import PhaseWatch
from mcp_servers.kubernetes.manifests import (
    CONTAINER_NAME,
    IDEMPOTENCY_LABEL,
    JOB_ID_LABEL,
    MANAGED_BY,
    SPEC_ANNOTATION,
    Manifest,
    idempotency_hash,
)
from mcp_servers.kubernetes.progress import (
    CONTAINS_WINDOW_LINES,
    ERROR_WINDOW_LINES,
    MAX_TAIL_BYTES,
    PROGRESS_WINDOW_LINES,
    SWEEP_WINDOW_BYTES,
    SWEEP_WINDOW_LINES,
    bounded,
    error_line_of,
    progress_of,
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
    Kind,
    LogTail,
    SweepSpec,
    SweepStatus,
    TrainingJobSpec,
)
from mcp_servers.kubernetes.summary import job_message
from mcp_servers.kubernetes.sweeps import (
    settled,
    sweep_message,
    sweep_of,
    trial_lines,
    trial_names,
)
from mcp_servers.redaction import redact_text

FIELD_MANAGER = "trainops"
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
TOMBSTONE_PREFIX = "trainops-cancelled-"
TOMBSTONE_COMPONENT = "cancelled-job"
CANCEL_TIMEOUT_S = 60.0
DISCOVERY_TTL_S = 60.0
LIVE_POD_SELECTOR = "status.phase!=Succeeded,status.phase!=Failed"


Objects = list[dict[str, Any]]
Statuses = list[JobStatus]
Events = list[JobEvent]
Summaries = list[JobSummary]
Lines = list[str]


class ClusterBackend:
    name: BackendName = "cluster"

    def __init__(self, settings: Settings, connection: Connection | None = None) -> None:
        self.settings = settings
        self.api = connection or connect(settings)
        self._served: dict[Kind, tuple[float, bool]] = {}
        self._lock = threading.Lock()

    # -- discovery ---------------------------------------------------------------------------

    def _serves(self, kind: Kind) -> bool:
        """Whether the cluster serves the kind (its CRD is installed), cached for a minute."""
        with self._lock:
            cached = self._served.get(kind)
        if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL_S:
            return cached[1]
        info = KINDS[kind]
        served = True
        try:
            with api_call(ApiCall("get", f"{info.group}/{info.version} (discovery)")):
                resources = self.api.objects.get_api_resources(
                    info.group, info.version, _request_timeout=self.api.timeout
                )
            served = any(r.name == info.plural for r in resources.resources or [])
        except NotFound:
            served = False
        with self._lock:
            self._served[kind] = (time.monotonic(), served)
        return served

    def _require(self, kind: Kind) -> KindInfo:
        info = KINDS[kind]
        if not self._serves(kind):
            raise Unavailable(
                f"this cluster does not serve {kind} ({info.api_version}); install {info.operator}"
            )
        return info

    # -- objects -----------------------------------------------------------------------------

    def _get_object(self, info: KindInfo, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            with api_call(ApiCall("get", info.plural, namespace, info.group)):
                return self.api.objects.get_namespaced_custom_object(
                    info.group,
                    info.version,
                    namespace,
                    info.plural,
                    name,
                    _request_timeout=self.api.timeout,
                )
        except NotFound:
            return None

    def _list_objects(self, info: KindInfo, namespace: str, selector: str) -> list[dict[str, Any]]:
        with api_call(ApiCall("list", info.plural, namespace, info.group)):
            listed = self.api.objects.list_namespaced_custom_object(
                info.group,
                info.version,
                namespace,
                info.plural,
                label_selector=selector,
                _request_timeout=self.api.timeout,
            )
        return list(listed.get("items") or [])

    def _served_kinds(self) -> list[Kind]:
        return [kind for kind in LOOKUP_ORDER if self._serves(kind)]

    def _locate(self, job_id: str) -> tuple[KindInfo, str, dict[str, Any] | None]:
        """The job's kind, namespace and object (None once deleted, if a tombstone says so)."""
        namespaces = self.settings.kubernetes.allowed_namespaces
        kinds = self._served_kinds()
        for namespace in namespaces:
            for kind in kinds:
                obj = self._get_object(KINDS[kind], namespace, job_id)
                if obj is not None:
                    return KINDS[kind], namespace, obj
        for namespace in namespaces:
            tombstone = self._tombstone(namespace, job_id)
            if tombstone is not None:
                return KINDS[tombstone.kind], namespace, None
        raise JobNotFound(f"no job {job_id!r}; training_jobs_list shows the jobs there are")

    def _pods(self, info: KindInfo, namespace: str, name: str) -> list[dict[str, Any]]:
        with api_call(ApiCall("list", "pods", namespace)):
            response = self.api.core.list_namespaced_pod(
                namespace,
                label_selector=info.pod_selector(name),
                _preload_content=False,
                _request_timeout=self.api.timeout,
            )
        return Objects(json.loads(response.data).get("items") or [])

    def _nodes(self) -> list[dict[str, Any]]:
        with api_call(ApiCall("list", "nodes")):
            response = self.api.core.list_node(
                _preload_content=False, _request_timeout=self.api.timeout
            )
        return Objects(json.loads(response.data).get("items") or [])

    # -- create ------------------------------------------------------------------------------

    def create(self, manifest: Manifest, spec: TrainingJobSpec | SweepSpec) -> CreateResult:
        info = self._require(manifest.kind)
        namespace = manifest.namespace
        if spec.idempotency_key is not None:
            existing = self._find_by_key(namespace, spec.idempotency_key)
            if existing is not None:
                status = self.get(existing)
                return CreateResult(
                    job_id=existing,
                    kind=status.kind,
                    namespace=status.namespace,
                    backend="cluster",
                    phase=status.phase,
                    created=False,
                )
        if self._name_taken(namespace, manifest.job_id):
            raise JobExists(
                f"a job named {manifest.job_id} already exists; choose another name or omit it"
            )
        active = self._active_jobs()
        cap = self.settings.kubernetes.max_concurrent_jobs
        if active >= cap:
            raise JobRefused(
                f"{active} jobs are already active and the cap is {cap}; wait for one to "
                "finish or cancel one with training_jobs_delete"
            )
        with api_call(ApiCall("patch", info.plural, namespace, info.group)):
            # Server-side apply: the API server owns the merge, and trainops owns its fields.
            self.api.objects.patch_namespaced_custom_object(
                info.group,
                info.version,
                namespace,
                info.plural,
                manifest.job_id,
                manifest.body,
                field_manager=FIELD_MANAGER,
                field_validation="Strict",  # an unknown field is an error, never dropped
                _content_type="application/apply-patch+yaml",
                _request_timeout=self.api.timeout,
            )
        return CreateResult(
            job_id=manifest.job_id,
            kind=manifest.kind,
            namespace=namespace,
            backend="cluster",
            phase="Pending",
            created=True,
        )

    def _name_taken(self, namespace: str, name: str) -> bool:
        """A job of any kind has the name (a RayJob's submitter would take a Job's), or had it."""
        if self._tombstone(namespace, name) is not None:
            return True
        return any(
            self._get_object(KINDS[kind], namespace, name) is not None
            for kind in self._served_kinds()
        )

    def _find_by_key(self, namespace: str, key: str) -> str | None:
        selector = f"{MANAGED_SELECTOR},{IDEMPOTENCY_LABEL}={idempotency_hash(key)}"
        for kind in self._served_kinds():
            for obj in self._list_objects(KINDS[kind], namespace, selector):
                if not _controlled(obj):
                    return str(obj["metadata"]["name"])
        return None

    def _active_jobs(self) -> int:
        return sum(
            1
            for info, namespace, obj in self._managed_objects()
            if obj is not None and self._phase_of(info, namespace, obj) not in TERMINAL_PHASES
        )

    def _managed_objects(self) -> Iterator[tuple[KindInfo, str, dict[str, Any] | None]]:
        for namespace in self.settings.kubernetes.allowed_namespaces:
            for kind in self._served_kinds():
                for obj in self._list_objects(KINDS[kind], namespace, MANAGED_SELECTOR):
                    # A controller's child carries its job's labels (a TrainJob's batch Jobs):
                    # trainops' jobs are the objects no controller owns.
                    if not _controlled(obj):
                        yield KINDS[kind], namespace, obj

    def _phase_of(self, info: KindInfo, namespace: str, obj: dict[str, Any]) -> Phase:
        # List items carry no kind: the kind is the list's.
        if self._tombstone(namespace, obj["metadata"]["name"]):
            return "Cancelled"
        return reading.phase_without_pods(info.kind, obj)

    # -- read --------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobStatus:
        info, namespace, obj = self._locate(job_id)
        tombstone = self._tombstone(namespace, job_id)
        if tombstone is not None:
            return tombstone
        assert obj is not None
        return self._status(info, namespace, obj)

    def _status(self, info: KindInfo, namespace: str, obj: dict[str, Any]) -> JobStatus:
        name = obj["metadata"]["name"]
        pods = self._pods(info, namespace, name)
        nodes: list[dict[str, Any]] | None = None

        def load_nodes() -> list[dict[str, Any]]:
            nonlocal nodes
            if nodes is None:
                nodes = self._nodes()
            return nodes

        pending = [p for p in pods if _unschedulable(p)]
        never_fits = bool(pending) and not any(could_ever_fit(p, load_nodes()) for p in pending)
        read = reading.read(info.kind, obj, pods, never_fits=never_fits)
        sweep: SweepStatus | None = None
        if info.kind == "RayJob":  # the driver's log: every trial's lines, the sweep's events
            lines, _ = self._driver_log(info, namespace, pods)
            sweep = settled(sweep_of(lines), read.phase)
        else:
            master = read.replicas[0].name if read.replicas else None
            lines = self._log_lines(info, namespace, pods, master, PROGRESS_WINDOW_LINES)
        progress, run_id = progress_of(lines)
        if read.phase == "Failed" and read.failed_replica is not None:
            failed_lines = self._log_lines(
                info, namespace, pods, read.failed_replica, ERROR_WINDOW_LINES
            )
            if line := error_line_of(failed_lines):
                read.detail = f"{read.detail}; {redact_text(line)}" if read.detail else line
        spec = _spec_summary(obj)
        gpu_product = None
        if (spec.get("gpus_per_node") or spec.get("gpus_per_trial")) and read.node_names:
            gpu_product = gpu_product_of(read.node_names, load_nodes())
        return JobStatus(
            job_id=name,
            kind=info.kind,
            namespace=namespace,
            backend="cluster",
            phase=read.phase,
            message=sweep_message(sweep)
            if sweep is not None and read.phase == "Running"
            else job_message(
                read.phase,
                read.reason,
                redact_text(read.detail),
                progress,
                read.restarts,
                read.start_time,
                read.completion_time,
            ),
            conditions=read.conditions,
            replicas=read.replicas,
            restarts=read.restarts,
            created_at=read.created_at,
            start_time=read.start_time,
            completion_time=read.completion_time,
            progress=progress,
            mlflow_run_id=run_id,
            gpu_product=gpu_product,
            sweep=sweep,
            **_spec_status_fields(spec),
        )

    async def wait(self, job_id: str, timeout_s: float, seen: Phase | None = None) -> JobStatus:
        return await anyio.to_thread.run_sync(
            self._wait, job_id, timeout_s, seen, abandon_on_cancel=True
        )

    def _wait(self, job_id: str, timeout_s: float, seen: Phase | None) -> JobStatus:
        deadline = time.monotonic() + timeout_s
        first = self.get(job_id)
        if first.terminal or first.unschedulable or (seen is not None and first.phase != seen):
            return first
        info, namespace, obj = self._locate(job_id)
        if obj is None:
            return self.get(job_id)
        watch = PhaseWatch(self.api, info, namespace, job_id, deadline)
        try:
            for _ in watch.changes():
                status = self.get(job_id)
                if status.phase != first.phase or status.unschedulable:
                    return status
        finally:
            watch.stop()
        return self.get(job_id)

    def list(self, phase: Phase | None, limit: int) -> JobList:
        summaries: Summaries = []
        seen: set[str] = set()
        for info, namespace, obj in self._managed_objects():
            assert obj is not None
            name = obj["metadata"]["name"]
            seen.add(name)
            summaries.append(self._summary(info, namespace, obj))
        for namespace in self.settings.kubernetes.allowed_namespaces:
            for status in self._tombstones(namespace):
                if status.job_id not in seen:
                    summaries.append(_summary_of(status))
        matching = [s for s in summaries if phase is None or s.phase == phase]
        matching.sort(key=lambda s: s.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
        return JobList(jobs=matching[:limit], total=len(matching))

    def _summary(self, info: KindInfo, namespace: str, obj: dict[str, Any]) -> JobSummary:
        phase = self._phase_of(info, namespace, obj)
        spec = _spec_summary(obj)
        read = reading.read(info.kind, obj, [])
        return JobSummary(
            job_id=obj["metadata"]["name"],
            kind=info.kind,
            namespace=namespace,
            phase=phase,
            model=spec.get("model"),
            dataset=spec.get("dataset"),
            created_at=read.created_at,
            message=job_message(
                phase, read.reason, read.detail, None, 0, read.start_time, read.completion_time
            ),
        )

    def events(self, job_id: str, limit: int) -> JobEvents:
        info, namespace, obj = self._locate(job_id)
        pods = self._pods(info, namespace, job_id) if obj is not None else []
        replicas = _replica_labels(info.kind, pods)
        # A RayJob's submitter Job has its name; its RayCluster's events are KubeRay's too.
        cluster = ((obj or {}).get("status") or {}).get("rayClusterName")
        names = {job_id: None} | ({cluster: None} if cluster else {}) | replicas
        events: Events = []
        for involved, replica in names.items():
            with api_call(ApiCall("list", "events", namespace)):
                response = self.api.core.list_namespaced_event(
                    namespace,
                    field_selector=f"involvedObject.name={involved}",
                    _preload_content=False,
                    _request_timeout=self.api.timeout,
                )
            for item in json.loads(response.data).get("items") or []:
                if (event := _event(item, replica)) is not None:
                    events.append(event)
        events.sort(key=lambda e: e.time)
        return JobEvents(job_id=job_id, events=events[-limit:])

    def logs(
        self,
        job_id: str,
        replica: str | None,
        tail_lines: int,
        contains: str | None,
        previous: bool = False,
    ) -> LogTail:
        info, namespace, obj = self._locate(job_id)
        pods = self._pods(info, namespace, job_id) if obj is not None else []
        read = reading.read(info.kind, obj or {}, pods)
        names = [r.name for r in read.replicas]
        driver: tuple[Lines, bool] | None = None
        trials: Lines = []
        if info.kind == "RayJob" and names:
            # The driver is listed while its Ray cluster comes up, and its trials with it.
            if info.first_replica not in names:
                names = [info.first_replica, *names]
            driver = self._driver_log(info, namespace, pods)
            trials = trial_names(driver[0])
            names += trials
        if (
            not names
            and obj is not None
            and reading.phase_without_pods(info.kind, obj) not in TERMINAL_PHASES
        ):
            # Its pods are not made yet: nothing is written, as locally before a replica starts.
            first = info.first_replica
            if replica not in (None, first):
                raise NotFound(f"job {job_id} has no replica {replica!r} yet")
            return LogTail(job_id=job_id, replica=first, lines=[], truncated=False, replicas=[])
        if not names:
            raise NotFound(
                f"job {job_id} has no pods any more (removed after it ended); its post-mortem "
                "in the MLflow run keeps their last lines"
            )
        replica = replica or names[0]
        if replica not in names:
            raise NotFound(f"job {job_id} has no replica {replica!r}; its replicas are {names}")
        window = CONTAINS_WINDOW_LINES if contains else tail_lines
        if previous and replica in trials:
            raise NotFound(
                f"{replica} of job {job_id} is a trial: its lines are in the driver's log, which "
                "has no previous container of its own; leave out previous"
            )
        if driver is not None and not previous and replica in (info.first_replica, *trials):
            # The driver's lines, read once; a trial's are picked out of them.
            driver_lines, cut = driver
            lines: Lines = (
                driver_lines
                if replica == info.first_replica
                else trial_lines(driver_lines, replica)
            )
            truncated = cut or len(lines) > window
        else:
            lines = self._log_lines(info, namespace, pods, replica, window + 1, previous=previous)
            if previous and not lines:
                current = next((r for r in read.replicas if r.name == replica), None)
                if current is None or current.restarts == 0:
                    raise NotFound(f"replica {replica} of job {job_id} has not restarted")
            truncated = len(lines) > window
        lines, truncated = bounded(
            [redact_text(line) for line in lines[-window:]], truncated, tail_lines, contains
        )
        return LogTail(
            job_id=job_id,
            replica=replica,
            lines=lines,
            truncated=truncated,
            replicas=names,
            previous=previous,
        )

    def _log_lines(
        self,
        info: KindInfo,
        namespace: str,
        pods: Objects,
        replica: str | None,
        tail_lines: int,
        previous: bool = False,
    ) -> Lines:
        """A replica's last lines; none while its container has not started."""
        lines, _ = self._log_tail(info, namespace, pods, replica, tail_lines, previous=previous)
        return lines

    def _driver_log(self, info: KindInfo, namespace: str, pods: Objects) -> tuple[Lines, bool]:
        """A sweep's driver log, as far back as its trials are read, and whether it goes on
        further back."""
        lines, cut = self._log_tail(
            info, namespace, pods, info.first_replica, SWEEP_WINDOW_LINES + 1, SWEEP_WINDOW_BYTES
        )
        return lines[-SWEEP_WINDOW_LINES:], cut or len(lines) > SWEEP_WINDOW_LINES

    def _log_tail(
        self,
        info: KindInfo,
        namespace: str,
        pods: Objects,
        replica: str | None,
        tail_lines: int,
        limit_bytes: int = MAX_TAIL_BYTES,
        previous: bool = False,
    ) -> tuple[Lines, bool]:
        """A replica's last lines (its newest pod's), and whether the byte limit cut older ones
        off; none while its container has not started."""
        if replica is None:
            return [], False
        labels = _replica_labels(info.kind, pods)
        matching = [p for p in pods if labels[p["metadata"]["name"]] == replica]
        if not matching:
            return [], False
        pod = max(matching, key=lambda p: p["metadata"].get("creationTimestamp") or "")
        try:
            with api_call(ApiCall("get", "pods/log", namespace)):
                response = self.api.core.read_namespaced_pod_log(
                    pod["metadata"]["name"],
                    namespace,
                    container=_container_of(info.kind, pod),
                    tail_lines=tail_lines,
                    limit_bytes=limit_bytes,
                    previous=previous,
                    _preload_content=False,
                    _request_timeout=self.api.timeout,
                )
        except TrainopsError as e:
            if e.kind in (ErrorKind.INVALID_ARGUMENT, ErrorKind.NOT_FOUND):
                return [], False  # waiting to start, or no previous container: nothing yet
            raise
        data: bytes = response.data
        lines = data.decode(errors="replace").splitlines()
        cut = len(data) >= limit_bytes
        if cut and lines:
            lines = lines[1:]  # the first line was cut by the byte limit
        return lines, cut

    def capacity(self) -> Capacity:
        nodes = self._nodes()
        with api_call(ApiCall("list", "pods")):
            response = self.api.core.list_pod_for_all_namespaces(
                field_selector=LIVE_POD_SELECTOR,
                _preload_content=False,
                _request_timeout=self.api.timeout,
            )
        pods = list(json.loads(response.data).get("items") or [])
        return Capacity(backend="cluster", nodes=capacities(nodes, pods))

    # -- cancel ------------------------------------------------------------------------------

    async def delete(self, job_id: str) -> JobStatus:
        info, namespace, obj = await anyio.to_thread.run_sync(self._locate, job_id)
        if obj is None:  # cancelled before
            return await anyio.to_thread.run_sync(self.get, job_id)
        labels = obj["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/managed-by") != MANAGED_BY:
            raise JobRefused(f"job {job_id} is not managed by trainops; it is left alone")
        status = await anyio.to_thread.run_sync(self._status, info, namespace, obj)
        if status.terminal:
            return status
        await anyio.to_thread.run_sync(self._write_tombstone, status)
        await anyio.to_thread.run_sync(self._delete_object, info, namespace, job_id)
        with anyio.move_on_after(CANCEL_TIMEOUT_S):
            while await anyio.to_thread.run_sync(self._lingers, info, namespace, job_id):
                await anyio.sleep(0.5)
        return await anyio.to_thread.run_sync(self.get, job_id)

    def _lingers(self, info: KindInfo, namespace: str, name: str) -> bool:
        """Pods of the job still there, or its object (deleted in the foreground, it goes once
        what it owns is gone: a RayJob's RayCluster and submitter Job too)."""
        return bool(self._pods(info, namespace, name)) or (
            self._get_object(info, namespace, name) is not None
        )

    def _delete_object(self, info: KindInfo, namespace: str, name: str) -> None:
        try:
            with api_call(ApiCall("delete", info.plural, namespace, info.group)):
                # Foreground: the object goes once its pods are gone, so none is left behind.
                self.api.objects.delete_namespaced_custom_object(
                    info.group,
                    info.version,
                    namespace,
                    info.plural,
                    name,
                    propagation_policy="Foreground",
                    _request_timeout=self.api.timeout,
                )
        except NotFound:
            pass  # gone already

    # -- tombstones: what a cancelled job leaves behind ---------------------------------------

    def _write_tombstone(self, status: JobStatus) -> None:
        ended = status.model_copy(
            update={
                "phase": "Cancelled",
                "message": job_message("Cancelled", "Cancelled", "", None, 0, None, None),
                "completion_time": datetime.now(UTC),
                "replicas": [],
            }
        )
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": TOMBSTONE_PREFIX + status.job_id,
                "namespace": status.namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                    "app.kubernetes.io/part-of": "trainops",
                    "app.kubernetes.io/component": TOMBSTONE_COMPONENT,
                    JOB_ID_LABEL: status.job_id,
                },
            },
            "data": {"status.json": ended.model_dump_json()},
        }
        try:
            with api_call(ApiCall("create", "configmaps", status.namespace)):
                self.api.core.create_namespaced_config_map(
                    status.namespace,
                    body,
                    field_manager=FIELD_MANAGER,
                    field_validation="Strict",
                    _request_timeout=self.api.timeout,
                )
        except TrainopsError as e:
            if e.kind != ErrorKind.CONFLICT:  # a cancel retried: the first one's record stands
                raise

    def _tombstone(self, namespace: str, job_id: str) -> JobStatus | None:
        try:
            with api_call(ApiCall("get", "configmaps", namespace)):
                response = self.api.core.read_namespaced_config_map(
                    TOMBSTONE_PREFIX + job_id,
                    namespace,
                    _preload_content=False,
                    _request_timeout=self.api.timeout,
                )
        except NotFound:
            return None
        return _tombstone_status(json.loads(response.data))

    def _tombstones(self, namespace: str) -> Statuses:
        selector = f"{MANAGED_SELECTOR},app.kubernetes.io/component={TOMBSTONE_COMPONENT}"
        with api_call(ApiCall("list", "configmaps", namespace)):
            response = self.api.core.list_namespaced_config_map(
                namespace,
                label_selector=selector,
                _preload_content=False,
                _request_timeout=self.api.timeout,
            )
        found = (_tombstone_status(i) for i in json.loads(response.data).get("items") or [])
        return [s for s in found if s is not None]


_SPEC_STATUS_FIELDS = (
    "model",
    "dataset",
    "epochs",
    "nodes",
    "gpus_per_node",
    "gpu_type",
    "cpus",
    "memory",
)


def _spec_status_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec's fields a status shows; a sweep's per-trial resources, as the local backend
    shows them."""
    fields = {k: spec.get(k) for k in _SPEC_STATUS_FIELDS}
    fields["cpus"] = spec.get("cpus", spec.get("cpus_per_trial"))
    fields["memory"] = spec.get("memory", spec.get("memory_per_trial"))
    return fields


def _spec_summary(obj: dict[str, Any]) -> dict[str, Any]:
    raw = (obj.get("metadata", {}).get("annotations") or {}).get(SPEC_ANNOTATION)
    try:
        data = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _tombstone_status(config_map: dict[str, Any]) -> JobStatus | None:
    raw = (config_map.get("data") or {}).get("status.json")
    try:
        return JobStatus.model_validate_json(raw) if raw else None
    except ValueError:
        return None


def _summary_of(status: JobStatus) -> JobSummary:
    return JobSummary(
        job_id=status.job_id,
        kind=status.kind,
        namespace=status.namespace,
        phase=status.phase,
        model=status.model,
        dataset=status.dataset,
        created_at=status.created_at,
        message=status.message,
    )


def _replica_labels(kind: Kind, pods: Objects) -> dict[str, str]:
    """Each pod's replica name, by pod name."""
    return {name: replica_name(*replica) for name, replica in replicas_of(kind, pods).items()}


def _container_of(kind: Kind, pod: dict[str, Any]) -> str:
    """The container whose log is the replica's: the kind's own, else the pod's first (a
    RayJob's submitter and Ray workers)."""
    containers = [c.get("name", "") for c in pod.get("spec", {}).get("containers") or []]
    own = CONTAINER_NAME[kind]
    return own if own in containers or not containers else containers[0]


def _controlled(obj: dict[str, Any]) -> bool:
    return any(ref.get("controller") for ref in obj["metadata"].get("ownerReferences") or [])


def _unschedulable(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "PodScheduled"
        and c.get("status") == "False"
        and c.get("reason") == "Unschedulable"
        for c in pod.get("status", {}).get("conditions") or []
    )


def _event(item: dict[str, Any], replica: str | None) -> JobEvent | None:
    when = (
        item.get("lastTimestamp")
        or item.get("eventTime")
        or item.get("firstTimestamp")
        or item.get("metadata", {}).get("creationTimestamp")
    )
    at = reading.parse_time(when)
    if at is None:
        return None
    kind = item.get("type")
    return JobEvent(
        time=at,
        type=kind if kind in ("Normal", "Warning") else "Normal",
        reason=str(item.get("reason") or ""),
        message=redact_text(" ".join(str(item.get("message") or "").split())),
        replica=replica,
    )
