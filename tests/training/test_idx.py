"""IDX files, raw and gzipped, as the MNIST family ships them."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from tests.support import run_training, train_args
from training.data.idx import IdxFormatError, encode_idx, parse_idx


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    "tensor",
    [
        torch.arange(2 * 3 * 4, dtype=torch.uint8).reshape(2, 3, 4),
        torch.tensor([1, -2, 70000, -(2**31)], dtype=torch.int32),
        torch.tensor([[1.5, -2.25], [3.0, 1e-3]], dtype=torch.float32),
        torch.tensor([-1, 2, -300], dtype=torch.int16),
    ],
)
def test_idx_round_trip(tensor: torch.Tensor, compress: bool) -> None:
    blob = encode_idx(tensor, compress=compress)
    assert blob[:2] == (b"\x1f\x8b" if compress else b"\x00\x00")
    decoded = parse_idx(blob)
    assert decoded.dtype == tensor.dtype
    assert torch.equal(decoded, tensor)


def test_idx_header_is_big_endian_as_in_the_spec() -> None:
    blob = encode_idx(torch.zeros(3, 28, 28, dtype=torch.uint8))
    assert blob[:4] == bytes([0, 0, 0x08, 3])
    assert blob[4:8] == (3).to_bytes(4, "big")
    assert blob[8:12] == (28).to_bytes(4, "big")


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\x01\x02\x08\x01", "bad magic"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 0]), "unknown IDX element type"),
        (bytes([0, 0, 0x08, 2, 0, 0, 0]), "truncated IDX header"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]), "payload has 2 bytes"),
    ],
)
def test_malformed_idx_is_rejected(blob: bytes, message: str) -> None:
    with pytest.raises(IdxFormatError, match=message):
        parse_idx(blob)


def write_mnist_like(folder: Path, *, train: int, test: int, seed: int = 0) -> None:
    """IDX files shaped like MNIST's (images raw, labels gzipped: both forms are accepted)."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = torch.randint(0, 10, (count,), generator=generator, dtype=torch.int64)
        # Each class lights up its own band of rows, so the task is learnable.
        images = torch.randint(0, 60, (count, 28, 28), generator=generator).to(torch.uint8)
        for i, label in enumerate(labels.tolist()):
            images[i, 2 * label + 4 : 2 * label + 8, 4:24] = 250
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(encode_idx(images))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            encode_idx(labels.to(torch.uint8), compress=True)
        )


@pytest.mark.parametrize("layout", ["mnist", pytest.param("MNIST/raw", marks=pytest.mark.nightly)])
def test_training_on_idx_files_written_here(layout: str, tmp_path: Path) -> None:
    write_mnist_like(tmp_path / "data" / layout, train=600, test=100)
    run = run_training(
        train_args(
            "cnn",
            "mnist",
            data_dir=str(tmp_path / "data"),
            no_download=True,
            epochs=2,
            batch_size=50,
        )
    )
    assert run.returncode == 0, run.stderr[-3000:]
    done = run.event("done")
    assert done["dataset_used"] == "mnist" and done["fallback"] is False
    assert run.event("start")["train_samples"] == 540  # 600 less the 10% validation split
    assert 0.0 <= done["metrics"]["test_accuracy"] <= 1.0
    assert done["metrics"]["val_accuracy"] > 0.5


def test_corrupt_idx_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "mnist"
    write_mnist_like(folder, train=100, test=20)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08"))
    run = run_training(
        train_args(
            "cnn",
            "mnist",
            data_dir=str(tmp_path / "data"),
            no_download=True,
            epochs=1,
            batch_size=10,
        )
    )
    assert run.returncode == 2
    assert "is not a valid IDX file" in run.stderr and "Traceback" not in run.stderr
