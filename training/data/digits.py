"""scikit-learn's bundled 8x8 digits, upscaled to MNIST's 28x28: real handwriting, offline."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from training.data.types import RawDataset, Split
from training.errors import DatasetUnavailable


def load_digits() -> RawDataset:
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DatasetUnavailable(
            "--dataset digits needs scikit-learn: pip install scikit-learn"
        ) from None
    bunch = sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1)  # values 0..16
    images = F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False)
    pixels = (images * (255.0 / 16.0)).round().clamp(0, 255).to(torch.uint8)
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    return RawDataset(train=Split(pixels, labels), test=None, num_classes=10)
