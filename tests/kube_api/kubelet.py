"""The kubelet: runs the containers of the pods bound to the (local) nodes as processes of this
machine and reports their status as a kubelet does.

"The image" is this project's training image as it is here: PATH with the project's virtual
environment first, PYTHONPATH at the project root. A container gets exactly its own env (Secret
and ConfigMap references resolved, $(VAR) expanded) on top of that; mount paths (/data,
/checkpoints, /tmp, /dev/termination-log) in its command, args and env are mapped to host
folders (one per PersistentVolumeClaim, shared by its pods; one per emptyDir). Each container
instance logs to its own file, so `previous=true` serves the one before. An image hook may run
something else in a container's place: a command of its own, or (`Borrowed`) another container's
command line with that container's env and mounts, as a Ray head runs the job a submitter hands
it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from tests.kube_api.errors import ApiError, bad_request
from tests.kube_api.events import Recorder
from tests.kube_api.outcomes import Outcome, Scripts
from tests.kube_api.registry import Registry
from tests.kube_api.scheduler import quantity, set_condition
from tests.kube_api.store import Key, now, parse_time

KUBELET = "kubelet"
POLL_S = 0.05
IDLE_S = 1.0
"""How often a pod whose containers are all done looks again (deletions wake it at once)."""
CONFIG_RETRY_S = 1.0
IMAGE_PULL_RETRY_S = 2.0
TERMINATION_MESSAGE_MAX = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOLD_COMMAND = ["sleep", "2147483647"]


@dataclass(frozen=True)
class Borrowed:
    """A shell command line to run in a container's place as another container would run it:
    with that container's env on top of this one's, and its volume mounts (PersistentVolumeClaims
    are the same host folders as that container's; an emptyDir is one of this pod's). Paths in
    the line's words and in the env are mapped through them; the line is a simple command."""

    command_line: str
    env: Mapping[str, str]
    volumes: Sequence[Mapping[str, Any]] = ()
    mounts: Sequence[Mapping[str, Any]] = ()


ImageHook = Callable[[dict[str, Any], dict[str, Any]], list[str] | Borrowed | None]
"""What an image does with a container instead of running its command (None: run it)."""


@dataclass(frozen=True)
class Image:
    """What every container's image provides here: its environment."""

    env: Mapping[str, str]

    @classmethod
    def local(cls, code_root: Path) -> Image:
        venv_bin = str(Path(sys.executable).parent)
        return cls(
            {
                "PATH": f"{venv_bin}:{SYSTEM_PATH}",
                "PYTHONPATH": str(code_root),
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "PIP_NO_CACHE_DIR": "1",
                "CUDA_VISIBLE_DEVICES": "",
            }
        )


def rfc3339_nano() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)", sub, text)


def normalized_image(image: str) -> str:
    name = image
    first = name.split("/", 1)[0]
    if "/" not in name:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        name += ":latest"
    return name


def image_id(image: str) -> str:
    ref = normalized_image(image)
    repo = ref.split("@", 1)[0].rsplit(":", 1)[0]
    return f"{repo}@sha256:{hashlib.sha256(ref.encode()).hexdigest()}"


class ConfigError(Exception):
    pass


def reap_container(proc: subprocess.Popen[bytes]) -> None:
    """What a container runtime does once a container's first process has ended: the processes
    left in it die with its PID namespace. Here a container is the session its first process
    led (its children that left its process group, or were orphaned, are still in it)."""
    for other in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError, PermissionError):
            if other.pid != proc.pid and os.getsid(other.pid) == proc.pid:
                other.kill()


