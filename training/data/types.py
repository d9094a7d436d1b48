"""What the data layer hands the Trainer: tensors in memory, split three ways."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Task = Literal["classification", "language_modeling"]


@dataclass(frozen=True)
class Split:
    inputs: torch.Tensor
    """uint8 images (N, C, H, W) or int64 tokens (N, T)."""
    targets: torch.Tensor
    """int64 labels (N,) or next tokens (N, T)."""

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def take(self, index: torch.Tensor | slice) -> Split:
        return Split(self.inputs[index], self.targets[index])

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.inputs, self.targets))


@dataclass(frozen=True)
class RawDataset:
    """A dataset as its source provides it, before the validation split."""

    train: Split
    test: Split | None
    num_classes: int
    task: Task = "classification"
    horizontal_flip: bool = False


@dataclass(frozen=True)
class Dataset:
    name: str
    task: Task
    train: Split
    val: Split
    test: Split | None
    num_classes: int
    """Classes, or the vocabulary size for token data."""
    mean: tuple[float, ...] = ()
    """Per-channel pixel mean and std on a 0-1 scale (images only)."""
    std: tuple[float, ...] = ()
    horizontal_flip: bool = False

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.inputs.shape[1:])

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in (self.train, self.val, self.test) if s is not None)


@dataclass(frozen=True)
class LoadedDataset:
    dataset: Dataset
    requested: str
    fallback_reason: str | None = None
    """Why the requested dataset was replaced by --fallback-dataset (None when it wasn't)."""

    @property
    def used(self) -> str:
        return self.dataset.name
