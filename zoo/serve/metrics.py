"""Prometheus text metrics whose counters live in shared memory, so every gunicorn worker adds to the same ones.

The arrays are made in the gunicorn master before it forks the workers (fork shares them); /metrics, answered by
whichever worker, reports the totals of all of them.
"""
from __future__ import annotations

import multiprocessing
from bisect import bisect_left

CODES = (200, 400, 404, 405, 413, 500, 503)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, max_batch: int):
        self.batch_buckets = tuple(range(1, max(1, max_batch) + 1))
        self._layout = {"requests": len(CODES) + 1,            # per code, and one for any other code
                        "latency": len(LATENCY_BUCKETS) + 1,    # per bucket (not cumulative), +Inf last
                        "latency_sum": 1,
                        "batch": len(self.batch_buckets) + 1,
                        "batch_sum": 1,
                        "images": 1}
        self._offset, start = {}, 0
        for name, size in self._layout.items():
            self._offset[name] = start
            start += size
        self._values = multiprocessing.RawArray("d", start)
        self._lock = multiprocessing.Lock()

    def _add(self, name: str, index: int = 0, amount: float = 1.0) -> None:
        self._values[self._offset[name] + index] += amount

    def observe_request(self, code: int, seconds: float) -> None:
        with self._lock:
            self._add("requests", CODES.index(code) if code in CODES else len(CODES))
            self._add("latency", bisect_left(LATENCY_BUCKETS, seconds))
            self._add("latency_sum", 0, seconds)

    def observe_batch(self, size: int) -> None:
        with self._lock:
            self._add("batch", bisect_left(self.batch_buckets, size))
            self._add("batch_sum", 0, size)
            self._add("images", 0, size)

    def _read(self, name: str) -> list[float]:
        start = self._offset[name]
        return list(self._values[start:start + self._layout[name]])

    def text(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            requests, latency, batch = self._read("requests"), self._read("latency"), self._read("batch")
            latency_sum, batch_sum, images = self._read("latency_sum")[0], self._read("batch_sum")[0], \
                self._read("images")[0]
        lines = ["# HELP zoo_requests_total HTTP requests answered, by status code.",
                 "# TYPE zoo_requests_total counter"]
        lines += [f'zoo_requests_total{{code="{code}"}} {int(n)}' for code, n in zip(CODES + ("other",), requests)]
        lines += ["# HELP zoo_request_errors_total HTTP requests answered with a status other than 200.",
                  "# TYPE zoo_request_errors_total counter",
                  f"zoo_request_errors_total {int(sum(requests) - requests[0])}"]
        lines += _histogram("zoo_request_latency_seconds", "Time from request to answer.", LATENCY_BUCKETS,
                            latency, latency_sum)
        lines += _histogram("zoo_batch_size", "Images per engine call formed by the dynamic batcher.",
                            self.batch_buckets, batch, batch_sum)
        lines += ["# HELP zoo_images_total Images run through the engine.", "# TYPE zoo_images_total counter",
                  f"zoo_images_total {int(images)}"]
        return "\n".join(lines) + "\n"


def _histogram(name: str, help_text: str, bounds, counts: list[float], total: float) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    cumulative = 0.0
    for bound, count in zip(list(bounds) + ["+Inf"], counts):
        cumulative += count
        lines.append(f'{name}_bucket{{le="{bound}"}} {int(cumulative)}')
    lines += [f"{name}_sum {total:.6f}", f"{name}_count {int(cumulative)}"]
    return lines
