"""The operators of the CRD kinds, as their controllers behave:

- kubeflow.org/v1 PyTorchJob (Kubeflow Training Operator v1): one pod per replica, named
  <job>-<type>-<index>, with the operator's labels and torch env; replica statuses, the
  Created/Running/Restarting/Succeeded/Failed conditions, runPolicy (backoffLimit,
  activeDeadlineSeconds, cleanPodPolicy, ttlSecondsAfterFinished).
- trainer.kubeflow.org/v1alpha1 TrainJob (Trainer v2) -> a JobSet -> an Indexed batch/v1 Job per
  replicated job -> pods <trainjob>-node-0-<index>-<suffix>.
- ray.io/v1 RayJob (KubeRay, K8sJobMode) -> a RayCluster (head and worker pods) and a submitter
  Job whose pod runs the entry point as the head would (see RayImage); jobDeploymentStatus and
  jobStatus as KubeRay sets them, activeDeadlineSeconds, backoffLimit (Retrying: a new cluster
  and submitter), shutdownAfterJobFinishes, and the finalizer that stops the Ray job.

The local addresses: every pod runs on this machine, so master addresses are 127.0.0.1 and
master ports are free ports.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from typing import Any

import yaml

from tests.kube_api.controllers import (
    INDEX_LABEL,
    by_owner,
    condition,
    controller_ref,
    is_true,
    key_of,
    phase,
)
from tests.kube_api.errors import ApiError
from tests.kube_api.events import Recorder
from tests.kube_api.kubelet import HOLD_COMMAND, Borrowed
from tests.kube_api.registry import Registry, random_suffix
from tests.kube_api.store import Store, clone, now, parse_time

TRAINING_OPERATOR = "pytorchjob-controller"
TRAINER = "trainjob-controller"
JOBSET = "jobset-controller"
KUBERAY_CLUSTER = "raycluster-controller"
KUBERAY_JOB = "rayjob-controller"
RUNTIMES = frozenset({"torch-distributed"})
"""The ClusterTrainingRuntimes installed with Trainer v2 that TrainJobs here may name."""
TRAINJOB_MASTER_PORT_ENV = "PET_MASTER_PORT"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _job_condition(obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """A Training Operator JobCondition (lastUpdateTime + lastTransitionTime), with its rules:
    Running and Restarting exclude each other; Succeeded/Failed make Running False."""
    status = obj.setdefault("status", {})
    stamp = now()
    kept = []
    for c in status.get("conditions") or []:
        if type_ == "Restarting" and c["type"] == "Running":
            continue
        if type_ == "Running" and c["type"] == "Restarting":
            continue
        if c["type"] == type_:
            continue
        if type_ in ("Failed", "Succeeded") and c["type"] == "Running" and c["status"] == "True":
            c = {**c, "status": "False", "lastUpdateTime": stamp, "lastTransitionTime": stamp}
        kept.append(c)
    kept.append(
        {
            "type": type_,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    status["conditions"] = kept


def _meta_condition(
    obj: dict[str, Any], type_: str, status: str, reason: str, message: str
) -> bool:
    """A metav1.Condition (JobSet, TrainJob, RayCluster); True if it changed."""
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    current = next((c for c in conditions if c["type"] == type_), None)
    if current and (current["status"], current["reason"], current["message"]) == (
        status,
        reason,
        message,
    ):
        return False
    entry = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": current["lastTransitionTime"]
        if current and current["status"] == status
        else now(),
    }
    if current:
        conditions[conditions.index(current)] = entry
    else:
        conditions.append(entry)
    return True


class Operator:
    def __init__(self, registry: Registry, recorder: Recorder, component: str) -> None:
        self.registry = registry
        self.store = registry.store
        self.recorder = recorder
        self.component = component

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.recorder.event(obj, type_, reason, message, component=self.component)

    def write_status(self, obj: dict[str, Any], group: str, plural: str) -> None:
        uid = obj["metadata"]["uid"]
        status = obj.get("status") or {}

        def write(current: dict[str, Any]) -> dict[str, Any] | None:
            if current["metadata"]["uid"] != uid:
                return None
            current["status"] = clone(status)
            return current

        self.store.mutate(key_of(obj, group, plural), write)

    def create(self, group: str, plural: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self.registry.create_owned(group, plural, body, self.component)
        except ApiError as e:
            if e.code == 409:
                return None
            owner = self.store.find_uid(body["metadata"]["ownerReferences"][0]["uid"])
            if owner is not None:
                self.event(owner[1], "Warning", "FailedCreate", f"Error creating: {e.message}")
            return None

    def delete(
        self, obj: dict[str, Any], group: str, plural: str, policy: str = "Background"
    ) -> None:
        key = key_of(obj, group, plural)
        current = self.store.get(key)
        if current is not None and not current["metadata"].get("deletionTimestamp"):
            self.registry.delete_object(key, current, policy)


# -- PyTorchJob ------------------------------------------------------------------------------


class PyTorchJobController(Operator):
    def __init__(self, registry: Registry, recorder: Recorder) -> None:
        super().__init__(registry, recorder, TRAINING_OPERATOR)
        self.ports: dict[str, int] = {}

    def step(self) -> None:
        jobs, _ = self.store.objects("kubeflow.org", "pytorchjobs")
        if not jobs:
            return
        owned = by_owner(self.store.objects("", "pods")[0])
        for job in jobs:
            self.reconcile(job, owned.get(job["metadata"]["uid"], []))

    def reconcile(self, job: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        name = meta["name"]
        run_policy = spec.get("runPolicy") or {}
        replicas: dict[str, Any] = spec.get("pytorchReplicaSpecs") or {}
        before = clone(job.get("status") or {})
        status = job.setdefault("status", {})
        if condition(job, "Created") is None:
            message = f"PyTorchJob {name} is created."
            _job_condition(job, "Created", "PyTorchJobCreated", message)
            self.event(job, "Normal", "PyTorchJobCreated", message)
        finished = is_true(job, "Succeeded") or is_true(job, "Failed")
        status["replicaStatuses"] = self._replica_statuses(job, replicas, pods)
        if finished:
            self._ttl(job, run_policy)
            if status != before:
                self.write_status(job, "kubeflow.org", "pytorchjobs")
            return
        status.setdefault("startTime", now())
        if run_policy.get("suspend"):
            for pod in pods:
                self.delete(pod, "", "pods")
            if not is_true(job, "Suspended"):
                _job_condition(
                    job, "Suspended", "PyTorchJobSuspended", f"PyTorchJob {name} is suspended."
                )
            status.pop("startTime", None)
            self.write_status(job, "kubeflow.org", "pytorchjobs")
            return
        failure = None
        limit = run_policy.get("backoffLimit")
        if limit is not None and self._past_backoff(replicas, pods, limit):
            failure = f"Job {name} has failed because it has reached the specified backoff limit"
        deadline = run_policy.get("activeDeadlineSeconds")
        started = parse_time(status["startTime"])
        if failure is None and deadline is not None and time.time() - started >= deadline:
            failure = f"Job {name} has failed because it was active longer than specified deadline"
        if failure is not None:
            self._clean(job, pods, run_policy)
            status["completionTime"] = now()
            _job_condition(job, "Failed", "PyTorchJobFailed", failure)
            self.event(job, "Normal", "PyTorchJobFailed", failure)
            status["replicaStatuses"] = self._replica_statuses(job, replicas, pods)
            self.write_status(job, "kubeflow.org", "pytorchjobs")
            return
        by_name = {p["metadata"]["name"]: p for p in pods}
        for rtype, replica in replicas.items():
            policy = replica.get("restartPolicy", "Never")
            for index in range(replica.get("replicas", 1)):
                pod_name = f"{name}-{rtype.lower()}-{index}"
                found = by_name.get(pod_name)
                if found is not None and phase(found) == "Failed" and policy == "ExitCode":
                    code = self._exit_code(found)
                    if code is not None and _retryable(code):
                        self.delete(found, "", "pods")
                        message = (
                            f"PyTorchJob {name} is restarting because 1 {rtype} replica(s) failed."
                        )
                        _job_condition(job, "Restarting", "PyTorchJobRestarting", message)
                        self.event(job, "Warning", "PyTorchJobRestarting", message)
                        continue
                if found is None:
                    self._create_pod(job, rtype, replica, index, replicas)
        status["replicaStatuses"] = self._replica_statuses(job, replicas, pods)
        self._conditions(job, replicas, run_policy, pods)
        if status != before:
            status["lastReconcileTime"] = now()
            self.write_status(job, "kubeflow.org", "pytorchjobs")

    def _exit_code(self, pod: dict[str, Any]) -> int | None:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs["name"] == "pytorch" and "terminated" in (cs.get("state") or {}):
                return cs["state"]["terminated"]["exitCode"]
        return None

    def _past_backoff(
        self, replicas: dict[str, Any], pods: list[dict[str, Any]], limit: int
    ) -> bool:
        restarts = 0
        for rtype, replica in replicas.items():
            if replica.get("restartPolicy", "Never") not in ("OnFailure", "Always"):
                continue
            for pod in pods:
                labels = pod["metadata"].get("labels") or {}
                if labels.get("training.kubeflow.org/replica-type") != rtype.lower():
                    continue
                if phase(pod) != "Running":
                    continue
                restarts += sum(
                    c.get("restartCount", 0)
                    for c in (pod.get("status") or {}).get("containerStatuses") or []
                )
        return restarts > 0 if limit == 0 else restarts >= limit

    def _replica_statuses(
        self, job: dict[str, Any], replicas: dict[str, Any], pods: list[dict[str, Any]]
    ) -> dict[str, Any]:
        name = job["metadata"]["name"]
        out: dict[str, Any] = {}
        for rtype in replicas:
            counts = {"active": 0, "succeeded": 0, "failed": 0}
            for pod in pods:
                labels = pod["metadata"].get("labels") or {}
                if labels.get("training.kubeflow.org/replica-type") != rtype.lower():
                    continue
                state = phase(pod)
                if state == "Running" and not pod["metadata"].get("deletionTimestamp"):
                    counts["active"] += 1
                elif state == "Succeeded":
                    counts["succeeded"] += 1
                elif state == "Failed":
                    counts["failed"] += 1
            entry: dict[str, Any] = {k: v for k, v in counts.items() if v}
            entry["selector"] = (
                f"training.kubeflow.org/job-name={name},"
                f"training.kubeflow.org/operator-name={TRAINING_OPERATOR},"
                f"training.kubeflow.org/replica-type={rtype.lower()}"
            )
            out[rtype] = entry
        return out

    def _conditions(
        self,
        job: dict[str, Any],
        replicas: dict[str, Any],
        run_policy: dict[str, Any],
        pods: list[dict[str, Any]],
    ) -> None:
        meta = job["metadata"]
        name, ns = meta["name"], meta["namespace"]
        statuses = job["status"]["replicaStatuses"]
        lead = "Master" if "Master" in replicas else next(iter(replicas), None)
        if lead is None:
            return
        for rtype, replica in replicas.items():
            st = statuses.get(rtype, {})
            expected = replica.get("replicas", 1) - st.get("succeeded", 0)
            if rtype == lead:
                if st.get("active", 0) > 0 and not is_true(job, "Running"):
                    message = f"PyTorchJob {ns}/{name} is running."
                    _job_condition(job, "Running", "PyTorchJobRunning", message)
                if expected == 0:
                    message = f"PyTorchJob {ns}/{name} successfully completed."
                    self._clean(job, pods, run_policy)
                    job["status"]["completionTime"] = now()
                    _job_condition(job, "Succeeded", "PyTorchJobSucceeded", message)
                    self.event(job, "Normal", "PyTorchJobSucceeded", message)
                    return
            failed = st.get("failed", 0)
            if failed > 0 and replica.get("restartPolicy", "Never") != "ExitCode":
                message = (
                    f"PyTorchJob {ns}/{name} has failed because {failed} {rtype} replica(s) failed."
                )
                self._clean(job, pods, run_policy)
                job["status"]["completionTime"] = now()
                _job_condition(job, "Failed", "PyTorchJobFailed", message)
                self.event(job, "Normal", "PyTorchJobFailed", message)
                return

    def _clean(
        self, job: dict[str, Any], pods: list[dict[str, Any]], run_policy: dict[str, Any]
    ) -> None:
        """cleanPodPolicy at the end: Running deletes the running (and pending) pods, All every
        pod, None (the default) none."""
        policy = run_policy.get("cleanPodPolicy", "None")
        if policy == "None":
            return
        for pod in pods:
            if policy == "Running" and phase(pod) not in ("Running", "Pending"):
                continue
            if pod["metadata"].get("deletionTimestamp"):
                continue
            self.delete(pod, "", "pods")
            self.event(
                job, "Normal", "SuccessfulDeletePod", f"Deleted pod: {pod['metadata']['name']}"
            )

    def _ttl(self, job: dict[str, Any], run_policy: dict[str, Any]) -> None:
        ttl = run_policy.get("ttlSecondsAfterFinished")
        done = job["status"].get("completionTime")
        if ttl is not None and done and time.time() - parse_time(done) >= ttl:
            self.delete(job, "kubeflow.org", "pytorchjobs")

    def _create_pod(
        self,
        job: dict[str, Any],
        rtype: str,
        replica: dict[str, Any],
        index: int,
        replicas: dict[str, Any],
    ) -> None:
        meta, spec = job["metadata"], job["spec"]
        name = meta["name"]
        template = clone(replica.get("template") or {})
        pod_meta = template.get("metadata") or {}
        labels = dict(pod_meta.get("labels") or {})
        labels.update(
            {
                "training.kubeflow.org/job-name": name,
                "training.kubeflow.org/operator-name": TRAINING_OPERATOR,
                "training.kubeflow.org/replica-type": rtype.lower(),
                "training.kubeflow.org/replica-index": str(index),
            }
        )
        if rtype == "Master":
            labels["training.kubeflow.org/job-role"] = "master"
        pod_spec = template.get("spec") or {}
        policy = replica.get("restartPolicy", "Never")
        pod_spec["restartPolicy"] = "Never" if policy == "ExitCode" else policy
        port = self.ports.setdefault(meta["uid"], free_port())
        nproc = str(spec.get("nprocPerNode") or "auto")
        total = sum(r.get("replicas", 1) for r in replicas.values())
        per_node = int(nproc) if nproc.isdigit() else 1
        rank = index + (1 if rtype == "Worker" and "Master" in replicas else 0)
        operator_env = [
            ("PYTHONUNBUFFERED", "1"),
            ("MASTER_PORT", str(port)),
            ("MASTER_ADDR", "127.0.0.1"),
            ("PET_MASTER_ADDR", "127.0.0.1"),
            ("PET_MASTER_PORT", str(port)),
            ("WORLD_SIZE", str(total * per_node)),
            ("RANK", str(rank)),
            ("PET_NPROC_PER_NODE", nproc),
            ("PET_NODE_RANK", str(rank)),
            ("PET_NNODES", str(total)),
        ]
        for container in pod_spec.get("containers") or []:
            env = container.setdefault("env", [])
            env.extend({"name": k, "value": v} for k, v in operator_env)
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{name}-{rtype.lower()}-{index}",
                "namespace": meta["namespace"],
                "labels": labels,
                "ownerReferences": [controller_ref(job)],
            },
            "spec": pod_spec,
        }
        if pod_meta.get("annotations"):
            body["metadata"]["annotations"] = dict(pod_meta["annotations"])
        created = self.create("", "pods", body)
        if created is not None:
            self.event(
                job, "Normal", "SuccessfulCreatePod", f"Created pod: {created['metadata']['name']}"
            )


def _retryable(code: int) -> bool:
    """The Training Operator's retryable exit codes (ExitCode restart policy)."""
    return code in (130, 137, 143) or code >= 128


