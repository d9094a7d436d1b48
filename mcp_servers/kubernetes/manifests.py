"""Training-job manifests built from typed models: batch/v1 Job, Kubeflow PyTorchJob, TrainJob.

Pod templates come from the official client's models (V1PodTemplateSpec and friends), so every
field name and type is Kubernetes' own; the CRD wrappers around them follow the CRD schemas.
"""

from __future__ import annotations

import hashlib
import secrets
import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes import client

from common.gpus import GPU_PRODUCT_LABEL
from common.settings import KubernetesPolicy, RateCard
from mcp_servers.kubernetes.schemas import Kind, SweepSpec, TrainingJobSpec
from training.errors import CONFIG_ERROR_EXIT

MANAGED_BY = "trainops"
JOB_ID_LABEL = "trainops.io/job-id"
IDEMPOTENCY_ANNOTATION = "trainops.io/idempotency-key"
IDEMPOTENCY_LABEL = "trainops.io/idempotency-hash"
"""A label (selectable, unlike the annotation) with a digest of the key: keys are free text."""
SPEC_ANNOTATION = "trainops.io/spec"
"""What the job was asked for (model, data, resources), for status and pricing on any backend."""
SPEC_SUMMARY_FIELDS: set[str] = {
    *("model", "dataset", "epochs", "batch_size", "lr"),
    *("nodes", "gpus_per_node", "gpu_type", "cpus", "memory"),
}
CHECKPOINT_MOUNT = "/checkpoints"
DATA_MOUNT = "/data"
TRAINER_UID = 10001  # the user of k8s/image/Dockerfile (above the host's user ids)
SCRATCH_MOUNT = "/tmp"
"""The one writable path beside the volumes: the root filesystem is read-only."""
# The container names each controller expects: the Training Operator looks for "pytorch", the
# Trainer v2 torch runtime for "node".
CONTAINER_NAME: dict[str, str] = {
    "Job": "trainer",
    "PyTorchJob": "pytorch",
    "TrainJob": "node",
    "RayJob": "ray-head",
}
RAY_WORKER_CONTAINER = "ray-worker"
RAY_WORKER_GROUP = "trials"
RAY_VERSION = "2.60.0"
"""The Ray the training image carries (k8s/image/Dockerfile): KubeRay needs to know it."""
SWEEP_SPEC_FIELDS: set[str] = {
    *("model", "dataset", "epochs", "trials", "max_concurrent", "scheduler", "search"),
    *("metric", "mode", "gpus_per_trial", "gpu_type", "cpus_per_trial", "memory_per_trial"),
}
TRAINJOB_RUNTIME = "torch-distributed"
VERSION = "0.1.0"

_api = client.ApiClient()


class _PlainDumper(yaml.SafeDumper):
    """No &anchors/*aliases: replicas that share a template still print it in full."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass(frozen=True)
class RenderContext:
    policy: KubernetesPolicy
    mlflow_tracking_uri: str | None = None
    rates: RateCard = field(default_factory=RateCard)
    """What a sweep's driver prices its trials with."""


@dataclass(frozen=True)
class Manifest:
    job_id: str
    kind: Kind
    namespace: str
    body: dict[str, Any]

    @property
    def yaml(self) -> str:
        return yaml.dump(self.body, Dumper=_PlainDumper, sort_keys=False)

    @property
    def labels(self) -> dict[str, str]:
        return self.body["metadata"]["labels"]


def idempotency_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def new_job_id(spec: TrainingJobSpec | SweepSpec) -> str:
    kind = "-sweep" if isinstance(spec, SweepSpec) else ""
    return spec.name or f"{spec.model}-{spec.dataset}{kind}-{secrets.token_hex(2)}"


def _metadata(
    spec: TrainingJobSpec | SweepSpec, job_id: str, namespace: str, summary: set[str]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": job_id,
        "namespace": namespace,
        "labels": _labels(spec, job_id),
        "annotations": {SPEC_ANNOTATION: spec.model_dump_json(include=summary)},
    }
    if spec.idempotency_key:
        metadata["annotations"][IDEMPOTENCY_ANNOTATION] = spec.idempotency_key
        metadata["labels"][IDEMPOTENCY_LABEL] = idempotency_hash(spec.idempotency_key)
    return metadata


