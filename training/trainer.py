"""One Trainer for every model: DDP, bf16, resumable, with telemetry kept off the hot path."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from training.batches import DeviceSplit, epoch_indices, fits_on_device, shard_indices
from training.checkpoint import CheckpointManager
from training.config import TrainConfig
from training.data.types import Dataset
from training.distributed import (
    DistEnv,
    all_gather_object,
    all_reduce_sum,
    broadcast_buffers,
    broadcast_object,
)
from training.errors import ConfigError
from training.models import CONVNETS, build_model
from training.step_graph import WARMUP_STEPS, StepGraph, side_stream
from training.telemetry.mlflow_sink import MlflowSink
from training.telemetry.progress import ProgressWriter
from training.telemetry.prometheus import NullExporter, PrometheusExporter

log = logging.getLogger(__name__)


EpochHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class Telemetry:
    progress: ProgressWriter
    exporter: PrometheusExporter | NullExporter
    mlflow: MlflowSink | None = None


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested != "auto":
        return requested
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        env: DistEnv,
        device: torch.device,
        dataset: Dataset,
        *,
        telemetry: Telemetry,
        checkpoints: CheckpointManager | None = None,
    ) -> None:
        if device.type == "cuda":
            torch.backends.cuda.matmul.fp32_precision = "tf32"
            torch.backends.cudnn.conv.fp32_precision = "tf32"  # type: ignore[attr-defined]
            torch.backends.cudnn.benchmark = True
        self.cfg = cfg
        self.env = env
        self.device = device
        self.dataset = dataset
        self.telemetry = telemetry
        self.checkpoints = checkpoints
        self.precision = resolve_precision(cfg.precision, device)
        self.channels_last = cfg.model in CONVNETS and device.type == "cuda"
        self.local_batch = cfg.batch_size // env.world_size
        self.steps_per_epoch = len(dataset.train) // cfg.batch_size
        self.total_steps = self.steps_per_epoch * cfg.epochs

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = build_model(
            cfg.model,
            dataset,
            smoke_test=cfg.smoke_test,
            activation_checkpointing=cfg.activation_checkpointing,
        ).to(device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model = model
        wrapped: nn.Module = model
        if env.distributed:
            device_ids = [device.index] if device.type == "cuda" else None
            wrapped = DistributedDataParallel(
                model, device_ids=device_ids, gradient_as_bucket_view=True
            )
        # torch.compile of a module is a module (OptimizedModule); its stubs say Callable.
        self.forward: nn.Module = torch.compile(wrapped) if cfg.compile else wrapped  # type: ignore[assignment]
        resident = fits_on_device(dataset.nbytes, device)
        # One process with the data on the GPU: the whole step can be one CUDA graph. DDP's NCCL
        # all-reduce can be captured too, but only with more than one GPU to prove it on.
        self.graphed = (
            cfg.cuda_graph
            and device.type == "cuda"
            and resident
            and not env.distributed
            and not cfg.activation_checkpointing
        )
        self.optimizer = _adamw(model, cfg, fused=device.type == "cuda", capturable=self.graphed)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _warmup_cosine(self.total_steps, cfg.warmup_fraction)
        )
        # Dropout and augmentation differ per rank; the streams are checkpointed per rank.
        _seed_everything(cfg.seed + 1 + env.rank)

        eval_batch = self.local_batch * 4
        self.train_data = DeviceSplit(
            dataset.train, device, resident=resident, max_batch=self.local_batch
        )
        self.val_data = DeviceSplit(dataset.val, device, resident=resident, max_batch=eval_batch)
        self.test_data = (
            DeviceSplit(dataset.test, device, resident=resident, max_batch=eval_batch)
            if dataset.test is not None
            else None
        )
        self.eval_batch = eval_batch
        if dataset.task == "classification":
            channels = len(dataset.mean)
            std = torch.tensor(dataset.std, device=device).view(1, channels, 1, 1)
            mean = torch.tensor(dataset.mean, device=device).view(1, channels, 1, 1)
            self._scale = 1.0 / (255.0 * std)
            self._shift = -mean / std
        self._loss_probe = _AsyncScalar(device)
        self._step_graph: StepGraph | None = None
        self._warmup_steps = 0

        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, float]] = []
        self._restored_run_id: str | None = None

    @property
    def mlflow_run_id(self) -> str | None:
        sink = self.telemetry.mlflow
        return (sink.run_id if sink is not None else None) or self._restored_run_id

    # -- the step ------------------------------------------------------------------------------

    def train_step(self, index: torch.Tensor) -> torch.Tensor:
        """One optimizer step on this rank's samples at `index`; returns the loss as a device
        tensor (no host sync). Replays the captured graph once it exists."""
        if self.graphed and self._step_graph is None and self._warmup_steps >= WARMUP_STEPS:
            self._step_graph = self._capture(index)
        if self._step_graph is not None:
            loss = self._step_graph.replay(index)
        elif self.graphed:
            with side_stream(self.device):
                loss = self._update(index)
                self.optimizer.zero_grad(set_to_none=True)
            self._warmup_steps += 1
        else:
            loss = self._update(index)
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        return loss

    def _update(self, index: torch.Tensor) -> torch.Tensor:
        """Gather, forward, backward, optimizer step: exactly what the CUDA graph records."""
        inputs, targets = self.train_data.gather(index)
        with torch.autocast(
            self.device.type,
            dtype=torch.bfloat16,
            enabled=self.precision == "bf16",
            cache_enabled=not self.graphed,
        ):
            loss = self._loss(self.forward(self._prepare(inputs, train=True)), targets)
        loss.backward()
        if self.dataset.task == "language_modeling":
            nn.utils.clip_grad_norm_(self.model.parameters(), 1.0, foreach=True)
        self.optimizer.step()
        return loss.detach()

    def _capture(self, index: torch.Tensor) -> StepGraph | None:
        try:
            return StepGraph(self._update, index, self.optimizer)
        except RuntimeError as e:
            log.warning("CUDA graph capture failed (%s); training continues eagerly", e)
            self.graphed = False
            return None

    def _loss(
        self, output: torch.Tensor, targets: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        return F.cross_entropy(
            output.reshape(-1, output.shape[-1]).float(), targets.reshape(-1), reduction=reduction
        )

    def _prepare(self, inputs: torch.Tensor, *, train: bool) -> torch.Tensor:
        if self.dataset.task != "classification":
            return inputs
        x = inputs.to(torch.float32).mul_(self._scale).add_(self._shift)
        if train and self.dataset.horizontal_flip:
            flip = torch.rand(x.shape[0], device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # -- epochs --------------------------------------------------------------------------------

    def train(self, on_epoch: EpochHook | None = None) -> dict[str, Any]:
        """Train from the current epoch to cfg.epochs; returns the final metrics. `on_epoch` is
        called after each epoch with its metrics, once its checkpoint is written (a sweep's
        trial reports to Ray Tune there, which may stop it)."""
        progress = self.telemetry.progress
        for epoch in range(self.epoch + 1, self.cfg.epochs + 1):
            started = time.perf_counter()
            train_loss, train_seconds = self._train_epoch(epoch)
            broadcast_buffers(self.model)
            metrics = {
                "train_loss": train_loss,
                **self.evaluate("val"),
                "samples_per_sec": self.steps_per_epoch * self.cfg.batch_size / train_seconds,
                "lr": float(self.scheduler.get_last_lr()[0]),
            }
            self.epoch = epoch
            checkpoint = self._maybe_checkpoint(epoch)
            metrics["epoch_seconds"] = time.perf_counter() - started
            self.history.append(metrics)
            self.telemetry.exporter.set_epoch(epoch)
            self.telemetry.exporter.set_loss(train_loss)
            if self.telemetry.mlflow is not None:
                self.telemetry.mlflow.log_metrics(metrics, step=epoch)
            progress.emit(
                "epoch",
                epoch=epoch,
                epochs=self.cfg.epochs,
                step=self.step,
                metrics={k: round(v, 6) for k, v in metrics.items()},
                checkpoint=checkpoint,
            )
            if on_epoch is not None:
                on_epoch(epoch, metrics)
        return self.finish()

    def _train_epoch(self, epoch: int) -> tuple[float, float]:
        self.forward.train()
        index = epoch_indices(
            len(self.dataset.train),
            epoch=epoch,
            seed=self.cfg.seed,
            global_batch=self.cfg.batch_size,
            rank=self.env.rank,
            world_size=self.env.world_size,
        ).to(self.train_data.index_device)
        losses = torch.zeros(self.steps_per_epoch, device=self.device)
        exporter = self.telemetry.exporter
        started = last = time.perf_counter()
        for i in range(self.steps_per_epoch):
            losses[i] = self.train_step(index[i])
            self.step += 1
            now = time.perf_counter()
            exporter.on_step(self.local_batch, now - last, float(self.scheduler.get_last_lr()[0]))
            last = now
            if self.step % self.cfg.log_every == 0:
                recent = self._loss_probe.poll()
                if recent is not None:
                    exporter.set_loss(recent)
                self._loss_probe.push(losses[i])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_seconds = time.perf_counter() - started
        losses = all_reduce_sum(losses) / self.env.world_size
        self._log_step_losses(losses)
        return losses.mean().item(), train_seconds

    def _log_step_losses(self, losses: torch.Tensor) -> None:
        """Every log_every-th step's loss (mean over ranks), sent to MLflow in one batch."""
        sink = self.telemetry.mlflow
        if sink is None:
            return
        first_step = self.step - self.steps_per_epoch + 1
        values = losses.tolist()
        points = [
            ("train_loss_step", v, first_step + i)
            for i, v in enumerate(values)
            if (first_step + i) % self.cfg.log_every == 0 or i == len(values) - 1
        ]
        sink.log_points(points)

    @torch.no_grad()
    def evaluate(self, split: str = "val") -> dict[str, float]:
        """Loss and accuracy (or perplexity) over this rank's shard, all-reduced."""
        data = {"val": self.val_data, "test": self.test_data}[split]
        if data is None:
            return {}
        self.model.eval()
        sums = torch.zeros(3, device=self.device, dtype=torch.float64)  # loss, correct, count
        index = shard_indices(data.size, rank=self.env.rank, world_size=self.env.world_size)
        for chunk in index.to(data.index_device).split(self.eval_batch):
            inputs, targets = data.gather(chunk)
            with torch.autocast(
                self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"
            ):
                output = self.model(self._prepare(inputs, train=False))
            sums[0] += self._loss(output, targets, reduction="sum")
            sums[1] += (output.argmax(-1) == targets).sum()
            sums[2] += targets.numel()
        loss, correct, count = all_reduce_sum(sums).tolist()
        count = max(count, 1.0)
        metrics = {f"{split}_loss": loss / count, f"{split}_accuracy": correct / count}
        if self.dataset.task == "language_modeling":
            metrics[f"{split}_perplexity"] = math.exp(min(loss / count, 50.0))
        return metrics

    def finish(self) -> dict[str, Any]:
        """Final metrics (test split included), identical weights checked across ranks."""
        broadcast_buffers(self.model)
        final = dict(self.history[-1]) if self.history else {}
        test = self.evaluate("test")
        final.update(test)
        fingerprints = all_gather_object(self.fingerprint())
        sink = self.telemetry.mlflow
        if sink is not None:
            if test:
                sink.log_metrics(test, step=self.epoch)
            example = self.dataset.val.inputs[:2]
            cpu_model = copy.deepcopy(self.model).to(  # type: ignore[call-overload]
                "cpu", memory_format=torch.contiguous_format
            )
            sink.log_model(_ExportWrapper(cpu_model.eval(), self.dataset), example)
        return {
            "epochs": self.epoch,
            "steps": self.step,
            "metrics": final,
            "weights_fingerprints": fingerprints,
            "weights_in_sync": len(set(fingerprints)) == 1,
            "cuda_graph": self._step_graph is not None,
        }

    # -- checkpoints ---------------------------------------------------------------------------

    def _maybe_checkpoint(self, epoch: int) -> str | None:
        if self.checkpoints is None:
            return None
        if epoch % self.cfg.checkpoint_every and epoch != self.cfg.epochs:
            return None
        state = self.state_dict()  # collective: every rank contributes its RNG state
        if not self.env.is_main:
            return None
        return self.checkpoints.save(epoch, state)

    def state_dict(self) -> dict[str, Any]:
        rng = all_gather_object(_rng_state(self.device))
        return {
            "epoch": self.epoch,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng,
            "history": self.history,
            "config": dataclasses.asdict(self.cfg),
            "dataset_used": self.dataset.name,
            "world_size": self.env.world_size,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        trained = state["config"]
        if trained["model"] != self.cfg.model or state["dataset_used"] != self.dataset.name:
            where = self.checkpoints.location if self.checkpoints else "the checkpoint"
            raise ConfigError(
                f"{where} holds a {trained['model']} trained on {state['dataset_used']}, not a "
                f"{self.cfg.model} on {self.dataset.name}; use a fresh --checkpoint-dir"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError:  # same architecture, other shapes: --smoke-test, --seq-len, ...
            where = self.checkpoints.location if self.checkpoints else "the checkpoint"
            changed = sorted(
                k for k in SHAPE_FLAGS if k in trained and trained[k] != getattr(self.cfg, k)
            )
            raise ConfigError(
                f"{where} holds a {trained['model']} of other shapes"
                + (f" (it was trained with {_flags(trained, changed)})" if changed else "")
                + "; train with the same flags or use a fresh --checkpoint-dir"
            ) from None
        _load_optimizer_state(self.optimizer, state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.step = state["step"]
        self.history = list(state["history"])
        self._restored_run_id = state.get("mlflow_run_id")
        if self.telemetry.mlflow is not None and self._restored_run_id:
            self.telemetry.mlflow.adopt_run(self._restored_run_id)
        rng = state["rng"]
        if state["world_size"] == self.env.world_size and len(rng) == self.env.world_size:
            _set_rng_state(rng[self.env.rank], self.device)
        else:
            _seed_everything(self.cfg.seed + 1 + self.env.rank + 7919 * self.epoch)

    def restore(self) -> int | None:
        """Resume from the newest valid checkpoint; rank 0 reads it and shares it with the rest,
        so ranks on other nodes need no shared filesystem. Returns the epoch resumed from."""
        if self.checkpoints is None:
            return None
        found = self.checkpoints.load_latest() if self.env.is_main else None
        state = broadcast_object(found[1] if found else None)
        if state is None:
            return None
        self.load_state_dict(state)
        return self.epoch

    # -- helpers -------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu").reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]

    def close(self) -> None:
        self.telemetry.exporter.close()


class _ExportWrapper(nn.Module):
    """The logged model takes raw uint8 pixels (or tokens) and does the preprocessing itself."""

    def __init__(self, model: nn.Module, dataset: Dataset) -> None:
        super().__init__()
        self.model = model
        self.classify = dataset.task == "classification"
        if self.classify:
            channels = len(dataset.mean)
            std = torch.tensor(dataset.std).view(1, channels, 1, 1)
            self.scale: torch.Tensor
            self.shift: torch.Tensor
            self.register_buffer("scale", 1.0 / (255.0 * std))
            self.register_buffer("shift", -torch.tensor(dataset.mean).view(1, channels, 1, 1) / std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.classify:
            x = x.to(torch.float32) * self.scale + self.shift
        return self.model(x)


class _AsyncScalar:
    """Reads a device scalar a little late instead of stalling the stream to read it now."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.host = torch.zeros((), pin_memory=self.cuda)
        self.ready: torch.cuda.Event | None = None
        self.pending = False

    def push(self, value: torch.Tensor) -> None:
        self.host.copy_(value, non_blocking=self.cuda)
        if self.cuda:
            self.ready = torch.cuda.Event()
            self.ready.record()
        self.pending = True

    def poll(self) -> float | None:
        if not self.pending or (self.ready is not None and not self.ready.query()):
            return None
        return float(self.host)


def _adamw(
    model: nn.Module, cfg: TrainConfig, *, fused: bool, capturable: bool
) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(0.9, 0.95), fused=fused or None, capturable=capturable
    )


SHAPE_FLAGS = ("smoke_test", "seq_len")


def _flags(config: dict[str, Any], names: list[str]) -> str:
    def flag(name: str) -> str:
        value = config[name]
        dashed = f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            return dashed if value else f"no {dashed}"
        return f"{dashed} {value}"

    return ", ".join(map(flag, names))


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load hyperparameters and moments, but keep this process's kernel choices: a checkpoint
    written by a GPU job (fused, capturable) may resume on a CPU node, and the reverse."""
    own = [(group["fused"], group["capturable"]) for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, (fused, capturable) in zip(optimizer.param_groups, own, strict=True):
        group["fused"], group["capturable"] = fused, capturable
        for param in group["params"]:
            step = optimizer.state.get(param, {}).get("step")
            if isinstance(step, torch.Tensor):
                on_device = fused or capturable
                where = param.device if on_device else torch.device("cpu")
                optimizer.state[param]["step"] = step.to(where, torch.float32)


def _warmup_cosine(total_steps: int, warmup_fraction: float):
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
