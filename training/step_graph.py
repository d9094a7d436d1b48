"""The training step recorded once as a CUDA graph and replayed.

A small model on a fast GPU is bound by the host launching dozens of kernels per step (the cnn
on an H100 spends ~3 ms of Python and launches on ~1 ms of GPU work); a replay launches them all
at once. Capture follows torch.cuda.graphs' rules: eager warm-up steps on a side stream first,
grads set to None before capture, autocast's cast cache off inside the step. The learning rate
lives in device tensors that the graph reads, filled from the scheduler's floats before each
replay, so the scheduler, checkpoints and metrics keep seeing plain floats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

WARMUP_STEPS = 3


@contextmanager
def side_stream(device: torch.device) -> Iterator[None]:
    """Run eager warm-up work off the default stream, as capture requires."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        yield
    torch.cuda.current_stream(device).wait_stream(stream)


class StepGraph:
    """`body(index) -> loss` captured with a static index tensor; `replay(index)` runs it."""

    def __init__(
        self,
        body: Callable[[torch.Tensor], torch.Tensor],
        index: torch.Tensor,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        self._optimizer = optimizer
        self._index = index.clone()
        floats = [group["lr"] for group in optimizer.param_groups]
        self._lrs = [torch.tensor(float(lr), device=index.device) for lr in floats]
        for group, lr in zip(optimizer.param_groups, self._lrs, strict=True):
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        self._graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self._graph):
                self._loss = body(self._index)
        finally:
            for group, value in zip(optimizer.param_groups, floats, strict=True):
                group["lr"] = value

    def replay(self, index: torch.Tensor) -> torch.Tensor:
        """One optimizer step on the samples at `index`; returns the loss (a device tensor that
        the next replay overwrites)."""
        for group, lr in zip(self._optimizer.param_groups, self._lrs, strict=True):
            lr.fill_(group["lr"])
        self._index.copy_(index)
        self._graph.replay()
        return self._loss
