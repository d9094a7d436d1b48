"""The job kinds as a cluster serves them: API group and resource, the operator that runs them,
and how their pods are found and named (the names the replicas go by)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from mcp_servers.kubernetes.manifests import JOB_ID_LABEL
from mcp_servers.kubernetes.schemas import Kind


@dataclass(frozen=True)
class KindInfo:
    kind: Kind
    group: str
    version: str
    plural: str
    operator: str
    """What to install when the cluster does not serve the kind."""
    pod_label: str
    """The label on every pod of a job, with the job's name as value."""
    first_replica: str
    """Rank 0's replica: the default for logs, before any pod exists."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def pod_selector(self, name: str) -> str:
        return f"{self.pod_label}={name}"


KINDS: Final[dict[Kind, KindInfo]] = {
    "Job": KindInfo(
        kind="Job",
        group="batch",
        version="v1",
        plural="jobs",
        operator="Kubernetes' own Job controller (batch/v1 is built in)",
        pod_label="batch.kubernetes.io/job-name",
        first_replica="trainer-0",
    ),
    "PyTorchJob": KindInfo(
        kind="PyTorchJob",
        group="kubeflow.org",
        version="v1",
        plural="pytorchjobs",
        operator="the Kubeflow Training Operator: kubectl apply --server-side -k "
        '"github.com/kubeflow/training-operator.git/manifests/overlays/standalone?ref=v1.8.1"',
        pod_label="training.kubeflow.org/job-name",
        first_replica="master-0",
    ),
    "TrainJob": KindInfo(
        kind="TrainJob",
        group="trainer.kubeflow.org",
        version="v1alpha1",
        plural="trainjobs",
        operator="Kubeflow Trainer v2 and its torch-distributed runtime: kubectl apply "
        '--server-side -k "github.com/kubeflow/trainer.git/manifests/overlays/manager?ref=v2.0.0"',
        pod_label="jobset.sigs.k8s.io/jobset-name",
        first_replica="node-0",
    ),
    # KubeRay keeps the labels of the pod templates: the submitter's (the driver), the head's
    # and the workers' pods all carry the job id trainops gives them, and no label of KubeRay's
    # names the RayJob on all three.
    "RayJob": KindInfo(
        kind="RayJob",
        group="ray.io",
        version="v1",
        plural="rayjobs",
        operator="KubeRay (ray-operator) and its ray.io CRDs: helm repo add kuberay "
        "https://ray-project.github.io/kuberay-helm/ && helm install kuberay-operator "
        "kuberay/kuberay-operator",
        pod_label=JOB_ID_LABEL,
        first_replica="driver",
    ),
}
# A RayJob's submitter is a batch/v1 Job of the same name: the richer kinds are looked up first.
LOOKUP_ORDER: Final[tuple[Kind, ...]] = ("TrainJob", "PyTorchJob", "RayJob", "Job")

PYTORCH_REPLICA_TYPE = "training.kubeflow.org/replica-type"
PYTORCH_REPLICA_INDEX = "training.kubeflow.org/replica-index"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
RAY_NODE_TYPE = "ray.io/node-type"
SINGLE_REPLICAS = frozenset({"Driver", "Head"})
"""A RayJob's replicas that are one of their kind, named without an index."""

Replicas = dict[str, tuple[str, int]]


def replicas_of(kind: Kind, pods: list[dict[str, Any]]) -> Replicas:
    """(type, index) of the replica each pod runs, by pod name, from the labels its controller
    set. A RayJob's submitter runs the driver; its Ray workers carry no index, and are
    numbered in the order they were made."""
    found: Replicas = {}
    workers = []
    for pod in pods:
        meta = pod.get("metadata", {})
        labels = meta.get("labels") or {}
        if kind == "PyTorchJob":
            replica = (
                labels.get(PYTORCH_REPLICA_TYPE, "master").capitalize(),
                _index(labels.get(PYTORCH_REPLICA_INDEX)),
            )
        elif kind == "TrainJob":
            replica = "Node", _index(labels.get(COMPLETION_INDEX))
        elif kind == "RayJob":
            node_type = labels.get(RAY_NODE_TYPE)
            if node_type == "worker":
                workers.append(pod)
                continue
            replica = ("Head", 0) if node_type == "head" else ("Driver", 0)
        else:
            replica = "Trainer", 0
        found[meta.get("name", "")] = replica
    workers.sort(
        key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"])
    )
    for index, pod in enumerate(workers):
        found[pod["metadata"]["name"]] = ("Worker", index)
    return found


def replica_name(type_: str, index: int) -> str:
    """master-0, worker-1, node-0, trainer-0, driver, head: the names the local backend gives
    them too."""
    return type_.lower() if type_ in SINGLE_REPLICAS else f"{type_.lower()}-{index}"


def _index(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
