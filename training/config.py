"""The job's configuration: one keyword-only dataclass, validated before a process group starts."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Literal, NoReturn, get_args

from common.vocabulary import (
    DATASETS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_LR,
    MODELS,
    DatasetName,
    ModelName,
    model_dataset_mismatch,
)
from training.errors import ConfigError

Precision = Literal["auto", "bf16", "fp32"]
DeviceKind = Literal["auto", "cpu", "cuda"]


@dataclass(kw_only=True, frozen=True)
class TrainConfig:
    """Everything a training job needs; `__post_init__` rejects bad values with the fix."""

    model: ModelName
    dataset: DatasetName
    epochs: int
    batch_size: int = DEFAULT_BATCH_SIZE
    """Global batch size, split evenly over ranks."""
    lr: float = DEFAULT_LR
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    data_dir: str = "data"
    """Local path or s3://bucket/prefix holding the dataset files."""
    download: bool = True
    dataset_mirror: str | None = None
    """Base URL to download mnist/fashion-mnist/cifar10 from instead of the official mirrors."""
    fallback_dataset: DatasetName | None = None
    val_fraction: float = 0.1
    synthetic_samples: int = 60_000
    seq_len: int = 128
    """Tokens per sequence (gpt)."""
    checkpoint_dir: str | None = None
    """Local path or s3://bucket/prefix; restarts resume from the latest valid checkpoint here."""
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    compile: bool = False
    cuda_graph: bool = True
    """Replay each training step as one CUDA graph (one GPU process, data on the GPU)."""
    precision: Precision = "auto"
    device: DeviceKind = "auto"
    activation_checkpointing: bool = False
    seed: int = 0
    log_every: int = 50
    experiment: str = "trainops"
    run_name: str | None = None
    smoke_test: bool = False

    def __post_init__(self) -> None:
        _choice("--model", self.model, MODELS)
        _choice("--dataset", self.dataset, DATASETS)
        if self.fallback_dataset is not None:
            _choice("--fallback-dataset", self.fallback_dataset, DATASETS)
            if self.fallback_dataset == self.dataset:
                raise ConfigError(
                    f"--fallback-dataset {self.fallback_dataset} is the dataset already asked for; "
                    "name a different one (e.g. digits) or drop the flag"
                )
        _choice("--precision", self.precision, get_args(Precision))
        _choice("--device", self.device, get_args(DeviceKind))
        _positive("--epochs", self.epochs)
        _positive("--batch-size", self.batch_size)
        _positive("--checkpoint-every", self.checkpoint_every)
        _positive("--keep-checkpoints", self.keep_checkpoints)
        _positive("--log-every", self.log_every)
        _at_most("--epochs", self.epochs, MAX_EPOCHS)
        _at_most("--batch-size", self.batch_size, MAX_BATCH_SIZE)
        _positive("--synthetic-samples", self.synthetic_samples)
        _positive("--seq-len", self.seq_len)
        if self.synthetic_samples > MAX_SYNTHETIC_SAMPLES:
            raise ConfigError(
                f"--synthetic-samples {self.synthetic_samples} is more than this entry point "
                f"generates; use at most {MAX_SYNTHETIC_SAMPLES}"
            )
        if self.seq_len > MAX_SEQ_LEN:
            raise ConfigError(f"--seq-len {self.seq_len} is too long; use at most {MAX_SEQ_LEN}")
        if not self.lr > 0 or self.lr > MAX_LR:
            raise ConfigError(
                f"--lr {self.lr} is out of range; use a value in (0, {MAX_LR:g}], e.g. 1e-3"
            )
        if not 0 <= self.weight_decay < 1:
            raise ConfigError(f"--weight-decay {self.weight_decay} must be in [0, 1)")
        if not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"--warmup-fraction {self.warmup_fraction} must be in [0, 1)")
        if not 0 < self.val_fraction < 0.5:
            raise ConfigError(f"--val-fraction {self.val_fraction} must be in (0, 0.5), e.g. 0.1")
        if self.activation_checkpointing and self.model != "gpt":
            raise ConfigError("--activation-checkpointing applies to --model gpt only; drop it")
        for dataset in filter(None, (self.dataset, self.fallback_dataset)):
            _check_model_fits_dataset(self.model, dataset)
        _check_location("--data-dir", self.data_dir)
        if self.checkpoint_dir is not None:
            _check_location("--checkpoint-dir", self.checkpoint_dir)
        if self.dataset_mirror is not None and not self.dataset_mirror.startswith(
            ("http://", "https://", "file://")
        ):
            raise ConfigError("--dataset-mirror must be an http(s):// or file:// URL")

    def to_params(self) -> dict[str, str]:
        """The full config as flat string params (what MLflow stores)."""
        return {f.name: str(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _choice(flag: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{flag} {value!r} is not known; choose one of {', '.join(allowed)}")


def _positive(flag: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{flag} must be a positive integer, got {value!r}")


def _at_most(flag: str, value: int, limit: int) -> None:
    if value > limit:
        raise ConfigError(f"{flag} {value} is more than {limit}; use at most {limit}")


def _check_model_fits_dataset(model: str, dataset: str) -> None:
    if problem := model_dataset_mismatch(model, dataset):
        raise ConfigError(f"--model {problem}")


def _check_location(flag: str, location: str) -> None:
    if location.startswith("s3://"):
        if len(location) <= len("s3://") or location[len("s3://")] == "/":
            raise ConfigError(f"{flag} {location!r} names no bucket; use s3://BUCKET/PREFIX")
        return
    if "://" in location:
        raise ConfigError(f"{flag} {location!r}: only local paths and s3:// URLs are supported")
    # The nearest existing ancestor must be a readable, writable directory.
    path = os.path.abspath(location)
    probe = path
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ConfigError(f"{flag} {location}: {probe} is not a directory; choose another path")
    if not os.access(probe, os.R_OK | os.X_OK):
        raise ConfigError(f"{flag} {location} is not readable; fix its permissions or move it")


MAX_SYNTHETIC_SAMPLES = 1_000_000
MAX_SEQ_LEN = 8192


class _OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are ConfigErrors (one line, exit code 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message}; see python -m training.train --help")


class _CheckingParser(_OneLineParser):
    """For checking a command without running it: no --help, and nothing ends the process."""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise ConfigError(message.strip() if message else "the flags ask the parser to exit")


def build_parser(*, checking: bool = False) -> argparse.ArgumentParser:
    parser = (_CheckingParser if checking else _OneLineParser)(
        prog="python -m training.train",
        description="Train a model with DistributedDataParallel (run under torchrun for >1 rank).",
        allow_abbrev=False,  # "--mod" must not slip past checks that look for "--model"
        add_help=not checking,
    )
    add = parser.add_argument
    add("--model", required=True, choices=MODELS)
    add("--dataset", required=True, choices=DATASETS)
    add("--epochs", type=int, default=DEFAULT_EPOCHS)
    add("--batch-size", type=int, default=TrainConfig.batch_size, help="global batch size")
    add("--lr", type=float, default=TrainConfig.lr)
    add("--weight-decay", type=float, default=TrainConfig.weight_decay)
    add("--warmup-fraction", type=float, default=TrainConfig.warmup_fraction)
    add("--data-dir", default=TrainConfig.data_dir, help="local path or s3://bucket/prefix")
    add(
        "--no-download",
        dest="download",
        action="store_false",
        help="never download; fail (or fall back) when the files are missing",
    )
    add("--dataset-mirror", default=None, help="base URL to download datasets from")
    add(
        "--fallback-dataset",
        default=None,
        choices=DATASETS,
        help="dataset to use (loudly) when the requested one can't be had",
    )
    add("--val-fraction", type=float, default=TrainConfig.val_fraction)
    add("--synthetic-samples", type=int, default=TrainConfig.synthetic_samples)
    add("--seq-len", type=int, default=TrainConfig.seq_len, help="tokens per sequence (gpt)")
    add("--checkpoint-dir", default=None, help="local path or s3://bucket/prefix")
    add("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every, help="epochs")
    add("--keep-checkpoints", type=int, default=TrainConfig.keep_checkpoints)
    add("--compile", action="store_true", help="torch.compile the model")
    add(
        "--no-cuda-graph",
        dest="cuda_graph",
        action="store_false",
        help="launch every kernel of every step from Python instead of replaying a CUDA graph",
    )
    add(
        "--precision",
        default="auto",
        choices=get_args(Precision),
        help="auto = bf16 on CUDA GPUs that support it, fp32 otherwise",
    )
    add(
        "--device",
        default="auto",
        choices=get_args(DeviceKind),
        help="cuda insists on GPUs; auto uses them when present",
    )
    add(
        "--activation-checkpointing", action="store_true", help="gpt only: trade compute for memory"
    )
    add("--seed", type=int, default=TrainConfig.seed)
    add("--log-every", type=int, default=TrainConfig.log_every, help="steps between loss samples")
    add("--experiment", default=os.environ.get("MLFLOW_EXPERIMENT_NAME", TrainConfig.experiment))
    add("--run-name", default=None)
    add("--smoke-test", action="store_true", help="tiny data and model: runs in seconds on CPU")
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    """Flags to a validated TrainConfig; raises ConfigError with the fix."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return TrainConfig(**vars(args))


def check_config(argv: list[str]) -> TrainConfig:
    """What parse_config would make of `argv`, for a caller that only checks a command (the
    Kubernetes server): it prints nothing and never exits, whatever the flags ask for."""
    return TrainConfig(**vars(build_parser(checking=True).parse_args(argv)))
