from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mcp_servers.kubernetes.local.processes import job_processes, terminate
from mcp_servers.kubernetes.local.store import JobStore


@pytest.fixture(autouse=True)
def no_job_outlives_its_test(tmp_path: Path) -> Iterator[None]:
    """A failed test must not leave supervisors and training processes running."""
    yield
    for job in JobStore(tmp_path / "jobs").jobs():
        state = job.read_state()
        leftovers = job_processes(job.job_id)
        if state.supervisor is not None and psutil.pid_exists(state.supervisor.pid):
            try:
                supervisor = psutil.Process(state.supervisor.pid)
                if abs(supervisor.create_time() - state.supervisor.create_time) < 0.01:
                    leftovers.append(supervisor)
            except psutil.NoSuchProcess:
                pass
        terminate(leftovers, grace_s=5)
