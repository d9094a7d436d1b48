"""This machine as a one-node cluster: allocatable CPUs, memory and GPUs, and what jobs reserve."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil

from mcp_servers.kubernetes.local.store import JobStore, ProcessRef
from mcp_servers.kubernetes.schemas import NodeCapacity, ResourceAmounts

SUPERVISOR_MODULE = "mcp_servers.kubernetes.local.supervisor"


@dataclass(frozen=True)
class Machine:
    cpus: float
    memory_bytes: int
    gpu_ids: tuple[int, ...]
    gpu_type: str | None


def this_machine() -> Machine:
    cpus = float(len(os.sched_getaffinity(0)))
    gpus, gpu_type = _nvidia_gpus()
    return Machine(cpus, psutil.virtual_memory().total, gpus, gpu_type)


def _nvidia_gpus() -> tuple[tuple[int, ...], str | None]:
    try:
        import pynvml
    except ImportError:
        return (), None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return (), None
    try:
        count = pynvml.nvmlDeviceGetCount()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0)) if count else None
        return tuple(range(count)), name if isinstance(name, str) or name is None else name.decode()
    finally:
        pynvml.nvmlShutdown()


def alive(ref: ProcessRef | None) -> bool:
    if ref is None:
        return False
    try:
        return abs(psutil.Process(ref.pid).create_time() - ref.create_time) < 0.01
    except psutil.NoSuchProcess:
        return False


def is_supervisor_of(ref: ProcessRef, job_path: Path) -> bool:
    """Whether `ref` is alive and is this job's supervisor (its command names the job's folder):
    a pid on disk that trainops cannot prove it started is never signalled."""
    if not alive(ref):
        return False
    try:
        command = psutil.Process(ref.pid).cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return SUPERVISOR_MODULE in command and str(job_path) in command


@dataclass(frozen=True)
class Reservations:
    cpus: float
    memory_bytes: int
    gpu_ids: frozenset[int]


def reservations(store: JobStore, exclude: str | None = None) -> Reservations:
    """What running local jobs hold, as the scheduler counts requests (not actual use)."""
    cpus, memory, gpu_ids = 0.0, 0, set()
    for job, state in store.readable():
        if job.job_id == exclude:
            continue
        if state.phase == "Running" and state.reserved and alive(state.supervisor):
            cpus += state.reserved.cpus
            memory += state.reserved.memory_bytes
            gpu_ids.update(state.gpu_ids)
    return Reservations(cpus, memory, frozenset(gpu_ids))


def node_capacity(store: JobStore) -> NodeCapacity:
    machine = this_machine()
    used = reservations(store)
    return NodeCapacity(
        name=socket.gethostname(),
        allocatable=ResourceAmounts(
            cpus=machine.cpus, memory_bytes=machine.memory_bytes, gpus=len(machine.gpu_ids)
        ),
        free=ResourceAmounts(
            cpus=max(0.0, machine.cpus - used.cpus),
            memory_bytes=max(0, machine.memory_bytes - used.memory_bytes),
            gpus=len(set(machine.gpu_ids) - used.gpu_ids),
        ),
        gpu_type=machine.gpu_type,
    )
