"""A job's phase, replicas and the reason a person needs, read from its object's conditions (a
RayJob's: its deployment and Ray job statuses) and its pods, as each kind's controller writes
them. Pure: dicts in, trainops' models out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from common.vocabulary import UNSCHEDULABLE, Phase
from mcp_servers.kubernetes.cluster.kinds import Replicas, replica_name, replicas_of
from mcp_servers.kubernetes.progress import signal_name
from mcp_servers.kubernetes.schemas import Condition, Kind, ReplicaStatus

# Each kind's conditions that end it, and what they mean.
SUCCEEDED_CONDITIONS = {"Complete", "SuccessCriteriaMet", "Succeeded"}
FAILED_CONDITIONS = {"Failed", "FailureTarget"}
# Waiting reasons that mean the container will not start as things are.
STUCK_WAITING = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
}
WAITING_FOR_RESOURCES = "WaitingForResources"
# A RayJob has no conditions: KubeRay's jobDeploymentStatus (the RayJob's) and jobStatus (the
# Ray job's, as the Ray dashboard reports it) say where it is.
RAY_FAILED = frozenset({"Failed", "ValidationFailed"})
RAY_SUSPENDED = frozenset({"Suspending", "Suspended"})
RAY_PODS_TELL = frozenset({"Initializing", "Submitted", "Running"})
"""The readings of a RayJob whose pods say what holds it (a node, an image, a crash loop)."""
RAY_MESSAGE_CHARS = 300


@dataclass
class Reading:
    phase: Phase
    reason: str
    detail: str
    conditions: list[Condition]
    replicas: list[ReplicaStatus]
    restarts: int
    created_at: datetime | None
    start_time: datetime | None
    completion_time: datetime | None
    failed_replica: str | None = None
    """The replica whose log says why the job failed (or crash-loops)."""
    node_names: list[str] = field(default_factory=list)


def read(
    kind: Kind, obj: dict[str, Any], pods: list[dict[str, Any]], never_fits: bool = False
) -> Reading:
    """`never_fits`: no node of the cluster could ever hold the Pending pods as they ask."""
    status = obj.get("status") or {}
    names = replicas_of(kind, pods)
    replicas, newest = _replicas(names, pods)
    restarts = sum(r.restarts for r in replicas)
    phase: Phase | None
    if kind == "RayJob":
        phase, reason, detail, conditions = ray_job_state(obj)
        restarts += _attempts_retried(status)
        pods_tell = reason in RAY_PODS_TELL
    else:
        conditions = [_condition(c) for c in status.get("conditions") or []]
        phase, reason, detail = _phase(conditions)
        pods_tell = phase is None
        if phase is None:
            running = any(p.get("status", {}).get("phase") == "Running" for p in newest)
            phase = "Running" if running else "Pending"
            reason, detail = ("Running", "") if running else ("Created", "")
    # On a node is what is paid for: the pods' start, not the object's (a Job's startTime is
    # set while its pod still waits for a node); the object's once the pods are gone.
    start = _earliest(p.get("status", {}).get("startTime") for p in pods) or (
        None if pods else parse_time(status.get("startTime"))
    )
    end = parse_time(status.get("completionTime") or status.get("endTime"))
    failed_replica = None
    if phase in ("Succeeded", "Failed") and end is None:
        end = next(
            (c.last_transition_time for c in reversed(conditions) if c.status == "True"), None
        )
    if phase == "Failed":
        # Past its deadline, a RayJob's driver was stopped: its exit is not why.
        deadline = kind == "RayJob" and reason == "DeadlineExceeded"
        culprit = None if deadline else _failed_pod(names, newest)
        if culprit is not None:
            failed_replica, line = culprit
            detail = line or detail
    elif pods_tell:
        problem = _pod_problem(names, newest)
        if problem is not None:
            reason, detail, failed_replica = problem
            if reason == UNSCHEDULABLE and not never_fits:
                reason = WAITING_FOR_RESOURCES
            if reason == UNSCHEDULABLE:
                conditions.append(
                    Condition(type="Pending", status="True", reason=reason, message=detail)
                )
    return Reading(
        phase=phase,
        reason=reason,
        detail=detail,
        conditions=conditions,
        replicas=replicas,
        restarts=restarts,
        created_at=parse_time(obj.get("metadata", {}).get("creationTimestamp")),
        start_time=start,
        completion_time=end,
        failed_replica=failed_replica,
        node_names=sorted({n for p in newest if (n := p.get("spec", {}).get("nodeName"))}),
    )


def phase_without_pods(kind: Kind, obj: dict[str, Any]) -> Phase:
    """The phase from the object alone (listings): its conditions, else its active counts."""
    if kind == "RayJob":
        return ray_job_state(obj)[0]
    phase, _, _ = _phase([_condition(c) for c in (obj.get("status") or {}).get("conditions") or []])
    if phase is not None:
        return phase
    status = obj.get("status") or {}
    if kind == "Job":
        running = bool(status.get("active")) and bool(status.get("ready"))
    elif kind == "PyTorchJob":
        running = any(
            c.get("type") in ("Running", "Restarting") and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
    else:
        running = any(j.get("ready") or j.get("active") for j in status.get("jobsStatus") or [])
    return "Running" if running else "Pending"


def _phase(conditions: list[Condition]) -> tuple[Phase | None, str, str]:
    """The phase the conditions settle, if they settle it (else the pods decide)."""
    true = [c for c in conditions if c.status == "True"]
    for c in true:
        if c.type in FAILED_CONDITIONS:
            return "Failed", c.reason or c.type, c.message
    for c in true:
        if c.type in SUCCEEDED_CONDITIONS:
            return "Succeeded", c.reason or c.type, c.message
    if any(c.type == "Suspended" for c in true):
        return "Pending", "Suspended", "the job is suspended"
    return None, "", ""


def ray_job_state(obj: dict[str, Any]) -> tuple[Phase, str, str, list[Condition]]:
    """A RayJob's phase, reason and detail, and its state as the one condition it has."""
    status = obj.get("status") or {}
    deployment = str(status.get("jobDeploymentStatus") or "")
    ray_job = str(status.get("jobStatus") or "")
    why = str(status.get("reason") or "")
    message = " ".join(str(status.get("message") or "").split())
    # Ray's message on a failed entry point goes on with the driver's last lines: the log's.
    message = message.split(", last available logs")[0][:RAY_MESSAGE_CHARS]
    phase: Phase
    if deployment == "Complete" and ray_job == "STOPPED":
        phase, reason = "Failed", "Stopped"
        detail = "the Ray job was stopped (ray job stop) before it finished"
    elif deployment == "Complete":
        phase, reason, detail = "Succeeded", "Complete", message
    elif deployment in RAY_FAILED:
        phase, reason, detail = "Failed", why or deployment, message
        if why == "DeadlineExceeded":
            deadline = (obj.get("spec") or {}).get("activeDeadlineSeconds")
            detail = (
                f"the sweep ran past its deadline (activeDeadlineSeconds {deadline} s) and "
                "KubeRay failed it; give it a larger max_seconds, or fewer trials"
            )
        elif why == "SubmissionFailed":
            detail = f"the submitter could not hand the job to its Ray cluster: {message}"
    elif deployment == "Retrying":
        attempts = int(status.get("failed") or 0)
        limit = (obj.get("spec") or {}).get("backoffLimit")
        of = f" of {int(limit) + 1}" if limit is not None else ""
        phase, reason = "Pending", "Retrying"
        detail = f"attempt {attempts}{of} failed; KubeRay starts the sweep again, which resumes it"
    elif deployment in RAY_SUSPENDED:
        phase, reason, detail = "Pending", "Suspended", "the job is suspended"
    elif deployment == "Running" and ray_job in ("", "PENDING"):
        phase, reason = "Pending", "Submitted"
        detail = "its Ray cluster is up; the driver is starting"
    elif deployment == "Running":
        # A Ray job that has ended is still Running until KubeRay has seen its submitter end.
        phase, reason, detail = "Running", "Running", ""
    elif deployment == "Waiting":
        phase, reason, detail = "Pending", "Waiting", "waiting for a job to be submitted to it"
    else:  # New, Initializing, or one KubeRay added since
        phase, reason, detail = "Pending", "Initializing", "its Ray cluster is starting"
    when = parse_time(status.get("endTime")) or parse_time(status.get("startTime"))
    condition = Condition(
        type=deployment or "New",
        status="True",
        reason=why or ray_job,
        message=message,
        last_transition_time=when,
    )
    return phase, reason, detail, [condition]


