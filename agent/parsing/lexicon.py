"""The words people use for what trainops knows: models, datasets, GPU types, metrics and the
parameters a sweep searches. Patterns run on normalized text (lowercase, numbers as digits)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from common.gpus import GpuType
from common.telemetry import MlflowMetric
from common.vocabulary import DatasetName, ModelName

T = TypeVar("T", bound=str)

MODEL_WORDS: list[tuple[ModelName, str]] = [
    (
        "resnet18",
        r"\bres-?net(?:[- ]?18)?\b|\br-?18\b|\bresidual (?:net(?:work)?|cnn)s?\b",
    ),
    (
        "gpt",
        r"\b(?:nano-?|mini-?)?gpt(?:-?\d)?s?\b|\btransformers?\b|\blanguage models?\b|\bllms?\b"
        r"|\bdecoder(?:-only)?\b",
    ),
    (
        "mlp",
        r"\bmlps?\b|\bmulti-?layer perceptrons?\b|\bperceptrons?\b"
        r"|\bfeed-?forward(?: net(?:work)?s?)?\b"
        r"|\bfully[- ]connected(?: net(?:work)?s?)?\b|\bdense (?:net(?:work)?|model)s?\b",
    ),
    (
        "cnn",
        r"\bcnns?\b|\bconv-?nets?\b|\bconv nets?\b"
        r"|\bconvolutional(?: neural)?(?: net(?:work)?s?)?\b"
        r"|\ble-?net(?:-?5)?\b",
    ),
]
DATASET_WORDS: list[tuple[DatasetName, str]] = [
    ("fashion-mnist", r"\bfashion[- _]?mnist\b|\bf-?mnist\b|\bzalando\b|\bfashion\b"),
    ("mnist", r"\bmnist\b|\bhandwritten digits?\b|\bhand-written digits?\b"),
    ("cifar10", r"\bcifar[- _]?10\b|\bcifar\b"),
    (
        "digits",
        r"\b(?:sklearn|scikit-learn|scikit|bundled|8x8|small) digits\b"
        r"|\bdigits(?: dataset| data)?\b",
    ),
    (
        "synthetic",
        r"\bsynthetic\b"
        r"|\b(?:random|fake|dummy|toy|generated) (?:data|dataset|tokens|images|text)\b",
    ),
]
GPU_TYPE_WORDS: list[tuple[GpuType, str]] = [
    ("L40S", r"\bl40s\b|\bl40\b"),
    ("A10G", r"\ba10g?s?\b"),
    ("A100", r"\ba100s?\b"),
    ("B200", r"\bb200s?\b"),
    ("H100", r"\bh100s?\b"),
    ("H200", r"\bh200s?\b"),
    ("L4", r"\bl4s?\b"),
    ("T4", r"\bt4s?\b"),
    ("V100", r"\bv100s?\b"),
]
GPU_TYPE_PATTERN = "|".join(f"(?:{p})" for _, p in GPU_TYPE_WORDS)

METRICS = {
    "val accuracy": MlflowMetric.VAL_ACCURACY,
    "validation accuracy": MlflowMetric.VAL_ACCURACY,
    "val_accuracy": MlflowMetric.VAL_ACCURACY,
    "val acc": MlflowMetric.VAL_ACCURACY,
    "accuracy": MlflowMetric.VAL_ACCURACY,
    "acc": MlflowMetric.VAL_ACCURACY,
    "accurate": MlflowMetric.VAL_ACCURACY,
    "test accuracy": MlflowMetric.TEST_ACCURACY,
    "test acc": MlflowMetric.TEST_ACCURACY,
    "test_accuracy": MlflowMetric.TEST_ACCURACY,
    "val loss": MlflowMetric.VAL_LOSS,
    "validation loss": MlflowMetric.VAL_LOSS,
    "val_loss": MlflowMetric.VAL_LOSS,
    "loss": MlflowMetric.VAL_LOSS,
    "perplexity": MlflowMetric.VAL_PERPLEXITY,
    "val perplexity": MlflowMetric.VAL_PERPLEXITY,
    "ppl": MlflowMetric.VAL_PERPLEXITY,
    "throughput": MlflowMetric.SAMPLES_PER_SEC,
    "samples per second": MlflowMetric.SAMPLES_PER_SEC,
    "samples/s": MlflowMetric.SAMPLES_PER_SEC,
}
METRIC_WORDS = "|".join(sorted(map(re.escape, METRICS), key=len, reverse=True))

PARAM_NAMES = {
    "lr": "lr",
    "learning rate": "lr",
    "learning rates": "lr",
    "learning-rate": "lr",
    "batch size": "batch_size",
    "batch sizes": "batch_size",
    "batch-size": "batch_size",
    "batch_size": "batch_size",
    "bs": "batch_size",
    "bsz": "batch_size",
    "dropout": "dropout",
    "weight decay": "weight_decay",
    "weight_decay": "weight_decay",
    "wd": "weight_decay",
    "momentum": "momentum",
    "epochs": "epochs",
    "warmup": "warmup_fraction",
}
PARAM_WORDS = "|".join(sorted(map(re.escape, PARAM_NAMES), key=len, reverse=True))


def first(vocabulary: Sequence[tuple[T, str]], t: str) -> T | None:
    """The entry named earliest in `t`."""
    best: tuple[int, T] | None = None
    for name, pattern in vocabulary:
        match = re.search(pattern, t)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), name)
    return best[1] if best else None


GENERIC: dict[str, str] = {"cnn": "resnet18", "digits": "mnist"}
"""A word that also names something more specific said beside it: a ResNet-18 is a CNN, and
"the MNIST digits" are MNIST's."""


def distinct(vocabulary: Sequence[tuple[T, str]], t: str) -> list[T]:
    """The entries named in `t` by words of their own, in order: a match inside a longer one
    ("digits" in "handwritten digits", "cnn" in "residual cnn") is not another entry."""
    spans = sorted(
        ((m.start(), m.end(), name) for name, p in vocabulary for m in re.finditer(p, t)),
        key=lambda s: (s[0], -(s[1] - s[0])),
    )
    kept: list[tuple[int, int, T]] = []
    for start, end, name in spans:
        if all(end <= s or start >= e for s, e, _ in kept):
            kept.append((start, end, name))
    names = list(dict.fromkeys(name for _, _, name in kept))
    return [n for n in names if GENERIC.get(n) not in names]


def named(vocabulary: Sequence[tuple[T, str]], t: str) -> list[T]:
    """Every entry named in `t`, in the order named."""
    found: list[tuple[int, T]] = []
    for name, pattern in vocabulary:
        if match := re.search(pattern, t):
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]
