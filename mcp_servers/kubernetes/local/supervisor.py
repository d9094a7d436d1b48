"""The detached supervisor of one local job: `python -m mcp_servers.kubernetes.local.supervisor D`.

It plays kube-scheduler, kubelet and the training operator for its job: waits until this machine
has the requested CPUs/memory/GPUs free, starts one process per replica with the env the Training
Operator sets, restarts the replicas as a group on failure (as JobSet and a torchrun gang need)
until backoffLimit, enforces activeDeadlineSeconds and memory limits (a replica over its limit
is OOMKilled, as the kernel would do to its container), and records everything in status.json and
events.jsonl. It outlives the MCP server that started it; SIGTERM cancels the job.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

from common.files import write_atomic
from common.gpus import GPU_PRODUCT_LABEL, gpu_type_of_product
from common.net import free_port
from common.settings import Settings, SettingsError, load_settings
from common.telemetry import MLFLOW_OUTBOX_FILE, MLFLOW_URI_FILE_ENV, PromLabel
from common.vocabulary import INSUFFICIENT_RESOURCES, UNSCHEDULABLE
from mcp_servers.kubernetes.job_env import BASE_ENV
from mcp_servers.kubernetes.local.capacity import Machine, reservations, this_machine
from mcp_servers.kubernetes.local.processes import (
    REPLICA_MARKER,
    job_processes,
    kill,
    marker,
    terminate,
    tree_memory_bytes,
)
from mcp_servers.kubernetes.local.secrets import SecretMissing, read_secret
from mcp_servers.kubernetes.local.store import (
    JobDir,
    JobStore,
    LocalJobState,
    LocalReplica,
    ProcessRef,
    now,
    restart_marker,
)
from mcp_servers.kubernetes.local.workload import (
    Mount,
    ReplicaPlan,
    Workload,
    workload_from_manifest,
)
from mcp_servers.kubernetes.progress import last_error_line, signal_name
from mcp_servers.kubernetes.schemas import ResourceAmounts

log = logging.getLogger("trainops.supervisor")

GRACE_PERIOD_S = 10.0
SCHEDULE_RETRY_S = 2.0
POLL_WITHOUT_PIDFD_S = 0.5
MEMORY_CHECK_S = 1.0
MLFLOW_URI_CHECK_S = 5.0
TELEMETRY_RETRY_S = (2.0, 15.0)
TELEMETRY_DEADLINE_S = 6 * 3600.0
DRAIN_TIMEOUT_S = 600.0


class Supervisor:
    def __init__(self, job: JobDir, settings: Settings) -> None:
        self.job = job
        self.settings = settings
        self.store = JobStore(job.path.parent)
        self.workload: Workload = workload_from_manifest(job.read_manifest())
        self.state: LocalJobState = job.read_state()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.cancel_requested = False
        self.oom_killed: dict[str, str] = {}
        """Replicas this supervisor killed for their memory, with what they used."""
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._last_schedule_message = ""
        self._uri_checked = -MLFLOW_URI_CHECK_S
        self._uri_published: str | None = None

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.set_wakeup_fd(self._wake_w)
        me = psutil.Process()
        self.state.supervisor = ProcessRef(pid=me.pid, create_time=me.create_time())
        if not self.state.replicas:
            self.state.replicas = [
                LocalReplica(name=r.name, type=r.type, index=r.index, phase="Pending")
                for r in self.workload.replicas
            ]
        self._save()
        try:
            while self.state.phase in ("Pending", "Running"):
                self._step()
        except Exception as e:
            log.exception("supervisor failed")
            self._stop_all()
            self._finish("Failed", "SupervisorError", f"the local supervisor failed: {e}")
            raise
        finally:
            self._targets_file.unlink(missing_ok=True)
        self._deliver_telemetry()

    def _step(self) -> None:
        if self.cancel_requested:
            self._stop_all()
            self._finish("Cancelled", "Cancelled", "cancelled on request")
            return
        self._publish_mlflow_uri()
        if self.state.phase == "Pending":
            if self._schedule():
                self._start_all()
            else:
                self._wait(SCHEDULE_RETRY_S)
            return
        remaining = self._deadline_remaining()
        if remaining is not None and remaining <= 0:
            self._stop_all()
            limit = self.workload.active_deadline_seconds
            self.job.add_event("Warning", "DeadlineExceeded", f"ran longer than {limit}s")
            self._finish("Failed", "DeadlineExceeded", f"exceeded activeDeadlineSeconds={limit}")
            return
        timeout = min(5.0, remaining) if remaining is not None else 5.0
        if any(plan.pod.memory_limit_bytes for plan in self.workload.replicas):
            timeout = min(timeout, MEMORY_CHECK_S)
        self._wait(timeout)
        self._enforce_memory_limits()
        self._collect_exits()

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.cancel_requested = True

    def _wait(self, timeout: float) -> None:
        """Sleep until a replica exits, a signal arrives, or the timeout passes."""
        pidfds = []
        for proc in self.processes.values():
            if proc.returncode is not None:
                continue
            try:
                pidfds.append(os.pidfd_open(proc.pid))
            except ProcessLookupError:
                timeout = 0  # already gone: collect it now
            except OSError:
                timeout = min(timeout, POLL_WITHOUT_PIDFD_S)  # kernel without pidfd: poll
        try:
            ready, _, _ = select.select([self._wake_r, *pidfds], [], [], max(0.0, timeout))
            if self._wake_r in ready:
                os.read(self._wake_r, 1024)
        finally:
            for fd in pidfds:
                os.close(fd)

    # -- scheduling ------------------------------------------------------------------------

    def _schedule(self) -> bool:
        """Reserve this machine's resources for the job if they are free (under a global lock)."""
        need = ResourceAmounts(
            cpus=self.workload.cpus,
            memory_bytes=self.workload.memory_bytes,
            gpus=self.workload.gpus,
        )
        with self.store.lock("schedule"):
            machine = this_machine()
            used = reservations(self.store, exclude=self.job.job_id)
            free_gpus = sorted(set(machine.gpu_ids) - used.gpu_ids)
            free = ResourceAmounts(
                cpus=machine.cpus - used.cpus,
                memory_bytes=machine.memory_bytes - used.memory_bytes,
                gpus=len(free_gpus),
            )
            never = _never_fits(need, machine) or _wrong_gpus(self.workload.gpu_product, machine)
            shortfall = never or _shortfall(need, free)
            if shortfall:
                self._unschedulable(UNSCHEDULABLE if never else INSUFFICIENT_RESOURCES, shortfall)
                return False
            self.state.reserved = need
            self.state.gpu_ids = free_gpus[: need.gpus]
            self.state.phase = "Running"
            self.state.reason = "Scheduled"
            self.state.message = "starting replicas"
            self.state.start_time = now()
            self.state.set_condition("Running", "Scheduled", "resources reserved on this machine")
            self._save()
        self.job.add_event(
            "Normal",
            "Scheduled",
            f"assigned to {socket.gethostname()}: {need.cpus:g} CPUs, "
            f"{need.memory_bytes / 2**30:.1f} GiB, {need.gpus} GPUs",
        )
        return True

    def _unschedulable(self, reason: str, shortfall: str) -> None:
        if shortfall != self._last_schedule_message:
            self._last_schedule_message = shortfall
            self.state.reason = reason
            self.state.message = shortfall
            self.state.set_condition("Created", reason, shortfall)
            self._save()
            self.job.add_event("Warning", "FailedScheduling", shortfall)

    # -- replicas --------------------------------------------------------------------------

    def _start_all(self) -> None:
        try:  # as the kubelet does, before any container starts
            secrets = {plan.name: self._secrets(plan) for plan in self.workload.replicas}
        except SecretMissing as e:
            self._finish("Failed", "CreateContainerConfigError", str(e))
            return
        master_port = free_port()
        gpu_ids = list(self.state.gpu_ids)
        for plan in self.workload.replicas:
            replica = self._replica(plan.name)
            gpus, gpu_ids = gpu_ids[: plan.pod.gpus], gpu_ids[plan.pod.gpus :]
            procs = max(plan.pod.gpus, 1)
            ports = [free_port() for _ in range(procs)]
            env = self._env(plan, master_port, ports, gpus, secrets[plan.name])
            command = self._command(plan)
            log_path = self.job.log_file(plan.name)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            workdir = self._workdir(plan)
            (workdir / "tmp").mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as output:
                if self.state.restarts:
                    output.write(f"{restart_marker(self.state.restarts)}\n".encode())
                    output.flush()
                proc = subprocess.Popen(
                    command,
                    cwd=workdir,
                    env=env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.processes[plan.name] = proc
            replica.phase = "Running"
            replica.exit_code = None
            replica.reason = None
            replica.process = ProcessRef(
                pid=proc.pid, create_time=psutil.Process(proc.pid).create_time()
            )
            replica.metrics_ports = ports
            self.job.add_event(
                "Normal", "Started", f"started {plan.name} (pid {proc.pid})", plan.name
            )
        self.state.message = "running"
        self.state.reason = "Running"
        self._save()
        self._write_targets()

    def _enforce_memory_limits(self) -> None:
        for plan in self.workload.replicas:
            limit = plan.pod.memory_limit_bytes
            proc = self.processes.get(plan.name)
            if not limit or proc is None or proc.poll() is not None:
                continue
            used = tree_memory_bytes(proc.pid)
            if used <= limit or plan.name in self.oom_killed:
                continue
            mib = 2**20
            usage = f"used {used / mib:.0f} MiB of its {limit / mib:.0f} MiB memory limit"
            self.oom_killed[plan.name] = usage
            self.job.add_event("Warning", "OOMKilling", f"{plan.name} {usage}", plan.name)
            kill(job_processes(self.job.job_id, {plan.name}))

    def _collect_exits(self) -> None:
        failed: dict[str, str | None] = {}  # replica -> what went wrong, in a line
        for name, proc in self.processes.items():
            replica = self._replica(name)
            if replica.phase != "Running" or proc.poll() is None:
                continue
            code = proc.returncode
            replica.exit_code = code if code >= 0 else 128 - code
            replica.process = None
            if code == 0:
                replica.phase, replica.reason = "Succeeded", "Completed"
                self.job.add_event("Normal", "Completed", f"{name} exited 0", name)
            else:
                replica.phase = "Failed"
                replica.reason = "Killed" if code == -signal.SIGKILL else "Error"
                # Killed itself, the replica has no last word; else its log says why.
                detail = (
                    signal_name(-code) if code < 0 else last_error_line(self.job.log_file(name))
                )
                if name in self.oom_killed:
                    replica.reason, replica.exit_code = "OOMKilled", 137
                    detail = f"OOMKilled: {self.oom_killed.pop(name)}; ask for more memory"
                self.job.add_event(
                    "Warning",
                    "Failed",
                    f"{name} exited with code {replica.exit_code}"
                    + (f": {detail}" if detail else ""),
                    name,
                )
                failed[name] = detail
        if failed:
            self._on_failure(failed)
        elif all(r.phase == "Succeeded" for r in self.state.replicas):
            self._finish("Succeeded", "Succeeded", "all replicas completed")
        else:
            self._save()

    def _on_failure(self, failed: dict[str, str | None]) -> None:
        self._stop_all()
        limit = self.workload.backoff_limit
        final = [
            name
            for name in failed
            if self._replica(name).exit_code in self.workload.fail_job_exit_codes
        ]
        if final:  # podFailurePolicy FailJob: no retry can fix it
            name = final[0]
            code = self._replica(name).exit_code
            detail = failed[name]
            self._finish(
                "Failed",
                "PodFailurePolicy",
                f"{name} exited with code {code}, which fails the job without a retry"
                + (f": {detail}" if detail else ""),
            )
            return
        if self.workload.restart_on_failure and self.state.restarts < limit:
            self.state.restarts += 1
            for replica in self.state.replicas:
                replica.restarts += 1
            message = (
                f"{', '.join(failed)} failed; restarting all replicas "
                f"(restart {self.state.restarts} of {limit})"
            )
            self.job.add_event("Warning", "BackOff", message)
            self.state.set_condition("Restarting", "ReplicaFailed", message)
            self._start_all()
            return
        first, detail = next(iter(failed.items()))
        # Rank 0 prints a job's error line, and it may not be the replica that died first.
        said = [(n, d) for n in self.processes if (d := last_error_line(self.job.log_file(n)))]
        first, detail = next(((n, d) for n, d in said if d.startswith("error: ")), (first, detail))
        reason = "BackoffLimitExceeded" if self.workload.restart_on_failure else "ReplicaFailed"
        tries = f" after {self.state.restarts} restarts" if self.state.restarts else ""
        self._finish("Failed", reason, f"{first} failed{tries}" + (f": {detail}" if detail else ""))

    def _stop_all(self) -> None:
        """SIGTERM every process of every replica, SIGKILL what is left after the grace period."""
        reaped = terminate(job_processes(self.job.job_id), GRACE_PERIOD_S)
        for name, proc in self.processes.items():
            if proc.poll() is None:
                proc.wait(5)
            replica = self._replica(name)
            if replica.phase == "Running":
                code = reaped.get(proc.pid, proc.returncode)
                replica.phase = "Failed"
                replica.reason = "Terminated"
                replica.exit_code = code if code >= 0 else 128 - code
                replica.process = None
        self._targets_file.unlink(missing_ok=True)

    def _env(
        self,
        plan: ReplicaPlan,
        master_port: int,
        ports: list[int],
        gpus: list[int],
        secrets: dict[str, str],
    ) -> dict[str, str]:
        """What the replica's processes see: the manifest's env, the Secrets it references, what
        the operator sets, and a base of this machine's PATH and locale; nothing else of the
        server's environment (its keys, tokens and settings never reach a job)."""
        workdir = self._workdir(plan)
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        env.update(HOME=str(workdir), TMPDIR=str(workdir / "tmp"), PYTHONPATH=_code_root())
        env.update({k: self._host_path(v, plan.pod.mounts) for k, v in plan.pod.env.items()})
        env.update(secrets)
        if self.workload.operator_env:
            nodes = len(self.workload.replicas)
            rank = self.workload.replicas.index(plan)
            nproc = max(plan.pod.gpus, 1)
            env.update(
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(master_port),
                WORLD_SIZE=str(nodes * nproc),  # as the Training Operator: replicas x nprocPerNode
                RANK=str(rank),
                PET_MASTER_ADDR="127.0.0.1",
                PET_MASTER_PORT=str(master_port),
                PET_NNODES=str(nodes),
                PET_NODE_RANK=str(rank),
                PET_NPROC_PER_NODE=str(nproc),
            )
        env["TRAINOPS_METRICS_PORT"] = str(ports[0])
        if "MLFLOW_TRACKING_URI" in plan.pod.env:
            env[MLFLOW_URI_FILE_ENV] = str(self._mlflow_uri_file)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        env[REPLICA_MARKER] = marker(self.job.job_id, plan.name)
        return env

    # -- telemetry ---------------------------------------------------------------------------

    @property
    def _mlflow_uri_file(self) -> Path:
        return self.job.path / "mlflow.uri"

    def _configured_mlflow_uri(self) -> str | None:
        """Where MLflow is now, as the settings say (`trainops up` rewrites them when it moves)."""
        try:
            return load_settings().mlflow_tracking_uri
        except SettingsError as e:
            log.warning("settings unreadable, MLflow's address unknown: %s", e)
            return None

    def _publish_mlflow_uri(self) -> None:
        """Keep the file the replicas read MLflow's address from up to date (checked every few
        seconds), so that a job follows MLflow to a new address without a restart."""
        if time.monotonic() - self._uri_checked < MLFLOW_URI_CHECK_S:
            return
        self._uri_checked = time.monotonic()
        uri = self._configured_mlflow_uri()
        if uri and uri != self._uri_published:
            write_atomic(self._mlflow_uri_file, uri)
            self._uri_published = uri

    def _checkpoint_dir(self) -> Path | None:
        """Where rank 0's replica keeps its checkpoints (and the MLflow outbox), on this host."""
        plan = self.workload.replicas[0]
        args = plan.pod.args
        for i, arg in enumerate(args[:-1]):
            if arg == "--checkpoint-dir":
                return Path(self._host_path(args[i + 1], plan.pod.mounts))
        return None

    def _deliver_telemetry(self) -> None:
        """What the job left for MLflow (it was away when the job ended) is delivered from here,
        to wherever MLflow is now, so that the job's run ends complete and closed."""
        folder = self._checkpoint_dir()
        if folder is None or not (folder / MLFLOW_OUTBOX_FILE).exists():
            return
        self.job.add_event(
            "Normal", "TelemetryPending", "MLflow was away at the end; delivering its writes"
        )
        deadline = time.monotonic() + TELEMETRY_DEADLINE_S
        delay = TELEMETRY_RETRY_S[0]
        while not self.cancel_requested and time.monotonic() < deadline:
            uri = self._configured_mlflow_uri()
            if uri and self._drain(folder, uri) == 0:
                self.job.add_event("Normal", "TelemetryDelivered", f"MLflow at {uri} has the run")
                return
            self._wait(delay)
            delay = min(delay * 2, TELEMETRY_RETRY_S[1])
        self.job.add_event(
            "Warning",
            "TelemetryUndelivered",
            f"MLflow did not take the job's writes; they wait in {folder / MLFLOW_OUTBOX_FILE}",
        )

    def _drain(self, folder: Path, uri: str) -> int:
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        env.update(PYTHONPATH=_code_root(), HOME=str(self.job.path / "work"))
        command = [sys.executable, "-m", "training.telemetry.drain"]
        command += ["--checkpoint-dir", str(folder), "--tracking-uri", uri]
        with open(self.job.path / "supervisor.log", "ab") as log_file:
            try:
                return subprocess.run(
                    command,
                    env=env,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=DRAIN_TIMEOUT_S,
                ).returncode
            except subprocess.TimeoutExpired:
                return -1

    def _workdir(self, plan: ReplicaPlan) -> Path:
        return self.job.path / "work" / plan.name

    def _secrets(self, plan: ReplicaPlan) -> dict[str, str]:
        """The values of the Secrets the replica references, from this machine's store."""
        return {
            name: read_secret(self.settings.secrets_dir, secret, key)
            for name, (secret, key) in plan.pod.secret_env.items()
        }

    def _command(self, plan: ReplicaPlan) -> list[str]:
        """The container's command on this machine: its tools are this Python's."""
        command = [self._host_path(a, plan.pod.mounts) for a in plan.pod.command + plan.pod.args]
        if command and command[0] == "torchrun":
            return [sys.executable, "-m", "torch.distributed.run", *command[1:]]
        if command and command[0] in ("python", "python3"):
            return [sys.executable, *command[1:]]
        return command

    def _host_path(self, value: str, mounts: list[Mount]) -> str:
        """Map a container path under a volume mount to the folder that backs it here."""
        prefix = ""
        if value.startswith("--") and "=" in value:
            prefix, value = value.split("=", 1)
            prefix += "="
        for mount in mounts:
            if value == mount.mount_path or value.startswith(mount.mount_path.rstrip("/") + "/"):
                host = self._volume_dir(mount)
                if host is not None:
                    return prefix + str(host) + value[len(mount.mount_path.rstrip("/")) :]
        return prefix + value

    def _volume_dir(self, mount: Mount) -> Path | None:
        volume = mount.volume
        if "persistentVolumeClaim" in volume:
            path = self.settings.volumes_dir / volume["persistentVolumeClaim"]["claimName"]
        elif "hostPath" in volume:
            path = Path(volume["hostPath"]["path"])
        elif "emptyDir" in volume:
            if mount.mount_path == "/dev/shm":
                return None  # the host's shared memory already is what the pod asks for
            path = self.job.path / "volumes" / volume["name"]
        else:
            return None
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _replica(self, name: str) -> LocalReplica:
        return next(r for r in self.state.replicas if r.name == name)

    # -- bookkeeping -----------------------------------------------------------------------

    @property
    def _targets_file(self) -> Path:
        return self.settings.prometheus_targets_dir / f"{self.job.job_id}.json"

    def _write_targets(self) -> None:
        """A Prometheus file_sd entry per running replica, so a local Prometheus scrapes it."""
        groups = [
            {
                "targets": [f"127.0.0.1:{port}" for port in r.metrics_ports],
                "labels": {
                    PromLabel.JOB_ID: self.job.job_id,
                    PromLabel.NAMESPACE: self.state.namespace,
                    PromLabel.REPLICA: r.name,
                },
            }
            for r in self.state.replicas
            if r.phase == "Running" and r.metrics_ports
        ]
        self._targets_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self._targets_file, json.dumps(groups))

    def _deadline_remaining(self) -> float | None:
        limit = self.workload.active_deadline_seconds
        if limit is None or self.state.start_time is None:
            return None
        return limit - (now() - self.state.start_time).total_seconds()

    def _finish(self, phase: str, reason: str, message: str) -> None:
        self.state.phase = phase  # type: ignore[assignment]
        self.state.reason = reason
        self.state.message = message
        self.state.completion_time = now()
        self.state.reserved = None
        self.state.gpu_ids = []
        self.state.set_condition(phase, reason, message)
        self._save()
        self.job.add_event("Normal" if phase == "Succeeded" else "Warning", reason, message)

    def _save(self) -> None:
        self.job.write_state(self.state)


