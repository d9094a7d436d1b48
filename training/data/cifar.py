"""CIFAR-10 from its python batches (cifar-10-batches-py/)."""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable
from typing import IO

import torch

from training.config import TrainConfig
from training.data.files import FileSet, RemoteFile, ensure_files
from training.data.types import RawDataset, Split
from training.errors import DatasetUnavailable
from training.storage import Storage

_FOLDER = "cifar-10-batches-py"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"

CIFAR10 = FileSet(
    dataset="cifar10",
    folders=(f"cifar10/{_FOLDER}", _FOLDER),
    required=(*_TRAIN_BATCHES, _TEST_BATCH),
    mirrors=("https://www.cs.toronto.edu/~kriz",),
    downloads=(RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
)


def _unpack_archive(remote: RemoteFile, data: bytes, storage: Storage) -> None:
    wanted = {f"{_FOLDER}/{name}": name for name in CIFAR10.required}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            name = wanted.get(member.name)
            if name is None or not member.isfile():
                continue
            extracted = archive.extractfile(member)
            if extracted is None:
                continue
            storage.write_atomic(name, _writer(extracted.read()))


def load_cifar10(cfg: TrainConfig) -> RawDataset:
    storage, names = ensure_files(
        cfg.data_dir,
        CIFAR10,
        download=cfg.download,
        mirror=cfg.dataset_mirror,
        unpack=_unpack_archive,
    )

    def read(batches: tuple[str, ...]) -> Split:
        images, labels = [], []
        for name in batches:
            try:
                # The official format is a pickled dict; only these known files are read.
                batch = pickle.loads(storage.read_bytes(names[name]), encoding="bytes")
                pixels = torch.as_tensor(batch[b"data"], dtype=torch.uint8)
                targets = torch.as_tensor(batch[b"labels"], dtype=torch.long)
            except (pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as e:
                raise DatasetUnavailable(
                    f"{storage.describe(names[name])} is not a CIFAR-10 batch ({e}); "
                    "delete it so it is downloaded again"
                ) from None
            images.append(pixels.reshape(-1, 3, 32, 32))
            labels.append(targets)
        return Split(torch.cat(images), torch.cat(labels))

    return RawDataset(
        train=read(_TRAIN_BATCHES), test=read((_TEST_BATCH,)), num_classes=10, horizontal_flip=True
    )


def _writer(blob: bytes) -> Callable[[IO[bytes]], object]:
    return lambda f: f.write(blob)