# -- TrainJob, JobSet ------------------------------------------------------------------------

JOBSET_LABELS = "jobset.sigs.k8s.io"


class TrainJobController(Operator):
    """Trainer v2: a TrainJob becomes a JobSet built from its runtime (torch-distributed: one
    replicated job `node` of numNodes indexed pods), with the torch plugin's PET_* env."""

    def __init__(self, registry: Registry, recorder: Recorder) -> None:
        super().__init__(registry, recorder, TRAINER)
        self.ports: dict[str, int] = {}

    def step(self) -> None:
        jobs, _ = self.store.objects("trainer.kubeflow.org", "trainjobs")
        if not jobs:
            return
        jobsets = {
            j["metadata"].get("ownerReferences", [{}])[0].get("uid"): j
            for j in self.store.objects("jobset.x-k8s.io", "jobsets")[0]
        }
        for job in jobs:
            self.reconcile(job, jobsets.get(job["metadata"]["uid"]))

    def reconcile(self, job: dict[str, Any], jobset: dict[str, Any] | None) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        before = clone(job.get("status") or {})
        if jobset is None:
            if is_true(job, "Complete") or is_true(job, "Failed"):
                return
            self.create("jobset.x-k8s.io", "jobsets", self._jobset(job))
            return
        if bool(jobset["spec"].get("suspend")) != bool(spec.get("suspend")):

            def suspend(js: dict[str, Any]) -> dict[str, Any]:
                js["spec"]["suspend"] = bool(spec.get("suspend"))
                return js

            self.store.mutate(key_of(jobset, "jobset.x-k8s.io", "jobsets"), suspend)
        if spec.get("suspend"):
            _meta_condition(job, "Suspended", "True", "Suspended", "TrainJob is suspended")
        elif condition(job, "Suspended") is not None:
            _meta_condition(job, "Suspended", "False", "Resumed", "TrainJob is resumed")
        js_status = jobset.get("status") or {}
        for source, target in (("Completed", "Complete"), ("Failed", "Failed")):
            found = condition(jobset, source)
            if found and found["status"] == "True":
                _meta_condition(job, target, "True", found["reason"], found["message"])
        job.setdefault("status", {})["jobsStatus"] = clone(
            js_status.get("replicatedJobsStatus") or []
        )
        if job["status"] != before:
            self.write_status(job, "trainer.kubeflow.org", "trainjobs")

    def _jobset(self, job: dict[str, Any]) -> dict[str, Any]:
        meta, spec = job["metadata"], job["spec"]
        name = meta["name"]
        trainer = spec.get("trainer") or {}
        nodes = int(trainer.get("numNodes") or 1)
        nproc = str(trainer.get("numProcPerNode", "auto"))
        port = self.ports.setdefault(meta["uid"], free_port())
        env = list(clone(trainer.get("env") or []))
        env += [
            {"name": "PET_NNODES", "value": str(nodes)},
            {"name": "PET_NPROC_PER_NODE", "value": nproc},
            {
                "name": "PET_NODE_RANK",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_LABEL}']"}},
            },
            {"name": "PET_MASTER_ADDR", "value": "127.0.0.1"},
            {"name": TRAINJOB_MASTER_PORT_ENV, "value": str(port)},
        ]
        container: dict[str, Any] = {
            "name": "node",
            "image": trainer.get("image", "pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime"),
            "env": env,
        }
        for key in ("command", "args"):
            if trainer.get(key):
                container[key] = list(trainer[key])
        if trainer.get("resourcesPerNode"):
            container["resources"] = clone(trainer["resourcesPerNode"])
        pod_spec: dict[str, Any] = {"containers": [container], "restartPolicy": "OnFailure"}
        for override in spec.get("podSpecOverrides") or []:
            targets = {t.get("name") for t in override.get("targetJobs") or []}
            if "node" not in targets:
                continue
            for key in ("nodeSelector", "serviceAccountName", "affinity", "securityContext"):
                if key in override:
                    pod_spec[key] = clone(override[key])
            for key in ("volumes", "tolerations", "initContainers"):
                if key in override:
                    pod_spec[key] = [*pod_spec.get(key, []), *clone(override[key])]
            for patch in override.get("containers") or []:
                target = next(
                    (c for c in pod_spec["containers"] if c["name"] == patch["name"]), None
                )
                if target is None:
                    continue
                for key in ("volumeMounts", "env"):
                    if key in patch:
                        target[key] = [*target.get(key, []), *clone(patch[key])]
        labels = {
            "trainer.kubeflow.org/trainjob-ancestor-step": "trainer",
            **(spec.get("labels") or {}),
        }
        template_meta: dict[str, Any] = {"labels": dict(spec.get("labels") or {})}
        if spec.get("annotations"):
            template_meta["annotations"] = dict(spec["annotations"])
        return {
            "apiVersion": "jobset.x-k8s.io/v1alpha2",
            "kind": "JobSet",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": dict(spec.get("labels") or {}),
                "ownerReferences": [controller_ref(job)],
            },
            "spec": {
                "suspend": bool(spec.get("suspend")),
                "replicatedJobs": [
                    {
                        "name": "node",
                        "replicas": 1,
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {
                                "parallelism": nodes,
                                "completions": nodes,
                                "completionMode": "Indexed",
                                "backoffLimit": 0,
                                "template": {"metadata": template_meta, "spec": pod_spec},
                            },
                        },
                    }
                ],
                "network": {"enableDNSHostnames": True, "subdomain": name},
            },
        }


