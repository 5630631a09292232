"""The dynamic batcher: answers routed back to their own requests, batches bounded, a full queue refused."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from zoo.serve.batching import Batcher, QueueFull
from zoo.serve.metrics import Metrics


def test_each_request_gets_its_own_answer_in_bounded_batches():
    sizes = []

    def run_batch(items):
        time.sleep(0.01)  # requests pile up meanwhile
        return [item * 10 for item in items]

    batcher = Batcher(run_batch, max_batch=4, max_delay=0.05, max_queue=100, on_batch=sizes.append)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: batcher.submit(i).result(timeout=30), range(40)))
    assert answers == [i * 10 for i in range(40)]
    assert sum(sizes) == 40 and max(sizes) <= 4 and max(sizes) > 1


def test_full_queue_raises_and_errors_reach_every_request_of_the_batch():
    release = threading.Event()

    def run_batch(items):
        release.wait(10)
        raise RuntimeError("engine failed")

    batcher = Batcher(run_batch, max_batch=1, max_delay=0, max_queue=1)
    first = batcher.submit(1)
    time.sleep(0.2)  # the batcher holds the first; the queue has room for one more
    second = batcher.submit(2)
    with pytest.raises(QueueFull):
        batcher.submit(3)
    release.set()
    for future in (first, second):
        with pytest.raises(RuntimeError, match="engine failed"):
            future.result(timeout=10)


def test_metrics_text_counts_codes_latency_and_batches():
    metrics = Metrics(max_batch=4)
    for code, seconds in ((200, 0.004), (200, 0.3), (503, 0.001), (418, 0.02)):
        metrics.observe_request(code, seconds)
    metrics.observe_batch(3)
    text = metrics.text()
    assert 'zoo_requests_total{code="200"} 2' in text and 'zoo_requests_total{code="other"} 1' in text
    assert "zoo_request_errors_total 2" in text
    assert 'zoo_request_latency_seconds_bucket{le="0.005"} 2' in text
    assert 'zoo_request_latency_seconds_bucket{le="0.5"} 4' in text and "zoo_request_latency_seconds_count 4" in text
    assert 'zoo_batch_size_bucket{le="2"} 0' in text and 'zoo_batch_size_bucket{le="3"} 1' in text
    assert "zoo_images_total 3" in text


def test_an_error_belongs_to_its_own_request():
    """One bad item makes the batch call raise: each item is run again alone, so only the bad one fails; an
    exception given in place of one item's result fails that item alone."""
    release = threading.Event()

    def run_batch(items):
        release.wait(10)
        if "bad" in items:
            raise ValueError("bad item")
        return [RuntimeError("post-processing failed") if item == "odd" else item.upper() for item in items]

    batcher = Batcher(run_batch, max_batch=8, max_delay=0.5, max_queue=16)
    blocker = batcher.submit("first")  # holds the batcher until release, so the rest form one batch
    time.sleep(0.2)
    futures = {item: batcher.submit(item) for item in ("a", "bad", "b", "odd", "c")}
    release.set()
    assert blocker.result(timeout=10) == "FIRST"
    for item in ("a", "b", "c"):
        assert futures[item].result(timeout=10) == item.upper()
    with pytest.raises(ValueError, match="bad item"):
        futures["bad"].result(timeout=10)
    with pytest.raises(RuntimeError, match="post-processing failed"):
        futures["odd"].result(timeout=10)
