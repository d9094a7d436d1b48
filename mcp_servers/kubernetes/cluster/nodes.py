"""Nodes as the scheduler sees them: allocatable minus the requests of the pods bound to them,
and whether a pod could ever be placed on one (selector, taints, size), busy or not."""

from __future__ import annotations

from typing import Any

from common.gpus import GPU_PRODUCT_LABEL
from common.quantities import parse_bytes, parse_cpu
from mcp_servers.kubernetes.schemas import NodeCapacity, ResourceAmounts

GPU_RESOURCE = "nvidia.com/gpu"
ENDED_POD_PHASES = ("Succeeded", "Failed")


def requests_of(pod: dict[str, Any]) -> ResourceAmounts:
    """What a pod asks for: the sum of its containers, or its largest init container if larger."""
    spec = pod.get("spec", {})

    def total(containers: list[dict[str, Any]]) -> ResourceAmounts:
        cpus, memory, gpus = 0.0, 0, 0
        for container in containers:
            resources = container.get("resources") or {}
            requests = resources.get("requests") or {}
            limits = resources.get("limits") or {}
            cpus += parse_cpu(str(requests.get("cpu", limits.get("cpu", "0"))))
            memory += parse_bytes(str(requests.get("memory", limits.get("memory", "0"))))
            gpus += int(requests.get(GPU_RESOURCE, limits.get(GPU_RESOURCE, 0)))
        return ResourceAmounts(cpus=cpus, memory_bytes=memory, gpus=gpus)

    main = total(spec.get("containers") or [])
    for init in spec.get("initContainers") or []:
        one = total([init])
        main = ResourceAmounts(
            cpus=max(main.cpus, one.cpus),
            memory_bytes=max(main.memory_bytes, one.memory_bytes),
            gpus=max(main.gpus, one.gpus),
        )
    return main


def allocatable_of(node: dict[str, Any]) -> ResourceAmounts:
    allocatable = node.get("status", {}).get("allocatable") or {}
    return ResourceAmounts(
        cpus=parse_cpu(str(allocatable.get("cpu", "0"))),
        memory_bytes=parse_bytes(str(allocatable.get("memory", "0"))),
        gpus=int(allocatable.get(GPU_RESOURCE, 0)),
    )


def capacities(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[NodeCapacity]:
    """Per schedulable node: allocatable, and what the requests of its live pods leave free."""
    used: dict[str, ResourceAmounts] = {}
    for pod in pods:
        node = pod.get("spec", {}).get("nodeName")
        if not node or pod.get("status", {}).get("phase") in ENDED_POD_PHASES:
            continue
        asked = requests_of(pod)
        before = used.get(node, ResourceAmounts(cpus=0, memory_bytes=0, gpus=0))
        used[node] = ResourceAmounts(
            cpus=before.cpus + asked.cpus,
            memory_bytes=before.memory_bytes + asked.memory_bytes,
            gpus=before.gpus + asked.gpus,
        )
    result = []
    for node in nodes:
        if node.get("spec", {}).get("unschedulable"):
            continue  # cordoned
        name = node["metadata"]["name"]
        allocatable = allocatable_of(node)
        taken = used.get(name, ResourceAmounts(cpus=0, memory_bytes=0, gpus=0))
        result.append(
            NodeCapacity(
                name=name,
                allocatable=allocatable,
                free=ResourceAmounts(
                    cpus=max(0.0, allocatable.cpus - taken.cpus),
                    memory_bytes=max(0, allocatable.memory_bytes - taken.memory_bytes),
                    gpus=max(0, allocatable.gpus - taken.gpus),
                ),
                gpu_type=node.get("metadata", {}).get("labels", {}).get(GPU_PRODUCT_LABEL),
            )
        )
    return result


def could_ever_fit(pod: dict[str, Any], nodes: list[dict[str, Any]]) -> bool:
    """Whether some node could hold the pod once it is empty: selector, taints and size."""
    asked = requests_of(pod)
    return any(_holds(node, pod, asked) for node in nodes)


def _holds(node: dict[str, Any], pod: dict[str, Any], asked: ResourceAmounts) -> bool:
    spec = pod.get("spec", {})
    labels = node.get("metadata", {}).get("labels") or {}
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(key) != value for key, value in selector.items()):
        return False
    tolerations = spec.get("tolerations") or []
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(
            _tolerates(t, taint) for t in tolerations
        ):
            return False
    size = allocatable_of(node)
    return (
        asked.cpus <= size.cpus
        and asked.memory_bytes <= size.memory_bytes
        and asked.gpus <= size.gpus
    )


def _tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("operator") == "Exists":
        return not toleration.get("key") or toleration["key"] == taint.get("key")
    return toleration.get("key") == taint.get("key") and toleration.get("value") == taint.get(
        "value"
    )


def gpu_product_of(node_names: list[str], nodes: list[dict[str, Any]]) -> str | None:
    """The GPU product label of the nodes a job's pods ran on (the first that has one)."""
    labels = {n["metadata"]["name"]: n["metadata"].get("labels") or {} for n in nodes}
    return next(
        (p for name in node_names if (p := labels.get(name, {}).get(GPU_PRODUCT_LABEL))), None
    )