class JobSetController(Operator):
    """JobSet: a batch/v1 Job <jobset>-<replicatedJob>-<index> per replica of each replicated
    job; Completed when all complete, Failed when one fails (no restarts)."""

    def __init__(self, registry: Registry, recorder: Recorder) -> None:
        super().__init__(registry, recorder, JOBSET)

    def step(self) -> None:
        jobsets, _ = self.store.objects("jobset.x-k8s.io", "jobsets")
        if not jobsets:
            return
        owned = by_owner(self.store.objects("batch", "jobs")[0])
        for js in jobsets:
            self.reconcile(js, owned.get(js["metadata"]["uid"], []))

    def reconcile(self, js: dict[str, Any], jobs: list[dict[str, Any]]) -> None:
        meta, spec = js["metadata"], js.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        before = clone(js.get("status") or {})
        finished = is_true(js, "Completed") or is_true(js, "Failed")
        by_name = {j["metadata"]["name"]: j for j in jobs}
        statuses = []
        all_done, any_failed = True, None
        for global_index, rjob in enumerate(spec.get("replicatedJobs") or []):
            counts = {
                "name": rjob["name"],
                "ready": 0,
                "succeeded": 0,
                "failed": 0,
                "active": 0,
                "suspended": 0,
            }
            for index in range(rjob.get("replicas", 1)):
                job_name = f"{meta['name']}-{rjob['name']}-{index}"
                job = by_name.get(job_name)
                if job is None:
                    all_done = False
                    if not finished:
                        self._create_job(js, rjob, index, global_index)
                    continue
                if (
                    bool((job.get("spec") or {}).get("suspend")) != bool(spec.get("suspend"))
                    and not finished
                ):

                    def suspend(j: dict[str, Any]) -> dict[str, Any]:
                        j["spec"]["suspend"] = bool(spec.get("suspend"))
                        return j

                    self.store.mutate(key_of(job, "batch", "jobs"), suspend)
                jstatus = job.get("status") or {}
                if is_true(job, "Complete"):
                    counts["succeeded"] += 1
                elif is_true(job, "Failed"):
                    counts["failed"] += 1
                    any_failed = job
                    all_done = False
                else:
                    all_done = False
                    if (job.get("spec") or {}).get("suspend"):
                        counts["suspended"] += 1
                    elif jstatus.get("active", 0) > 0:
                        counts["active"] += 1
                    parallelism = (job.get("spec") or {}).get("parallelism", 1)
                    if jstatus.get("ready", 0) + jstatus.get("succeeded", 0) >= parallelism:
                        counts["ready"] += 1
            statuses.append(counts)
        status = js.setdefault("status", {})
        status["replicatedJobsStatus"] = statuses
        status.setdefault("restarts", 0)
        if not finished:
            if any_failed is not None:
                _meta_condition(
                    js,
                    "Failed",
                    "True",
                    "FailedJobs",
                    "jobset failed due to one or more job failures",
                )
                self.event(
                    js, "Warning", "FailedJobs", "jobset failed due to one or more job failures"
                )
            elif all_done and statuses:
                _meta_condition(
                    js, "Completed", "True", "AllJobsCompleted", "jobset completed successfully"
                )
                self.event(js, "Normal", "AllJobsCompleted", "jobset completed successfully")
        if status != before:
            self.write_status(js, "jobset.x-k8s.io", "jobsets")

    def _create_job(
        self, js: dict[str, Any], rjob: dict[str, Any], index: int, global_index: int
    ) -> None:
        meta = js["metadata"]
        name = f"{meta['name']}-{rjob['name']}-{index}"
        template = clone(rjob.get("template") or {})
        jobset_labels = {
            f"{JOBSET_LABELS}/jobset-name": meta["name"],
            f"{JOBSET_LABELS}/replicatedjob-name": rjob["name"],
            f"{JOBSET_LABELS}/replicatedjob-replicas": str(rjob.get("replicas", 1)),
            f"{JOBSET_LABELS}/job-index": str(index),
            f"{JOBSET_LABELS}/job-global-index": str(global_index),
            f"{JOBSET_LABELS}/restart-attempt": "0",
            f"{JOBSET_LABELS}/job-key": hashlib.sha1(
                f"{meta['namespace']}/{name}".encode()
            ).hexdigest(),
        }
        job_meta = template.get("metadata") or {}
        job_spec = template.get("spec") or {}
        job_spec["suspend"] = bool(js["spec"].get("suspend"))
        pod_template = job_spec.setdefault("template", {})
        pod_meta = pod_template.setdefault("metadata", {})
        pod_meta["labels"] = {
            **(job_meta.get("labels") or {}),
            **(pod_meta.get("labels") or {}),
            **jobset_labels,
        }
        pod_meta["annotations"] = {**(pod_meta.get("annotations") or {}), **jobset_labels}
        subdomain = (js["spec"].get("network") or {}).get("subdomain")
        if subdomain:
            pod_template.setdefault("spec", {})["subdomain"] = subdomain
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": {**(job_meta.get("labels") or {}), **jobset_labels},
                "annotations": dict(jobset_labels),
                "ownerReferences": [controller_ref(js)],
            },
            "spec": job_spec,
        }
        self.create("batch", "jobs", body)