def _never_fits(need: ResourceAmounts, machine: Machine) -> str:
    """Why the job can never run here, in words; empty when this machine could hold it."""
    if (
        need.gpus > len(machine.gpu_ids)
        or need.cpus > machine.cpus + 1e-9
        or need.memory_bytes > machine.memory_bytes
    ):
        gib = 2**30
        return (
            f"never fits this machine: needs {need.cpus:g} CPUs, {need.memory_bytes / gib:.1f} GiB "
            f"memory and {need.gpus} GPUs; it has {machine.cpus:g} CPUs, "
            f"{machine.memory_bytes / gib:.1f} GiB and {len(machine.gpu_ids)} GPUs"
        )
    return ""


def _wrong_gpus(product: str | None, machine: Machine) -> str:
    """Why this machine's GPUs are not the type the job selects; empty when they are."""
    if product is None:
        return ""
    wanted = gpu_type_of_product(product) or product
    if machine.gpu_ids and gpu_type_of_product(machine.gpu_type) == wanted:
        return ""
    has = f"{len(machine.gpu_ids)} {machine.gpu_type}" if machine.gpu_ids else "no GPUs"
    return (
        f"never fits this machine: asks for {wanted} GPUs ({GPU_PRODUCT_LABEL}={product}); "
        f"it has {has}"
    )


