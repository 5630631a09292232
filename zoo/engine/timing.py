"""Timing for `bench`: the median of repeated calls after a warm-up; per-stage milliseconds per image."""
from __future__ import annotations

import time
from typing import Callable, Sequence

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


def ms_per_image(images: list, batch: int, stages: Sequence[str], run_batch: Callable, device: str = "cpu") -> dict:
    """Milliseconds per image of each of `stages` over `images` in batches of `batch`, after one warm-up batch that
    is not counted; "total" is their sum. `run_batch(chunk, mark)` runs one batch and calls `mark()` at the end of
    each stage, in order (on CUDA, mark waits for the GPU first, so each stage is charged its own kernels)."""
    totals = dict.fromkeys(stages, 0.0)
    batches = [images[i:i + batch] for i in range(0, len(images), batch)]
    if device == "cuda":
        import torch
        sync = torch.cuda.synchronize
    else:
        sync = lambda: None  # noqa: E731
    for index, chunk in enumerate([batches[0]] + batches):  # the first pass warms up
        clock = [time.perf_counter()]

        def mark():
            sync()
            clock.append(time.perf_counter())

        run_batch(chunk, mark)
        if index:
            for stage, start, end in zip(stages, clock, clock[1:]):
                totals[stage] += end - start
    per_image = {stage: 1000 * seconds / len(images) for stage, seconds in totals.items()}
    per_image["total"] = sum(per_image.values())
    return per_image
