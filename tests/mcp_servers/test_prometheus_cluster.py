"""jobs_utilization for jobs on a Kubernetes cluster: read from the cluster's exporters (DCGM,
cAdvisor, kube-state-metrics), served here by prometheus_client and scraped by the session's
real Prometheus."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import HTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric

from common.errors import ErrorKind
from common.net import free_port
from common.telemetry import PromMetric
from mcp_servers.prometheus.server import build_server
from tests.mcp_servers.support import call, call_failure, memory_session
from tests.support import promql, register_scrape_target, wait_for

pytestmark = pytest.mark.anyio

NAMESPACE = "trainops"
"""The settings' namespace: where jobs_utilization looks unless told otherwise."""
JOB = "cnn-mnist-7c1d"
"""A 2-replica PyTorchJob with two GPUs per pod (DCGM_FI_PROF_* exist: A100/H100)."""
LOOKALIKE = "cnn-mnist-7c1d2"
"""A job whose id starts with JOB's: its pods must not count for JOB."""
NAMED_LIKE = f"{JOB}-retry"
"""A job named by hand JOB-retry: its pods' names can't tell it from JOB's, its job_id can."""
OLD_GPUS = "mlp-digits-3e9f"
"""A TrainJob on GPUs without the profiling fields: DCGM_FI_DEV_GPU_UTIL alone."""
SCRAPED = "gpt-synthetic-5b0a"
"""A job whose own exporter was scraped as well as DCGM: its own figures come first."""
GIB = 1024**3
MIB = 1024**2


