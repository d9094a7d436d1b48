"""Writes checkpoints back to back until killed (run by test_checkpoint as a real process)."""

import sys

import torch

from training.checkpoint import CheckpointManager

if __name__ == "__main__":
    manager = CheckpointManager(sys.argv[1], keep=2)
    epoch = max(manager.epochs(), default=0)
    print("ready", flush=True)
    while True:
        epoch += 1
        payload = torch.full((2_000_000,), float(epoch))  # ~8 MB: writes take a while
        manager.save(epoch, {"epoch": epoch, "payload": payload})
