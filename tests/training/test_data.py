"""Datasets: bundled, synthetic, downloaded with verification, on S3, and honest fallbacks."""

from __future__ import annotations

import functools
import hashlib
import http.server
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from common.net import free_port, http_ok
from tests.support import Service, clean_env, run_training, train_args, wait_for
from tests.training.test_idx import write_mnist_like
from training.config import TrainConfig
from training.data import load_dataset
from training.data.files import FileSet, RemoteFile, ensure_files
from training.data.idx import encode_idx, parse_idx
from training.errors import DatasetUnavailable


def config(**overrides) -> TrainConfig:
    values = {"model": "cnn", "dataset": "digits", "epochs": 1} | overrides
    return TrainConfig(**values)


def test_digits_are_upscaled_to_mnist_shape_and_split_deterministically() -> None:
    first = load_dataset(config()).dataset
    again = load_dataset(config()).dataset
    assert first.train.inputs.shape[1:] == (1, 28, 28)
    assert first.train.inputs.dtype == torch.uint8
    assert len(first.train) + len(first.val) == 1797
    assert len(first.val) == 180
    assert first.test is None and first.num_classes == 10
    assert torch.equal(first.val.targets, again.val.targets)
    assert set(first.train.targets.unique().tolist()) == set(range(10))


def test_smoke_test_caps_the_data() -> None:
    dataset = load_dataset(config(smoke_test=True)).dataset
    assert len(dataset.train) == 512 and len(dataset.val) == 128


def test_synthetic_data_takes_each_models_input_shape() -> None:
    images = load_dataset(
        config(model="resnet18", dataset="synthetic", synthetic_samples=200)
    ).dataset
    assert images.sample_shape == (3, 32, 32)
    tokens = load_dataset(
        config(model="gpt", dataset="synthetic", synthetic_samples=50, seq_len=16)
    )
    data = tokens.dataset
    assert data.task == "language_modeling" and data.sample_shape == (16,)
    assert int(data.train.inputs.max()) < data.num_classes
    # targets are the inputs shifted by one token
    assert torch.equal(data.train.inputs[:, 1:], data.train.targets[:, :-1])


def test_fallback_is_used_only_when_asked_and_says_why(tmp_path: Path) -> None:
    missing = config(dataset="mnist", data_dir=str(tmp_path), download=False)
    with pytest.raises(DatasetUnavailable, match="mnist is not available"):
        load_dataset(missing)
    loaded = load_dataset(
        config(dataset="mnist", data_dir=str(tmp_path), download=False, fallback_dataset="digits")
    )
    assert loaded.used == "digits" and loaded.requested == "mnist"
    assert "mnist is not available" in loaded.fallback_reason


