"""Timing for `bench`: the median of repeated calls after a warm-up."""
from __future__ import annotations

import time

import numpy as np


def median_ms(fn, warmup: int, iterations: int) -> float:
    """Median milliseconds per call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))
