"""Admission: what the server refuses, whoever asks (agent or not)."""

from __future__ import annotations

from mcp_servers.kubernetes.backend import JobError
from mcp_servers.kubernetes.schemas import TrainingJobSpec
from mcp_servers.settings import Settings


def admit(spec: TrainingJobSpec, settings: Settings) -> str:
    """The namespace the job goes to, or a JobError saying which rule it breaks and the fix."""
    policy = settings.kubernetes
    namespace = spec.namespace or settings.namespace
    if namespace not in policy.allowed_namespaces:
        allowed = ", ".join(policy.allowed_namespaces)
        raise JobError(f"namespace {namespace!r} is not allowed; use one of {allowed}")
    image = spec.image or policy.default_image
    if not image.startswith(tuple(policy.allowed_image_prefixes)):
        raise JobError(
            f"image {image!r} is not from an allowed registry; use an image under "
            f"{' or '.join(policy.allowed_image_prefixes)} (or omit image for the default)"
        )
    if spec.total_gpus > policy.max_gpus_per_job:
        raise JobError(
            f"{spec.total_gpus} GPUs ({spec.nodes} nodes x {spec.gpus_per_node}) exceeds the cap "
            f"of {policy.max_gpus_per_job} GPUs per job; ask for fewer nodes or GPUs per node"
        )
    if spec.nodes > policy.max_replicas:
        raise JobError(
            f"{spec.nodes} replicas exceeds the cap of {policy.max_replicas}; ask for fewer nodes"
        )
    ranks = spec.nodes * spec.procs_per_node
    if spec.batch_size % ranks:  # training would refuse it at start, on every retry
        raise JobError(
            f"batch_size {spec.batch_size} does not split over {ranks} ranks "
            f"({spec.nodes} nodes x {spec.procs_per_node} processes); use a multiple of {ranks}"
        )
    return namespace