@pytest.fixture()
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server standing in for a dataset mirror."""
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def serve_tiny_labels(url: str, root: Path) -> tuple[FileSet, bytes]:
    """A one-file dataset on the mirror: ten labels, gzipped, with its checksum."""
    labels = encode_idx(torch.arange(10, dtype=torch.uint8), compress=True)
    (root / "labels-idx1-ubyte.gz").write_bytes(labels)
    files = FileSet(
        dataset="tiny",
        folders=("tiny",),
        required=("labels-idx1-ubyte",),
        mirrors=(url,),
        downloads=(RemoteFile("labels-idx1-ubyte.gz", hashlib.md5(labels).hexdigest()),),
    )
    return files, labels


def test_download_verifies_checksums_and_stores_the_files(mirror, tmp_path: Path) -> None:
    files, labels = serve_tiny_labels(*mirror)
    storage, names = ensure_files(str(tmp_path / "data"), files, download=True, mirror=None)
    assert names == {"labels-idx1-ubyte": "labels-idx1-ubyte.gz"}
    assert torch.equal(
        parse_idx(storage.read_bytes(names["labels-idx1-ubyte"])), torch.arange(10).byte()
    )
    assert (tmp_path / "data" / "tiny" / "labels-idx1-ubyte.gz").read_bytes() == labels


def test_download_with_a_bad_checksum_fails_and_leaves_nothing(mirror, tmp_path: Path) -> None:
    url, root = mirror
    write_mnist_like(root, train=10, test=10)
    for raw in root.glob("*-ubyte"):  # serve every file gzipped, as the real mirrors do
        (root / f"{raw.name}.gz").write_bytes(
            encode_idx(parse_idx(raw.read_bytes()), compress=True)
        )
    data_dir = tmp_path / "data"
    run = run_training(
        train_args("cnn", "mnist", data_dir=str(data_dir), dataset_mirror=url, epochs=1)
    )
    assert run.returncode == 2
    assert "checksum mismatch" in run.stderr and "Traceback" not in run.stderr
    assert not data_dir.exists()


def test_a_data_dir_that_cannot_hold_the_download_is_unavailable(mirror) -> None:
    files, _ = serve_tiny_labels(*mirror)
    # procfs takes no new files from anyone, root included (a chmod'ed dir would not stop root).
    with pytest.raises(DatasetUnavailable, match="cannot hold the download"):
        ensure_files("/proc/trainops-data", files, download=True, mirror=None)


def test_unreachable_mirror_is_reported(tmp_path: Path) -> None:
    cfg = config(
        dataset="mnist",
        data_dir=str(tmp_path / "data"),
        dataset_mirror=f"http://127.0.0.1:{free_port()}",
    )
    with pytest.raises(DatasetUnavailable, match="the download failed"):
        load_dataset(cfg)


@dataclass(frozen=True)
class S3Endpoint:
    env: dict[str, str]
    fs: Any


@pytest.fixture()
def s3(tmp_path: Path) -> Iterator[S3Endpoint]:
    """An S3-compatible endpoint (moto's server), reached over HTTP like MinIO."""
    port = free_port()
    service = Service(
        [str(Path(sys.executable).parent / "moto_server"), "-p", str(port)],
        log=tmp_path / "moto.log",
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: service.check_alive() and http_ok(f"{endpoint}/moto-api/"),
        timeout=30,
        what="the S3 endpoint",
    )
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    from pyarrow import fs

    bucket = fs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}",
        scheme="http",
        access_key="test",
        secret_key="test",
        region="us-east-1",
        allow_bucket_creation=True,
    )
    bucket.create_dir("datasets")
    yield S3Endpoint(env, bucket)
    service.stop()


def test_s3_data_and_checkpoints_resume(s3, tmp_path: Path) -> None:
    bucket = s3.fs
    local = tmp_path / "mnist"
    write_mnist_like(local, train=300, test=50)
    for path in local.iterdir():
        with bucket.open_output_stream(f"datasets/mnist/{path.name}") as out:
            out.write(path.read_bytes())
    args = train_args(
        "mlp",
        "mnist",
        data_dir="s3://datasets",
        checkpoint_dir="s3://datasets/runs/job-1",
        no_download=True,
        batch_size=30,
    )
    env = clean_env(**s3.env)
    first = run_training([*args, "--epochs", "1"], env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.event("epoch")["checkpoint"] == "s3://datasets/runs/job-1/ckpt-epoch-000001.pt"
    second = run_training([*args, "--epochs", "2"], env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.event("resumed")["from_epoch"] == 1
    assert second.event("done")["epochs"] == 2
    from pyarrow import fs

    listed = bucket.get_file_info(fs.FileSelector("datasets/runs/job-1"))
    assert {info.base_name for info in listed} >= {"ckpt-epoch-000001.pt", "ckpt-epoch-000002.pt"}


def cifar_batch(count: int, seed: int) -> bytes:
    import pickle

    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (count, 3072), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (count,), generator=generator).tolist()
    return pickle.dumps({b"data": pixels.numpy(), b"labels": labels, b"batch_label": b"x"})


def test_cifar10_archive_unpacks_and_loads(tmp_path: Path) -> None:
    import io
    import tarfile

    from training.data.cifar import CIFAR10, _unpack_archive
    from training.storage import open_storage

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
            blob = cifar_batch(20, seed=i)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        evil = tarfile.TarInfo("../../escape")  # members outside the known names are ignored
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
    target = open_storage(str(tmp_path / "data" / "cifar10" / "cifar-10-batches-py"))
    _unpack_archive(CIFAR10.downloads[0], archive.getvalue(), target)
    assert sorted(target.list()) == sorted(CIFAR10.required)
    assert not (tmp_path / "escape").exists()

    loaded = load_dataset(
        config(model="resnet18", dataset="cifar10", data_dir=str(tmp_path / "data"), download=False)
    )
    data = loaded.dataset
    assert data.sample_shape == (3, 32, 32) and data.horizontal_flip
    assert len(data.train) + len(data.val) == 100 and len(data.test) == 20
    first = torch.as_tensor(pickle_rows(cifar_batch(20, seed=5)))
    assert torch.equal(data.test.inputs.reshape(20, -1), first)


def pickle_rows(blob: bytes):
    import pickle

    return pickle.loads(blob)[b"data"]
