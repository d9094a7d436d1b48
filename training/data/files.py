"""Finding a dataset's files under --data-dir (local or s3://), downloading the missing ones."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from common.errors import one_line
from training.data.download import DownloadFailed, fetch_verified
from training.errors import DatasetUnavailable
from training.storage import Storage, open_storage


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str


@dataclass(frozen=True)
class FileSet:
    """Where a dataset's files may lie under --data-dir and where they can be downloaded from."""

    dataset: str
    folders: tuple[str, ...]
    """Folders relative to --data-dir searched in order; the first one is the download target."""
    required: tuple[str, ...]
    """Files that must be present (a name also matches with a .gz suffix)."""
    mirrors: tuple[str, ...]
    downloads: tuple[RemoteFile, ...]


def join(location: str, folder: str) -> str:
    if not folder:
        return location
    return f"{location.rstrip('/')}/{folder}"


def find_files(data_dir: str, files: FileSet) -> tuple[Storage, dict[str, str]] | None:
    """The first folder holding every required file, with the name each was found under."""
    for folder in files.folders:
        storage = open_storage(join(data_dir, folder))
        try:
            present = set(storage.list())
        except OSError as e:
            raise unavailable(
                files, data_dir, f"{storage.location} cannot be read ({one_line(e)})"
            ) from None
        found = {}
        for name in files.required:
            match = next((n for n in (name, f"{name}.gz") if n in present), None)
            if match is None:
                break
            found[name] = match
        else:
            return storage, found
    return None


def unavailable(files: FileSet, data_dir: str, why: str) -> DatasetUnavailable:
    where = join(data_dir, files.folders[0])
    return DatasetUnavailable(
        f"{files.dataset} is not available: {why}. Put {', '.join(files.required)} in {where} "
        "(or run where the download works)"
    )


def store_as_is(remote: RemoteFile, data: bytes, storage: Storage) -> None:
    storage.write_atomic(remote.name, lambda f: f.write(data))


def ensure_files(
    data_dir: str,
    files: FileSet,
    *,
    download: bool,
    mirror: str | None,
    unpack: Callable[[RemoteFile, bytes, Storage], None] = store_as_is,
) -> tuple[Storage, dict[str, str]]:
    """Find the dataset's files, downloading (and verifying) the missing ones when allowed."""
    found = find_files(data_dir, files)
    if found is not None:
        return found
    if not download:
        raise unavailable(files, data_dir, "its files are missing and --no-download was given")
    storage = open_storage(join(data_dir, files.folders[0]))
    mirrors: Sequence[str] = (mirror,) if mirror else files.mirrors
    with _download_lock(storage):
        # Another rank on this machine may have finished the download while this one waited.
        found = find_files(data_dir, files)
        if found is not None:
            return found
        for remote in files.downloads:
            if storage.exists(remote.name):
                continue
            try:
                data = fetch_verified(remote.name, remote.md5, mirrors)
            except DownloadFailed as e:
                raise unavailable(
                    files, data_dir, f"its files are missing and the download failed ({e})"
                ) from None
            try:
                unpack(remote, data, storage)
            except OSError as e:  # a read-only --data-dir: say so (and let a fallback apply)
                raise unavailable(
                    files,
                    data_dir,
                    f"its files are missing and {storage.location} cannot hold the download "
                    f"({one_line(e)})",
                ) from None
    found = find_files(data_dir, files)
    if found is None:
        raise unavailable(files, data_dir, "the downloaded archive lacks some of its files")
    return found


@contextlib.contextmanager
def _download_lock(storage: Storage) -> Iterator[None]:
    """Ranks on one machine download once: the others wait, then find the files."""
    key = hashlib.sha1(storage.location.encode()).hexdigest()[:16]
    path = os.path.join(tempfile.gettempdir(), f"trainops-download-{key}.lock")
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