# -- RayCluster, RayJob ----------------------------------------------------------------------

RAY_NODE_TYPE = "ray.io/node-type"
ORIGINATED_FROM_NAME = "ray.io/originated-from-cr-name"
ORIGINATED_FROM_CRD = "ray.io/originated-from-crd"
RAYJOB_FINALIZER = "ray.io/rayjob-finalizer"


class RayImage:
    """What the Ray image does here. Head and worker nodes idle: no Ray runs on this machine.
    The submitter's `ray job submit` runs the job's entry point itself, once, as the head's job
    agent would run it: with the head container's env and volume mounts, the runtime env's
    env_vars, and RAY_ADDRESS `ray_address` when given (without it, `ray.init()` in the entry
    point starts a Ray of its own). Its output is the submitter's log, as `ray job submit`
    follows the job's; its exit is the Ray job's."""

    def __init__(self, store: Store, ray_address: str | None = None) -> None:
        self.store = store
        self.ray_address = ray_address

    def __call__(
        self, pod: dict[str, Any], container: dict[str, Any]
    ) -> list[str] | Borrowed | None:
        labels = pod["metadata"].get("labels") or {}
        if labels.get(RAY_NODE_TYPE) in ("head", "worker"):
            return list(HOLD_COMMAND)
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        if command[:3] != ["ray", "job", "submit"] or "--" not in command:
            return None
        at = command.index("--")
        options = command[3:at]
        runtime_env: dict[str, Any] = {}
        if "--runtime-env-json" in options:
            runtime_env = json.loads(options[options.index("--runtime-env-json") + 1])
        job = self.store.get(
            (
                "ray.io",
                "rayjobs",
                pod["metadata"]["namespace"],
                labels.get(ORIGINATED_FROM_NAME, ""),
            )
        )
        cluster = ((job or {}).get("spec") or {}).get("rayClusterSpec") or {}
        head = (cluster.get("headGroupSpec") or {}).get("template") or {}
        head_spec = head.get("spec") or {}
        ray_container = (head_spec.get("containers") or [{}])[0]
        env = {
            e["name"]: e.get("value", "")
            for e in ray_container.get("env") or []
            if "valueFrom" not in e
        }
        env |= {k: str(v) for k, v in (runtime_env.get("env_vars") or {}).items()}
        env.pop("RAY_ADDRESS", None)
        if self.ray_address:
            env["RAY_ADDRESS"] = self.ray_address
        return Borrowed(
            command_line=" ".join(command[at + 1 :]),
            env=env,
            volumes=head_spec.get("volumes") or [],
            mounts=ray_container.get("volumeMounts") or [],
        )