def render(spec: TrainingJobSpec, job_id: str, namespace: str, ctx: RenderContext) -> Manifest:
    kind = spec.resolved_kind()
    metadata = _metadata(spec, job_id, namespace, SPEC_SUMMARY_FIELDS)
    if kind == "Job":
        body = _job(spec, job_id, metadata, ctx)
    elif kind == "PyTorchJob":
        body = _pytorchjob(spec, job_id, metadata, ctx)
    else:
        body = _trainjob(spec, job_id, metadata, ctx)
    return Manifest(job_id=job_id, kind=kind, namespace=namespace, body=body)


def _labels(spec: TrainingJobSpec | SweepSpec, job_id: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "trainops-training",
        "app.kubernetes.io/instance": job_id,
        "app.kubernetes.io/component": "trainer",
        "app.kubernetes.io/part-of": "trainops",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": VERSION,
        JOB_ID_LABEL: job_id,
        **spec.labels,
    }


LAUNCHER = ["python", "-m", "training.launch"]
"""torchrun, exiting CONFIG_ERROR_EXIT when no retry can help (training/launch.py)."""


def torchrun_command(spec: TrainingJobSpec, job_id: str, kind: Kind) -> tuple[list[str], list[str]]:
    """Command and args: torchrun sized to the spec, then the training entry point."""
    launcher = ["--nnodes", str(spec.nodes), "--nproc-per-node", str(spec.procs_per_node)]
    if kind == "Job":
        launcher.insert(0, "--standalone")  # one node: torchrun picks its own rendezvous port
    training = spec.training_args(
        data_dir=DATA_MOUNT, checkpoint_dir=f"{CHECKPOINT_MOUNT}/{job_id}"
    )
    return list(LAUNCHER), [*launcher, "-m", "training.train", *training]


def _env(spec: TrainingJobSpec, job_id: str, ctx: RenderContext) -> list[client.V1EnvVar]:
    values = {
        "TRAINOPS_JOB_ID": job_id,
        "TRAINOPS_METRICS_PORT": str(ctx.policy.metrics_port),
        "PYTHONUNBUFFERED": "1",
        "HOME": SCRATCH_MOUNT,  # caches land on the scratch volume, not the read-only root
        # A process's share of the CPUs asked for: torch would otherwise start a thread per
        # core of the node, whatever the pod may use.
        "OMP_NUM_THREADS": str(max(1, int(spec.cpus // spec.procs_per_node))),
    }
    if ctx.mlflow_tracking_uri:
        values["MLFLOW_TRACKING_URI"] = ctx.mlflow_tracking_uri
    values.update(ctx.policy.job_env)  # the operator's: endpoints, proxies, CA bundles
    values.update(spec.env)
    plain = [client.V1EnvVar(name=k, value=v) for k, v in values.items()]
    secret = [
        client.V1EnvVar(
            name=name,
            value_from=client.V1EnvVarSource(
                secret_key_ref=client.V1SecretKeySelector(name=ref.secret, key=ref.key)
            ),
        )
        for name, ref in spec.secret_env.items()
    ]
    return plain + secret


def _resources(spec: TrainingJobSpec) -> client.V1ResourceRequirements:
    # Limits equal requests (Guaranteed QoS): a training pod gets what it is billed for.
    requests: dict[str, str] = {"cpu": _cpu_quantity(spec.cpus), "memory": spec.memory}
    limits: dict[str, str] = {"cpu": _cpu_quantity(spec.cpus), "memory": spec.memory}
    if spec.gpus_per_node:
        # Extended resources must request exactly what they limit.
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(spec.gpus_per_node)
    return client.V1ResourceRequirements(requests=requests, limits=limits)


def _cpu_quantity(cpus: float) -> str:
    return str(int(cpus)) if float(cpus).is_integer() else f"{round(cpus * 1000)}m"


def _volumes(ctx: RenderContext) -> tuple[list[client.V1Volume], list[client.V1VolumeMount]]:
    policy = ctx.policy
    volumes = [
        client.V1Volume(
            name="checkpoints",
            persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                claim_name=policy.checkpoint_claim
            ),
        ),
        client.V1Volume(
            name="datasets",
            persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                claim_name=policy.dataset_claim
            ),
        ),
        # NCCL and DataLoader workers need more shared memory than a container's 64 MiB.
        client.V1Volume(name="dshm", empty_dir=client.V1EmptyDirVolumeSource(medium="Memory")),
        client.V1Volume(name="scratch", empty_dir=client.V1EmptyDirVolumeSource()),
    ]
    mounts = [
        client.V1VolumeMount(name="checkpoints", mount_path=CHECKPOINT_MOUNT),
        client.V1VolumeMount(name="datasets", mount_path=DATA_MOUNT),
        client.V1VolumeMount(name="dshm", mount_path="/dev/shm"),
        client.V1VolumeMount(name="scratch", mount_path=SCRATCH_MOUNT),
    ]
    return volumes, mounts


def _container(
    spec: TrainingJobSpec, job_id: str, kind: Kind, ctx: RenderContext
) -> client.V1Container:
    command, args = torchrun_command(spec, job_id, kind)
    _, mounts = _volumes(ctx)
    ports = [
        client.V1ContainerPort(
            name=f"metrics-{rank}", container_port=ctx.policy.metrics_port + rank
        )
        for rank in range(spec.procs_per_node)
    ]
    return client.V1Container(
        name=CONTAINER_NAME[kind],
        image=spec.image or ctx.policy.default_image,
        image_pull_policy="IfNotPresent",
        command=command,
        args=args,
        env=_env(spec, job_id, ctx),
        ports=ports,
        resources=_resources(spec),
        volume_mounts=mounts,
        # A read-only root filesystem too: the volumes are where the job writes.
        security_context=_restricted_container(read_only_root=True),
    )


def _pod_template(
    spec: TrainingJobSpec, job_id: str, kind: Kind, ctx: RenderContext, restart_policy: str
) -> client.V1PodTemplateSpec:
    volumes, _ = _volumes(ctx)
    gpu = spec.gpus_per_node > 0
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(
            labels=_labels(spec, job_id),
            annotations={
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(ctx.policy.metrics_port),
                "prometheus.io/path": "/metrics",
            },
        ),
        spec=client.V1PodSpec(
            restart_policy=restart_policy,
            containers=[_container(spec, job_id, kind, ctx)],
            volumes=volumes,
            # No API access; non-root, with the volumes writable by the training image's user.
            service_account_name=ctx.policy.service_account,
            automount_service_account_token=False,
            security_context=_restricted_pod(),
            node_selector=_node_selector(spec, ctx) if gpu else None,
            tolerations=[client.V1Toleration(**t) for t in ctx.policy.gpu_tolerations]
            if gpu
            else None,
        ),
    )
    return template