def kill_tree(proc: subprocess.Popen[bytes], sig: int) -> None:
    """Signal a container's process group, and any of its descendants that left it."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(sig)


@dataclass
class Instance:
    """One run of a container."""

    container_id: str
    log: Path
    termination_file: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    reader: threading.Thread | None = None
    oom: bool = False


@dataclass
class ContainerState:
    spec: dict[str, Any]
    status: dict[str, Any]
    phase: str = "new"  # new, config, pull-backoff, backoff, running, done
    next_at: float = 0.0
    instance: Instance | None = None
    restarts: int = 0


class PodWorker(threading.Thread):
    def __init__(self, kubelet: Kubelet, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"kubelet-{meta['namespace']}-{meta['name']}", daemon=True)
        self.kubelet = kubelet
        self.key: Key = ("", "pods", meta["namespace"], meta["name"])
        self.uid = meta["uid"]
        self.pod = pod
        self.dir = kubelet.root / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.containers: list[ContainerState] = []
        self.outcome: Outcome = Outcome.run()
        self.started = time.monotonic()
        self.finished = False

    # -- lifecycle -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._setup()
            while not self.stopping.is_set():
                pod = self.kubelet.store.get(self.key)
                if pod is None or pod["metadata"]["uid"] != self.uid:
                    self._kill_all(grace=0)
                    return
                self.pod = pod
                if pod["metadata"].get("deletionTimestamp"):
                    self._terminate(pod)
                    return
                self._deadline(pod)
                changed = False
                for state in self.containers:
                    changed |= self._advance(state)
                if changed:
                    self._write_status()
                busy = any(c.phase != "done" for c in self.containers)
                self.wake.wait(POLL_S if busy else IDLE_S)
                self.wake.clear()
        finally:
            self._kill_all(grace=0)

    def _setup(self) -> None:
        pod = self.pod
        self.dir.mkdir(parents=True, exist_ok=True)
        self.outcome = self.kubelet.scripts.for_pod(pod)
        self._prepare_volumes(pod)
        for container in pod["spec"].get("containers") or []:
            status = {
                "name": container["name"],
                "image": container.get("image", ""),
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
            }
            self.containers.append(ContainerState(container, status))

        def begin(p: dict[str, Any]) -> dict[str, Any]:
            status = p.setdefault("status", {})
            status.update(
                hostIP="127.0.0.1",
                hostIPs=[{"ip": "127.0.0.1"}],
                podIP="127.0.0.1",
                podIPs=[{"ip": "127.0.0.1"}],
                startTime=status.get("startTime") or now(),
                phase="Pending",
            )
            status["containerStatuses"] = [c.status for c in self.containers]
            set_condition(p, "PodReadyToStartContainers", "True")
            set_condition(p, "Initialized", "True")
            names = " ".join(c.status["name"] for c in self.containers)
            set_condition(
                p,
                "Ready",
                "False",
                "ContainersNotReady",
                f"containers with unready status: [{names}]",
            )
            set_condition(
                p,
                "ContainersReady",
                "False",
                "ContainersNotReady",
                f"containers with unready status: [{names}]",
            )
            _order_conditions(p)
            return p

        self.pod = self.kubelet.store.mutate(self.key, begin) or pod

    def _deadline(self, pod: dict[str, Any]) -> None:
        deadline = pod["spec"].get("activeDeadlineSeconds")
        if not deadline or self.finished:
            return
        if time.monotonic() - self.started < deadline:
            return
        self._kill_all(grace=self.kubelet.grace(pod))
        self.finished = True

        def fail(p: dict[str, Any]) -> dict[str, Any]:
            self._status_into(p)
            p["status"].update(
                phase="Failed",
                reason="DeadlineExceeded",
                message="Pod was active on the node longer than the specified deadline",
            )
            return p

        self.kubelet.store.mutate(self.key, fail)
        self.kubelet.event(
            pod,
            "Normal",
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        )

    def _terminate(self, pod: dict[str, Any]) -> None:
        """The pod is being deleted: stop its containers, report, and remove it."""
        self._kill_all(grace=self.kubelet.grace(pod))

        def final(p: dict[str, Any]) -> dict[str, Any]:
            self._status_into(p)
            if p["status"].get("phase") not in ("Succeeded", "Failed"):
                codes = [
                    (c.status["state"].get("terminated") or {}).get("exitCode", 1)
                    for c in self.containers
                ]
                p["status"]["phase"] = (
                    "Succeeded" if codes and all(c == 0 for c in codes) else "Failed"
                )
            for cond in ("Ready", "ContainersReady"):
                set_condition(p, cond, "False", "PodCompleted")
            return p

        final_pod = self.kubelet.store.mutate(self.key, final)
        if final_pod is not None and final_pod["metadata"]["uid"] == self.uid:
            # The kubelet's own delete, with grace period 0: the pod goes once no finalizer
            # holds it.
            self.kubelet.registry.delete_object(self.key, final_pod, "Background", 0)

    def _kill_all(self, grace: float) -> None:
        running = [
            c
            for c in self.containers
            if c.instance and c.instance.proc and c.instance.proc.poll() is None
        ]
        for state in running:
            self.kubelet.event(
                self.pod,
                "Normal",
                "Killing",
                f"Stopping container {state.spec['name']}",
                f"spec.containers{{{state.spec['name']}}}",
            )
            assert state.instance and state.instance.proc
            kill_tree(state.instance.proc, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        deadline = time.monotonic() + grace
        for state in running:
            assert state.instance and state.instance.proc
            proc = state.instance.proc
            remaining = max(0.0, deadline - time.monotonic())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                kill_tree(proc, signal.SIGKILL)
                proc.wait()
            self._exited(state, restart=False)
        for state in self.containers:
            if state.phase in ("new", "config", "pull-backoff", "backoff"):
                state.phase = "done"

    # -- containers ----------------------------------------------------------------------

    def _advance(self, state: ContainerState) -> bool:
        """One step of a container's life; True when its status changed."""
        t = time.monotonic()
        if state.phase in ("done",) or t < state.next_at:
            if state.phase == "running":
                return self._check_running(state)
            return False
        if state.phase in ("new", "config"):
            if self.outcome.kind == "image_pull_backoff":
                return self._image_pull_failure(state)
            try:
                env = self._env(state.spec)
            except ConfigError as e:
                message = str(e)
                waiting = state.status["state"].get("waiting") or {}
                state.phase, state.next_at = "config", t + CONFIG_RETRY_S
                if waiting.get("message") != message:
                    state.status["state"] = {
                        "waiting": {"reason": "CreateContainerConfigError", "message": message}
                    }
                    self._container_event(state, "Warning", "Failed", f"Error: {message}")
                    return True
                return False
            self._pull(state)
            return self._start(state, env)
        if state.phase == "pull-backoff":
            return self._image_pull_failure(state)
        if state.phase == "backoff":
            try:
                env = self._env(state.spec)
            except ConfigError as e:
                state.status["state"] = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(e)}
                }
                state.phase, state.next_at = "config", t + CONFIG_RETRY_S
                return True
            state.restarts += 1
            state.status["restartCount"] = state.restarts
            self._pull(state)
            return self._start(state, env)
        if state.phase == "running":
            return self._check_running(state)
        return False

    def _image_pull_failure(self, state: ContainerState) -> bool:
        image = state.spec.get("image", "")
        ref = normalized_image(image)
        t = time.monotonic()
        state.next_at = t + IMAGE_PULL_RETRY_S
        pull_error = (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": failed '
            f'to resolve reference "{ref}": {ref}: not found'
        )
        if state.phase != "pull-backoff":
            state.phase = "pull-backoff"
            self._container_event(state, "Normal", "Pulling", f'Pulling image "{image}"')
            self._container_event(
                state, "Warning", "Failed", f'Failed to pull image "{image}": {pull_error}'
            )
            self._container_event(state, "Warning", "Failed", "Error: ErrImagePull")
            state.status["state"] = {"waiting": {"reason": "ErrImagePull", "message": pull_error}}
            state.next_at = t + self.kubelet.restart_backoff_s
            return True
        self._container_event(state, "Normal", "BackOff", f'Back-off pulling image "{image}"')
        self._container_event(state, "Warning", "Failed", "Error: ImagePullBackOff")
        waiting = {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}
        if state.status["state"].get("waiting") != waiting:
            state.status["state"] = {"waiting": waiting}
            return True
        return False

    def _pull(self, state: ContainerState) -> None:
        image = state.spec.get("image", "")
        state.status["imageID"] = image_id(image)
        if state.spec.get("imagePullPolicy") == "Always":
            self._container_event(state, "Normal", "Pulling", f'Pulling image "{image}"')
            self._container_event(
                state,
                "Normal",
                "Pulled",
                f'Successfully pulled image "{image}" in 12ms (12ms including waiting). Image '
                "size: 0 bytes.",
            )
        else:
            self._container_event(
                state, "Normal", "Pulled", f'Container image "{image}" already present on machine'
            )

    def _start(self, state: ContainerState, env: dict[str, str]) -> bool:
        name = state.spec["name"]
        container_id = hashlib.sha256(uuid.uuid4().bytes).hexdigest()
        folder = self.dir / name
        folder.mkdir(parents=True, exist_ok=True)
        instance = Instance(
            container_id=f"containerd://{container_id}",
            log=folder / f"{state.restarts}.log",
            termination_file=folder / f"{state.restarts}.termination-log",
        )
        instance.termination_file.write_bytes(b"")
        self.kubelet.container_logs[instance.container_id] = instance.log
        state.instance = instance
        outcome, fake = self.kubelet.scripts.next_instance(self.pod, name)
        mapping = self._mapping(state.spec, instance)
        # The container's paths are mapped, not the image's own (its PATH and code are this
        # machine's paths already, wherever the project sits, /tmp included).
        image = self.kubelet.image.env
        env = {k: v if image.get(k) == v else self._host_path(v, mapping) for k, v in env.items()}
        if fake is not None:
            argv = ["sh", "-c", 'printf "%s\\n" "$1"; exit "$2"', "sh", outcome.message, str(fake)]
            if outcome.always and outcome.message:
                instance.termination_file.write_text(outcome.message)
        elif outcome.kind == "hold":
            argv = list(HOLD_COMMAND)
        else:
            hooked = None
            for hook in self.kubelet.hooks:
                hooked = hook(self.pod, state.spec)
                if hooked is not None:
                    break
            if isinstance(hooked, Borrowed):
                argv, env, mapping = self._borrow(hooked, env, mapping)
            elif hooked is not None:
                argv = hooked
            else:
                argv = [*(state.spec.get("command") or []), *(state.spec.get("args") or [])]
                # Container paths first, then $(VAR)s, whose values are host paths already.
                argv = [expand(self._host_path(a, mapping), env) for a in argv]
        self._container_event(state, "Normal", "Created", f"Created container: {name}")
        instance.started_at = now()
        error = self._spawn(instance, argv, env, self._workdir(state.spec, mapping), outcome)
        if error is not None:
            message = (
                "failed to create containerd task: failed to create shim task: OCI runtime "
                "create failed: runc create failed: unable to start container process: error "
                f"during container init: {error}: unknown"
            )
            self._container_event(state, "Warning", "Failed", f"Error: {message}")
            state.status["ready"] = False
            state.status["started"] = False
            self._finish(
                state,
                {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": message,
                    "startedAt": "1970-01-01T00:00:00Z",
                    "finishedAt": now(),
                    "containerID": instance.container_id,
                },
            )
            return True
        self._container_event(state, "Normal", "Started", f"Started container {name}")
        state.phase = "running"
        state.status.update(
            containerID=instance.container_id,
            ready=True,
            started=True,
            state={"running": {"startedAt": instance.started_at}},
        )
        return True

    def _spawn(
        self,
        instance: Instance,
        argv: list[str],
        env: dict[str, str],
        cwd: Path,
        outcome: Outcome,
    ) -> str | None:
        if not argv:
            return "no command specified"
        program = argv[0]
        if "/" not in program:
            found = shutil.which(program, path=env.get("PATH", SYSTEM_PATH))
            if found is None:
                return f'exec: "{program}": executable file not found in $PATH'
            program = found
        elif not os.access(program, os.X_OK):
            return f'exec: "{program}": stat {program}: no such file or directory'
        try:
            proc = subprocess.Popen(
                [program, *argv[1:]],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            return f'exec: "{argv[0]}": {e.strerror}'
        instance.proc = proc
        self.kubelet.track(proc)
        at_epoch = outcome.at_epoch if outcome.kind == "oom_killed" else None
        instance.reader = threading.Thread(
            target=_pump, args=(proc, instance, at_epoch), name=f"log-{instance.log}", daemon=True
        )
        instance.reader.start()
        return None

    def _check_running(self, state: ContainerState) -> bool:
        instance = state.instance
        if instance is None or instance.proc is None or instance.proc.poll() is None:
            return False
        self._exited(state, restart=True)
        return True

    def _exited(self, state: ContainerState, *, restart: bool) -> None:
        instance = state.instance
        if instance is None or instance.proc is None or state.phase != "running":
            return
        code = instance.proc.returncode
        if code is None:
            code = instance.proc.wait()
        reap_container(instance.proc)
        if instance.reader is not None:
            instance.reader.join(2)
        code = code if code >= 0 else 128 - code
        if instance.oom:
            reason, code = "OOMKilled", 137
        else:
            reason = "Completed" if code == 0 else "Error"
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": reason,
            "startedAt": instance.started_at,
            "finishedAt": now(),
            "containerID": instance.container_id,
        }
        message = self._termination_message(state, instance, code)
        if message:
            terminated["message"] = message
        self._finish(state, terminated, restart=restart)

    def _finish(
        self, state: ContainerState, terminated: dict[str, Any], *, restart: bool = True
    ) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        again = restart and (
            policy == "Always" or (policy == "OnFailure" and terminated["exitCode"] != 0)
        )
        state.status["ready"] = False
        state.status["started"] = False
        if again:
            name = state.spec["name"]
            meta = self.pod["metadata"]
            state.status["lastState"] = {"terminated": terminated}
            state.status["state"] = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off 10s restarting failed container={name} "
                    f"pod={meta['name']}_{meta['namespace']}({meta['uid']})",
                }
            }
            state.phase = "backoff"
            state.next_at = time.monotonic() + self.kubelet.restart_backoff_s
            self._container_event(
                state,
                "Warning",
                "BackOff",
                f"Back-off restarting failed container {name} in pod "
                f"{meta['name']}_{meta['namespace']}({meta['uid']})",
            )
        else:
            state.status["state"] = {"terminated": terminated}
            state.phase = "done"

    def _termination_message(self, state: ContainerState, instance: Instance, code: int) -> str:
        try:
            message = instance.termination_file.read_bytes()[:TERMINATION_MESSAGE_MAX].decode(
                errors="replace"
            )
        except OSError:
            message = ""
        if (
            not message
            and code != 0
            and state.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        ):
            lines = read_log(instance.log, timestamps=False).splitlines(keepends=True)[
                -FALLBACK_LINES:
            ]
            message = "".join(lines).encode()[-FALLBACK_BYTES:].decode(errors="replace")
        return message

    # -- status --------------------------------------------------------------------------

    def _status_into(self, p: dict[str, Any]) -> None:
        status = p.setdefault("status", {})
        status["containerStatuses"] = [dict(c.status) for c in self.containers]
        phase = pod_phase(p["spec"].get("restartPolicy", "Always"), self.containers)
        if status.get("phase") not in ("Succeeded", "Failed"):
            status["phase"] = phase
        ready = all(c.status.get("ready") for c in self.containers) and status["phase"] == "Running"
        unready = [c.status["name"] for c in self.containers if not c.status.get("ready")]
        if status["phase"] in ("Succeeded", "Failed"):
            for cond in ("Ready", "ContainersReady"):
                set_condition(p, cond, "False", "PodCompleted")
        elif ready:
            for cond in ("Ready", "ContainersReady"):
                set_condition(p, cond, "True")
        else:
            message = f"containers with unready status: [{' '.join(unready)}]"
            for cond in ("Ready", "ContainersReady"):
                set_condition(p, cond, "False", "ContainersNotReady", message)
        _order_conditions(p)

    def _write_status(self) -> None:
        def update(p: dict[str, Any]) -> dict[str, Any] | None:
            if p["metadata"]["uid"] != self.uid:
                return None
            self._status_into(p)
            return p

        updated = self.kubelet.store.mutate(self.key, update)
        if updated is not None:
            self.pod = updated

    # -- environment and files -----------------------------------------------------------

    def _prepare_volumes(self, pod: dict[str, Any]) -> None:
        self.volumes: dict[str, Path] = {
            volume["name"]: self._volume(volume, self.dir / "volumes")
            for volume in pod["spec"].get("volumes") or []
        }

    def _volume(self, volume: Mapping[str, Any], own: Path) -> Path:
        """The host folder of a volume, filled; `own`: where this pod's own volumes go."""
        ns = self.pod["metadata"]["namespace"]
        if "persistentVolumeClaim" in volume:
            path = self.kubelet.root / "volumes" / ns / volume["persistentVolumeClaim"]["claimName"]
        elif "hostPath" in volume:
            path = self.kubelet.root / "hostpath" / volume["hostPath"]["path"].strip("/")
        else:
            path = own / volume["name"]
        path.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            cm = self.kubelet.store.get(("", "configmaps", ns, volume["configMap"]["name"]))
            for key, value in ((cm or {}).get("data") or {}).items():
                (path / key).write_text(value)
        if "secret" in volume:
            secret = self.kubelet.store.get(("", "secrets", ns, volume["secret"]["secretName"]))
            for key, value in ((secret or {}).get("data") or {}).items():
                (path / key).write_bytes(base64.b64decode(value))
        return path

    def _mapping(self, container: dict[str, Any], instance: Instance) -> list[tuple[str, Path]]:
        """Container path prefix -> host path, the longest prefixes first."""
        pairs = self._mounts(container.get("volumeMounts") or [], self.volumes)
        path = container.get("terminationMessagePath", "/dev/termination-log")
        pairs.append((path, instance.termination_file))
        pairs.sort(key=lambda p: len(p[0]), reverse=True)
        return pairs

    @staticmethod
    def _mounts(
        mounts: Sequence[Mapping[str, Any]], volumes: Mapping[str, Path]
    ) -> list[tuple[str, Path]]:
        pairs: list[tuple[str, Path]] = []
        for mount in mounts:
            host = volumes.get(mount["name"])
            if host is None:
                continue
            if mount.get("subPath"):
                host = host / mount["subPath"]
                host.mkdir(parents=True, exist_ok=True)
            pairs.append((mount["mountPath"].rstrip("/") or "/", host))
        return pairs

    def _borrow(
        self, run: Borrowed, env: dict[str, str], mapping: list[tuple[str, Path]]
    ) -> tuple[list[str], dict[str, str], list[tuple[str, Path]]]:
        """argv, env and path mapping of a command line run as another container runs it."""
        own = self.dir / "volumes" / "borrowed"
        volumes = {v["name"]: self._volume(v, own) for v in run.volumes}
        mapping = [*self._mounts(run.mounts, volumes), *mapping]
        mapping.sort(key=lambda p: len(p[0]), reverse=True)
        added = {k: self._host_path(expand(v, env), mapping) for k, v in run.env.items()}
        words = [self._host_path(word, mapping) for word in shlex.split(run.command_line)]
        # As a Ray job agent runs an entry point: in a shell, here replaced by the command.
        return ["sh", "-c", "exec " + shlex.join(words)], {**env, **added}, mapping

    @staticmethod
    def _host_path(value: str, mapping: list[tuple[str, Path]]) -> str:
        """Container paths in a string (at its start, or after `=`, `:` or `,`) as host paths;
        one pass, so a host path is never mapped again."""
        if not mapping:
            return value
        hosts = dict(mapping)
        alternatives = "|".join(re.escape(prefix) for prefix, _ in mapping)
        pattern = re.compile(rf"(^|[=:,])({alternatives})(?=$|/)")
        return pattern.sub(lambda m: m.group(1) + str(hosts[m.group(2)]), value)

    def _workdir(self, container: dict[str, Any], mapping: list[tuple[str, Path]]) -> Path:
        wanted = container.get("workingDir")
        if wanted:
            mapped = Path(self._host_path(wanted, mapping))
            if mapped != Path(wanted):
                mapped.mkdir(parents=True, exist_ok=True)
                return mapped
        work = self.dir / "work" / container["name"]
        work.mkdir(parents=True, exist_ok=True)
        return work

    def _env(self, container: dict[str, Any]) -> dict[str, str]:
        pod = self.pod
        meta = pod["metadata"]
        ns = meta["namespace"]
        env: dict[str, str] = dict(self.kubelet.image.env)
        env["HOSTNAME"] = pod["spec"].get("hostname") or meta["name"]
        env["HOME"] = str(self.dir / "work" / container["name"])
        host, port = self.kubelet.api_address
        env.update(
            KUBERNETES_SERVICE_HOST=host,
            KUBERNETES_SERVICE_PORT=str(port),
            KUBERNETES_PORT=f"tcp://{host}:{port}",
        )
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self._config_map(
                    ns, source["configMapRef"]["name"], source["configMapRef"].get("optional")
                )
            else:
                data = self._secret(
                    ns, source["secretRef"]["name"], source["secretRef"].get("optional")
                )
            for key, value in data.items():
                env[prefix + key] = value
        own: dict[str, str] = {}
        for item in container.get("env") or []:
            name = item["name"]
            source = item.get("valueFrom")
            if source is None:
                value = expand(item.get("value", ""), {**env, **own})
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                found = self._secret(ns, ref.get("name", ""), ref.get("optional"))
                if ref["key"] not in found:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(
                        f"couldn't find key {ref['key']} in Secret {ns}/{ref.get('name', '')}"
                    )
                value = found[ref["key"]]
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                found = self._config_map(ns, ref.get("name", ""), ref.get("optional"))
                if ref["key"] not in found:
                    if ref.get("optional"):
                        continue
                    raise ConfigError(
                        f"couldn't find key {ref['key']} in ConfigMap {ns}/{ref.get('name', '')}"
                    )
                value = found[ref["key"]]
            elif "fieldRef" in source:
                value = field_ref(pod, source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                value = resource_field_ref(pod, container, source["resourceFieldRef"])
            else:
                continue
            own[name] = value
            env[name] = value
        return env

    def _secret(self, ns: str, name: str, optional: bool | None) -> dict[str, str]:
        secret = self.kubelet.store.get(("", "secrets", ns, name))
        if secret is None:
            if optional:
                return {}
            raise ConfigError(f'secret "{name}" not found')
        data = {
            k: base64.b64decode(v).decode(errors="replace")
            for k, v in (secret.get("data") or {}).items()
        }
        data.update(secret.get("stringData") or {})
        return data

    def _config_map(self, ns: str, name: str, optional: bool | None) -> dict[str, str]:
        cm = self.kubelet.store.get(("", "configmaps", ns, name))
        if cm is None:
            if optional:
                return {}
            raise ConfigError(f'configmap "{name}" not found')
        return dict(cm.get("data") or {})

    def _container_event(
        self, state: ContainerState, type_: str, reason: str, message: str
    ) -> None:
        self.kubelet.event(
            self.pod, type_, reason, message, f"spec.containers{{{state.spec['name']}}}"
        )


def _pump(proc: subprocess.Popen[bytes], instance: Instance, at_epoch: int | None) -> None:
    """Copy a container's output to its log, a timestamp on every line; kill it as the kernel
    would when it prints its `at_epoch`-th epoch (an OOM script)."""
    epochs = 0
    assert proc.stdout is not None
    with open(instance.log, "ab") as log:
        for raw in iter(proc.stdout.readline, b""):
            log.write(rfc3339_nano().encode() + b" " + raw)
            log.flush()
            if at_epoch is not None and raw.startswith(b"{"):
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "epoch":
                    epochs += 1
                    if epochs >= at_epoch and not instance.oom:
                        instance.oom = True
                        kill_tree(proc, signal.SIGKILL)
    proc.stdout.close()


def read_log(
    path: Path,
    *,
    timestamps: bool,
    tail_lines: int | None = None,
    since: float | None = None,
    limit_bytes: int | None = None,
) -> str:
    try:
        raw = path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
    lines = raw.splitlines(keepends=True)
    if since is not None:
        lines = [line for line in lines if parse_time(line.split(" ", 1)[0][:26] + "Z") >= since]
    if tail_lines is not None:
        lines = lines[-tail_lines:] if tail_lines > 0 else []
    if not timestamps:
        lines = [line.split(" ", 1)[1] if " " in line else "" for line in lines]
    text = "".join(lines)
    if limit_bytes is not None:
        text = text.encode()[:limit_bytes].decode(errors="ignore")
    return text


def pod_phase(policy: str, containers: list[ContainerState]) -> str:
    """The kubelet's pod phase from its containers' states."""
    running = waiting = stopped = succeeded = 0
    for c in containers:
        state = c.status["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            if state["terminated"]["exitCode"] == 0:
                succeeded += 1
        elif c.status.get("lastState", {}).get("terminated"):
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if policy == "Never":
            return "Failed"
        restarting = any("waiting" in c.status["state"] for c in containers)
        return "Running" if restarting else "Failed"
    return "Pending"


CONDITION_ORDER = (
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
)


def _order_conditions(pod: dict[str, Any]) -> None:
    conditions = pod.get("status", {}).get("conditions") or []
    conditions.sort(
        key=lambda c: CONDITION_ORDER.index(c["type"]) if c["type"] in CONDITION_ORDER else 99
    )


def field_ref(pod: dict[str, Any], path: str) -> str:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    m = re.match(r"metadata\.(labels|annotations)\['(.+)'\]$", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    values = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    return values.get(path, str(status.get(path.split(".")[-1], "")))


def resource_field_ref(pod: dict[str, Any], container: dict[str, Any], ref: dict[str, Any]) -> str:
    kind, _, resource = ref["resource"].partition(".")
    values = (container.get("resources") or {}).get(kind) or {}
    amount = quantity(values.get(resource, "0"))
    divisor = quantity(ref.get("divisor", "1"))
    if resource == "cpu":
        return str(max(1, int(-(-amount // divisor)))) if amount else str(os.cpu_count() or 1)
    return str(int(amount // divisor)) if amount else "0"


class Kubelet:
    def __init__(
        self,
        registry: Registry,
        recorder: Recorder,
        scripts: Scripts,
        *,
        root: Path,
        image: Image,
        nodes: set[str],
        api_address: tuple[str, int],
        restart_backoff_s: float = 0.2,
        max_grace_s: float = 3.0,
        hooks: Sequence[ImageHook] = (),
    ) -> None:
        self.registry = registry
        self.store = registry.store
        self.recorder = recorder
        self.scripts = scripts
        self.root = root
        self.image = image
        self.nodes = nodes
        self.api_address = api_address
        self.restart_backoff_s = restart_backoff_s
        self.max_grace_s = max_grace_s
        self.hooks = list(hooks)
        self.workers: dict[str, PodWorker] = {}
        self.container_logs: dict[str, Path] = {}
        """containerID -> the log file of that container instance."""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.store.wake()
        self._thread.join(5)
        for worker in list(self.workers.values()):
            worker.stopping.set()
            worker.wake.set()
        for worker in list(self.workers.values()):
            worker.join(10)
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                kill_tree(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(5)
            reap_container(proc)

    def track(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.append(proc)

    def processes(self) -> list[int]:
        """The pids of the container processes still running."""
        with self._lock:
            return [p.pid for p in self._procs if p.poll() is None]

    def grace(self, pod: dict[str, Any]) -> float:
        meta = pod["metadata"]
        period = meta.get("deletionGracePeriodSeconds")
        if period is None:
            period = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return min(float(period), self.max_grace_s)

    def event(
        self,
        pod: dict[str, Any],
        type_: str,
        reason: str,
        message: str,
        field_path: str | None = None,
    ) -> None:
        self.recorder.event(
            pod,
            type_,
            reason,
            message,
            component=KUBELET,
            host=pod["spec"].get("nodeName"),
            field_path=field_path,
        )

    def _loop(self) -> None:
        rv = 0
        seen: dict[str, str] = {}
        while not self._stop.is_set():
            rv = self.store.wait(rv, 0.5)
            pods, _ = self.store.objects("", "pods")
            alive = set()
            for pod in pods:
                uid = pod["metadata"]["uid"]
                alive.add(uid)
                node = pod["spec"].get("nodeName")
                worker = self.workers.get(uid)
                if worker is None and node in self.nodes and not self._stop.is_set():
                    phase = (pod.get("status") or {}).get("phase")
                    if phase in ("Succeeded", "Failed"):
                        continue
                    worker = PodWorker(self, pod)
                    self.workers[uid] = worker
                    worker.start()
                elif worker is not None and seen.get(uid) != pod["metadata"]["resourceVersion"]:
                    worker.wake.set()
                seen[uid] = pod["metadata"]["resourceVersion"]
            for uid, worker in list(self.workers.items()):
                if uid not in alive:
                    worker.wake.set()
                    seen.pop(uid, None)
                if not worker.is_alive():
                    self.workers.pop(uid, None)

    # -- logs ----------------------------------------------------------------------------

    def log_file(self, pod: dict[str, Any], container: str, previous: bool) -> Path | None:
        """The log of the container instance a log request reads, as the kubelet chooses it;
        None when the pod is not on a node yet."""
        name = pod["metadata"]["name"]
        if not pod["spec"].get("nodeName"):
            return None
        status = next(
            (
                c
                for c in (pod.get("status") or {}).get("containerStatuses") or []
                if c["name"] == container
            ),
            None,
        )
        if status is None:
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
            )
        state_ = status.get("state") or {}
        last = (status.get("lastState") or {}).get("terminated")
        if previous:
            if not last or not last.get("containerID"):
                raise bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            cid = last["containerID"]
        elif "running" in state_:
            cid = status.get("containerID", "")
        elif "terminated" in state_:
            cid = state_["terminated"].get("containerID", "")
        elif last and last.get("containerID"):
            cid = last["containerID"]
        else:
            reason = (state_.get("waiting") or {}).get("reason", "ContainerCreating")
            shown = {
                "ErrImagePull": "image can't be pulled",
                "ImagePullBackOff": "trying and failing to pull image",
            }.get(reason, reason)
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: {shown}'
            )
        path = self.container_logs.get(cid)
        if path is None:
            raise ApiError(
                404,
                "NotFound",
                f'container "{container}" in pod "{name}" not found: log file is gone',
            )
        return path

    def follow(
        self,
        pod_key: Key,
        uid: str,
        container: str,
        path: Path,
        *,
        timestamps: bool,
        tail_lines: int | None,
    ) -> Iterator[bytes]:
        """The log as it grows, until the container instance stops."""
        sent = read_log(path, timestamps=True, tail_lines=tail_lines)
        offset = path.stat().st_size if path.exists() else 0
        if sent:
            yield (
                sent if timestamps else read_log(path, timestamps=False, tail_lines=tail_lines)
            ).encode()
        while not self._stop.is_set():
            running = False
            pod = self.store.get(pod_key)
            if pod is not None and pod["metadata"]["uid"] == uid:
                worker = self.workers.get(uid)
                state = (
                    next((c for c in worker.containers if c.spec["name"] == container), None)
                    if worker
                    else None
                )
                running = bool(
                    state
                    and state.instance
                    and state.instance.log == path
                    and state.phase == "running"
                )
            with open(path, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            if chunk:
                complete = chunk[: chunk.rfind(b"\n") + 1] if running else chunk
                offset += len(complete)
                if complete:
                    text = complete.decode(errors="replace")
                    if not timestamps:
                        text = "".join(
                            line.split(" ", 1)[1] if " " in line else ""
                            for line in text.splitlines(keepends=True)
                        )
                    yield text.encode()
            if not running:
                return
            time.sleep(0.1)
