"""The job kinds as a cluster serves them: API group and resource, the operator that runs them,
and how their controllers label the pods they create (the names the replicas go by)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

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
    """The label the kind's controller puts on its pods, with the job's name as value."""
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
}
# A RayJob's submitter is a batch/v1 Job of the same name: the richer kinds are looked up first.
LOOKUP_ORDER: Final[tuple[Kind, ...]] = ("TrainJob", "PyTorchJob", "Job")

PYTORCH_REPLICA_TYPE = "training.kubeflow.org/replica-type"
PYTORCH_REPLICA_INDEX = "training.kubeflow.org/replica-index"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def replica_of(kind: Kind, pod: dict[str, Any]) -> tuple[str, int]:
    """(type, index) of the replica a pod runs, from the labels its controller set."""
    labels = pod.get("metadata", {}).get("labels", {})
    if kind == "PyTorchJob":
        return (
            labels.get(PYTORCH_REPLICA_TYPE, "master").capitalize(),
            _index(labels.get(PYTORCH_REPLICA_INDEX)),
        )
    if kind == "TrainJob":
        return "Node", _index(labels.get(COMPLETION_INDEX))
    return "Trainer", 0


def replica_name(type_: str, index: int) -> str:
    """master-0, worker-1, node-0, trainer-0: the names the local backend gives them too."""
    return f"{type_.lower()}-{index}"


def _index(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0
