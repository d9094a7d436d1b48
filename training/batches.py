"""Batches without a DataLoader: the whole split on the device when it fits, pinned otherwise.

With the data resident, a batch is one index_select on the device (no host work, no sync).
Otherwise rows are gathered into one of two pinned host buffers and copied asynchronously, so
the copy of batch k+1 overlaps the compute of batch k.
"""

from __future__ import annotations

import torch

from training.data.types import Split

RESIDENT_FRACTION_OF_FREE_MEMORY = 0.5


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return True  # host memory is where the data already is
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= RESIDENT_FRACTION_OF_FREE_MEMORY * free


class DeviceSplit:
    def __init__(self, split: Split, device: torch.device, *, resident: bool, max_batch: int):
        self.device = device
        self.resident = resident
        self.size = len(split)
        if resident:
            self.inputs = split.inputs.to(device)
            self.targets = split.targets.to(device)
            return
        self.inputs = split.inputs.contiguous()
        self.targets = split.targets.contiguous()
        self._buffers = [
            (
                torch.empty(
                    (max_batch, *self.inputs.shape[1:]), dtype=self.inputs.dtype
                ).pin_memory(),
                torch.empty(
                    (max_batch, *self.targets.shape[1:]), dtype=self.targets.dtype
                ).pin_memory(),
            )
            for _ in range(2)
        ]
        self._copied: list[torch.cuda.Event | None] = [None, None]
        self._slot = 0

    @property
    def index_device(self) -> torch.device:
        """Where index tensors for `gather` should live."""
        return self.device if self.resident else torch.device("cpu")

    def gather(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.resident:
            return self.inputs.index_select(0, index), self.targets.index_select(0, index)
        slot, self._slot = self._slot, self._slot ^ 1
        if (copied := self._copied[slot]) is not None:
            copied.synchronize()  # the copy issued two batches ago is done
        n = index.numel()
        x_host, y_host = (buf[:n] for buf in self._buffers[slot])
        torch.index_select(self.inputs, 0, index, out=x_host)
        torch.index_select(self.targets, 0, index, out=y_host)
        x = x_host.to(self.device, non_blocking=True)
        y = y_host.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._copied[slot] = event
        return x, y


def epoch_indices(
    size: int, *, epoch: int, seed: int, global_batch: int, rank: int, world_size: int
) -> torch.Tensor:
    """This rank's sample indices for every step of `epoch`, shape (steps, global_batch/world).

    Every rank draws the same seeded permutation, so the shards are disjoint and a restarted job
    sees exactly the order it would have seen.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(size, generator=generator)
    steps = size // global_batch
    per_rank = global_batch // world_size
    return order[: steps * global_batch].view(steps, world_size, per_rank)[:, rank]


def shard_indices(size: int, *, rank: int, world_size: int) -> torch.Tensor:
    """A strided, disjoint shard of an evaluation split."""
    return torch.arange(rank, size, world_size)
