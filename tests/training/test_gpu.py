"""On a CUDA machine: NCCL DDP, bf16, data resident on the GPU, GPU metrics exported."""

from __future__ import annotations

import urllib.request
import uuid

import pytest

from tests.support import TrainingRun, clean_env, free_port, run_training, train_args, wait_for

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_nccl_ddp_trains_with_bf16_and_the_data_on_the_gpu() -> None:
    gpus = torch.cuda.device_count()
    run = run_training(
        train_args(
            "cnn", "synthetic", epochs=2, synthetic_samples=20000, batch_size=str(256 * gpus)
        ),
        nproc=gpus,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    start = run.event("start")
    assert start["backend"] == ("nccl" if gpus > 1 else "none")
    assert start["precision"] == "bf16" and start["data_on_device"] is True
    done = run.event("done")
    assert done["weights_in_sync"] and done["metrics"]["val_accuracy"] > 0.9


def test_gpu_utilization_and_memory_are_exported() -> None:
    port = free_port()
    run = TrainingRun(
        train_args("resnet18", "synthetic", epochs=50, synthetic_samples=20000),
        env=clean_env(TRAINOPS_METRICS_PORT=str(port), TRAINOPS_JOB_ID=uuid.uuid4().hex),
    )
    try:
        run.wait_for_event("epoch")

        def gpu_metrics() -> str | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
            return text if "trainops_gpu_memory_bytes" in text else None

        body = wait_for(gpu_metrics, timeout=30, what="GPU metrics")
        assert "trainops_gpu_utilization_ratio" in body
    finally:
        run.kill()
