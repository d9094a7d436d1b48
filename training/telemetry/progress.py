"""Rank 0's progress on stdout: one `common.telemetry.ProgressEvent` line per event, for the
orchestrator that watches the job, and plain notices for people reading the log."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from common.telemetry import ProgressEvent, ProgressKind


class ProgressWriter:
    def __init__(self, enabled: bool, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stdout

    def emit(
        self,
        event: ProgressKind,
        *,
        epoch: int | None = None,
        epochs: int | None = None,
        step: int | None = None,
        metrics: dict[str, float] | None = None,
        mlflow_run_id: str | None = None,
        **details: Any,
    ) -> None:
        if not self.enabled:
            return
        line = ProgressEvent(
            event=event,
            time=time.time(),
            epoch=epoch,
            epochs=epochs,
            step=step,
            metrics=metrics or {},
            mlflow_run_id=mlflow_run_id,
            details=details,
        ).to_line()
        print(line, file=self.stream, flush=True)

    def notice(self, text: str) -> None:
        """A plain line for people reading the log (warnings that must not be missed)."""
        if self.enabled:
            print(text, file=self.stream, flush=True)
