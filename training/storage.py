"""One interface over a local directory and an s3:// prefix, for datasets and checkpoints.

Writes are atomic on both: locally a temp file is fsynced and renamed (and the directory
fsynced); on S3 an object only becomes visible once its upload completes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import IO, Protocol
from urllib.parse import urlparse

from common.errors import one_line
from training.errors import ConfigError

TEMP_SUFFIX = ".partial"


class Storage(Protocol):
    location: str

    def exists(self, name: str) -> bool: ...
    def read_bytes(self, name: str) -> bytes: ...
    def list(self) -> list[str]: ...
    def write_atomic(self, name: str, write: Callable[[IO[bytes]], object]) -> str: ...
    def delete(self, name: str) -> None: ...
    def describe(self, name: str) -> str: ...
    def check_writable(self, flag: str) -> None: ...


def open_storage(location: str) -> Storage:
    if location.startswith("s3://"):
        return S3Storage(location)
    return LocalStorage(location)


class LocalStorage:
    def __init__(self, location: str) -> None:
        self.location = location
        self.root = os.path.abspath(location)

    def _path(self, name: str) -> str:
        return os.path.join(self.root, name)

    def describe(self, name: str) -> str:
        return self._path(name)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def check_writable(self, flag: str) -> None:
        """Create and remove a probe where the first write will go, so a path this process cannot
        write fails before training starts rather than at the first checkpoint. Leaves nothing."""
        target = self.root
        while not os.path.isdir(target):
            if os.path.exists(target):
                raise ConfigError(f"{flag} {self.location}: {target} is not a directory")
            target = os.path.dirname(target)
        try:
            os.rmdir(tempfile.mkdtemp(dir=target, prefix=".trainops-probe-"))
        except OSError as e:
            raise ConfigError(
                f"{flag} {self.location} cannot be written ({e.strerror}); "
                "choose a writable path or fix its permissions"
            ) from None

    def read_bytes(self, name: str) -> bytes:
        with open(self._path(name), "rb") as f:
            return f.read()

    def list(self) -> list[str]:
        try:
            return sorted(
                entry.name
                for entry in os.scandir(self.root)
                if entry.is_file() and not entry.name.endswith(TEMP_SUFFIX)
            )
        except FileNotFoundError:
            return []

    def write_atomic(self, name: str, write: Callable[[IO[bytes]], object]) -> str:
        os.makedirs(self.root, exist_ok=True)
        final = self._path(name)
        fd, temp = tempfile.mkstemp(dir=self.root, prefix=f".{name}.", suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide it from other users
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
        except BaseException:
            _remove_quietly(temp)
            raise
        _fsync_dir(self.root)
        return final

    def delete(self, name: str) -> None:
        _remove_quietly(self._path(name))

    def remove_stale_temp_files(self) -> None:
        """Drop the temp files of writers that were killed mid-write."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX):
                _remove_quietly(entry.path)


class S3Storage:
    """s3://bucket/prefix through pyarrow's S3FileSystem.

    Credentials come from the usual AWS environment (AWS_ACCESS_KEY_ID, ...); AWS_ENDPOINT_URL_S3
    or AWS_ENDPOINT_URL points it at MinIO or another S3-compatible store.
    """

    def __init__(self, location: str) -> None:
        try:
            from pyarrow import fs as pafs
        except ImportError as e:
            raise ConfigError(f"{location} needs pyarrow: pip install pyarrow") from e
        self.location = location.rstrip("/")
        self.base = self.location[len("s3://") :]
        self.fs = pafs.S3FileSystem(**s3_options_from_env())
        self._pafs = pafs

    def _key(self, name: str) -> str:
        return f"{self.base}/{name}"

    def describe(self, name: str) -> str:
        return f"{self.location}/{name}"

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(self._key(name)).type == self._pafs.FileType.File

    def read_bytes(self, name: str) -> bytes:
        with self.fs.open_input_stream(self._key(name)) as f:
            return f.read()

    def list(self) -> list[str]:
        selector = self._pafs.FileSelector(self.base, allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(i.base_name for i in infos if i.type == self._pafs.FileType.File)

    def check_writable(self, flag: str) -> None:
        """Reach the bucket before training starts (S3 has no cheap write check that leaves no
        trace; listing catches wrong endpoints, credentials and bucket names)."""
        try:
            self.list()
        except OSError as e:
            raise ConfigError(
                f"{flag} {self.location} cannot be reached ({one_line(e)}); check the bucket, "
                "AWS_ENDPOINT_URL and the AWS credentials in the environment"
            ) from None

    def write_atomic(self, name: str, write: Callable[[IO[bytes]], object]) -> str:
        import io

        buffer = io.BytesIO()
        write(buffer)
        with self.fs.open_output_stream(self._key(name)) as out:
            out.write(buffer.getbuffer())
        return self.describe(name)

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self._key(name))


def s3_options_from_env() -> dict[str, object]:
    options: dict[str, object] = {
        "region": os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parsed = urlparse(endpoint)
        if not parsed.scheme or not parsed.netloc:
            raise ConfigError(f"AWS_ENDPOINT_URL {endpoint!r} is not a URL; use http://HOST:PORT")
        options["endpoint_override"] = parsed.netloc
        options["scheme"] = parsed.scheme
    return options


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
