"""The model zoo: one builder, four architectures."""

from __future__ import annotations

from torch import nn

from training.data.types import Dataset
from training.models.cnn import ConvNet
from training.models.gpt import GPT, GPTConfig
from training.models.mlp import MLP
from training.models.resnet import resnet18

CONVNETS = frozenset({"cnn", "resnet18"})

__all__ = ["CONVNETS", "GPT", "GPTConfig", "build_model"]


def build_model(
    name: str, dataset: Dataset, *, smoke_test: bool, activation_checkpointing: bool = False
) -> nn.Module:
    if name == "gpt":
        config = (
            GPTConfig.tiny(dataset.num_classes, dataset.sample_shape[0])
            if smoke_test
            else (GPTConfig(vocab_size=dataset.num_classes, block_size=dataset.sample_shape[0]))
        )
        return GPT(config, activation_checkpointing=activation_checkpointing)
    channels, height, width = dataset.sample_shape
    if name == "cnn":
        return ConvNet(channels, height, width, dataset.num_classes)
    if name == "mlp":
        return MLP(channels * height * width, dataset.num_classes)
    if name == "resnet18":
        return resnet18(channels, dataset.num_classes, width=16 if smoke_test else 64)
    raise ValueError(f"unknown model {name!r}")
