"""Deliver what a finished job left for MLflow: `python -m training.telemetry.drain
--checkpoint-dir DIR --tracking-uri URI`.

A job whose MLflow was away when it ended leaves its writes (metrics, tags, the final model, the
run's end) in the outbox beside its checkpoints. This sends them, in order, to MLflow at URI
(which may be another address than the job had), so the run ends complete and closed.
Exit code 0: nothing is left; 3: MLflow did not take everything (retry later); 2: bad input.
"""

from __future__ import annotations

import argparse
import logging
import sys

from common.telemetry import MLFLOW_OUTBOX_FILE
from training.errors import ConfigError
from training.storage import open_storage

UNDELIVERED = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.telemetry.drain", description=__doc__)
    parser.add_argument("--checkpoint-dir", required=True, help="the job's --checkpoint-dir")
    parser.add_argument("--tracking-uri", required=True, help="where MLflow is now")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        storage = open_storage(args.checkpoint_dir)
        if not storage.exists(MLFLOW_OUTBOX_FILE):
            return 0
        from training.telemetry.mlflow_sink import MlflowSink

        sink = MlflowSink.resume(args.tracking_uri, storage)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if sink.drain():
        return 0
    print(f"MLflow at {args.tracking_uri} did not take everything yet", file=sys.stderr)
    return UNDELIVERED


if __name__ == "__main__":
    sys.exit(main())
