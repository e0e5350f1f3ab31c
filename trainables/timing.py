"""Timing a callable: the median of repeated calls, after warm-up calls left out."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_ms(run: Callable[[], Any], *, repeats: int, warmup: int = 5) -> float:
    """Median wall time in milliseconds of `run()`, after `warmup` untimed calls."""
    for _ in range(warmup):
        run()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(timings)