def _shortfall(need: ResourceAmounts, free: ResourceAmounts) -> str:
    """What the job lacks of what is free now, in words; empty when it fits."""
    gib = 2**30
    lacking = []
    if need.gpus > free.gpus:
        lacking.append(f"{need.gpus} GPUs, {free.gpus} free")
    if need.cpus > free.cpus + 1e-9:
        lacking.append(f"{need.cpus:g} CPUs, {max(free.cpus, 0):g} free")
    if need.memory_bytes > free.memory_bytes:
        free_gib = max(free.memory_bytes, 0) / gib
        lacking.append(f"{need.memory_bytes / gib:.1f} GiB memory, {free_gib:.1f} GiB free")
    return "needs " + "; ".join(lacking) if lacking else ""


def _code_root() -> str:
    """Where the `training` package is, as the image's PYTHONPATH=/app: the replicas' code."""
    spec = importlib.util.find_spec("training")
    assert spec is not None
    if spec.origin is not None:
        return str(Path(spec.origin).parent.parent)
    # An editable install made before training/ had an __init__ maps it as a namespace package.
    folders = [Path(p) for p in spec.submodule_search_locations or () if Path(p).is_dir()]
    assert folders, "the training package is not installed"
    return str(folders[0].parent)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    job = JobDir(Path(sys.argv[1]))
    Supervisor(job, load_settings()).run()


if __name__ == "__main__":
    main()