def _node_selector(spec: TrainingJobSpec | SweepSpec, ctx: RenderContext) -> dict[str, str] | None:
    """The policy's GPU node selector, plus the GPU product of the type the spec asks for."""
    selector = dict(ctx.policy.gpu_node_selector)
    if spec.gpu_type is not None:
        selector[GPU_PRODUCT_LABEL] = ctx.policy.gpu_product(spec.gpu_type)
    return selector or None


def _job(spec: TrainingJobSpec, job_id: str, metadata: dict, ctx: RenderContext) -> dict[str, Any]:
    disruption = client.V1PodFailurePolicyOnPodConditionsPattern(
        type="DisruptionTarget", status="True"
    )
    job = client.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=client.V1ObjectMeta(**metadata),
        spec=client.V1JobSpec(
            backoff_limit=_backoff_limit(spec, ctx),
            active_deadline_seconds=_deadline(spec, ctx),
            ttl_seconds_after_finished=ctx.policy.ttl_seconds_after_finished,
            completions=1,
            parallelism=1,
            # Evictions and preemptions are not the job's fault: they don't use up retries. Bad
            # flags or data fail the same way every time: they fail the job at once.
            pod_failure_policy=client.V1PodFailurePolicy(
                rules=[
                    client.V1PodFailurePolicyRule(action="Ignore", on_pod_conditions=[disruption]),
                    client.V1PodFailurePolicyRule(
                        action="FailJob",
                        on_exit_codes=client.V1PodFailurePolicyOnExitCodesRequirement(
                            container_name=CONTAINER_NAME["Job"],
                            operator="In",
                            values=[CONFIG_ERROR_EXIT],
                        ),
                    ),
                ]
            ),
            template=_pod_template(spec, job_id, "Job", ctx, restart_policy="Never"),
        ),
    )
    return _api.sanitize_for_serialization(job)


