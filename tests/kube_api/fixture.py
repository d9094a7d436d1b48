"""The test API server's handle (`KubeApi`) and its pytest fixtures.

A test package gets the fixtures by importing them into its conftest.py:

    from tests.kube_api.fixture import kube_api, kube_api_factory

    __all__ = ["kube_api", "kube_api_factory"]

`kube_api` is a server with the defaults (every CRD group, the RBAC of k8s/base/rbac.yaml, a
CPU node and two GPU nodes); `kube_api_factory(**options)` starts servers with other options
(see `KubeApi`). Clients reach a server through `kube_api.kubeconfig` (a process through
KUBECONFIG=...), as they would reach a cluster; tests steer it with `script(...)` and the fault
hooks, and read what happened from `requests` and `get`/`objects`.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil
import pytest
import yaml

from tests.kube_api.controllers import ControllerManager, GarbageCollector, JobController
from tests.kube_api.discovery import BUILTIN, JOBSET, Catalog, load_crds
from tests.kube_api.events import Recorder
from tests.kube_api.kubelet import Image, Kubelet
from tests.kube_api.operators import (
    RUNTIMES,
    JobSetController,
    PyTorchJobController,
    RayClusterController,
    RayImage,
    RayJobController,
    TrainJobController,
)
from tests.kube_api.outcomes import Outcome, Scripts
from tests.kube_api.rbac import NAMESPACE, Rbac
from tests.kube_api.registry import Registry
from tests.kube_api.scheduler import Scheduler
from tests.kube_api.server import ApiServer, RequestLog
from tests.kube_api.store import DEFAULT_HISTORY, Store, now
from tests.kube_api.validation import Validator
from tests.support import REPO

SHARED_CRDS = REPO.parent / "shared" / "crds"
VENDORED_CRDS = Path(__file__).parent / "crds"
"""The same files, gzipped, so that a clone without ../shared validates against them too."""
CRDS_DIR = SHARED_CRDS if SHARED_CRDS.is_dir() else VENDORED_CRDS


def crd_text(name: str) -> str:
    """A CRD file's text, e.g. "kubeflow.org_pytorchjobs.yaml", from wherever CRDS_DIR is."""
    plain = CRDS_DIR / name
    if plain.is_file():
        return plain.read_text()
    return gzip.decompress((CRDS_DIR / f"{name}.gz").read_bytes()).decode()


CRD_GROUPS = ("kubeflow.org", "trainer.kubeflow.org", "ray.io")
RBAC_MANIFEST = REPO / "k8s" / "base" / "rbac.yaml"
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", NAMESPACE)
GPU_PRODUCT = "NVIDIA-A100-SXM4-80GB"
GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}

__all__ = ["KubeApi", "NodeSpec", "Outcome", "Rbac", "kube_api", "kube_api_factory"]


class CrdsMissing(Exception):
    pass


@dataclass(frozen=True)
class NodeSpec:
    """A node the scheduler may bind pods to (all of them are this machine to the kubelet)."""

    name: str
    cpu: str
    memory: str
    gpus: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[Mapping[str, str]] = ()
    pods: int = 110

    def body(self) -> dict[str, Any]:
        resources = {
            "cpu": self.cpu,
            "memory": self.memory,
            "ephemeral-storage": "100Gi",
            "hugepages-1Gi": "0",
            "hugepages-2Mi": "0",
            "pods": str(self.pods),
        }
        if self.gpus:
            resources["nvidia.com/gpu"] = str(self.gpus)
        stamp = now()
        conditions = [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "beta.kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    **self.labels,
                },
                "annotations": {
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                },
            },
            "spec": {},
            "status": {
                "capacity": dict(resources),
                "allocatable": dict(resources),
                "conditions": [
                    {
                        "type": t,
                        "status": s,
                        "reason": r,
                        "message": m,
                        "lastHeartbeatTime": stamp,
                        "lastTransitionTime": stamp,
                    }
                    for t, s, r, m in conditions
                ],
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": "",
                    "containerRuntimeVersion": "containerd://1.7.27",
                    "kernelVersion": os.uname().release,
                    "kubeProxyVersion": "",
                    "kubeletVersion": "v1.33.1",
                    "machineID": "",
                    "operatingSystem": "linux",
                    "osImage": "Ubuntu 24.04.2 LTS",
                    "systemUUID": "",
                },
            },
        }
        if self.taints:
            body["spec"]["taints"] = [dict(t) for t in self.taints]
        return body