def _attempts_retried(status: dict[str, Any]) -> int:
    """The RayJob's failed attempts that KubeRay started again (status.failed counts them, and
    the last one too once it has failed for good)."""
    failed = int(status.get("failed") or 0)
    return max(0, failed - 1) if status.get("jobDeploymentStatus") in RAY_FAILED else failed


def _replicas(
    names: Replicas, pods: list[dict[str, Any]]
) -> tuple[list[ReplicaStatus], list[dict]]:
    """One status per replica (its newest pod); a Job's earlier pods are its retries."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for pod in pods:
        type_, index = names[pod["metadata"]["name"]]
        by_name.setdefault(replica_name(type_, index), []).append(pod)
    replicas, newest = [], []
    for name in sorted(by_name, key=_replica_order):
        attempts = sorted(by_name[name], key=lambda p: p["metadata"].get("creationTimestamp") or "")
        pod = attempts[-1]
        newest.append(pod)
        type_, index = names[pod["metadata"]["name"]]
        container = _container_status(pod)
        terminated = _terminated(container)
        pod_phase = pod.get("status", {}).get("phase", "Pending")
        replicas.append(
            ReplicaStatus(
                name=name,
                type=type_,
                index=index,
                phase=pod_phase
                if pod_phase in ("Pending", "Running", "Succeeded", "Failed")
                else "Pending",
                restarts=len(attempts) - 1 + int(container.get("restartCount", 0)),
                exit_code=terminated.get("exitCode"),
                reason=terminated.get("reason") or _waiting(container).get("reason"),
            )
        )
    return replicas, newest


def _replica_order(name: str) -> tuple[int, int]:
    type_, _, index = name.rpartition("-") if "-" in name else (name, "", "0")
    rank = {"master": 0, "trainer": 0, "node": 0, "driver": 0, "head": 1, "worker": 2}.get(type_, 3)
    return rank, int(index) if index.isdigit() else 0


def _pod_problem(names: Replicas, pods: list[dict[str, Any]]) -> tuple[str, str, str | None] | None:
    """(reason, detail, replica) of the first pod that is stuck, the way kubectl describe says."""
    for pod in pods:
        name = replica_name(*names[pod["metadata"]["name"]])
        scheduled = next(
            (
                c
                for c in pod.get("status", {}).get("conditions") or []
                if c.get("type") == "PodScheduled"
            ),
            None,
        )
        if (
            scheduled
            and scheduled.get("status") == "False"
            and scheduled.get("reason") == UNSCHEDULABLE
        ):
            return UNSCHEDULABLE, " ".join(str(scheduled.get("message", "")).split()), name
        container = _container_status(pod)
        waiting = _waiting(container)
        if waiting.get("reason") in STUCK_WAITING:
            detail = " ".join(str(waiting.get("message", "")).split())
            if waiting["reason"] == "CrashLoopBackOff":
                detail = _exit_line(_terminated(container, last=True)) or detail
            return waiting["reason"], f"{name}: {detail}" if detail else name, name
    return None


def _failed_pod(names: Replicas, pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The replica that failed and a line on how (exit code, OOMKilled, termination message)."""
    for pod in pods:
        container = _container_status(pod)
        terminated = _terminated(container) or _terminated(container, last=True)
        if terminated and terminated.get("exitCode", 0) != 0:
            name = replica_name(*names[pod["metadata"]["name"]])
            return name, f"{name} {_exit_line(terminated)}"
    return None


