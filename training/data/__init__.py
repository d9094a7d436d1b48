"""Datasets as in-memory tensors: load (or download), fall back only when asked, split, cap."""

from __future__ import annotations

import torch

from training.config import TrainConfig
from training.data.types import Dataset, LoadedDataset, RawDataset, Split
from training.errors import DatasetUnavailable

__all__ = ["Dataset", "LoadedDataset", "Split", "load_dataset"]

SMOKE_TRAIN, SMOKE_EVAL, SMOKE_SEQ_LEN = 512, 128, 32
SYNTHETIC_IMAGE_SHAPES = {"cnn": (1, 28, 28), "mlp": (1, 28, 28), "resnet18": (3, 32, 32)}


def load_dataset(cfg: TrainConfig) -> LoadedDataset:
    """The requested dataset; --fallback-dataset (announced loudly) only when it can't be had."""
    try:
        return LoadedDataset(_prepare(cfg.dataset, cfg), requested=cfg.dataset)
    except DatasetUnavailable as e:
        if cfg.fallback_dataset is None:
            # Only a job without a fallback is told it may have one.
            hint = (
                ""
                if cfg.dataset == "digits"
                else (", or pass --fallback-dataset digits to train on the bundled digits instead")
            )
            raise DatasetUnavailable(f"{e}{hint}") from None
        reason = str(e)
    try:
        dataset = _prepare(cfg.fallback_dataset, cfg)
    except DatasetUnavailable as e:
        raise DatasetUnavailable(
            f"{reason}; and the fallback {cfg.fallback_dataset} is not available either: {e}"
        ) from None
    return LoadedDataset(dataset, requested=cfg.dataset, fallback_reason=reason)


def seq_len(cfg: TrainConfig) -> int:
    return SMOKE_SEQ_LEN if cfg.smoke_test else cfg.seq_len


def _read(name: str, cfg: TrainConfig) -> RawDataset:
    if name == "mnist":
        from training.data.idx_datasets import MNIST, load_idx_dataset

        return load_idx_dataset(MNIST, cfg)
    if name == "fashion-mnist":
        from training.data.idx_datasets import FASHION_MNIST, load_idx_dataset

        return load_idx_dataset(FASHION_MNIST, cfg)
    if name == "cifar10":
        from training.data.cifar import load_cifar10

        return load_cifar10(cfg)
    if name == "digits":
        from training.data.digits import load_digits

        return load_digits()
    if name == "synthetic":
        from training.data.synthetic import synthetic_images, synthetic_tokens

        samples = SMOKE_TRAIN + 2 * SMOKE_EVAL if cfg.smoke_test else cfg.synthetic_samples
        if cfg.model == "gpt":
            return synthetic_tokens(samples, seq_len(cfg), cfg.seed)
        return synthetic_images(samples, SYNTHETIC_IMAGE_SHAPES[cfg.model], cfg.seed)
    raise DatasetUnavailable(f"unknown dataset {name!r}")


def _prepare(name: str, cfg: TrainConfig) -> Dataset:
    raw = _read(name, cfg)
    # The validation split is carved from the training data with a fixed permutation, so every
    # rank and every restart sees the same split.
    order = torch.randperm(len(raw.train), generator=torch.Generator().manual_seed(cfg.seed))
    n_val = max(1, round(len(raw.train) * cfg.val_fraction))
    val, train = raw.train.take(order[:n_val]), raw.train.take(order[n_val:])
    test = raw.test
    if cfg.smoke_test:
        train, val = train.take(slice(0, SMOKE_TRAIN)), val.take(slice(0, SMOKE_EVAL))
        test = test.take(slice(0, SMOKE_EVAL)) if test is not None else None
    mean, std = _pixel_stats(train) if raw.task == "classification" else ((), ())
    return Dataset(
        name=name,
        task=raw.task,
        train=train,
        val=val,
        test=test,
        num_classes=raw.num_classes,
        mean=mean,
        std=std,
        horizontal_flip=raw.horizontal_flip,
    )


def _pixel_stats(split: Split) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pixels = split.inputs.transpose(0, 1).reshape(split.inputs.shape[1], -1).float() / 255.0
    return tuple(pixels.mean(1).tolist()), tuple(pixels.std(1).clamp_min(1e-3).tolist())
