"""Atomic, self-validating checkpoints in a local directory or under an s3:// prefix.

A process killed at any instant leaves either the previous checkpoints or a complete new one:
each file is written to a temp name, fsynced and renamed (S3 objects appear only when complete).
Loading walks back from the newest file until one loads, so even a damaged file costs one
checkpoint interval, never the run.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from typing import Any

import torch

from training.storage import LocalStorage, open_storage

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt-epoch-(\d{6})\.pt$")


def checkpoint_name(epoch: int) -> str:
    return f"ckpt-epoch-{epoch:06d}.pt"


class CheckpointManager:
    def __init__(self, location: str, *, keep: int = 2) -> None:
        self.storage = open_storage(location)
        self.keep = keep

    @property
    def location(self) -> str:
        return self.storage.location

    def epochs(self) -> list[int]:
        return sorted(int(m.group(1)) for n in self.storage.list() if (m := _NAME.match(n)))

    def save(self, epoch: int, state: dict[str, Any]) -> str:
        """Write the checkpoint of `epoch` atomically and prune all but the newest `keep`."""
        if isinstance(self.storage, LocalStorage):
            self.storage.remove_stale_temp_files()
        where = self.storage.write_atomic(
            checkpoint_name(epoch), lambda f: torch.save({**state, "format": FORMAT_VERSION}, f)
        )
        for old in self.epochs()[: -self.keep]:
            self.storage.delete(checkpoint_name(old))
        return where

    def load(self, epoch: int, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        blob = self.storage.read_bytes(checkpoint_name(epoch))
        state = torch.load(io.BytesIO(blob), map_location=map_location, weights_only=True)
        if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
            raise ValueError(f"not a trainops checkpoint (format {state.get('format')!r})")
        return state

    def load_latest(
        self, map_location: str | torch.device = "cpu"
    ) -> tuple[int, dict[str, Any]] | None:
        """The newest checkpoint that loads; damaged newer files are reported and skipped."""
        for epoch in reversed(self.epochs()):
            try:
                return epoch, self.load(epoch, map_location)
            except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as e:
                log.warning(
                    "checkpoint %s does not load (%s); trying an older one",
                    self.storage.describe(checkpoint_name(epoch)),
                    e,
                )
        return None

    def describe(self, epoch: int) -> str:
        return self.storage.describe(checkpoint_name(epoch))
