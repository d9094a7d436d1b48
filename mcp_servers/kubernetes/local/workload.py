"""Read a rendered manifest the way its controller would: which replicas, with what pod.

batch/v1 Job: one pod. PyTorchJob: Master + Workers from pytorchReplicaSpecs. TrainJob: numNodes
"node" replicas of the torch runtime. RayJob: its driver. The result is what the supervisor runs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from common.gpus import GPU_PRODUCT_LABEL
from common.quantities import parse_bytes, parse_cpu
from training.errors import CONFIG_ERROR_EXIT

DRIVER_REPLICA = "driver"
"""A sweep's (RayJob's) one local replica: the Tune driver."""


@dataclass(frozen=True)
class Mount:
    mount_path: str
    volume: dict[str, Any]


@dataclass(frozen=True)
class PodPlan:
    container_name: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    secret_env: dict[str, tuple[str, str]]
    """Variable -> (Secret, key), resolved when the replica starts, as the kubelet does."""
    mounts: list[Mount]
    cpus: float
    memory_bytes: int
    gpus: int
    memory_limit_bytes: int | None = None
    """limits.memory: over it, the replica is OOMKilled."""
    node_selector: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplicaPlan:
    name: str
    type: str
    index: int
    pod: PodPlan


@dataclass(frozen=True)
class Workload:
    kind: str
    replicas: list[ReplicaPlan]
    restart_on_failure: bool
    backoff_limit: int
    active_deadline_seconds: int | None
    operator_env: bool = field(default=True)
    """Whether the controller injects MASTER_ADDR/RANK/PET_* (PyTorchJob, TrainJob)."""
    fail_job_exit_codes: frozenset[int] = frozenset()
    """A Job's podFailurePolicy FailJob rules: exit codes that fail it without a retry."""

    @property
    def cpus(self) -> float:
        return sum(r.pod.cpus for r in self.replicas)

    @property
    def memory_bytes(self) -> int:
        return sum(r.pod.memory_bytes for r in self.replicas)

    @property
    def gpus(self) -> int:
        return sum(r.pod.gpus for r in self.replicas)

    @property
    def gpu_product(self) -> str | None:
        """The GPU product its pods select (nvidia.com/gpu.product), if they select one."""
        return next(
            (p for r in self.replicas if (p := r.pod.node_selector.get(GPU_PRODUCT_LABEL))), None
        )


def workload_from_manifest(manifest: dict[str, Any]) -> Workload:
    kind = manifest["kind"]
    spec = manifest["spec"]
    if kind == "Job":
        pod = _pod_plan(spec["template"]["spec"])
        return Workload(
            kind=kind,
            replicas=[ReplicaPlan(name="trainer-0", type="Trainer", index=0, pod=pod)],
            # restartPolicy Never: a failed pod is replaced by a new one, up to backoffLimit.
            restart_on_failure=True,
            backoff_limit=spec.get("backoffLimit", 6),
            active_deadline_seconds=spec.get("activeDeadlineSeconds"),
            operator_env=False,
            fail_job_exit_codes=_fail_job_exit_codes(spec.get("podFailurePolicy") or {}),
        )
    if kind == "PyTorchJob":
        replicas: list[ReplicaPlan] = []
        restart = True
        for type_ in ("Master", "Worker"):
            replica_spec = spec["pytorchReplicaSpecs"].get(type_)
            if not replica_spec:
                continue
            restart = restart and replica_spec.get("restartPolicy", "Never") in (
                "OnFailure",
                "Always",
            )
            pod = _pod_plan(replica_spec["template"]["spec"])
            replicas += [
                ReplicaPlan(name=f"{type_.lower()}-{i}", type=type_, index=i, pod=pod)
                for i in range(replica_spec.get("replicas", 1))
            ]
        run_policy = spec.get("runPolicy", {})
        return Workload(
            kind=kind,
            replicas=replicas,
            restart_on_failure=restart,
            backoff_limit=run_policy.get("backoffLimit", 6),
            active_deadline_seconds=run_policy.get("activeDeadlineSeconds"),
        )
    if kind == "TrainJob":
        trainer = spec["trainer"]
        override: dict[str, Any] = next(iter(spec.get("podSpecOverrides", [])), {})
        volumes = {v["name"]: v for v in override.get("volumes", [])}
        container: dict[str, Any] = next(iter(override.get("containers", [])), {})
        resources = trainer.get("resourcesPerNode", {})
        pod = PodPlan(
            container_name="node",
            command=list(trainer.get("command", [])),
            args=list(trainer.get("args", [])),
            **_env(trainer.get("env", [])),
            mounts=[
                Mount(m["mountPath"], volumes[m["name"]]) for m in container.get("volumeMounts", [])
            ],
            **_resources(resources),
            node_selector=dict(override.get("nodeSelector") or {}),
        )
        return Workload(
            kind=kind,
            replicas=[
                ReplicaPlan(name=f"node-{i}", type="Node", index=i, pod=pod)
                for i in range(trainer.get("numNodes", 1))
            ],
            # The torch runtime's JobSet restarts the whole group on failure.
            restart_on_failure=True,
            backoff_limit=6,
            active_deadline_seconds=None,
        )
    if kind == "RayJob":
        return _rayjob(spec)
    raise ValueError(f"the local backend cannot run kind {kind!r}")