class RayClusterController(Operator):
    def __init__(self, registry: Registry, recorder: Recorder) -> None:
        super().__init__(registry, recorder, KUBERAY_CLUSTER)

    def step(self) -> None:
        clusters, _ = self.store.objects("ray.io", "rayclusters")
        if not clusters:
            return
        owned = by_owner(self.store.objects("", "pods")[0])
        for cluster in clusters:
            self.reconcile(cluster, owned.get(cluster["metadata"]["uid"], []))

    def reconcile(self, cluster: dict[str, Any], pods: list[dict[str, Any]]) -> None:
        meta, spec = cluster["metadata"], cluster.get("spec") or {}
        if meta.get("deletionTimestamp"):
            return
        name = meta["name"]
        before = clone(cluster.get("status") or {})
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        heads = [
            p for p in live if (p["metadata"].get("labels") or {}).get(RAY_NODE_TYPE) == "head"
        ]
        if not heads and not spec.get("suspend"):
            self._create(cluster, "head", "headgroup", spec.get("headGroupSpec") or {})
        desired = 0
        for group in spec.get("workerGroupSpecs") or []:
            want = group.get("replicas", group.get("minReplicas", 0)) * group.get("numOfHosts", 1)
            desired += want
            have = [
                p
                for p in live
                if (p["metadata"].get("labels") or {}).get("ray.io/group") == group["groupName"]
            ]
            for _ in range(max(0, want - len(have))):
                self._create(cluster, "worker", group["groupName"], group)
        running = [p for p in live if phase(p) == "Running"]
        head_running = [p for p in heads if phase(p) == "Running"]
        workers_running = [
            p for p in running if (p["metadata"].get("labels") or {}).get(RAY_NODE_TYPE) == "worker"
        ]
        status = cluster.setdefault("status", {})
        status.update(
            desiredWorkerReplicas=desired,
            availableWorkerReplicas=len(workers_running),
            readyWorkerReplicas=len(workers_running),
            minWorkerReplicas=sum(
                g.get("minReplicas", 0) for g in spec.get("workerGroupSpecs") or []
            ),
            maxWorkerReplicas=sum(
                g.get("maxReplicas", 0) for g in spec.get("workerGroupSpecs") or []
            ),
            endpoints={
                "client": "10001",
                "dashboard": "8265",
                "gcs-server": "6379",
                "metrics": "8080",
            },
            observedGeneration=meta.get("generation", 1),
        )
        if heads:
            status["head"] = {
                "podIP": "127.0.0.1",
                "podName": heads[0]["metadata"]["name"],
                "serviceIP": "127.0.0.1",
                "serviceName": f"{name}-head-svc",
            }
        if head_running:
            _meta_condition(cluster, "HeadPodReady", "True", "HeadPodRunningAndReady", "")
        else:
            _meta_condition(
                cluster,
                "HeadPodReady",
                "False",
                "HeadPodNotFound" if not heads else "ContainersNotReady",
                "",
            )
        if head_running and len(workers_running) >= desired:
            if status.get("state") != "ready":
                status["state"] = "ready"
                status.setdefault("stateTransitionTimes", {})["ready"] = now()
            _meta_condition(
                cluster,
                "RayClusterProvisioned",
                "True",
                "AllPodRunningAndReadyFirstTime",
                "All Ray Pods are ready for the first time",
            )
        elif not is_true(cluster, "RayClusterProvisioned"):
            _meta_condition(
                cluster,
                "RayClusterProvisioned",
                "False",
                "RayClusterPodsProvisioning",
                "RayCluster Pods are being provisioned for first time",
            )
        if status != before:
            status["lastUpdateTime"] = now()
            self.write_status(cluster, "ray.io", "rayclusters")

    def _create(
        self, cluster: dict[str, Any], node_type: str, group: str, spec: dict[str, Any]
    ) -> None:
        meta = cluster["metadata"]
        name, ns = meta["name"], meta["namespace"]
        template = clone(spec.get("template") or {})
        pod_meta = template.get("metadata") or {}
        labels = {
            **(pod_meta.get("labels") or {}),
            "ray.io/cluster": name,
            RAY_NODE_TYPE: node_type,
            "ray.io/group": group,
            "ray.io/identifier": f"{name}-{node_type}",
            "ray.io/is-ray-node": "yes",
            "app.kubernetes.io/name": "kuberay",
            "app.kubernetes.io/created-by": "kuberay-operator",
        }
        pod_spec = template.get("spec") or {}
        head_address = f"{name}-head-svc.{ns}.svc.cluster.local:6379"
        for container in pod_spec.get("containers") or []:
            ray_start = (
                "ray start --head --dashboard-host=0.0.0.0 --metrics-export-port=8080 --block"
                if node_type == "head"
                else f"ray start --address={head_address} --metrics-export-port=8080 --block"
            )
            container.setdefault("command", ["/bin/bash", "-lc", "--"])
            container.setdefault("args", [f"ulimit -n 65536; {ray_start}"])
            break
        prefix = f"{name}-head-" if node_type == "head" else f"{name}-{group}-worker-"
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": prefix + random_suffix(),
                "generateName": prefix,
                "namespace": ns,
                "labels": labels,
                "ownerReferences": [controller_ref(cluster)],
            },
            "spec": pod_spec,
        }
        if pod_meta.get("annotations"):
            body["metadata"]["annotations"] = dict(pod_meta["annotations"])
        created = self.create("", "pods", body)
        if created is not None:
            reason = "CreatedHeadPod" if node_type == "head" else "CreatedWorkerPod"
            self.event(
                cluster,
                "Normal",
                reason,
                f"Created {node_type} Pod {ns}/{created['metadata']['name']}",
            )


