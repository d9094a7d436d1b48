"""Finding and stopping a local job's processes, wherever they ended up in the process tree.

torchrun starts its workers in sessions of their own, so a replica is not one process group.
Every process of a replica carries TRAINOPS_REPLICA=<job>/<replica> in its environment (children
inherit it), which finds them all, orphans included, as a container's cgroup would.
"""

from __future__ import annotations

import contextlib
import os
import signal

import psutil

REPLICA_MARKER = "TRAINOPS_REPLICA"


def marker(job_id: str, replica: str) -> str:
    return f"{job_id}/{replica}"


def job_processes(job_id: str, replicas: set[str] | None = None) -> list[psutil.Process]:
    """Live processes of the job (of the given replicas only, when named)."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            value = proc.environ().get(REPLICA_MARKER, "")
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        owner, _, replica = value.partition("/")
        if owner == job_id and (replicas is None or replica in replicas):
            found.append(proc)
    return found


def terminate(processes: list[psutil.Process], grace_s: float) -> dict[int, int]:
    """SIGTERM, then SIGKILL whatever is still there after `grace_s` seconds. Returns the exit
    status of each process that was our child (waiting reaps it, so its Popen can't learn it):
    negative for a signal, as subprocess reports it."""
    for proc in processes:
        _send(proc, signal.SIGTERM)
    gone, alive = psutil.wait_procs(processes, timeout=grace_s)
    for proc in alive:
        _send(proc, signal.SIGKILL)
    gone += psutil.wait_procs(alive, timeout=5)[0]
    return {proc.pid: proc.returncode for proc in gone if proc.returncode is not None}


def kill(processes: list[psutil.Process]) -> None:
    """SIGKILL at once, as the OOM killer does. No waiting here: waiting would reap our own
    children and hide their exit status from the Popen that started them."""
    for proc in processes:
        _send(proc, signal.SIGKILL)


def tree_memory_bytes(pid: int) -> int:
    """Anonymous memory (RSS less file-backed and shared pages) of a process and its descendants:
    what a container's memory limit is mostly spent on, without counting torch's shared libraries
    once per worker."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            info = proc.memory_info()
            total += max(0, info.rss - info.shared)
    return total


def _send(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
        proc.send_signal(sig)
