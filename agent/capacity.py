"""Can a job ever run here? Asked of the cluster's capacity before launch, so that a request
no node can hold is refused with what there is, not left Pending for good."""

from __future__ import annotations

from common.gpus import gpu_type_of_product
from common.quantities import parse_bytes
from mcp_servers.kubernetes.schemas import (
    Capacity,
    NodeCapacity,
    ResourceAmounts,
    SweepSpec,
    TrainingJobSpec,
)


def never_fits(spec: TrainingJobSpec, capacity: Capacity) -> str | None:
    """Why no placement of the job's replicas fits the nodes' allocatable resources, in words
    with what is there; None when one does (now or once other jobs finish)."""
    replica = ResourceAmounts(
        cpus=spec.cpus, memory_bytes=parse_bytes(spec.memory), gpus=spec.gpus_per_node
    )
    return never_fits_replicas(spec.nodes, replica, spec.gpu_type, capacity)


def sweep_never_fits(spec: SweepSpec, capacity: Capacity) -> str | None:
    """As never_fits, for a sweep's concurrent trials (one worker pod each)."""
    trial = ResourceAmounts(
        cpus=spec.cpus_per_trial,
        memory_bytes=parse_bytes(spec.memory_per_trial),
        gpus=spec.gpus_per_trial,
    )
    return never_fits_replicas(spec.concurrent, trial, spec.gpu_type, capacity)


def never_fits_replicas(
    count: int, replica: ResourceAmounts, gpu_type: str | None, capacity: Capacity
) -> str | None:
    nodes = [n for n in capacity.nodes if _type_matches(gpu_type, n)]
    if capacity.backend == "local":  # one machine holds every replica
        need = ResourceAmounts(
            cpus=replica.cpus * count,
            memory_bytes=replica.memory_bytes * count,
            gpus=replica.gpus * count,
        )
        if any(_holds(n.allocatable, need) for n in nodes):
            return None
        asked = _amounts(need)
    else:
        slots = sum(_replicas_held(n.allocatable, replica) for n in nodes)
        if slots >= count:
            return None
        asked = f"{count} x ({_amounts(replica)})"
    kind = f"{gpu_type} " if gpu_type else ""
    return (
        f"no node here can ever hold it: it needs {asked}{f' on {kind}nodes' if kind else ''}; "
        f"there is {describe(capacity)}"
    )


def describe(capacity: Capacity) -> str:
    """What the nodes have, e.g. 'gpu-1: 8 CPUs, 31.3 GiB, 2 L4 GPUs'."""
    if not capacity.nodes:
        return "no node"
    return "; ".join(f"{n.name}: {_amounts(n.allocatable, n.gpu_type)}" for n in capacity.nodes)


def _type_matches(gpu_type: str | None, node: NodeCapacity) -> bool:
    if gpu_type is None:
        return True
    return gpu_type_of_product(node.gpu_type) == gpu_type


def _holds(allocatable: ResourceAmounts, need: ResourceAmounts) -> bool:
    return (
        need.gpus <= allocatable.gpus
        and need.cpus <= allocatable.cpus + 1e-9
        and need.memory_bytes <= allocatable.memory_bytes
    )


def _replicas_held(allocatable: ResourceAmounts, replica: ResourceAmounts) -> int:
    ratios = [allocatable.cpus / replica.cpus if replica.cpus else float("inf")]
    ratios.append(
        allocatable.memory_bytes / replica.memory_bytes if replica.memory_bytes else float("inf")
    )
    ratios.append(allocatable.gpus / replica.gpus if replica.gpus else float("inf"))
    held = min(ratios)
    return int(held + 1e-9) if held != float("inf") else 1_000_000


def _amounts(amounts: ResourceAmounts, gpu_type: str | None = None) -> str:
    kind = f"{gpu_type} " if gpu_type and amounts.gpus else ""
    gpus = f"{amounts.gpus} {kind}GPUs"
    return f"{amounts.cpus:g} CPUs, {amounts.memory_bytes / 2**30:.1f} GiB, {gpus}"