class RayJobController(Operator):
    """KubeRay's RayJob in K8sJobMode: a RayCluster, then a submitter Job named after the
    RayJob; jobStatus follows the submitter's pod, which runs the entry point (RayImage), as
    this machine runs no Ray dashboard to ask. A failed attempt is retried up to backoffLimit
    times with a new cluster and submitter (not after its deadline); deleting a RayJob stops
    its Ray job (the submitter's process here) before its finalizer goes."""

    def __init__(self, registry: Registry, recorder: Recorder) -> None:
        super().__init__(registry, recorder, KUBERAY_JOB)

    def step(self) -> None:
        jobs, _ = self.store.objects("ray.io", "rayjobs")
        if not jobs:
            return
        for job in jobs:
            self.reconcile(job)

    def reconcile(self, job: dict[str, Any]) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        key = key_of(job, "ray.io", "rayjobs")
        if meta.get("deletionTimestamp"):
            # KubeRay stops a Ray job that has not ended: here its driver is the submitter's
            # process, which goes with the submitter (the garbage collector deletes it).
            if RAYJOB_FINALIZER in (meta.get("finalizers") or []):
                self.registry.remove_finalizer(key, RAYJOB_FINALIZER)
            return
        name, ns = meta["name"], meta["namespace"]
        before = clone(job.get("status") or {})
        status = job.setdefault("status", {})
        deployment = status.get("jobDeploymentStatus", "")
        if deployment in ("Complete", "Failed"):
            self._shutdown(job)
            return
        if deployment == "Retrying":
            self._retry(job)
            return
        if deployment in ("", "New"):
            if RAYJOB_FINALIZER not in (meta.get("finalizers") or []):

                def hold(obj: dict[str, Any]) -> dict[str, Any]:
                    obj["metadata"]["finalizers"] = [
                        *(obj["metadata"].get("finalizers") or []),
                        RAYJOB_FINALIZER,
                    ]
                    return obj

                self.store.mutate(key, hold)
            cluster_name = f"{name}-{random_suffix()}"
            status.update(
                jobId=spec.get("jobId") or f"{name}-{random_suffix()}",
                rayClusterName=cluster_name,
                dashboardURL=f"{cluster_name}-head-svc.{ns}.svc.cluster.local:8265",
                jobDeploymentStatus="Initializing",
                startTime=now(),
                observedGeneration=meta.get("generation", 1),
            )
            status.setdefault("failed", 0)
            status.setdefault("succeeded", 0)
            self.write_status(job, "ray.io", "rayjobs")
            body = {
                "apiVersion": "ray.io/v1",
                "kind": "RayCluster",
                "metadata": {
                    "name": cluster_name,
                    "namespace": ns,
                    "labels": {
                        **(meta.get("labels") or {}),
                        ORIGINATED_FROM_CRD: "RayJob",
                        ORIGINATED_FROM_NAME: name,
                        "ray.io/job-submission-mode": spec.get("submissionMode", "K8sJobMode"),
                    },
                    "ownerReferences": [controller_ref(job)],
                },
                "spec": clone(spec.get("rayClusterSpec") or {}),
            }
            if self.create("ray.io", "rayclusters", body) is not None:
                self.event(
                    job, "Normal", "CreatedRayCluster", f"Created RayCluster {ns}/{cluster_name}"
                )
            return
        cluster = self.store.get(("ray.io", "rayclusters", ns, status["rayClusterName"]))
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and time.time() - parse_time(status["startTime"]) >= deadline:
            status.update(
                jobDeploymentStatus="Failed",
                reason="DeadlineExceeded",
                message=f"The RayJob has passed the activeDeadlineSeconds. StartTime: "
                f"{status['startTime']}. ActiveDeadlineSeconds: {deadline}",
                endTime=now(),
            )
            status["failed"] = status.get("failed", 0) + 1  # never retried: see _failed
            self._stop_submitter(job)
            self.write_status(job, "ray.io", "rayjobs")
            return
        if cluster is not None:
            status["rayClusterStatus"] = clone(cluster.get("status") or {})
        submitter = self.store.get(("batch", "jobs", ns, name))
        if submitter is None:
            if cluster is not None and (cluster.get("status") or {}).get("state") == "ready":
                self._create_submitter(job, cluster)
                status.update(jobDeploymentStatus="Running", jobStatus="PENDING")
        else:
            pods = [
                p
                for p in self.store.objects("", "pods", ns)[0]
                if (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == name
            ]
            if is_true(submitter, "Complete"):
                status.update(jobStatus="SUCCEEDED", jobDeploymentStatus="Complete", endTime=now())
                status["succeeded"] = 1
                status.pop("reason", None)
                status["message"] = "Job finished successfully."
            elif any(phase(p) == "Failed" for p in pods) or is_true(submitter, "Failed"):
                code = next(
                    (
                        cs["state"]["terminated"]["exitCode"]
                        for p in pods
                        if phase(p) == "Failed"
                        for cs in (p.get("status") or {}).get("containerStatuses") or []
                        if "terminated" in (cs.get("state") or {})
                    ),
                    1,
                )
                status.update(
                    jobStatus="FAILED",
                    jobDeploymentStatus="Failed",
                    reason="AppFailed",
                    message=f"Job entrypoint command failed with exit code {code}",
                    endTime=now(),
                )
                self._stop_submitter(job)
                self._failed(job)
            elif any(phase(p) == "Running" for p in pods):
                status["jobStatus"] = "RUNNING"
        if status != before:
            self.write_status(job, "ray.io", "rayjobs")

    def _failed(self, job: dict[str, Any]) -> None:
        """An attempt failed: counted, and retried while backoffLimit allows (as KubeRay's
        checkBackoffLimitAndUpdateStatusIfNeeded)."""
        status, limit = job["status"], (job.get("spec") or {}).get("backoffLimit")
        status["failed"] = status.get("failed", 0) + 1
        if limit is not None and status["failed"] < limit + 1:
            status["jobDeploymentStatus"] = "Retrying"

    def _retry(self, job: dict[str, Any]) -> None:
        """Retrying: the cluster and the submitter go, then the RayJob starts again, New."""
        meta, status = job["metadata"], job["status"]
        ns = meta["namespace"]
        cluster = self.store.get(("ray.io", "rayclusters", ns, status.get("rayClusterName", "")))
        submitter = self.store.get(("batch", "jobs", ns, meta["name"]))
        if cluster is not None:
            self.delete(cluster, "ray.io", "rayclusters")
        if submitter is not None:
            self.delete(submitter, "batch", "jobs")
        if cluster is None and submitter is None:
            job["status"] = {
                k: status[k] for k in ("failed", "succeeded", "observedGeneration") if k in status
            } | {"jobDeploymentStatus": "New"}
            self.write_status(job, "ray.io", "rayjobs")

    def _create_submitter(self, job: dict[str, Any], cluster: dict[str, Any]) -> None:
        meta, spec, status = job["metadata"], job["spec"], job["status"]
        name, ns = meta["name"], meta["namespace"]
        head = ((spec.get("rayClusterSpec") or {}).get("headGroupSpec") or {}).get("template") or {}
        head_container = ((head.get("spec") or {}).get("containers") or [{}])[0]
        address = f"http://{cluster['metadata']['name']}-head-svc.{ns}.svc.cluster.local:8265"
        template = clone(spec.get("submitterPodTemplate") or {})
        if not template:  # KubeRay's default submitter: the head's image, no env of its own
            template = {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "ray-job-submitter",
                            "image": head_container.get("image", "rayproject/ray:2.46.0"),
                            "resources": {
                                "limits": {"cpu": "1", "memory": "1Gi"},
                                "requests": {"cpu": "500m", "memory": "200Mi"},
                            },
                        }
                    ],
                }
            }
        container = template["spec"]["containers"][0]
        submit = ["ray", "job", "submit", "--address", address]
        if spec.get("runtimeEnvYAML"):
            runtime_env = yaml.safe_load(spec["runtimeEnvYAML"]) or {}
            submit += ["--runtime-env-json", json.dumps(runtime_env)]
        container["command"] = [
            *submit,
            "--submission-id",
            status["jobId"],
            "--",
            spec.get("entrypoint", ""),
        ]
        container.setdefault("env", []).extend(
            [
                {"name": "PYTHONUNBUFFERED", "value": "1"},
                {"name": "RAY_DASHBOARD_ADDRESS", "value": address.removeprefix("http://")},
                {"name": "RAY_JOB_SUBMISSION_ID", "value": status["jobId"]},
            ]
        )
        template["spec"].setdefault("restartPolicy", "Never")
        labels = {
            ORIGINATED_FROM_CRD: "RayJob",
            ORIGINATED_FROM_NAME: name,
            "app.kubernetes.io/created-by": "kuberay-operator",
        }
        # KubeRay labels the submitter's pods as it labels the Job.
        template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
        body = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels,
                "ownerReferences": [controller_ref(job)],
            },
            "spec": {
                "backoffLimit": (spec.get("submitterConfig") or {}).get("backoffLimit", 2),
                "template": template,
            },
        }
        if self.create("batch", "jobs", body) is not None:
            self.event(job, "Normal", "CreatedK8sJob", f"Created Kubernetes Job {ns}/{name}")

    def _stop_submitter(self, job: dict[str, Any]) -> None:
        submitter = self.store.get(
            ("batch", "jobs", job["metadata"]["namespace"], job["metadata"]["name"])
        )
        if submitter is not None and not (submitter.get("spec") or {}).get("suspend"):

            def stop(j: dict[str, Any]) -> dict[str, Any]:
                j["spec"]["suspend"] = True
                return j

            self.store.mutate(key_of(submitter, "batch", "jobs"), stop)

    def _shutdown(self, job: dict[str, Any]) -> None:
        spec, status = job.get("spec") or {}, job.get("status") or {}
        if not spec.get("shutdownAfterJobFinishes"):
            return
        ttl = spec.get("ttlSecondsAfterFinished", 0)
        end = status.get("endTime")
        if end and time.time() - parse_time(end) >= ttl:
            cluster = self.store.get(
                (
                    "ray.io",
                    "rayclusters",
                    job["metadata"]["namespace"],
                    status.get("rayClusterName", ""),
                )
            )
            if cluster is not None:
                self.delete(cluster, "ray.io", "rayclusters")
                where = f"{job['metadata']['namespace']}/{cluster['metadata']['name']}"
                self.event(job, "Normal", "DeletedRayCluster", f"Deleted RayCluster {where}")
