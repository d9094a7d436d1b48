"""The torchrun environment, the process group, and the few collectives the Trainer needs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from training.errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    """What torchrun (or the Training Operator) tells each process; world of 1 without it."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    restart_count: int = 0

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> DistEnv:
        env = os.environ if environ is None else environ
        try:
            values = {
                "rank": int(env.get("RANK", 0)),
                "local_rank": int(env.get("LOCAL_RANK", 0)),
                "world_size": int(env.get("WORLD_SIZE", 1)),
                "local_world_size": int(env.get("LOCAL_WORLD_SIZE", 1)),
                "restart_count": int(env.get("TORCHELASTIC_RESTART_COUNT", 0)),
            }
        except ValueError as e:
            raise ConfigError(f"bad torchrun environment ({e}); launch with torchrun") from None
        if not 0 <= values["rank"] < values["world_size"]:
            raise ConfigError(f"RANK {values['rank']} is outside WORLD_SIZE {values['world_size']}")
        return cls(**values)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str, env: DistEnv) -> torch.device:
    """cuda:<local rank> when GPUs are asked for (or present under auto); cpu otherwise."""
    has_cuda = torch.cuda.is_available()
    if requested == "cuda" and not has_cuda:
        raise ConfigError(
            "--device cuda was asked for but CUDA is not available here; run on a GPU node "
            "or use --device cpu"
        )
    if requested == "cpu" or not has_cuda:
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if env.local_rank >= count:
        raise ConfigError(
            f"{env.local_world_size} processes per node but only {count} GPU(s) here; "
            f"use --nproc-per-node {count} or fewer"
        )
    return torch.device("cuda", env.local_rank)


def init_process_group(env: DistEnv, device: torch.device) -> None:
    if not env.distributed:
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    store, rank, world_size = next(dist.rendezvous("env://"))
    # torchrun's agent keeps one store across restarts; without a per-attempt prefix a restarted
    # worker can read the previous attempt's (dead) peer addresses and fail to connect.
    store = dist.PrefixStore(f"trainops/attempt-{env.restart_count}", store)
    dist.init_process_group(
        backend,
        store=store,
        rank=rank,
        world_size=world_size,
        timeout=timedelta(minutes=10),
        device_id=device if device.type == "cuda" else None,
    )


def destroy_process_group(*, in_step: bool) -> None:
    """Tear the group down; with `in_step` (every rank got here) after a barrier, so that no
    rank closes its connections while a peer still uses them."""
    if dist.is_available() and dist.is_initialized():
        if in_step:
            dist.barrier()
        dist.destroy_process_group()


def backend_name(env: DistEnv, device: torch.device) -> str:
    if not env.distributed:
        return "none"
    return "nccl" if device.type == "cuda" else "gloo"


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running stats) everywhere, so all ranks hold one model."""
    if not dist.is_initialized():
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)
