"""GPU types: the names people ask for ("A100", "H100"), and how a node's product label reads.

A job that asks for a type gets a node selector on `nvidia.com/gpu.product` (the label NVIDIA's
GPU feature discovery puts on every GPU node) and is priced at that type's rate.
"""

from __future__ import annotations

import re
from typing import Final, Literal, get_args

GpuType = Literal["A100", "A10G", "B200", "H100", "H200", "L4", "L40S", "T4", "V100"]
GPU_TYPES: Final[tuple[GpuType, ...]] = get_args(GpuType)

GPU_PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
DEFAULT_GPU_PRODUCTS: Final[dict[GpuType, str]] = {
    "A100": "NVIDIA-A100-SXM4-80GB",
    "A10G": "NVIDIA-A10G",
    "B200": "NVIDIA-B200",
    "H100": "NVIDIA-H100-80GB-HBM3",
    "H200": "NVIDIA-H200",
    "L4": "NVIDIA-L4",
    "L40S": "NVIDIA-L40S",
    "T4": "Tesla-T4",
    "V100": "Tesla-V100-SXM2-16GB",
}
"""The product label value of each type's most common part; a cluster with other parts (an
A100 40GB, an H100 PCIe) maps them in `kubernetes.gpu_products`."""

DEFAULT_GPU_HOUR_USD: Final[dict[str, float]] = {
    "default": 0.25,
    "T4": 0.35,
    "L4": 0.80,
    "A10G": 1.00,
    "L40S": 1.85,
    "V100": 2.50,
    "A100": 3.00,
    "H100": 5.00,
    "H200": 6.00,
    "B200": 8.00,
}
"""On-demand list prices per GPU-hour, rounded; `rates.gpu_hour_usd` in config.yaml sets yours."""

# Longest first, on word boundaries: "L40S" is not an "L4", "A10G" not an "A100".
_BY_LENGTH = sorted(GPU_TYPES, key=len, reverse=True)
_TOKEN = re.compile(r"[a-z0-9]+")


def gpu_type_of_product(product: str | None) -> GpuType | None:
    """The type a product name is ('NVIDIA-A100-SXM4-80GB', 'NVIDIA H100 80GB HBM3'), if any."""
    if not product:
        return None
    tokens = set(_TOKEN.findall(product.lower()))
    for gpu_type in _BY_LENGTH:
        if gpu_type.lower() in tokens:
            return gpu_type
    return None
