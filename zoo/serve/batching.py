"""Dynamic batching inside one worker: requests wait at most max_delay for others, up to max_batch per call."""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable


class QueueFull(Exception):
    """More requests wait than the queue holds: the caller answers 503 and asks the client to retry."""


class Batcher:
    """`submit(item)` returns a Future of `run_batch([...])[i]` for that item; one thread forms the batches.

    A batch is closed when it holds `max_batch` items or `max_delay` seconds after its first item arrived.
    An error belongs to its own request: `run_batch` may give an exception in place of one item's result (that
    future alone fails), and when the whole call raises, each item of the batch is run again alone, so only the
    items that fail by themselves get the error.
    """

    def __init__(self, run_batch: Callable[[list], list], max_batch: int, max_delay: float, max_queue: int,
                 on_batch: Callable[[int], None] = lambda size: None):
        self.run_batch, self.max_batch, self.max_delay = run_batch, max(1, max_batch), max(0.0, max_delay)
        self.on_batch = on_batch
        self.pending: queue.Queue = queue.Queue(max_queue)
        self.thread = threading.Thread(target=self._loop, name="zoo-batcher", daemon=True)
        self.thread.start()

    def submit(self, item: Any) -> Future:
        future: Future = Future()
        try:
            self.pending.put_nowait((item, future))
        except queue.Full:
            raise QueueFull(f"{self.pending.maxsize} requests already waiting") from None
        return future

    def _next_batch(self) -> list:
        batch = [self.pending.get()]
        deadline = time.monotonic() + self.max_delay
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                batch.append(self.pending.get(timeout=left) if left > 0 else self.pending.get_nowait())
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            self._run(self._next_batch())

    def _run(self, batch: list) -> None:
        try:
            results = self.run_batch([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"run_batch gave {len(results)} results for {len(batch)} items")
        except Exception as e:  # noqa: BLE001 - the error belongs to the requests, not to this thread
            if len(batch) > 1:
                for one in batch:  # which item failed is not known: each one alone tells
                    self._run([one])
                return
            batch[0][1].set_exception(e)
            return
        self.on_batch(len(batch))
        for (_, future), result in zip(batch, results):
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