def default_nodes() -> tuple[NodeSpec, ...]:
    """A CPU node the size of this machine, and two 8-GPU A100 nodes (tainted, labelled as the
    NVIDIA GPU operator labels them)."""
    memory_ki = psutil.virtual_memory().total // 1024
    gpu_labels = {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": GPU_PRODUCT,
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.memory": "81920",
    }
    return (
        NodeSpec("node-cpu-0", str(os.cpu_count() or 1), f"{memory_ki}Ki"),
        NodeSpec("node-gpu-0", "96", "1152Gi", gpus=8, labels=gpu_labels, taints=(GPU_TAINT,)),
        NodeSpec("node-gpu-1", "96", "1152Gi", gpus=8, labels=gpu_labels, taints=(GPU_TAINT,)),
    )


class KubeApi:
    """A running test API server and what a test drives it with.

    Options:
        crds: the CRD groups installed (default: all of kubeflow.org, trainer.kubeflow.org,
            ray.io); a group not installed is absent from discovery and its paths are 404.
        rbac: the rules the kubeconfig's user is held to: "project" (the default) for the Roles
            and ClusterRoles that k8s/base/rbac.yaml binds to the service account (the Role in
            the namespace `namespace`), an `Rbac` of its own, or None for no authorisation.
        namespace: the kubeconfig's namespace, where k8s/base is deployed.
        nodes: the nodes (default `default_nodes()`).
        bookmark_interval_s: quiet time after which a watch with allowWatchBookmarks gets a
            BOOKMARK.
        restart_backoff_s: the kubelet's CrashLoopBackOff and the Job controller's pod
            replacement backoff.
        max_grace_s: the longest a kubelet waits between SIGTERM and SIGKILL.
        history: how many changes watches can resume from.
        field_validation: what a write that names no fieldValidation gets: "Warn" (an API
            server's default: unknown fields dropped, with a Warning header), "Strict" (400) or
            "Ignore".
        image: what every container image provides (default: the project's venv on PATH,
            PYTHONPATH at the project root).
        ray_address: RAY_ADDRESS for RayJob entrypoints (default: none; `ray.init()` in the
            entrypoint starts a local Ray).
    """

    def __init__(
        self,
        root: Path,
        *,
        crds: Iterable[str] = CRD_GROUPS,
        rbac: Rbac | Literal["project"] | None = "project",
        nodes: Sequence[NodeSpec] | None = None,
        namespace: str = NAMESPACE,
        bookmark_interval_s: float = 1.0,
        restart_backoff_s: float = 0.2,
        max_grace_s: float = 3.0,
        history: int = DEFAULT_HISTORY,
        field_validation: str = "Warn",
        image: Image | None = None,
        ray_address: str | None = None,
        crds_dir: Path = CRDS_DIR,
    ) -> None:
        groups = tuple(crds)
        if groups and not crds_dir.is_dir():
            raise CrdsMissing(
                f"CRD files not found at {crds_dir} (the shared CRDs sit beside the project in "
                "development); start with crds=() for built-in kinds only"
            )
        self.root = root
        self.namespace = namespace
        self.token = secrets.token_urlsafe(24)
        self.rbac = (
            Rbac.from_manifest(RBAC_MANIFEST, namespace=namespace) if rbac == "project" else rbac
        )
        self.store = Store(history)
        loaded = load_crds(crds_dir, groups) if groups else []
        types = list(BUILTIN)
        for crd in loaded:
            types += crd.resource_types()
        if "trainer.kubeflow.org" in groups:
            types.append(JOBSET)
        self.nodes = tuple(nodes) if nodes is not None else default_nodes()
        self.bookmark_interval_s = bookmark_interval_s
        self.restart_backoff_s = restart_backoff_s
        self.max_grace_s = max_grace_s
        self.image = image or Image.local(REPO)
        self.ray_address = ray_address
        self._types = types
        self._crds = loaded
        self._groups = groups
        self._field_validation = field_validation
        self.server: ApiServer | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> KubeApi:
        self.root.mkdir(parents=True, exist_ok=True)
        validator = Validator(self._crds)
        catalog = Catalog(self._types, "127.0.0.1:0")
        self.registry = Registry(
            self.store,
            catalog,
            validator,
            field_validation=self._field_validation,
            runtimes=RUNTIMES,
        )
        self.server = ApiServer(
            self.registry,
            catalog,
            None,
            token=self.token,
            rbac=self.rbac,
            bookmark_interval_s=self.bookmark_interval_s,
        )
        catalog.address = self.server.address
        for name in NAMESPACES:
            self._seed_namespace(name)
        if self.namespace not in NAMESPACES:
            self._seed_namespace(self.namespace)
        for node in self.nodes:
            self._seed_node(node)
        recorder = Recorder(self.store)
        self.scripts = Scripts(self.store)
        hooks = [RayImage(self.store, self.ray_address)] if "ray.io" in self._groups else []
        self.kubelet = Kubelet(
            self.registry,
            recorder,
            self.scripts,
            root=self.root,
            image=self.image,
            nodes={n.name for n in self.nodes},
            api_address=("127.0.0.1", self.server.port),
            restart_backoff_s=self.restart_backoff_s,
            max_grace_s=self.max_grace_s,
            hooks=hooks,
        )
        self.server.kubelet = self.kubelet
        reconcilers: list[Callable[[], None]] = [
            GarbageCollector(self.registry).step,
            JobController(self.registry, recorder, self.restart_backoff_s).step,
        ]
        if "kubeflow.org" in self._groups:
            reconcilers.append(PyTorchJobController(self.registry, recorder).step)
        if "trainer.kubeflow.org" in self._groups:
            reconcilers.append(TrainJobController(self.registry, recorder).step)
            reconcilers.append(JobSetController(self.registry, recorder).step)
        if "ray.io" in self._groups:
            reconcilers.append(RayClusterController(self.registry, recorder).step)
            reconcilers.append(RayJobController(self.registry, recorder).step)
        reconcilers.append(Scheduler(self.store, recorder, self.scripts).step)
        self.manager = ControllerManager(self.store, reconcilers)
        self.kubeconfig = self.root / "kubeconfig"
        self._write_kubeconfig()
        self._forget_discovery_cache()
        self.kubelet.start()
        self.manager.start()
        return self

    def stop(self) -> list[str]:
        """Stop everything and kill every process it started; the errors its threads met."""
        if self.server is not None:
            self.server.down()
        self.manager.stop()
        self.kubelet.stop()
        self._forget_discovery_cache()
        return [*self.server.errors, *self.manager.errors] if self.server else []

    def __enter__(self) -> KubeApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        errors = self.stop()
        if errors and exc[0] is None:
            raise AssertionError("the test API server failed:\n" + "\n".join(errors))

    def _seed_namespace(self, name: str) -> None:
        ns = self.registry.type_of("", "namespaces")
        self.registry.create(ns, None, {"metadata": {"name": name}}, manager="kube-apiserver")

    def _seed_node(self, node: NodeSpec) -> None:
        nodes = self.registry.type_of("", "nodes")
        body = node.body()
        status = body["status"]
        self.registry.create(nodes, None, body, manager="kubelet")

        def ready(obj: dict[str, Any]) -> dict[str, Any]:
            obj["status"] = status
            return obj

        self.store.mutate(("", "nodes", "", node.name), ready)

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-api-test", "cluster": {"server": self.url}}],
            "users": [{"name": "trainops-mcp", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "kube-api-test",
                    "context": {
                        "cluster": "kube-api-test",
                        "user": "trainops-mcp",
                        "namespace": self.namespace,
                    },
                }
            ],
            "current-context": "kube-api-test",
            "preferences": {},
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))

    def _forget_discovery_cache(self) -> None:
        """DynamicClient caches discovery in a temp file named after the server URL; a server
        from an earlier run on the same port must not leave its groups there."""
        digest = hashlib.md5(self.url.encode(), usedforsecurity=False).hexdigest()
        Path(tempfile.gettempdir(), f"osrcp-{digest}.json").unlink(missing_ok=True)

    # -- what tests use --------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.server is not None, "not started"
        return self.server.url

    @property
    def requests(self) -> RequestLog:
        """Every request: verb, api_group, resource (with subresource), namespace, name, code,
        field_manager. `requests.clear()` forgets them; `requests.pairs()` gives the
        (verb, group, resource) set to compare with a Role."""
        assert self.server is not None
        return self.server.requests

    @property
    def errors(self) -> list[str]:
        """Tracebacks of the server's and controllers' own failures (should stay empty)."""
        assert self.server is not None
        return [*self.server.errors, *self.manager.errors]

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient configured from the kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def dynamic_client(self) -> Any:
        from kubernetes.dynamic import DynamicClient

        return DynamicClient(self.api_client(), cache_file=str(self.root / "discovery.json"))

    def script(self, job: str, outcome: Outcome, *, pod: str | None = None) -> None:
        """Make the pods of the jobs named `job` (a glob on the top-level object's name), or
        only those whose names match `pod`, behave as `outcome`. Set before they are made."""
        self.scripts.add(job, outcome, pod)

    def clear_scripts(self) -> None:
        self.scripts.clear()

    def drop_watches(self) -> None:
        assert self.server is not None
        self.server.drop_watches()

    def down(self) -> None:
        """Stop listening and drop every connection; `up()` listens again on the same port.
        Controllers and the kubelet keep going meanwhile, as a cluster's do."""
        assert self.server is not None
        self.server.down()

    def up(self) -> None:
        assert self.server is not None
        self.server.up()

    def latency(self, seconds: float) -> None:
        """Delay every response by `seconds` (0 to stop)."""
        assert self.server is not None
        self.server.faults.latency_s = seconds

    def fail_next(
        self, method: str, path_regex: str, code: int, reason: str | None = None, times: int = 1
    ) -> None:
        """Answer the next `times` requests of `method` ("*": any) whose path matches with a
        Status of that code (and reason, default the code's usual one)."""
        assert self.server is not None
        self.server.faults.fail_next(method, path_regex, code, reason, times)

    def compact(self) -> None:
        """Forget the watch history: a watch from any resourceVersion before now gets 410."""
        self.store.compact()

    def get(
        self, group: str, plural: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """An object as stored (no RBAC, no request recorded)."""
        return self.store.get(
            (group, plural, namespace if namespace is not None else self._ns(plural), name)
        )

    def objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        return self.store.objects(group, plural, namespace)[0]

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object as a cluster admin would (validated and defaulted; no RBAC)."""
        rtype = self.registry.catalog.by_kind(body["apiVersion"], body["kind"])
        if rtype is None:
            raise ValueError(f"{body['apiVersion']} {body['kind']} is not served")
        ns = body.get("metadata", {}).get("namespace") or (
            self.namespace if rtype.namespaced else None
        )
        return self.registry.create(rtype, ns, body, manager="kubectl").body

    def patch(
        self,
        group: str,
        plural: str,
        name: str,
        patch: dict[str, Any],
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Merge-patch an object as a cluster admin would (`kubectl patch --type merge`)."""
        from tests.kube_api.patching import MERGE_PATCH

        rtype = self.registry.type_of(group, plural)
        ns = namespace if namespace is not None else self._ns(plural)
        return self.registry.patch(
            rtype, ns or None, name, patch, MERGE_PATCH, manager="kubectl"
        ).body

    def evict(self, name: str, namespace: str | None = None) -> None:
        """Evict a pod as the Eviction API does: condition DisruptionTarget, then deletion."""
        from tests.kube_api.scheduler import set_condition

        key = ("", "pods", namespace or self.namespace, name)

        def disrupt(pod: dict[str, Any]) -> dict[str, Any]:
            set_condition(
                pod, "DisruptionTarget", "True", "EvictionByEvictionAPI", "Eviction API: evicting"
            )
            return pod

        if self.store.mutate(key, disrupt) is None:
            raise KeyError(name)
        current = self.store.get(key)
        if current is not None:
            self.registry.delete_object(key, current, "Background")

    def processes(self) -> list[int]:
        """The pids of the container processes still running."""
        return self.kubelet.processes()

    def _ns(self, plural: str) -> str:
        return "" if plural in ("nodes", "namespaces") else self.namespace


@pytest.fixture()
def kube_api_factory(tmp_path: Path) -> Iterator[Callable[..., KubeApi]]:
    """Start test API servers with options (see `KubeApi`); all are stopped after the test, and
    the test fails if one of them met an error of its own."""
    started: list[KubeApi] = []

    def start(**options: Any) -> KubeApi:
        try:
            api = KubeApi(tmp_path / f"kube-api-{len(started)}", **options)
        except CrdsMissing as e:
            pytest.skip(str(e))
        started.append(api)
        return api.start()

    yield start
    errors: list[str] = []
    for api in started:
        errors += api.stop()
    assert not errors, "the test API server failed:\n" + "\n".join(errors)


@pytest.fixture()
def kube_api(kube_api_factory: Callable[..., KubeApi]) -> KubeApi:
    """A test API server with the defaults: every CRD group, k8s/base's RBAC, three nodes."""
    return kube_api_factory()
