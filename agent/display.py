"""The live progress display while the agent watches a job (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

from agent.events import Event, Launched
from agent.pricing import money


class ProgressDisplay:
    """A rich progress bar fed by the graph's custom stream events (launched, progress)."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled
        self._bar: RichProgress | None = None
        self._task: Any = None

    def update(self, event: Event) -> None:
        if not self.enabled:
            return
        if isinstance(event, Launched):
            verb = "launched" if event.created else "following the existing"
            self.console.print(f"[green]{verb}[/green] {event.kind} {event.job_id}")
            return
        if self._bar is None:
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} epochs"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(event.job_id, total=event.epochs or 1)
        parts = [event.job_id, event.phase]
        if event.train_loss is not None:
            parts.append(f"loss {event.train_loss:.3f}")
        if event.val_accuracy is not None:
            parts.append(f"acc {event.val_accuracy:.3f}")
        if event.eta_s is not None:
            parts.append(f"ETA {event.eta_s:.0f}s")
        parts.append(money(event.cost_so_far_usd))
        self._bar.update(
            self._task,
            description=" ".join(parts),
            completed=event.epoch or 0,
            total=event.epochs or 1,
        )

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