@dataclass(eq=False)  # a registry keys its collectors by identity
class FakeExporter:
    """A cluster exporter's series, as prometheus_client serves them: gauges hold their value,
    counters grow at a fixed rate from the exporter's start, so what Prometheus stores is known."""

    series: list[tuple[str, str, dict[str, str], float]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def gauge(self, name: str, value: float, **labels: str) -> None:
        self.series.append(("gauge", name, labels, value))

    def counter(self, name: str, per_second: float, **labels: str) -> None:
        self.series.append(("counter", name, labels, per_second))

    def collect(self) -> Iterator[Metric]:
        elapsed = time.time() - self.started
        families: dict[str, Metric] = {}
        for kind, name, labels, value in self.series:
            family = families.setdefault(name, Metric(name.removesuffix("_total"), name, kind))
            family.add_sample(name, labels, value * elapsed if kind == "counter" else value)
        yield from families.values()


def dcgm(exporter: FakeExporter, pod: str, gpu: int, *, namespace: str = NAMESPACE, **values):
    """One GPU's DCGM series, labelled as dcgm-exporter labels the pod that holds it."""
    labels = {
        "gpu": str(gpu),
        "UUID": f"GPU-{gpu:08d}",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": "gpu-node",
        "container": "pytorch" if pod else "",
        "namespace": namespace,
        "pod": pod,
        **values.pop("labels", {}),
    }
    for name, value in values.items():
        exporter.gauge(name, value, **labels)


def node_a_dcgm() -> FakeExporter:
    """dcgm-exporter scraped with its own labels kept: `pod` and `namespace` are the GPU's pod."""
    e = FakeExporter()
    gr, util, fb = (
        PromMetric.DCGM_GR_ENGINE_ACTIVE,
        PromMetric.DCGM_GPU_UTIL,
        PromMetric.DCGM_FB_USED,
    )
    dcgm(e, f"{JOB}-master-0", 0, **{gr: 0.50, util: 90, fb: 10_000})
    dcgm(e, f"{JOB}-master-0", 1, **{gr: 0.70, util: 95, fb: 20_000})
    # Not JOB's: another job with a longer id, the hand-named one, the same pod name in another
    # namespace, and a GPU no pod holds.
    dcgm(e, f"{LOOKALIKE}-master-0", 2, **{gr: 0.0, util: 0, fb: 80_000})
    dcgm(
        e,
        f"{NAMED_LIKE}-master-0",
        3,
        labels={"job_id": NAMED_LIKE},
        **{gr: 0.0, util: 0, fb: 80_000},
    )
    dcgm(e, f"{JOB}-master-0", 4, namespace="team-b", **{gr: 0.10, util: 12, fb: 5_000})
    dcgm(e, "", 5, namespace="", **{gr: 0.0, util: 0, fb: 0})
    dcgm(e, f"{OLD_GPUS}-node-0-0-x7k2p", 6, **{util: 40, fb: 7_000})
    dcgm(e, f"{SCRAPED}-master-0", 7, **{gr: 0.30, util: 35, fb: 9_000})
    return e


def node_b_dcgm() -> FakeExporter:
    """dcgm-exporter behind a ServiceMonitor without honor_labels: Prometheus gives the target
    pod/namespace/container labels of the exporter's own, so the GPU's pod is `exported_pod`."""
    e = FakeExporter()
    gr, util, fb = (
        PromMetric.DCGM_GR_ENGINE_ACTIVE,
        PromMetric.DCGM_GPU_UTIL,
        PromMetric.DCGM_FB_USED,
    )
    dcgm(e, f"{JOB}-worker-0", 0, **{gr: 0.60, util: 92, fb: 30_000})
    dcgm(e, f"{JOB}-worker-0", 1, **{gr: 0.80, util: 97, fb: 40_000})
    dcgm(e, f"{LOOKALIKE}-worker-0", 2, **{gr: 0.0, util: 0, fb: 80_000})
    return e


def kubelet() -> FakeExporter:
    """cAdvisor: per container, plus the pod's own cgroup (container="") and the pause container,
    which hold the same CPU and memory again and must not be added."""
    e = FakeExporter()
    cpu, memory = PromMetric.CONTAINER_CPU, PromMetric.CONTAINER_MEMORY
    for pod, cores, gib in ((f"{JOB}-master-0", 1.5, 3), (f"{JOB}-worker-0", 1.0, 2)):
        for container, share in (("pytorch", 1.0), ("", 1.0), ("POD", 0.1)):
            labels = {"namespace": NAMESPACE, "pod": pod, "container": container}
            e.counter(cpu, cores * share, **labels, id=f"/kubepods/{pod}/{container}")
            e.gauge(memory, gib * GIB * share, **labels, id=f"/kubepods/{pod}/{container}")
    decoy = {"namespace": NAMESPACE, "pod": f"{LOOKALIKE}-master-0", "container": "pytorch"}
    e.counter(cpu, 4.0, **decoy)
    e.gauge(memory, 8 * GIB, **decoy)
    return e


def kube_state_metrics() -> FakeExporter:
    """kube-state-metrics scraped without honor_labels, as node_b_dcgm: exported_pod."""
    e = FakeExporter()
    for pod in (f"{JOB}-master-0", f"{JOB}-worker-0", f"{LOOKALIKE}-master-0"):
        for resource, unit, value in (("cpu", "core", 2.0), ("memory", "byte", 16 * GIB)):
            e.gauge(
                PromMetric.KUBE_POD_REQUESTS,
                value,
                namespace=NAMESPACE,
                pod=pod,
                container="pytorch",
                node="gpu-node",
                resource=resource,
                unit=unit,
            )
    return e


def job_exporter() -> FakeExporter:
    """SCRAPED's own exporter (as training.telemetry serves it)."""
    e = FakeExporter()
    e.gauge(PromMetric.GPU_UTILIZATION, 0.9, job_id=SCRAPED, rank="0")
    return e


@dataclass(frozen=True)
class Cluster:
    started: datetime

    @property
    def since(self) -> str:
        return (self.started - timedelta(seconds=5)).isoformat()


@pytest.fixture(scope="module")
def cluster(stack) -> Iterator[Cluster]:
    """The cluster's exporters, each a file_sd target of the session's Prometheus; yields once
    every one has been scraped three times (irate needs two samples)."""
    service_labels = {"namespace": "gpu-operator", "container": "exporter", "service": "x"}
    exporters = [
        ("node-a-dcgm", node_a_dcgm(), {}),
        ("node-b-dcgm", node_b_dcgm(), {**service_labels, "pod": "dcgm-exporter-b9sqd"}),
        ("kubelet", kubelet(), {"node": "gpu-node"}),
        ("ksm", kube_state_metrics(), {**service_labels, "pod": "kube-state-metrics-5f7"}),
        ("job", job_exporter(), {}),
    ]
    started = datetime.now(UTC)
    servers: list[HTTPServer] = []
    targets: list[Path] = []
    try:
        for name, exporter, labels in exporters:
            registry = CollectorRegistry(auto_describe=False)
            registry.register(exporter)
            port = free_port()
            server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
            servers.append(server)
            targets.append(register_scrape_target(stack.targets_dir, name, [port], **labels))
        ports = "|".join(str(s.server_port) for s in servers)
        scraped = f'count(sum_over_time(up{{instance=~"127.0.0.1:({ports})"}}[1m]) >= 3)'
        wait_for(
            lambda: (
                (answer := promql(stack.prometheus_url, scraped))
                and int(answer[0]["value"][1]) == len(exporters)
            ),
            timeout=30,
            what="three scrapes of every cluster exporter",
        )
        yield Cluster(started)
    finally:
        for target in targets:
            target.unlink(missing_ok=True)
        with ThreadPoolExecutor() as pool:  # each waits out its poll interval
            list(pool.map(HTTPServer.shutdown, servers))


async def test_a_cluster_job_is_measured_from_dcgm_cadvisor_and_kube_state_metrics(
    settings_for, stack, cluster
) -> None:
    settings = settings_for(prometheus_url=stack.prometheus_url)
    assert settings.namespace == NAMESPACE
    async with memory_session(build_server, settings) as session:
        usage = await call(session, "jobs_utilization", job_id=JOB, start=cluster.since)
        told = await call(
            session, "jobs_utilization", job_id=JOB, start=cluster.since, cpus_requested=5
        )

    assert not usage["no_data"] and usage["namespace"] == NAMESPACE and usage["samples"] == 0
    # Four GPUs (two seen through exported_pod); the engine-active ratio is preferred.
    gpu = usage["gpu"]
    assert gpu["metric"] == PromMetric.DCGM_GR_ENGINE_ACTIVE
    assert gpu["mean_utilization"] == pytest.approx((0.5 + 0.7 + 0.6 + 0.8) / 4)
    assert gpu["p95_utilization"] == pytest.approx(0.8)
    assert gpu["peak_memory_bytes"] == pytest.approx(40_000 * MIB)
    # Each pod's container alone: 1.5 + 1.0 cores and 3 + 2 GiB, against 2 + 2 cores requested.
    cpu = usage["cpu"]
    assert cpu["metric"] == PromMetric.CONTAINER_CPU
    assert cpu["mean_cores_used"] == pytest.approx(2.5, rel=0.05)
    assert cpu["cores_requested"] == pytest.approx(4)
    assert cpu["mean_utilization"] == pytest.approx(2.5 / 4, rel=0.05)
    assert usage["peak_rss_bytes"] == pytest.approx(5 * GIB)
    assert usage["metrics_answered"] == [
        PromMetric.DCGM_GR_ENGINE_ACTIVE,
        PromMetric.DCGM_FB_USED,
        PromMetric.CONTAINER_CPU,
        PromMetric.KUBE_POD_REQUESTS,
        PromMetric.CONTAINER_MEMORY,
    ]
    assert told["cpu"]["cores_requested"] == 5
    assert told["cpu"]["mean_utilization"] == pytest.approx(2.5 / 5, rel=0.05)
    assert PromMetric.KUBE_POD_REQUESTS not in told["metrics_answered"]


async def test_the_namespace_says_whose_pods_and_must_be_a_label(
    settings_for, stack, cluster
) -> None:
    async with memory_session(
        build_server, settings_for(prometheus_url=stack.prometheus_url)
    ) as session:
        elsewhere = await call(
            session, "jobs_utilization", job_id=JOB, namespace="team-b", start=cluster.since
        )
        named = await call(session, "jobs_utilization", job_id=NAMED_LIKE, start=cluster.since)
        for bad in ("Team_B", 'trainops"} or vector(1) or {a="', "a" * 64):
            kind, error = await call_failure(session, "jobs_utilization", job_id=JOB, namespace=bad)
            assert kind == ErrorKind.INVALID_ARGUMENT and "namespace" in error, error
    assert elsewhere["namespace"] == "team-b"
    assert elsewhere["gpu"]["mean_utilization"] == pytest.approx(0.10)
    assert elsewhere["gpu"]["peak_memory_bytes"] == pytest.approx(5_000 * MIB)
    assert elsewhere["cpu"]["metric"] is None and elsewhere["peak_rss_bytes"] is None
    # The hand-named job's own GPU, by its job_id label, and not JOB's.
    assert named["gpu"]["mean_utilization"] == pytest.approx(0.0)
    assert named["gpu"]["peak_memory_bytes"] == pytest.approx(80_000 * MIB)


async def test_the_jobs_own_exporter_comes_first_and_dcgm_gpu_util_is_the_last_resort(
    settings_for, stack, cluster
) -> None:
    async with memory_session(
        build_server, settings_for(prometheus_url=stack.prometheus_url)
    ) as session:
        scraped = await call(session, "jobs_utilization", job_id=SCRAPED, start=cluster.since)
        old = await call(session, "jobs_utilization", job_id=OLD_GPUS, start=cluster.since)
    assert scraped["gpu"]["metric"] == PromMetric.GPU_UTILIZATION
    assert scraped["gpu"]["mean_utilization"] == pytest.approx(0.9)
    # GPU memory: the job's exporter has none, DCGM's does.
    assert scraped["gpu"]["peak_memory_bytes"] == pytest.approx(9_000 * MIB)
    assert scraped["metrics_answered"][:2] == [PromMetric.GPU_UTILIZATION, PromMetric.DCGM_FB_USED]
    assert old["gpu"]["metric"] == PromMetric.DCGM_GPU_UTIL
    assert old["gpu"]["mean_utilization"] == pytest.approx(0.40)
    assert old["gpu"]["p95_utilization"] == pytest.approx(0.40)
    assert old["note"] is None and not old["no_data"]
