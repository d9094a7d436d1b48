"""Reading a cluster job's phase and reasons from its object and pods, as the controllers and the
kubelet write them (shapes taken from `kubectl get -o json` of each kind)."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_servers.kubernetes.cluster import status
from mcp_servers.kubernetes.cluster.nodes import capacities, could_ever_fit, gpu_product_of

T0 = "2026-12-01T10:00:00Z"
T1 = "2026-12-01T10:05:00Z"
SCHEDULER = (
    "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
    "2 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: 3 No preemption "
    "victims found for incoming pod."
)


def job(*conditions: dict[str, Any], **status_fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "cnn-mnist-0001", "creationTimestamp": T0},
        "status": {"conditions": list(conditions), **status_fields},
    }


def condition(type_: str, reason: str = "", message: str = "", when: str = T1) -> dict:
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": when,
    }


def pod(
    name: str,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    state: dict | None = None,
    last_state: dict | None = None,
    restarts: int = 0,
    conditions: list[dict] | None = None,
    created: str = T0,
    node: str | None = "node-a",
) -> dict[str, Any]:
    container = {"name": "trainer", "restartCount": restarts, "state": state or {"running": {}}}
    if last_state:
        container["lastState"] = last_state
    return {
        "metadata": {"name": name, "labels": labels or {}, "creationTimestamp": created},
        "spec": {"nodeName": node} if node else {},
        "status": {
            "phase": phase,
            "startTime": T0,
            "conditions": conditions or [],
            "containerStatuses": [container],
        },
    }


def test_a_complete_job_succeeded_with_its_times() -> None:
    obj = job(
        condition("SuccessCriteriaMet"),
        condition("Complete"),
        startTime=T0,
        completionTime=T1,
        succeeded=1,
    )
    read = status.read("Job", obj, [pod("cnn-mnist-0001-abcde", "Succeeded")])
    assert read.phase == "Succeeded"
    assert (read.completion_time - read.start_time).total_seconds() == 300
    assert [r.name for r in read.replicas] == ["trainer-0"]


def test_a_job_out_of_retries_failed_naming_the_last_pods_exit() -> None:
    failed = {"terminated": {"exitCode": 1, "reason": "Error", "message": "error: bad flag"}}
    pods = [
        pod("j-aaaaa", "Failed", state=failed, created=T0),
        pod("j-bbbbb", "Failed", state=failed, created=T1),
    ]
    obj = job(
        condition("FailureTarget", "BackoffLimitExceeded"),
        condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
    )
    read = status.read("Job", obj, pods)
    assert read.phase == "Failed"
    assert read.reason == "BackoffLimitExceeded"
    assert read.replicas[0].restarts == 1  # the second pod was the retry
    assert read.failed_replica == "trainer-0"
    assert read.detail == "trainer-0 exited with code 1: error: bad flag"
    assert read.completion_time is not None


def test_a_pod_no_node_can_hold_is_unschedulable_and_says_what_the_scheduler_said() -> None:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": SCHEDULER,
    }
    pending = pod("j-aaaaa", "Pending", state={"waiting": {}}, conditions=[scheduled], node=None)
    never = status.read("Job", job(), [pending], never_fits=True)
    assert never.phase == "Pending"
    assert never.reason == "Unschedulable"
    assert never.detail == SCHEDULER
    assert never.conditions[-1].reason == "Unschedulable"
    # Room may free up: waiting, not unschedulable for good.
    busy = status.read("Job", job(), [pending], never_fits=False)
    assert busy.reason == status.WAITING_FOR_RESOURCES
    assert busy.detail == SCHEDULER
    assert not any(c.reason == "Unschedulable" for c in busy.conditions)


@pytest.mark.parametrize(
    "reason", ["ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"]
)
def test_a_container_that_cannot_start_is_named_with_the_kubelets_reason(reason: str) -> None:
    waiting = {"waiting": {"reason": reason, "message": 'Back-off pulling image "x"'}}
    read = status.read("Job", job(), [pod("j-aaaaa", "Pending", state=waiting)])
    assert read.phase == "Pending"
    assert read.reason == reason
    assert read.detail == 'trainer-0: Back-off pulling image "x"'


def test_a_crash_looping_worker_shows_its_last_exit_and_the_restarts() -> None:
    labels = {
        "training.kubeflow.org/replica-type": "worker",
        "training.kubeflow.org/replica-index": "0",
    }
    master = {
        "training.kubeflow.org/replica-type": "master",
        "training.kubeflow.org/replica-index": "0",
    }
    looping = pod(
        "p-worker-0",
        labels=labels,
        state={"waiting": {"reason": "CrashLoopBackOff"}},
        last_state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        restarts=2,
    )
    obj = {
        "kind": "PyTorchJob",
        "metadata": {"name": "p", "creationTimestamp": T0},
        "status": {"conditions": [condition("Created"), condition("Running")]},
    }
    read = status.read("PyTorchJob", obj, [looping, pod("p-master-0", labels=master)])
    assert read.phase == "Running"
    assert [r.name for r in read.replicas] == ["master-0", "worker-0"]
    assert read.restarts == 2
    assert read.reason == "CrashLoopBackOff"
    assert "OOMKilled (exit code 137); ask for more memory" in read.detail
    assert status.phase_without_pods("PyTorchJob", obj) == "Running"


def test_a_pytorchjob_that_failed_names_the_replica_and_its_signal() -> None:
    labels = {
        "training.kubeflow.org/replica-type": "master",
        "training.kubeflow.org/replica-index": "0",
    }
    killed = {"terminated": {"exitCode": 137, "reason": "Error"}}
    obj = {
        "kind": "PyTorchJob",
        "metadata": {"name": "p", "creationTimestamp": T0},
        "status": {"conditions": [condition("Running"), condition("Failed", "PyTorchJobFailed")]},
    }
    read = status.read("PyTorchJob", obj, [pod("p-master-0", "Failed", labels, state=killed)])
    assert read.phase == "Failed"
    assert read.detail == "master-0 exited with code 137, killed by signal 9 (SIGKILL)"


def test_trainjob_replicas_come_from_the_jobset_completion_index() -> None:
    def node(i: int) -> dict[str, Any]:
        return pod(
            f"t-node-0-{i}-xyz",
            labels={
                "jobset.sigs.k8s.io/jobset-name": "t",
                "batch.kubernetes.io/job-completion-index": str(i),
            },
        )

    obj = {"kind": "TrainJob", "metadata": {"name": "t", "creationTimestamp": T0}, "status": {}}
    read = status.read("TrainJob", obj, [node(1), node(0)])
    assert [r.name for r in read.replicas] == ["node-0", "node-1"]
    assert read.phase == "Running"
    done = {**obj, "status": {"conditions": [condition("Complete")]}}
    assert status.phase_without_pods("TrainJob", done) == "Succeeded"


def test_a_suspended_job_is_pending() -> None:
    assert status.read("Job", job(condition("Suspended")), []).phase == "Pending"
    assert status.phase_without_pods("Job", job(active=1, ready=1)) == "Running"
    assert status.phase_without_pods("Job", job(active=1, ready=0)) == "Pending"


GPU_NODE = {
    "metadata": {
        "name": "gpu-0",
        "labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
    },
    "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]},
    "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"}},
}
CPU_NODE = {
    "metadata": {"name": "cpu-0", "labels": {}},
    "spec": {},
    "status": {"allocatable": {"cpu": "3800m", "memory": "64Gi"}},
}


def asking(gpus: int, cpu: str = "4", selector: dict | None = None, tolerate: bool = True) -> dict:
    requests = {"cpu": cpu, "memory": "16Gi"} | ({"nvidia.com/gpu": str(gpus)} if gpus else {})
    spec: dict[str, Any] = {"containers": [{"resources": {"requests": requests}}]}
    if selector:
        spec["nodeSelector"] = selector
    if tolerate:
        spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    return {"spec": spec, "status": {"phase": "Pending"}}


def test_whether_a_pod_could_ever_fit_follows_size_selector_and_taints() -> None:
    nodes = [GPU_NODE, CPU_NODE]
    assert could_ever_fit(asking(8), nodes)
    assert not could_ever_fit(asking(16), nodes)
    assert not could_ever_fit(asking(2, tolerate=False), nodes)
    assert not could_ever_fit(asking(2, selector={"pool": "spot"}), nodes)
    assert could_ever_fit(asking(0, cpu="3500m", tolerate=False), nodes)
    assert not could_ever_fit(asking(0, cpu="40", tolerate=False), nodes)


def test_capacity_is_allocatable_minus_the_requests_of_live_pods() -> None:
    running = asking(6) | {"status": {"phase": "Running"}}
    running["spec"]["nodeName"] = "gpu-0"
    finished = asking(2) | {"status": {"phase": "Succeeded"}}
    finished["spec"]["nodeName"] = "gpu-0"
    gpu, cpu = capacities([GPU_NODE, CPU_NODE], [running, finished])
    assert (gpu.allocatable.gpus, gpu.free.gpus, gpu.free.cpus) == (8, 2, 28)
    assert gpu.gpu_type == "NVIDIA-A100-SXM4-80GB"
    assert (cpu.free.cpus, cpu.gpu_type) == (3.8, None)
    assert gpu_product_of(["gpu-0"], [GPU_NODE]) == "NVIDIA-A100-SXM4-80GB"


# -- RayJob: KubeRay's jobDeploymentStatus and the Ray job's jobStatus ------------------------

RAY_LABELS = {"trainops.io/job-id": "s"}


def rayjob(deployment: str, ray_job: str = "", **status_fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "s", "creationTimestamp": T0},
        "spec": {"activeDeadlineSeconds": 4200, "backoffLimit": 2},
        "status": {
            "jobDeploymentStatus": deployment,
            "jobStatus": ray_job,
            "rayClusterName": "s-x7k2p",
            "startTime": T0,
            **status_fields,
        },
    }


def ray_pod(name: str, node_type: str | None, **kw: Any) -> dict[str, Any]:
    labels = dict(RAY_LABELS) | ({"ray.io/node-type": node_type} if node_type else {})
    return pod(name, labels=labels, **kw)


def sweep_pods(driver: str = "Running") -> list[dict[str, Any]]:
    return [
        ray_pod("s-x7k2p-trials-worker-bbbbb", "worker", created=T1),
        ray_pod("s-x7k2p-head-ccccc", "head"),
        ray_pod("s-x7k2p-trials-worker-aaaaa", "worker", created=T0),
        ray_pod("s-ddddd", None, phase=driver, created=T1),
    ]


def test_a_rayjob_starting_its_ray_cluster_is_pending_until_its_ray_job_runs() -> None:
    read = status.read("RayJob", rayjob("Initializing"), sweep_pods()[:3])
    assert (read.phase, read.reason) == ("Pending", "Initializing")
    assert read.detail == "its Ray cluster is starting"
    assert read.conditions[0].type == "Initializing"
    submitted = status.read("RayJob", rayjob("Running", "PENDING"), sweep_pods())
    assert (submitted.phase, submitted.reason) == ("Pending", "Submitted")
    running = status.read("RayJob", rayjob("Running", "RUNNING"), sweep_pods())
    assert running.phase == "Running"
    # The submitter runs the driver; the workers, which KubeRay does not number, in their order.
    assert [r.name for r in running.replicas] == ["driver", "head", "worker-0", "worker-1"]
    assert [r.type for r in running.replicas] == ["Driver", "Head", "Worker", "Worker"]
    assert status.phase_without_pods("RayJob", rayjob("Running", "RUNNING")) == "Running"
    assert status.phase_without_pods("RayJob", rayjob("")) == "Pending"
    # A Ray job that has ended runs on until KubeRay has seen its submitter end.
    assert status.read("RayJob", rayjob("Running", "SUCCEEDED"), sweep_pods()).phase == "Running"


def test_a_rayjob_waiting_for_a_gpu_node_says_what_the_scheduler_said() -> None:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": SCHEDULER,
    }
    waiting = ray_pod(
        "s-x7k2p-trials-worker-aaaaa",
        "worker",
        phase="Pending",
        state={"waiting": {}},
        conditions=[scheduled],
        node=None,
    )
    pods = [ray_pod("s-x7k2p-head-ccccc", "head"), waiting]
    never = status.read("RayJob", rayjob("Initializing"), pods, never_fits=True)
    assert (never.phase, never.reason, never.detail) == ("Pending", "Unschedulable", SCHEDULER)
    assert never.conditions[-1].reason == "Unschedulable"
    busy = status.read("RayJob", rayjob("Initializing"), pods)
    assert busy.reason == status.WAITING_FOR_RESOURCES
    pulling = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}}
    head = ray_pod("s-x7k2p-head-ccccc", "head", phase="Pending", state=pulling)
    stuck = status.read("RayJob", rayjob("Initializing"), [head])
    assert (stuck.reason, stuck.detail) == ("ImagePullBackOff", 'head: Back-off pulling image "x"')


def test_a_complete_rayjob_succeeded_and_a_stopped_ray_job_did_not() -> None:
    done = rayjob("Complete", "SUCCEEDED", endTime=T1, message="Job finished successfully.")
    read = status.read("RayJob", done, sweep_pods("Succeeded"))
    assert (read.phase, read.reason) == ("Succeeded", "Complete")
    assert (read.completion_time - read.start_time).total_seconds() == 300
    stopped = status.read("RayJob", rayjob("Complete", "STOPPED", endTime=T1), [])
    assert (stopped.phase, stopped.reason) == ("Failed", "Stopped")
    assert "ray job stop" in stopped.detail


def test_a_failed_rayjob_names_the_driver_and_counts_its_retried_attempts() -> None:
    failed = {"terminated": {"exitCode": 1, "reason": "Error"}}
    message = (
        "Job entrypoint command failed with exit code 1, last available logs (truncated to "
        "20,000 chars):\n" + "a driver line\n" * 500
    )
    obj = rayjob("Failed", "FAILED", reason="AppFailed", message=message, failed=3, endTime=T1)
    pods = [*sweep_pods()[:3], ray_pod("s-ddddd", None, phase="Failed", state=failed)]
    read = status.read("RayJob", obj, pods)
    assert (read.phase, read.reason) == ("Failed", "AppFailed")
    assert read.failed_replica == "driver" and read.detail == "driver exited with code 1"
    assert read.restarts == 2  # three attempts: two of them retried
    # Ray's message carries the driver's last lines: the condition keeps its first words only.
    assert read.conditions[0].message == "Job entrypoint command failed with exit code 1"
    retrying = status.read("RayJob", rayjob("Retrying", "FAILED", failed=1), [])
    assert (retrying.phase, retrying.reason, retrying.restarts) == ("Pending", "Retrying", 1)
    assert "attempt 1 of 3 failed" in retrying.detail
    submission = status.read(
        "RayJob",
        rayjob("Failed", reason="SubmissionFailed", message="Job submission has failed."),
        [],
    )
    assert "submitter could not hand the job" in submission.detail
    invalid = rayjob("ValidationFailed", reason="ValidationFailed", message="bad entrypoint")
    assert status.phase_without_pods("RayJob", invalid) == "Failed"


def test_a_rayjob_past_its_deadline_failed_saying_so_not_by_its_stopped_driver() -> None:
    killed = {"terminated": {"exitCode": 143, "reason": "Error"}}
    obj = rayjob(
        "Failed",
        "RUNNING",
        reason="DeadlineExceeded",
        message="The RayJob has passed the activeDeadlineSeconds. StartTime: ... ",
        endTime=T1,
        failed=1,
    )
    read = status.read("RayJob", obj, [ray_pod("s-ddddd", None, phase="Failed", state=killed)])
    assert (read.phase, read.reason) == ("Failed", "DeadlineExceeded")
    assert read.failed_replica is None and read.restarts == 0
    assert "ran past its deadline (activeDeadlineSeconds 4200 s)" in read.detail


@pytest.mark.parametrize("deployment", ["Suspending", "Suspended"])
def test_a_suspended_rayjob_is_pending(deployment: str) -> None:
    read = status.read("RayJob", rayjob(deployment), [])
    assert (read.phase, read.reason) == ("Pending", "Suspended")
