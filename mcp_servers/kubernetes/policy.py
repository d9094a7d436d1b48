"""Admission: what the server refuses, whoever asks (agent or not)."""

from __future__ import annotations

from common.errors import InvalidArgument
from common.oci import image_name
from common.settings import Settings
from common.vocabulary import batch_split_problem, ranks
from mcp_servers.kubernetes.backend import JobRefused
from mcp_servers.kubernetes.schemas import SweepSpec, TrainingJobSpec


def _place(spec: TrainingJobSpec | SweepSpec, settings: Settings) -> str:
    """The namespace and image rules every kind obeys; the namespace it goes to."""
    policy = settings.kubernetes
    namespace = spec.namespace or settings.namespace
    if namespace not in policy.allowed_namespaces:
        allowed = ", ".join(policy.allowed_namespaces)
        raise JobRefused(f"namespace {namespace!r} is not allowed; use one of {allowed}")
    image = spec.image or policy.default_image
    if not image_name(image).startswith(tuple(policy.allowed_image_prefixes)):
        raise JobRefused(
            f"image {image!r} is not from an allowed registry; use an image under "
            f"{' or '.join(policy.allowed_image_prefixes)} (or omit image for the default)"
        )
    return namespace


def admit_sweep(spec: SweepSpec, settings: Settings) -> str:
    """As `admit`, for a sweep: its concurrent trials are what the caps count."""
    namespace = _place(spec, settings)
    policy = settings.kubernetes
    if spec.total_gpus > policy.max_gpus_per_job:
        raise JobRefused(
            f"{spec.concurrent} concurrent trials x {spec.gpus_per_trial} GPUs exceeds the cap "
            f"of {policy.max_gpus_per_job} GPUs per job; run fewer trials at once"
        )
    if spec.concurrent > policy.max_replicas:
        raise JobRefused(
            f"{spec.concurrent} concurrent trials exceeds the cap of {policy.max_replicas} "
            "replicas; run fewer trials at once"
        )
    return namespace


def admit(spec: TrainingJobSpec, settings: Settings) -> str:
    """The namespace the job goes to; JobRefused says which rule the spec breaks, and the fix."""
    policy = settings.kubernetes
    namespace = _place(spec, settings)
    if spec.total_gpus > policy.max_gpus_per_job:
        raise JobRefused(
            f"{spec.total_gpus} GPUs ({spec.nodes} nodes x {spec.gpus_per_node}) exceeds the cap "
            f"of {policy.max_gpus_per_job} GPUs per job; ask for fewer nodes or GPUs per node"
        )
    if spec.nodes > policy.max_replicas:
        raise JobRefused(
            f"{spec.nodes} replicas exceeds the cap of {policy.max_replicas}; ask for fewer nodes"
        )
    # Training would refuse it at start, on every retry.
    world_size = ranks(spec.nodes, spec.gpus_per_node)
    if problem := batch_split_problem("batch_size", spec.batch_size, world_size):
        raise InvalidArgument(
            f"{problem} ({spec.nodes} nodes x {spec.procs_per_node} processes per node)"
        )
    return namespace
