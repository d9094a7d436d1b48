"""Seeded synthetic data of any model's input shape, learnable so that accuracy means something.

Images are noisy copies of one smooth prototype per class; token sequences walk a sparse random
Markov chain, so a language model can drive its loss from ln(vocab) towards ln(branching).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.data.types import RawDataset, Split

NUM_CLASSES = 10
VOCAB_SIZE = 256
BRANCHING = 4


def synthetic_images(
    samples: int, shape: tuple[int, int, int], seed: int, noise: float = 70.0
) -> RawDataset:
    generator = torch.Generator().manual_seed(seed)
    channels, height, width = shape
    coarse = torch.rand(NUM_CLASSES, channels, 7, 7, generator=generator)
    prototypes = F.interpolate(coarse, size=(height, width), mode="bilinear") * 255.0
    labels = torch.randint(0, NUM_CLASSES, (samples,), generator=generator)
    images = prototypes[labels] + noise * torch.randn(
        samples, channels, height, width, generator=generator
    )
    pixels = images.round().clamp(0, 255).to(torch.uint8)
    return RawDataset(train=Split(pixels, labels), test=None, num_classes=NUM_CLASSES)


def synthetic_tokens(samples: int, seq_len: int, seed: int) -> RawDataset:
    generator = torch.Generator().manual_seed(seed)
    successors = torch.randint(0, VOCAB_SIZE, (VOCAB_SIZE, BRANCHING), generator=generator)
    weights = torch.rand(VOCAB_SIZE, BRANCHING, generator=generator) + 0.1
    sequences = torch.empty(samples, seq_len + 1, dtype=torch.long)
    sequences[:, 0] = torch.randint(0, VOCAB_SIZE, (samples,), generator=generator)
    for t in range(seq_len):
        state = sequences[:, t]
        pick = torch.multinomial(weights[state], 1, generator=generator).squeeze(1)
        sequences[:, t + 1] = successors[state, pick]
    split = Split(sequences[:, :-1].contiguous(), sequences[:, 1:].contiguous())
    return RawDataset(train=split, test=None, num_classes=VOCAB_SIZE, task="language_modeling")
