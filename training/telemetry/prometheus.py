"""Prometheus exporter of one rank: step counters, loss, epoch, step time, learning rate, GPU.

Updates are host-side arithmetic on values the loop already has, so exporting never forces a
device sync. GPU readings are taken through NVML at scrape time, not in the training loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch

from common.telemetry import PromLabel, PromMetric

log = logging.getLogger(__name__)

STEP_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class NullExporter:
    """Stands in when no metrics port is configured."""

    port: int | None = None

    def on_step(self, samples: int, seconds: float, lr: float) -> None: ...
    def set_loss(self, value: float) -> None: ...
    def set_epoch(self, epoch: int) -> None: ...
    def close(self) -> None: ...


class PrometheusExporter:
    def __init__(self, port: int, *, job_id: str, rank: int, device: torch.device) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.port = port
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        labels = {PromLabel.JOB_ID: job_id, PromLabel.RANK: str(rank)}
        names = list(labels)

        def child(metric: Any) -> Any:
            return metric.labels(**labels)

        r = self.registry
        self.steps = child(
            Counter(PromMetric.TRAIN_STEPS, "Optimizer steps taken", names, registry=r)
        )
        self.samples = child(
            Counter(
                PromMetric.TRAIN_SAMPLES,
                "Training samples processed by this rank",
                names,
                registry=r,
            )
        )
        self.loss = child(Gauge(PromMetric.TRAIN_LOSS, "Recent training loss", names, registry=r))
        self.epoch = child(Gauge(PromMetric.TRAIN_EPOCH, "Epochs completed", names, registry=r))
        self.step_seconds = child(
            Histogram(
                PromMetric.STEP_SECONDS,
                "Wall time per optimizer step",
                names,
                buckets=STEP_SECONDS_BUCKETS,
                registry=r,
            )
        )
        self.lr = child(Gauge(PromMetric.LEARNING_RATE, "Current learning rate", names, registry=r))
        if device.type == "cuda":
            r.register(GpuCollector(device, labels))
        self._server: Any = None

    def start(self) -> bool:
        from prometheus_client import start_http_server

        try:
            self._server, _ = start_http_server(self.port, registry=self.registry)
        except OSError as e:
            log.warning(
                "Prometheus exporter could not listen on port %s (%s); training goes on without it",
                self.port,
                e,
            )
            return False
        return True

    def on_step(self, samples: int, seconds: float, lr: float) -> None:
        self.steps.inc()
        self.samples.inc(samples)
        self.step_seconds.observe(seconds)
        self.lr.set(lr)

    def set_loss(self, value: float) -> None:
        self.loss.set(value)

    def set_epoch(self, epoch: int) -> None:
        self.epoch.set(epoch)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class GpuCollector:
    """trainops_gpu_utilization_ratio and trainops_gpu_memory_bytes, read when scraped."""

    def __init__(self, device: torch.device, labels: dict[str, str]) -> None:
        self.device = device
        self.labels = labels
        try:
            import pynvml  # noqa: F401

            self.nvml = True
        except ImportError:
            self.nvml = False

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        names, values = list(self.labels), list(self.labels.values())
        memory = GaugeMetricFamily(
            PromMetric.GPU_MEMORY, "GPU memory in use on this rank's device", labels=names
        )
        if self.nvml:
            utilization = GaugeMetricFamily(
                PromMetric.GPU_UTILIZATION,
                "Fraction of the last sample period the GPU was busy (NVML)",
                labels=names,
            )
            utilization.add_metric(values, torch.cuda.utilization(self.device) / 100.0)
            yield utilization
            memory.add_metric(values, float(torch.cuda.device_memory_used(self.device)))
        else:
            memory.add_metric(values, float(torch.cuda.memory_reserved(self.device)))
        yield memory


def build_exporter(
    base_port: int | None, *, local_rank: int, rank: int, job_id: str, device: torch.device
) -> PrometheusExporter | NullExporter:
    if base_port is None:
        return NullExporter()
    try:
        exporter = PrometheusExporter(
            base_port + local_rank, job_id=job_id, rank=rank, device=device
        )
    except ImportError:
        log.warning(
            "TRAINOPS_METRICS_PORT is set but prometheus_client is not installed; "
            "pip install prometheus-client to export metrics"
        )
        return NullExporter()
    return exporter if exporter.start() else NullExporter()
