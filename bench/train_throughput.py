"""Trainer throughput against plain loops, as ratios measured in one run on whatever device is here.

cnn: our Trainer next to pytorch/examples' mnist/main.py loop (per-sample Dataset transform,
DataLoader with batch 64, Adadelta + StepLR, `.item()` every 10 batches), same data, same epochs;
samples/s (mean over the epochs after the first, which pays for warm-up) and validation accuracy
of each.
gpt: our Trainer next to a plain fp32 loop of the same model; tokens/s and model FLOPs utilisation
(MFU) against a peak measured here with a large matmul.

    python bench/train_throughput.py [--dataset mnist --data-dir data] [--epochs 3] [--samples N]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from training.config import TrainConfig
from training.data import load_dataset
from training.data.types import Dataset, Split
from training.distributed import DistEnv
from training.models import GPT, GPTConfig
from training.models.cnn import ConvNet
from training.telemetry.progress import Progress
from training.telemetry.prometheus import NullExporter
from training.trainer import Telemetry, Trainer


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- pytorch/examples mnist/main.py, kept as it is written there --------------------------------


class ExamplesStyleDataset(TorchDataset):
    """Per-sample ToTensor() + Normalize(mean, std), as torchvision applies them."""

    def __init__(self, split: Split, mean: float, std: float) -> None:
        self.images, self.labels, self.mean, self.std = split.inputs, split.targets, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i].float().div(255.0)
        return (image - self.mean) / self.std, int(self.labels[i])


def examples_loop(dataset: Dataset, device: torch.device, epochs: int) -> dict[str, float]:
    torch.manual_seed(1)
    mean, std = dataset.mean[0], dataset.std[0]
    cuda_kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train_loader = DataLoader(
        ExamplesStyleDataset(dataset.train, mean, std), batch_size=64, shuffle=True, **cuda_kwargs
    )
    test_loader = DataLoader(
        ExamplesStyleDataset(dataset.val, mean, std), batch_size=1000, **cuda_kwargs
    )
    model = ConvNet(*dataset.sample_shape, dataset.num_classes).to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    rates = []
    for _ in range(epochs):
        model.train()
        synchronize(device)
        started, samples = time.perf_counter(), 0
        for batch_idx, (data, target) in enumerate(train_loader):
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            loss = F.nll_loss(F.log_softmax(model(data), dim=1), target)
            loss.backward()
            optimizer.step()
            if batch_idx % 10 == 0:
                loss.item()  # main.py prints it every log_interval batches
            samples += len(data)
        synchronize(device)
        rates.append(samples / (time.perf_counter() - started))
        scheduler.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            correct += model(data).argmax(dim=1).eq(target).sum().item()
    return {"samples_per_sec": steady(rates), "val_accuracy": correct / len(dataset.val)}


def steady(rates: list[float]) -> float:
    """Mean rate after the first epoch, which pays for warm-up (workers, autotuning, capture)."""
    later = rates[1:] or rates
    return sum(later) / len(later)


# -- a plain GPT loop: fp32, a host batch copied each step, .item() every step -------------------


def plain_gpt_loop(
    dataset: Dataset, config: GPTConfig, device: torch.device, steps: int, batch_size: int
) -> dict[str, float]:
    torch.manual_seed(1)
    model = GPT(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    inputs, targets = dataset.train.inputs, dataset.train.targets
    tokens, seconds = 0, 0.0
    for step in range(steps + 1):
        started = time.perf_counter()
        index = torch.randint(0, len(inputs), (batch_size,))
        x, y = inputs[index].to(device), targets[index].to(device)
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
        if step:  # the first step is warm-up
            seconds += time.perf_counter() - started
            tokens += x.numel()
    return {"tokens_per_sec": tokens / seconds}


# -- ours -----------------------------------------------------------------------------------------


def trainer_run(cfg: TrainConfig, dataset: Dataset, device: torch.device) -> Trainer:
    telemetry = Telemetry(progress=Progress(enabled=False), exporter=NullExporter())
    trainer = Trainer(cfg, DistEnv(), device, dataset, telemetry=telemetry)
    trainer.train()
    return trainer


def peak_flops(device: torch.device) -> float:
    """Achievable dense matmul FLOP/s here (bf16 on CUDA, fp32 on CPU), the MFU denominator."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (1024, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    repeats = 20 if device.type == "cuda" else 5
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dataset", default="synthetic", choices=["synthetic", "mnist", "fashion-mnist"]
    )
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help="synthetic samples (default 60000 on CUDA, 6000 on CPU)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="our global batch (default 512 on CUDA, 128 on CPU)",
    )
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--no-cuda-graph", dest="cuda_graph", action="store_false", help="eager steps on CUDA"
    )
    parser.add_argument("--gpt-steps", type=int, default=None)
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    on_gpu = device.type == "cuda"
    samples = args.samples or (60_000 if on_gpu else 6_000)
    batch = args.batch_size or (512 if on_gpu else 128)
    name = torch.cuda.get_device_name(device) if on_gpu else "cpu"

    cnn_cfg = TrainConfig(
        model="cnn",
        dataset=args.dataset,
        data_dir=args.data_dir,
        download=False,
        epochs=args.epochs,
        batch_size=batch,
        synthetic_samples=samples,
        compile=args.compile,
        cuda_graph=args.cuda_graph,
        lr=3e-3,
    )
    data = load_dataset(cnn_cfg).dataset
    baseline = examples_loop(data, device, args.epochs)
    ours = trainer_run(cnn_cfg, data, device)
    ours_rate = steady([h["samples_per_sec"] for h in ours.history])
    ours_acc = ours.history[-1]["val_accuracy"]

    gpt_cfg = TrainConfig(
        model="gpt",
        dataset="synthetic",
        epochs=2,
        batch_size=64 if on_gpu else 16,
        synthetic_samples=8192 if on_gpu else 512,
        seq_len=256 if on_gpu else 64,
        compile=args.compile,
        cuda_graph=args.cuda_graph,
        lr=1e-3,
    )
    tokens = load_dataset(gpt_cfg).dataset
    gpt = trainer_run(gpt_cfg, tokens, device)
    gpt_tokens_per_sec = steady([h["samples_per_sec"] for h in gpt.history]) * gpt_cfg.seq_len
    plain_gpt = plain_gpt_loop(
        tokens, gpt.model.config, device, args.gpt_steps or gpt.steps_per_epoch, gpt_cfg.batch_size
    )
    peak = peak_flops(device)
    flops_per_token = gpt.model.flops_per_token()
    mfu = gpt_tokens_per_sec * flops_per_token / peak
    plain_mfu = plain_gpt["tokens_per_sec"] * flops_per_token / peak

    rows = [
        ("cnn samples/s", baseline["samples_per_sec"], ours_rate),
        ("cnn val accuracy", baseline["val_accuracy"], ours_acc),
        ("gpt tokens/s", plain_gpt["tokens_per_sec"], gpt_tokens_per_sec),
        ("gpt MFU", plain_mfu, mfu),
    ]
    print(
        f"device: {name}; data: {args.dataset} ({len(data.train)} train samples); "
        f"epochs: {args.epochs}; peak: {peak / 1e12:.2f} TFLOP/s measured; "
        f"compile: {args.compile}; step replayed as a CUDA graph: {ours.graphed}"
    )
    print(f"{'metric':<18}{'plain':>14}{'trainops':>14}{'ratio':>10}")
    for label, plain, mine in rows:
        print(f"{label:<18}{plain:>14.4g}{mine:>14.4g}{mine / plain:>9.2f}x")
    print(
        json.dumps(
            {
                "bench": "train_throughput",
                "device": name,
                "dataset": args.dataset,
                "epochs": args.epochs,
                "compile": args.compile,
                "cuda_graph": ours.graphed,
                "cnn": {
                    "baseline_samples_per_sec": baseline["samples_per_sec"],
                    "trainops_samples_per_sec": ours_rate,
                    "speedup": ours_rate / baseline["samples_per_sec"],
                    "baseline_val_accuracy": baseline["val_accuracy"],
                    "trainops_val_accuracy": ours_acc,
                },
                "gpt": {
                    "baseline_tokens_per_sec": plain_gpt["tokens_per_sec"],
                    "trainops_tokens_per_sec": gpt_tokens_per_sec,
                    "mfu": mfu,
                    "baseline_mfu": plain_mfu,
                    "peak_flops": peak,
                },
            }
        )
    )


if __name__ == "__main__":
    main()