def _rayjob(spec: dict[str, Any]) -> Workload:
    """A RayJob here: its entrypoint as one `driver` process with the head's env and volumes
    and the runtime env's variables; the driver's `ray.init()` starts a Ray on this machine
    sized to the trials. What is reserved is the worker group's (the trials'); the head's pod,
    which holds the GCS and the driver on a cluster, is this machine's few idle threads here.
    backoffLimit retries the driver, which resumes the sweep."""
    cluster = spec.get("rayClusterSpec") or {}
    head = _pod_plan(cluster["headGroupSpec"]["template"]["spec"])
    runtime_env = yaml.safe_load(spec.get("runtimeEnvYAML") or "") or {}
    env = {**head.env, **{str(k): str(v) for k, v in (runtime_env.get("env_vars") or {}).items()}}
    cpus, memory, gpus = 0.0, 0, 0
    selector = dict(head.node_selector)
    for group in cluster.get("workerGroupSpecs") or []:
        worker = _pod_plan(group["template"]["spec"])
        count = group.get("replicas", group.get("minReplicas", 1))
        cpus += worker.cpus * count
        memory += worker.memory_bytes * count
        gpus += worker.gpus * count
        selector.update(worker.node_selector)
    driver = PodPlan(
        container_name=head.container_name,
        command=shlex.split(spec["entrypoint"]),
        args=[],
        env=env,
        secret_env=head.secret_env,
        mounts=head.mounts,
        cpus=cpus,
        memory_bytes=memory,
        gpus=gpus,
        node_selector=selector,
    )
    return Workload(
        kind="RayJob",
        replicas=[ReplicaPlan(name=DRIVER_REPLICA, type="Driver", index=0, pod=driver)],
        restart_on_failure=True,
        backoff_limit=spec.get("backoffLimit", 0),
        active_deadline_seconds=spec.get("activeDeadlineSeconds"),
        operator_env=False,
        # Bad flags or data fail the driver before Ray starts, the same way every time.
        fail_job_exit_codes=frozenset({CONFIG_ERROR_EXIT}),
    )


def _fail_job_exit_codes(policy: dict[str, Any]) -> frozenset[int]:
    """The exit codes of the `In` FailJob rules (the only kind trainops renders)."""
    codes: set[int] = set()
    for rule in policy.get("rules") or []:
        on_exit = rule.get("onExitCodes") or {}
        if rule.get("action") == "FailJob" and on_exit.get("operator") == "In":
            codes.update(int(code) for code in on_exit.get("values") or [])
    return frozenset(codes)


def _pod_plan(pod_spec: dict[str, Any]) -> PodPlan:
    container = pod_spec["containers"][0]
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    return PodPlan(
        container_name=container["name"],
        command=list(container.get("command", [])),
        args=list(container.get("args", [])),
        **_env(container.get("env", [])),
        mounts=[
            Mount(m["mountPath"], volumes[m["name"]]) for m in container.get("volumeMounts", [])
        ],
        **_resources(container.get("resources", {})),
        node_selector=dict(pod_spec.get("nodeSelector") or {}),
    )


def _env(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A container's env: plain values, and references to the keys of Secrets."""
    env: dict[str, str] = {}
    secrets: dict[str, tuple[str, str]] = {}
    for entry in entries:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None:
            secrets[entry["name"]] = (ref["name"], ref["key"])
        else:
            env[entry["name"]] = entry.get("value", "")
    return {"env": env, "secret_env": secrets}


def _resources(resources: dict[str, Any]) -> dict[str, Any]:
    requests = resources.get("requests", {})
    limits = resources.get("limits", {})
    return {
        "cpus": parse_cpu(str(requests.get("cpu", "1"))),
        "memory_bytes": parse_bytes(str(requests.get("memory", limits.get("memory", "0")))),
        "gpus": int(limits.get("nvidia.com/gpu", requests.get("nvidia.com/gpu", 0))),
        "memory_limit_bytes": parse_bytes(str(limits["memory"])) if "memory" in limits else None,
    }
