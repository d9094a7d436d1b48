"""Time series made small enough for an agent: downsampling that keeps the shape, and a summary."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pydantic import BaseModel, Field

Point = tuple[float, float]  # (x, y): step or time, value


def downsample(points: Sequence[Point], max_points: int) -> list[int]:
    """Indices of at most `max_points` points that keep the series' shape (Largest-Triangle-
    Three-Buckets): first and last kept, peaks kept.

    Non-finite values are kept as they are (a NaN is news, not noise); a bucket holding one is
    represented by it.
    """
    n = len(points)
    if n <= max_points:
        return list(range(n))
    if max_points < 3:
        return list(range(max_points))
    chosen = [0]
    bucket = (n - 2) / (max_points - 2)
    previous = points[0]
    for i in range(max_points - 2):
        start = int(i * bucket) + 1
        end = min(int((i + 1) * bucket) + 1, n - 1)
        following = points[end : min(int((i + 2) * bucket) + 1, n)] or [points[-1]]
        avg_x = sum(p[0] for p in following) / len(following)
        finite = [p[1] for p in following if math.isfinite(p[1])]
        avg_y = sum(finite) / len(finite) if finite else 0.0
        best, best_area = start, -1.0
        for j in range(start, end):
            x, y = points[j]
            if not math.isfinite(y):
                best = j
                break
            area = abs(
                (previous[0] - avg_x) * (y - previous[1])
                - (previous[0] - x) * (avg_y - previous[1])
            )
            if area > best_area:
                best, best_area = j, area
        chosen.append(best)
        previous = points[best]
    chosen.append(n - 1)
    return chosen


class SeriesSummary(BaseModel):
    count: int
    first: float | None = None
    last: float | None = None
    min: float | None = None
    min_at: float | None = Field(None, description="Step (or time) of the minimum.")
    max: float | None = None
    max_at: float | None = None
    mean: float | None = None
    trend: str = Field(
        "unknown", description="Over the recent points: decreasing, increasing, flat."
    )
    recent_slope: float | None = Field(None, description="Change per step over the recent points.")
    nonfinite: bool = Field(False, description="The series holds NaN or infinite values.")
    diverging: bool = Field(False, description="Non-finite, or rising far above its minimum.")
    plateau: bool = Field(False, description="Recent points change by under 1% of the range.")


def summarize(points: Sequence[Point], recent: int = 20) -> SeriesSummary:
    if not points:
        return SeriesSummary(count=0)
    finite = [p for p in points if math.isfinite(p[1])]
    nonfinite = len(finite) != len(points)
    if not finite:
        return SeriesSummary(count=len(points), nonfinite=True, diverging=True)
    low = min(finite, key=lambda p: p[1])
    high = max(finite, key=lambda p: p[1])
    values = [p[1] for p in finite]
    tail = finite[-max(3, min(recent, len(finite))) :]
    slope = _slope(tail) if len(tail) >= 3 else None
    span = high[1] - low[1]
    scale = span if span > 0 else max(abs(high[1]), 1e-12)
    change = abs(tail[-1][1] - tail[0][1]) / scale if len(tail) >= 2 else 0.0
    if slope is None:
        trend = "unknown"
    elif change < 0.01:
        trend = "flat"
    else:
        trend = "decreasing" if slope < 0 else "increasing"
    last = finite[-1][1]
    rising_away = (
        span > 0 and last > low[1] + 0.5 * span and trend == "increasing" and low[0] < finite[-1][0]
    )
    return SeriesSummary(
        count=len(points),
        first=points[0][1],
        last=points[-1][1],
        min=low[1],
        min_at=low[0],
        max=high[1],
        max_at=high[0],
        mean=sum(values) / len(values),
        trend=trend,
        recent_slope=slope,
        nonfinite=nonfinite,
        diverging=nonfinite or rising_away,
        plateau=len(tail) >= 5 and change < 0.01,
    )


def _slope(points: Sequence[Point]) -> float:
    n = len(points)
    mean_x = sum(p[0] for p in points) / n
    mean_y = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mean_x) ** 2 for p in points)
    if sxx == 0:
        return 0.0
    return sum((p[0] - mean_x) * (p[1] - mean_y) for p in points) / sxx
