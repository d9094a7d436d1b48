"""On a CUDA machine: NCCL DDP, bf16, data resident on the GPU, the step as a CUDA graph,
GPU metrics exported."""

from __future__ import annotations

import urllib.request
import uuid

import pytest

from common.net import free_port
from tests.support import TrainingRun, clean_env, run_training, train_args, wait_for

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
        env=clean_env(gpus=True),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    start = run.event("start")
    assert start["backend"] == ("nccl" if gpus > 1 else "none")
    assert start["precision"] == "bf16" and start["data_on_device"] is True
    done = run.event("done")
    assert done["weights_in_sync"] and done["metrics"]["val_accuracy"] > 0.9
    assert done["cuda_graph"] is (gpus == 1)  # DDP steps stay eager
    lrs = [e["metrics"]["lr"] for e in run.events if e["event"] == "epoch"]
    assert lrs[0] > lrs[1], "the scheduler must reach the captured step's learning rate"


@pytest.mark.parametrize("model", ["cnn", "resnet18", "gpt"])
def test_graphed_and_eager_steps_train_alike(model: str) -> None:
    dataset = "synthetic"
    flags = dict(epochs=2, synthetic_samples=4096, batch_size=128, smoke_test=True)
    graphed = run_training(train_args(model, dataset, **flags), env=clean_env(gpus=True))
    eager = run_training(
        train_args(model, dataset, no_cuda_graph=True, **flags), env=clean_env(gpus=True)
    )
    assert graphed.returncode == 0, graphed.stderr[-3000:]
    assert eager.returncode == 0, eager.stderr[-3000:]
    assert graphed.event("done")["cuda_graph"] and not eager.event("done")["cuda_graph"]
    key = "val_loss"
    g, e = graphed.event("done")["metrics"], eager.event("done")["metrics"]
    assert g["lr"] == pytest.approx(e["lr"])
    assert g[key] == pytest.approx(e[key], rel=0.25, abs=0.05)


def test_a_graphed_checkpoint_resumes_on_the_gpu_and_on_the_cpu(tmp_path) -> None:
    flags = dict(synthetic_samples=4096, batch_size=128, checkpoint_dir=tmp_path / "ckpt")
    env = clean_env(gpus=True)
    first = run_training(train_args("cnn", "synthetic", epochs=1, **flags), env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    on_gpu = run_training(train_args("cnn", "synthetic", epochs=2, **flags), env=env)
    assert on_gpu.returncode == 0, on_gpu.stderr[-3000:]
    assert on_gpu.event("resumed")["from_epoch"] == 1 and on_gpu.event("done")["cuda_graph"]
    on_cpu = run_training(train_args("cnn", "synthetic", epochs=3, device="cpu", **flags), env=env)
    assert on_cpu.returncode == 0, on_cpu.stderr[-3000:]
    assert on_cpu.event("resumed")["from_epoch"] == 2
    assert on_cpu.event("done")["metrics"]["val_accuracy"] > 0.9


def test_gpu_utilization_and_memory_are_exported() -> None:
    port = free_port()
    run = TrainingRun(
        train_args("resnet18", "synthetic", epochs=50, synthetic_samples=20000),
        env=clean_env(gpus=True, TRAINOPS_METRICS_PORT=str(port), TRAINOPS_JOB_ID=uuid.uuid4().hex),
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