def _pytorchjob(
    spec: TrainingJobSpec, job_id: str, metadata: dict, ctx: RenderContext
) -> dict[str, Any]:
    template = _api.sanitize_for_serialization(
        _pod_template(spec, job_id, "PyTorchJob", ctx, restart_policy="OnFailure")
    )
    replica_specs: dict[str, Any] = {
        "Master": {"replicas": 1, "restartPolicy": "OnFailure", "template": template}
    }
    if spec.nodes > 1:
        replica_specs["Worker"] = {
            "replicas": spec.nodes - 1,
            "restartPolicy": "OnFailure",
            "template": template,
        }
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": metadata,
        "spec": {
            "runPolicy": {
                "backoffLimit": _backoff_limit(spec, ctx),
                "activeDeadlineSeconds": _deadline(spec, ctx),
                "ttlSecondsAfterFinished": ctx.policy.ttl_seconds_after_finished,
                "cleanPodPolicy": "Running",
            },
            "nprocPerNode": str(spec.procs_per_node),
            "pytorchReplicaSpecs": replica_specs,
        },
    }


def _trainjob(
    spec: TrainingJobSpec, job_id: str, metadata: dict, ctx: RenderContext
) -> dict[str, Any]:
    container = _api.sanitize_for_serialization(_container(spec, job_id, "TrainJob", ctx))
    template = _api.sanitize_for_serialization(
        _pod_template(spec, job_id, "TrainJob", ctx, restart_policy="OnFailure")
    )
    override: dict[str, Any] = {
        "targetJobs": [{"name": "node"}],
        "volumes": template["spec"]["volumes"],
        "containers": [{"name": "node", "volumeMounts": container["volumeMounts"]}],
    }
    for key in ("nodeSelector", "tolerations"):
        if key in template["spec"]:
            override[key] = template["spec"][key]
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": metadata,
        "spec": {
            "runtimeRef": {"name": TRAINJOB_RUNTIME},
            "trainer": {
                "image": container["image"],
                "command": container["command"],
                "args": container["args"],
                "env": container["env"],
                "numNodes": spec.nodes,
                "numProcPerNode": spec.procs_per_node,
                "resourcesPerNode": container["resources"],
            },
            "labels": metadata["labels"],
            "annotations": template["metadata"]["annotations"],
            "podSpecOverrides": [override],
        },
    }


def _backoff_limit(spec: TrainingJobSpec, ctx: RenderContext) -> int:
    return ctx.policy.backoff_limit if spec.backoff_limit is None else spec.backoff_limit


def _deadline(spec: TrainingJobSpec, ctx: RenderContext) -> int:
    return spec.active_deadline_seconds or ctx.policy.active_deadline_seconds


# -- sweeps -------------------------------------------------------------------------------------


def render_sweep(spec: SweepSpec, job_id: str, namespace: str, ctx: RenderContext) -> Manifest:
    """A ray.io/v1 RayJob: a Ray cluster of its own (a head for the driver, one worker per
    concurrent trial), the sweep entry point as its entrypoint, removed when the sweep ends."""
    metadata = _metadata(spec, job_id, namespace, SWEEP_SPEC_FIELDS)
    usd_per_trial_hour = spec.trial_resources().per_hour(ctx.rates)
    args = spec.tune_args(
        data_dir=DATA_MOUNT,
        checkpoint_dir=f"{CHECKPOINT_MOUNT}/{job_id}",
        usd_per_trial_hour=usd_per_trial_hour,
        sweep_id=job_id,
    )
    env = _sweep_env(job_id, ctx)
    head = _ray_pod(
        spec, job_id, ctx, CONTAINER_NAME["RayJob"], env, cpus=1.0, memory="2Gi", gpus=0
    )
    worker = _ray_pod(
        spec,
        job_id,
        ctx,
        RAY_WORKER_CONTAINER,
        env,
        cpus=spec.cpus_per_trial,
        memory=spec.memory_per_trial,
        gpus=spec.gpus_per_trial,
    )
    workers = spec.concurrent
    submitter = _submitter_pod(spec, job_id, ctx)
    body = {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": metadata,
        "spec": {
            "entrypoint": shlex.join(["python", "-m", "training.tune", *args]),
            # The driver's env: the entrypoint runs where the submitter sends it, not in a
            # container of ours, so it travels as Ray's runtime env.
            "runtimeEnvYAML": yaml.safe_dump({"env_vars": env}, sort_keys=True),
            "shutdownAfterJobFinishes": True,
            # The Ray cluster (GPU workers among it) goes a minute after the sweep ends; the
            # submitter Job, which holds the driver's log, stays.
            "ttlSecondsAfterFinished": min(ctx.policy.ttl_seconds_after_finished, 60),
            "activeDeadlineSeconds": _sweep_deadline(spec, ctx),
            "backoffLimit": ctx.policy.backoff_limit
            if spec.backoff_limit is None
            else spec.backoff_limit,
            "submissionMode": "K8sJobMode",
            "submitterPodTemplate": submitter,
            "rayClusterSpec": {
                "rayVersion": RAY_VERSION,
                "headGroupSpec": {
                    # No trial on the head: it holds the driver, the GCS and the dashboard.
                    "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                    "template": head,
                },
                "workerGroupSpecs": [
                    {
                        "groupName": RAY_WORKER_GROUP,
                        "replicas": workers,
                        "minReplicas": workers,
                        "maxReplicas": workers,
                        "rayStartParams": {},
                        "template": worker,
                    }
                ],
            },
        },
    }
    return Manifest(job_id=job_id, kind="RayJob", namespace=namespace, body=body)


