"""Timing one training step: warm up, then repeat until enough time has been measured."""

from __future__ import annotations

import statistics
import time


def measure(step, sync=lambda: None, min_seconds: float = 1.5, warmup_seconds: float = 0.3,
            min_warmup: int = 5, min_reps: int = 10) -> dict:
    """Median and minimum milliseconds of ``step()``.

    Warm-up (at least ``min_warmup`` calls and ``warmup_seconds``) absorbs compilation,
    caches and allocator growth. Each timed call is followed by ``sync()`` (a device
    synchronisation on a GPU) so the time is the step's, not its launch's. Steps are
    repeated until ``min_seconds`` of them have been timed.
    """
    start = time.perf_counter()
    n = 0
    while n < min_warmup or time.perf_counter() - start < warmup_seconds:
        step()
        n += 1
    sync()
    times = []
    total = 0.0
    while total < min_seconds or len(times) < min_reps:
        t0 = time.perf_counter()
        step()
        sync()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
    return {"median_ms": statistics.median(times) * 1e3, "min_ms": min(times) * 1e3, "reps": len(times)}