def _exit_line(terminated: dict[str, Any]) -> str:
    if not terminated:
        return ""
    code = int(terminated.get("exitCode", 0))
    reason = terminated.get("reason") or "Error"
    how = f"exited with code {code}"
    if reason == "OOMKilled":
        how = f"was OOMKilled (exit code {code}); ask for more memory"
    elif code > 128:
        how += f", {signal_name(code - 128)}"
    message = " ".join(str(terminated.get("message") or "").split())
    return f"{how}: {message[:300]}" if message else how


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return statuses[0] if statuses else {}


def _terminated(container: dict[str, Any], last: bool = False) -> dict[str, Any]:
    state = container.get("lastState" if last else "state") or {}
    return state.get("terminated") or {}


def _waiting(container: dict[str, Any]) -> dict[str, Any]:
    return (container.get("state") or {}).get("waiting") or {}


def _condition(data: dict[str, Any]) -> Condition:
    status = data.get("status", "Unknown")
    return Condition(
        type=str(data.get("type", "")),
        status=status if status in ("True", "False") else "Unknown",
        reason=str(data.get("reason") or ""),
        message=" ".join(str(data.get("message") or "").split()),
        last_transition_time=parse_time(data.get("lastTransitionTime")),
    )


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _earliest(values: Any) -> datetime | None:
    times = [t for v in values if (t := parse_time(v)) is not None]
    return min(times) if times else None