def _sweep_env(job_id: str, ctx: RenderContext) -> dict[str, str]:
    values = {
        "TRAINOPS_JOB_ID": job_id,
        "PYTHONUNBUFFERED": "1",
        "HOME": SCRATCH_MOUNT,
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if ctx.mlflow_tracking_uri:
        values["MLFLOW_TRACKING_URI"] = ctx.mlflow_tracking_uri
    values.update(ctx.policy.job_env)
    return values


def _sweep_deadline(spec: SweepSpec, ctx: RenderContext) -> int:
    """The time budget, with room for the cluster to come up and the driver to report."""
    if spec.max_seconds is None:
        return ctx.policy.active_deadline_seconds
    return spec.max_seconds + 600


def _ray_pod(
    spec: SweepSpec,
    job_id: str,
    ctx: RenderContext,
    container_name: str,
    env: dict[str, str],
    *,
    cpus: float,
    memory: str,
    gpus: int,
) -> dict[str, Any]:
    volumes, mounts = _volumes(ctx)
    requests: dict[str, str] = {"cpu": _cpu_quantity(cpus), "memory": memory}
    if gpus:
        requests["nvidia.com/gpu"] = str(gpus)
    container = client.V1Container(
        name=container_name,
        image=spec.image or ctx.policy.default_image,
        image_pull_policy="IfNotPresent",
        env=[client.V1EnvVar(name=k, value=v) for k, v in env.items()],
        resources=client.V1ResourceRequirements(requests=requests, limits=dict(requests)),
        volume_mounts=mounts,
        security_context=_restricted_container(),
    )
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=_labels(spec, job_id)),
        spec=client.V1PodSpec(
            containers=[container],
            volumes=volumes,
            service_account_name=ctx.policy.service_account,
            automount_service_account_token=False,
            security_context=_restricted_pod(),
            node_selector=_node_selector(spec, ctx) if gpus else None,
            tolerations=[client.V1Toleration(**t) for t in ctx.policy.gpu_tolerations]
            if gpus
            else None,
        ),
    )
    return _api.sanitize_for_serialization(template)


def _submitter_pod(spec: SweepSpec, job_id: str, ctx: RenderContext) -> dict[str, Any]:
    """KubeRay's submitter (it fills in `ray job submit`): our labels, so the network policy
    lets it reach the head, and the restricted Pod Security profile."""
    container = client.V1Container(
        name="ray-job-submitter",
        image=spec.image or ctx.policy.default_image,
        resources=client.V1ResourceRequirements(
            requests={"cpu": "200m", "memory": "256Mi"}, limits={"cpu": "1", "memory": "512Mi"}
        ),
        security_context=_restricted_container(),
    )
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=_labels(spec, job_id)),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[container],
            automount_service_account_token=False,
            security_context=_restricted_pod(),
        ),
    )
    return _api.sanitize_for_serialization(template)


def _restricted_container(read_only_root: bool | None = None) -> client.V1SecurityContext:
    """The restricted Pod Security Standard: nothing to escalate to, no capabilities."""
    return client.V1SecurityContext(
        allow_privilege_escalation=False,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        read_only_root_filesystem=read_only_root,
        run_as_non_root=True,
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )


def _restricted_pod() -> client.V1PodSecurityContext:
    """Non-root, with the volumes writable by the training image's user."""
    return client.V1PodSecurityContext(
        run_as_non_root=True,
        run_as_user=TRAINER_UID,
        run_as_group=TRAINER_UID,
        fs_group=TRAINER_UID,
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )
