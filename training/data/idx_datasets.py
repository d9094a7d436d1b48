"""MNIST and Fashion-MNIST from their IDX files (raw or .gz)."""

from __future__ import annotations

import torch

from training.config import TrainConfig
from training.data.files import FileSet, RemoteFile, ensure_files
from training.data.idx import IdxFormatError, parse_idx
from training.data.types import RawDataset, Split
from training.errors import DatasetUnavailable

_TRAIN_IMAGES, _TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
_TEST_IMAGES, _TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
_REQUIRED = (_TRAIN_IMAGES, _TRAIN_LABELS, _TEST_IMAGES, _TEST_LABELS)

MNIST = FileSet(
    dataset="mnist",
    folders=("mnist", "MNIST/raw", ""),
    required=_REQUIRED,
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist",
        "https://yann.lecun.com/exdb/mnist",
    ),
    downloads=(
        RemoteFile(f"{_TRAIN_IMAGES}.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        RemoteFile(f"{_TRAIN_LABELS}.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        RemoteFile(f"{_TEST_IMAGES}.gz", "9fb629c4189551a2d022fa330f9573f3"),
        RemoteFile(f"{_TEST_LABELS}.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
)

FASHION_MNIST = FileSet(
    dataset="fashion-mnist",
    folders=("fashion-mnist", "FashionMNIST/raw"),
    required=_REQUIRED,
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
    ),
    downloads=(
        RemoteFile(f"{_TRAIN_IMAGES}.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        RemoteFile(f"{_TRAIN_LABELS}.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        RemoteFile(f"{_TEST_IMAGES}.gz", "bef4ecab320f06d8554ea6380940ec79"),
        RemoteFile(f"{_TEST_LABELS}.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ),
)


def load_idx_dataset(files: FileSet, cfg: TrainConfig) -> RawDataset:
    storage, names = ensure_files(
        cfg.data_dir, files, download=cfg.download, mirror=cfg.dataset_mirror
    )

    def read(name: str):
        where = storage.describe(names[name])
        try:
            return parse_idx(storage.read_bytes(names[name]))
        except (IdxFormatError, EOFError, OSError) as e:
            raise DatasetUnavailable(
                f"{where} is not a valid IDX file ({e}); delete it so it is downloaded again"
            ) from None

    def split(images_name: str, labels_name: str) -> Split:
        images, labels = read(images_name), read(labels_name)
        if images.dim() != 3 or labels.dim() != 1 or images.shape[0] != labels.shape[0]:
            raise DatasetUnavailable(
                f"{storage.location}: {images_name} {tuple(images.shape)} and {labels_name} "
                f"{tuple(labels.shape)} do not match; replace them with the original files"
            )
        return Split(images.to(torch.uint8).unsqueeze(1), labels.long())

    return RawDataset(
        train=split(_TRAIN_IMAGES, _TRAIN_LABELS),
        test=split(_TEST_IMAGES, _TEST_LABELS),
        num_classes=10,
    )
